//! The PeerSession: one per accepted connection on the peer port, the
//! receiving end of a neighbour's [`PeerActor`](crate::peer::PeerActor).
//!
//! Once the handshake has named and authenticated the neighbour (see
//! [`crate::listener`]), [`answer_sync`] answers the neighbour's catch-up
//! sync questions (the sums of digest-tree nodes, the fingerprints of
//! leaves; see `digest.rs` and docs/peer-protocol.md). From the first line
//! that is not a question on, the session only reads: `AT` lines, first the
//! catch-up records up to `SYNCED <n>`, then live floods. The lines are
//! handed to the store in batches (one message per read burst instead of one
//! per line); the store checks them, decides what is new and floods it on,
//! never back to this neighbour.
//!
//! The lines arrive opened from sealed frames ([`crate::seal::PeerCodec`]);
//! a frame that fails authentication ends the session, logged as a warning.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use log::{info, warn};

use crate::codec::Frame;
use crate::digest::{self, nodes_at, DEPTH, LEAVES};
use crate::handshake::PeerFramed;
use crate::peer::{id_line, number, SyncStats, SyncWire};
use crate::protocol::fields;
use crate::store::{LeafFingerprints, LocationStoreActor, Source, UpdateBatch};

const LOG: &str = "peer";

/// Largest batch handed to the store at once.
const MAX_BATCH: usize = 256;

/// One authenticated neighbour's incoming connection.
pub struct PeerSession {
    me: Arc<str>,
    neighbour: Arc<str>,
    store: Addr<LocationStoreActor>,
    framed: Option<PeerFramed>,
    /// The line that ended the sync's questions, read before this session
    /// started and handled first.
    first: Option<Bytes>,
    batch: Vec<Bytes>,
    syncing: bool,
}

/// Hands the records read so far to the store.
#[derive(Message)]
#[rtype(result = "()")]
struct FlushBatch;

impl PeerSession {
    pub fn new(
        me: Arc<str>,
        neighbour: Arc<str>,
        store: Addr<LocationStoreActor>,
        framed: PeerFramed,
        first: Option<Bytes>,
    ) -> PeerSession {
        PeerSession {
            me,
            neighbour,
            store,
            framed: Some(framed),
            first,
            batch: Vec::new(),
            syncing: true,
        }
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let source = if self.syncing {
            Source::Sync(self.neighbour.clone())
        } else {
            Source::Peer(self.neighbour.clone())
        };
        let lines = std::mem::take(&mut self.batch);
        self.store.do_send(UpdateBatch { lines, source });
    }

    fn handle_line(&mut self, line: Bytes, ctx: &mut Context<Self>) {
        if line.starts_with(b"AT ") {
            if self.batch.is_empty() {
                ctx.notify(FlushBatch);
            }
            self.batch.push(line);
            if self.batch.len() >= MAX_BATCH {
                self.flush();
            }
        } else if let Some(count) = line.strip_prefix(b"SYNCED ") {
            self.flush();
            self.syncing = false;
            info!(target: LOG, "{}: sync from {} done ({} records)", self.me, self.neighbour,
                String::from_utf8_lossy(count));
        } else if !line.iter().all(|&b| crate::protocol::is_space(b)) {
            warn!(target: LOG, "{}: unexpected line from {}: {}", self.me, self.neighbour,
                String::from_utf8_lossy(&line[..line.len().min(80)]));
        }
    }
}

impl Actor for PeerSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        info!(target: LOG, "{}: link from {} accepted", self.me, self.neighbour);
        if let Some(line) = self.first.take() {
            self.handle_line(line, ctx);
        }
        if let Some(framed) = self.framed.take() {
            ctx.add_stream(framed);
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.flush();
        info!(target: LOG, "{}: link from {} dropped", self.me, self.neighbour);
    }
}

impl Handler<FlushBatch> for PeerSession {
    type Result = ();

    fn handle(&mut self, _: FlushBatch, _: &mut Context<Self>) {
        self.flush();
    }
}

impl StreamHandler<Result<Frame, std::io::Error>> for PeerSession {
    fn handle(&mut self, item: Result<Frame, std::io::Error>, ctx: &mut Context<Self>) {
        match item {
            Ok(Frame::Line(line)) => self.handle_line(line, ctx),
            Ok(Frame::Overlong) => {
                warn!(target: LOG, "{}: overlong line from {}; closing", self.me, self.neighbour);
                ctx.stop();
            }
            // A sealed frame that fails authentication is an attack or a
            // broken path, not an ordinary close: it is logged louder.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                warn!(target: LOG, "{}: refused from {}: {e}; closing", self.me, self.neighbour);
                ctx.stop();
            }
            Err(e) => {
                info!(target: LOG, "{}: read from {} failed: {e}", self.me, self.neighbour);
                ctx.stop();
            }
        }
    }
}

/// The acceptor's side of a catch-up sync: sends the root's children's
/// sums, then answers `WANT` and `KEYS` until the dialer sends anything
/// else (its first record, or `SYNCED`), which is returned for the session
/// to handle. Sums come from one snapshot of the digest taken at the start,
/// so every answer describes the same store; records that arrive meanwhile
/// reach the dialer as floods.
pub async fn answer_sync(
    framed: &mut PeerFramed,
    store: &Addr<LocationStoreActor>,
    timeout: Duration,
) -> Result<(SyncStats, Bytes), String> {
    let started = Instant::now();
    let (mut wire, digest) = SyncWire::open(framed, store, timeout).await?;
    let mut answer = BytesMut::new();
    push_sums(&mut answer, &digest, 0, 0);
    answer.extend_from_slice(b"END\n");
    wire.write(answer.split().freeze()).await?;
    loop {
        let line = wire.read().await?;
        let mut parts = fields(&line);
        let verb = parts.next();
        if verb != Some(b"WANT") && verb != Some(b"KEYS") {
            wire.stats.elapsed = started.elapsed();
            return Ok((wire.stats, line.clone()));
        }
        match verb {
            Some(b"WANT") => {
                let level = number(parts.next())
                    .filter(|&l| l < usize::from(DEPTH))
                    .ok_or("malformed WANT")?;
                for part in parts {
                    let node = number(Some(part))
                        .filter(|&n| n < nodes_at(level as u8))
                        .ok_or("malformed WANT")?;
                    push_sums(&mut answer, &digest, level as u8, node);
                }
            }
            Some(b"KEYS") => {
                let leaves = parts
                    .map(|p| number(Some(p)).filter(|&l| l < LEAVES))
                    .collect::<Option<Vec<usize>>>()
                    .ok_or("malformed KEYS")?;
                let found = store
                    .send(LeafFingerprints { leaves })
                    .await
                    .map_err(|_| "store unavailable")?;
                let mut text = String::new();
                for (leaf, fps) in found {
                    id_line(&mut text, "FPS", &[leaf]);
                    text.pop();
                    if !fps.is_empty() {
                        text.push(' ');
                        text.push_str(&digest::to_hex(&fps));
                    }
                    text.push('\n');
                }
                answer.extend_from_slice(text.as_bytes());
            }
            _ => {}
        }
        answer.extend_from_slice(b"END\n");
        wire.stats.rounds += 1;
        wire.write(answer.split().freeze()).await?;
    }
}

/// Appends `SUMS <level> <node> <hex of the children's sums>`.
fn push_sums(out: &mut BytesMut, digest: &digest::Digest, level: u8, node: usize) {
    let sums = digest.children(level, node);
    out.extend_from_slice(format!("SUMS {level} {node} {}\n", digest::to_hex(&sums)).as_bytes());
}
