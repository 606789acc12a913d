//! Log files are buffered (SPEC §6, docs/operations.md "Logs"): lines are
//! written in blocks, at least every 100 ms, and once more when the server
//! stops, so a SIGTERM loses none of the client lines it logged. What a
//! file gains is written to disk and dropped from the page cache.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{iamat, wait_until, Client, Herd};

/// Sends `count` IAMATs for clients `<prefix><i>` in one write, then reads
/// every answer.
fn pipeline_iamats(client: &mut Client, prefix: &str, count: usize) {
    let batch: String = (0..count)
        .map(|i| iamat(&format!("{prefix}{i}"), "1700000000.5") + "\n")
        .collect();
    client.send_bytes(batch.as_bytes());
    for _ in 0..count {
        assert!(client.read_line().starts_with("AT Riley "));
    }
}

/// More lines than one block of the log buffer holds, sent at once, all
/// answered, then SIGTERM at once: every line in and every answer out is in
/// the file, the last ones included.
#[test]
fn sigterm_loses_no_logged_client_line() {
    let mut herd = Herd::one("Riley").start_one();
    const LINES: usize = 2_000;
    let mut client = herd.client("Riley");
    pipeline_iamats(&mut client, "logged-", LINES);
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

/// Bytes of `path` held in the page cache (util-linux `fincore`).
fn cached_bytes(path: &Path) -> u64 {
    let out = Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .expect("fincore (util-linux) runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("fincore's answer: {out:?}"))
}

/// About 15 MB of log lines: once in the file, they are written out and
/// leave the page cache within a few flushes (every 100 ms), where a cached
/// log of a busy server would take gigabytes.
#[test]
fn a_log_file_leaves_the_page_cache_once_written_out() {
    let herd = Herd::one("Riley").start_one();
    const BATCHES: usize = 20;
    const LINES: usize = 2_000;
    let mut client = herd.client("Riley");
    for batch in 0..BATCHES {
        pipeline_iamats(&mut client, &format!("cached-{batch}-"), LINES);
    }
    // Not read before it is measured: reading would cache it again.
    let path = herd.log_path("Riley");
    let size = || std::fs::metadata(&path).map_or(0, |m| m.len());
    wait_until(
        Duration::from_secs(10),
        "over 10 MB of log to leave the page cache",
        || size() > 10_000_000 && cached_bytes(&path) < 1 << 20,
    );
    let last = format!("cached-{}-{} ", BATCHES - 1, LINES - 1);
    herd.wait_for_log("Riley", &[&last]);
}
