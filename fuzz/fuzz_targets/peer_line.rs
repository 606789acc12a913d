//! Fuzz target `peer_line`: what arrives on the peer port, before and after
//! the handshake.
//!
//! The same input is given to each parser a peer connection uses:
//!
//! - [`Record::from_at_line`] (floods and catch-up records): a record it
//!   accepts is canonical, parses back to itself, and its fields agree with
//!   the client protocol's own reading of the line;
//! - [`PeerLine::parse`] (every verb of the peer wire: handshake, sync,
//!   floods, acknowledgements, anti-entropy): never panics, and whatever it
//!   accepts it writes back as a line that parses to the same value (so a
//!   peer line has one meaning, whatever spelling arrived);
//! - the hex of MACs and digests ([`peer_line::from_hex`],
//!   [`digest::from_hex`]): whatever they accept is the canonical hex of what
//!   they return (in either letter case), so two spellings never mean one value;
//! - the sealed framing after the handshake ([`seal::PeerCodec`]): whatever
//!   arrives, it never panics and never hands on a line, since bytes that
//!   were not sealed with the link's key cannot authenticate.
//!
//! Any panic or failed assertion is a finding (docs/fuzzing.md).

#![no_main]

use herd_fuzz::digest;
use herd_fuzz::peer_line::{self, PeerLine};
use herd_fuzz::protocol::{self, Command};
use herd_fuzz::record::Record;
use herd_fuzz::seal::{End, LinkKeys, PeerCodec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_record(data);
    check_peer_line(data);
    check_hex(data);
    check_sealed(data);
});

fn check_record(line: &[u8]) {
    let Ok(record) = Record::from_at_line(line) else {
        return;
    };
    let Command::At(at) = protocol::parse_line(line) else {
        panic!("from_at_line took a line the protocol does not call AT");
    };
    assert_eq!(record.origin(), at.origin);
    assert_eq!(record.client(), at.client);
    assert_eq!(record.location_text(), at.location_text);
    assert_eq!(record.time_text(), at.time_text);
    assert_eq!(record.time(), at.time);
    assert_eq!(record.diff(), at.diff);
    assert!(record.at_line().starts_with(b"AT "));
    let again = Record::from_at_line(record.at_line()).expect("a canonical line parses");
    assert_eq!(again, record);
    assert_eq!(again.at_line(), record.at_line());
    assert_eq!(record.newness(&again), std::cmp::Ordering::Equal);
}

fn check_peer_line(line: &[u8]) {
    let Ok(parsed) = PeerLine::parse(line) else {
        return;
    };
    let written = parsed.to_bytes();
    assert_eq!(written.last(), Some(&b'\n'));
    let again = PeerLine::parse(&written[..written.len() - 1]).expect("a written line parses");
    assert_eq!(again, parsed, "{:?}", String::from_utf8_lossy(&written));
    if let PeerLine::Hello(hello) = &parsed {
        for name in [hello.dialer, hello.acceptor] {
            assert!(protocol::valid_server_name(name.as_bytes()), "{name:?}");
        }
    }
}

fn check_hex(text: &[u8]) {
    let lower = text.to_ascii_lowercase();
    if let Some(bytes) = peer_line::from_hex(text) {
        let canonical: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(canonical.as_bytes(), &lower[..], "MAC hex not canonical");
    }
    if let Some(values) = digest::from_hex(text) {
        assert_eq!(
            digest::to_hex(&values).as_bytes(),
            &lower[..],
            "digest hex not canonical"
        );
    }
}

fn check_sealed(data: &[u8]) {
    use tokio_util::codec::Decoder;
    let keys = LinkKeys::derive(b"fuzz", "D", "A", &[0; 16], &[1; 16]);
    let mut codec = PeerCodec::new(1 << 20);
    codec.seal(&keys, End::Acceptor).expect("a 32-byte key");
    let mut buf = bytes::BytesMut::from(data);
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => panic!("forged input opened: {frame:?}"),
            Ok(None) => break,
            Err(_) => return,
        }
    }
    let _ = codec.decode_eof(&mut buf);
}
