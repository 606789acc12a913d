//! Counters and gauges of one server, shared by its actors as plain atomics.
//!
//! Actors only bump numbers here; turning them into Prometheus text or the
//! `/status` JSON is the admin listener's business. Atomics with relaxed
//! ordering cost a few nanoseconds, so the hot path can afford them.
//!
//! Latencies go into [`Histogram`]s with fixed buckets (the Prometheus way):
//! observing is two relaxed additions and a short scan, no lock, no
//! allocation, and buckets never need merging or resizing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// Everything one server counts.
#[derive(Debug, Default)]
pub struct Metrics {
    pub iamat_ok: AtomicU64,
    pub whatsat_ok: AtomicU64,
    pub whatsat_unknown: AtomicU64,
    pub invalid_lines: AtomicU64,
    pub overlong_lines: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_refused: AtomicU64,
    pub records: AtomicU64,
    pub updates_new_client: AtomicU64,
    pub updates_new_peer: AtomicU64,
    pub updates_new_sync: AtomicU64,
    /// Stale updates from any source (the sum of the three below).
    pub updates_stale: AtomicU64,
    pub updates_stale_client: AtomicU64,
    pub updates_stale_peer: AtomicU64,
    pub updates_stale_sync: AtomicU64,
    pub floods_sent: AtomicU64,
    pub sync_runs: AtomicU64,
    pub sync_records_sent: AtomicU64,
    pub peer_auth_failures: AtomicU64,
    /// Sealed peer frames refused (tampered, replayed, reordered, cut off,
    /// wrong key); each one closed its link.
    pub peer_seal_failures: AtomicU64,
    /// Records from neighbours, syncs or the journal refused because they
    /// break a client rule (SPEC §4, §7): never stored.
    pub records_refused: AtomicU64,
    /// Unauthenticated peer connections dropped to make room for newer ones.
    pub peer_handshakes_dropped: AtomicU64,
    /// Places answers by provider and status, e.g. ("offline", "OK").
    pub places: Mutex<BTreeMap<(String, String), u64>>,
    pub places_cache_hits: AtomicU64,
    pub places_upstream_calls: AtomicU64,
    /// Places requests that waited for an identical one in flight.
    pub places_coalesced: AtomicU64,
    /// Places requests refused by the token bucket (answered OVER_QUERY_LIMIT
    /// without calling upstream).
    pub places_rate_limited: AtomicU64,
    /// Outgoing links by neighbour.
    pub links: Mutex<BTreeMap<String, LinkStatus>>,
    /// From an IAMAT line's arrival to its answer being queued.
    pub iamat_latency: Histogram,
    /// From a WHATSAT line's arrival to its answer being queued.
    pub whatsat_latency: Histogram,
}

impl Metrics {
    pub fn set_records(&self, count: usize) {
        self.records.store(count as u64, Relaxed);
    }

    pub fn count_update(&self, source: SourceKind, new: bool) {
        let counter = match (source, new) {
            (SourceKind::Client, false) => &self.updates_stale_client,
            (SourceKind::Peer, false) => &self.updates_stale_peer,
            (SourceKind::Sync, false) => &self.updates_stale_sync,
            (SourceKind::Client, true) => &self.updates_new_client,
            (SourceKind::Peer, true) => &self.updates_new_peer,
            (SourceKind::Sync, true) => &self.updates_new_sync,
        };
        counter.fetch_add(1, Relaxed);
        if !new {
            self.updates_stale.fetch_add(1, Relaxed);
        }
    }

    /// Places answers by (provider, status), copied out of the lock.
    pub fn places_counts(&self) -> BTreeMap<(String, String), u64> {
        self.places.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn count_places(&self, provider: &str, status: &str) {
        if let Ok(mut map) = self.places.lock() {
            *map.entry((provider.to_owned(), status.to_owned()))
                .or_default() += 1;
        }
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }

    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

/// Where an update came from, without the neighbour's name: what the
/// `updates_*` counters are split by (the store's `Source` has the name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A client of this server (an IAMAT).
    Client,
    /// A neighbour's flood.
    Peer,
    /// A catch-up sync from a neighbour.
    Sync,
}

impl SourceKind {
    /// The `source` label of the update counters.
    pub fn label(self) -> &'static str {
        match self {
            SourceKind::Client => "client",
            SourceKind::Peer => "peer",
            SourceKind::Sync => "sync",
        }
    }
}

/// The state of an outgoing peer link, as the admin pages show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Down,
    Connecting,
    /// Connected; catch-up records are being sent.
    Syncing,
    Up,
}

impl LinkState {
    /// Every state, in the order the admin pages list them.
    pub const ALL: [LinkState; 4] = [
        LinkState::Down,
        LinkState::Connecting,
        LinkState::Syncing,
        LinkState::Up,
    ];

    /// The state's name in `/status`, `herd_link_state{state=...}` and herdctl.
    pub fn label(self) -> &'static str {
        match self {
            LinkState::Down => "down",
            LinkState::Connecting => "connecting",
            LinkState::Syncing => "syncing",
            LinkState::Up => "up",
        }
    }
}

/// Upper bounds of the latency buckets, in seconds: 50 µs to 10 s, roughly
/// 1-2.5-5 steps, fine where the performance targets are (under 1 ms).
pub const LATENCY_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram with the fixed [`LATENCY_BUCKETS`].
///
/// Each observation lands in exactly one bucket (the first whose bound it does
/// not exceed, or none when it exceeds them all); [`Histogram::snapshot`]
/// turns those into the cumulative counts Prometheus expects.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// A histogram read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, observations at or below it), ascending.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// Cumulative counts. Read without a lock, so a snapshot taken during an
    /// observation may be off by that one observation, never more.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let buckets = LATENCY_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(&bound, n)| {
                running += n.load(Relaxed);
                (bound, running)
            })
            .collect();
        let count = self.count.load(Relaxed).max(running);
        HistogramSnapshot {
            buckets,
            count,
            sum_seconds: self.sum_nanos.load(Relaxed) as f64 / 1e9,
        }
    }
}

/// A peer link as the admin pages show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStatus {
    pub state: LinkState,
    /// Unix seconds of the last change of state.
    pub since: u64,
}

impl Metrics {
    pub fn set_link(&self, neighbour: &str, state: LinkState) {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Ok(mut links) = self.links.lock() {
            let entry = links
                .entry(neighbour.to_owned())
                .or_insert(LinkStatus { state, since });
            if entry.state != state {
                *entry = LinkStatus { state, since };
            }
        }
    }

    pub fn links(&self) -> BTreeMap<String, LinkStatus> {
        self.links.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_cumulatively_and_keeps_the_sum() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(40)); // first bucket (50 µs)
        h.observe(Duration::from_micros(700)); // 1 ms bucket
        h.observe(Duration::from_millis(1)); // exactly on the 1 ms bound
        h.observe(Duration::from_secs(30)); // above every bound: +Inf only
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets[0], (0.000_05, 1));
        let at = |bound: f64| s.buckets.iter().find(|b| b.0 == bound).map(|b| b.1);
        assert_eq!(at(0.000_5), Some(1));
        assert_eq!(at(0.001), Some(3));
        assert_eq!(at(10.0), Some(3));
        assert!((s.sum_seconds - 30.00174).abs() < 1e-9, "{}", s.sum_seconds);
    }

    #[test]
    fn stale_updates_are_counted_by_source_and_in_total() {
        let m = Metrics::default();
        m.count_update(SourceKind::Peer, false);
        m.count_update(SourceKind::Peer, false);
        m.count_update(SourceKind::Sync, false);
        m.count_update(SourceKind::Client, true);
        assert_eq!(Metrics::get(&m.updates_stale_peer), 2);
        assert_eq!(Metrics::get(&m.updates_stale_sync), 1);
        assert_eq!(Metrics::get(&m.updates_stale_client), 0);
        assert_eq!(Metrics::get(&m.updates_stale), 3);
        assert_eq!(Metrics::get(&m.updates_new_client), 1);
    }

    #[test]
    fn a_link_keeps_its_since_until_its_state_changes() {
        let m = Metrics::default();
        m.set_link("Jaquez", LinkState::Up);
        let first = m.links()["Jaquez"].clone();
        m.set_link("Jaquez", LinkState::Up);
        assert_eq!(m.links()["Jaquez"], first);
        m.set_link("Jaquez", LinkState::Down);
        assert_eq!(m.links()["Jaquez"].state, LinkState::Down);
    }
}
