//! N metric operations of one kind, for instruction counts under callgrind
//! (BENCHMARKS.md, "Metrics through prometheus-client"):
//!
//! ```sh
//! cargo build --release -p herd-actors --example metrics_ops
//! valgrind --tool=callgrind target/release/examples/metrics_ops update 1000000
//! ```
//!
//! `update` counts one update offered to the store (cycling through the three
//! sources, new and stale alternately), `bump` one plain counter, `observe`
//! one latency. Run with N and with 0: the difference over N is the cost of
//! one operation, loop included.

use std::hint::black_box;
use std::time::Duration;

use herd_actors::metrics::Metrics;
use herd_actors::source::SourceKind;

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_default();
    let n: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let m = Metrics::default();
    let sources = [SourceKind::Client, SourceKind::Peer, SourceKind::Sync];
    for i in 0..n {
        let m = black_box(&m);
        match what.as_str() {
            "update" => {
                let source = black_box(sources[(i % 3) as usize]);
                m.count_update(source, black_box(i % 2 == 0));
            }
            "bump" => Metrics::bump(&m.iamat_ok),
            "observe" => m
                .iamat_latency
                .observe(black_box(Duration::from_micros(300))),
            _ => {}
        }
    }
    println!("{}", Metrics::get(&m.iamat_ok));
}
