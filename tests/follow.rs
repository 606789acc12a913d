//! Following one update through the herd (SPEC §6): each server's log has
//! one line per update it took in as new, saying where it came from and
//! where it went. Real server processes on loopback.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{iamat, wait_until, Herd};

/// The info lines of `name`'s log about the update of `client` at `time`.
fn update_lines(herd: &Herd, name: &str, client: &str, time: &str) -> Vec<String> {
    let log = herd.log(name);
    let key = format!(" store: {name}: {client} {time} from ");
    log.lines()
        .filter(|l| l.contains(" INFO ") && l.contains(&key))
        .map(|l| l.split_once(&key).map_or("", |(_, rest)| rest).to_string())
        .collect()
}

/// `Riley, new, sent to Jaquez, Juzang` -> ("Riley", ["Jaquez", "Juzang"]).
fn parse(rest: &str) -> (String, Vec<String>) {
    let (from, to) = rest
        .split_once(", new, sent to ")
        .unwrap_or_else(|| panic!("not an update line: {rest}"));
    let to = match to {
        "nobody" => Vec::new(),
        to => to.split(", ").map(str::to_string).collect(),
    };
    (from.to_string(), to)
}

#[test]
fn one_iamat_is_one_line_in_each_log_naming_where_it_came_from_and_went() {
    let mut herd = Herd::five().build();
    herd.start_each();
    herd.wait_links_up();
    let (client, time) = ("follow.me", "1700000000.123456789");
    let answer = herd.ask("Riley", &iamat(client, time));
    for name in herd.names() {
        herd.wait_for_at_line(&name, client, &answer);
    }
    let names = herd.names();
    let all_logged = || {
        names
            .iter()
            .all(|n| !update_lines(&herd, n, client, time).is_empty())
    };
    wait_until(
        Duration::from_secs(10),
        "every server to log the update",
        all_logged,
    );
    // The same IAMAT again: answered, stale everywhere; a later update from
    // Riley travels the same links, so once it is logged everywhere the
    // repeat would have been too.
    herd.ask("Riley", &iamat(client, time));
    let barrier_time = "1700000001";
    let barrier = herd.ask("Riley", &iamat("barrier", barrier_time));
    for name in herd.names() {
        herd.wait_for_at_line(&name, "barrier", &barrier);
    }
    let barrier_logged = || {
        names
            .iter()
            .all(|n| !update_lines(&herd, n, "barrier", barrier_time).is_empty())
    };
    wait_until(
        Duration::from_secs(10),
        "every server to log the barrier",
        barrier_logged,
    );

    let mut lines = std::collections::BTreeMap::new();
    for name in herd.names() {
        let found = update_lines(&herd, &name, client, time);
        assert_eq!(found.len(), 1, "{name}: exactly one line: {found:?}");
        lines.insert(name, parse(&found[0]));
    }
    assert_eq!(lines["Riley"].0, "a client");
    // Down Riley's tree: every server got it from a neighbour whose own line
    // says it sent it there, and every neighbour named as a recipient got
    // it from the server that names it.
    for (name, (from, to)) in &lines {
        if name != "Riley" {
            let sender = lines
                .get(from)
                .unwrap_or_else(|| panic!("{name}: from {from}, not a server"));
            assert!(sender.1.contains(name), "{name} from {from}: {lines:?}");
        }
        for next in to {
            assert_eq!(&lines[next].0, name, "{name} sent to {next}: {lines:?}");
        }
    }
    // Riley's tree reaches the four others in n-1 receptions.
    let sent: usize = lines.values().map(|(_, to)| to.len()).sum();
    assert_eq!(sent, 4, "{lines:?}");
}

#[test]
fn herdctl_trace_prints_the_path_from_the_origin_with_each_hops_delay() {
    let mut herd = Herd::five().build();
    herd.start_each();
    herd.wait_links_up();
    let answer = herd.ask("Bernard", &iamat("traced", "1700000000.5"));
    for name in herd.names() {
        herd.wait_for_at_line(&name, "traced", &answer);
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_herdctl"))
        .arg("--config")
        .arg(&herd.config)
        .args(["--server", "Campbell", "trace", "traced"])
        .env("HOME", common::dir_of(&herd))
        .env_remove("HERD_ADMIN_TOKEN")
        .output()
        .expect("run herdctl");
    let text = common::stdout_of(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "the record and five servers:\n{text}");
    assert_eq!(lines[0], format!("traced: {answer}"));
    assert!(lines[1].starts_with("Bernard from a client at "), "{text}");
    // Every other server, indented under the server it names, with a delay;
    // Bernard's neighbours (Jaquez, Juzang, Campbell) one level down, Riley
    // two (under Jaquez or Juzang).
    let mut depth = BTreeMap::from([("Bernard".to_string(), 0)]);
    let mut last = vec!["Bernard".to_string()];
    for line in &lines[2..] {
        let indent = line.len() - line.trim_start().len();
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields.len() >= 5, "{line}");
        let (name, from, delay) = (fields[0], fields[2], fields[3]);
        assert_eq!(fields[1], "from", "{line}");
        assert_eq!(fields[4], "ms", "{line}");
        assert!(
            delay.parse::<f64>().is_ok() && delay.starts_with(['+', '-']),
            "{line}"
        );
        assert_eq!(indent % 2, 0, "{line}");
        let level = indent / 2;
        assert_eq!(
            last.get(level - 1).map(String::as_str),
            Some(from),
            "{text}"
        );
        last.truncate(level);
        last.push(name.to_string());
        depth.insert(name.to_string(), level);
    }
    let expected = [
        ("Bernard", 0),
        ("Campbell", 1),
        ("Jaquez", 1),
        ("Juzang", 1),
        ("Riley", 2),
    ];
    let expected: BTreeMap<String, usize> =
        expected.iter().map(|(n, d)| (n.to_string(), *d)).collect();
    assert_eq!(depth, expected, "{text}");
}
