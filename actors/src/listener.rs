//! Accept loops for a server's two ports: clients (one ConnectionActor each)
//! and peers (handshake, the sync's questions, then one PeerSession each).
//!
//! Both loops run on the arbiter that calls them and never block on a single
//! connection: a peer's handshake runs in its own task with a deadline, and a
//! client beyond the connection limit is told so and closed.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use log::{debug, info, warn};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::connection::{ClientContext, ConnectionActor, ConnectionSlot};
use crate::handshake::{self, HandshakeError, Identity, Met, PeerFramed};
use crate::metrics::Metrics;
use crate::peer::Repair;
use crate::peer_session::PeerSession;
use crate::refusal::{source_of, RefusalLog, SourceRefusals};
use crate::store::{HeardTopology, LocationStoreActor};
use crate::sync::answer_sync;

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
    /// This server's name, topology, secret and handshake deadline.
    pub identity: Identity,
    pub neighbours: Arc<[Arc<str>]>,
    /// Every server of the herd as this server was given it: one that dials
    /// without being a neighbour here is a sign of a change of links, not a
    /// stranger.
    pub herd: Arc<[Arc<str>]>,
    /// This server's own link to each neighbour, told to repair when the
    /// neighbour's anti-entropy comparison finds the stores differ.
    pub links: Arc<BTreeMap<Arc<str>, Recipient<Repair>>>,
    /// Connections allowed in the handshake at once. A stranger opening
    /// thousands of connections that never finish the handshake costs a
    /// bounded number of sockets and tasks, each for at most `timeout`; past
    /// the bound the oldest is dropped, so a stranger who holds every slot
    /// cannot keep a neighbour out (its handshake takes a round trip).
    pub max_handshakes: usize,
    /// Of those, how many one source ([`source_of`]: an IPv4 address, an
    /// IPv6 /64) may hold (at least the neighbours and one): a new
    /// connection from a source at its cap drops that source's own oldest,
    /// so one source opening connections fast evicts nobody else's
    /// handshake.
    pub max_handshakes_per_source: usize,
    pub store: Addr<LocationStoreActor>,
    pub metrics: Arc<Metrics>,
}

impl PeerGate {
    /// Pending handshakes one source may hold: `max_handshakes_per_source`,
    /// but never fewer than this server's neighbours and one more, since
    /// neighbours on one machine (a herd on one host, the default herd) all
    /// dial from one address, at once when the server starts.
    fn per_source_cap(&self) -> usize {
        self.max_handshakes_per_source
            .max(self.neighbours.len() + 1)
    }
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
    // How refused handshakes are logged, shared by the handshake tasks.
    let rejections = Arc::new(Rejections::default());
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(target: "listener", "{}: peer accept failed: {e}", gate.identity.me);
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
    let source = source_of(addr.ip());
    let per_source = gate.per_source_cap();
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
            since the last such line)", gate.identity.me);
    }
}

/// Runs one incoming link's handshake, then answers its sync and hands it
/// to a PeerSession, in a task of its own.
fn spawn_handshake(
    stream: TcpStream,
    addr: SocketAddr,
    gate: PeerGate,
    rejections: Arc<Rejections>,
) -> Handshake {
    let authenticated = Arc::new(AtomicBool::new(false));
    let proved = authenticated.clone();
    let task = actix_rt::spawn(async move {
        let mut framed = handshake::framed(stream, &gate.metrics);
        let authenticated = authenticate(&mut framed, addr, &gate, &proved, &rejections).await;
        let Some(met) = authenticated else {
            return;
        };
        gate.store.do_send(HeardTopology {
            name: met.neighbour.clone(),
            topology: met.topology,
            listed: true,
        });
        let Some(first) = answer_neighbour_sync(&mut framed, &met.neighbour, &gate).await else {
            return;
        };
        let (me, store) = (gate.identity.me.clone(), gate.store.clone());
        let link = gate.links.get(&met.neighbour).cloned();
        PeerSession::create(move |_| {
            PeerSession::new(me, met.neighbour, store, framed, Some(first))
                .for_purpose(met.purpose)
                .repairing_with(link)
        });
    });
    Handshake {
        source: source_of(addr.ip()),
        task,
        authenticated,
    }
}

/// The handshake: what it established once the neighbour has proved
/// itself (and `proved` set), or `None` with the rejection counted and
/// logged ([`refused`]).
async fn authenticate(
    framed: &mut PeerFramed,
    addr: SocketAddr,
    gate: &PeerGate,
    proved: &AtomicBool,
    rejections: &Rejections,
) -> Option<Met> {
    let is_neighbour = |name: &str| gate.neighbours.iter().any(|n| &**n == name);
    match handshake::accept(framed, &gate.identity, is_neighbour).await {
        Ok(met) => {
            // A neighbour now: its sync is never dropped for room.
            proved.store(true, Ordering::Release);
            Some(met)
        }
        Err(e) => {
            refused(gate, addr, e, rejections);
            None
        }
    }
}

/// Counts and logs a refused handshake. A server whose settings list this
/// one as a neighbour, or that speaks other versions, tries again every
/// few seconds: that is one line per change, not one per attempt.
fn refused(gate: &PeerGate, addr: SocketAddr, e: HandshakeError, rejections: &Rejections) {
    Metrics::bump(&gate.metrics.peer_auth_failures);
    let me = &gate.identity.me;
    // What the reason quotes of the stranger's bytes (its line, the names
    // in its HELLO) is escaped and clipped where the error is made
    // (handshake.rs; names are server names, checked as they are parsed).
    match &e {
        HandshakeError::NotNeighbour {
            name,
            topology: Some(topology),
        } if gate.herd.iter().any(|server| **server == **name) => {
            // The store logs it once per change and counts it. (The name is
            // not proved yet: a stranger who claims it can at worst make
            // this server flood for a while, never lose an update.)
            gate.store.do_send(HeardTopology {
                name: name.as_str().into(),
                topology: *topology,
                listed: false,
            });
            debug!(target: "peer", "{me}: rejected peer connection from {addr}: {e}");
        }
        HandshakeError::NoCommonVersion { .. } => {
            Metrics::bump(&gate.metrics.peer_version_refused);
            if rejections.first_time(format!("{} {e}", addr.ip())) {
                warn!(target: "peer", "{me}: rejected peer connection from {addr}: {e} \
                    (logged once)");
            }
        }
        // A port probe (a health check, a scanner) closes without a word.
        HandshakeError::Closed => {
            debug!(target: "peer", "{me}: peer connection from {addr} closed before a handshake")
        }
        // A source's first few, then at most one line a second.
        _ => {
            let source = addr.ip();
            if let Some(count) = rejections.per_source.count(source, Instant::now()) {
                warn!(target: "peer", "{me}: rejected peer connection from {addr}: {e} \
                    ({count} rejected from {source} since the last such line)");
            }
        }
    }
}

/// How one server's refused handshakes are logged: most per source (a few,
/// then once a second), and those that repeat for as long as a setting
/// differs (no common version) once per source and reason.
#[derive(Debug, Default)]
struct Rejections {
    per_source: SourceRefusals,
    once: Mutex<HashSet<String>>,
}

impl Rejections {
    /// Whether `key` is logged for the first time (forgets all past a
    /// bound, so strangers cannot grow the set).
    fn first_time(&self, key: String) -> bool {
        let Ok(mut logged) = self.once.lock() else {
            return true;
        };
        if logged.len() >= 256 {
            logged.clear();
        }
        logged.insert(key)
    }
}

/// Answers the catch-up sync the neighbour starts the link with: the first
/// line after it, or `None` (logged) if the link was lost during it.
async fn answer_neighbour_sync(
    framed: &mut PeerFramed,
    neighbour: &str,
    gate: &PeerGate,
) -> Option<Bytes> {
    match answer_sync(framed, &gate.store, gate.identity.timeout).await {
        Ok((stats, first)) => {
            debug!(target: "peer", "{}: answered {neighbour}'s sync: {} rounds, {} bytes \
                out, {} in, {:?}", gate.identity.me, stats.rounds, stats.bytes_out, stats.bytes_in,
                stats.elapsed);
            Some(first)
        }
        Err(e) => {
            info!(target: "peer", "{}: link from {neighbour} lost during sync: {e}", gate.identity.me);
            None
        }
    }
}
