//! Counters and gauges of one server, shared by its actors as plain atomics.
//!
//! Actors only bump numbers here; turning them into Prometheus text or the
//! `/status` JSON is the admin listener's business. Atomics with relaxed
//! ordering cost a few nanoseconds, so the hot path can afford them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

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
    pub updates_stale: AtomicU64,
    pub floods_sent: AtomicU64,
    pub sync_runs: AtomicU64,
    pub sync_records_sent: AtomicU64,
    pub peer_auth_failures: AtomicU64,
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
}

impl Metrics {
    pub fn set_records(&self, count: usize) {
        self.records.store(count as u64, Relaxed);
    }

    pub fn count_update(&self, source: &str, new: bool) {
        let counter = match (source, new) {
            (_, false) => &self.updates_stale,
            ("client", true) => &self.updates_new_client,
            ("sync", true) => &self.updates_new_sync,
            _ => &self.updates_new_peer,
        };
        counter.fetch_add(1, Relaxed);
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

/// A peer link as the admin pages show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStatus {
    pub state: &'static str,
    /// Unix seconds of the last change of state.
    pub since: u64,
}

impl Metrics {
    pub fn set_link(&self, neighbour: &str, state: &'static str) {
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
