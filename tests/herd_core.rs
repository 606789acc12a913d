//! The herd core (SPEC §1-§4, §6) with real server processes on loopback.

mod common;

use std::time::Duration;

use common::{iamat, wait_until, Client, Herd};

#[test]
fn iamat_at_riley_is_answered_identically_by_campbell() {
    let mut herd = Herd::five().build();
    herd.start_each();
    let answer = herd.ask("Riley", &iamat("kiwi.cs.ucla.edu", "1621464827.959498503"));
    assert!(answer.starts_with("AT Riley +"), "{answer}");
    assert!(answer.ends_with(" kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503"));
    herd.wait_for_at_line("Campbell", "kiwi.cs.ucla.edu", &answer);
    let mut client = herd.client("Campbell");
    client.send("WHATSAT kiwi.cs.ucla.edu 10 3");
    assert_eq!(client.read_line(), answer);
    let json: serde_json::Value =
        serde_json::from_str(&client.read_until_blank()).expect("places JSON");
    assert_eq!(json["status"], "OK");
    assert!(json["results"].as_array().is_some_and(|r| !r.is_empty() && r.len() <= 3));
}

#[test]
fn all_in_one_mode_floods_between_threads() {
    let mut herd = Herd::five().build();
    herd.start_all_in_one();
    let answer = herd.ask("Bernard", &iamat("one.process", "1700000000.5"));
    assert!(answer.starts_with("AT Bernard +"), "{answer}");
    for name in ["Riley", "Jaquez", "Juzang", "Campbell"] {
        herd.wait_for_at_line(name, "one.process", &answer);
    }
    let mut client = herd.client("Riley");
    client.send("WHATSAT nobody.knows 10 3");
    assert_eq!(client.read_line(), "? WHATSAT nobody.knows 10 3");
    wait_until(Duration::from_secs(5), "Riley's log file to show the lines", || {
        std::fs::read_to_string(herd.log_path("Riley"))
            .is_ok_and(|log| log.contains("WHATSAT nobody.knows 10 3"))
    });
    let _ = Client::connect(herd.ports("Riley").client);
}
