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
//! After the sync the session acknowledges what it has read: `ACK <count>`,
//! the number of lines since `SYNCED`, at most every [`ACK_EVERY`] while
//! lines arrive, so that the sending side learns within its `ACK_TIMEOUT`
//! that a link carries nothing (a neighbour cut off without a word) and
//! floods around it (see [`crate::peer`]).
//!
//! The lines arrive opened from sealed frames ([`crate::seal::PeerCodec`]),
//! and the acknowledgements leave sealed; a frame that fails authentication
//! ends the session, logged as a warning.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use log::{debug, info, warn};

use crate::codec::Frame;
use crate::handshake::PeerFramed;
use crate::output::{into_halves, Output};
use crate::peer::Repair;
use crate::peer_line::{PeerLine, Purpose, Spread};
use crate::store::{GetRoot, LocationStoreActor, Source, UpdateBatch};
use crate::text::LogText;

const LOG: &str = "peer";

/// Largest batch handed to the store at once.
const MAX_BATCH: usize = 256;

/// How often, at most, the lines read are acknowledged while they arrive.
pub const ACK_EVERY: Duration = Duration::from_millis(50);

/// One authenticated neighbour's incoming connection.
pub struct PeerSession {
    me: Arc<str>,
    neighbour: Arc<str>,
    store: Addr<LocationStoreActor>,
    framed: Option<PeerFramed>,
    /// The line that ended the sync's questions, read before this session
    /// started and handled first.
    first: Option<Bytes>,
    /// A link, or a repair connection (which ends after its sync).
    purpose: Purpose,
    /// This server's own link to the same neighbour: told to repair when
    /// an anti-entropy comparison finds the stores differ.
    repair: Option<Recipient<Repair>>,
    batch: Vec<(Spread, Bytes)>,
    syncing: bool,
    /// The sealed write side, for the acknowledgements.
    output: Option<Output>,
    /// Lines read since `SYNCED`.
    read: u64,
    /// An acknowledgement is due ([`ACK_EVERY`] after the first unacknowledged line).
    ack_scheduled: bool,
    /// The neighbour waits for acknowledgements (`PROMPT`): each read burst
    /// is acknowledged at once.
    prompt: bool,
}

/// Acknowledges the lines read so far (`PROMPT` links).
#[derive(Message)]
#[rtype(result = "()")]
struct AcknowledgeNow;

impl Handler<AcknowledgeNow> for PeerSession {
    type Result = ();

    fn handle(&mut self, _: AcknowledgeNow, ctx: &mut Context<Self>) {
        self.acknowledge(ctx);
    }
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
            purpose: Purpose::Link,
            repair: None,
            batch: Vec::new(),
            syncing: true,
            output: None,
            read: 0,
            ack_scheduled: false,
            prompt: false,
        }
    }

    /// A repair connection (one sync, then closed), or a link.
    pub fn for_purpose(mut self, purpose: Purpose) -> PeerSession {
        self.purpose = purpose;
        self
    }

    /// This server's own link to the neighbour, to repair what it lacks.
    pub fn repairing_with(mut self, link: Option<Recipient<Repair>>) -> PeerSession {
        self.repair = link;
        self
    }

    /// Sends `line` back to the neighbour. A socket too full to take it
    /// keeps it queued behind; the next line writes both.
    fn answer(&mut self, line: PeerLine<'_>, ctx: &mut Context<Self>) {
        let Some(output) = self.output.as_mut() else {
            return;
        };
        output.queue(&line.to_bytes());
        if let Err(e) = output.try_flush() {
            info!(target: LOG, "{}: writing to {} failed: {e}", self.me, self.neighbour);
            ctx.stop();
        }
    }

    /// Sends `ACK <count>` of the lines read so far.
    fn acknowledge(&mut self, ctx: &mut Context<Self>) {
        self.ack_scheduled = false;
        self.answer(PeerLine::Ack(self.read), ctx);
    }

    /// Anti-entropy: answers the neighbour's root with ours, once the
    /// records read before it are in the store; when they differ, our own
    /// link to the neighbour repairs what it lacks (the neighbour repairs
    /// what we lack).
    fn compare_roots(&mut self, theirs: u64, ctx: &mut Context<Self>) {
        self.flush();
        let root = self.store.send(GetRoot);
        ctx.spawn(root.into_actor(self).map(move |mine, act, ctx| {
            let Ok(mine) = mine else {
                return;
            };
            act.answer(PeerLine::Root(mine), ctx);
            if mine != theirs {
                debug!(target: LOG, "{}: {}'s store differs from this one", act.me, act.neighbour);
                if let Some(link) = &act.repair {
                    link.do_send(Repair);
                }
            }
        }));
    }

    /// Counts a line read after the sync, and has it acknowledged soon.
    fn count_read(&mut self, ctx: &mut Context<Self>) {
        self.read += 1;
        if !self.ack_scheduled {
            self.ack_scheduled = true;
            if self.prompt {
                // At once, after what is being handled now: no timer (its
                // granularity alone is a millisecond).
                ctx.notify(AcknowledgeNow);
            } else {
                ctx.run_later(ACK_EVERY, |act, ctx| act.acknowledge(ctx));
            }
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

    fn handle_line(&mut self, frame: Bytes, ctx: &mut Context<Self>) {
        match PeerLine::parse(&frame) {
            Ok(PeerLine::At { spread, line }) => {
                let line = frame.slice_ref(line);
                if !self.syncing {
                    self.count_read(ctx);
                }
                if self.batch.is_empty() {
                    ctx.notify(FlushBatch);
                }
                self.batch.push((spread, line));
                if self.batch.len() >= MAX_BATCH {
                    self.flush();
                }
            }
            Ok(PeerLine::Synced(count)) => {
                self.flush();
                self.syncing = false;
                info!(target: LOG, "{}: sync from {} done ({count} records)", self.me, self.neighbour);
                if self.purpose == Purpose::Repair {
                    ctx.stop();
                }
            }
            Ok(PeerLine::Root(theirs)) if !self.syncing => self.compare_roots(theirs, ctx),
            Ok(PeerLine::Prompt) => self.prompt = true,
            Ok(PeerLine::Blank) => {}
            _ => warn!(target: LOG, "{}: unexpected line from {}: {}", self.me, self.neighbour,
                LogText::clipped(&frame, 80)),
        }
    }
}

impl Actor for PeerSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.purpose == Purpose::Link {
            info!(target: LOG, "{}: link from {} accepted", self.me, self.neighbour);
        }
        if let Some(line) = self.first.take() {
            self.handle_line(line, ctx);
        }
        let Some(framed) = self.framed.take() else {
            return;
        };
        // Read and write apart: the acknowledgements leave through an Output.
        match into_halves(framed) {
            Ok(halves) => {
                self.output = Some(halves.output);
                for frame in halves.buffered {
                    StreamHandler::handle(self, Ok(frame), ctx);
                }
                ctx.add_stream(halves.reader);
            }
            Err(e) => StreamHandler::handle(self, Err(e), ctx),
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.flush();
        if self.purpose == Purpose::Link {
            info!(target: LOG, "{}: link from {} dropped", self.me, self.neighbour);
        }
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
