//! The PeerSession: one per accepted connection on the peer port, the
//! receiving end of a neighbour's [`PeerActor`](crate::peer::PeerActor).
//!
//! Once the handshake has named and authenticated the neighbour (see
//! [`crate::listener`]), [`crate::sync::answer_sync`] answers the neighbour's catch-up
//! sync questions (the sums of digest-tree nodes, the fingerprints of
//! leaves; see `digest.rs` and docs/peer-protocol.md). From the first line
//! that is not a question on, the session only reads: `AT` lines, first the
//! catch-up records up to `SYNCED <n>`, then live floods (`AT` lines sent
//! down a tree, `FLOOD AT` lines flooded; see [`crate::tree`]). The lines are
//! handed to the store in batches (one message per read burst instead of one
//! per line); the store checks them, decides what is new and floods it on,
//! never back to this neighbour.
//!
//! The lines arrive opened from sealed frames ([`crate::seal::PeerCodec`]);
//! a frame that fails authentication ends the session, logged as a warning.

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use log::{info, warn};

use crate::codec::Frame;
use crate::handshake::PeerFramed;
use crate::store::{LocationStoreActor, Source, UpdateBatch};
use crate::tree::Spread;

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
        if Spread::of_line(&line).1.starts_with(b"AT ") {
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
