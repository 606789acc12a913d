//! A panic ends only the task it happened in (SPEC §4): the panic hook the
//! `herd` binary installs (`logging::log_panics`) writes it to every
//! server's log file and lets the process go on, and an actor that panics in
//! one handler leaves the other actors of its arbiter serving.
//!
//! No input of the protocol can make a server panic (that is the point of
//! the rest of the suite), so the panic here is made on purpose, by an actor
//! of the test's own, under the server's real logger and hook.

use actix::prelude::*;

/// Answers `Ask(n)` with `n + 1`, and panics on `Ask(0)`.
struct Worker;

impl Actor for Worker {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "u32")]
struct Ask(u32);

impl Handler<Ask> for Worker {
    type Result = u32;

    fn handle(&mut self, msg: Ask, _: &mut Context<Self>) -> u32 {
        assert!(msg.0 != 0, "made to panic by the test");
        msg.0 + 1
    }
}

#[test]
fn a_panic_is_logged_to_every_server_and_ends_only_its_actor() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let log_dir = dir.path().join("logs");
    let servers = vec!["Riley".to_string(), "Jaquez".to_string()];
    herd::logging::init(
        Some(log_dir.as_path()),
        &servers,
        "info",
        herd::logging::LogFormat::Text,
    );
    herd::logging::log_panics(servers);

    let system = actix_rt::System::new();
    let (panicked, other) = system.block_on(async {
        let doomed = Worker.start();
        let other = Worker.start();
        // The doomed actor's handler panics: its caller sees it gone...
        let panicked = doomed.send(Ask(0)).await;
        // ...while another actor on the same thread still answers.
        let other = other.send(Ask(41)).await;
        (panicked, other)
    });
    assert!(panicked.is_err(), "the panicking handler cannot answer");
    assert_eq!(other.ok(), Some(42), "the other actor keeps serving");

    log::logger().flush();
    for server in ["Riley", "Jaquez"] {
        let text = std::fs::read_to_string(log_dir.join(format!("{server}.log")))
            .unwrap_or_else(|e| panic!("{server}.log: {e}"));
        assert!(
            text.contains(&format!("{server}: panic in thread"))
                && text.contains("made to panic by the test"),
            "{server}.log: {text}"
        );
    }
}
