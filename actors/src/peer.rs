//! The PeerActor: one per neighbour, owning this server's link *to* it (SPEC §4).
//!
//! Every link is a pair of TCP connections, one per direction: each server
//! dials each neighbour's peer port and uses that connection to push its own
//! floods; what arrives on its peer port is handled by
//! [`PeerSession`](crate::peer_session). So each direction has exactly one
//! writer and one reader, and no connection is ever shared or duelled over.
//!
//! The actor's life is a loop: connect, handshake ([`crate::handshake`]),
//! catch-up sync, stream floods, and on any failure wait (exponential backoff
//! with jitter: first retry within 100 ms, cap about 2 s) and start again.
//! Everything after the handshake is sealed ([`crate::seal`]): the sync
//! through the connection's codec, the floods through the [`Output`], which
//! seals each write (a burst of floods) as one frame.
//!
//! The catch-up sync itself, both sides, lives in [`crate::sync`]; this
//! file runs the dialer's side ([`dial_sync`]) once per connection.
//!
//! Floods never wait for the link, and a dead or slow neighbour never slows
//! the store or a client's answer: the store hands floods over with
//! `do_send` (queued, never refused) and nothing here ever answers back.
//! While the link is down, syncing, or slow (more than `max_backlog` bytes
//! unwritten), records are held in a buffer that keeps only the newest
//! record per client (hinted handoff, coalesced): a client that moves a
//! thousand times while its neighbour is away costs one entry. The buffer
//! is bounded by `max_pending` clients (default 100,000). An entry is a
//! pointer into a record shared with the store (16 bytes of set), plus the
//! record itself (at most ~350 bytes) once the store has moved on to a newer
//! one: 2 to 35 MB per neighbour at the bound. Past the bound the buffer is dropped
//! and, if connected, the link restarted: the catch-up sync of the next
//! connection then sends whatever the neighbour lacks, from the store
//! itself, so dropping the buffer loses nothing, it only trades memory for
//! a sync. Records written to a socket that then breaks are covered the
//! same way: every (re)connect syncs, so a flapping link converges as soon
//! as it stays up for one sync.
//!
//! Updates go down trees ([`crate::tree`]), so the neighbour's side of a tree
//! waits for this link alone. The store therefore hears whenever the link
//! starts or stops carrying floods promptly ([`LinkChanged`]), and when it
//! stops, gets back the records given to it in the last [`UNCONFIRMED_FOR`]
//! and those sent down a tree that it could only hold: the store floods them
//! around the link at once, instead of them waiting for the link to return.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use log::{debug, info, warn};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedRead};

use crate::codec::Frame;
use crate::handshake::{self, PeerFramed, Secret};
use crate::metrics::{LinkState, Metrics};
use crate::output::{Drain, HasOutput, Output};
use crate::record::{ByClient, RecordSet, SharedRecord};
use crate::seal::PeerCodec;
use crate::store::{Flood, LinkChanged, LocationStoreActor};
use crate::sync::{dial_sync, SyncError, SyncStats};
use crate::tree::Spread;

const LOG: &str = "peer";

/// Longest line on a peer connection. The longest a sync sends are a `KEYS`
/// line naming every leaf (65,536 numbers: under 400 KiB) and one leaf's
/// `FPS` line (16 hex digits per record: 1 MiB holds some 65,000 records in
/// one leaf, where a million-record store averages 15 per leaf).
pub const PEER_MAX_LINE: usize = 1 << 20;

/// How long a record handed to the socket counts as possibly undelivered,
/// should the link fail: a neighbour that dies or is cut off closes the
/// connection well within it. A link that breaks silently is found by the
/// write timeout instead, and what it lost reaches the neighbour's side by
/// the sync of the next connection.
pub const UNCONFIRMED_FOR: Duration = Duration::from_secs(1);

/// Most records remembered as possibly undelivered (24 bytes each).
const MAX_UNCONFIRMED: usize = 1 << 16;

/// Why an established link was dropped (and is dialled again).
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("sync failed: {0}")]
    Sync(#[from] SyncError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("overlong line from peer")]
    Overlong,
    #[error("closed by peer")]
    Closed,
    #[error("hold buffer overflow")]
    HoldOverflow,
}

/// Tunables of a peer link. The defaults are the herd's: `limits` in the
/// settings starts from them.
#[derive(Debug, Clone)]
pub struct PeerLimits {
    pub handshake_timeout: Duration,
    pub write_timeout: Duration,
    pub backoff_first: Duration,
    pub backoff_max: Duration,
    /// Most clients held while the link cannot take floods.
    pub max_pending: usize,
    /// Unwritten bytes beyond which floods are held instead of queued.
    pub max_backlog: usize,
    /// Incoming peer connections handshaking at once; past it the oldest
    /// is dropped.
    pub max_handshakes: usize,
}

impl Default for PeerLimits {
    fn default() -> Self {
        PeerLimits {
            handshake_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            backoff_first: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            max_pending: 100_000,
            max_backlog: 1 << 20,
            max_handshakes: 64,
        }
    }
}

/// One neighbour's outgoing link.
pub struct PeerActor {
    me: Arc<str>,
    neighbour: Arc<str>,
    address: String,
    secret: Secret,
    store: Addr<LocationStoreActor>,
    limits: PeerLimits,
    metrics: Arc<Metrics>,
    state: LinkState,
    /// Bumped on every new attempt, so late results of old ones are ignored.
    attempt: u64,
    output: Option<Output>,
    reader: Option<SpawnHandle>,
    /// The running catch-up sync, cancelled when the link drops.
    sync: Option<SpawnHandle>,
    draining: bool,
    /// A [`FlushLink`] is on its way: floods queued until then go out in one write.
    flush_scheduled: bool,
    backoff: Duration,
    /// Newest record per client not yet handed to the socket.
    pending: RecordSet,
    /// Records handed to the socket lately, with when: flooded around the
    /// link by the store if it stops carrying.
    unconfirmed: VecDeque<(Instant, SharedRecord)>,
    /// What the store was last told: the link carries floods promptly.
    carrying: bool,
}

impl PeerActor {
    pub fn new(
        me: Arc<str>,
        neighbour: Arc<str>,
        address: String,
        secret: Secret,
        store: Addr<LocationStoreActor>,
        limits: PeerLimits,
        metrics: Arc<Metrics>,
    ) -> PeerActor {
        let backoff = limits.backoff_first;
        PeerActor {
            me,
            neighbour,
            address,
            secret,
            store,
            limits,
            metrics,
            state: LinkState::Down,
            attempt: 0,
            output: None,
            reader: None,
            sync: None,
            draining: false,
            flush_scheduled: false,
            backoff,
            pending: RecordSet::default(),
            unconfirmed: VecDeque::new(),
            carrying: false,
        }
    }

    /// Whether the link takes floods now: up, and keeping up.
    fn takes_floods(&self) -> bool {
        self.state == LinkState::Up
            && self
                .output
                .as_ref()
                .is_some_and(|o| o.backlog() < self.limits.max_backlog)
    }

    /// Tells the store when the link starts or stops carrying, and hands it
    /// `bounced` (tree records this link could only hold) and, when it
    /// stops, the records it may not have delivered.
    fn report(&mut self, mut bounced: Vec<SharedRecord>) {
        let carrying = self.takes_floods();
        if carrying == self.carrying && bounced.is_empty() {
            return;
        }
        if !carrying {
            bounced.extend(self.unconfirmed.drain(..).map(|(_, record)| record));
        }
        self.carrying = carrying;
        self.store.do_send(LinkChanged {
            name: self.neighbour.clone(),
            carrying,
            unconfirmed: bounced,
        });
    }

    /// Remembers `record` as handed to the socket at `now`, forgetting what
    /// was handed over long enough ago.
    fn sent(&mut self, record: SharedRecord, now: Instant) {
        while self
            .unconfirmed
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > UNCONFIRMED_FOR)
            || self.unconfirmed.len() >= MAX_UNCONFIRMED
        {
            self.unconfirmed.pop_front();
        }
        self.unconfirmed.push_back((now, record));
    }

    fn set_state(&mut self, state: LinkState) {
        self.state = state;
        self.metrics.set_link(&self.neighbour, state);
        self.report(Vec::new());
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        self.attempt += 1;
        let attempt = self.attempt;
        self.set_state(LinkState::Connecting);
        let (me, them, address) = (
            self.me.clone(),
            self.neighbour.clone(),
            self.address.clone(),
        );
        let (secret, timeout) = (self.secret.clone(), self.limits.handshake_timeout);
        let codec = PeerCodec::new(PEER_MAX_LINE, self.metrics.clone());
        let work = async move {
            let stream = tokio::time::timeout(timeout, TcpStream::connect(&address))
                .await
                .map_err(|_| handshake::HandshakeError::Timeout)??;
            stream.set_nodelay(true)?;
            let mut framed = Framed::new(stream, codec);
            handshake::dial(&mut framed, &me, &them, &secret, timeout).await?;
            Ok::<_, handshake::HandshakeError>(framed)
        };
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            if attempt != act.attempt {
                return;
            }
            match result {
                Ok(framed) => act.connected(framed, ctx),
                Err(e) => act.retry(&e, ctx),
            }
        }));
    }

    /// The handshake passed: run the catch-up sync, then stream floods.
    fn connected(&mut self, mut framed: PeerFramed, ctx: &mut Context<Self>) {
        debug!(target: LOG, "{}: link to {} ({}) made; syncing", self.me, self.neighbour, self.address);
        self.set_state(LinkState::Syncing);
        let attempt = self.attempt;
        let (store, timeout) = (self.store.clone(), self.limits.write_timeout);
        let work = async move {
            let stats = dial_sync(&mut framed, &store, timeout).await;
            (framed, stats)
        };
        let sync = ctx.spawn(work.into_actor(self).map(move |(framed, stats), act, ctx| {
            act.sync = None;
            if attempt != act.attempt {
                return;
            }
            match stats {
                Ok(stats) => act.synced(framed, stats, ctx),
                Err(e) => act.drop_link(e.into(), ctx),
            }
        }));
        self.sync = Some(sync);
    }

    /// The sync is done: the link carries floods from now on.
    fn synced(&mut self, framed: PeerFramed, stats: SyncStats, ctx: &mut Context<Self>) {
        self.backoff = self.limits.backoff_first;
        let mut parts = framed.into_parts();
        let (read, write) = parts.io.into_split();
        // The floods are sealed by the Output from now on, in the same
        // counter sequence the sync's frames began.
        self.output = Some(Output::new(write).sealed_by(parts.codec.take_sealer()));
        let mut reader = FramedRead::new(read, parts.codec);
        reader.read_buffer_mut().extend_from_slice(&parts.read_buf);
        self.reader = Some(ctx.add_stream(reader));
        Metrics::bump(&self.metrics.sync_runs);
        self.metrics.sync_records_sent.inc_by(stats.records as u64);
        info!(target: LOG, "{}: link to {} up; sync sent {} records in {} rounds, {} bytes out, \
            {} in, {:?}", self.me, self.neighbour, stats.records, stats.rounds, stats.bytes_out,
            stats.bytes_in, stats.elapsed);
        self.set_state(LinkState::Up);
        self.move_pending();
        self.drain(ctx);
    }

    /// Moves held records to the socket while the backlog allows.
    fn move_pending(&mut self) {
        let Some(output) = self.output.as_mut() else {
            return;
        };
        if self.pending.is_empty() {
            return;
        }
        // One pass over the set (taking entries one by one from its front
        // would rescan the emptied part each time: quadratic).
        let mut rest = Vec::new();
        for held in self.pending.drain() {
            if output.backlog() < self.limits.max_backlog {
                // Held records may have missed their tree: flooded on.
                queue_record(output, &held.0, Spread::Flood);
            } else {
                rest.push(held);
            }
        }
        self.pending.extend(rest);
    }

    /// Writes what the socket takes; when it takes everything, feeds it held
    /// records; when it is full, waits for it in the background.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        loop {
            let Some(output) = self.output.as_mut() else {
                return;
            };
            match output.try_flush() {
                Err(e) => return self.drop_link(e.into(), ctx),
                Ok(false) => break,
                Ok(true) if self.state == LinkState::Up && !self.pending.is_empty() => {
                    self.move_pending();
                }
                Ok(true) => return self.report(Vec::new()),
            }
        }
        self.draining = true;
        let attempt = self.attempt;
        let drain = Drain::flush(self.limits.write_timeout);
        ctx.spawn(drain.map(move |result, act: &mut Self, ctx| {
            act.draining = false;
            if attempt != act.attempt {
                return;
            }
            match result {
                Err(e) => act.drop_link(e.into(), ctx),
                Ok(()) => act.drain(ctx),
            }
        }));
    }

    /// Holds a record for later, keeping only the newest per client.
    fn hold(&mut self, record: SharedRecord, ctx: &mut Context<Self>) {
        if let Some(current) = self.pending.get(record.client()) {
            if !record.supersedes(&current.0) {
                return;
            }
        }
        self.pending.replace(ByClient(record));
        if self.pending.len() > self.limits.max_pending {
            warn!(target: LOG, "{}: more than {} records held for {}; dropping them, the next sync resends",
                self.me, self.limits.max_pending, self.neighbour);
            self.pending.clear();
            if self.state != LinkState::Down && self.state != LinkState::Connecting {
                self.drop_link(LinkError::HoldOverflow, ctx);
            }
        }
    }

    fn drop_link(&mut self, reason: LinkError, ctx: &mut Context<Self>) {
        info!(target: LOG, "{}: link to {} dropped: {reason}", self.me, self.neighbour);
        if let Some(sync) = self.sync.take() {
            ctx.cancel_future(sync);
        }
        if let Some(reader) = self.reader.take() {
            ctx.cancel_future(reader);
        }
        self.output = None;
        self.draining = false;
        self.retry_after_delay(ctx);
    }

    fn retry(&mut self, reason: &handshake::HandshakeError, ctx: &mut Context<Self>) {
        debug!(target: LOG, "{}: cannot reach {} at {}: {reason}", self.me, self.neighbour, self.address);
        self.retry_after_delay(ctx);
    }

    fn retry_after_delay(&mut self, ctx: &mut Context<Self>) {
        self.attempt += 1;
        self.set_state(LinkState::Down);
        let jitter = rand::random_range(0.5..1.0);
        let delay = self.backoff.mul_f64(jitter);
        self.backoff = (self.backoff * 2).min(self.limits.backoff_max);
        let attempt = self.attempt;
        ctx.run_later(delay, move |act, ctx| {
            if attempt == act.attempt {
                act.connect(ctx);
            }
        });
    }
}

fn queue_record(output: &mut Output, record: &SharedRecord, spread: Spread) {
    output.queue(spread.prefix());
    output.queue(record.at_line());
    output.queue(b"\n");
}

impl HasOutput for PeerActor {
    fn output(&mut self) -> Option<&mut Output> {
        self.output.as_mut()
    }
}

impl Actor for PeerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        self.connect(ctx);
    }
}

impl Handler<Flood> for PeerActor {
    type Result = ();

    fn handle(&mut self, Flood(records): Flood, ctx: &mut Context<Self>) {
        self.metrics.floods_sent.inc_by(records.len() as u64);
        let now = Instant::now();
        let mut bounced = Vec::new();
        for (record, spread) in records {
            if self.takes_floods() {
                if let Some(output) = self.output.as_mut() {
                    queue_record(output, &record, spread);
                }
                self.sent(record, now);
            } else {
                if spread == Spread::Tree {
                    bounced.push(record.clone());
                }
                self.hold(record, ctx);
            }
        }
        self.report(bounced);
        // Write once per burst of floods, not once per batch: the flush
        // runs after the mailbox has handed us what it holds.
        if !self.flush_scheduled && self.output.as_ref().is_some_and(|o| o.backlog() > 0) {
            self.flush_scheduled = true;
            ctx.notify(FlushLink);
        }
    }
}

/// Writes the floods queued since the last flush.
#[derive(Message)]
#[rtype(result = "()")]
struct FlushLink;

impl Handler<FlushLink> for PeerActor {
    type Result = ();

    fn handle(&mut self, _: FlushLink, ctx: &mut Context<Self>) {
        self.flush_scheduled = false;
        self.drain(ctx);
    }
}

/// After the sync the acceptor says nothing more on our outgoing connection;
/// reading it is how a closed link is noticed.
impl StreamHandler<Result<Frame, std::io::Error>> for PeerActor {
    fn handle(&mut self, item: Result<Frame, std::io::Error>, ctx: &mut Context<Self>) {
        let line = match item {
            Ok(Frame::Line(line)) => line,
            Ok(Frame::Overlong) => return self.drop_link(LinkError::Overlong, ctx),
            Err(e) => return self.drop_link(e.into(), ctx),
        };
        warn!(target: LOG, "{}: unexpected line from {}: {}", self.me, self.neighbour,
            String::from_utf8_lossy(&line[..line.len().min(80)]));
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.reader = None;
        self.drop_link(LinkError::Closed, ctx);
    }
}
