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
//!
//! Catch-up sync: after WELCOME the acceptor sends `DIGEST <hex>`, the
//! digest of its store ([`crate::digest`]). This side asks its own store for
//! every record in the buckets where the digests differ and sends them as
//! ordinary `AT` lines, ending with `SYNCED <count>`; the far store keeps what
//! is newer and ignores the rest. Since both ends dial each other, each end
//! pushes what the other lacks, and a server that restarted empty is refilled
//! without waiting for new traffic.
//!
//! Floods never wait for the link. While it is down, syncing, or slow (more
//! than `max_backlog` bytes unwritten), records are held in a buffer that keeps
//! only the newest record per client. Past `max_pending` clients the buffer is
//! dropped and the link is restarted, whose sync then sends what was dropped.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use log::{debug, info, warn};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedRead};

use crate::codec::{Frame, LineCodec};
use crate::digest::Digest;
use crate::handshake::{self, Secret};
use crate::metrics::Metrics;
use crate::output::{Drain, HasOutput, Output};
use crate::record::{ByClient, SharedRecord};
use crate::store::{Flood, LocationStoreActor, RecordsNotIn};

const LOG: &str = "peer";

/// Longest line on a peer connection (a digest line is 64 KiB).
pub const PEER_MAX_LINE: usize = 1 << 20;

/// Tunables of a peer link.
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
        }
    }
}

/// The state of a link, as the admin pages show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    Down,
    Connecting,
    /// Connected; catch-up records are being sent.
    Syncing,
    Up,
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
    draining: bool,
    backoff: Duration,
    /// Newest record per client not yet handed to the socket.
    pending: HashSet<ByClient>,
}

impl PeerActor {
    #[allow(clippy::too_many_arguments)]
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
            draining: false,
            backoff,
            pending: HashSet::new(),
        }
    }

    fn set_state(&mut self, state: LinkState) {
        self.state = state;
        let label = match state {
            LinkState::Down => "down",
            LinkState::Connecting => "connecting",
            LinkState::Syncing => "syncing",
            LinkState::Up => "up",
        };
        self.metrics.set_link(&self.neighbour, label);
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
        let work = async move {
            let stream = tokio::time::timeout(timeout, TcpStream::connect(&address))
                .await
                .map_err(|_| handshake::HandshakeError::Timeout)??;
            stream.set_nodelay(true)?;
            let mut framed = Framed::new(stream, LineCodec::new(PEER_MAX_LINE));
            handshake::dial(&mut framed, &me, &them, &secret, timeout).await?;
            Ok::<_, handshake::HandshakeError>(framed)
        };
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            if attempt != act.attempt {
                return;
            }
            match result {
                Ok(framed) => act.connected(framed, ctx),
                Err(e) => act.retry(&e.to_string(), ctx),
            }
        }));
    }

    fn connected(&mut self, framed: handshake::PeerFramed, ctx: &mut Context<Self>) {
        info!(target: LOG, "{}: link to {} ({}) made; syncing", self.me, self.neighbour, self.address);
        self.backoff = self.limits.backoff_first;
        let parts = framed.into_parts();
        let (read, write) = parts.io.into_split();
        self.output = Some(Output::new(write));
        let mut reader = FramedRead::new(read, LineCodec::new(PEER_MAX_LINE));
        reader.read_buffer_mut().extend_from_slice(&parts.read_buf);
        self.reader = Some(ctx.add_stream(reader));
        self.set_state(LinkState::Syncing);
    }

    /// The acceptor's digest arrived: send what it may lack, then floods.
    fn sync(&mut self, theirs: Digest, ctx: &mut Context<Self>) {
        let attempt = self.attempt;
        let started = Instant::now();
        let ask = self.store.send(RecordsNotIn { theirs });
        ctx.spawn(ask.into_actor(self).map(move |records, act, ctx| {
            if attempt != act.attempt || act.state != LinkState::Syncing {
                return;
            }
            let Ok(records) = records else {
                return act.drop_link("store unavailable", ctx);
            };
            let count = records.len();
            if let Some(output) = act.output.as_mut() {
                for record in &records {
                    queue_record(output, record);
                }
                output.queue(format!("SYNCED {count}\n").as_bytes());
            }
            Metrics::bump(&act.metrics.sync_runs);
            act.metrics
                .sync_records_sent
                .fetch_add(count as u64, std::sync::atomic::Ordering::Relaxed);
            info!(target: LOG, "{}: link to {} up; sync sent {count} records in {:?}",
                act.me, act.neighbour, started.elapsed());
            act.set_state(LinkState::Up);
            act.move_pending();
            act.drain(ctx);
        }));
    }

    /// Moves held records to the socket while the backlog allows.
    fn move_pending(&mut self) {
        let Some(output) = self.output.as_mut() else {
            return;
        };
        while output.backlog() < self.limits.max_backlog {
            let Some(next) = self.pending.iter().next().cloned() else {
                break;
            };
            self.pending.remove(&next);
            queue_record(output, &next.0);
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
                Err(e) => return self.drop_link(&e.to_string(), ctx),
                Ok(false) => break,
                Ok(true) if self.state == LinkState::Up && !self.pending.is_empty() => {
                    self.move_pending();
                }
                Ok(true) => return,
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
                Err(e) => act.drop_link(&e.to_string(), ctx),
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
                self.drop_link("hold buffer overflow", ctx);
            }
        }
    }

    fn drop_link(&mut self, reason: &str, ctx: &mut Context<Self>) {
        info!(target: LOG, "{}: link to {} dropped: {reason}", self.me, self.neighbour);
        if let Some(reader) = self.reader.take() {
            ctx.cancel_future(reader);
        }
        self.output = None;
        self.draining = false;
        self.retry_after_delay(ctx);
    }

    fn retry(&mut self, reason: &str, ctx: &mut Context<Self>) {
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

fn queue_record(output: &mut Output, record: &SharedRecord) {
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

    fn handle(&mut self, Flood(record): Flood, ctx: &mut Context<Self>) {
        Metrics::bump(&self.metrics.floods_sent);
        match self.output.as_mut() {
            Some(output)
                if self.state == LinkState::Up && output.backlog() < self.limits.max_backlog =>
            {
                queue_record(output, &record);
                self.drain(ctx);
            }
            _ => self.hold(record, ctx),
        }
    }
}

/// What the acceptor says on our outgoing connection: its digest, once.
impl StreamHandler<Result<Frame, std::io::Error>> for PeerActor {
    fn handle(&mut self, item: Result<Frame, std::io::Error>, ctx: &mut Context<Self>) {
        let line = match item {
            Ok(Frame::Line(line)) => line,
            Ok(Frame::Overlong) => return self.drop_link("overlong line from peer", ctx),
            Err(e) => return self.drop_link(&e.to_string(), ctx),
        };
        match line.strip_prefix(b"DIGEST ") {
            Some(hex) if self.state == LinkState::Syncing => match Digest::from_hex(hex) {
                Some(theirs) => self.sync(theirs, ctx),
                None => self.drop_link("malformed digest", ctx),
            },
            _ => warn!(target: LOG, "{}: unexpected line from {}: {}", self.me, self.neighbour,
                String::from_utf8_lossy(&line[..line.len().min(80)])),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.reader = None;
        self.drop_link("closed by peer", ctx);
    }
}
