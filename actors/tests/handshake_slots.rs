//! Handshake slots per source (`limits.max_handshakes_per_source`): one
//! source opening connections that never handshake cannot push out a
//! neighbour's handshake in progress from another address, however many it
//! opens. In process, on loopback: the stranger dials from 127.0.0.2, the
//! neighbour from 127.0.0.1 (Linux answers on all of 127.0.0.0/8). And a
//! server whose neighbours all run on one machine (one address) has a slot
//! for each of them whatever the bound says.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use herd_actors::handshake::{self, Identity, Secret};
use herd_actors::listener::{serve_peers, PeerGate};
use herd_actors::metrics::Metrics;
use herd_actors::peer_line::{HexBytes, Purpose, PEER_MAX_LINE};
use herd_actors::seal::PeerCodec;
use herd_actors::store::LocationStoreActor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::codec::Framed;

fn identity(name: &str) -> Identity {
    Identity {
        me: name.into(),
        topology: HexBytes([0; 8]),
        secret: Secret::new(b"handshake slots secret"),
        timeout: Duration::from_secs(10),
    }
}

/// Polls `condition` until it holds, failing after 10 s.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < Duration::from_secs(10), "no {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Riley's metrics and empty store, and a listener for its peer port.
async fn riley() -> (
    Arc<Metrics>,
    Addr<LocationStoreActor>,
    TcpListener,
    std::net::SocketAddr,
) {
    let metrics = Arc::new(Metrics::default());
    let store = LocationStoreActor::new(
        "Riley".into(),
        Vec::new(),
        None,
        metrics.clone(),
        herd_actors::protocol::DEFAULT_MAX_FUTURE_SKEW,
    )
    .start();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    (metrics, store, listener, addr)
}

#[test]
fn a_source_opening_many_connections_drops_only_its_own_handshakes() {
    actix_rt::System::new().block_on(async {
        let (metrics, store, listener, addr) = riley().await;
        let gate = PeerGate {
            identity: identity("Riley"),
            neighbours: vec![Arc::<str>::from("Jaquez")].into(),
            herd: vec![Arc::<str>::from("Riley"), Arc::<str>::from("Jaquez")].into(),
            links: Arc::default(),
            max_handshakes: 8,
            max_handshakes_per_source: 4,
            store,
            metrics: metrics.clone(),
        };
        actix_rt::spawn(serve_peers(listener, gate));

        // The neighbour's connection is the oldest of all: without a cap per
        // source, the stranger's ninth connection would drop it.
        let neighbour = TcpStream::connect(addr).await.expect("neighbour connects");
        let mut strangers = Vec::new();
        for _ in 0..40 {
            let socket = TcpSocket::new_v4().expect("socket");
            socket
                .bind("127.0.0.2:0".parse().expect("address"))
                .expect("bind 127.0.0.2");
            strangers.push(socket.connect(addr).await.expect("stranger connects"));
        }
        let dropped = || metrics.peer_handshakes_dropped.get();
        wait_until("36 of the stranger's handshakes dropped", || {
            dropped() == 36
        })
        .await;

        // The stranger's oldest were closed, its newest four still wait.
        let mut byte = [0u8; 1];
        let closed = strangers[0].read(&mut byte).await;
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");

        // The neighbour's handshake, begun before all that, completes.
        let mut framed = Framed::new(neighbour, PeerCodec::new(PEER_MAX_LINE));
        let jaquez = identity("Jaquez");
        let done = handshake::dial(&mut framed, &jaquez, "Riley", Purpose::Link).await;
        assert!(
            done.is_ok(),
            "the neighbour's handshake was dropped: {done:?}"
        );
        assert_eq!(dropped(), 36, "nobody else's handshake was dropped");
    });
}

#[test]
fn a_server_with_many_neighbours_on_one_machine_has_a_slot_for_each() {
    actix_rt::System::new().block_on(async {
        let (metrics, store, listener, addr) = riley().await;
        // Six neighbours, all on this machine: they dial from one address.
        let neighbours: Vec<Arc<str>> = (0..6).map(|i| Arc::from(format!("N{i}"))).collect();
        let gate = PeerGate {
            identity: identity("Riley"),
            neighbours: neighbours.clone().into(),
            herd: neighbours.into(),
            links: Arc::default(),
            max_handshakes: 64,
            max_handshakes_per_source: 4,
            store,
            metrics: metrics.clone(),
        };
        actix_rt::spawn(serve_peers(listener, gate));
        // Six neighbours and one more fit (the bound of 4 is raised to 7);
        // the eighth and ninth drop the two oldest.
        let mut open = Vec::new();
        for _ in 0..8 {
            open.push(TcpStream::connect(addr).await.expect("connects"));
        }
        // The ninth is answered, so every connection before it was taken
        // (one at a time, in order) when the count is read.
        let mut ninth = TcpStream::connect(addr).await.expect("connects");
        let hello = "HELLO N0 Nobody 00112233445566778899aabbccddeeff 2-2 0123456789abcdef link\n";
        ninth.write_all(hello.as_bytes()).await.expect("HELLO");
        let mut answer = Vec::new();
        let _ = ninth.read_to_end(&mut answer).await;
        assert!(!answer.is_empty(), "the ninth connection was answered");
        assert_eq!(metrics.peer_handshakes_dropped.get(), 2);
        let mut byte = [0u8; 1];
        let closed = open[0].read(&mut byte).await;
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    });
}
