//! The LocationStoreActor: one per server, the only owner of the records.
//!
//! Every update, whether a client's IAMAT or a peer's flood, comes here, and
//! only here is it decided whether the update is new (SPEC §3, "Which record
//! wins", implemented by [`Record::supersedes`]). A new record is kept,
//! written to the journal when the server has one, and passed on to the
//! neighbours that [`tree`](crate::tree) names: its children in the origin's
//! shortest-path tree while their links carry, or every neighbour but the one
//! it came from around a link that does not; a stale one changes nothing and
//! goes nowhere. That one rule is what makes a flood stop: a server forwards
//! an update at most once per record.
//!
//! The store also keeps a [`Digest`] of its records so that a peer link can
//! find what the other side lacks (see `digest.rs` and `sync.rs`), and
//! answers the two questions `sync.rs` asks in a sync's last round: which
//! fingerprints it holds in some leaves ([`LeafFingerprints`]) and which of
//! its records a peer lacks ([`SyncRecords`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use log::{debug, info, warn};
use tokio::sync::oneshot;

use crate::digest::{leaf_of, leaves_under, Digest, LEAVES};
use crate::metrics::Metrics;
use crate::peer_line::{Spread, TopologyDigest};
use crate::protocol::Timestamp;
use crate::record::{ByClient, Record, RecordSet, SharedRecord};
pub use crate::source::Source;
use crate::supervise::{guarded, RestartBudget};
use crate::text::LogText;
use crate::tree::Topology;

/// How much of a refused line is logged: enough to recognise it, never a
/// 64 KiB line per refusal.
const LOGGED_BYTES: usize = 300;

const LOG: &str = "store";

/// How much of a client's name an update's log line shows.
const LOGGED_CLIENT_BYTES: usize = 100;

/// Persistence for records (implemented outside this crate, which does no
/// file I/O). `append` hands back a receiver that fires once the record is
/// durable; the store never waits on it itself.
pub trait Journal: Send {
    fn append(&mut self, record: &SharedRecord) -> oneshot::Receiver<Result<(), NotDurable>>;
    /// Every record on disk, once what was appended before is written: what
    /// a restarted store starts again from.
    fn reload(&mut self) -> Result<Vec<Record>, String>;
}

/// Why a journalled record is not durable: the client is not answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotDurable {
    /// The journal stopped (the server is shutting down).
    #[error("journal closed")]
    Closed,
    /// The write or its fsync failed; the journal's own message.
    #[error("{0}")]
    Failed(String),
}

/// A record to apply. Answered with whether it was new. The record comes
/// shared: the connection that sends it keeps a handle to answer with.
#[derive(Message)]
#[rtype(result = "Applied")]
pub struct Update {
    pub record: SharedRecord,
    pub source: Source,
}

/// The IAMAT records of one client read, applied in one go, when nothing
/// waits for the store's verdict (no journal, `herd.ack_after = "local"`):
/// one message per read instead of one per line.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClientUpdates(pub Vec<SharedRecord>);

/// Answered once every message sent to the store before it is handled: a
/// connection whose [`ClientUpdates`] found the mailbox full waits on it,
/// which is its backpressure.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Barrier;

/// Several `AT` lines from one peer read, checked and applied in one go,
/// each with how it travels on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateBatch {
    pub lines: Vec<(Spread, bytes::Bytes)>,
    pub source: Source,
}

/// What the store did with an [`Update`].
#[derive(Debug)]
pub struct Applied {
    /// The record is now the client's newest.
    pub new: bool,
    /// Fires when the record is durable (only with a journal, only if new).
    pub durable: Option<oneshot::Receiver<Result<(), NotDurable>>>,
    /// Fires when a neighbour has acknowledged the record (only with
    /// `herd.ack_after = "neighbour"`, only if new).
    pub replicated: Option<oneshot::Receiver<()>>,
}

impl Applied {
    fn stale() -> Applied {
        Applied {
            new: false,
            durable: None,
            replicated: None,
        }
    }
}

/// When a client's IAMAT is answered (`herd.ack_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckAfter {
    /// Once the store took it (and the journal, if any, holds it).
    #[default]
    Local,
    /// Also once a neighbour has acknowledged it, or at the deadline.
    Neighbour,
}

/// Neighbours acknowledged these records (sent only with
/// [`AckAfter::Neighbour`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Replicated(pub Vec<SharedRecord>);

/// What a handshake showed of another server's topology.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HeardTopology {
    pub name: Arc<str>,
    pub topology: TopologyDigest,
    /// False when that server dialled this one without being its neighbour
    /// here: its settings list a link that this server's do not.
    pub listed: bool,
}

/// This server's topology and what its neighbours said of theirs.
#[derive(Message)]
#[rtype(result = "TopologyView")]
pub struct GetTopology;

/// The answer to [`GetTopology`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyView {
    pub mine: TopologyDigest,
    /// Updates are flooded along every link (some server differs).
    pub mixed: bool,
    /// The servers whose topology differs from this one's, with theirs.
    pub differing: Vec<(Arc<str>, TopologyDigest)>,
}

/// The store's digest root: anti-entropy compares two.
#[derive(Message)]
#[rtype(result = "u64")]
pub struct GetRoot;

/// Test hook (`HERD_TEST_HOOKS`): forgets one client's record here only,
/// neither journalled nor flooded, to make two stores differ while their
/// links stay up.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Forget {
    pub client: bytes::Bytes,
}

/// Test hook (`HERD_TEST_HOOKS`): stops the store (`panic: false`) or makes
/// its handler panic (`true`); its supervisor restarts it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Crash {
    pub panic: bool,
}

/// The newest record of one client.
#[derive(Message)]
#[rtype(result = "Option<SharedRecord>")]
pub struct Lookup {
    pub client: bytes::Bytes,
}

/// Registers a neighbour's outgoing link, to which new records are flooded.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddPeer {
    pub name: Arc<str>,
    pub link: Recipient<Flood>,
    /// The same link, asked to compare stores at once after a restart.
    pub compare: Recipient<CompareNow>,
}

/// Asks a link to compare its two stores' roots now, not at its next
/// anti-entropy round: a store restarted empty is refilled by the
/// neighbours' repairs within a round trip.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CompareNow;

/// New records for a neighbour: those the store took since its last flood,
/// in the order it took them (one message per burst, not per record), each
/// with how the neighbour passes it on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flood(pub Vec<(SharedRecord, Spread)>);

/// A neighbour's link started or stopped carrying floods promptly (it is up
/// and keeping up). When it stops, `unconfirmed` holds what it was given
/// lately or could not send; the store floods those around it, so that the
/// link's side of a tree does not wait for the link to come back.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LinkChanged {
    pub name: Arc<str>,
    pub carrying: bool,
    pub unconfirmed: Vec<SharedRecord>,
}

/// Sends the floods collected while the mailbox was being drained.
#[derive(Message)]
#[rtype(result = "()")]
struct SendFloods;

/// The records a peer may lack, found by a sync's walk down the digest tree
/// (see `digest.rs`): every record under the `whole` nodes, and every record
/// of a listed leaf whose fingerprint is not among the peer's.
#[derive(Message)]
#[rtype(result = "Vec<SharedRecord>")]
pub struct SyncRecords {
    /// `(level, node)`: the peer holds nothing there.
    pub whole: Vec<(u8, usize)>,
    /// Leaf -> the fingerprints of the peer's records in it.
    pub leaves: HashMap<usize, HashSet<u64>>,
}

/// The fingerprints of this store's records in each of `leaves`, in the
/// order asked.
#[derive(Message)]
#[rtype(result = "Vec<(usize, Vec<u64>)>")]
pub struct LeafFingerprints {
    pub leaves: Vec<usize>,
}

/// This store's digest.
#[derive(Message)]
#[rtype(result = "Digest")]
pub struct GetDigest;

/// How many records the store remembers as its most recent updates.
pub const RECENT: usize = 1000;

/// The record count and the newest updates (at most [`RECENT`], newest
/// first, one per client): what an operator's overview shows, answered
/// without reading the whole store.
#[derive(Message)]
#[rtype(result = "Overview")]
pub struct GetOverview;

/// The answer to [`GetOverview`].
#[derive(Debug)]
pub struct Overview {
    pub records: usize,
    pub recent: Vec<SharedRecord>,
}

/// When and from whom this store took the record it holds for a client
/// (`/trace`, `herdctl trace`).
#[derive(Message)]
#[rtype(result = "Option<Traced>")]
pub struct Trace {
    pub client: bytes::Bytes,
}

/// The answer to [`Trace`]: the record held, and how it came when the store
/// still remembers (the last [`TRACED`] updates taken).
#[derive(Debug, Clone)]
pub struct Traced {
    pub record: SharedRecord,
    pub arrival: Option<Arrival>,
}

/// How many updates the store remembers the arrival of.
pub const TRACED: usize = 65_536;

/// When this store took a record (its clock, nanoseconds since the epoch)
/// and where it came from.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// The record (weak: a replaced record's line is freed at once, and its
    /// address cannot be reused while this is remembered).
    record: std::sync::Weak<Record>,
    pub at_nanos: i128,
    pub from: Source,
}

/// Every record, for dumps and invariant checks.
#[derive(Message)]
#[rtype(result = "Vec<SharedRecord>")]
pub struct Dump;

/// A neighbour's link and the records waiting to be flooded to it.
struct Neighbour {
    name: Arc<str>,
    link: Recipient<Flood>,
    compare: Recipient<CompareNow>,
    outbox: Vec<(SharedRecord, Spread)>,
    /// The link is up and keeping up: updates may go down a tree through it.
    carrying: bool,
}

impl Neighbour {
    fn send_outbox(&mut self) {
        if !self.outbox.is_empty() {
            // Room for the next burst like this one.
            let next = Vec::with_capacity(self.outbox.len());
            self.link
                .do_send(Flood(std::mem::replace(&mut self.outbox, next)));
        }
    }
}

/// `limits.record_ttl_ms` by default: zero, records are kept for ever.
pub const DEFAULT_RECORD_TTL: Duration = Duration::ZERO;

/// Whether `record` has expired: its origin received it at or before
/// `cutoff` (now minus the TTL; none without a TTL). The one rule for the
/// sweep, lookups, and records arriving from anywhere.
fn expired(record: &Record, cutoff: Option<i128>) -> bool {
    cutoff.is_some_and(|cutoff| record.received_nanos() <= cutoff)
}

/// Most records in one [`Flood`] message.
const MAX_FLOOD_BATCH: usize = 1024;

/// How long a server that dialled this one without being its neighbour
/// here keeps the herd counted as mixed after its last attempt (it retries
/// every two seconds at most while its settings list the link).
const ONE_SIDED_MEMORY: Duration = Duration::from_secs(10);

/// Another server's topology, as its last handshake showed it.
#[derive(Debug, Clone)]
struct Heard {
    topology: TopologyDigest,
    listed: bool,
    at: Instant,
}

/// The store's owner.
pub struct LocationStoreActor {
    server: Arc<str>,
    records: RecordSet,
    /// The same records by digest leaf, so that a sync reads only the
    /// leaves it asks about (8 bytes per record), never the whole store.
    by_leaf: Vec<Vec<SharedRecord>>,
    digest: Digest,
    /// The records most recently taken, oldest first, at most [`RECENT`]
    /// (a client updated twice is in it twice).
    recent: std::collections::VecDeque<SharedRecord>,
    peers: Vec<Neighbour>,
    /// The herd's links, as every server knows them.
    topology: Topology,
    /// For each origin, the indexes in `peers` of this server's children in
    /// its tree; an origin not here (unknown, or a child that is not among
    /// `peers`) has its updates flooded.
    routes: HashMap<Box<[u8]>, Vec<usize>>,
    /// The records held that this server has flooded (by address, removed
    /// when the record is replaced): each is flooded at most once, which is
    /// what ends a flood that passes through servers already holding it.
    flooded: HashSet<usize>,
    /// A [`SendFloods`] is queued behind the messages in the mailbox.
    floods_scheduled: bool,
    journal: Option<Box<dyn Journal>>,
    metrics: Arc<Metrics>,
    /// `limits.max_future_skew_ms`: a neighbour's or the journal's record
    /// further ahead of our clock than this is refused, as a client's is.
    max_future_skew: Duration,
    /// The digest of `topology`, and what other servers' handshakes showed
    /// of theirs.
    my_topology: TopologyDigest,
    heard: BTreeMap<Arc<str>, Heard>,
    /// Some server was given other links than this one: every update is
    /// flooded, since trees computed from different links do not meet.
    mixed: bool,
    ack_after: AckAfter,
    /// Clients waiting for a neighbour to acknowledge a record, by the
    /// record's address.
    waiting: HashMap<usize, Vec<oneshot::Sender<()>>>,
    restarts: RestartBudget,
    /// The indexes in `peers` that [`forward`](Self::forward) queued its
    /// record for, kept between calls so that naming them allocates nothing.
    sent_to: Vec<usize>,
    /// The text of an update's log line, kept between updates.
    log_line: String,
    /// `limits.record_ttl_ms` in nanoseconds; 0 keeps records for ever.
    ttl_nanos: i128,
    /// The arrivals of the last [`TRACED`] updates taken, oldest first.
    arrivals: std::collections::VecDeque<Arrival>,
    /// Gives freed memory back to the system after a sweep that dropped
    /// many records (the binary knows its allocator; none in tests).
    release_memory: Option<ReleaseMemory>,
}

/// Returns freed heap memory to the system (the binary's allocator call).
pub type ReleaseMemory = Arc<dyn Fn() + Send + Sync>;

/// A sweep that drops at least this many records gives memory back.
const RELEASE_AFTER: usize = 10_000;

impl LocationStoreActor {
    /// A store that starts with `records` (for example, loaded from disk).
    /// A loaded record that breaks the client rules is skipped and logged.
    pub fn new(
        server: Arc<str>,
        records: Vec<Record>,
        journal: Option<Box<dyn Journal>>,
        metrics: Arc<Metrics>,
        max_future_skew: Duration,
    ) -> LocationStoreActor {
        let mut store = LocationStoreActor {
            server,
            records: RecordSet::with_capacity(records.len()),
            by_leaf: vec![Vec::new(); LEAVES],
            digest: Digest::default(),
            recent: std::collections::VecDeque::new(),
            peers: Vec::new(),
            topology: Topology::default(),
            routes: HashMap::new(),
            flooded: HashSet::new(),
            floods_scheduled: false,
            journal,
            metrics,
            max_future_skew,
            my_topology: Topology::default().digest(),
            heard: BTreeMap::new(),
            mixed: false,
            ack_after: AckAfter::Local,
            waiting: HashMap::new(),
            restarts: RestartBudget::default(),
            release_memory: None,
            sent_to: Vec::new(),
            log_line: String::new(),
            ttl_nanos: 0,
            arrivals: std::collections::VecDeque::new(),
        };
        store.load(records);
        store
    }

    /// Takes `records` (from disk) into an empty store.
    fn load(&mut self, records: Vec<Record>) {
        let now = Timestamp::now();
        let cutoff = self.expiry_cutoff();
        let mut outlived = 0;
        for record in records {
            if record.time().too_far_ahead_of(now, self.max_future_skew) {
                self.refuse(record.at_line(), "the journal", "time too far ahead");
                continue;
            }
            // Expired records stay on disk until a newer record of their
            // client overwrites them; they are never taken back.
            if expired(&record, cutoff) {
                outlived += 1;
                continue;
            }
            let _ = self.insert_if_newer(record);
        }
        self.metrics.records_expired.inc_by(outlived as u64);
        self.note_outlived(outlived);
        // Loaded records are not updates (only `apply` notes those): the
        // overview starts with the newest by client time, not with the
        // journal's key order.
        self.recent = self.newest_by_time(RECENT);
        self.metrics.set_records(self.records.len());
    }

    /// Sends updates down their origins' trees over `topology` (without
    /// one, every update is flooded).
    pub fn with_topology(mut self, topology: Topology) -> LocationStoreActor {
        self.my_topology = topology.digest();
        self.topology = topology;
        self.find_routes();
        self
    }

    /// When clients' IAMATs are answered (`herd.ack_after`).
    pub fn with_ack_after(mut self, ack_after: AckAfter) -> LocationStoreActor {
        self.ack_after = ack_after;
        self
    }

    /// Drops records `ttl` after their origin received them
    /// (`limits.record_ttl_ms`; zero keeps them for ever). Records the
    /// store was made with that have expired already are dropped at once.
    pub fn with_ttl(mut self, ttl: Duration) -> LocationStoreActor {
        self.ttl_nanos = i128::try_from(ttl.as_nanos()).unwrap_or(i128::MAX);
        let outlived = self.sweep();
        self.note_outlived(outlived);
        self
    }

    /// How to give freed memory back to the system once a churn of clients
    /// has expired.
    pub fn with_release_memory(mut self, release: ReleaseMemory) -> LocationStoreActor {
        self.release_memory = Some(release);
        self
    }

    /// Logs how many of the records loaded from the journal had expired.
    fn note_outlived(&self, outlived: usize) {
        if outlived > 0 {
            info!(target: LOG, "{}: {outlived} expired records in the journal left out",
                self.server);
        }
    }

    /// Now minus the TTL, when there is one: records received at or before
    /// it have expired. The clock is read only with a TTL set.
    fn expiry_cutoff(&self) -> Option<i128> {
        (self.ttl_nanos > 0).then(|| Timestamp::now().as_nanos().saturating_sub(self.ttl_nanos))
    }

    /// Drops every expired record: from the records, their leaves, the
    /// digest and the recent updates. One pass over the leaves, so the cost
    /// is that of reading the store once; emptied capacity is given back,
    /// so that memory falls once a churn of clients has expired.
    /// Returns how many it dropped.
    fn sweep(&mut self) -> usize {
        let cutoff = self.expiry_cutoff();
        if cutoff.is_none() {
            return 0;
        }
        let mut gone = Vec::new();
        for leaf in &mut self.by_leaf {
            leaf.retain(|r| {
                let keep = !expired(r, cutoff);
                if !keep {
                    gone.push(r.clone());
                }
                keep
            });
            if leaf.is_empty() || leaf.capacity() > 4 * leaf.len().max(4) {
                leaf.shrink_to_fit();
            }
        }
        self.recent.retain(|r| !expired(r, cutoff));
        if gone.is_empty() {
            return 0;
        }
        for record in &gone {
            self.records.remove(record.client());
            self.forget_indexes(record);
        }
        if self.records.capacity() > 4 * self.records.len().max(1024) {
            self.records.shrink_to_fit();
        }
        if self.flooded.capacity() > 4 * self.flooded.len().max(1024) {
            self.flooded.shrink_to_fit();
        }
        if self.recent.capacity() > 4 * self.recent.len().max(64) {
            self.recent.shrink_to_fit();
        }
        self.metrics.records_expired.inc_by(gone.len() as u64);
        self.metrics.set_records(self.records.len());
        debug!(target: LOG, "{}: {} records expired", self.server, gone.len());
        let dropped = gone.len();
        // The records themselves are freed here, with the last handles; a
        // weak handle still keeps a record's allocation, so the arrivals of
        // records that are gone are forgotten too.
        drop(gone);
        self.arrivals.retain(|a| a.record.strong_count() > 0);
        if self.arrivals.capacity() > 4 * self.arrivals.len().max(64) {
            self.arrivals.shrink_to_fit();
        }
        if dropped >= RELEASE_AFTER {
            if let Some(release) = &self.release_memory {
                release();
            }
        }
        dropped
    }

    /// Removes `held`, the record held for its client, from every index
    /// but the record set and its leaf.
    fn forget_indexes(&mut self, held: &SharedRecord) {
        self.digest.remove(held);
        self.flooded.remove(&address(held));
        self.waiting.remove(&address(held));
    }

    /// Removes `held`, the record held for its client, from the store.
    fn remove(&mut self, held: &SharedRecord) {
        self.records.remove(held.client());
        self.by_leaf[leaf_of(held.client())].retain(|r| !Arc::ptr_eq(r, held));
        self.forget_indexes(held);
        self.metrics.set_records(self.records.len());
    }

    /// A record that arrived expired: counted, never stored or passed on.
    fn refuse_expired(&self, record: &Record, source: &Source) {
        Metrics::bump(&self.metrics.records_expired);
        debug!(target: LOG, "{}: {} {} from {source}, expired", self.server,
            LogText::clipped(record.client(), LOGGED_CLIENT_BYTES),
            LogText::new(record.time_text()));
    }

    /// Where restarts are counted, and what a storm of them does.
    pub fn with_restarts(mut self, restarts: RestartBudget) -> LocationStoreActor {
        self.restarts = restarts;
        self
    }

    /// What a panic's log line calls this actor (the server's log file is
    /// chosen by the name it starts with).
    fn what(&self) -> String {
        format!("{}: the store", self.server)
    }

    /// Forgets every record and takes them again from the journal, or
    /// starts empty without one (the neighbours' syncs refill it): what a
    /// restart does. Links, routes and what was heard of topologies stay.
    fn rebuild(&mut self) {
        let records = match self.journal.as_mut().map(|j| j.reload()) {
            Some(Ok(records)) => records,
            Some(Err(e)) => {
                warn!(target: LOG, "{}: reloading the journal failed: {e}; starting empty", self.server);
                Vec::new()
            }
            None => Vec::new(),
        };
        self.records = RecordSet::with_capacity(records.len());
        self.by_leaf = vec![Vec::new(); LEAVES];
        self.digest = Digest::default();
        self.flooded.clear();
        self.arrivals.clear();
        // Their records are gone: waiting clients are answered now, counted
        // as unreplicated (their receivers see the senders dropped).
        self.waiting.clear();
        self.load(records);
        info!(target: LOG, "{}: store restarted with {} records; comparing with every neighbour",
            self.server, self.records.len());
        // The neighbours repair what it lacks (what came in while it was
        // down, or everything when it keeps records in memory only).
        for peer in &self.peers {
            peer.compare.do_send(CompareNow);
        }
    }

    /// Notes another server's topology; floods while any differs.
    fn heard(&mut self, msg: HeardTopology) {
        let changed = self
            .heard
            .get(&msg.name)
            .is_none_or(|h| h.topology != msg.topology || h.listed != msg.listed);
        if changed && !msg.listed {
            Metrics::bump(&self.metrics.peer_one_sided);
            warn!(target: LOG, "{}: {} dialled this server, but this server's settings list no \
                link between them (its topology {}, this server's {}): the herd is being \
                changed, or a setting differs", self.server, msg.name, msg.topology, self.my_topology);
        } else if changed && msg.topology != self.my_topology {
            warn!(target: LOG, "{}: {} was given other links (topology {}, this server's {})",
                self.server, msg.name, msg.topology, self.my_topology);
        }
        self.heard.insert(
            msg.name,
            Heard {
                topology: msg.topology,
                listed: msg.listed,
                at: Instant::now(),
            },
        );
        self.update_mixed();
    }

    /// Forgets one-sided dialers gone quiet, and recomputes `mixed`.
    fn update_mixed(&mut self) {
        self.heard
            .retain(|_, h| h.listed || h.at.elapsed() < ONE_SIDED_MEMORY);
        let mixed = self.heard.values().any(|h| h.topology != self.my_topology);
        if mixed != self.mixed {
            self.mixed = mixed;
            self.metrics.topology_mixed.set(i64::from(mixed));
            if mixed {
                warn!(target: LOG, "{}: the herd is mixed (servers were given different links): \
                    every update is flooded until they agree", self.server);
            } else {
                info!(target: LOG, "{}: every server heard from agrees on the links again: \
                    updates go down trees", self.server);
            }
        }
    }

    fn topology_view(&self) -> TopologyView {
        TopologyView {
            mine: self.my_topology,
            mixed: self.mixed,
            differing: self
                .heard
                .iter()
                .filter(|(_, h)| h.topology != self.my_topology)
                .map(|(name, h)| (name.clone(), h.topology))
                .collect(),
        }
    }

    /// Works out, for every origin, which of `peers` are this server's
    /// children in its tree.
    fn find_routes(&mut self) {
        self.routes.clear();
        for origin in self.topology.servers() {
            let Some(children) = self.topology.children(origin, &self.server) else {
                continue;
            };
            let indexes: Option<Vec<usize>> = children
                .iter()
                .map(|child| self.peers.iter().position(|p| p.name == *child))
                .collect();
            if let Some(indexes) = indexes {
                self.routes.insert(origin.as_bytes().into(), indexes);
            }
        }
    }

    /// Keeps `record` if it is newer than what we hold. Returns the shared
    /// record when it was taken, and gives it back when it was not.
    /// A stale record is dropped without being put behind an `Arc`.
    fn insert_if_newer<R>(&mut self, record: R) -> Result<SharedRecord, R>
    where
        R: std::borrow::Borrow<Record> + Into<SharedRecord>,
    {
        let current = self
            .records
            .get(record.borrow().client())
            .map(|r| r.0.clone());
        if let Some(current) = &current {
            if !record.borrow().supersedes(current) {
                return Err(record);
            }
        }
        let record: SharedRecord = record.into();
        if let Some(current) = &current {
            // (Both are empty while every link carries: no hashing then.)
            if !self.flooded.is_empty() {
                self.flooded.remove(&address(current));
            }
            // Superseded before a neighbour acknowledged it: the newer
            // record is what replication is about now.
            if !self.waiting.is_empty() {
                self.waiting.remove(&address(current));
            }
        }
        self.digest.replace(current.as_deref(), &record);
        self.records.replace(ByClient(record.clone()));
        let leaf = &mut self.by_leaf[leaf_of(record.client())];
        // The leaf holds the very `Arc` the set held: found by address, so
        // the scan reads only the leaf's pointers, never the records behind
        // them (one cache miss each); a new client is simply added.
        let slot = current
            .as_ref()
            .and_then(|current| leaf.iter_mut().find(|r| Arc::ptr_eq(r, current)));
        match slot {
            Some(slot) => *slot = record.clone(),
            None => leaf.push(record.clone()),
        }
        Ok(record)
    }

    /// Applies `items` one by one, a panic turned into a restart
    /// ([`guarded`]). Returns the items after the one that panicked (none
    /// when none did): the caller sends them again, to be applied once the
    /// store has restarted (the mailbox outlives it); the one that panicked
    /// is dropped, as a message of its own would be.
    fn apply_each<T>(
        &mut self,
        items: Vec<T>,
        ctx: &mut Context<Self>,
        mut apply: impl FnMut(&mut Self, T, &mut Context<Self>),
    ) -> Vec<T> {
        let mut items = items.into_iter();
        guarded(
            self,
            ctx,
            LocationStoreActor::what,
            || (),
            |store, ctx| {
                for item in items.by_ref() {
                    apply(store, item, ctx);
                }
            },
        );
        items.collect()
    }

    /// Applies one update: keep, journal and flood if new.
    fn apply<R>(
        &mut self,
        record: R,
        source: &Source,
        spread: Spread,
        ctx: &mut Context<Self>,
    ) -> Applied
    where
        R: std::borrow::Borrow<Record> + Into<SharedRecord>,
    {
        if expired(record.borrow(), self.expiry_cutoff()) {
            self.refuse_expired(record.borrow(), source);
            return Applied::stale();
        }
        let shared = match self.insert_if_newer(record) {
            Ok(shared) => shared,
            Err(record) => {
                self.metrics.count_update(source.kind(), false);
                self.log_stale(record.borrow(), source);
                return Applied::stale();
            }
        };
        self.metrics.count_update(source.kind(), true);
        self.metrics.set_records(self.records.len());
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(shared.clone());
        if self.arrivals.len() == TRACED {
            self.arrivals.pop_front();
        }
        self.arrivals.push_back(Arrival {
            record: Arc::downgrade(&shared),
            at_nanos: Timestamp::now().as_nanos(),
            from: source.clone(),
        });
        let durable = self.journal.as_mut().map(|j| j.append(&shared));
        let replicated =
            (self.ack_after == AckAfter::Neighbour && *source == Source::Client).then(|| {
                let (tx, rx) = oneshot::channel();
                self.waiting.entry(address(&shared)).or_default().push(tx);
                rx
            });
        self.forward(&shared, source.peer(), spread, Some(source), ctx);
        Applied {
            new: true,
            durable,
            replicated,
        }
    }

    /// Applies a neighbour's `AT` line, sent down a tree or flooded. Around
    /// a failed link the same record may arrive twice or more; a
    /// byte-for-byte copy of the record held is stale whatever it says, and
    /// is dropped before it is even parsed.
    fn apply_line(
        &mut self,
        spread: Spread,
        line: &[u8],
        source: &Source,
        ctx: &mut Context<Self>,
    ) {
        // The sync's records repair what a link missed: flooded on.
        let spread = match source {
            Source::Sync(_) => Spread::Flood,
            _ => spread,
        };
        if let Some(held) = self.held_copy_of(line) {
            self.metrics.count_update(source.kind(), false);
            self.log_stale(&held, source);
            // A neighbour floods a record around a failed link: servers that
            // had it down the tree pass it on once more, so that it reaches
            // the far side of the failure through them.
            if spread == Spread::Flood
                && matches!(source, Source::Peer(_))
                && !self.flooded.contains(&address(&held))
                && !expired(&held, self.expiry_cutoff())
            {
                self.forward_again(&held, source.peer(), ctx);
            }
            return;
        }
        let from = source.peer().unwrap_or("?");
        match Record::from_at_line(line) {
            Ok(record)
                if record
                    .time()
                    .too_far_ahead_of(Timestamp::now(), self.max_future_skew) =>
            {
                self.refuse(line, from, "time too far ahead");
            }
            Ok(record) => {
                self.apply(record, source, spread, ctx);
            }
            Err(_) => self.refuse(line, from, "breaks the client rules"),
        }
    }

    /// A line from a neighbour, a sync or the journal that is not stored:
    /// counted and logged (escaped, at most [`LOGGED_BYTES`] of it).
    fn refuse(&self, line: &[u8], from: &str, why: &str) {
        Metrics::bump(&self.metrics.records_refused);
        warn!(target: LOG, "{}: refused a record from {from} ({why}, {} bytes): {}",
            self.server, line.len(), LogText::clipped(line, LOGGED_BYTES));
    }

    /// The `limit` records of the newest client times, oldest first.
    fn newest_by_time(&self, limit: usize) -> std::collections::VecDeque<SharedRecord> {
        let mut all: Vec<&SharedRecord> = self.records.iter().map(|r| &r.0).collect();
        if all.len() > limit {
            let cut = all.len() - limit;
            all.select_nth_unstable_by_key(cut, |r| r.time());
            all.drain(..cut);
        }
        all.sort_unstable_by_key(|r| r.time());
        all.into_iter().cloned().collect()
    }

    /// The record held for `line`'s client, when `line` is byte for byte its
    /// line. The client is the fourth field of a canonical line (single
    /// spaces); any other line simply misses here and is parsed in full.
    fn held_copy_of(&self, line: &[u8]) -> Option<SharedRecord> {
        let held = self.records.get(Record::client_of_canonical(line))?;
        (held.0.at_line() == line).then(|| held.0.clone())
    }

    /// Queues `record` for the neighbours it goes to: down its origin's tree
    /// when every child's link carries, otherwise flooded to every neighbour
    /// but `from`. The queues are sent once the mailbox has been drained
    /// ([`SendFloods`]), so a burst of updates costs each link one message,
    /// not one per record.
    ///
    /// `taken` is where the update that the store just took as new came
    /// from (none when a record held already goes on again): one line at
    /// info says so and names the neighbours it was queued for, so that an
    /// operator can follow an update through the servers' logs. The names
    /// are gathered only when that line is logged.
    fn forward(
        &mut self,
        record: &SharedRecord,
        from: Option<&str>,
        spread: Spread,
        taken: Option<&Source>,
        ctx: &mut Context<Self>,
    ) {
        let logged = taken.filter(|_| log::log_enabled!(target: LOG, log::Level::Info));
        self.sent_to.clear();
        let children = match spread {
            // While servers disagree on the links, their trees do not meet.
            Spread::Tree if !self.mixed => self.routes.get(record.origin()),
            _ => None,
        };
        let children = children.filter(|c| c.iter().all(|&i| self.peers[i].carrying));
        if children.is_none() {
            self.flooded.insert(address(record));
        }
        let mut queued = false;
        for (i, peer) in self.peers.iter_mut().enumerate() {
            let (goes, spread) = match children {
                Some(children) => (children.contains(&i), Spread::Tree),
                None => (Some(&*peer.name) != from, Spread::Flood),
            };
            if goes {
                queued = true;
                if logged.is_some() {
                    self.sent_to.push(i);
                }
                peer.outbox.push((record.clone(), spread));
                // The mailbox is drained until empty before SendFloods runs;
                // senders on other threads could keep it full, so a burst
                // is also cut at a bound.
                if peer.outbox.len() >= MAX_FLOOD_BATCH {
                    peer.send_outbox();
                }
            }
        }
        if queued && !self.floods_scheduled {
            self.floods_scheduled = true;
            ctx.notify(SendFloods);
        }
        if let Some(source) = logged {
            // Built piece by piece in a buffer kept between updates: the
            // formatting machinery costs several times more per argument.
            let line = &mut self.log_line;
            line.clear();
            line.push_str(&self.server);
            line.push_str(": ");
            LogText::clipped(record.client(), LOGGED_CLIENT_BYTES).write_to(line);
            line.push(' ');
            LogText::new(record.time_text()).write_to(line);
            let (name, how) = source.described();
            line.push_str(" from ");
            line.push_str(name);
            line.push_str(how);
            line.push_str(", new, sent to ");
            if self.sent_to.is_empty() {
                line.push_str("nobody");
            }
            for (n, &i) in self.sent_to.iter().enumerate() {
                if n > 0 {
                    line.push_str(", ");
                }
                line.push_str(&self.peers[i].name);
            }
            info!(target: LOG, "{line}");
        }
    }

    /// Passes on a record held already, flooded around a link that does not
    /// carry: not a new update, so not logged as one.
    fn forward_again(
        &mut self,
        record: &SharedRecord,
        from: Option<&str>,
        ctx: &mut Context<Self>,
    ) {
        debug!(target: LOG, "{}: {} {} passed on again, flooded (not to {})", self.server,
            LogText::clipped(record.client(), LOGGED_CLIENT_BYTES),
            LogText::new(record.time_text()), from.unwrap_or("nobody"));
        self.forward(record, from, Spread::Flood, None, ctx);
    }

    /// A stale or duplicate copy: at debug only.
    fn log_stale(&self, record: &Record, source: &Source) {
        debug!(target: LOG, "{}: {} {} from {source}, stale", self.server,
            LogText::clipped(record.client(), LOGGED_CLIENT_BYTES),
            LogText::new(record.time_text()));
    }
}

/// A held record's identity in [`LocationStoreActor::flooded`].
fn address(record: &SharedRecord) -> usize {
    Arc::as_ptr(record) as usize
}

impl Actor for LocationStoreActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Peers and connections may queue many messages; never refuse them.
        ctx.set_mailbox_capacity(4096);
        ctx.run_interval(Duration::from_secs(1), |store, _| {
            store.update_mixed();
            store.sweep();
            store.waiting.retain(|_, waiting| {
                waiting.retain(|tx| !tx.is_closed());
                !waiting.is_empty()
            });
        });
        // Floods queued before a restart go out now.
        self.floods_scheduled = false;
        for peer in &mut self.peers {
            peer.send_outbox();
        }
        info!(target: LOG, "{}: store up with {} records", self.server, self.records.len());
    }
}

impl actix::Supervised for LocationStoreActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        Metrics::bump(&self.metrics.restarts_store);
        self.restarts
            .restarted(&format!("{}: store", self.server), Instant::now());
        self.rebuild();
    }
}

impl Handler<Update> for LocationStoreActor {
    type Result = MessageResult<Update>;

    fn handle(&mut self, msg: Update, ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(guarded(
            self,
            ctx,
            LocationStoreActor::what,
            Applied::stale,
            |store, ctx| store.apply(msg.record, &msg.source, Spread::Tree, ctx),
        ))
    }
}

impl Handler<ClientUpdates> for LocationStoreActor {
    type Result = ();

    fn handle(&mut self, ClientUpdates(records): ClientUpdates, ctx: &mut Context<Self>) {
        let rest = self.apply_each(records, ctx, |store, record, ctx| {
            store.apply(record, &Source::Client, Spread::Tree, ctx);
        });
        if !rest.is_empty() {
            ctx.address().do_send(ClientUpdates(rest));
        }
    }
}

impl Handler<Barrier> for LocationStoreActor {
    type Result = ();

    fn handle(&mut self, _: Barrier, _: &mut Context<Self>) {}
}

impl Handler<UpdateBatch> for LocationStoreActor {
    type Result = ();

    fn handle(&mut self, UpdateBatch { lines, source }: UpdateBatch, ctx: &mut Context<Self>) {
        // A flood is acknowledged to no one, so the durability receiver is
        // dropped unread; a failed write is logged by the journal and
        // repaired by the next sync.
        let rest = self.apply_each(lines, ctx, |store, (spread, line), ctx| {
            store.apply_line(spread, &line, &source, ctx);
        });
        if !rest.is_empty() {
            ctx.address().do_send(UpdateBatch {
                lines: rest,
                source,
            });
        }
    }
}

impl Handler<HeardTopology> for LocationStoreActor {
    type Result = ();

    fn handle(&mut self, msg: HeardTopology, _: &mut Context<Self>) {
        self.heard(msg);
    }
}

impl Handler<GetTopology> for LocationStoreActor {
    type Result = MessageResult<GetTopology>;

    fn handle(&mut self, _: GetTopology, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.topology_view())
    }
}

impl Handler<GetRoot> for LocationStoreActor {
    type Result = u64;

    fn handle(&mut self, _: GetRoot, _: &mut Context<Self>) -> u64 {
        // Expired records never make two roots differ.
        self.sweep();
        self.digest.root()
    }
}

impl Handler<Replicated> for LocationStoreActor {
    type Result = ();

    fn handle(&mut self, Replicated(records): Replicated, _: &mut Context<Self>) {
        for record in records {
            for waiting in self.waiting.remove(&address(&record)).unwrap_or_default() {
                let _ = waiting.send(());
            }
        }
    }
}

impl Handler<Forget> for LocationStoreActor {
    type Result = bool;

    fn handle(&mut self, msg: Forget, _: &mut Context<Self>) -> bool {
        let Some(held) = self.records.get(&msg.client[..]).map(|r| r.0.clone()) else {
            return false;
        };
        self.remove(&held);
        warn!(target: LOG, "{}: test hook: forgot {} here only", self.server, LogText::clipped(&msg.client, 100));
        true
    }
}

impl Handler<Crash> for LocationStoreActor {
    type Result = ();

    fn handle(&mut self, msg: Crash, ctx: &mut Context<Self>) {
        warn!(target: LOG, "{}: test hook: store {}", self.server,
            if msg.panic { "panicking" } else { "stopping" });
        if !msg.panic {
            return ctx.stop();
        }
        guarded(
            self,
            ctx,
            LocationStoreActor::what,
            || (),
            |_, _| {
                panic!("test hook: the store panics");
            },
        );
    }
}

impl Handler<SendFloods> for LocationStoreActor {
    type Result = ();

    fn handle(&mut self, _: SendFloods, _: &mut Context<Self>) {
        self.floods_scheduled = false;
        for peer in &mut self.peers {
            peer.send_outbox();
        }
    }
}

impl Handler<Lookup> for LocationStoreActor {
    type Result = Option<SharedRecord>;

    /// An expired record not swept yet is dropped here: the client is
    /// unknown from the moment its record expires.
    fn handle(&mut self, msg: Lookup, _: &mut Context<Self>) -> Self::Result {
        let held = self.records.get(&msg.client[..]).map(|r| r.0.clone())?;
        if expired(&held, self.expiry_cutoff()) {
            self.remove(&held);
            Metrics::bump(&self.metrics.records_expired);
            return None;
        }
        Some(held)
    }
}

impl Handler<Trace> for LocationStoreActor {
    type Result = Option<Traced>;

    fn handle(&mut self, msg: Trace, ctx: &mut Context<Self>) -> Self::Result {
        let record = self.handle(Lookup { client: msg.client }, ctx)?;
        let arrival = self
            .arrivals
            .iter()
            .rev()
            .find(|a| std::ptr::eq(a.record.as_ptr(), Arc::as_ptr(&record)))
            .cloned();
        Some(Traced { record, arrival })
    }
}

impl Handler<AddPeer> for LocationStoreActor {
    type Result = ();

    fn handle(&mut self, msg: AddPeer, _: &mut Context<Self>) {
        if self.peers.iter().any(|peer| peer.name == msg.name) {
            warn!(target: LOG, "{}: peer {} registered twice", self.server, msg.name);
            return;
        }
        self.peers.push(Neighbour {
            name: msg.name,
            link: msg.link,
            compare: msg.compare,
            outbox: Vec::new(),
            carrying: false,
        });
        self.find_routes();
    }
}

impl Handler<LinkChanged> for LocationStoreActor {
    type Result = ();

    fn handle(&mut self, msg: LinkChanged, ctx: &mut Context<Self>) {
        let Some(peer) = self.peers.iter_mut().find(|p| p.name == msg.name) else {
            return;
        };
        peer.carrying = msg.carrying;
        // Records the store has since replaced went on in their own right.
        let current: Vec<SharedRecord> = msg
            .unconfirmed
            .into_iter()
            .filter(|r| {
                self.records
                    .get(r.client())
                    .is_some_and(|held| Arc::ptr_eq(&held.0, r))
            })
            .collect();
        if !current.is_empty() {
            info!(target: LOG, "{}: link to {} not carrying; {} records it may not have delivered flooded around it",
                self.server, msg.name, current.len());
        }
        for record in &current {
            self.forward_again(record, Some(&msg.name), ctx);
        }
    }
}

impl Handler<GetDigest> for LocationStoreActor {
    type Result = MessageResult<GetDigest>;

    fn handle(&mut self, _: GetDigest, _: &mut Context<Self>) -> Self::Result {
        self.sweep();
        MessageResult(self.digest.clone())
    }
}

impl Handler<SyncRecords> for LocationStoreActor {
    type Result = MessageResult<SyncRecords>;

    /// Reads only the leaves named: the cost follows the difference.
    fn handle(&mut self, msg: SyncRecords, _: &mut Context<Self>) -> Self::Result {
        if msg.whole.is_empty() && msg.leaves.is_empty() {
            return MessageResult(Vec::new());
        }
        let mut records = Vec::new();
        let mut whole = vec![false; LEAVES];
        for (level, node) in msg.whole {
            for leaf in leaves_under(level, node) {
                if !std::mem::replace(&mut whole[leaf], true) {
                    records.extend(self.by_leaf[leaf].iter().cloned());
                }
            }
        }
        for (leaf, theirs) in &msg.leaves {
            if let Some(mine) = self.by_leaf.get(*leaf).filter(|_| !whole[*leaf]) {
                records.extend(
                    mine.iter()
                        .filter(|r| !theirs.contains(&r.fingerprint()))
                        .cloned(),
                );
            }
        }
        // Expired records are never sent, even before the sweep drops them.
        let cutoff = self.expiry_cutoff();
        records.retain(|r| !expired(r, cutoff));
        MessageResult(records)
    }
}

impl Handler<LeafFingerprints> for LocationStoreActor {
    type Result = MessageResult<LeafFingerprints>;

    fn handle(&mut self, msg: LeafFingerprints, _: &mut Context<Self>) -> Self::Result {
        let found = msg
            .leaves
            .iter()
            .map(|&leaf| {
                let fps = self.by_leaf.get(leaf).map_or_else(Vec::new, |records| {
                    records.iter().map(|r| r.fingerprint()).collect()
                });
                (leaf, fps)
            })
            .collect();
        MessageResult(found)
    }
}

impl Handler<GetOverview> for LocationStoreActor {
    type Result = MessageResult<GetOverview>;

    fn handle(&mut self, _: GetOverview, _: &mut Context<Self>) -> Self::Result {
        let mut seen = HashSet::with_capacity(self.recent.len());
        let recent = self
            .recent
            .iter()
            .rev()
            .filter(|r| seen.insert(r.client()))
            .cloned()
            .collect();
        MessageResult(Overview {
            records: self.records.len(),
            recent,
        })
    }
}

impl Handler<Dump> for LocationStoreActor {
    type Result = MessageResult<Dump>;

    fn handle(&mut self, _: Dump, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.records.iter().map(|r| r.0.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::DEFAULT_MAX_FUTURE_SKEW as DAY;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    const KIWI_1: &str =
        "AT Riley +0.263873386 kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503";
    const KIWI_2: &str =
        "AT Jaquez +0.100000000 kiwi.cs.ucla.edu +34.068930-118.445127 1621464828.000000000";

    /// A neighbour's link that writes down every Flood message it gets.
    struct Recorder(Arc<Mutex<Vec<Vec<String>>>>);

    impl Actor for Recorder {
        type Context = Context<Self>;
    }

    impl Handler<CompareNow> for Recorder {
        type Result = ();
        fn handle(&mut self, _: CompareNow, _: &mut Context<Self>) {}
    }

    impl Handler<Flood> for Recorder {
        type Result = ();
        fn handle(&mut self, Flood(records): Flood, _: &mut Context<Self>) {
            let lines = records
                .iter()
                .map(|(r, spread)| {
                    String::from_utf8_lossy(&[spread.prefix(), r.at_line()].concat()).into_owned()
                })
                .collect();
            self.0.lock().unwrap().push(lines);
        }
    }

    fn store() -> (Addr<LocationStoreActor>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        let store = LocationStoreActor::new("Riley".into(), Vec::new(), None, metrics.clone(), DAY);
        (store.start(), metrics)
    }

    fn batch(lines: &[&str], from: &str) -> UpdateBatch {
        UpdateBatch {
            lines: lines
                .iter()
                .map(|l| match crate::peer_line::PeerLine::parse(l.as_bytes()) {
                    Ok(crate::peer_line::PeerLine::At { spread, line }) => {
                        (spread, bytes::Bytes::copy_from_slice(line))
                    }
                    _ => (Spread::Tree, bytes::Bytes::from(l.to_string())),
                })
                .collect(),
            source: Source::Peer(from.into()),
        }
    }

    async fn held(store: &Addr<LocationStoreActor>) -> Option<String> {
        let client = bytes::Bytes::from_static(b"kiwi.cs.ucla.edu");
        let record = store.send(Lookup { client }).await.unwrap()?;
        Some(String::from_utf8_lossy(record.at_line()).into_owned())
    }

    /// Kiwi's record as received by Riley `ago` before now (with a negative
    /// diff: the client's clock ran a second ahead).
    fn received_ago(client: &str, ago: Duration) -> Record {
        let received = Timestamp::now().as_nanos() - ago.as_nanos() as i128;
        let time = received + 1_000_000_000;
        let (secs, nanos) = (time / 1_000_000_000, time % 1_000_000_000);
        let line =
            format!("AT Riley -1.000000000 {client} +34.068930-118.445127 {secs}.{nanos:09}");
        Record::from_at_line(line.as_bytes()).unwrap()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn expired_records_leave_the_records_their_leaves_and_the_digest() {
        let fresh = received_ago("fresh", Duration::ZERO);
        let old = received_ago("old", 2 * HOUR);
        assert_eq!(
            old.received_nanos(),
            old.time().as_nanos() - 1_000_000_000,
            "received = time + diff, the diff negative"
        );
        let metrics = Arc::new(Metrics::default());
        let loaded = vec![fresh.clone(), old];
        let store = LocationStoreActor::new("Riley".into(), loaded, None, metrics.clone(), DAY);
        assert_eq!(store.records.len(), 2, "without a TTL nothing expires");
        let store = store.with_ttl(HOUR);
        let mut only_fresh = Digest::default();
        only_fresh.replace(None, &fresh);
        assert_eq!(store.digest.root(), only_fresh.root());
        assert_eq!(store.records.len(), 1);
        assert!(!store.records.contains(&b"old"[..]));
        assert_eq!(store.by_leaf.iter().map(Vec::len).sum::<usize>(), 1);
        assert!(store.recent.iter().all(|r| r.client() == b"fresh"));
        assert_eq!(metrics.records_expired.get(), 1);
        assert_eq!(metrics.records.get(), 1);
    }

    #[test]
    fn a_client_whose_record_expired_is_unknown() {
        actix_rt::System::new().block_on(async {
            let metrics = Arc::new(Metrics::default());
            let ttl = Duration::from_millis(600);
            let record = received_ago("kiwi.cs.ucla.edu", Duration::from_millis(100));
            let store =
                LocationStoreActor::new("Riley".into(), vec![record], None, metrics.clone(), DAY)
                    .with_ttl(ttl)
                    .start();
            assert!(held(&store).await.is_some(), "not expired yet");
            let everything = || SyncRecords {
                whole: vec![(0, 0)],
                leaves: Default::default(),
            };
            assert_eq!(store.send(everything()).await.unwrap().len(), 1);
            // The TTL passes (well before the next sweep, a second away):
            // a sync no longer sends the record, a lookup drops it.
            tokio::time::sleep(Duration::from_millis(600)).await;
            assert!(store.send(everything()).await.unwrap().is_empty());
            assert_eq!(metrics.records_expired.get(), 0, "not swept yet");
            assert_eq!(held(&store).await, None);
            assert_eq!(metrics.records_expired.get(), 1);
            assert_eq!(store.send(GetRoot).await.unwrap(), Digest::default().root());
            assert_eq!(store.send(Dump).await.unwrap().len(), 0);
            System::current().stop();
        });
    }

    #[test]
    fn an_expired_record_from_a_neighbour_or_a_client_is_refused_and_counted() {
        actix_rt::System::new().block_on(async {
            let metrics = Arc::new(Metrics::default());
            let store =
                LocationStoreActor::new("Riley".into(), Vec::new(), None, metrics.clone(), DAY)
                    .with_ttl(HOUR)
                    .start();
            let old = received_ago("kiwi.cs.ucla.edu", 2 * HOUR);
            let line = String::from_utf8_lossy(old.at_line()).into_owned();
            store.send(batch(&[&line], "Jaquez")).await.unwrap();
            let mut sync = batch(&[&line], "Jaquez");
            sync.source = Source::Sync("Jaquez".into());
            store.send(sync).await.unwrap();
            let update = Update {
                record: Arc::new(old),
                source: Source::Client,
            };
            let applied = store.send(update).await.unwrap();
            assert!(!applied.new);
            assert_eq!(held(&store).await, None);
            assert_eq!(metrics.records_expired.get(), 3);
            assert_eq!(
                metrics.updates_new_peer.get() + metrics.updates_new_sync.get(),
                0
            );
            assert_eq!(metrics.updates_new_client.get(), 0);
            // A record within the TTL is taken as ever.
            let fresh = received_ago("kiwi.cs.ucla.edu", HOUR / 2);
            let line = String::from_utf8_lossy(fresh.at_line()).into_owned();
            store.send(batch(&[&line], "Jaquez")).await.unwrap();
            assert_eq!(held(&store).await.as_deref(), Some(&*line));
            System::current().stop();
        });
    }

    #[test]
    fn peer_lines_are_checked_and_copies_of_the_held_record_are_stale() {
        actix_rt::System::new().block_on(async {
            let (store, metrics) = store();
            store
                .send(batch(&[KIWI_1, KIWI_1], "Jaquez"))
                .await
                .unwrap();
            assert_eq!(held(&store).await.as_deref(), Some(KIWI_1));
            assert_eq!(metrics.updates_new_peer.get(), 1);
            assert_eq!(metrics.updates_stale_peer.get(), 1);

            // Not canonical (two spaces), newer: parsed, kept in canonical form.
            let spaced = KIWI_2.replacen(' ', "  ", 1);
            store.send(batch(&[&spaced], "Jaquez")).await.unwrap();
            assert_eq!(held(&store).await.as_deref(), Some(KIWI_2));

            // Invalid lines change nothing and count as no update.
            let bad = KIWI_2
                .replace("+34.068930", "+94.068930")
                .replace("828.", "829.");
            store
                .send(batch(&[&bad, "AT Riley"], "Jaquez"))
                .await
                .unwrap();
            assert_eq!(held(&store).await.as_deref(), Some(KIWI_2));
            assert_eq!(metrics.updates_new_peer.get(), 2);
            assert_eq!(metrics.updates_stale_peer.get(), 1);
            System::current().stop();
        });
    }

    #[test]
    fn only_a_byte_for_byte_copy_of_the_held_record_skips_the_parse() {
        let held = Record::from_at_line(KIWI_1.as_bytes()).unwrap();
        let metrics = Arc::new(Metrics::default());
        let store = LocationStoreActor::new("Riley".into(), vec![held], None, metrics, DAY);
        assert!(store.held_copy_of(KIWI_1.as_bytes()).is_some());
        // The same record spelled otherwise, another record, garbage: parsed.
        assert!(store
            .held_copy_of(KIWI_1.replacen(' ', "  ", 1).as_bytes())
            .is_none());
        assert!(store.held_copy_of(KIWI_2.as_bytes()).is_none());
        assert!(store.held_copy_of(b"AT").is_none());
        assert!(store.held_copy_of(b"").is_none());
    }

    #[test]
    fn loaded_records_start_the_overview_newest_by_client_time() {
        actix_rt::System::new().block_on(async {
            // Loaded in name order; the client times say b, c, a.
            let loaded = [("a", "3"), ("b", "1"), ("c", "2")]
                .iter()
                .map(|(name, time)| {
                    let line = format!("AT Riley +0.000000000 {name} +1+1 170000000{time}.0");
                    Record::from_at_line(line.as_bytes()).unwrap()
                })
                .collect();
            let metrics = Arc::new(Metrics::default());
            let store = LocationStoreActor::new("Riley".into(), loaded, None, metrics, DAY).start();
            let overview = store.send(GetOverview).await.unwrap();
            let names: Vec<&[u8]> = overview.recent.iter().map(|r| r.client()).collect();
            assert_eq!(names, vec![&b"a"[..], b"c", b"b"]);
            System::current().stop();
        });
    }

    #[test]
    fn the_overview_lists_recent_updates_newest_first_once_per_client() {
        actix_rt::System::new().block_on(async {
            let (store, _) = store();
            let fig = KIWI_1.replace("kiwi", "fig");
            store
                .send(batch(&[KIWI_1, &fig, KIWI_2], "Jaquez"))
                .await
                .unwrap();
            let overview = store.send(GetOverview).await.unwrap();
            assert_eq!(overview.records, 2);
            let lines: Vec<_> = overview
                .recent
                .iter()
                .map(|r| r.at_line().to_vec())
                .collect();
            assert_eq!(lines, vec![KIWI_2.as_bytes().to_vec(), fig.into_bytes()]);

            // Only the last RECENT updates are remembered.
            let many: Vec<String> = (0..RECENT + 5)
                .map(|i| KIWI_1.replace("kiwi", &format!("c{i}")))
                .collect();
            let many: Vec<&str> = many.iter().map(String::as_str).collect();
            store.send(batch(&many, "Jaquez")).await.unwrap();
            let overview = store.send(GetOverview).await.unwrap();
            assert_eq!(overview.records, RECENT + 7);
            assert_eq!(overview.recent.len(), RECENT);
            assert!(overview.recent[0]
                .at_line()
                .starts_with(many[RECENT + 4].as_bytes()));
            System::current().stop();
        });
    }

    #[test]
    fn a_burst_of_updates_is_flooded_as_one_message_per_neighbour_never_back() {
        actix_rt::System::new().block_on(async {
            let (store, _) = store();
            let mut seen = Vec::new();
            for name in ["Jaquez", "Juzang"] {
                let log = Arc::new(Mutex::new(Vec::new()));
                let recorder = Recorder(log.clone()).start();
                store
                    .send(AddPeer {
                        name: name.into(),
                        link: recorder.clone().recipient(),
                        compare: recorder.recipient(),
                    })
                    .await
                    .unwrap();
                seen.push(log);
            }
            let later = KIWI_2.replace("kiwi", "plum");
            store
                .send(batch(&[KIWI_1, &later], "Jaquez"))
                .await
                .unwrap();
            // Then a client's update, which goes to both: once Jaquez has
            // it, anything flooded before it would have arrived there too.
            let own = Record::from_at_line(KIWI_2.replace("kiwi", "fig").as_bytes()).unwrap();
            let own_line = String::from_utf8_lossy(own.at_line()).into_owned();
            let update = Update {
                record: Arc::new(own),
                source: Source::Client,
            };
            store.send(update).await.unwrap();
            let arrived = |log: &Arc<Mutex<Vec<Vec<String>>>>| !log.lock().unwrap().is_empty();
            let both = async {
                while !(arrived(&seen[0]) && arrived(&seen[1])) {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            };
            tokio::time::timeout(std::time::Duration::from_secs(10), both)
                .await
                .expect("floods reach both neighbours");
            // With no topology known, every update is flooded.
            assert_eq!(
                *seen[0].lock().unwrap(),
                vec![vec![format!("FLOOD {own_line}")]],
                "never back"
            );
            // The batch's two new records, in order, in one message.
            assert_eq!(
                seen[1].lock().unwrap()[0],
                vec![format!("FLOOD {KIWI_1}"), format!("FLOOD {later}")]
            );
            System::current().stop();
        });
    }
    type Seen = Arc<Mutex<Vec<Vec<String>>>>;

    /// Jaquez of SPEC §1's herd, its links to Bernard and Riley carrying.
    async fn jaquez() -> (Addr<LocationStoreActor>, BTreeMap<&'static str, Seen>) {
        let list = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let servers = [
            ("Riley", list(&["Jaquez", "Juzang"])),
            ("Bernard", list(&["Jaquez", "Juzang", "Campbell"])),
            ("Juzang", list(&["Campbell"])),
        ];
        let topology = Topology::new(servers.iter().map(|(n, l)| (*n, l.as_slice())));
        let metrics = Arc::new(Metrics::default());
        let store = LocationStoreActor::new("Jaquez".into(), Vec::new(), None, metrics, DAY)
            .with_topology(topology)
            .start();
        let mut seen = BTreeMap::new();
        for name in ["Bernard", "Riley"] {
            let log = Seen::default();
            let recorder = Recorder(log.clone()).start();
            let peer = AddPeer {
                name: name.into(),
                link: recorder.clone().recipient(),
                compare: recorder.recipient(),
            };
            store.send(peer).await.unwrap();
            store.send(carrying(name, true, vec![])).await.unwrap();
            seen.insert(name, log);
        }
        (store, seen)
    }

    fn carrying(name: &str, carrying: bool, unconfirmed: Vec<SharedRecord>) -> LinkChanged {
        LinkChanged {
            name: name.into(),
            carrying,
            unconfirmed,
        }
    }

    /// Sends a client's update, which goes to every neighbour, and waits
    /// until each has it: whatever a link got before it is then in `seen`.
    async fn fence(store: &Addr<LocationStoreActor>, seen: &BTreeMap<&str, Seen>) {
        let line = "AT Jaquez +0.100000000 fence +34.068930-118.445127 1621464828.000000000";
        let record = Arc::new(Record::from_at_line(line.as_bytes()).unwrap());
        let update = Update {
            record,
            source: Source::Client,
        };
        store.send(update).await.unwrap();
        let fenced = |log: &Seen| {
            log.lock()
                .unwrap()
                .iter()
                .flatten()
                .any(|l| l.contains(" fence "))
        };
        let all = async {
            while !seen.values().all(fenced) {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), all)
            .await
            .expect("the fence reaches every neighbour");
    }

    /// What a link got, the fence left out.
    fn got(log: &Seen) -> Vec<String> {
        let lines = log.lock().unwrap();
        let lines = lines.iter().flatten().filter(|l| !l.contains(" fence "));
        lines.cloned().collect()
    }

    #[test]
    fn updates_go_down_their_origins_tree_while_its_links_carry() {
        actix_rt::System::new().block_on(async {
            let (store, seen) = jaquez().await;
            // Riley's tree: Riley -> Jaquez -> Bernard. Campbell's reaches
            // Jaquez last (Campbell -> Bernard -> Jaquez): nothing goes on.
            let campbell = KIWI_2.replace("Jaquez", "Campbell").replace("kiwi", "fig");
            store.send(batch(&[KIWI_1], "Riley")).await.unwrap();
            store.send(batch(&[&campbell], "Bernard")).await.unwrap();
            fence(&store, &seen).await;
            assert_eq!(got(&seen["Bernard"]), vec![KIWI_1.to_string()]);
            assert!(got(&seen["Riley"]).is_empty());
            System::current().stop();
        });
    }

    #[test]
    fn flood_lines_and_sync_records_are_flooded_on() {
        actix_rt::System::new().block_on(async {
            let (store, seen) = jaquez().await;
            let fig = KIWI_1.replace("kiwi", "fig");
            store
                .send(batch(&[&format!("FLOOD {KIWI_1}")], "Bernard"))
                .await
                .unwrap();
            let mut sync = batch(&[&fig], "Bernard");
            sync.source = Source::Sync("Bernard".into());
            store.send(sync).await.unwrap();
            fence(&store, &seen).await;
            let flooded = vec![format!("FLOOD {KIWI_1}"), format!("FLOOD {fig}")];
            assert_eq!(got(&seen["Riley"]), flooded);
            assert!(got(&seen["Bernard"]).is_empty(), "never back");
            System::current().stop();
        });
    }

    #[test]
    fn around_a_link_that_does_not_carry_updates_are_flooded() {
        actix_rt::System::new().block_on(async {
            let (store, seen) = jaquez().await;
            // Bernard's link is down: Riley's update, which would go down the
            // tree to Bernard alone, is flooded (to Bernard, which holds it,
            // marked so that Bernard floods it on).
            store
                .send(carrying("Bernard", false, vec![]))
                .await
                .unwrap();
            store.send(batch(&[KIWI_1], "Riley")).await.unwrap();
            // Riley's link stops carrying and gives back what it may not have
            // delivered: what the store still holds is flooded around it; a
            // record since replaced is not.
            let held = store.send(Lookup {
                client: "kiwi.cs.ucla.edu".into(),
            });
            let held = held.await.unwrap().unwrap();
            let replaced = Arc::new(Record::from_at_line(KIWI_1.as_bytes()).unwrap());
            store
                .send(carrying("Riley", false, vec![held, replaced]))
                .await
                .unwrap();
            fence(&store, &seen).await;
            let flooded = format!("FLOOD {KIWI_1}");
            assert_eq!(got(&seen["Bernard"]), vec![flooded.clone(), flooded]);
            assert!(got(&seen["Riley"]).is_empty());
            System::current().stop();
        });
    }

    #[test]
    fn a_flood_around_a_failed_link_passes_once_through_servers_that_hold_it() {
        actix_rt::System::new().block_on(async {
            let (store, seen) = jaquez().await;
            // Down Riley's tree to Bernard; then Bernard floods it back
            // around a failed link of its own: Jaquez passes it on once
            // (to Riley), and drops the next flooded copy.
            store.send(batch(&[KIWI_1], "Riley")).await.unwrap();
            let flooded = format!("FLOOD {KIWI_1}");
            store.send(batch(&[&flooded], "Bernard")).await.unwrap();
            store.send(batch(&[&flooded], "Riley")).await.unwrap();
            fence(&store, &seen).await;
            assert_eq!(got(&seen["Bernard"]), vec![KIWI_1.to_string()]);
            assert_eq!(got(&seen["Riley"]), vec![flooded]);
            System::current().stop();
        });
    }
}
