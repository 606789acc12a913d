//! The ConnectionActor: one per client TCP connection (SPEC §3).
//!
//! It frames lines with [`LineCodec`], parses each with the pure
//! [`protocol`](crate::protocol) functions and answers in the order the lines
//! came, even when a client pipelines many. Order comes from actix itself:
//! work that needs another actor (the store for IAMAT, store then places for
//! WHATSAT) runs under `ctx.wait`, and while an actor waits its context reads
//! no further lines. The same pause gives backpressure: a client that sends
//! faster than we answer fills its own socket buffer, not our memory.
//!
//! Requests that come together cost less: the answers to the lines of one
//! read go out in one write, and without a journal (nothing to wait for)
//! their IAMAT records go to the store in one message, handed over before
//! those answers are written.
//!
//! Closing is graceful in every case. After a half-close the last line is
//! answered before the write side is shut; after an overlong line the `?`
//! answer is flushed, the write side shut, and what still arrives is read and
//! dropped for a moment (closing with unread data would send a reset that can
//! destroy the answer in flight).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::dev::SendError;
use actix::prelude::*;
use bytes::Bytes;
use log::{info, warn};
use tokio::net::tcp::OwnedReadHalf;
use tokio_util::codec::FramedRead;

use crate::codec::{Frame, LineCodec};
use crate::metrics::Metrics;
use crate::output::{Drain, HasOutput, Output};
use crate::places::{Nearby, PlacesActor, Query};
use crate::protocol::{self, Command, Timestamp};
use crate::record::{Record, SharedRecord};
use crate::refusal::SourceRefusals;
use crate::store::{Barrier, ClientUpdates, LocationStoreActor, Lookup, Source, Update};
use crate::text::LogText;

const LOG: &str = "connection";

/// Limits of one client connection (SPEC §3, §7; issue: bounded resources).
/// The defaults are the herd's: `limits` in the settings starts from them.
#[derive(Debug, Clone)]
pub struct ClientLimits {
    /// Longest line accepted, in bytes, without its terminator.
    pub max_line: usize,
    /// A connection with no complete line for this long is closed.
    pub idle_timeout: Duration,
    /// An answer that cannot be written for this long closes the connection.
    pub write_timeout: Duration,
    /// How long to keep reading (and dropping) input after closing our side.
    pub linger: Duration,
    /// An IAMAT time further ahead of our clock than this is invalid.
    pub max_future_skew: Duration,
    /// With `herd.ack_after = "neighbour"`: the longest an IAMAT's answer
    /// waits for a neighbour's acknowledgement (`limits.ack_timeout_ms`).
    pub ack_timeout: Duration,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_line: 4096,
            idle_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(2),
            max_future_skew: protocol::DEFAULT_MAX_FUTURE_SKEW,
            ack_timeout: Duration::from_secs(1),
        }
    }
}

/// Client connections one server holds at once by default; more are refused
/// (the listener's bound, `limits.max_connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;

/// What every connection of one server shares.
#[derive(Clone)]
pub struct ClientContext {
    pub server: Arc<str>,
    pub store: Addr<LocationStoreActor>,
    pub places: Addr<PlacesActor>,
    pub limits: ClientLimits,
    pub metrics: Arc<Metrics>,
    /// Whether each input and output line is logged.
    pub log_lines: bool,
    /// Connections refused for speaking HTTP, logged per source: a few,
    /// then at most once a second (`refusal.rs`).
    pub http_refusals: Arc<SourceRefusals>,
    /// No journal: an IAMAT may be answered as soon as the store has it
    /// queued. The answer never depends on the store's verdict (it echoes the
    /// line), and the store's mailbox is first-in first-out, so any later
    /// request to this server is handled after the update.
    pub answer_when_queued: bool,
}

/// Decrements the open-connection count when the connection goes away.
pub struct ConnectionSlot {
    open: Arc<AtomicUsize>,
}

impl ConnectionSlot {
    /// Takes one of `limit` slots, or `None` when all are taken.
    pub fn take(open: &Arc<AtomicUsize>, limit: usize) -> Option<ConnectionSlot> {
        let taken = open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        });
        taken.ok().map(|_| ConnectionSlot { open: open.clone() })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Which way a logged line went.
#[derive(Debug, Clone, Copy)]
enum Direction {
    /// From the client.
    In,
    /// To the client.
    Out,
}

/// Writes the answers queued since the last write.
#[derive(Message)]
#[rtype(result = "()")]
struct FlushAnswers;

impl Handler<FlushAnswers> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, _: FlushAnswers, ctx: &mut Context<Self>) {
        self.flush_scheduled = false;
        self.flush(ctx);
    }
}

/// One client connection.
pub struct ConnectionActor {
    shared: ClientContext,
    client_addr: SocketAddr,
    /// `client_addr` as text, formatted once: every logged line carries it.
    client_label: Box<str>,
    /// The text of the line being logged, kept between lines.
    log_buffer: String,
    reader: Option<OwnedReadHalf>,
    output: Option<Output>,
    last_line: Instant,
    closing: bool,
    /// A [`FlushAnswers`] is on its way: answers queued until then go out
    /// in one write.
    flush_scheduled: bool,
    /// IAMAT records answered but not yet handed to the store: they go in
    /// one message before their answers are written.
    for_store: Vec<SharedRecord>,
    _slot: ConnectionSlot,
}

impl ConnectionActor {
    pub fn new(
        shared: ClientContext,
        client_addr: SocketAddr,
        stream: tokio::net::TcpStream,
        slot: ConnectionSlot,
    ) -> ConnectionActor {
        let (reader, writer) = stream.into_split();
        ConnectionActor {
            shared,
            client_addr,
            client_label: client_addr.to_string().into(),
            log_buffer: String::new(),
            reader: Some(reader),
            output: Some(Output::new(writer)),
            last_line: Instant::now(),
            closing: false,
            flush_scheduled: false,
            for_store: Vec::new(),
            _slot: slot,
        }
    }

    /// Logs a line read or written: as text `Name: addr < line` (`>` for
    /// an answer); the address and direction also go as key-values
    /// (`addr`, `direction` = `in` / `out`), fields of their own in JSON logs.
    fn log_line(&mut self, direction: Direction, line: &[u8]) {
        if self.shared.log_lines {
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            let (arrow, name) = match direction {
                Direction::In => (" < ", "in"),
                Direction::Out => (" > ", "out"),
            };
            // Built piece by piece in a buffer kept between lines: every
            // client line is logged, and the formatting machinery costs
            // several times more per argument.
            let text = &mut self.log_buffer;
            text.clear();
            text.push_str(&self.shared.server);
            text.push_str(": ");
            text.push_str(&self.client_label);
            text.push_str(arrow);
            LogText::new(line).write_to(text);
            info!(target: LOG, addr = &*self.client_label, direction = name; "{text}");
        }
    }

    /// Queues an answer, to be written with the others of the same read
    /// ([`FlushAnswers`]).
    fn answer(&mut self, bytes: &[u8], ctx: &mut Context<Self>) {
        self.log_line(Direction::Out, bytes);
        if let Some(output) = self.output.as_mut() {
            output.queue(bytes);
        }
        self.schedule_flush(ctx);
    }

    /// Answers with one line given without its `\n` (no copy to add it).
    fn answer_line(&mut self, line: &[u8], ctx: &mut Context<Self>) {
        self.log_line(Direction::Out, line);
        if let Some(output) = self.output.as_mut() {
            output.queue(line);
            output.queue(b"\n");
        }
        self.schedule_flush(ctx);
    }

    /// The answers queued are written once the lines at hand are handled:
    /// one write for all the answers of a read (as Redis writes once per
    /// event-loop turn), not one per answer. The context hands a handler at
    /// most 16 lines of a stream before it runs what was notified, so at
    /// most 16 answers wait, and a client that does not read still pauses
    /// its own input when the socket is full ([`ConnectionActor::flush`]).
    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            ctx.notify(FlushAnswers);
        }
    }

    /// Hands the records read since the last hand-over to the store, in one
    /// message, queued at once whatever follows (a WHATSAT's lookup, the
    /// answers written at a close): the store's mailbox keeps the order. A
    /// full mailbox makes the connection wait, reading nothing, until the
    /// store has handled them: that is the backpressure. Either way they are
    /// queued when this returns, so their answers may be written.
    fn hand_over(&mut self, ctx: &mut Context<Self>) {
        if self.for_store.is_empty() {
            return;
        }
        // The next read's records likely number as many: room for them at
        // once, not regrown from nothing each time.
        let room = Vec::with_capacity(self.for_store.len());
        let records = ClientUpdates(std::mem::replace(&mut self.for_store, room));
        match self.shared.store.try_send(records) {
            Ok(()) => {}
            Err(SendError::Full(records)) => {
                // Queued now (a `send` held back by a full mailbox would be
                // queued only when polled, and the context polls the newest
                // of its waits first), then waited on.
                self.shared.store.do_send(records);
                let handled = self.shared.store.send(Barrier);
                ctx.wait(handled.into_actor(self).map(|handled, act, ctx| {
                    if handled.is_err() {
                        act.store_gone(ctx);
                    }
                }));
            }
            Err(SendError::Closed(_)) => self.store_gone(ctx),
        }
    }

    fn store_gone(&mut self, ctx: &mut Context<Self>) {
        // Not taken: the client must not believe it was kept.
        self.output = None;
        warn!(target: LOG, "{}: store gone; closing {}", self.shared.server, self.client_addr);
        ctx.stop();
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        // The store has the records before their answers go out (or is
        // gone, and then nothing goes out).
        self.hand_over(ctx);
        let Some(output) = self.output.as_mut() else {
            return;
        };
        match output.try_flush() {
            Ok(true) => {}
            Ok(false) => {
                let drain = Drain::flush(self.shared.limits.write_timeout);
                ctx.wait(drain.map(|result, act: &mut Self, ctx| {
                    if let Err(e) = result {
                        warn!(target: LOG, "{}: {} not reading answers ({e}); closing",
                            act.shared.server, act.client_addr);
                        ctx.stop();
                    }
                }));
            }
            Err(e) => {
                info!(target: LOG, "{}: {} write failed: {e}", self.shared.server, self.client_addr);
                ctx.stop();
            }
        }
    }

    fn handle_line(&mut self, line: Bytes, ctx: &mut Context<Self>) {
        if protocol::looks_like_http(&line) {
            return self.refuse_http(&line, ctx);
        }
        let command = protocol::parse_line(&line);
        if matches!(command, Command::Blank) {
            // Not a request: it neither counts as activity (a client cannot
            // hold a slot with blank lines) nor is answered.
            return;
        }
        self.last_line = Instant::now();
        self.log_line(Direction::In, &line);
        match command {
            Command::Blank => {}
            Command::IAmAt(cmd) => {
                let now = Timestamp::now();
                if cmd
                    .time
                    .too_far_ahead_of(now, self.shared.limits.max_future_skew)
                {
                    return self.invalid(&line, ctx);
                }
                match Record::from_iamat(&self.shared.server, now, &cmd) {
                    Ok(record) => self.iamat(Arc::new(record), ctx),
                    Err(_) => self.invalid(&line, ctx),
                }
            }
            Command::WhatsAt(cmd) => {
                let client = line.slice_ref(cmd.client);
                self.whatsat(line.clone(), client, cmd.radius, cmd.bound, ctx);
            }
            Command::At(_) | Command::Invalid => self.invalid(&line, ctx),
        }
    }

    /// A line that says HTTP (SPEC §7: a web page's `fetch` to a client
    /// port): the connection is closed at once, unanswered, and nothing
    /// after the line is read (lines are handled in order, and `closing`
    /// drops those already framed), so an IAMAT in the body of the request
    /// is never taken. Counted, and logged per source at a bounded rate.
    fn refuse_http(&mut self, line: &[u8], ctx: &mut Context<Self>) {
        self.closing = true;
        self.output = None;
        Metrics::bump(&self.shared.metrics.http_refused);
        let source = self.client_addr.ip();
        if let Some(count) = self.shared.http_refusals.count(source, Instant::now()) {
            warn!(target: LOG, "{}: {} spoke HTTP on the client port ({}); closed \
                ({count} such connections from {source} since the last such line)",
                self.shared.server, self.client_addr, LogText::clipped(line, 100));
        }
        ctx.stop();
    }

    fn invalid(&mut self, line: &[u8], ctx: &mut Context<Self>) {
        Metrics::bump(&self.shared.metrics.invalid_lines);
        self.answer(&protocol::invalid_answer(line), ctx);
    }

    /// IAMAT: the answer is the record's own AT line, sent once the store has
    /// taken it (and, with a journal, once it is durable).
    fn iamat(&mut self, record: SharedRecord, ctx: &mut Context<Self>) {
        let started = self.last_line; // read now: for the latency histogram
        if self.shared.answer_when_queued {
            // The fast path: no reply to wait for. The records of one read
            // go to the store in one message, before their answers are
            // written ([`ConnectionActor::flush`]).
            Metrics::bump(&self.shared.metrics.iamat_ok);
            self.shared.metrics.iamat_latency.observe(started.elapsed());
            self.answer_line(record.at_line(), ctx);
            self.for_store.push(record);
            return;
        }
        let update = Update {
            record: record.clone(),
            source: Source::Client,
        };
        let update = self.shared.store.send(update);
        let (metrics, ack_timeout) = (self.shared.metrics.clone(), self.shared.limits.ack_timeout);
        let work = async move {
            let applied = update.await.map_err(|e| e.to_string())?;
            if let Some(durable) = applied.durable {
                durable
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
            }
            // herd.ack_after = "neighbour": a neighbour holds it too, or the
            // deadline passed (counted: the answer promises less).
            if let Some(replicated) = applied.replicated {
                if !matches!(
                    tokio::time::timeout(ack_timeout, replicated).await,
                    Ok(Ok(()))
                ) {
                    Metrics::bump(&metrics.acks_unreplicated);
                }
            }
            Ok::<(), String>(())
        };
        ctx.wait(
            work.into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(()) => {
                        Metrics::bump(&act.shared.metrics.iamat_ok);
                        act.shared.metrics.iamat_latency.observe(started.elapsed());
                        act.answer_line(record.at_line(), ctx);
                    }
                    Err(e) => {
                        // Not acknowledged: the client must not believe it was kept.
                        warn!(target: LOG, "{}: update not stored ({e}); closing {}",
                    act.shared.server, act.client_addr);
                        ctx.stop();
                    }
                }),
        );
    }

    /// WHATSAT: look the client up in the store, then ask the places actor.
    fn whatsat(
        &mut self,
        line: Bytes,
        client: Bytes,
        radius: protocol::Radius,
        bound: u8,
        ctx: &mut Context<Self>,
    ) {
        let started = self.last_line; // read now: for the latency histogram
                                      // The store reads its mailbox in order: the records read before
                                      // this line are there before the lookup.
        self.hand_over(ctx);
        let store = self.shared.store.clone();
        let places = self.shared.places.clone();
        let work = async move {
            let record = store.send(Lookup { client }).await.ok()??;
            let location = record.location()?;
            let body = places
                .send(Nearby(Query {
                    location,
                    radius,
                    bound,
                }))
                .await
                .ok()?;
            let mut answer = Vec::with_capacity(record.at_line().len() + 1 + body.len());
            answer.extend_from_slice(record.at_line());
            answer.push(b'\n');
            answer.extend_from_slice(&body);
            Some(answer)
        };
        ctx.wait(
            work.into_actor(self)
                .map(move |answer, act, ctx| match answer {
                    Some(answer) => {
                        Metrics::bump(&act.shared.metrics.whatsat_ok);
                        act.shared
                            .metrics
                            .whatsat_latency
                            .observe(started.elapsed());
                        act.answer(&answer, ctx);
                    }
                    None => {
                        Metrics::bump(&act.shared.metrics.whatsat_unknown);
                        act.invalid(&line, ctx);
                    }
                }),
        );
    }

    /// Flushes, shuts our write side, then drops whatever still arrives for
    /// `linger` before closing, so the client reads our last bytes.
    fn close_gracefully(&mut self, ctx: &mut Context<Self>, linger: Duration) {
        if self.closing {
            return;
        }
        self.closing = true;
        // The answers written last are for records the store has.
        self.hand_over(ctx);
        let drain = Drain::close(self.shared.limits.write_timeout);
        ctx.wait(drain.map(move |_, _act: &mut Self, ctx| {
            ctx.run_later(linger, |_, ctx| ctx.stop());
        }));
    }
}

impl HasOutput for ConnectionActor {
    fn output(&mut self) -> Option<&mut Output> {
        self.output.as_mut()
    }
}

impl Actor for ConnectionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        Metrics::bump(&self.shared.metrics.connections_total);
        self.shared.metrics.connections_open.inc();
        info!(target: LOG, "{}: client {} connected", self.shared.server, self.client_addr);
        if let Some(reader) = self.reader.take() {
            let codec = LineCodec::new(self.shared.limits.max_line);
            ctx.add_stream(FramedRead::with_capacity(reader, codec, 4096));
        }
        let every = (self.shared.limits.idle_timeout / 4).max(Duration::from_millis(50));
        ctx.run_interval(every, |act, ctx| {
            if !act.closing && act.last_line.elapsed() >= act.shared.limits.idle_timeout {
                info!(target: LOG, "{}: {} idle, closing", act.shared.server, act.client_addr);
                act.close_gracefully(ctx, Duration::ZERO);
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.shared.metrics.connections_open.dec();
        info!(target: LOG, "{}: client {} disconnected", self.shared.server, self.client_addr);
    }
}

impl StreamHandler<Result<Frame, std::io::Error>> for ConnectionActor {
    fn handle(&mut self, item: Result<Frame, std::io::Error>, ctx: &mut Context<Self>) {
        if self.closing {
            return; // lingering: read and drop
        }
        match item {
            Ok(Frame::Line(line)) => self.handle_line(line, ctx),
            Ok(Frame::Overlong) => {
                Metrics::bump(&self.shared.metrics.overlong_lines);
                warn!(target: LOG, "{}: {} sent a line over {} bytes; closing",
                    self.shared.server, self.client_addr, self.shared.limits.max_line);
                self.answer(b"?\n", ctx);
                let linger = self.shared.limits.linger;
                self.close_gracefully(ctx, linger);
            }
            Err(e) => {
                info!(target: LOG, "{}: {} read failed: {e}", self.shared.server, self.client_addr);
                ctx.stop();
            }
        }
    }

    /// End of input: every line before it has been answered (the context
    /// reads nothing while it waits), so close our side and go.
    fn finished(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            ctx.stop();
            return;
        }
        self.close_gracefully(ctx, Duration::ZERO);
    }
}
