//! Line framing for both the client and the peer ports (a tokio-util codec).
//!
//! A line ends at `\n`; a `\r` just before it is dropped. A last line that
//! ends at end-of-file is still a line. A line longer than the limit is never
//! buffered whole: the codec reports [`Frame::Overlong`] once and from then on
//! discards everything it reads, so memory stays bounded whatever a client
//! sends. The owner answers and closes the connection.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// What the codec yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One line without its terminator.
    Line(Bytes),
    /// The line in progress passed the limit; the rest of the stream is dropped.
    Overlong,
}

/// Splits a byte stream into lines of at most `max_line` bytes.
#[derive(Debug, Clone)]
pub struct LineCodec {
    max_line: usize,
    /// How far `buf` has been searched for `\n` already.
    scanned: usize,
    discarding: bool,
}

impl LineCodec {
    pub fn new(max_line: usize) -> LineCodec {
        LineCodec {
            max_line,
            scanned: 0,
            discarding: false,
        }
    }

    /// The longest line accepted, in bytes.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Changes the limit for the lines still to come (the peer handshake
    /// reads with a short one, then gives the link its full one).
    pub fn set_max_line(&mut self, max_line: usize) {
        self.max_line = max_line;
    }
}

impl Decoder for LineCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        if self.discarding {
            buf.clear();
            return Ok(None);
        }
        match memchr::memchr(b'\n', &buf[self.scanned..]) {
            Some(offset) => {
                let end = self.scanned + offset;
                self.scanned = 0;
                // The limit counts the line's content, not its terminator.
                let content = if end > 0 && buf[end - 1] == b'\r' {
                    end - 1
                } else {
                    end
                };
                if content > self.max_line {
                    self.discarding = true;
                    buf.clear();
                    return Ok(Some(Frame::Overlong));
                }
                let mut line = buf.split_to(end + 1);
                line.truncate(content);
                Ok(Some(Frame::Line(line.freeze())))
            }
            None if buf.len() > self.max_line + 1 => {
                self.discarding = true;
                buf.clear();
                Ok(Some(Frame::Overlong))
            }
            None => {
                self.scanned = buf.len();
                Ok(None)
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        if buf.is_empty() || self.discarding {
            buf.clear();
            return Ok(None);
        }
        // A last line ended by end-of-file rather than by `\n`.
        self.scanned = 0;
        let mut line = buf.split();
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        // `decode` keeps one byte over the limit while it waits to see
        // whether it is the `\r` of a `\r\n`; at end-of-file it is not.
        if line.len() > self.max_line {
            self.discarding = true;
            return Ok(Some(Frame::Overlong));
        }
        Ok(Some(Frame::Line(line.freeze())))
    }
}

/// Lines go out as given; the caller includes the `\n`.
impl Encoder<Bytes> for LineCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), Self::Error> {
        dst.extend_from_slice(&item);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut LineCodec, input: &[u8], eof: bool) -> Vec<Frame> {
        let mut buf = BytesMut::from(input);
        let mut frames = Vec::new();
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            frames.push(frame);
        }
        if eof {
            while let Some(frame) = codec.decode_eof(&mut buf).unwrap() {
                frames.push(frame);
            }
        }
        frames
    }

    fn line(text: &[u8]) -> Frame {
        Frame::Line(Bytes::copy_from_slice(text))
    }

    #[test]
    fn splits_lines_and_drops_cr_before_lf() {
        let mut codec = LineCodec::new(100);
        let frames = decode_all(&mut codec, b"one\r\ntwo\n\nthree\r", false);
        assert_eq!(frames, vec![line(b"one"), line(b"two"), line(b"")]);
    }

    #[test]
    fn last_line_at_eof_is_a_line() {
        let mut codec = LineCodec::new(100);
        let frames = decode_all(&mut codec, b"one\nlast words", true);
        assert_eq!(frames, vec![line(b"one"), line(b"last words")]);
    }

    /// Found by the `client_line` fuzz target: a last line of one byte over
    /// the limit, ended by end-of-file, came out as a line.
    #[test]
    fn a_last_line_at_eof_over_the_limit_is_overlong() {
        let mut codec = LineCodec::new(4);
        assert_eq!(
            decode_all(&mut codec, b"abcde", true),
            vec![Frame::Overlong]
        );
        let mut codec = LineCodec::new(4);
        assert_eq!(decode_all(&mut codec, b"abcd\r", true), vec![line(b"abcd")]);
        let mut codec = LineCodec::new(4);
        assert_eq!(decode_all(&mut codec, b"abcd", true), vec![line(b"abcd")]);
    }

    #[test]
    fn a_lone_cr_inside_a_line_is_kept() {
        let mut codec = LineCodec::new(100);
        assert_eq!(
            decode_all(&mut codec, b"a\rb\n", false),
            vec![line(b"a\rb")]
        );
    }

    #[test]
    fn line_at_the_limit_passes_and_one_byte_more_does_not() {
        let mut codec = LineCodec::new(4);
        assert_eq!(
            decode_all(&mut codec, b"abcd\r\n", false),
            vec![line(b"abcd")]
        );
        let mut codec = LineCodec::new(4);
        assert_eq!(
            decode_all(&mut codec, b"abcde\nok\n", false),
            vec![Frame::Overlong]
        );
    }

    #[test]
    fn overlong_without_newline_is_reported_early_and_then_discarded() {
        let mut codec = LineCodec::new(8);
        let mut buf = BytesMut::from(&b"0123456789abcdef"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Frame::Overlong));
        assert!(buf.is_empty());
        buf.extend_from_slice(b"more\nIAMAT x +1+1 1\n");
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty(), "discarded input must not accumulate");
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
    }

    #[test]
    fn partial_lines_resume_scanning() {
        let mut codec = LineCodec::new(100);
        let mut buf = BytesMut::from(&b"IAMAT a"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b" +1+1 1\n");
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(line(b"IAMAT a +1+1 1"))
        );
    }
}
