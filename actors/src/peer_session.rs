//! The PeerSession: one per accepted connection on the peer port, the
//! receiving end of a neighbour's [`PeerActor`](crate::peer::PeerActor).
//!
//! Once the handshake has named and authenticated the neighbour (see
//! [`crate::listener`]), the session sends this store's digest and then
//! only reads: `AT` lines, first the catch-up records up to `SYNCED <n>`, then
//! live floods. Records are parsed here and handed to the store in batches
//! (one message per read burst instead of one per line); the store decides
//! what is new and floods it on, never back to this neighbour.

use std::sync::Arc;

use actix::prelude::*;
use log::{info, warn};

use crate::codec::Frame;
use crate::handshake::PeerFramed;
use crate::record::Record;
use crate::store::{LocationStoreActor, Source, UpdateBatch};

const LOG: &str = "peer";

/// Largest batch handed to the store at once.
const MAX_BATCH: usize = 256;

/// One authenticated neighbour's incoming connection.
pub struct PeerSession {
    me: Arc<str>,
    neighbour: Arc<str>,
    store: Addr<LocationStoreActor>,
    framed: Option<PeerFramed>,
    batch: Vec<Record>,
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
    ) -> PeerSession {
        PeerSession {
            me,
            neighbour,
            store,
            framed: Some(framed),
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
        let records = std::mem::take(&mut self.batch);
        self.store.do_send(UpdateBatch { records, source });
    }

    fn handle_line(&mut self, line: &[u8], ctx: &mut Context<Self>) {
        if line.starts_with(b"AT ") {
            match Record::from_at_line(line) {
                Ok(record) => {
                    if self.batch.is_empty() {
                        ctx.notify(FlushBatch);
                    }
                    self.batch.push(record);
                    if self.batch.len() >= MAX_BATCH {
                        self.flush();
                    }
                }
                Err(_) => warn!(target: LOG, "{}: invalid AT line from {}: {}", self.me,
                    self.neighbour, String::from_utf8_lossy(line)),
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
            Ok(Frame::Line(line)) => self.handle_line(&line, ctx),
            Ok(Frame::Overlong) => {
                warn!(target: LOG, "{}: overlong line from {}; closing", self.me, self.neighbour);
                ctx.stop();
            }
            Err(e) => {
                info!(target: LOG, "{}: read from {} failed: {e}", self.me, self.neighbour);
                ctx.stop();
            }
        }
    }
}
