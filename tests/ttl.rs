//! `limits.record_ttl_ms` (SPEC §6, §7): a record is dropped on every server
//! once that long has passed since its origin received it. Real server
//! processes on loopback.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{iamat, memory_kib, wait_until, Client, Herd};

/// The answer to `WHATSAT client 1 1` at `name`: its first line.
fn whatsat(herd: &Herd, name: &str, client: &str) -> String {
    let mut c = Client::connect(herd.ports(name).client);
    c.send(&format!("WHATSAT {client} 1 1"));
    let first = c.read_line();
    if !first.starts_with("? ") {
        c.read_until_blank();
    }
    first
}

fn expired_total(herd: &Herd, name: &str) -> f64 {
    herd.metric(name, "herd_records_expired_total", "")
        .unwrap_or(0.0)
}

#[test]
fn a_record_is_gone_from_every_server_once_its_ttl_has_passed() {
    let mut herd = Herd::five()
        .setting("limits", "record_ttl_ms = 1500")
        .build();
    herd.start_each();
    herd.wait_links_up();
    for name in herd.names() {
        assert_eq!(expired_total(&herd, &name), 0.0, "{name}");
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let time = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
    let answer = herd.ask("Riley", &iamat("short.lived", &time));
    assert!(answer.starts_with("AT Riley +"), "{answer}");
    // Every other server received it: a wait for it to be answered there
    // would race the 1.5 s it has to live.
    for name in herd.names().iter().filter(|n| *n != "Riley") {
        wait_until(
            Duration::from_secs(10),
            &format!("{name} to receive it"),
            || herd.metric(name, "herd_floods_received_total", "") >= Some(1.0),
        );
    }
    let asked = "? WHATSAT short.lived 1 1";
    for name in herd.names() {
        wait_until(
            Duration::from_secs(10),
            &format!("{name} to forget it"),
            || whatsat(&herd, &name, "short.lived") == asked,
        );
        assert!(expired_total(&herd, &name) >= 1.0, "{name} counted it");
        let records = herd.metric(&name, "herd_records", "");
        assert_eq!(records, Some(0.0), "{name} holds no record");
    }
}

#[test]
fn an_expired_record_in_the_journal_is_not_taken_back_at_restart() {
    let mut herd = Herd::one("Solo")
        .setting("herd", "data_dir = \"data\"")
        .setting("limits", "record_ttl_ms = 1500")
        .build();
    herd.restart("Solo");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let time = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
    let answer = herd.ask("Solo", &iamat("journalled", &time));
    assert!(answer.starts_with("AT Solo +0."), "{answer}");
    // SIGTERM commits the journal; the record is on disk.
    assert!(herd.terminate("Solo").success());
    // Past the TTL (the diff, under a second, is in the margin).
    let expiry = now + Duration::from_millis(1500 + 1000);
    while SystemTime::now().duration_since(UNIX_EPOCH).unwrap() < expiry {
        std::thread::sleep(Duration::from_millis(20));
    }
    herd.restart("Solo");
    assert_eq!(
        whatsat(&herd, "Solo", "journalled"),
        "? WHATSAT journalled 1 1"
    );
    assert_eq!(herd.metric("Solo", "herd_records", ""), Some(0.0));
    assert_eq!(
        herd.metric("Solo", "herd_records_expired_total", ""),
        Some(1.0),
        "left out of the journal once, at load"
    );
    herd.wait_for_log("Solo", &["Solo: 1 expired records in the journal left out"]);
}

/// 100,000 clients, then nothing: once their records have expired, the
/// server gives the memory they held back to the system (both allocators:
/// the binary's mimalloc and glibc's malloc, src/server.rs), so its resident
/// size falls back at least halfway instead of staying at its peak.
#[test]
fn memory_held_by_expired_records_is_given_back() {
    let herd = Herd::one("Riley")
        .setting("limits", "record_ttl_ms = 2000")
        .setting("herd", "log_lines = false")
        .start_one();
    let pid = herd.pid("Riley");
    let started = memory_kib(pid, "VmRSS");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let time = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
    let mut client = herd.client("Riley");
    const BATCHES: usize = 50;
    const LINES: usize = 2_000;
    for batch in 0..BATCHES {
        let lines: String = (0..LINES)
            .map(|i| iamat(&format!("churn-{batch}-{i}"), &time) + "\n")
            .collect();
        client.send_bytes(lines.as_bytes());
        for _ in 0..LINES {
            assert!(client.read_line().starts_with("AT Riley "));
        }
    }
    let loaded = memory_kib(pid, "VmRSS");
    assert!(
        loaded > started + 10 * 1024,
        "100,000 records take memory: {started} -> {loaded} KiB"
    );
    wait_until(Duration::from_secs(20), "every record to expire", || {
        herd.metric("Riley", "herd_records", "") == Some(0.0)
    });
    // At least half of what they took (without giving back, the resident
    // size stayed above its loaded peak).
    let given_back = || memory_kib(pid, "VmRSS") < started + (loaded - started) / 2;
    wait_until(
        Duration::from_secs(10),
        "the memory of the expired records to be given back",
        given_back,
    );
}
