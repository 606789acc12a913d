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
//! waits for this link alone. The neighbour therefore acknowledges what it
//! read (`ACK <count>`, at most every [`ACK_EVERY`](crate::peer_session::ACK_EVERY)),
//! and the link stops counting as carrying when it is down, behind, or
//! silent: nothing acknowledged for [`ACK_TIMEOUT`] while lines wait (a
//! neighbour cut off without a word, a frozen path). The store hears
//! whenever the link starts or stops carrying ([`LinkChanged`]); when it
//! stops, the store gets back the records sent down a tree through it that
//! are not yet acknowledged and those the link could only hold, and floods
//! them around the link at once, instead of them waiting for the link to
//! return.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use log::{debug, info, warn};
use tokio::net::TcpStream;

use crate::codec::Frame;
use crate::handshake::{self, HandshakeError, Identity, Met, PeerFramed};
use crate::link::{Link, LinkState, ACK_TIMEOUT};
use crate::metrics::Metrics;
use crate::output::{into_halves, Drain, HasOutput, Output};
use crate::peer_line::{PeerLine, Purpose, Spread};
use crate::record::{ByClient, RecordSet, SharedRecord};
use crate::store::{
    AckAfter, CompareNow, Flood, GetRoot, HeardTopology, LinkChanged, LocationStoreActor,
    Replicated,
};
use crate::supervise::guarded;
use crate::sync::{dial_sync, SyncError, SyncStats};
use crate::text::LogText;

const LOG: &str = "peer";

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
    /// Of those, how many one source address may hold; past it that
    /// source's own oldest is dropped (listener.rs).
    pub max_handshakes_per_source: usize,
    /// How often (jittered between half and all of it) each link compares
    /// its two stores' digest roots (`herd.anti_entropy_ms`); zero: never.
    pub anti_entropy: Duration,
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
            max_handshakes_per_source: 4,
            anti_entropy: Duration::from_secs(30),
        }
    }
}

/// Asks a link to repair what its neighbour's store lacks: one catch-up
/// sync over a connection of its own, while the link stays up.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Repair;

/// One neighbour's outgoing link.
pub struct PeerActor {
    identity: Identity,
    neighbour: Arc<str>,
    address: String,
    /// Tell the store which records the neighbour acknowledged
    /// (`herd.ack_after = "neighbour"`).
    ack_after: AckAfter,
    /// A repair connection is running.
    repairing: bool,
    /// The last reason a connection attempt failed, logged once per change.
    last_failure: Option<String>,
    store: Addr<LocationStoreActor>,
    limits: PeerLimits,
    metrics: Arc<Metrics>,
    /// Down, connecting, syncing or up; silent or not; the window of
    /// records not yet acknowledged ([`crate::link`]).
    link: Link,
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
}

impl PeerActor {
    pub fn new(
        identity: Identity,
        neighbour: Arc<str>,
        address: String,
        store: Addr<LocationStoreActor>,
        limits: PeerLimits,
        metrics: Arc<Metrics>,
    ) -> PeerActor {
        let backoff = limits.backoff_first;
        PeerActor {
            identity,
            neighbour,
            address,
            ack_after: AckAfter::Local,
            repairing: false,
            last_failure: None,
            store,
            limits,
            metrics,
            link: Link::new(Instant::now()),
            attempt: 0,
            output: None,
            reader: None,
            sync: None,
            draining: false,
            flush_scheduled: false,
            backoff,
            pending: RecordSet::default(),
        }
    }

    /// Tells the store what the neighbour acknowledged, for clients that
    /// wait for it (`herd.ack_after = "neighbour"`).
    pub fn with_ack_after(mut self, ack_after: AckAfter) -> PeerActor {
        self.ack_after = ack_after;
        self
    }

    fn me(&self) -> &str {
        &self.identity.me
    }

    /// Connects to the neighbour and runs the handshake for `purpose`.
    fn dial(
        &self,
        purpose: Purpose,
    ) -> impl std::future::Future<Output = Result<(PeerFramed, Met), HandshakeError>> {
        let (identity, them, address) = (
            self.identity.clone(),
            self.neighbour.clone(),
            self.address.clone(),
        );
        let metrics = self.metrics.clone();
        async move {
            let timeout = identity.timeout;
            let stream = tokio::time::timeout(timeout, TcpStream::connect(&address))
                .await
                .map_err(|_| HandshakeError::Timeout)??;
            stream.set_nodelay(true)?;
            let mut framed = handshake::framed(stream, &metrics);
            let met = handshake::dial(&mut framed, &identity, &them, purpose).await?;
            Ok((framed, met))
        }
    }

    /// Tells the store what the handshake showed of the neighbour's links.
    fn heard(&self, met: &Met) {
        self.store.do_send(HeardTopology {
            name: met.neighbour.clone(),
            topology: met.topology,
            listed: true,
        });
    }

    /// Anti-entropy, every `limits.anti_entropy` (jittered): sends this
    /// store's digest root; the neighbour answers with its own.
    fn schedule_comparison(&mut self, ctx: &mut Context<Self>) {
        if self.limits.anti_entropy.is_zero() {
            return;
        }
        let delay = self
            .limits
            .anti_entropy
            .mul_f64(rand::random_range(0.5..1.0));
        ctx.run_later(delay, |act, ctx| {
            act.compare(ctx);
            act.schedule_comparison(ctx);
        });
    }

    fn compare(&mut self, ctx: &mut Context<Self>) {
        if !self.link.is_up() {
            return;
        }
        let root = self.store.send(GetRoot);
        ctx.spawn(root.into_actor(self).map(|root, act, ctx| {
            let Ok(root) = root else {
                return;
            };
            let Some(output) = act.output.as_mut() else {
                return;
            };
            Metrics::bump(&act.metrics.anti_entropy_rounds);
            output.queue(&PeerLine::Root(root).to_bytes());
            act.drain(ctx);
        }));
    }

    /// The neighbour answered our root with its own: when this store's
    /// root differs, repair what the neighbour lacks.
    fn compared(&mut self, theirs: u64, ctx: &mut Context<Self>) {
        let root = self.store.send(GetRoot);
        ctx.spawn(root.into_actor(self).map(move |mine, act, ctx| {
            if mine.is_ok_and(|mine| mine != theirs) {
                act.repair(ctx);
            }
        }));
    }

    /// One catch-up sync over a connection of its own: the neighbour gets
    /// what it lacks while the link stays up.
    fn repair(&mut self, ctx: &mut Context<Self>) {
        if self.repairing || !self.link.is_up() {
            return;
        }
        self.repairing = true;
        Metrics::bump(&self.metrics.anti_entropy_repairs);
        let (store, timeout) = (self.store.clone(), self.limits.write_timeout);
        let dial = self.dial(Purpose::Repair);
        let work = async move {
            let (mut framed, _) = dial.await.map_err(|e| e.to_string())?;
            let stats = dial_sync(&mut framed, &store, timeout)
                .await
                .map_err(|e| e.to_string())?;
            // Flushed: the neighbour reads to SYNCED, then closes.
            drop(framed);
            Ok::<_, String>(stats)
        };
        ctx.spawn(work.into_actor(self).map(|result, act, _| {
            act.repairing = false;
            match result {
                Ok(stats) => info!(target: LOG, "{}: repaired {}'s store: {} records in {} rounds, \
                    {} bytes out, {} in, {:?}", act.me(), act.neighbour, stats.records, stats.rounds,
                    stats.bytes_out, stats.bytes_in, stats.elapsed),
                Err(e) => info!(target: LOG, "{}: repairing {}'s store failed: {e}", act.me(), act.neighbour),
            }
        }));
    }

    /// Whether the link takes floods now: up, acknowledging, keeping up.
    fn takes_floods(&self) -> bool {
        let keeping_up = self
            .output
            .as_ref()
            .is_some_and(|o| o.backlog() < self.limits.max_backlog);
        self.link.takes_floods(keeping_up)
    }

    /// Tells the store when the link starts or stops carrying, and hands it
    /// `bounced` (tree records this link could only hold) and, when it
    /// stops, the records it may not have delivered.
    fn report(&mut self, bounced: Vec<SharedRecord>) {
        if let Some(report) = self.link.report(self.takes_floods(), bounced) {
            self.store.do_send(LinkChanged {
                name: self.neighbour.clone(),
                carrying: report.carrying,
                unconfirmed: report.undelivered,
            });
        }
    }

    /// Writes `record` to the socket (queued), to be acknowledged.
    fn write_record(&mut self, record: SharedRecord, spread: Spread, now: Instant) {
        let Some(output) = self.output.as_mut() else {
            return;
        };
        queue_record(output, &record, spread);
        self.link.sent(record, spread, now);
    }

    /// The neighbour has read `count` lines since the sync.
    fn acknowledged(&mut self, count: u64, ctx: &mut Context<Self>) {
        let (acked, resumed) = self.link.acked(count, Instant::now());
        if self.ack_after == AckAfter::Neighbour && !acked.is_empty() {
            self.store.do_send(Replicated(acked));
        }
        if resumed {
            info!(target: LOG, "{}: link to {} acknowledges again", self.me(), self.neighbour);
            self.move_pending();
            self.drain(ctx);
            self.report(Vec::new());
        }
    }

    /// Stops counting the link as carrying when it has acknowledged nothing
    /// for [`ACK_TIMEOUT`] while lines wait for it: a silent link, not a
    /// busy one (a neighbour that acknowledges late still acknowledges, and
    /// rerouting around it would only add to its load).
    fn check_acks(&mut self) {
        if self.link.check(Instant::now()) {
            info!(target: LOG, "{}: link to {} has acknowledged nothing for {:?}; {} records \
                unacknowledged", self.me(), self.neighbour, ACK_TIMEOUT, self.link.in_flight());
            self.report(Vec::new());
        }
    }

    fn set_state(&mut self, state: LinkState) {
        self.link.set_state(state, Instant::now());
        self.metrics.set_link(&self.neighbour, state);
        self.report(Vec::new());
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        self.attempt += 1;
        let attempt = self.attempt;
        self.set_state(LinkState::Connecting);
        let work = self.dial(Purpose::Link);
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            if attempt != act.attempt {
                return;
            }
            match result {
                Ok((framed, met)) => {
                    act.last_failure = None;
                    act.heard(&met);
                    act.connected(framed, ctx)
                }
                Err(e) => act.retry(&e, ctx),
            }
        }));
    }

    /// The handshake passed: run the catch-up sync, then stream floods.
    fn connected(&mut self, mut framed: PeerFramed, ctx: &mut Context<Self>) {
        debug!(target: LOG, "{}: link to {} ({}) made; syncing", self.me(), self.neighbour, self.address);
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
        // The floods are sealed by the Output from now on, in the same
        // counter sequence the sync's frames began.
        let halves = match into_halves(framed) {
            Ok(halves) => halves,
            Err(e) => return self.drop_link(e.into(), ctx),
        };
        self.output = Some(halves.output);
        self.reader = Some(ctx.add_stream(halves.reader));
        for frame in halves.buffered {
            StreamHandler::handle(self, Ok(frame), ctx);
        }
        Metrics::bump(&self.metrics.sync_runs);
        self.metrics.sync_records_sent.inc_by(stats.records as u64);
        info!(target: LOG, "{}: link to {} up; sync sent {} records in {} rounds, {} bytes out, \
            {} in, {:?}", self.me(), self.neighbour, stats.records, stats.rounds, stats.bytes_out,
            stats.bytes_in, stats.elapsed);
        self.set_state(LinkState::Up);
        if self.ack_after == AckAfter::Neighbour {
            // Clients wait for the neighbour's acknowledgements.
            if let Some(output) = self.output.as_mut() {
                output.queue(&PeerLine::Prompt.to_bytes());
            }
        }
        self.move_pending();
        self.drain(ctx);
    }

    /// Moves held records to the socket while the backlog allows. Held
    /// records may have missed their tree: they are flooded on.
    fn move_pending(&mut self) {
        if self.output.is_none() || self.pending.is_empty() {
            return;
        }
        // One pass over the set (taking entries one by one from its front
        // would rescan the emptied part each time: quadratic).
        let held: Vec<ByClient> = self.pending.drain().collect();
        let now = Instant::now();
        for held in held {
            if self
                .output
                .as_ref()
                .is_some_and(|o| o.backlog() < self.limits.max_backlog)
            {
                self.write_record(held.0, Spread::Flood, now);
            } else {
                self.pending.insert(held);
            }
        }
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
                Ok(true) if self.link.is_up() && !self.pending.is_empty() => {
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
                self.me(), self.limits.max_pending, self.neighbour);
            self.pending.clear();
            if !matches!(self.link.state(), LinkState::Down | LinkState::Connecting) {
                self.drop_link(LinkError::HoldOverflow, ctx);
            }
        }
    }

    fn drop_link(&mut self, reason: LinkError, ctx: &mut Context<Self>) {
        // What the reason quotes of the neighbour's bytes is escaped where
        // the error is made (sync.rs, handshake.rs).
        info!(target: LOG, "{}: link to {} dropped: {reason}", self.me(), self.neighbour);
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

    /// A failed attempt: logged once per change of reason (a neighbour that
    /// refuses for the same reason on every attempt is one line, not one a
    /// second), then tried again after the backoff.
    fn retry(&mut self, reason: &HandshakeError, ctx: &mut Context<Self>) {
        let text = reason.to_string();
        let unreachable = matches!(reason, HandshakeError::Io(_) | HandshakeError::Timeout);
        if self.last_failure.as_ref() != Some(&text) && !unreachable {
            info!(target: LOG, "{}: link to {} at {} refused: {text} (logged once until it \
                changes)", self.me(), self.neighbour, self.address);
        } else {
            debug!(target: LOG, "{}: cannot reach {} at {}: {text}", self.me(), self.neighbour, self.address);
        }
        self.last_failure = Some(text);
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
        ctx.run_interval(ACK_TIMEOUT / 5, |act, _| act.check_acks());
        self.schedule_comparison(ctx);
        self.connect(ctx);
    }
}

impl actix::Supervised for PeerActor {
    /// Starts the link afresh: whatever it held unsent or unacknowledged
    /// reaches the neighbour through the next connection's sync.
    fn restarting(&mut self, _: &mut Context<Self>) {
        Metrics::bump(&self.metrics.restarts_peer);
        self.attempt += 1;
        self.output = None;
        self.reader = None;
        self.sync = None;
        self.draining = false;
        self.flush_scheduled = false;
        self.repairing = false;
        self.link.forget_window();
        self.pending.clear();
        self.backoff = self.limits.backoff_first;
        self.set_state(LinkState::Down);
    }
}

impl Handler<CompareNow> for PeerActor {
    type Result = ();

    fn handle(&mut self, _: CompareNow, ctx: &mut Context<Self>) {
        self.compare(ctx);
    }
}

impl Handler<Repair> for PeerActor {
    type Result = ();

    fn handle(&mut self, _: Repair, ctx: &mut Context<Self>) {
        self.repair(ctx);
    }
}

impl Handler<Flood> for PeerActor {
    type Result = ();

    fn handle(&mut self, Flood(records): Flood, ctx: &mut Context<Self>) {
        guarded(
            self,
            ctx,
            PeerActor::what,
            || (),
            |act, ctx| act.take_floods(records, ctx),
        );
    }
}

impl PeerActor {
    /// What a panic's log line calls this actor.
    fn what(&self) -> String {
        format!("{}: the link to {}", self.me(), self.neighbour)
    }

    /// New records for the neighbour: written while the link carries, held
    /// otherwise (those sent down a tree go back to the store to be
    /// flooded around the link).
    fn take_floods(&mut self, records: Vec<(SharedRecord, Spread)>, ctx: &mut Context<Self>) {
        self.metrics.floods_sent.inc_by(records.len() as u64);
        let now = Instant::now();
        let mut bounced = Vec::new();
        for (record, spread) in records {
            if self.takes_floods() {
                self.write_record(record, spread, now);
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

/// After the sync the acceptor sends only `ACK <count>` and `ROOT` lines
/// on our outgoing connection; reading it is also how a closed link is
/// noticed.
impl StreamHandler<Result<Frame, std::io::Error>> for PeerActor {
    fn handle(&mut self, item: Result<Frame, std::io::Error>, ctx: &mut Context<Self>) {
        guarded(
            self,
            ctx,
            PeerActor::what,
            || (),
            |act, ctx| act.read_back(item, ctx),
        );
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.reader = None;
        self.drop_link(LinkError::Closed, ctx);
    }
}

impl PeerActor {
    /// A line the neighbour sent back on our link (an `ACK` or a `ROOT`),
    /// or the end of the link.
    fn read_back(&mut self, item: Result<Frame, std::io::Error>, ctx: &mut Context<Self>) {
        let line = match item {
            Ok(Frame::Line(line)) => line,
            Ok(Frame::Overlong) => return self.drop_link(LinkError::Overlong, ctx),
            Err(e) => return self.drop_link(e.into(), ctx),
        };
        match PeerLine::parse(&line) {
            Ok(PeerLine::Ack(count)) => self.acknowledged(count, ctx),
            Ok(PeerLine::Root(theirs)) => self.compared(theirs, ctx),
            _ => warn!(target: LOG, "{}: unexpected line from {}: {}", self.me(),
                self.neighbour, LogText::clipped(&line, 80)),
        }
    }
}
