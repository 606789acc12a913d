//! Fuzz target `client_line`: everything a client can send to the client port.
//!
//! The input is a byte stream as it would arrive on a socket. It is framed by
//! the real [`LineCodec`] (fed in uneven chunks, with end-of-file at the end)
//! and every line is parsed by [`protocol::parse_line`], then checked against
//! the invariants the server relies on:
//!
//! - framing: no line holds `\n` or exceeds the limit; after `Overlong`
//!   nothing more comes out; the lines are exactly the input's lines;
//! - `Blank` only for all-white-space lines; `Invalid` is answered with `? `
//!   and the exact bytes;
//! - a valid IAMAT becomes a [`Record`] whose AT line parses back to the same
//!   record, keeps the client's three fields byte for byte, and whose
//!   coordinates are in range;
//! - a valid WHATSAT has a radius in (0, 50] km and a bound in 1..=20;
//! - a valid AT line round-trips through `format_at`.
//!
//! Any panic, overflow or failed assertion is a finding (docs/fuzzing.md).

#![no_main]

use bytes::BytesMut;
use herd_fuzz::codec::{Frame, LineCodec};
use herd_fuzz::protocol::{self, Command, Timestamp};
use herd_fuzz::record::Record;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

/// A small limit, so that overlong lines are reached often.
const MAX_LINE: usize = 300;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size the "socket" delivers.
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk % 64) + 1;
    let lines = frame(stream, chunk);
    check_framing(stream, &lines);
    for line in lines.iter().flatten() {
        check_line(line);
    }
    // The whole input as one line too: longer lines and odd bytes.
    check_line(stream);
});

/// Frames `stream` as the server would; `None` stands for `Overlong`.
fn frame(stream: &[u8], chunk: usize) -> Vec<Option<Vec<u8>>> {
    let mut codec = LineCodec::new(MAX_LINE);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(frame) = codec.decode(&mut buf).expect("decode never fails") {
            out.push(to_line(frame));
        }
        // Memory per connection: at most the limit and one byte (a `\r`
        // that may yet be followed by `\n`) wait for the rest of a line.
        assert!(buf.len() <= MAX_LINE + 1, "buffer grew to {}", buf.len());
    }
    while let Some(frame) = codec.decode_eof(&mut buf).expect("decode_eof never fails") {
        out.push(to_line(frame));
    }
    out
}

fn to_line(frame: Frame) -> Option<Vec<u8>> {
    match frame {
        Frame::Line(line) => Some(line.to_vec()),
        Frame::Overlong => None,
    }
}

/// The frames are the input's lines, up to the first overlong one.
fn check_framing(stream: &[u8], frames: &[Option<Vec<u8>>]) {
    let mut expected = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(end) => (&rest[..end], &rest[end + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > MAX_LINE {
            expected.push(None);
            break;
        }
        expected.push(Some(line.to_vec()));
        rest = next;
    }
    // An overlong unterminated tail is reported as soon as it passes the
    // limit; either way the frames must match the reference exactly.
    assert_eq!(frames, &expected[..], "framing differs from the reference");
    for line in frames.iter().flatten() {
        assert!(line.len() <= MAX_LINE && !line.contains(&b'\n'));
    }
}

fn check_line(line: &[u8]) {
    let command = protocol::parse_line(line);
    // A line that closes the connection as HTTP is never a valid command.
    if protocol::looks_like_http(line) {
        assert!(matches!(command, Command::Invalid), "HTTP taken as a command");
    }
    match command {
        Command::Blank => assert!(line.iter().all(|&b| protocol::is_space(b))),
        Command::Invalid => {
            let answer = protocol::invalid_answer(line);
            assert_eq!(&answer[..2], b"? ");
            assert_eq!(&answer[2..answer.len() - 1], line);
            assert_eq!(answer.last(), Some(&b'\n'));
        }
        Command::IAmAt(cmd) => {
            assert!((1..=protocol::MAX_CLIENT_BYTES).contains(&cmd.client.len()));
            // The parser only checks the location; converting what it let
            // through must succeed and stay in range.
            let location =
                protocol::Location::parse(cmd.location_text).expect("a checked location converts");
            assert!((-90.0..=90.0).contains(&location.lat));
            assert!((-180.0..=180.0).contains(&location.lon));
            let received = Timestamp::new(1_700_000_000, 123_456_789).expect("valid");
            let record =
                Record::from_iamat("Riley", received, &cmd).expect("a parsed IAMAT makes a record");
            assert_eq!(record.client(), cmd.client);
            assert_eq!(record.location_text(), cmd.location_text);
            assert_eq!(record.time_text(), cmd.time_text);
            assert_eq!(record.time(), cmd.time);
            assert_eq!(record.origin(), b"Riley");
            let again = Record::from_at_line(record.at_line()).expect("own AT line parses");
            assert_eq!(again, record);
            assert!(record.location().is_some());
        }
        Command::WhatsAt(cmd) => {
            assert!(cmd.radius.km() > 0.0 && cmd.radius.km() <= 50.0);
            assert!((1..=50_000).contains(&cmd.radius.metres()));
            assert!((1..=protocol::MAX_BOUND).contains(&cmd.bound));
        }
        Command::At(at) => {
            let line = protocol::format_at(
                at.origin,
                at.diff,
                at.client,
                at.location_text,
                at.time_text,
            );
            let Command::At(again) = protocol::parse_line(&line) else {
                panic!("a formatted AT line does not parse");
            };
            assert_eq!(again, at);
        }
    }
}
