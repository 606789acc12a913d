//! Peer authentication (SPEC §4, §7; issue 7 item 1), proved against real
//! `herd` processes by a test that plays the impostor.
//!
//! The test speaks the peer handshake itself over a raw `TcpStream`, with its
//! own HMAC-SHA256 (not the server's code), so a server bug and a test bug
//! cannot cancel out. A positive control (the right secret gets in and its
//! records are stored) shows the impostor speaks the protocol correctly;
//! every negative case then differs from it in one thing only:
//!
//! - a wrong secret, a `-` proof while a secret is set, a replayed PROOF;
//! - a name that is unknown, a server of the herd that is not a neighbour,
//!   a HELLO addressed to another server (refused for that reason), no
//!   HELLO at all;
//! - plain lines after an honest handshake: the link is sealed from there
//!   on (tests/peer_seal.rs covers the sealed wire itself);
//! - a stranger's HELLO is answered with nothing computed from the secret
//!   (the acceptor proves last), and a version-1 HELLO is refused naming
//!   both version ranges;
//! - the other direction: a fake acceptor whose WELCOME is forged gets no
//!   record from the dialing server.
//!
//! Each rejection must be answered with a `? ` line (where the protocol
//! says so), closed, logged in the server's log file, and an `AT` line sent
//! anyway must not be stored: WHATSAT for its client answers `? `.

mod common;
#[path = "common/seal.rs"]
mod seal;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::{wait_until, Herd};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SECRET: &str = "correct horse battery staple";

/// Riley's only neighbour is Jaquez; Bernard is in the herd but no neighbour.
const TOPOLOGY: &[(&str, &[&str])] = &[("Riley", &["Jaquez"]), ("Jaquez", &[]), ("Bernard", &[])];

fn mac(secret: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The topology digest the impostor claims (any will do: a different one
/// only makes Riley flood).
const TOPOLOGY_D: &str = "0123456789abcdef";

/// What both MACs cover (docs/peer-protocol.md, "Handshake").
fn transcript(
    dialer: &str,
    acceptor: &str,
    nonce_d: &str,
    nonce_a: &str,
    topology_a: &str,
) -> String {
    format!("{dialer} {acceptor} {nonce_d} {nonce_a} 2 {TOPOLOGY_D} {topology_a} link")
}

/// The dialer's MAC.
fn dial_mac(secret: &str, transcript: &str) -> String {
    mac(secret, &format!("herd/2 dial {transcript}"))
}

/// The acceptor's MAC.
fn accept_mac(secret: &str, transcript: &str) -> String {
    mac(secret, &format!("herd/2 accept {transcript}"))
}

/// A fresh 128-bit nonce in hex.
fn nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// One raw connection to (or from) a peer port.
struct Wire {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Wire {
    fn new(stream: TcpStream) -> Wire {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Wire {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    fn connect(port: u16) -> Wire {
        Wire::new(TcpStream::connect(("127.0.0.1", port)).unwrap())
    }

    /// Sends a line; `false` when the server has already closed.
    fn send(&mut self, line: &str) -> bool {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .is_ok()
    }

    /// The next line, or `None` once the other end closed (or reset).
    fn line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => Some(String::from_utf8_lossy(&line).trim_end().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("reading from the peer connection: {e}"),
        }
    }

    /// Asserts the other end closes without sending anything more.
    fn expect_closed(&mut self) {
        assert_eq!(self.line(), None, "connection should have been closed");
    }
}

/// A herd of Riley alone (its neighbour Jaquez is down), with `secret`.
fn riley(secret: Option<&str>) -> Herd {
    let mut builder = Herd::with_topology(TOPOLOGY).setting("herd", "file_log_level = \"info\"");
    if let Some(secret) = secret {
        builder = builder.env("HERD_SECRET", secret);
    }
    let mut herd = builder.build();
    herd.start("Riley");
    herd
}

/// Sends HELLO and reads the CHALLENGE: returns the transcript's start
/// (everything but the purpose is known then) as (nonce_a, topology_a). The
/// CHALLENGE carries nothing computed from the secret.
fn hello(wire: &mut Wire, dialer: &str, target: &str, nonce_d: &str) -> (String, String) {
    assert!(wire.send(&format!(
        "HELLO {dialer} {target} {nonce_d} 2-2 {TOPOLOGY_D} link"
    )));
    let challenge = wire.line().expect("a CHALLENGE");
    let fields: Vec<&str> = challenge.split(' ').collect();
    assert_eq!(fields.len(), 4, "{challenge}");
    assert_eq!(&fields[..2], ["CHALLENGE", "2"], "{challenge}");
    assert_eq!((fields[2].len(), fields[3].len()), (32, 16), "{challenge}");
    (fields[2].to_string(), fields[3].to_string())
}

/// An AT line for `client` as if flooded from Jaquez.
fn at_line(client: &str) -> String {
    format!("AT Jaquez +0.000000001 {client} +34.068930-118.445127 1700000000.5")
}

/// Sends an AT line on a rejected connection (it may fail: closed already).
fn try_flood(wire: &mut Wire, client: &str) {
    let _ = wire.send(&at_line(client));
    let _ = wire.send("SYNCED 1");
}

/// Riley does not know `client`.
fn assert_not_stored(herd: &Herd, client: &str) {
    let query = format!("WHATSAT {client} 10 1");
    assert_eq!(herd.ask("Riley", &query), format!("? {query}"));
}

/// Completes an honest handshake as Jaquez; returns (nonce_d, nonce_a, mac_d).
fn honest_handshake(wire: &mut Wire) -> (String, String, String) {
    let nonce_d = nonce();
    let (nonce_a, topology_a) = hello(wire, "Jaquez", "Riley", &nonce_d);
    let t = transcript("Jaquez", "Riley", &nonce_d, &nonce_a, &topology_a);
    let mac_d = dial_mac(SECRET, &t);
    assert!(wire.send(&format!("PROOF {mac_d}")));
    // The server proves itself last, over our fresh nonce. What follows
    // WELCOME (the catch-up sync) is not this test's business.
    let welcome = format!("WELCOME {}", accept_mac(SECRET, &t));
    assert_eq!(wire.line(), Some(welcome), "the acceptor's MAC");
    (nonce_d, nonce_a, mac_d)
}

#[test]
fn the_right_secret_gets_in_and_its_records_are_stored() {
    let herd = riley(Some(SECRET));
    let mut wire = Wire::connect(herd.ports("Riley").peer);
    let (nonce_d, nonce_a, _) = honest_handshake(&mut wire);
    // After WELCOME, everything is sealed (the test's own implementation of
    // the documented format). Lines longer than the handshake's limit are fine.
    let (mut to_riley, _) = seal::directions(SECRET, "Jaquez", "Riley", &nonce_d, &nonce_a);
    let lines = format!(
        "{}\n{}\nSYNCED 1\n",
        " ".repeat(4 * 1024),
        at_line("honest.client")
    );
    wire.writer
        .write_all(&to_riley.seal(lines.as_bytes()))
        .unwrap();
    herd.wait_for_at_line("Riley", "honest.client", &at_line("honest.client"));
}

#[test]
fn after_the_handshake_plain_lines_are_refused() {
    let herd = riley(Some(SECRET));
    let mut wire = Wire::connect(herd.ports("Riley").peer);
    honest_handshake(&mut wire);
    // Riley's first sync answer is sealed: no plain SUMS line comes.
    let mut first = [0u8; 4];
    std::io::Read::read_exact(&mut wire.reader, &mut first).unwrap();
    assert_ne!(&first, b"SUMS");
    // Lines in clear, as an unsealed link would carry them (or as someone
    // on the path would inject them), are refused and close the link.
    try_flood(&mut wire, "plain.after.welcome");
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut wire.reader, &mut rest);
    assert_not_stored(&herd, "plain.after.welcome");
    herd.wait_for_log("Riley", &["sealed frame length"]);
    assert_eq!(
        herd.metric("Riley", "herd_peer_seal_failures_total", ""),
        Some(1.0)
    );
}

#[test]
fn a_wrong_secret_is_rejected_logged_and_nothing_is_stored() {
    let herd = riley(Some(SECRET));
    let mut wire = Wire::connect(herd.ports("Riley").peer);
    let nonce_d = nonce();
    let (nonce_a, topology_a) = hello(&mut wire, "Jaquez", "Riley", &nonce_d);
    let wrong = "not the secret";
    let t = transcript("Jaquez", "Riley", &nonce_d, &nonce_a, &topology_a);
    let proof = dial_mac(wrong, &t);
    assert!(wire.send(&format!("PROOF {proof}")));
    assert_eq!(wire.line().as_deref(), Some("? authentication failed"));
    try_flood(&mut wire, "wrong.secret");
    wire.expect_closed();
    assert_not_stored(&herd, "wrong.secret");
    herd.wait_for_log("Riley", &["rejected peer connection", "wrong herd secret"]);
}

#[test]
fn a_name_only_proof_is_rejected_when_a_secret_is_set() {
    let herd = riley(Some(SECRET));
    let mut wire = Wire::connect(herd.ports("Riley").peer);
    hello(&mut wire, "Jaquez", "Riley", &nonce());
    assert!(wire.send("PROOF -"));
    assert_eq!(wire.line().as_deref(), Some("? authentication failed"));
    try_flood(&mut wire, "dash.proof");
    wire.expect_closed();
    assert_not_stored(&herd, "dash.proof");
}

#[test]
fn a_captured_proof_cannot_be_replayed() {
    let herd = riley(Some(SECRET));
    let port = herd.ports("Riley").peer;
    // Capture an honest handshake...
    let mut first = Wire::connect(port);
    let (nonce_d, nonce_a, mac_d) = honest_handshake(&mut first);
    drop(first);
    // ...and replay it word for word: the server's fresh nonce defeats it.
    let mut replay = Wire::connect(port);
    let (nonce_a2, _) = hello(&mut replay, "Jaquez", "Riley", &nonce_d);
    assert_ne!(nonce_a, nonce_a2, "the acceptor must choose a fresh nonce");
    assert!(replay.send(&format!("PROOF {mac_d}")));
    assert_eq!(replay.line().as_deref(), Some("? authentication failed"));
    try_flood(&mut replay, "replayed.client");
    replay.expect_closed();
    assert_not_stored(&herd, "replayed.client");
    herd.wait_for_log("Riley", &["wrong herd secret"]);
}

#[test]
fn unknown_names_non_neighbours_and_misaddressed_hellos_are_rejected() {
    let herd = riley(Some(SECRET));
    let port = herd.ports("Riley").peer;
    for (dialer, target, client, reason) in [
        (
            "Mallory",
            "Riley",
            "unknown.name",
            "? Mallory is not a neighbour of Riley",
        ),
        (
            "Bernard",
            "Riley",
            "not.neighbour",
            "? Bernard is not a neighbour of Riley",
        ),
        // Jaquez is a neighbour: what is wrong is the server it asked for.
        (
            "Jaquez",
            "Juzang",
            "misaddressed",
            "? this is Riley, not Juzang",
        ),
    ] {
        let mut wire = Wire::connect(port);
        assert!(wire.send(&format!(
            "HELLO {dialer} {target} {} 2-2 {TOPOLOGY_D} link",
            nonce()
        )));
        assert_eq!(
            wire.line().as_deref(),
            Some(reason),
            "HELLO {dialer} {target}"
        );
        try_flood(&mut wire, client);
        wire.expect_closed();
        assert_not_stored(&herd, client);
    }
    herd.wait_for_log(
        "Riley",
        &[
            "Mallory is not a neighbour",
            // A server of the herd: a sign of a change of links, logged once.
            "Bernard dialled this server, but this server's settings list no link",
            "HELLO addressed to Juzang, not to this server",
        ],
    );
}

#[test]
fn a_stranger_cannot_make_the_server_buffer_before_the_handshake() {
    let mut herd = Herd::with_topology(TOPOLOGY)
        .env("HERD_SECRET", SECRET)
        .setting("limits", "handshake_timeout_ms = 60000")
        .build();
    herd.start("Riley");
    // 64 KiB without a newline instead of a HELLO: refused at once, long
    // before the handshake's timeout and the peer port's 1 MiB line limit.
    let mut wire = Wire::connect(herd.ports("Riley").peer);
    let _ = wire.writer.write_all(&vec![b'x'; 64 * 1024]);
    wire.expect_closed();
    herd.wait_for_log("Riley", &["rejected peer connection", "overlong line"]);
}

#[test]
fn a_stranger_who_stalls_is_dropped_at_the_handshake_timeout() {
    let mut herd = Herd::with_topology(TOPOLOGY)
        .env("HERD_SECRET", SECRET)
        .setting("limits", "handshake_timeout_ms = 300")
        .build();
    herd.start("Riley");
    let port = herd.ports("Riley").peer;
    // One says nothing at all, the other stops after HELLO.
    let mut silent = Wire::connect(port);
    let mut stalled = Wire::connect(port);
    hello(&mut stalled, "Jaquez", "Riley", &nonce());
    let started = std::time::Instant::now();
    silent.expect_closed();
    stalled.expect_closed();
    assert!(started.elapsed() < Duration::from_secs(5));
    herd.wait_for_log("Riley", &["rejected peer connection", "timed out"]);
}

#[test]
fn records_without_a_handshake_are_rejected() {
    let herd = riley(Some(SECRET));
    let mut wire = Wire::connect(herd.ports("Riley").peer);
    try_flood(&mut wire, "no.handshake");
    wire.expect_closed();
    assert_not_stored(&herd, "no.handshake");
    herd.wait_for_log("Riley", &["rejected peer connection", "unexpected line"]);
}

#[test]
fn with_insecure_peers_asked_for_the_server_warns_and_accepts_neighbours_by_name() {
    let mut herd = Herd::with_topology(TOPOLOGY)
        .setting("herd", "file_log_level = \"info\"")
        .setting("herd", "insecure_peers = true")
        .build();
    herd.start("Riley");
    herd.wait_for_log("Riley", &["INSECURE PEERS"]);
    // Still only neighbours...
    let mut stranger = Wire::connect(herd.ports("Riley").peer);
    assert!(stranger.send(&format!(
        "HELLO Bernard Riley {} 2-2 {TOPOLOGY_D} link",
        nonce()
    )));
    assert_eq!(
        stranger.line().as_deref(),
        Some("? Bernard is not a neighbour of Riley")
    );
    stranger.expect_closed();
    // ...but a neighbour's name is enough.
    let mut wire = Wire::connect(herd.ports("Riley").peer);
    hello(&mut wire, "Jaquez", "Riley", &nonce());
    assert!(wire.send("PROOF -"));
    assert_eq!(wire.line().as_deref(), Some("WELCOME -"));
    assert!(wire.send(&at_line("by.name")));
    herd.wait_for_at_line("Riley", "by.name", &at_line("by.name"));
}

#[test]
fn a_version_one_hello_is_refused_naming_both_ranges() {
    let herd = riley(Some(SECRET));
    let mut wire = Wire::connect(herd.ports("Riley").peer);
    assert!(wire.send(&format!("HELLO Jaquez Riley {}", nonce())));
    assert_eq!(
        wire.line().as_deref(),
        Some("? no common peer protocol version: Riley speaks 2-2")
    );
    wire.expect_closed();
    herd.wait_for_log(
        "Riley",
        &["no common peer protocol version: it speaks 1-1, this server 2-2"],
    );
}

#[test]
fn a_fake_acceptor_gets_a_proof_but_no_record() {
    let herd = Herd::with_topology(TOPOLOGY)
        .env("HERD_SECRET", SECRET)
        .setting("herd", "file_log_level = \"info\"")
        .setting("limits", "backoff_first_ms = 20")
        .setting("limits", "backoff_max_ms = 100")
        .build();
    // Stand in for Jaquez on its peer port before Riley starts dialing it.
    let listener = TcpListener::bind(("127.0.0.1", herd.ports("Jaquez").peer)).unwrap();
    let mut herd = herd;
    herd.start("Riley");
    herd.ask("Riley", &common::iamat("riley.client", "1700000000.5"));
    let (stream, _) = listener.accept().unwrap();
    let mut wire = Wire::new(stream);
    let hello = wire.line().expect("Riley's HELLO");
    let fields: Vec<&str> = hello.split(' ').collect();
    assert_eq!(&fields[..3], &["HELLO", "Riley", "Jaquez"], "{hello}");
    assert_eq!(&fields[4..], &[fields[4], fields[5], "link"], "{hello}");
    assert!(wire.send(&format!("CHALLENGE 2 {} {TOPOLOGY_D}", nonce())));
    // The dialer proves first: a fake acceptor learns its MAC (why an
    // operator's secret must be long: docs/security.md)...
    let proof = wire.line().expect("a PROOF");
    assert!(proof.starts_with("PROOF "), "{proof}");
    // ...but without the secret it cannot prove itself: Riley closes, and
    // sends no record.
    assert!(wire.send(&format!("WELCOME {}", "ab".repeat(32))));
    wire.expect_closed();
    herd.wait_for_log("Riley", &["link to Jaquez", "wrong herd secret"]);
}

#[test]
fn past_the_handshake_limit_the_oldest_stranger_is_dropped_and_neighbours_get_in() {
    let mut herd = Herd::with_topology(TOPOLOGY)
        .env("HERD_SECRET", SECRET)
        .setting("herd", "file_log_level = \"info\"")
        .setting(
            "limits",
            "max_peer_handshakes = 3\nhandshake_timeout_ms = 60000",
        )
        .build();
    herd.start("Riley");
    let port = herd.ports("Riley").peer;
    // Three strangers who say nothing hold every handshake slot; each is
    // accepted (a HELLO gets its CHALLENGE) before the next connects, so
    // the server knows their order.
    let mut strangers: Vec<(Wire, String, (String, String))> = (0..3)
        .map(|_| {
            let mut wire = Wire::connect(port);
            let nonce_d = nonce();
            let challenge = hello(&mut wire, "Jaquez", "Riley", &nonce_d);
            (wire, nonce_d, challenge)
        })
        .collect();
    // The neighbour still gets in, and the oldest stranger is dropped for it.
    let mut neighbour = Wire::connect(port);
    honest_handshake(&mut neighbour);
    strangers[0].0.expect_closed();
    herd.wait_for_log(
        "Riley",
        &["3 peer connections handshaking; dropping the oldest"],
    );
    // The two others are still being listened to: one can finish, too.
    let (wire, nonce_d, (nonce_a, topology_a)) = &mut strangers[1];
    let t = transcript("Jaquez", "Riley", nonce_d, nonce_a, topology_a);
    assert!(wire.send(&format!("PROOF {}", dial_mac(SECRET, &t))));
    let welcome = format!("WELCOME {}", accept_mac(SECRET, &t));
    assert_eq!(wire.line(), Some(welcome));
    assert_eq!(
        herd.metric("Riley", "herd_peer_handshakes_dropped_total", ""),
        Some(1.0)
    );
}

/// A connection to `port` on 127.0.0.1 from the loopback address `source`:
/// another host, as far as the server can tell.
fn connect_from(source: &str, port: u16) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a runtime");
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        let local = format!("{source}:0").parse().expect("address");
        socket.bind(local).expect("bind the source address");
        let server = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        socket.connect(server).await.expect("connect")
    });
    let stream = stream.into_std().expect("a std stream");
    stream.set_nonblocking(false).expect("blocking");
    stream
}

#[test]
fn one_host_opening_many_connections_cannot_push_out_a_neighbours_handshake() {
    let mut herd = Herd::with_topology(TOPOLOGY)
        .env("HERD_SECRET", SECRET)
        .setting(
            "limits",
            "max_peer_handshakes = 8\nhandshake_timeout_ms = 60000",
        )
        .build();
    herd.start("Riley");
    let port = herd.ports("Riley").peer;
    // The neighbour's handshake is the oldest of all...
    let mut neighbour = Wire::connect(port);
    let nonce_d = nonce();
    let (nonce_a, topology_a) = hello(&mut neighbour, "Jaquez", "Riley", &nonce_d);
    // ...then one host opens 40 connections and says nothing: past 8 at
    // once, the oldest would go, but a host only ever pushes out its own.
    let _strangers: Vec<TcpStream> = (0..40).map(|_| connect_from("127.0.0.2", port)).collect();
    wait_until(
        Duration::from_secs(10),
        "the host's own handshakes dropped",
        || herd.metric("Riley", "herd_peer_handshakes_dropped_total", "") == Some(36.0),
    );
    // The neighbour, still heard, finishes its handshake.
    let t = transcript("Jaquez", "Riley", &nonce_d, &nonce_a, &topology_a);
    assert!(neighbour.send(&format!("PROOF {}", dial_mac(SECRET, &t))));
    let welcome = format!("WELCOME {}", accept_mac(SECRET, &t));
    assert_eq!(neighbour.line(), Some(welcome));
}
