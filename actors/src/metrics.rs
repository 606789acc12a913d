//! Counters and gauges of one server, shared by its actors.
//!
//! Every metric is a `prometheus-client` type, declared once: its handle
//! below, its name, help and type in [`Metrics::register`]. Actors only bump
//! the handles; a labelled series is fetched from its family once, when
//! [`Metrics`] is made, so the hot path is a relaxed atomic add on a held
//! handle, never a label lookup. The admin listener turns the registry into
//! the Prometheus text of `/metrics` (src/admin/prometheus.rs).
//!
//! Latencies go into [`Histogram`]s with fixed buckets (the Prometheus way):
//! observing is two relaxed additions and a short scan, no lock, no
//! allocation (prometheus-client's own histogram takes a lock per
//! observation, so this one is ours and only its encoding is the crate's).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::source::SourceKind;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// `herd_requests_total{verb, outcome}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: &'static str,
    outcome: &'static str,
}

/// `herd_updates_total{source, result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpdateLabels {
    source: &'static str,
    result: &'static str,
}

/// `herd_request_duration_seconds{verb}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbLabels {
    verb: &'static str,
}

/// `herd_actor_restarts_total{actor}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActorLabels {
    actor: &'static str,
}

/// `herd_places_answers_total{provider, status}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlacesLabels {
    pub provider: String,
    pub status: String,
}

/// Everything one server counts. The labelled handles are series of the
/// families kept beside them (and registered in their place).
#[derive(Debug)]
pub struct Metrics {
    pub iamat_ok: Counter,
    pub whatsat_ok: Counter,
    pub whatsat_unknown: Counter,
    pub invalid_lines: Counter,
    pub overlong_lines: Counter,
    pub connections_open: Gauge,
    pub connections_total: Counter,
    pub connections_refused: Counter,
    /// Client connections closed at once for speaking HTTP (a web page's
    /// `fetch` to a client port): nothing they sent was read as a command.
    pub http_refused: Counter,
    pub records: Gauge,
    pub updates_new_client: Counter,
    pub updates_new_peer: Counter,
    pub updates_new_sync: Counter,
    /// Stale updates from any source (the sum of the three below).
    pub updates_stale: Counter,
    pub updates_stale_client: Counter,
    pub updates_stale_peer: Counter,
    pub updates_stale_sync: Counter,
    pub floods_sent: Counter,
    pub sync_runs: Counter,
    pub sync_records_sent: Counter,
    pub peer_auth_failures: Counter,
    /// Sealed peer frames refused (tampered, replayed, reordered, cut off,
    /// wrong key); each one closed its link.
    pub peer_seal_failures: Counter,
    /// Records from neighbours, syncs or the journal refused because they
    /// break a client rule (SPEC §4, §7): never stored.
    pub records_refused: Counter,
    /// Records dropped because `limits.record_ttl_ms` had passed since their
    /// origin received them: swept from the store, or refused on arrival
    /// (from a client, a neighbour, a sync or the journal).
    pub records_expired: Counter,
    /// Unauthenticated peer connections dropped to make room for newer ones.
    pub peer_handshakes_dropped: Counter,
    /// 1 while some neighbour was given other links than this server: every
    /// update is then flooded (SPEC §4).
    pub topology_mixed: Gauge,
    /// Handshakes from a server whose settings list a link to this server
    /// that this server's settings do not (or the other way round).
    pub peer_one_sided: Counter,
    /// Handshakes refused for sharing no peer-protocol version.
    pub peer_version_refused: Counter,
    /// Anti-entropy comparisons of digest roots, and those that differed and
    /// started a repair.
    pub anti_entropy_rounds: Counter,
    pub anti_entropy_repairs: Counter,
    /// Actors restarted by their supervisor, by actor.
    pub restarts_store: Counter,
    pub restarts_places: Counter,
    pub restarts_peer: Counter,
    /// IAMATs answered at `limits.ack_timeout_ms` with no neighbour's
    /// acknowledgement (`herd.ack_after = "neighbour"`).
    pub acks_unreplicated: Counter,
    /// Places answers by provider and status, e.g. ("offline", "OK").
    pub places: Family<PlacesLabels, Counter>,
    pub places_cache_hits: Counter,
    pub places_upstream_calls: Counter,
    /// Places requests that waited for an identical one in flight.
    pub places_coalesced: Counter,
    /// Places requests refused by the token bucket (answered OVER_QUERY_LIMIT
    /// without calling upstream).
    pub places_rate_limited: Counter,
    /// Outgoing links by neighbour.
    pub links: Mutex<BTreeMap<String, LinkStatus>>,
    /// From an IAMAT line's arrival to its answer being queued.
    pub iamat_latency: Histogram,
    /// From a WHATSAT line's arrival to its answer being queued.
    pub whatsat_latency: Histogram,
    requests: Family<RequestLabels, Counter>,
    updates: Family<UpdateLabels, Counter>,
    latency: Family<VerbLabels, Histogram>,
    restarts: Family<ActorLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let request =
            |verb, outcome| requests.get_or_create_owned(&RequestLabels { verb, outcome });
        let updates = Family::<UpdateLabels, Counter>::default();
        let update = |source, result| updates.get_or_create_owned(&UpdateLabels { source, result });
        let latency = Family::<VerbLabels, Histogram>::default();
        let timed = |verb| latency.get_or_create_owned(&VerbLabels { verb });
        let restarts = Family::<ActorLabels, Counter>::default();
        let restart = |actor| restarts.get_or_create_owned(&ActorLabels { actor });
        Metrics {
            restarts_store: restart("store"),
            restarts_places: restart("places"),
            restarts_peer: restart("peer"),
            topology_mixed: Gauge::default(),
            peer_one_sided: Counter::default(),
            peer_version_refused: Counter::default(),
            anti_entropy_rounds: Counter::default(),
            anti_entropy_repairs: Counter::default(),
            acks_unreplicated: Counter::default(),
            iamat_ok: request("IAMAT", "ok"),
            whatsat_ok: request("WHATSAT", "ok"),
            whatsat_unknown: request("WHATSAT", "unknown_client"),
            invalid_lines: request("invalid", "invalid"),
            updates_new_client: update("client", "new"),
            updates_stale_client: update("client", "stale"),
            updates_new_peer: update("peer", "new"),
            updates_stale_peer: update("peer", "stale"),
            updates_new_sync: update("sync", "new"),
            updates_stale_sync: update("sync", "stale"),
            iamat_latency: timed("IAMAT"),
            whatsat_latency: timed("WHATSAT"),
            overlong_lines: Counter::default(),
            connections_open: Gauge::default(),
            connections_total: Counter::default(),
            connections_refused: Counter::default(),
            http_refused: Counter::default(),
            records: Gauge::default(),
            updates_stale: Counter::default(),
            floods_sent: Counter::default(),
            sync_runs: Counter::default(),
            sync_records_sent: Counter::default(),
            peer_auth_failures: Counter::default(),
            peer_seal_failures: Counter::default(),
            records_refused: Counter::default(),
            records_expired: Counter::default(),
            peer_handshakes_dropped: Counter::default(),
            places: Family::default(),
            places_cache_hits: Counter::default(),
            places_upstream_calls: Counter::default(),
            places_coalesced: Counter::default(),
            places_rate_limited: Counter::default(),
            links: Mutex::default(),
            requests,
            updates,
            latency,
            restarts,
        }
    }
}

impl Metrics {
    /// Declares every metric above to `registry`: name, help and (through
    /// its Rust type) kind. Counters are named without `_total`; the encoder
    /// adds it. docs/operations.md lists them all; keep the two in step.
    pub fn register(&self, registry: &mut Registry) {
        self.register_clients(registry);
        self.register_updates(registry);
        self.register_peers(registry);
        self.register_places(registry);
        self.register_convergence(registry);
    }

    fn register_convergence(&self, r: &mut Registry) {
        let help = "1 while a neighbour was given other links than this server \
                    (updates are then flooded along every link)";
        r.register("herd_topology_mixed", help, self.topology_mixed.clone());
        let help = "Handshakes with a server that lists a link to this one that this \
                    server's settings do not";
        r.register("herd_peer_one_sided", help, self.peer_one_sided.clone());
        let help = "Peer connections refused for sharing no peer-protocol version";
        let refused = self.peer_version_refused.clone();
        r.register("herd_peer_version_refused", help, refused);
        let help = "Anti-entropy comparisons of digest roots on outgoing links";
        let rounds = self.anti_entropy_rounds.clone();
        r.register("herd_anti_entropy_rounds", help, rounds);
        let help = "Anti-entropy comparisons that found the stores differ and repaired them";
        let repairs = self.anti_entropy_repairs.clone();
        r.register("herd_anti_entropy_repairs", help, repairs);
        let help = "Actors restarted after they stopped or panicked, by actor";
        r.register("herd_actor_restarts", help, self.restarts.clone());
        let help = "IAMATs answered at limits.ack_timeout_ms without a neighbour's \
                    acknowledgement (herd.ack_after = \"neighbour\")";
        let unreplicated = self.acks_unreplicated.clone();
        r.register("herd_acks_unreplicated", help, unreplicated);
    }

    fn register_clients(&self, r: &mut Registry) {
        let help = "Client commands answered, by verb and outcome";
        r.register("herd_requests", help, self.requests.clone());
        let help =
            "Lines answered with '?' (bad commands, unknown WHATSAT clients, AT from clients)";
        r.register("herd_invalid_lines", help, self.invalid_lines.clone());
        let help = "Lines over the length limit (the connection was closed)";
        r.register("herd_overlong_lines", help, self.overlong_lines.clone());
        let help = "Time from a command's arrival to its answer being queued, by verb";
        r.register("herd_request_duration_seconds", help, self.latency.clone());
        let help = "Client connections open now";
        r.register("herd_connections_open", help, self.connections_open.clone());
        let help = "Client connections accepted";
        r.register("herd_connections", help, self.connections_total.clone());
        let help = "Client connections refused at the connection limit";
        r.register(
            "herd_connections_refused",
            help,
            self.connections_refused.clone(),
        );
        let help = "Client connections closed at once for speaking HTTP on the client port \
                    (a request line or a Host header); nothing they sent was taken as a command";
        r.register("herd_http_refused", help, self.http_refused.clone());
        r.register("herd_records", "Client records held", self.records.clone());
    }

    fn register_updates(&self, r: &mut Registry) {
        let help = "Updates offered to the store, by source (client, peer flood, sync) \
                    and result (new, stale)";
        r.register("herd_updates", help, self.updates.clone());
        let help = "Updates offered to the store that were not newer than the record held, \
                    from any source";
        r.register("herd_updates_stale", help, self.updates_stale.clone());
        let help = "Records sent to neighbours as floods";
        r.register("herd_floods_sent", help, self.floods_sent.clone());
        let help = "Floods received from neighbours (new or stale)";
        let received = Sum([
            self.updates_new_peer.clone(),
            self.updates_stale_peer.clone(),
        ]);
        r.register("herd_floods_received", help, received);
        let help = "Floods received that were not newer than the record held";
        r.register("herd_floods_stale", help, self.updates_stale_peer.clone());
        let help = "Catch-up syncs run on outgoing links";
        r.register("herd_sync_runs", help, self.sync_runs.clone());
        let help = "Records sent to neighbours by catch-up syncs";
        r.register(
            "herd_sync_records_sent",
            help,
            self.sync_records_sent.clone(),
        );
        let help = "Records received from neighbours by catch-up syncs (new or stale)";
        let received = Sum([
            self.updates_new_sync.clone(),
            self.updates_stale_sync.clone(),
        ]);
        r.register("herd_sync_records_received", help, received);
    }

    fn register_peers(&self, r: &mut Registry) {
        let help = "Incoming peer connections rejected at the handshake";
        r.register(
            "herd_peer_auth_failures",
            help,
            self.peer_auth_failures.clone(),
        );
        let help = "Sealed peer frames refused (tampered, replayed, reordered, cut off or \
                    under another key); each closed its link";
        r.register(
            "herd_peer_seal_failures",
            help,
            self.peer_seal_failures.clone(),
        );
        let help = "Records from neighbours, syncs or the journal refused for breaking a \
                    client rule";
        r.register("herd_records_refused", help, self.records_refused.clone());
        let help = "Records dropped, or refused on arrival, because limits.record_ttl_ms \
                    had passed since their origin received them";
        r.register("herd_records_expired", help, self.records_expired.clone());
        let help = "Unauthenticated peer connections dropped for a newer one: \
                    limits.max_peer_handshakes were in progress";
        let dropped = self.peer_handshakes_dropped.clone();
        r.register("herd_peer_handshakes_dropped", help, dropped);
    }

    fn register_places(&self, r: &mut Registry) {
        let help = "Places answers by provider and status";
        r.register("herd_places_answers", help, self.places.clone());
        let help = "Places answers served from the cache";
        r.register(
            "herd_places_cache_hits",
            help,
            self.places_cache_hits.clone(),
        );
        let help = "Requests made to the places provider";
        r.register(
            "herd_places_upstream_calls",
            help,
            self.places_upstream_calls.clone(),
        );
        let help = "Places requests that waited for an identical one in flight instead of \
                    calling the provider";
        r.register("herd_places_coalesced", help, self.places_coalesced.clone());
        let help = "Places requests refused by the rate limit (answered OVER_QUERY_LIMIT \
                    without calling the provider)";
        r.register(
            "herd_places_rate_limited",
            help,
            self.places_rate_limited.clone(),
        );
    }

    pub fn set_records(&self, count: usize) {
        self.records.set(i64::try_from(count).unwrap_or(i64::MAX));
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
        counter.inc();
        if !new {
            self.updates_stale.inc();
        }
    }

    /// Places answers given with `status` by `provider` so far.
    pub fn places_count(&self, provider: &str, status: &str) -> u64 {
        let labels = PlacesLabels {
            provider: provider.to_owned(),
            status: status.to_owned(),
        };
        self.places.get(&labels).map_or(0, |c| c.get())
    }

    /// One places answer: a label lookup, fine at the rate of WHATSATs (the
    /// per-update counters are held handles).
    pub fn count_places(&self, provider: &str, status: &str) {
        let labels = PlacesLabels {
            provider: provider.to_owned(),
            status: status.to_owned(),
        };
        self.places.get_or_create(&labels).inc();
    }

    pub fn get(counter: &Counter) -> u64 {
        counter.get()
    }

    pub fn bump(counter: &Counter) {
        counter.inc();
    }
}

/// A counter that is the sum of others, added up when scraped (so the hot
/// path bumps only the parts).
#[derive(Debug)]
struct Sum<const N: usize>([Counter; N]);

impl<const N: usize> TypedMetric for Sum<N> {
    const TYPE: MetricType = MetricType::Counter;
}

impl<const N: usize> EncodeMetric for Sum<N> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let total: u64 = self.0.iter().map(Counter::get).sum();
        encoder.encode_counter::<NoLabelSet, _, u64>(&total, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

pub use crate::link::LinkState;

/// Upper bounds of the latency buckets, in seconds: 50 µs to 10 s, roughly
/// 1-2.5-5 steps, fine where the performance targets are (under 1 ms).
pub const LATENCY_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram with the fixed [`LATENCY_BUCKETS`]; clones share it.
///
/// Each observation lands in exactly one bucket (the first whose bound it does
/// not exceed, or none when it exceeds them all); [`Histogram::snapshot`]
/// turns those into the cumulative counts Prometheus expects.
#[derive(Debug, Default, Clone)]
pub struct Histogram(Arc<Buckets>);

#[derive(Debug, Default)]
struct Buckets {
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
            self.0.buckets[i].fetch_add(1, Relaxed);
        }
        self.0.count.fetch_add(1, Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// Each bucket's own observations (not cumulative), the count and the sum.
    /// Read without a lock, so a reading taken during an observation may be
    /// off by that one observation, never more.
    fn read(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let own: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .zip(&self.0.buckets)
            .map(|(&bound, n)| (bound, n.load(Relaxed)))
            .collect();
        let bounded: u64 = own.iter().map(|(_, n)| n).sum();
        let count = self.0.count.load(Relaxed).max(bounded);
        let sum_seconds = self.0.sum_nanos.load(Relaxed) as f64 / 1e9;
        (own, count, sum_seconds)
    }

    /// Cumulative counts, as Prometheus shows them.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let (own, count, sum_seconds) = self.read();
        let mut running = 0;
        let buckets = own
            .into_iter()
            .map(|(bound, n)| {
                running += n;
                (bound, running)
            })
            .collect();
        HistogramSnapshot {
            buckets,
            count,
            sum_seconds,
        }
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (own, count, sum_seconds) = self.read();
        encoder.encode_histogram::<NoLabelSet>(sum_seconds, count, &own, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
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
