//! Accept loops for a server's two ports: clients (one ConnectionActor each)
//! and peers (handshake, the sync's questions, then one PeerSession each).
//!
//! Both loops run on the arbiter that calls them and never block on a single
//! connection: a peer's handshake runs in its own task with a deadline, and a
//! client beyond the connection limit is told so and closed.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use log::{debug, info, warn};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

use crate::connection::{ClientContext, ConnectionActor, ConnectionSlot};
use crate::handshake::{self, PeerFramed, Secret};
use crate::metrics::Metrics;
use crate::peer::PEER_MAX_LINE;
use crate::peer_session::PeerSession;
use crate::refusal::{RefusalLog, SourceRefusals};
use crate::seal::PeerCodec;
use crate::store::LocationStoreActor;
use crate::sync::answer_sync;
use crate::text::LogText;

/// Accepts clients until the listener fails or the arbiter stops.
pub async fn serve_clients(listener: TcpListener, shared: ClientContext, max_connections: usize) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut refusals = RefusalLog::default();
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
            if let Some(refused) = refusals.count(Instant::now()) {
                warn!(target: "listener", "{}: refusing {peer}: {max_connections} connections open \
                    ({refused} refused since the last such line)", shared.server);
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
    /// Of those, how many one source address may hold: a new connection
    /// from a source at its cap drops that source's own oldest, so one
    /// source opening connections fast evicts nobody else's handshake.
    pub max_handshakes_per_source: usize,
    pub store: Addr<LocationStoreActor>,
    pub metrics: Arc<Metrics>,
}

/// A peer connection that has not proved who it is yet.
struct Handshake {
    source: IpAddr,
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
    let mut drops = RefusalLog::default();
    // Handshakes refused, logged per source address at most once a second.
    let rejections = Arc::new(SourceRefusals::default());
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(target: "listener", "{}: peer accept failed: {e}", gate.me);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        make_room_for_handshake(&mut handshakes, &gate, addr, &mut drops);
        let _ = stream.set_nodelay(true);
        let rejections = rejections.clone();
        handshakes.push_back(spawn_handshake(stream, addr, gate.clone(), rejections));
    }
}

/// Forgets finished handshakes, then makes room for one more from `addr`:
/// first under `gate.max_handshakes_per_source` by dropping that source's
/// own oldest, then under `gate.max_handshakes` by dropping the oldest of all.
fn make_room_for_handshake(
    handshakes: &mut VecDeque<Handshake>,
    gate: &PeerGate,
    addr: SocketAddr,
    drops: &mut RefusalLog,
) {
    handshakes.retain(Handshake::pending);
    let source = addr.ip();
    let per_source = gate.max_handshakes_per_source.max(1);
    while handshakes.iter().filter(|h| h.source == source).count() >= per_source {
        let Some(oldest) = handshakes.iter().position(|h| h.source == source) else {
            break;
        };
        if let Some(dropped) = handshakes.remove(oldest) {
            let held = format!("{per_source} peer connections handshaking from {source}");
            drop_handshake(dropped, gate, drops, &held, addr);
        }
    }
    while handshakes.len() >= gate.max_handshakes.max(1) {
        let Some(oldest) = handshakes.pop_front() else {
            break;
        };
        let held = format!("{} peer connections handshaking", gate.max_handshakes);
        drop_handshake(oldest, gate, drops, &held, addr);
    }
}

/// Closes a pending handshake without a word (it has not said who it is in
/// all this time), counted and logged at most once a second; `held` says
/// which limit was reached.
fn drop_handshake(
    handshake: Handshake,
    gate: &PeerGate,
    drops: &mut RefusalLog,
    held: &str,
    addr: SocketAddr,
) {
    handshake.task.abort();
    Metrics::bump(&gate.metrics.peer_handshakes_dropped);
    if let Some(dropped) = drops.count(Instant::now()) {
        warn!(target: "peer", "{}: {held}; dropping the oldest for {addr} ({dropped} dropped \
            since the last such line)", gate.me);
    }
}

/// Runs one incoming link's handshake, then answers its sync and hands it
/// to a PeerSession, in a task of its own.
fn spawn_handshake(
    stream: TcpStream,
    addr: SocketAddr,
    gate: PeerGate,
    rejections: Arc<SourceRefusals>,
) -> Handshake {
    let authenticated = Arc::new(AtomicBool::new(false));
    let proved = authenticated.clone();
    let task = actix_rt::spawn(async move {
        let codec = PeerCodec::new(PEER_MAX_LINE, gate.metrics.clone());
        let mut framed = Framed::new(stream, codec);
        let authenticated = authenticate(&mut framed, addr, &gate, &proved, &rejections).await;
        let Some(neighbour) = authenticated else {
            return;
        };
        let Some(first) = answer_neighbour_sync(&mut framed, &neighbour, &gate).await else {
            return;
        };
        let (me, store) = (gate.me.clone(), gate.store.clone());
        PeerSession::create(move |_| PeerSession::new(me, neighbour, store, framed, Some(first)));
    });
    Handshake {
        source: addr.ip(),
        task,
        authenticated,
    }
}

/// The handshake: the neighbour's name once it has proved it (and `proved`
/// set), or `None` with the rejection counted and logged: at most once a
/// second per source, and escaped and clipped, since the reason may quote
/// what a stranger sent (a name in its HELLO).
async fn authenticate(
    framed: &mut PeerFramed,
    addr: SocketAddr,
    gate: &PeerGate,
    proved: &AtomicBool,
    rejections: &SourceRefusals,
) -> Option<Arc<str>> {
    let is_neighbour = |name: &str| gate.neighbours.iter().any(|n| &**n == name);
    match handshake::accept(framed, &gate.me, is_neighbour, &gate.secret, gate.timeout).await {
        Ok(name) => {
            // A neighbour now: its sync is never dropped for room.
            proved.store(true, Ordering::Release);
            Some(name)
        }
        Err(e) => {
            Metrics::bump(&gate.metrics.peer_auth_failures);
            if let Some(count) = rejections.count(addr.ip(), Instant::now()) {
                let why = e.to_string();
                warn!(target: "peer", "{}: rejected peer connection from {addr}: {} \
                    ({count} rejected from {} since the last such line)",
                    gate.me, LogText::clipped(why.as_bytes(), 200), addr.ip());
            }
            None
        }
    }
}

/// Answers the catch-up sync the neighbour starts the link with: the first
/// line after it, or `None` (logged) if the link was lost during it.
async fn answer_neighbour_sync(
    framed: &mut PeerFramed,
    neighbour: &str,
    gate: &PeerGate,
) -> Option<Bytes> {
    match answer_sync(framed, &gate.store, gate.timeout).await {
        Ok((stats, first)) => {
            debug!(target: "peer", "{}: answered {neighbour}'s sync: {} rounds, {} bytes \
                out, {} in, {:?}", gate.me, stats.rounds, stats.bytes_out, stats.bytes_in,
                stats.elapsed);
            Some(first)
        }
        Err(e) => {
            info!(target: "peer", "{}: link from {neighbour} lost during sync: {e}", gate.me);
            None
        }
    }
}
