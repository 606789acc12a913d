//! `limits.record_ttl_ms` (SPEC §6, §7): a record is dropped on every server
//! once that long has passed since its origin received it. Real server
//! processes on loopback.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{iamat, metric_sample, metrics_text, wait_until, Client, Herd};

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
    metric_sample(&metrics_text(herd, name), "herd_records_expired_total", "").unwrap_or(0.0)
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
    for name in herd.names() {
        herd.wait_for_at_line(&name, "short.lived", &answer);
    }
    let asked = "? WHATSAT short.lived 1 1";
    for name in herd.names() {
        wait_until(
            Duration::from_secs(10),
            &format!("{name} to forget it"),
            || whatsat(&herd, &name, "short.lived") == asked,
        );
        assert!(expired_total(&herd, &name) >= 1.0, "{name} counted it");
        let records = metric_sample(&metrics_text(&herd, &name), "herd_records", "");
        assert_eq!(records, Some(0.0), "{name} holds no record");
    }
}
