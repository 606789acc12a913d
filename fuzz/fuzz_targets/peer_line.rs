//! Fuzz target `peer_line`: what arrives on the peer port, before and after
//! the handshake.
//!
//! The same input is given to each parser a peer connection uses:
//!
//! - [`Record::from_at_line`] (floods and catch-up records): a record it
//!   accepts is canonical, parses back to itself, and its fields agree with
//!   the client protocol's own reading of the line;
//! - [`handshake::expect`] (HELLO, CHALLENGE, PROOF, WELCOME): never panics,
//!   and what it accepts has exactly the fields asked for, none empty and
//!   none holding white space;
//! - the hex of MACs and digests ([`handshake::from_hex`],
//!   [`digest::from_hex`]): whatever they accept is the canonical hex of what
//!   they return (in either letter case), so two spellings never mean one value;
//! - the sealed framing after the handshake ([`seal::PeerCodec`]): whatever
//!   arrives, it never panics and never hands on a line, since bytes that
//!   were not sealed with the link's key cannot authenticate.
//!
//! Any panic or failed assertion is a finding (docs/fuzzing.md).

#![no_main]

use herd_fuzz::digest;
use herd_fuzz::handshake::{self, HandshakeError};
use herd_fuzz::protocol::{self, Command};
use herd_fuzz::record::Record;
use herd_fuzz::seal::{End, LinkKeys, PeerCodec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_record(data);
    check_handshake(data);
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

fn check_handshake(line: &[u8]) {
    for verb in [&b"HELLO"[..], b"CHALLENGE", b"PROOF", b"WELCOME"] {
        match handshake::expect::<3>(line, verb) {
            Ok(words) => check_words(&words),
            Err(HandshakeError::Refused(_)) => assert!(line.starts_with(b"? ")),
            Err(_) => {}
        }
        if let Ok(words) = handshake::expect::<1>(line, verb) {
            check_words(&words);
        }
        let _ = handshake::expect::<0>(line, verb);
    }
}

fn check_words(words: &[String]) {
    for word in words {
        assert!(!word.is_empty());
        assert!(!word.bytes().any(protocol::is_space), "{word:?}");
    }
}

fn check_hex(text: &[u8]) {
    let lower = text.to_ascii_lowercase();
    if let Some(bytes) = handshake::from_hex(text) {
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
    let metrics = std::sync::Arc::new(herd_fuzz::metrics::Metrics::default());
    let mut codec = PeerCodec::new(1 << 20, metrics);
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
