//! `herd.log_format = "json"`: every line of a server's log file, and of
//! its stderr, is one JSON object with time, level, target, server and
//! message; a logged client line also carries the client's address and the
//! direction, and a client's control bytes stay escaped inside the message.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{iamat, signal, wait_until, Herd, RawClient};
use serde_json::Value;

/// What the bad client sends: an escape sequence that would clear an
/// operator's terminal, and a bell.
const BAD_LINE: &[u8] = b"HELLO \x1b[2J\x07 there\n";
/// How `BAD_LINE` reads in a log message (LogText's escapes).
const BAD_LINE_LOGGED: &str = "HELLO \\x1b[2J\\x07 there";

/// Parses each line of `text` as a JSON object, failing on any other line.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
            assert!(value.is_object(), "not an object: {line}");
            value
        })
        .collect()
}

/// `2026-12-02T19:05:01.123456Z`: RFC 3339, UTC, microseconds.
fn is_rfc3339_micros(time: &str) -> bool {
    let bytes = time.as_bytes();
    bytes.len() == 27
        && bytes[4] == b'-'
        && bytes[10] == b'T'
        && bytes[19] == b'.'
        && bytes[26] == b'Z'
        && time[20..26].bytes().all(|b| b.is_ascii_digit())
}

/// The fields every line has, checked; returns the message.
fn check_common_fields<'a>(line: &'a Value, server: &str) -> &'a str {
    let time = line["time"].as_str().unwrap_or_default();
    assert!(is_rfc3339_micros(time), "time {time:?} in {line}");
    assert!(
        ["error", "warn", "info", "debug", "trace"].contains(&line["level"].as_str().unwrap_or("")),
        "level in {line}"
    );
    assert!(line["target"].is_string(), "target in {line}");
    assert_eq!(line["server"], server, "server in {line}");
    let message = line["message"]
        .as_str()
        .unwrap_or_else(|| panic!("message in {line}"));
    assert!(
        !message.starts_with(&format!("{server}:")),
        "the server prefix stays out of the message: {line}"
    );
    message
}

/// The line logs (those with a direction) of `lines`, as (direction, addr, message).
fn line_logs(lines: &[Value]) -> Vec<(String, String, String)> {
    lines
        .iter()
        .filter(|line| line.get("direction").is_some())
        .map(|line| {
            assert_eq!(line["target"], "connection", "{line}");
            assert_eq!(line["level"], "info", "{line}");
            let text = |key: &str| line[key].as_str().unwrap_or_default().to_string();
            (text("direction"), text("addr"), text("message"))
        })
        .collect()
}

#[test]
fn a_servers_log_file_is_json_lines_with_the_client_address_and_direction() {
    let mut herd = Herd::one("Riley")
        .setting("herd", "log_format = \"json\"")
        .build();
    herd.start("Riley");
    let mut client = RawClient::connect(herd.ports("Riley").client);
    let addr = client
        .stream
        .local_addr()
        .expect("local address")
        .to_string();
    let line = iamat("json.logs", "1700000000.5");
    client.send(format!("{line}\n").as_bytes());
    let answer = client.text_line().expect("an AT answer");
    assert!(answer.starts_with("AT Riley "), "{answer}");
    client.send(BAD_LINE);
    let refused = client.line().expect("a ? answer");
    assert_eq!(refused, [b"? ", &BAD_LINE[..BAD_LINE.len() - 1]].concat());

    // The answer to the bad line is logged last; the file is flushed every
    // 100 ms and at exit.
    let answer_logged = format!("? {}", BAD_LINE_LOGGED.replace('\\', "\\\\"));
    herd.wait_for_log("Riley", &[&answer_logged]);
    assert!(herd.terminate("Riley").success());

    let raw = herd.log_bytes("Riley");
    assert!(
        !raw.iter().any(|b| *b < 0x20 && *b != b'\n'),
        "no raw control byte in the log file"
    );
    let lines = json_lines(&String::from_utf8(raw).expect("UTF-8"));
    for line in &lines {
        check_common_fields(line, "Riley");
    }
    let logged = line_logs(&lines);
    let expected = [
        ("in", format!("{addr} < {line}")),
        ("out", format!("{addr} > {answer}")),
        ("in", format!("{addr} < {BAD_LINE_LOGGED}")),
        ("out", format!("{addr} > ? {BAD_LINE_LOGGED}")),
    ];
    assert_eq!(logged.len(), expected.len(), "{logged:?}");
    for ((direction, from, message), (want_direction, want_message)) in
        logged.iter().zip(expected.iter())
    {
        assert_eq!(direction, want_direction);
        assert_eq!(from, &addr);
        assert_eq!(message, want_message);
    }
    // Lines that are not line logs have no direction and no address.
    let connected = lines
        .iter()
        .find(|l| l["message"] == format!("client {addr} connected"))
        .expect("the connection is logged");
    assert_eq!(connected["target"], "connection");
    assert_eq!(connected.get("addr"), None);
}

/// A child process killed when dropped still running.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn stderr_is_json_lines_too() {
    let herd = Herd::one("Riley")
        .setting("herd", "log_format = \"json\"")
        .build();
    let child = Command::new(env!("CARGO_BIN_EXE_herd"))
        .arg("--config")
        .arg(&herd.config)
        .arg("Riley")
        .current_dir(herd.dir.path())
        .env("RUST_LOG", "info")
        .env("HOME", herd.dir.path())
        .env_remove("HERD_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start herd");
    // Killed if the test fails before it stops the server itself.
    let mut child = KillOnDrop(Some(child));
    let port = herd.ports("Riley").client;
    let mut client = None;
    wait_until(Duration::from_secs(20), "Riley accepting", || {
        client = std::net::TcpStream::connect(("127.0.0.1", port)).ok();
        client.is_some()
    });
    drop(client);
    let mut client = RawClient::connect(port);
    let addr = client
        .stream
        .local_addr()
        .expect("local address")
        .to_string();
    client.send(BAD_LINE);
    client.line().expect("a ? answer");
    let running = child.0.as_mut().expect("running");
    signal(running, "TERM");
    // A few dozen lines: the pipe holds them all while the server stops.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while running.try_wait().expect("wait").is_none() {
        assert!(std::time::Instant::now() < deadline, "herd did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child
        .0
        .take()
        .expect("stopped")
        .wait_with_output()
        .expect("stderr");
    let stderr = String::from_utf8(output.stderr).expect("UTF-8");
    let lines = json_lines(&stderr);
    let logged = line_logs(&lines);
    assert_eq!(
        logged,
        [
            (
                "in".into(),
                addr.clone(),
                format!("{addr} < {BAD_LINE_LOGGED}")
            ),
            (
                "out".into(),
                addr.clone(),
                format!("{addr} > ? {BAD_LINE_LOGGED}")
            ),
        ],
        "{stderr}"
    );
    for line in lines.iter().filter(|l| l.get("server").is_some()) {
        check_common_fields(line, "Riley");
    }
    // The shutdown line is no server's: it has no server field.
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "shutting down" && l.get("server").is_none()),
        "{stderr}"
    );
}

#[test]
fn an_unknown_log_format_is_refused_at_start_naming_the_key() {
    let herd = Herd::one("Riley")
        .setting("herd", "log_format = \"yaml\"")
        .build();
    let output = herd.run_to_exit("Riley", &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("log_format") && stderr.contains("yaml"),
        "{stderr}"
    );
}
