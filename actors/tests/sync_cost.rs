//! What a catch-up sync costs, measured through a real TCP connection
//! between two stores: it must follow the difference, not the store size.
//!
//! `SYNC_RECORDS` sets the store size (default 100,000 to keep CI fast; the
//! figures in BENCHMARKS.md come from
//! `SYNC_RECORDS=1000000 cargo test --release -p herd-actors --test sync_cost -- --nocapture`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use herd_actors::handshake::{self, Identity, Secret};
use herd_actors::listener::{serve_peers, PeerGate};
use herd_actors::metrics::Metrics;
use herd_actors::peer_line::{HexBytes, Purpose, PEER_MAX_LINE};
use herd_actors::record::Record;
use herd_actors::seal::PeerCodec;
use herd_actors::store::{Dump, LocationStoreActor, Lookup};
use herd_actors::sync::{dial_sync, SyncStats};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

fn record(client: usize, time: u64) -> Record {
    let line = format!(
        "AT Riley +0.000000000 client-{client}.example.org +34.068930-118.445127 {time}.000000001"
    );
    Record::from_at_line(line.as_bytes()).unwrap()
}

/// The link is sealed, as between servers with the herd's default settings.
fn identity(name: &str) -> Identity {
    Identity {
        me: name.into(),
        topology: HexBytes([0; 8]),
        secret: Secret::new(b"sync cost, 16 bytes or more"),
        timeout: Duration::from_secs(30),
    }
}

fn size() -> usize {
    std::env::var("SYNC_RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000)
}

fn store(name: &str, records: Vec<Record>) -> Addr<LocationStoreActor> {
    LocationStoreActor::new(
        name.into(),
        records,
        None,
        Arc::new(Metrics::default()),
        herd_actors::protocol::DEFAULT_MAX_FUTURE_SKEW,
    )
    .start()
}

/// Starts `acceptor`'s peer port, dials it as `dialer` and runs the sync.
async fn sync(acceptor: &Addr<LocationStoreActor>, dialer: &Addr<LocationStoreActor>) -> SyncStats {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gate = PeerGate {
        identity: identity("A"),
        neighbours: vec![Arc::<str>::from("D")].into(),
        herd: vec![Arc::<str>::from("D"), Arc::<str>::from("A")].into(),
        links: Arc::default(),
        max_handshakes: 64,
        max_handshakes_per_source: 4,
        store: acceptor.clone(),
        metrics: Arc::new(Metrics::default()),
    };
    actix_rt::spawn(serve_peers(listener, gate));
    let stream = TcpStream::connect(addr).await.unwrap();
    let codec = PeerCodec::new(PEER_MAX_LINE);
    let mut framed = Framed::new(stream, codec);
    let timeout = Duration::from_secs(30);
    handshake::dial(&mut framed, &identity("D"), "A", Purpose::Link)
        .await
        .unwrap();
    let stats = dial_sync(&mut framed, dialer, timeout).await.unwrap();
    // Keep the connection open until the acceptor has applied the records.
    std::mem::forget(framed);
    stats
}

/// Polls until `client` has the record of `time` at `store`.
async fn wait_for(store: &Addr<LocationStoreActor>, client: usize, time: u64) -> Duration {
    let started = Instant::now();
    let expected = record(client, time);
    loop {
        let name = bytes::Bytes::from(expected.client().to_vec());
        let found = store.send(Lookup { client: name }).await.unwrap();
        if found.as_deref() == Some(&expected) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "record never arrived"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[test]
fn ten_differences_cost_ten_records_whatever_the_store_size() {
    let n = size();
    actix_rt::System::new().block_on(async move {
        let base: Vec<Record> = (0..n).map(|i| record(i, 1_000_000_000)).collect();
        let changed: Vec<usize> = (0..10).map(|k| k * (n / 10) + 7).collect();
        let mut newer = base.clone();
        for &i in &changed {
            newer[i] = record(i, 1_000_000_001);
        }
        let a = store("A", base);
        let d = store("D", newer);
        let started = Instant::now();
        let stats = sync(&a, &d).await;
        for &i in &changed {
            wait_for(&a, i, 1_000_000_001).await;
        }
        let total = started.elapsed();
        let record_bytes: u64 = changed.iter().map(|&i| record(i, 1_000_000_001).at_line().len() as u64 + 1).sum();
        println!(
            "sync of {n} records, 10 differing: {} records sent, {} rounds, dialer wrote {} bytes \
             ({record_bytes} of them the records), read {} bytes; sync {:?}, until applied {total:?}",
            stats.records, stats.rounds, stats.bytes_out, stats.bytes_in, stats.elapsed
        );
        assert_eq!(stats.records, 10);
        // The dialer's requests are a few ids per round on top of the records.
        assert!(stats.bytes_out < record_bytes + 2_000, "{stats:?}");
        // Sums along ten paths of the tree and the fingerprints of ten
        // leaves: a few kilobytes, not a bucket's worth of records.
        let per_leaf = (n as u64 / 65_536 + 1) * 17;
        assert!(stats.bytes_in < 20_000 + 10 * per_leaf * 3, "{stats:?}");
        let dump_a = a.send(Dump).await.unwrap();
        assert_eq!(dump_a.len(), n);
        System::current().stop();
    });
}

#[test]
fn an_empty_store_is_refilled_in_one_round_and_an_equal_one_costs_one_line() {
    let n = size() / 10;
    actix_rt::System::new().block_on(async move {
        let all: Vec<Record> = (0..n).map(|i| record(i, 5)).collect();
        let empty = store("A", Vec::new());
        let full = store("D", all.clone());
        let stats = sync(&empty, &full).await;
        assert_eq!(stats.records, n);
        assert_eq!(stats.rounds, 1, "{stats:?}");
        wait_for(&empty, n - 1, 5).await;
        wait_for(&empty, 0, 5).await;

        let twin = store("A", all);
        let stats = sync(&twin, &full).await;
        assert_eq!(stats.records, 0);
        assert_eq!(stats.rounds, 1);
        // One SUMS line (16 sums) and END in, `SYNCED 0` out.
        assert!(stats.bytes_in < 300 && stats.bytes_out < 20, "{stats:?}");

        // A store holding *newer* records is sent nothing it would keep:
        // only the dialer's older versions of the differing clients.
        let mut ahead: Vec<Record> = (0..n).map(|i| record(i, 5)).collect();
        ahead[3] = record(3, 6);
        let ahead = store("A", ahead);
        let stats = sync(&ahead, &full).await;
        assert_eq!(stats.records, 1);
        System::current().stop();
    });
}

/// Anti-entropy's cost on an idle herd (docs/peer-protocol.md, "Anti-entropy"):
/// a round is one `ROOT` line each way, sealed as one frame, whatever the
/// stores hold; and when one record is missing, the repair is one catch-up
/// sync that sends that record alone.
#[test]
fn an_anti_entropy_round_costs_one_short_frame_each_way_and_one_missing_record_one_record() {
    use herd_actors::peer_line::PeerLine;
    use herd_actors::seal::{End, LinkKeys};
    use tokio_util::codec::Encoder;
    let keys = LinkKeys::derive(b"anti-entropy", "D", "A", &[1; 16], &[2; 16]);
    let mut codec = PeerCodec::new(PEER_MAX_LINE);
    codec.seal(&keys, End::Dialer).unwrap();
    let line = PeerLine::Root(u64::MAX).to_bytes();
    let mut frame = bytes::BytesMut::new();
    codec
        .encode(bytes::Bytes::from(line.clone()), &mut frame)
        .unwrap();
    println!(
        "anti-entropy round: a {}-byte ROOT line, {} bytes sealed, each way",
        line.len(),
        frame.len()
    );
    assert_eq!(line.len(), 22);
    assert!(frame.len() <= 22 + 24, "{}", frame.len());

    let n = size();
    actix_rt::System::new().block_on(async move {
        let all: Vec<Record> = (0..n).map(|i| record(i, 7)).collect();
        let mut lacking = all.clone();
        lacking.remove(n / 2);
        let a = store("A", lacking);
        let d = store("D", all);
        let started = Instant::now();
        let stats = sync(&a, &d).await;
        wait_for(&a, n / 2, 7).await;
        println!(
            "repair of one record missing among {n}: {} record sent, {} rounds, {} bytes out, \
             {} in; sync {:?}, until applied {:?}",
            stats.records,
            stats.rounds,
            stats.bytes_out,
            stats.bytes_in,
            stats.elapsed,
            started.elapsed()
        );
        assert_eq!(stats.records, 1);
        System::current().stop();
    });
}
