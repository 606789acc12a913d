//! What sealing costs per update, in isolation from the network and the
//! rest of the server: seal and open a typical `AT` line, alone in its frame
//! (the worst case: a flood with nothing else to share its frame) and in
//! frames of 16 lines (a burst). The figures in BENCHMARKS.md ("Peer
//! sealing") come from
//! `cargo test --release -p herd-actors --test seal_cost -- --nocapture`.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use herd_actors::codec::Frame;
use herd_actors::seal::{End, LinkKeys, PeerCodec};
use tokio_util::codec::{Decoder, Encoder};

const LINE: &[u8] =
    b"AT Riley +0.000081025 kiwi.cs.ucla.edu +34.068930-118.445127 1700000000.123456789\n";

/// Both ends of a connection, sealed or plain.
fn pair(sealed: bool) -> (PeerCodec, PeerCodec) {
    let keys = LinkKeys::derive(b"herd secret", "Riley", "Jaquez", &[1; 16], &[2; 16]);
    let codec = || PeerCodec::new(1 << 20);
    let (mut dialer, mut acceptor) = (codec(), codec());
    if sealed {
        dialer.seal(&keys, End::Dialer).unwrap();
        acceptor.seal(&keys, End::Acceptor).unwrap();
    }
    (dialer, acceptor)
}

/// Nanoseconds per line to write and read `lines` lines, `per_frame` a
/// write, through a sealed or a plain codec.
fn cost(sealed: bool, lines: usize, per_frame: usize) -> f64 {
    let (mut dialer, mut acceptor) = pair(sealed);
    let write = Bytes::from(LINE.repeat(per_frame));
    let mut wire = BytesMut::new();
    let started = Instant::now();
    let mut read = 0;
    for _ in 0..lines / per_frame {
        dialer.encode(write.clone(), &mut wire).unwrap();
        while let Some(frame) = acceptor.decode(&mut wire).unwrap() {
            assert!(matches!(frame, Frame::Line(_)));
            read += 1;
        }
    }
    assert_eq!(read, lines);
    started.elapsed().as_nanos() as f64 / lines as f64
}

#[test]
fn sealing_a_flood_line_costs_well_under_a_microsecond() {
    let lines = 160_000;
    cost(true, lines / 10, 1); // warm up
    let alone = cost(true, lines, 1);
    let burst = cost(true, lines, 16);
    let (plain_alone, plain_burst) = (cost(false, lines, 1), cost(false, lines, 16));
    println!(
        "write + read of one {}-byte AT line: sealed {alone:.0} ns alone in its frame, \
         {burst:.0} ns in frames of 16 lines; plain {plain_alone:.0} ns and {plain_burst:.0} ns",
        LINE.len()
    );
    // A debug build is far slower; the bound only catches gross regressions.
    assert!(alone < 50_000.0 && burst < 50_000.0);
}
