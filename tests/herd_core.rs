//! The herd core (SPEC §1-§4, §6) with real server processes on loopback;
//! what one client sees of one server, with a server in the test process.

mod common;

use std::time::Duration;

use common::{herd_sum, iamat, wait_until, Client, Herd};

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
    assert!(json["results"]
        .as_array()
        .is_some_and(|r| !r.is_empty() && r.len() <= 3));
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
    herd.wait_for_log("Riley", &["WHATSAT nobody.knows 10 3"]);
    let _ = Client::connect(herd.ports("Riley").client);
}

#[test]
fn stale_updates_are_echoed_but_applied_nowhere() {
    let mut herd = Herd::five().build();
    herd.start_each();
    let newest = herd.ask("Riley", &iamat("stale.test", "1700000100"));
    for name in herd.names() {
        herd.wait_for_at_line(&name, "stale.test", &newest);
    }
    // Older by one nanosecond, at the far side of the herd: still echoed.
    let echo = herd.ask("Bernard", &iamat("stale.test", "1700000099.999999999"));
    assert!(echo.starts_with("AT Bernard "), "{echo}");
    assert!(echo.ends_with(" stale.test +34.068930-118.445127 1700000099.999999999"));
    // A later update from Bernard travels the same links; once it is
    // everywhere, anything the stale one could have caused would be too.
    let barrier = herd.ask("Bernard", &iamat("barrier", "1700000200"));
    for name in herd.names() {
        herd.wait_for_at_line(&name, "barrier", &barrier);
        assert_eq!(
            herd.whatsat_at_line(&name, "stale.test").as_deref(),
            Some(&*newest)
        );
    }
}

#[test]
fn equal_times_at_three_servers_converge_to_one_winner() {
    let mut herd = Herd::five().build();
    herd.start_each();
    let time = "1700000000.123456789";
    let answers: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["Campbell", "Juzang", "Riley"]
            .iter()
            .map(|name| {
                let herd = &herd;
                scope.spawn(move || herd.ask(name, &iamat("tie", time)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // The fixed total order: equal client times, then the whole line; "AT Riley" sorts last.
    let winner = answers.iter().max().unwrap().clone();
    assert!(winner.starts_with("AT Riley "), "{winner}");
    for name in herd.names() {
        herd.wait_for_at_line(&name, "tie", &winner);
    }
}

#[test]
fn killed_servers_are_routed_around_and_restarted_ones_catch_up() {
    let mut herd = Herd::five().build();
    herd.start_each();
    // Juzang down: Riley still reaches Campbell through Jaquez and Bernard.
    herd.kill("Juzang");
    let first = herd.ask("Riley", &iamat("around.the.gap", "1700000001"));
    herd.wait_for_at_line("Campbell", "around.the.gap", &first);
    // Bernard down too: Riley and Jaquez are cut off from Campbell.
    herd.kill("Bernard");
    let second = herd.ask("Riley", &iamat("cut.off", "1700000002"));
    herd.wait_for_at_line("Jaquez", "cut.off", &second);
    let from_campbell = herd.ask("Campbell", &iamat("other.side", "1700000003"));
    // A barrier on each side proves what did not cross.
    let barrier = herd.ask("Riley", &iamat("barrier.riley", "1700000004"));
    herd.wait_for_at_line("Jaquez", "barrier.riley", &barrier);
    assert_eq!(herd.whatsat_at_line("Campbell", "cut.off"), None);
    assert_eq!(herd.whatsat_at_line("Riley", "other.side"), None);
    assert_eq!(herd.whatsat_at_line("Jaquez", "other.side"), None);
    // Both come back empty; catch-up sync refills everyone without new updates.
    herd.start("Juzang");
    herd.start("Bernard");
    for name in herd.names() {
        herd.wait_for_at_line(&name, "around.the.gap", &first);
        herd.wait_for_at_line(&name, "cut.off", &second);
        herd.wait_for_at_line(&name, "other.side", &from_campbell);
    }
}

#[test]
fn a_server_started_late_catches_up_without_new_traffic() {
    let mut herd = Herd::five().build();
    for name in ["Riley", "Jaquez", "Juzang", "Bernard"] {
        herd.start(name);
    }
    let answers: Vec<String> = (0..50)
        .map(|i| herd.ask("Riley", &iamat(&format!("early.{i}"), "1700000000")))
        .collect();
    herd.wait_for_at_line("Bernard", "early.49", &answers[49]);
    herd.start("Campbell");
    for (i, answer) in answers.iter().enumerate() {
        herd.wait_for_at_line("Campbell", &format!("early.{i}"), answer);
    }
}

#[test]
fn pipelined_requests_from_many_clients_are_answered_in_order() {
    let mut herd = Herd::with_topology(&[("Riley", &["Jaquez"]), ("Jaquez", &["Riley"])]).build();
    herd.start_each();
    let port = herd.ports("Riley").client;
    std::thread::scope(|scope| {
        for c in 0..20 {
            scope.spawn(move || {
                let mut client = Client::connect(port);
                let mut batch = String::new();
                for i in 0..50 {
                    match i % 3 {
                        0 => batch.push_str(&format!(
                            "{}\n",
                            iamat(&format!("p{c}.{i}"), &format!("17000000{i:02}"))
                        )),
                        1 => batch.push_str(&format!("BOGUS {c} {i}\n")),
                        _ => batch.push_str(&format!("WHATSAT p{c}.{} 5 1\n", i - 2)),
                    }
                }
                client.send_bytes(batch.as_bytes());
                for i in 0..50 {
                    let line = client.read_line();
                    match i % 3 {
                        0 => assert!(
                            line.starts_with("AT Riley ") && line.contains(&format!(" p{c}.{i} ")),
                            "{line}"
                        ),
                        1 => assert_eq!(line, format!("? BOGUS {c} {i}")),
                        _ => {
                            assert!(line.contains(&format!(" p{c}.{} ", i - 2)), "{line}");
                            let json: serde_json::Value =
                                serde_json::from_str(&client.read_until_blank()).unwrap();
                            assert!(json["results"].as_array().is_some_and(|r| r.len() <= 1));
                        }
                    }
                }
            });
        }
    });
}

#[test]
fn last_line_before_half_close_is_answered_then_closed() {
    let herd = Herd::one("Riley").start_in_process();
    let mut client = herd.client("Riley");
    client.send_bytes(b"HELLO\r\nIAMAT half.close +1+2 3");
    client.half_close();
    assert_eq!(client.read_line(), "? HELLO");
    let last = client.read_line();
    assert!(
        last.starts_with("AT Riley ") && last.ends_with(" half.close +1+2 3"),
        "{last}"
    );
    assert!(client.read_to_end().is_empty());
}

#[test]
fn overlong_line_gets_a_question_mark_and_a_clean_close() {
    let herd = Herd::one("Riley").start_in_process();
    let mut client = herd.client("Riley");
    client.send(&iamat("before", "5"));
    assert!(client.read_line().starts_with("AT Riley "));
    // A megabyte without a newline, then more lines that must be ignored.
    client.send_bytes(&vec![b'x'; 1 << 20]);
    let _ = client.writer_write(b"\nIAMAT after +1+1 1\n");
    assert_eq!(client.read_line(), "?");
    assert!(client.read_to_end().is_empty(), "closed after the ? answer");
    assert_eq!(herd.whatsat_at_line("Riley", "after"), None);
    assert!(herd.whatsat_at_line("Riley", "before").is_some());
}

#[test]
fn sigterm_stops_a_server_cleanly() {
    let mut herd = Herd::with_topology(&[("Riley", &["Jaquez"]), ("Jaquez", &["Riley"])]).build();
    herd.start_each();
    let status = herd.terminate("Riley");
    assert!(status.success(), "{status:?}");
    // Its neighbour keeps serving.
    assert!(herd
        .ask("Jaquez", &iamat("still.here", "1"))
        .starts_with("AT Jaquez "));
}

/// SPEC §8: while all links are up, an update is received n−1 times, once
/// by each other server, whatever the topology. Flooding along every link
/// (`herd.forwarding = "flood"`) receives it 8 times in SPEC §1's herd (and
/// would 16 times in a mesh of 5).
#[test]
fn every_update_is_received_once_by_each_other_server() {
    let names = ["Riley", "Jaquez", "Juzang", "Campbell", "Bernard"];
    let mesh: Vec<(&str, Vec<&str>)> = names
        .iter()
        .map(|&n| (n, names.iter().copied().filter(|&o| o != n).collect()))
        .collect();
    let mesh: Vec<(&str, &[&str])> = mesh.iter().map(|(n, o)| (*n, o.as_slice())).collect();
    let flood = Herd::five().setting("herd", "forwarding = \"flood\"");
    for (builder, receptions) in [
        (Herd::five(), 4.0),
        (Herd::with_topology(&mesh), 4.0),
        (flood, 8.0),
    ] {
        let mut herd = builder.build();
        herd.start_each();
        herd.wait_links_up();
        const EACH: usize = 40;
        for origin in herd.names() {
            let mut client = herd.client(&origin);
            for i in 0..EACH {
                client.send(&iamat(&format!("tree-{origin}-{i}"), "1700000000.5"));
                assert!(client.read_line().starts_with("AT "));
            }
        }
        let updates = (EACH * names.len()) as f64;
        let others = (names.len() - 1) as f64;
        wait_until(
            Duration::from_secs(20),
            "every update at every server",
            || {
                herd_sum(
                    &herd,
                    "herd_updates_total",
                    ",source=\"peer\",result=\"new\"",
                ) == updates * others
            },
        );
        // Stale copies of a flood may still be on their way.
        wait_until(Duration::from_secs(20), "every copy received", || {
            herd_sum(&herd, "herd_floods_received_total", "") >= updates * receptions
        });
        assert_eq!(
            herd_sum(&herd, "herd_floods_received_total", ""),
            updates * receptions,
            "receptions per update"
        );
    }
}
