//! Sealing of the peer wire after the handshake (SPEC §4): every byte a peer
//! sends once the handshake is done travels in frames that are encrypted and
//! authenticated, with replay protection, under keys derived from the herd
//! secret and both handshake nonces.
//!
//! ```text
//! frame = length (u32, big-endian) || ciphertext || tag (16 bytes)
//!   length      = bytes of ciphertext and tag (17 ..= MAX_FRAME + 16)
//!   cipher      = ChaCha20-Poly1305 (RFC 8439, ring's), additional data = the 4 length bytes
//!   nonce       = 4 zero bytes || frame counter (u64, big-endian), per direction from 0
//! keys          = HKDF-SHA256(salt = nonce-D || nonce-A (the handshake's 16-byte nonces),
//!                             ikm  = herd secret)
//!   dialer to acceptor: expand(info = "herd/1 seal dial <D> <A>", 32 bytes)
//!   acceptor to dialer: expand(info = "herd/1 seal accept <A> <D>", 32 bytes)
//! ```
//!
//! The plaintexts of a direction's frames, in order, are the same line
//! stream that an unsealed link carries (docs/peer-protocol.md); a frame
//! holds whatever one write had (several lines, or part of a long one).
//! The receiver expects the next counter, so a frame that was changed,
//! replayed, reordered, dropped, or sealed with another key (another
//! connection, the other direction, another secret) fails authentication:
//! the link is closed, the failure counted and logged, and its plaintext is
//! never used. Keys are fresh per connection (both nonces are), so nothing
//! recorded on one connection opens on another.
//!
//! [`PeerCodec`] is the framing of a peer connection: plain lines during the
//! handshake, then, once [`PeerCodec::seal`] is called, lines inside sealed
//! frames. Memory stays bounded: a length prefix over [`MAX_FRAME`] is an
//! error before anything is buffered for it, and lines keep their limit.

use std::io;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hkdf::Hkdf;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use sha2::Sha256;
use tokio_util::codec::{Decoder, Encoder};

use crate::codec::{Frame, LineCodec};

/// Most plaintext bytes in one frame; longer writes become several frames.
pub const MAX_FRAME: usize = 1 << 16;
/// Bytes of the length prefix.
const LENGTH: usize = 4;
/// Bytes of the Poly1305 tag.
const TAG: usize = 16;

/// Why a sealed stream was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("sealed frame length {0} out of range")]
    Length(u32),
    #[error("sealed frame {0} failed authentication (tampered, replayed, reordered or wrong key)")]
    Forged(u64),
    #[error("sealed stream ended inside a frame or a line")]
    Truncated,
    #[error("frame counter exhausted")]
    Exhausted,
    #[error("sealed stream already failed")]
    Failed,
    #[error("the cipher refused the key")]
    Key,
}

impl From<SealError> for io::Error {
    fn from(e: SealError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// The two keys of one connection, one per direction.
pub struct LinkKeys {
    dial: [u8; 32],
    accept: [u8; 32],
}

impl std::fmt::Debug for LinkKeys {
    /// Never shows the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKeys")
    }
}

/// Which end of a connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Dialer,
    Acceptor,
}

impl LinkKeys {
    /// Derives both keys of the connection between `dialer` and `acceptor`
    /// from the secret and the two handshake nonces (raw bytes).
    pub fn derive(
        secret: &[u8],
        dialer: &str,
        acceptor: &str,
        nonce_d: &[u8],
        nonce_a: &[u8],
    ) -> LinkKeys {
        let salt = [nonce_d, nonce_a].concat();
        let hkdf = Hkdf::<Sha256>::new(Some(&salt), secret);
        let expand = |info: String| {
            let mut key = [0u8; 32];
            // 32 bytes is far below HKDF-SHA256's limit of 8160: never fails.
            let _ = hkdf.expand(info.as_bytes(), &mut key);
            key
        };
        LinkKeys {
            dial: expand(format!("herd/1 seal dial {dialer} {acceptor}")),
            accept: expand(format!("herd/1 seal accept {acceptor} {dialer}")),
        }
    }

    /// The sealer and opener of `end`: it seals with its own direction's
    /// key and opens with the other's.
    fn split(&self, end: End) -> Result<(Sealer, Opener), SealError> {
        let (send, receive) = match end {
            End::Dialer => (&self.dial, &self.accept),
            End::Acceptor => (&self.accept, &self.dial),
        };
        Ok((Sealer::new(send)?, Opener::new(receive)?))
    }
}

/// ChaCha20-Poly1305 under `key`. ring's implementation: the same cipher as
/// RustCrypto's `chacha20poly1305` (the tests open frames with that one),
/// about eight times faster on a line-sized message, and already linked for
/// the places client's TLS.
fn cipher(key: &[u8; 32]) -> Result<LessSafeKey, SealError> {
    let key = UnboundKey::new(&CHACHA20_POLY1305, key).map_err(|_| SealError::Key)?;
    Ok(LessSafeKey::new(key))
}

fn nonce(counter: u64) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(nonce)
}

/// Seals one direction's outgoing bytes into frames.
pub struct Sealer {
    cipher: LessSafeKey,
    counter: u64,
}

impl std::fmt::Debug for Sealer {
    /// The frame counter only, never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({})", self.counter)
    }
}

impl Sealer {
    fn new(key: &[u8; 32]) -> Result<Sealer, SealError> {
        Ok(Sealer {
            cipher: cipher(key)?,
            counter: 0,
        })
    }

    /// Appends `plain` to `dst` as frames of at most [`MAX_FRAME`] bytes.
    pub fn seal(&mut self, plain: &[u8], dst: &mut BytesMut) -> Result<(), SealError> {
        dst.reserve(plain.len() + plain.len().div_ceil(MAX_FRAME) * (LENGTH + TAG));
        for chunk in plain.chunks(MAX_FRAME) {
            let counter = self.counter;
            self.counter = counter.checked_add(1).ok_or(SealError::Exhausted)?;
            let length = ((chunk.len() + TAG) as u32).to_be_bytes();
            dst.put_slice(&length);
            let start = dst.len();
            dst.put_slice(chunk);
            let tag = self
                .cipher
                .seal_in_place_separate_tag(nonce(counter), Aad::from(length), &mut dst[start..])
                .map_err(|_| SealError::Exhausted)?; // only for inputs of 2^38 bytes
            dst.put_slice(tag.as_ref());
        }
        Ok(())
    }
}

/// Opens one direction's incoming frames, in order.
pub struct Opener {
    cipher: LessSafeKey,
    counter: u64,
    failed: bool,
}

impl Opener {
    fn new(key: &[u8; 32]) -> Result<Opener, SealError> {
        Ok(Opener {
            cipher: cipher(key)?,
            counter: 0,
            failed: false,
        })
    }

    /// Takes the next whole frame from `buf` and returns its plaintext;
    /// `None` while the frame is incomplete. After an error every call fails.
    pub fn open(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>, SealError> {
        if self.failed {
            return Err(SealError::Failed);
        }
        let result = self.open_next(buf);
        self.failed = result.is_err();
        result
    }

    fn open_next(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>, SealError> {
        let Some(length) = buf.first_chunk::<LENGTH>().copied() else {
            return Ok(None);
        };
        let declared = u32::from_be_bytes(length);
        let size = declared as usize;
        if !(TAG + 1..=MAX_FRAME + TAG).contains(&size) {
            return Err(SealError::Length(declared));
        }
        if buf.len() < LENGTH + size {
            return Ok(None);
        }
        let mut frame = buf.split_to(LENGTH + size);
        frame.advance(LENGTH);
        let counter = self.counter;
        self.cipher
            .open_in_place(nonce(counter), Aad::from(length), &mut frame)
            .map_err(|_| SealError::Forged(counter))?;
        frame.truncate(size - TAG);
        self.counter = counter.checked_add(1).ok_or(SealError::Exhausted)?;
        Ok(Some(frame))
    }
}

/// A sealed direction's state inside [`PeerCodec`].
struct Sealed {
    sealer: Option<Sealer>,
    opener: Opener,
    /// Opened plaintext not yet split into lines.
    plain: BytesMut,
}

/// The framing of a peer connection: lines, sealed once the handshake is done.
pub struct PeerCodec {
    lines: LineCodec,
    sealed: Option<Sealed>,
    /// Told of every frame that fails to open (the server counts them).
    report: Option<FailureReport>,
    /// Frames that failed to open on this connection.
    failures: u64,
}

/// What a [`PeerCodec`] calls on each frame that fails to open: the seal
/// layer reports, the caller counts (this crate holds no metrics).
pub type FailureReport = Arc<dyn Fn() + Send + Sync>;

impl PeerCodec {
    /// Plain lines of at most `max_line` bytes.
    pub fn new(max_line: usize) -> PeerCodec {
        PeerCodec {
            lines: LineCodec::new(max_line),
            sealed: None,
            report: None,
            failures: 0,
        }
    }

    /// Calls `report` on every frame that fails to open.
    pub fn reporting(mut self, report: FailureReport) -> PeerCodec {
        self.report = Some(report);
        self
    }

    /// Frames that failed to open on this connection so far.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// The line limit (see [`LineCodec::max_line`]).
    pub fn max_line(&self) -> usize {
        self.lines.max_line()
    }

    pub fn set_max_line(&mut self, max_line: usize) {
        self.lines.set_max_line(max_line);
    }

    /// From now on, bytes in both directions are sealed with `keys`, as `end`.
    pub fn seal(&mut self, keys: &LinkKeys, end: End) -> Result<(), SealError> {
        let (sealer, opener) = keys.split(end)?;
        self.sealed = Some(Sealed {
            sealer: Some(sealer),
            opener,
            plain: BytesMut::new(),
        });
        Ok(())
    }

    pub fn is_sealed(&self) -> bool {
        self.sealed.is_some()
    }

    /// Hands the sending side over (to an [`Output`](crate::output::Output)
    /// that writes this connection from now on); this codec then only reads.
    pub fn take_sealer(&mut self) -> Option<Sealer> {
        self.sealed.as_mut().and_then(|s| s.sealer.take())
    }

    fn refuse(&mut self, e: SealError) -> io::Error {
        if e != SealError::Failed {
            self.failures += 1;
            if let Some(report) = &self.report {
                report();
            }
        }
        e.into()
    }
}

impl Decoder for PeerCodec {
    type Item = Frame;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Frame>> {
        let Some(sealed) = self.sealed.as_mut() else {
            return self.lines.decode(buf);
        };
        loop {
            // Lines first: the plaintext held stays below a line plus a frame.
            if let Some(frame) = self.lines.decode(&mut sealed.plain)? {
                return Ok(Some(frame));
            }
            match sealed.opener.open(buf) {
                Ok(Some(plain)) => sealed.plain.unsplit(plain),
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.refuse(e)),
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Frame>> {
        if self.sealed.is_none() {
            return self.lines.decode_eof(buf);
        }
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        // A sealed sender ends every line: what is left was cut off on the
        // way (a frame in part, or a line whose rest never came) and is not
        // handed on as if whole.
        let leftover = self
            .sealed
            .as_ref()
            .is_some_and(|s| !s.plain.is_empty() && !s.opener.failed);
        if !buf.is_empty() || leftover {
            buf.clear();
            return Err(self.refuse(SealError::Truncated));
        }
        Ok(None)
    }
}

/// Whole lines go out as given (the caller includes the `\n`), sealed into
/// one frame per call (more past [`MAX_FRAME`]) once the link is sealed.
impl Encoder<Bytes> for PeerCodec {
    type Error = io::Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> io::Result<()> {
        match self.sealed.as_mut().map(|s| s.sealer.as_mut()) {
            None => self.lines.encode(item, dst),
            Some(Some(sealer)) => Ok(sealer.seal(&item, dst)?),
            Some(None) => Err(io::Error::other("the sealer was handed over")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &[u8]) -> LinkKeys {
        LinkKeys::derive(secret, "Riley", "Jaquez", &[1; 16], &[2; 16])
    }

    fn codec(end: End, secret: &[u8]) -> PeerCodec {
        let mut codec = PeerCodec::new(1 << 20);
        codec.seal(&keys(secret), end).unwrap();
        codec
    }

    /// The bytes `lines` become on the wire, sealed by the dialer.
    fn sealed(writes: &[&[u8]]) -> Vec<BytesMut> {
        let mut dialer = codec(End::Dialer, b"secret");
        writes
            .iter()
            .map(|w| {
                let mut out = BytesMut::new();
                dialer.encode(Bytes::copy_from_slice(w), &mut out).unwrap();
                out
            })
            .collect()
    }

    /// What the acceptor reads from `wire`: lines until the first error.
    fn read(acceptor: &mut PeerCodec, wire: &[u8]) -> (Vec<Bytes>, Option<io::Error>) {
        let mut buf = BytesMut::from(wire);
        let mut lines = Vec::new();
        loop {
            match acceptor.decode(&mut buf) {
                Ok(Some(Frame::Line(line))) => lines.push(line),
                Ok(Some(Frame::Overlong)) => panic!("overlong"),
                Ok(None) => return (lines, None),
                Err(e) => return (lines, Some(e)),
            }
        }
    }

    fn failures(codec: &PeerCodec) -> u64 {
        codec.failures()
    }

    #[test]
    fn lines_round_trip_in_frames_of_several_lines() {
        let frames = sealed(&[b"AT a\nAT b\n", b"SYNCED 2\n"]);
        let wire: Vec<u8> = frames.concat();
        assert_eq!(wire.len(), 10 + 9 + 2 * (LENGTH + TAG));
        let mut acceptor = codec(End::Acceptor, b"secret");
        let (lines, error) = read(&mut acceptor, &wire);
        assert!(error.is_none());
        assert_eq!(lines, ["AT a", "AT b", "SYNCED 2"]);
    }

    #[test]
    fn plaintext_does_not_appear_on_the_wire() {
        let wire = sealed(&[b"AT Jaquez +0.1 kiwi.cs.ucla.edu +34.068930-118.445127 1.5\n"]);
        let text = String::from_utf8_lossy(&wire[0]);
        assert!(!text.contains("kiwi") && !text.contains("34.06"), "{text}");
    }

    #[test]
    fn frames_may_arrive_in_pieces_and_split_lines() {
        // A long line sealed across several frames, read a byte at a time.
        let long = vec![b'x'; MAX_FRAME * 2 + 5];
        let mut write = long.clone();
        write.push(b'\n');
        let wire = sealed(&[&write]).concat();
        assert_eq!(wire.len(), write.len() + 3 * (LENGTH + TAG));
        let mut acceptor = codec(End::Acceptor, b"secret");
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in wire {
            buf.put_u8(byte);
            while let Some(Frame::Line(line)) = acceptor.decode(&mut buf).unwrap() {
                got.push(line);
            }
        }
        assert_eq!(got, [Bytes::from(long)]);
    }

    #[test]
    fn a_flipped_byte_anywhere_in_a_frame_fails() {
        let wire = sealed(&[b"AT a +1+1 1\n"]).concat();
        for at in LENGTH..wire.len() {
            let mut bad = wire.clone();
            bad[at] ^= 0x01;
            let mut acceptor = codec(End::Acceptor, b"secret");
            let (lines, error) = read(&mut acceptor, &bad);
            assert!(lines.is_empty(), "byte {at}");
            let error = error.unwrap_or_else(|| panic!("byte {at} accepted"));
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
            assert_eq!(failures(&acceptor), 1);
        }
    }

    #[test]
    fn a_replayed_frame_fails_and_nothing_after_it_is_read() {
        let frames = sealed(&[b"AT a\n", b"AT b\n"]);
        let wire = [&frames[0][..], &frames[0], &frames[1]].concat();
        let mut acceptor = codec(End::Acceptor, b"secret");
        let (lines, error) = read(&mut acceptor, &wire);
        assert_eq!(lines, ["AT a"]);
        assert!(error.unwrap().to_string().contains("frame 1 failed"));
        // The failed stream stays failed, even if the right frame follows.
        let (lines, error) = read(&mut acceptor, &frames[1]);
        assert!(lines.is_empty() && error.is_some());
        assert_eq!(failures(&acceptor), 1);
    }

    #[test]
    fn reordered_or_dropped_frames_fail() {
        let frames = sealed(&[b"AT a\n", b"AT b\n", b"AT c\n"]);
        let swapped = [&frames[1][..], &frames[0]].concat();
        let (lines, error) = read(&mut codec(End::Acceptor, b"secret"), &swapped);
        assert!(lines.is_empty() && error.is_some());
        let dropped = [&frames[0][..], &frames[2]].concat();
        let (lines, error) = read(&mut codec(End::Acceptor, b"secret"), &dropped);
        assert_eq!(lines, ["AT a"]);
        assert!(error.is_some());
    }

    #[test]
    fn another_secret_another_direction_or_other_nonces_fail() {
        let wire = sealed(&[b"AT a\n"]).concat();
        let (lines, error) = read(&mut codec(End::Acceptor, b"other secret"), &wire);
        assert!(lines.is_empty() && error.is_some());
        // Reflected back to the dialer, whose receiving key is the other one.
        let (lines, error) = read(&mut codec(End::Dialer, b"secret"), &wire);
        assert!(lines.is_empty() && error.is_some());
        // Another connection: other nonces.
        let mut other = PeerCodec::new(1 << 20);
        let keys = LinkKeys::derive(b"secret", "Riley", "Jaquez", &[1; 16], &[3; 16]);
        other.seal(&keys, End::Acceptor).unwrap();
        let (lines, error) = read(&mut other, &wire);
        assert!(lines.is_empty() && error.is_some());
    }

    #[test]
    fn a_length_prefix_out_of_range_fails_before_buffering() {
        for declared in [0u32, TAG as u32, (MAX_FRAME + TAG + 1) as u32, u32::MAX] {
            let mut acceptor = codec(End::Acceptor, b"secret");
            let mut buf = BytesMut::from(&declared.to_be_bytes()[..]);
            let error = acceptor.decode(&mut buf).unwrap_err();
            assert!(error.to_string().contains("length"), "{declared}: {error}");
            assert_eq!(failures(&acceptor), 1);
        }
        // At the limit it is merely incomplete, and waits.
        let mut acceptor = codec(End::Acceptor, b"secret");
        let mut buf = BytesMut::from(&((MAX_FRAME + TAG) as u32).to_be_bytes()[..]);
        assert!(acceptor.decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn a_stream_cut_inside_a_frame_or_a_line_is_an_error_not_a_line() {
        let wire = sealed(&[b"AT a\nAT b 17000"]).concat();
        let mut acceptor = codec(End::Acceptor, b"secret");
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(
            acceptor.decode(&mut buf).unwrap(),
            Some(Frame::Line(Bytes::from("AT a")))
        );
        assert!(acceptor.decode_eof(&mut buf).is_err());
        let mut acceptor = codec(End::Acceptor, b"secret");
        let mut buf = BytesMut::from(&wire[..wire.len() - 1]);
        assert!(acceptor.decode_eof(&mut buf).is_err());
        // A clean end after whole lines is just the end.
        let wire = sealed(&[b"AT a\n"]).concat();
        let mut acceptor = codec(End::Acceptor, b"secret");
        let mut buf = BytesMut::from(&wire[..]);
        assert!(acceptor.decode(&mut buf).unwrap().is_some());
        assert!(acceptor.decode_eof(&mut buf).unwrap().is_none());
    }

    #[test]
    fn lines_keep_their_limit_inside_frames() {
        let mut acceptor = PeerCodec::new(8);
        acceptor.seal(&keys(b"secret"), End::Acceptor).unwrap();
        let wire = sealed(&[b"0123456789abcdef\n"]).concat();
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(acceptor.decode(&mut buf).unwrap(), Some(Frame::Overlong));
    }

    #[test]
    fn unsealed_the_codec_is_plain_lines() {
        let mut plain = PeerCodec::new(100);
        let mut out = BytesMut::new();
        plain
            .encode(Bytes::from("HELLO a b c\n"), &mut out)
            .unwrap();
        assert_eq!(&out[..], b"HELLO a b c\n");
        assert_eq!(
            plain.decode(&mut out).unwrap(),
            Some(Frame::Line(Bytes::from("HELLO a b c")))
        );
    }

    #[test]
    fn both_ends_derive_the_same_keys_and_the_directions_differ() {
        let k = keys(b"secret");
        assert_ne!(k.dial, k.accept);
        assert_eq!(k.dial, keys(b"secret").dial);
        assert_ne!(k.dial, keys(b"secret2").dial);
        assert_eq!(format!("{k:?}"), "LinkKeys");
    }
}
