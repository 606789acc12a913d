//! Accept loops for a server's two ports: clients (one ConnectionActor each)
//! and peers (handshake, the sync's questions, then one PeerSession each).
//!
//! Both loops run on the arbiter that calls them and never block on a single
//! connection: a peer's handshake runs in its own task with a deadline, and a
//! client beyond the connection limit is told so and closed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use log::{debug, info, warn};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

use crate::connection::{ClientContext, ConnectionActor, ConnectionSlot};
use crate::handshake::{self, Secret};
use crate::metrics::Metrics;
use crate::peer::PEER_MAX_LINE;
use crate::peer_session::PeerSession;
use crate::seal::PeerCodec;
use crate::store::LocationStoreActor;
use crate::sync::answer_sync;

/// Accepts clients until the listener fails or the arbiter stops.
pub async fn serve_clients(listener: TcpListener, shared: ClientContext, max_connections: usize) {
    let open = Arc::new(AtomicUsize::new(0));
    // Refusals are logged at most once a second, with a count, so that a
    // flood of connections cannot become a flood of log lines as well.
    let mut refused_unlogged: u64 = 0;
    let mut last_refusal_log: Option<std::time::Instant> = None;
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically out of file descriptors: back off briefly.
                warn!(target: "listener", "{}: accept failed: {e}", shared.server);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Some(slot) = ConnectionSlot::take(&open, max_connections) else {
            Metrics::bump(&shared.metrics.connections_refused);
            refused_unlogged += 1;
            if last_refusal_log.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                warn!(target: "listener", "{}: refusing {peer}: {max_connections} connections open \
                    ({refused_unlogged} refused since the last such line)", shared.server);
                refused_unlogged = 0;
                last_refusal_log = Some(std::time::Instant::now());
            }
            actix_rt::spawn(async move {
                let _ = stream.write_all(b"? server busy\n").await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let shared = shared.clone();
        ConnectionActor::create(move |_| ConnectionActor::new(shared, peer, stream, slot));
    }
}

/// Who may dial this server, and how to check them.
#[derive(Clone)]
pub struct PeerGate {
    pub me: Arc<str>,
    pub neighbours: Arc<[Arc<str>]>,
    pub secret: Secret,
    pub timeout: Duration,
    /// Connections allowed in the handshake at once. A stranger opening
    /// thousands of connections that never finish the handshake costs a
    /// bounded number of sockets and tasks, each for at most `timeout`; past
    /// the bound the oldest is dropped, so a stranger who holds every slot
    /// cannot keep a neighbour out (its handshake takes a round trip).
    pub max_handshakes: usize,
    pub store: Addr<LocationStoreActor>,
    pub metrics: Arc<Metrics>,
}

/// A peer connection that has not proved who it is yet.
struct Handshake {
    task: tokio::task::JoinHandle<()>,
    authenticated: Arc<AtomicBool>,
}

impl Handshake {
    fn pending(&self) -> bool {
        !self.task.is_finished() && !self.authenticated.load(Ordering::Acquire)
    }
}

/// Accepts neighbours' links until the listener fails or the arbiter stops.
pub async fn serve_peers(listener: TcpListener, gate: PeerGate) {
    // Oldest first.
    let mut handshakes: VecDeque<Handshake> = VecDeque::new();
    let mut dropped_unlogged = 0u64;
    let mut last_drop_log: Option<Instant> = None;
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(target: "listener", "{}: peer accept failed: {e}", gate.me);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        handshakes.retain(Handshake::pending);
        while handshakes.len() >= gate.max_handshakes.max(1) {
            let Some(oldest) = handshakes.pop_front() else {
                break;
            };
            // Closed without a word: it has not said who it is in all this time.
            oldest.task.abort();
            Metrics::bump(&gate.metrics.peer_handshakes_dropped);
            dropped_unlogged += 1;
            if last_drop_log.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                warn!(target: "peer", "{}: {} peer connections handshaking; dropping the oldest \
                    for {addr} ({dropped_unlogged} dropped since the last such line)",
                    gate.me, gate.max_handshakes);
                dropped_unlogged = 0;
                last_drop_log = Some(Instant::now());
            }
        }
        let _ = stream.set_nodelay(true);
        let gate = gate.clone();
        let authenticated = Arc::new(AtomicBool::new(false));
        let proved = authenticated.clone();
        let task = actix_rt::spawn(async move {
            let codec = PeerCodec::new(PEER_MAX_LINE, gate.metrics.clone());
            let mut framed = Framed::new(stream, codec);
            let is_neighbour = |name: &str| gate.neighbours.iter().any(|n| &**n == name);
            let neighbour = match handshake::accept(
                &mut framed,
                &gate.me,
                is_neighbour,
                &gate.secret,
                gate.timeout,
            )
            .await
            {
                Ok(name) => {
                    // A neighbour now: its sync is never dropped for room.
                    proved.store(true, Ordering::Release);
                    name
                }
                Err(e) => {
                    Metrics::bump(&gate.metrics.peer_auth_failures);
                    warn!(target: "peer", "{}: rejected peer connection from {addr}: {e}", gate.me);
                    return;
                }
            };
            let first = match answer_sync(&mut framed, &gate.store, gate.timeout).await {
                Ok((stats, first)) => {
                    debug!(target: "peer", "{}: answered {neighbour}'s sync: {} rounds, {} bytes \
                        out, {} in, {:?}", gate.me, stats.rounds, stats.bytes_out, stats.bytes_in,
                        stats.elapsed);
                    first
                }
                Err(e) => {
                    info!(target: "peer", "{}: link from {neighbour} lost during sync: {e}", gate.me);
                    return;
                }
            };
            let (me, store) = (gate.me.clone(), gate.store.clone());
            PeerSession::create(move |_| {
                PeerSession::new(me, neighbour, store, framed, Some(first))
            });
        });
        handshakes.push_back(Handshake {
            task,
            authenticated,
        });
    }
}
