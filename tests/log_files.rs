//! Log files are buffered (SPEC §6, docs/operations.md "Logs"): lines are
//! written in blocks, at least every 100 ms, and once more when the server
//! stops, so a SIGTERM loses none of the client lines it logged.

mod common;

use common::{iamat, Herd};

/// More lines than one block of the log buffer holds, sent at once, all
/// answered, then SIGTERM at once: every line in and every answer out is in
/// the file, the last ones included.
#[test]
fn sigterm_loses_no_logged_client_line() {
    let mut herd = Herd::one("Riley").start_one();
    const LINES: usize = 2_000;
    let mut client = herd.client("Riley");
    let batch: String = (0..LINES)
        .map(|i| iamat(&format!("logged-{i}"), "1700000000.5") + "\n")
        .collect();
    client.send_bytes(batch.as_bytes());
    for _ in 0..LINES {
        assert!(client.read_line().starts_with("AT Riley "));
    }
    assert!(herd.terminate("Riley").success());
    let log = herd.log("Riley");
    for i in [0, LINES / 2, LINES - 1] {
        let client = format!("logged-{i} ");
        let seen = |arrow: &str| {
            log.lines()
                .any(|l| l.contains(arrow) && l.contains(&client))
        };
        assert!(seen(" < IAMAT "), "the line in of {client} is in the file");
        assert!(
            seen(" > AT Riley "),
            "the answer to {client} is in the file"
        );
    }
    let answers = log.lines().filter(|l| l.contains(" > AT Riley ")).count();
    assert_eq!(answers, LINES, "every answer is in the file");
}
