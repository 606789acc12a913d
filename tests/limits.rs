//! Resource bounds (SPEC §3, §7; issue 7 item 2), each proved against a
//! server with the bound set low in that test's own settings: in the test
//! process where a client sees all there is to see, a real `herd` process
//! where the proof is in its log, a restart or its open files.
//!
//! | bound | setting | test |
//! |-------|---------|------|
//! | line length | `limits.max_line_bytes` | `lines_over_the_limit_*` |
//! | client name | 255 bytes (protocol) | `client_names_*` |
//! | connections | `limits.max_connections` | `connections_beyond_*`, `ten_thousand_*` |
//! | idle clients, slowloris | `limits.idle_timeout_ms` | `idle_*`, `a_slowloris_*` |
//! | pending output | `limits.write_timeout_ms` | `a_client_that_never_reads_*` |
//! | hinted handoff | `limits.max_pending_records` | `hinted_handoff_*` |
//!
//! docs/limits.md describes each bound; these tests are its evidence.

mod common;

use std::io::Write;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{iamat, wait_until, Herd, RawClient};

fn port(herd: &Herd) -> u16 {
    herd.ports("Riley").client
}

/// Riley still answers a fresh client.
fn assert_still_serving(herd: &Herd, client: &str) {
    let answer = herd.ask("Riley", &iamat(client, "1700000000"));
    assert!(answer.starts_with("AT Riley "), "{answer}");
}

#[test]
fn lines_over_the_limit_are_answered_then_closed_and_the_limit_is_exact() {
    let herd = Herd::one("Riley")
        .settings("limits", &["max_line_bytes = 64", "linger_ms = 200"])
        .start_in_process();
    // Exactly at the limit: an ordinary (invalid) line, the connection stays.
    let at_limit = "x".repeat(64);
    let mut conn = RawClient::connect(port(&herd));
    conn.send(format!("{at_limit}\r\n").as_bytes());
    assert_eq!(conn.text_line(), Some(format!("? {at_limit}")));
    // A valid IAMAT of 64 bytes still works on the same connection.
    let line = iamat("n", "1700000000.1234567");
    let line = format!("{line}{}", " ".repeat(64 - line.len()));
    assert_eq!(line.len(), 64);
    conn.send(format!("{line}\n").as_bytes());
    assert!(conn.text_line().unwrap().starts_with("AT Riley "));
    // One byte more: a bare `?`, then the server closes.
    conn.send(format!("{}\nIAMAT after +1+1 1\n", "y".repeat(65)).as_bytes());
    assert_eq!(conn.text_line().as_deref(), Some("?"));
    assert_eq!(conn.line(), None, "closed after an overlong line");

    // The same for a last line ended by end-of-file (the client half-closes).
    let mut conn = RawClient::connect(port(&herd));
    conn.send(format!("{}\r", "w".repeat(65)).as_bytes());
    conn.stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(conn.text_line().as_deref(), Some("?"));
    assert_eq!(conn.line(), None);

    // A megabyte without any newline: answered early, closed, nothing kept.
    let mut conn = RawClient::connect(port(&herd));
    let writer = conn.stream.try_clone().unwrap();
    let flood = std::thread::spawn(move || {
        let mut writer = writer;
        let block = vec![b'z'; 1 << 16];
        for _ in 0..16 {
            if writer.write_all(&block).is_err() {
                return; // the server closed: expected at some point
            }
        }
    });
    assert_eq!(conn.text_line().as_deref(), Some("?"));
    conn.read_to_end().len();
    flood.join().unwrap();
    assert_eq!(
        herd.ask("Riley", "WHATSAT after 1 1"),
        "? WHATSAT after 1 1"
    );
    assert_still_serving(&herd, "after.overlong");
}

#[test]
fn client_names_up_to_255_bytes_are_kept_and_longer_ones_refused() {
    let herd = Herd::one("Riley").start_in_process();
    let longest = "n".repeat(255);
    let answer = herd.ask("Riley", &iamat(&longest, "1700000000"));
    assert!(answer.contains(&format!(" {longest} ")), "{answer}");
    assert!(herd.whatsat_at_line("Riley", &longest).is_some());

    let too_long = "m".repeat(256);
    let line = iamat(&too_long, "1700000000");
    assert_eq!(herd.ask("Riley", &line), format!("? {line}"));
    let query = format!("WHATSAT {too_long} 1 1");
    assert_eq!(herd.ask("Riley", &query), format!("? {query}"));
}

#[test]
fn connections_beyond_the_limit_are_refused_politely() {
    let herd = Herd::one("Riley")
        .settings("limits", &["max_connections = 3"])
        .start_in_process();
    // The harness's readiness probe may hold a slot for a moment after it
    // closed, so each of the three is retried until served.
    let mut served: Vec<RawClient> = Vec::new();
    for i in 0..3 {
        wait_until(Duration::from_secs(10), "a connection slot", || {
            let mut conn = RawClient::connect(port(&herd));
            conn.send(format!("{}\n", iamat(&format!("served.{i}"), "1700000000")).as_bytes());
            let line = conn.text_line().unwrap();
            if line.starts_with("AT Riley ") {
                served.push(conn);
                return true;
            }
            assert_eq!(line, "? server busy");
            false
        });
    }

    // The fourth is told so and closed; what it sent is not acted on.
    let mut refused = RawClient::connect(port(&herd));
    refused.send(format!("{}\n", iamat("refused.client", "1700000000")).as_bytes());
    assert_eq!(refused.text_line().as_deref(), Some("? server busy"));
    assert_eq!(refused.line(), None);

    // Once a slot frees up, a new client is served again.
    drop(served.pop());
    wait_until(Duration::from_secs(10), "a freed slot", || {
        let mut conn = RawClient::connect(port(&herd));
        conn.send(b"WHATSAT refused.client 1 1\n");
        conn.text_line().as_deref() == Some("? WHATSAT refused.client 1 1")
    });
    // The served ones were never disturbed.
    for conn in &mut served {
        conn.send(b"WHATSAT served.0 1 1\n");
        let line = conn.text_line().unwrap();
        assert!(line.starts_with("AT Riley "), "{line}");
        while conn.line().is_some_and(|l| !l.is_empty()) {}
    }
}

#[test]
fn idle_clients_are_closed_but_busy_ones_are_not() {
    let herd = Herd::one("Riley")
        .settings("limits", &["idle_timeout_ms = 1000"])
        .start_in_process();
    let mut idle = RawClient::connect(port(&herd));
    let idle_closed = std::thread::spawn(move || {
        let started = Instant::now();
        assert_eq!(idle.line(), None, "idle client closed");
        started.elapsed()
    });
    let mut busy = RawClient::connect(port(&herd));
    // The busy client sends a complete line every 100 ms for 2.5 s, more
    // than twice the idle timeout, and is answered every time.
    for i in 0..25 {
        busy.send(format!("PING {i}\n").as_bytes());
        assert_eq!(busy.text_line(), Some(format!("? PING {i}")));
        std::thread::sleep(Duration::from_millis(100)); // the client's pace, not synchronisation
    }
    // The idle one was closed meanwhile, not before its timeout.
    let idle_for = idle_closed.join().unwrap();
    assert!(
        (Duration::from_millis(950)..Duration::from_millis(2500)).contains(&idle_for),
        "idle client closed after {idle_for:?}"
    );
}

#[test]
fn a_slowloris_client_is_closed_at_the_idle_timeout() {
    let herd = Herd::one("Riley")
        .settings("limits", &["idle_timeout_ms = 500"])
        .start_in_process();
    let mut conn = RawClient::connect(port(&herd));
    let writer = conn.stream.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = stop.clone();
        // One byte every 50 ms, never a newline: bytes keep arriving but no
        // line ever completes.
        std::thread::spawn(move || {
            let mut writer = writer;
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) && writer.write_all(b"I").is_ok() {
                sent += 1;
                std::thread::sleep(Duration::from_millis(50)); // the attack's pace
            }
            sent
        })
    };
    let started = Instant::now();
    assert_eq!(conn.line(), None, "slowloris closed");
    let held = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let sent = trickle.join().unwrap();
    assert!(
        held >= Duration::from_millis(450),
        "closed too early: {held:?}"
    );
    assert!(held < Duration::from_secs(5), "held for {held:?}");
    assert!(
        sent >= 5,
        "the trickle kept going while the timeout ran: {sent}"
    );
    assert_still_serving(&herd, "after.slowloris");
}

#[test]
fn a_client_that_never_reads_is_disconnected_not_buffered_for() {
    let herd = Herd::one("Riley")
        .settings("limits", &["write_timeout_ms = 300"])
        .start_one();
    assert_still_serving(&herd, "reader.target");
    // How big one answer is, once the places data has loaded.
    let query = "WHATSAT reader.target 50 20\n";
    let mut answer_len = 0;
    wait_until(Duration::from_secs(30), "a full places answer", || {
        let mut probe = RawClient::connect(port(&herd));
        probe.send(query.as_bytes());
        let mut text = Vec::new();
        while let Some(line) = probe.line() {
            text.extend_from_slice(&line);
            text.push(b'\n');
            if line.is_empty() {
                break;
            }
        }
        answer_len = text.len();
        String::from_utf8_lossy(&text).contains("\"OK\"")
    });
    assert!(answer_len > 1000, "answer of {answer_len} bytes");

    // Ask for ~50 MB of answers and read none of them.
    let count = (50 << 20) / answer_len + 1;
    let mut conn = RawClient::connect(port(&herd));
    let writer = conn.stream.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let asking = std::thread::spawn(move || {
        let mut writer = writer;
        let all = query.repeat(count);
        let _ = writer.write_all(all.as_bytes()); // fails once the server gives up
        let _ = writer.shutdown(Shutdown::Write);
    });
    herd.wait_for_log("Riley", &["not reading answers"]);
    // What did reach us is at most the kernel's buffers, nowhere near all.
    let received = conn.read_to_end().len();
    asking.join().unwrap();
    assert!(
        received < count * answer_len / 4,
        "received {received} of {} bytes",
        count * answer_len
    );
    assert_still_serving(&herd, "after.nonreader");
}

#[test]
fn hinted_handoff_is_bounded_and_the_sync_resends_what_was_dropped() {
    let mut herd = Herd::with_topology(&[("Riley", &["Jaquez"]), ("Jaquez", &["Riley"])])
        .setting("limits", "max_pending_records = 5")
        .build();
    herd.start("Riley");
    // Jaquez is down: Riley holds floods for it, at most 5 clients' worth.
    let answers: Vec<(String, String)> = (0..20)
        .map(|i| {
            let client = format!("held.{i}");
            let answer = herd.ask("Riley", &iamat(&client, "1700000000"));
            (client, answer)
        })
        .collect();
    herd.wait_for_log("Riley", &["more than 5 records held for Jaquez"]);
    // When Jaquez comes back, the catch-up sync delivers every record.
    herd.start("Jaquez");
    for (client, answer) in &answers {
        herd.wait_for_at_line("Jaquez", client, answer);
    }
}

/// Raises this process's open-file limit (the `herd` child inherits it).
fn raise_fd_limit(wanted: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_max < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: wanted,
            };
            // Needs privilege; when refused, the soft limit goes to the hard one.
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return wanted;
            }
        }
        limit.rlim_cur = limit.rlim_max.min(wanted.max(limit.rlim_cur));
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        limit.rlim_cur
    }
}

#[test]
fn ten_thousand_connections_at_once_are_served_or_refused() {
    const TOTAL: usize = 10_000;
    const MAX: usize = 4_000;
    let limit = raise_fd_limit(32_768);
    assert!(
        limit >= (TOTAL + 1_000) as u64,
        "need an open-file limit over {TOTAL}, have {limit}"
    );
    let mut herd = Herd::one("Riley")
        .setting("limits", &format!("max_connections = {MAX}"))
        .setting("herd", "log_lines = false")
        .env("RUST_LOG", "error")
        .build();
    herd.start("Riley");
    let port = port(&herd);

    // Open them all at once from several threads, then talk on each.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                (0..TOTAL / 4)
                    .map(|i| (t * TOTAL / 4 + i, RawClient::connect(port)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut conns: Vec<(usize, RawClient)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(conns.len(), TOTAL);
    for (i, conn) in &mut conns {
        // A refused connection may already be closed: ignore write errors.
        let _ = conn
            .stream
            .write_all(format!("{}\n", iamat(&format!("crowd.{i}"), "1700000000")).as_bytes());
    }
    let (mut served, mut refused) = (0, 0);
    let mut a_served_client = String::new();
    for (i, conn) in &mut conns {
        match conn.text_line() {
            Some(line) if line.starts_with("AT Riley ") => {
                a_served_client = format!("crowd.{i}");
                assert!(line.contains(&format!(" {a_served_client} ")), "{line}");
                served += 1;
            }
            Some(line) if line == "? server busy" => refused += 1,
            other => panic!("connection {i}: unexpected {other:?}"),
        }
    }
    assert_eq!(served + refused, TOTAL);
    // The harness's readiness probe may still hold a slot for a moment.
    assert!(
        (MAX - 5..=MAX).contains(&served),
        "{served} served, {refused} refused"
    );
    drop(conns);
    assert!(herd.is_running("Riley"), "the server survived");
    // Refusals are logged about once a second, not once per connection.
    // Log files are flushed every 100 ms: wait for the first line.
    herd.wait_for_log("Riley", &["refusing"]);
    let lines = herd.log("Riley").matches("refusing").count();
    assert!(
        (1..100).contains(&lines),
        "{lines} refusal lines for {refused} refusals"
    );
    wait_until(Duration::from_secs(30), "Riley to serve again", || {
        let mut conn = RawClient::connect(port);
        conn.send(format!("WHATSAT {a_served_client} 1 1\n").as_bytes());
        conn.text_line()
            .is_some_and(|line| line.starts_with("AT Riley "))
    });
}
