//! Trust (SPEC §3, §4, §7): what a client, a neighbour or a stored record
//! can no longer do to the herd, each against real `herd` processes (one
//! client against one server: a server in the test process).
//!
//! - the line that once crashed every server (an AT line whose location has
//!   65,500 leading zeros) through a client, a neighbour and the journal;
//! - a time far in the future, which would pin a client's record for good;
//! - the same IAMAT sent twice, stored and flooded once;
//! - blank lines, which must not keep an idle connection alive;
//! - control bytes, which must reach the log escaped;
//! - zero configuration: servers of one user share a secret that they make
//!   themselves, and a name alone no longer gets a neighbour in;
//! - secrets too short to be secret, and secret files that are not a
//!   private regular file of the server's user (a FIFO, a folder, another
//!   user's, a readable one), refused at start;
//! - HTTP on the client port (a web page's `fetch`): closed at once, and
//!   nothing in the request is stored;
//! - strangers at the peer port: their names reach the log escaped, and
//!   their refusals are rate-limited.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{dir_of, iamat, wait_until, Herd, RawClient};

const PAIR: &[(&str, &[&str])] = &[("Riley", &["Jaquez"]), ("Jaquez", &["Riley"])];

/// `+` 65,500 zeros `1-1`: the location of the line that crashed the herd.
fn padded_location() -> String {
    format!("+{}1-1", "0".repeat(65_500))
}

/// The server still serves: a fresh IAMAT is answered and found by WHATSAT.
fn assert_serving(herd: &Herd, server: &str, client: &str) {
    let at = herd.ask(server, &iamat(client, "1700000000.5"));
    assert!(at.starts_with(&format!("AT {server} ")), "{at:?}");
    assert_eq!(herd.whatsat_at_line(server, client).as_deref(), Some(&*at));
}

#[test]
fn the_crash_line_from_a_client_is_refused_even_when_lines_may_be_long() {
    let mut herd = Herd::with_topology(PAIR)
        .setting("limits", "max_line_bytes = 100000")
        .build();
    herd.start_each();
    let line = format!("IAMAT pin.client {} 1", padded_location());
    let mut client = RawClient::connect(herd.ports("Riley").client);
    client.send(format!("{line}\n").as_bytes());
    assert_eq!(client.line(), Some(format!("? {line}").into_bytes()));
    client.send(b"WHATSAT pin.client 10 5\n");
    assert_eq!(
        client.text_line().as_deref(),
        Some("? WHATSAT pin.client 10 5")
    );
    assert_serving(&herd, "Riley", "after.client");
    assert_serving(&herd, "Jaquez", "after.client.j");
    assert!(herd.is_running("Riley") && herd.is_running("Jaquez"));
}

/// A neighbour's link in the explicit insecure mode (names only, plain
/// lines), so the test can speak it without the herd secret: what a
/// neighbour sends is checked whatever the link's security.
fn insecure_link_to_riley(herd: &Herd) -> TcpStream {
    let mut wire = TcpStream::connect(("127.0.0.1", herd.ports("Riley").peer)).expect("peer port");
    wire.set_read_timeout(Some(Duration::from_secs(10))).ok();
    wire.write_all(
        b"HELLO Jaquez Riley 00112233445566778899aabbccddeeff 2-2 0123456789abcdef link\n",
    )
    .expect("HELLO");
    let mut reader = BufReader::new(wire.try_clone().expect("clone"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("CHALLENGE");
    assert!(line.starts_with("CHALLENGE "), "{line:?}");
    wire.write_all(b"PROOF -\n").expect("PROOF");
    line.clear();
    reader.read_line(&mut line).expect("WELCOME");
    assert_eq!(line.trim_end(), "WELCOME -");
    wire
}

#[test]
fn the_crash_line_from_a_neighbour_is_refused_counted_and_logged() {
    let mut herd = Herd::with_topology(PAIR)
        .setting("herd", "insecure_peers = true")
        .build();
    herd.start("Riley");
    let mut wire = insecure_link_to_riley(&herd);
    let crash = format!("AT Jaquez +0.000000000 pin.peer {} 1\n", padded_location());
    let short = format!(
        "AT Jaquez +0.000000000 pin.short +{}1-1 1\n",
        "0".repeat(1000)
    );
    let good = "AT Jaquez +0.000000000 good.peer +1-1 1700000000\n";
    wire.write_all(short.as_bytes()).expect("send");
    wire.write_all(good.as_bytes()).expect("send");
    herd.wait_for_at_line("Riley", "good.peer", good.trim_end());
    assert_eq!(herd.whatsat_at_line("Riley", "pin.short"), None);
    assert_eq!(
        herd.metric("Riley", "herd_records_refused_total", ""),
        Some(1.0)
    );
    herd.wait_for_log("Riley", &["refused a record from Jaquez"]);
    // The very line, over a fresh link (a line this long may end the link).
    let mut wire = insecure_link_to_riley(&herd);
    let _ = wire.write_all(crash.as_bytes());
    let _ = wire.write_all(b"AT Jaquez +0.000000000 after.crash +1-1 1700000000\n");
    wait_until(
        Duration::from_secs(10),
        "the crash line to be dealt with",
        || {
            herd.metric("Riley", "herd_records_refused_total", "")
                .is_some_and(|n| n >= 2.0)
        },
    );
    assert_eq!(herd.whatsat_at_line("Riley", "pin.peer"), None);
    assert_serving(&herd, "Riley", "after.peer");
}

#[test]
fn the_crash_line_in_the_journal_is_skipped_and_logged_at_start() {
    let mut herd = Herd::with_topology(PAIR)
        .setting("herd", "data_dir = \"data\"")
        .build();
    herd.start("Riley");
    herd.ask("Riley", &iamat("kept", "1700000000"));
    herd.terminate("Riley");
    // What a server of an older version, or a corrupted disk, left behind.
    let path = dir_of(&herd).join("data/Riley/records.redb");
    {
        const RECORDS: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("records");
        let db = redb::Database::open(&path).expect("open the journal");
        let tx = db.begin_write().expect("write");
        {
            let mut table = tx.open_table(RECORDS).expect("table");
            let crash = format!("AT Jaquez +0.000000000 pin.disk {} 1", padded_location());
            table
                .insert(&b"pin.disk"[..], crash.as_bytes())
                .expect("insert");
            let future = "AT Jaquez +0.000000000 pin.future +1-1 18446744073709551615";
            table
                .insert(&b"pin.future"[..], future.as_bytes())
                .expect("insert");
        }
        tx.commit().expect("commit");
    }
    herd.restart("Riley");
    assert_eq!(herd.whatsat_at_line("Riley", "pin.disk"), None);
    assert_eq!(herd.whatsat_at_line("Riley", "pin.future"), None);
    assert!(herd.whatsat_at_line("Riley", "kept").is_some());
    herd.wait_for_log("Riley", &["skipping an invalid stored record"]);
    herd.wait_for_log(
        "Riley",
        &["refused a record from the journal (time too far ahead"],
    );
    assert_serving(&herd, "Riley", "after.journal");
}

#[test]
fn a_time_far_ahead_cannot_pin_a_client() {
    let mut herd = Herd::with_topology(PAIR)
        .setting("limits", "max_future_skew_ms = 60000")
        .build();
    herd.start_each();
    let pin = "IAMAT pin.client +1+1 18446744073709551615.999999999";
    assert_eq!(herd.ask("Riley", pin), format!("? {pin}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let soon = format!("IAMAT pin.client +1+1 {}", now + 30);
    let later = format!("IAMAT pin.client +1+1 {}", now + 120);
    assert!(
        herd.ask("Riley", &soon).starts_with("AT Riley -"),
        "within the skew"
    );
    assert_eq!(herd.ask("Riley", &later), format!("? {later}"));
    // A neighbour's record is held to the same rule: the real one floods.
    let real = herd.ask("Riley", &format!("IAMAT pin.client +2+2 {}", now + 31));
    herd.wait_for_at_line("Jaquez", "pin.client", &real);
}

#[test]
fn the_same_iamat_twice_is_stored_and_flooded_once() {
    let mut herd = Herd::with_topology(PAIR).build();
    herd.start_each();
    let line = iamat("twice", "1700000000.25");
    let first = herd.ask("Riley", &line);
    herd.wait_for_at_line("Jaquez", "twice", &first);
    let mut client = herd.client("Riley");
    for _ in 0..20 {
        client.send(&line);
    }
    for _ in 0..20 {
        assert!(
            client.read_line().starts_with("AT Riley "),
            "each is answered"
        );
    }
    let stale = r#"source="client",result="stale""#;
    wait_until(Duration::from_secs(10), "20 stale repeats", || {
        herd.metric("Riley", "herd_updates_total", &format!(",{stale}")) == Some(20.0)
    });
    let new = r#",source="client",result="new""#;
    assert_eq!(herd.metric("Riley", "herd_updates_total", new), Some(1.0));
    assert_eq!(
        herd.metric("Riley", "herd_floods_sent_total", ""),
        Some(1.0)
    );
    // The first answer stays the record everywhere.
    assert_eq!(herd.whatsat_at_line("Riley", "twice"), Some(first.clone()));
    assert_eq!(herd.whatsat_at_line("Jaquez", "twice"), Some(first));
}

#[test]
fn blank_lines_do_not_keep_an_idle_connection_open() {
    let herd = Herd::one("Riley")
        .setting("limits", "idle_timeout_ms = 500")
        .start_in_process();
    let mut idler = RawClient::connect(herd.ports("Riley").client);
    idler
        .stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .ok();
    let started = Instant::now();
    let mut closed = false;
    // A blank line every 100 ms, as the slot-holding attack sent them.
    while started.elapsed() < Duration::from_secs(5) {
        if idler.stream.write_all(b"\n").is_err() {
            closed = true;
            break;
        }
        let mut byte = [0u8; 1];
        match std::io::Read::read(&mut idler.stream, &mut byte) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => panic!("a blank line is not answered"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                closed = true;
                break;
            }
            Err(_) => {} // the 100 ms read timeout: nothing yet
        }
    }
    assert!(closed, "blank lines kept the connection open for 5 s");
    assert!(started.elapsed() >= Duration::from_millis(450));
}

#[test]
fn control_bytes_reach_the_log_escaped() {
    let mut herd = Herd::with_topology(PAIR)
        .setting("herd", "file_log_level = \"info\"")
        .build();
    herd.start("Riley");
    let mut client = RawClient::connect(herd.ports("Riley").client);
    client.send(b"IAMAT esc\x1b[2Jape\rhidden +1+1 1\n");
    assert!(client.line().is_some_and(|l| l.starts_with(b"? IAMAT")));
    herd.wait_for_log("Riley", &["esc\\x1b[2Jape\\rhidden"]);
    let log = herd.log_bytes("Riley");
    assert!(!log.contains(&0x1b), "a raw ESC reached the log");
    assert!(!log.contains(&b'\r'), "a raw CR reached the log");
}

/// `herd NAME` with the herd's settings, started from `cwd`, with `home`.
fn spawn_in(herd: &Herd, name: &str, cwd: &std::path::Path, home: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_herd"))
        .arg("--config")
        .arg(&herd.config)
        .arg(name)
        .current_dir(cwd)
        .env_remove("HERD_SECRET")
        .env("HOME", home)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn herd")
}

#[test]
fn servers_of_one_user_share_a_secret_they_made_and_names_alone_get_nowhere() {
    let herd = Herd::five().build();
    let home = tempfile::tempdir().expect("home");
    let folders: Vec<tempfile::TempDir> =
        (0..5).map(|_| tempfile::tempdir().expect("cwd")).collect();
    // Five processes from five folders, all at once: they race to make the cookie.
    let _children = Processes(
        herd.names()
            .iter()
            .zip(&folders)
            .map(|(name, cwd)| spawn_in(&herd, name, cwd.path(), home.path()))
            .collect(),
    );
    for name in herd.names() {
        herd.wait_accepting(&name);
    }
    let cookie = home.path().join(".herd.cookie");
    let mode = std::fs::metadata(&cookie)
        .expect("the cookie")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "only its owner may read the cookie");
    // Riley and Campbell share no link: the update crosses authenticated links.
    let at = herd.ask("Riley", &iamat("zero.config", "1700000000"));
    herd.wait_for_at_line("Campbell", "zero.config", &at);

    // A neighbour's name and a `-` proof no longer get in.
    let mut wire = TcpStream::connect(("127.0.0.1", herd.ports("Riley").peer)).expect("peer");
    wire.set_read_timeout(Some(Duration::from_secs(10))).ok();
    wire.write_all(
        b"HELLO Jaquez Riley 00112233445566778899aabbccddeeff 2-2 0123456789abcdef link\n",
    )
    .expect("HELLO");
    let mut reader = BufReader::new(wire.try_clone().expect("clone"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("CHALLENGE");
    assert!(line.starts_with("CHALLENGE "), "{line:?}");
    wire.write_all(b"PROOF -\n").expect("PROOF");
    line.clear();
    let _ = reader.read_line(&mut line);
    assert!(!line.starts_with("WELCOME"), "{line:?}");
    let _ = wire.write_all(b"AT Jaquez +0.000000000 forged +1-1 1800000000\n");
    assert_eq!(herd.whatsat_at_line("Riley", "forged"), None);
}

/// Processes started by a test itself, killed however the test ends.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Changing the secret (docs/security.md): a herd on the old secret is
/// moved to the new one server by server, in two rolling steps, and every
/// update still reaches every server at every moment.
#[test]
fn the_secret_changes_server_by_server_and_updates_keep_flowing() {
    const CHAIN: &[(&str, &[&str])] = &[
        ("Riley", &["Jaquez"]),
        ("Jaquez", &["Riley", "Bernard"]),
        ("Bernard", &["Jaquez"]),
    ];
    let mut herd = Herd::with_topology(CHAIN)
        .env("HERD_SECRET", "the old secret of the herd")
        .build();
    herd.start_each();
    let mut time = 1_700_000_000u64;
    let mut flows = |herd: &Herd| {
        time += 1;
        let at = herd.ask("Riley", &iamat("rotating", &time.to_string()));
        herd.wait_for_at_line("Bernard", "rotating", &at);
        time += 1;
        let at = herd.ask("Bernard", &iamat("rotating", &time.to_string()));
        herd.wait_for_at_line("Riley", "rotating", &at);
    };
    flows(&herd);
    // (secret, extra) of each step; each server restarted in turn, and the
    // herd checked between every two restarts.
    for (secret, extra) in [
        ("the old secret of the herd", "the new secret of the herd"),
        ("the new secret of the herd", "the old secret of the herd"),
        ("the new secret of the herd", ""),
    ] {
        for name in ["Jaquez", "Riley", "Bernard"] {
            herd.terminate(name);
            let _ = std::fs::remove_file(herd.log_path(name));
            herd.set_env("HERD_SECRET", secret);
            herd.set_env("HERD_SECRET_EXTRA", extra);
            herd.restart(name);
            flows(&herd);
            // While two secrets are accepted, every start says what that
            // allows; once one is, none does (read after a stop: flushed).
            let warning = "HERD_SECRET_EXTRA is set: the herd is changing its secret";
            if extra.is_empty() {
                herd.terminate(name);
                let log = String::from_utf8_lossy(&herd.log_bytes(name)).into_owned();
                assert!(log.contains("serving clients on"), "{name}: {log}");
                assert!(!log.contains(warning), "{name}: {log}");
                herd.restart(name);
            } else {
                herd.wait_for_log(name, &[warning]);
            }
        }
    }
}

/// Runs `herd Riley` with `env` until it exits ([`Herd::run_to_exit`]):
/// its exit code, standard error, and how long it took.
fn run_to_exit(herd: &Herd, env: &[(&str, &str)]) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let out = herd.run_to_exit("Riley", env);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr, took)
}

/// Writes `text` to `dir/name` with `mode`; returns its path as text.
fn secret_file(dir: &std::path::Path, name: &str, text: &str, mode: u32) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the secret file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path.display().to_string()
}

#[test]
fn short_secrets_and_unsafe_secret_files_are_refused_at_start() {
    let herd = Herd::with_topology(PAIR).build();
    let dir = dir_of(&herd).to_owned();
    let refused = |env: &[(&str, &str)], why: &str| {
        let (code, stderr, took) = run_to_exit(&herd, env);
        assert_eq!(code, Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(why), "{env:?}: {stderr}");
        took
    };
    let long = "sixteen bytes ok";
    refused(&[("HERD_SECRET", "fifteen bytes!!")], "is 15 bytes");
    refused(
        &[("HERD_SECRET", long), ("HERD_SECRET_EXTRA", "0123456789")],
        "the herd secret in HERD_SECRET_EXTRA is 10 bytes: a secret needs at least 16",
    );
    let short = secret_file(&dir, "short", "too short\n", 0o600);
    refused(&[("HERD_HERD__SECRET_FILE", &short)], "is 9 bytes");
    let exposed = secret_file(&dir, "exposed", "a secret others can read\n", 0o644);
    refused(&[("HERD_HERD__SECRET_FILE", &exposed)], "chmod 600");
    let group = secret_file(&dir, "group", "a secret the group can read\n", 0o640);
    refused(&[("HERD_HERD__SECRET_FILE", &group)], "mode 640");
    // A FIFO nobody writes to: a blocking open would never return.
    let fifo = dir.join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let took = refused(
        &[("HERD_HERD__SECRET_FILE", &fifo.display().to_string())],
        "is a FIFO, not a regular file",
    );
    assert!(
        took < Duration::from_secs(5),
        "the FIFO held the start {took:?}"
    );
    refused(
        &[("HERD_HERD__SECRET_FILE", &dir.display().to_string())],
        "is a directory",
    );
    // Another user's file, where this test may make one (as root).
    if rustix::process::geteuid().is_root() {
        let theirs = secret_file(&dir, "theirs", "somebody else's secret\n", 0o600);
        let chowned = Command::new("chown").args(["65534", &theirs]).status();
        assert!(chowned.is_ok_and(|s| s.success()));
        refused(
            &[("HERD_HERD__SECRET_FILE", &theirs)],
            "belongs to user 65534",
        );
    }
}

#[test]
fn a_secret_file_reached_through_a_link_to_an_owner_only_file_is_read() {
    let dir = tempfile::tempdir().expect("temporary folder");
    // As Kubernetes mounts a Secret: the file a link points at, read-only.
    let target = secret_file(dir.path(), "..data", "a secret behind a link\n", 0o400);
    let link = dir.path().join("herd-secret");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let mut herd = Herd::with_topology(PAIR)
        .setting(
            "herd",
            &format!("secret_file = {:?}", link.display().to_string()),
        )
        .build();
    herd.start_each();
    let at = herd.ask("Riley", &iamat("linked", "1700000000"));
    herd.wait_for_at_line("Jaquez", "linked", &at);
    // The secret came from the file behind the link, not from a cookie.
    assert!(
        !dir_of(&herd).join(".herd.cookie").exists(),
        "no cookie was made"
    );
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[test]
fn an_http_request_on_the_client_port_is_closed_and_nothing_in_it_is_stored() {
    let mut herd = Herd::with_topology(PAIR).build();
    herd.start_each();
    let port = herd.ports("Riley").client;
    let time = now_secs();
    // A browser's POST, its body an IAMAT, all in one write (one read burst).
    let body = format!("IAMAT evil.post +34.068930-118.445127 {time}\n");
    let post = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // A request whose first line is lost or odd, but whose Host header says HTTP.
    let host = format!("Host: 127.0.0.1:{port}\nIAMAT evil.host +1+1 {time}\n");
    let get = format!("GET /x HTTP/1.0\r\n\r\nIAMAT evil.get +1+1 {time}\n");
    for request in [&post, &host, &get] {
        let mut client = RawClient::connect(port);
        client.send(request.as_bytes());
        let answer = client.read_to_end();
        assert!(
            answer.is_empty(),
            "answered {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    wait_until(
        Duration::from_secs(10),
        "three HTTP refusals counted",
        || herd.metric("Riley", "herd_http_refused_total", "") == Some(3.0),
    );
    // No line of them was answered, not even with `?`.
    assert_eq!(
        herd.metric("Riley", "herd_invalid_lines_total", ""),
        Some(0.0)
    );
    // Anything Riley stored it would have flooded before this later update.
    let marker = herd.ask("Riley", &iamat("after.http", &time.to_string()));
    herd.wait_for_at_line("Jaquez", "after.http", &marker);
    for server in ["Riley", "Jaquez"] {
        for client in ["evil.post", "evil.host", "evil.get"] {
            let line = format!("WHATSAT {client} 10 5");
            assert_eq!(herd.ask(server, &line), format!("? {line}"), "{server}");
        }
    }
    herd.wait_for_log(
        "Riley",
        &["spoke HTTP on the client port (POST / HTTP/1.1)"],
    );
}

#[test]
fn strangers_names_reach_the_log_escaped_and_their_refusals_are_rate_limited() {
    let mut herd = Herd::with_topology(PAIR).build();
    herd.start("Riley");
    let port = herd.ports("Riley").peer;
    const STRANGERS: usize = 200;
    for i in 0..STRANGERS {
        let mut wire = TcpStream::connect(("127.0.0.1", port)).expect("peer port");
        wire.set_read_timeout(Some(Duration::from_secs(10))).ok();
        // A HELLO as a server of this version sends it, but for the name.
        let hello = format!(
            "HELLO evil\x1b[2J{i} Riley 00112233445566778899aabbccddeeff 2-2 \
             0123456789abcdef link\n"
        );
        wire.write_all(hello.as_bytes()).expect("HELLO");
        // Whatever the answer, the server closes the connection.
        let mut rest = Vec::new();
        let _ = wire.read_to_end(&mut rest);
    }
    wait_until(Duration::from_secs(10), "every stranger refused", || {
        herd.metric("Riley", "herd_peer_auth_failures_total", "")
            .is_some_and(|n| n >= STRANGERS as f64)
    });
    // Stopped, so that every line is flushed.
    herd.terminate("Riley");
    let log = herd.log_bytes("Riley");
    assert!(!log.contains(&0x1b), "a raw ESC reached the log");
    let text = String::from_utf8_lossy(&log);
    assert!(
        text.contains("evil\\x1b[2J0"),
        "the name is shown escaped: {text}"
    );
    let lines = text
        .lines()
        .filter(|l| l.contains("rejected peer connection from"))
        .count();
    println!("{STRANGERS} strangers refused: {lines} refusal lines in the log");
    assert!(
        (1..=STRANGERS / 10).contains(&lines),
        "{lines} lines: {text}"
    );
}
