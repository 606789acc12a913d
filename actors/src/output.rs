//! The write side of a socket, owned by an actor: a byte buffer and the
//! futures that drain it.
//!
//! Answers are appended to [`Output`] and written at once with a
//! non-blocking `try_write`; only when the kernel's buffer is full does the
//! owning actor have to wait, through a [`Drain`] future polled in its own
//! context (so it can touch the buffer without locks). A `Drain` gives up at
//! its deadline: a reader that never reads is disconnected, not buffered for.
//!
//! A sealed peer link's `Output` holds a [`Sealer`]: what is queued stays
//! plaintext until the next write, which seals all of it into one frame
//! (more past the frame limit), so a burst of floods costs one frame.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix::{Actor, ActorFuture};
use bytes::{Buf, BytesMut};
use tokio::io::AsyncWrite;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::{Decoder, FramedRead};

use crate::codec::Frame;
use crate::handshake::PeerFramed;
use crate::seal::{PeerCodec, Sealer};

/// A socket's write half and the bytes waiting to go out on it.
#[derive(Debug)]
pub struct Output {
    sink: OwnedWriteHalf,
    /// Bytes as they go on the wire.
    pending: BytesMut,
    sealing: Option<Sealing>,
}

/// Plaintext queued on a sealed link, and what seals it.
#[derive(Debug)]
struct Sealing {
    sealer: Sealer,
    plain: BytesMut,
}

impl Output {
    pub fn new(sink: OwnedWriteHalf) -> Output {
        Output {
            sink,
            pending: BytesMut::with_capacity(512),
            sealing: None,
        }
    }

    /// Seals everything queued from now on, when given a sealer.
    pub fn sealed_by(mut self, sealer: Option<Sealer>) -> Output {
        self.sealing = sealer.map(|sealer| Sealing {
            sealer,
            plain: BytesMut::with_capacity(512),
        });
        self
    }

    /// Appends bytes to send.
    pub fn queue(&mut self, bytes: &[u8]) {
        match &mut self.sealing {
            Some(sealing) => sealing.plain.extend_from_slice(bytes),
            None => self.pending.extend_from_slice(bytes),
        }
    }

    /// Bytes queued and not yet written.
    pub fn backlog(&self) -> usize {
        self.pending.len() + self.sealing.as_ref().map_or(0, |s| s.plain.len())
    }

    /// Seals the plaintext queued so far into frames ready to write.
    fn seal_queued(&mut self) -> io::Result<()> {
        if let Some(sealing) = &mut self.sealing {
            if !sealing.plain.is_empty() {
                sealing.sealer.seal(&sealing.plain, &mut self.pending)?;
                sealing.plain.clear();
            }
        }
        Ok(())
    }

    /// Writes what the socket takes now. `Ok(true)` when nothing is left.
    pub fn try_flush(&mut self) -> io::Result<bool> {
        self.seal_queued()?;
        while !self.pending.is_empty() {
            match self.sink.try_write(&self.pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.pending.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.seal_queued() {
            return Poll::Ready(Err(e));
        }
        while !self.pending.is_empty() {
            match Pin::new(&mut self.sink).poll_write(cx, &self.pending) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.pending.advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.poll_flush(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.sink).poll_shutdown(cx),
            other => other,
        }
    }
}

/// An actor that owns an [`Output`].
pub trait HasOutput: Actor {
    fn output(&mut self) -> Option<&mut Output>;
}

/// What a [`Drain`] does once the buffer is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Stay,
    /// Shut down the write side: the peer reads end-of-file after our bytes.
    Shutdown,
}

/// Writes the owner's whole backlog, then optionally shuts the write side.
pub struct Drain {
    then: Then,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Drain {
    /// Drains within `timeout`.
    pub fn flush(timeout: Duration) -> Drain {
        Drain {
            then: Then::Stay,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// Drains and then shuts down the write side, within `timeout`.
    pub fn close(timeout: Duration) -> Drain {
        Drain {
            then: Then::Shutdown,
            ..Drain::flush(timeout)
        }
    }
}

impl<A: HasOutput> ActorFuture<A> for Drain {
    type Output = io::Result<()>;

    fn poll(
        self: Pin<&mut Self>,
        act: &mut A,
        _ctx: &mut A::Context,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(output) = act.output() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let progress = match this.then {
            Then::Stay => output.poll_flush(cx),
            Then::Shutdown => output.poll_close(cx),
        };
        match progress {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::ErrorKind::TimedOut.into())),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// A link after its handshake and sync, taken apart so that an actor reads
/// and writes it independently.
pub struct Halves {
    /// Frames that had already arrived, to be handled before `reader`'s:
    /// a reader made from parts polls the socket before its buffer, so
    /// lines already buffered would otherwise wait for the next bytes.
    pub buffered: Vec<Frame>,
    pub reader: FramedRead<OwnedReadHalf, PeerCodec>,
    /// The write side, sealed in the counter sequence the frames so far
    /// began.
    pub output: Output,
}

/// Takes `framed` apart into [`Halves`].
pub fn into_halves(framed: PeerFramed) -> std::io::Result<Halves> {
    let mut parts = framed.into_parts();
    let mut buffered = Vec::new();
    while let Some(frame) = parts.codec.decode(&mut parts.read_buf)? {
        buffered.push(frame);
    }
    let (read, write) = parts.io.into_split();
    let output = Output::new(write).sealed_by(parts.codec.take_sealer());
    let mut reader = FramedRead::new(read, parts.codec);
    reader.read_buffer_mut().extend_from_slice(&parts.read_buf);
    Ok(Halves {
        buffered,
        reader,
        output,
    })
}
