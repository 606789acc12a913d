//! `/metrics`: one server's metrics in the Prometheus text exposition format
//! (version 0.0.4), encoded by `prometheus-client`.
//!
//! The actors' metrics are declared in `herd_actors::metrics` (name, help and
//! type in `Metrics::register`); the ones only this listener knows (build,
//! uptime, links, its own requests and refusals) are declared here. Each
//! scrape puts them all in a registry whose constant `server` label comes
//! first on every series, so that one scrape config over all the admin ports
//! yields series that are told apart without relabelling.
//! Names and meanings are listed in docs/operations.md; keep the two in step.

use std::borrow::Cow;
use std::collections::BTreeMap;

use herd_actors::metrics::{LinkState, LinkStatus, Metrics};
use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabels {
    path: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NeighbourLabels {
    neighbour: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LinkStateLabels {
    neighbour: String,
    state: &'static str,
}

/// The admin listener's own counters: requests by path, refusals by reason.
/// Every path and reason is there from the start, at zero.
#[derive(Debug, Default)]
pub struct AdminCounters {
    requests: Family<PathLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
}

impl AdminCounters {
    pub fn new(paths: &[&'static str], reasons: &[&'static str]) -> AdminCounters {
        let counters = AdminCounters::default();
        for &path in paths {
            let _ = counters.requests.get_or_create(&PathLabels { path });
        }
        for &reason in reasons {
            let _ = counters.refused.get_or_create(&ReasonLabels { reason });
        }
        counters
    }

    pub fn count_request(&self, path: &'static str) {
        self.requests.get_or_create(&PathLabels { path }).inc();
    }

    pub fn count_refusal(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    fn register(&self, r: &mut Registry) {
        let help = "Requests to this admin listener, by path (this scrape included)";
        r.register("herd_admin_requests", help, self.requests.clone());
        let help = "Admin requests refused, by reason: host (not a name of this server), \
                    origin (not a page of this herd), token (missing or wrong), query (unreadable)";
        r.register("herd_admin_refused", help, self.refused.clone());
    }
}

/// The outgoing links of the configured `neighbours` (each has series even
/// before its first attempt), as they are now.
fn register_links(r: &mut Registry, links: &BTreeMap<String, LinkStatus>, neighbours: &[String]) {
    let up = Family::<NeighbourLabels, Gauge>::default();
    let states = Family::<LinkStateLabels, Gauge>::default();
    let changed = Family::<NeighbourLabels, Gauge>::default();
    for n in neighbours {
        let link = links.get(n);
        let current = link.map_or(LinkState::Down, |l| l.state);
        let neighbour = NeighbourLabels {
            neighbour: n.clone(),
        };
        up.get_or_create(&neighbour)
            .set(i64::from(current == LinkState::Up));
        for state in LinkState::ALL {
            let labels = LinkStateLabels {
                neighbour: n.clone(),
                state: state.label(),
            };
            states
                .get_or_create(&labels)
                .set(i64::from(current == state));
        }
        if let Some(link) = link {
            let since = i64::try_from(link.since).unwrap_or(i64::MAX);
            changed.get_or_create(&neighbour).set(since);
        }
    }
    let help = "1 when the outgoing link to the neighbour is up, else 0";
    r.register("herd_link_up", help, up);
    let help = "1 for the state the outgoing link to the neighbour is in, 0 for the others";
    r.register("herd_link_state", help, states);
    let help = "Unix time of the outgoing link's last change of state";
    r.register("herd_link_changed_seconds", help, changed);
}

/// The whole `/metrics` text of server `server`, whose configured neighbours
/// are `neighbours`.
pub fn render(
    server: &str,
    m: &Metrics,
    neighbours: &[String],
    uptime_seconds: f64,
    admin: &AdminCounters,
) -> String {
    let server_label = (Cow::Borrowed("server"), Cow::Owned(server.to_owned()));
    let mut r = Registry::with_labels(std::iter::once(server_label));
    let version = Info::new([("version", env!("CARGO_PKG_VERSION"))]);
    r.register(
        "herd_build",
        "Version of the running herd binary (always 1)",
        version,
    );
    let uptime = ConstGauge::new(uptime_seconds);
    r.register(
        "herd_uptime_seconds",
        "Seconds since this server started",
        uptime,
    );
    m.register(&mut r);
    register_links(&mut r, &m.links(), neighbours);
    admin.register(&mut r);
    let mut text = String::with_capacity(8192);
    // Writing to a String cannot fail.
    let _ = prometheus_text::encode(&mut text, &r);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_actors::source::SourceKind;
    use std::time::Duration;

    /// The value of the series `name{server="Riley"<labels>}`.
    fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
        let series = format!("{name}{{server=\"Riley\"{labels}}} ");
        let line = text.lines().find(|l| l.starts_with(&series))?;
        line[series.len()..].parse().ok()
    }

    /// The text of server Riley after a little of everything.
    fn scraped() -> String {
        let m = Metrics::default();
        m.count_update(SourceKind::Peer, false);
        m.count_update(SourceKind::Sync, false);
        m.count_update(SourceKind::Peer, true);
        Metrics::bump(&m.invalid_lines);
        Metrics::bump(&m.places_coalesced);
        Metrics::bump(&m.places_rate_limited);
        Metrics::bump(&m.places_rate_limited);
        m.count_places("google", "OVER_QUERY_LIMIT");
        m.iamat_latency.observe(Duration::from_micros(300));
        m.set_link("Jaquez", LinkState::Syncing);
        let admin = AdminCounters::new(&["/", "/metrics"], &["host"]);
        admin.count_request("/metrics");
        let neighbours = ["Jaquez".to_owned(), "Juzang".to_owned()];
        render("Riley", &m, &neighbours, 1.5, &admin)
    }

    #[test]
    fn every_family_is_typed_and_labelled_with_the_server_first() {
        let text = scraped();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("herd_"), "{line}");
            assert!(line.contains("{server=\"Riley\""), "{line}");
        }
        assert!(
            text.contains("# TYPE herd_requests_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE herd_records gauge\n"), "{text}");
        assert!(text.contains("# TYPE herd_request_duration_seconds histogram\n"));
        assert!(text.contains("# HELP herd_updates_stale_total Updates offered"));
        assert!(!text.contains("# EOF"), "{text}");
        let version = format!(",version=\"{}\"", env!("CARGO_PKG_VERSION"));
        assert_eq!(sample(&text, "herd_build_info", &version), Some(1.0));
        assert_eq!(sample(&text, "herd_uptime_seconds", ""), Some(1.5));
    }

    #[test]
    fn counters_and_the_sums_made_at_scrape_time() {
        let text = scraped();
        let at = |name: &str, labels: &str| sample(&text, name, labels);
        let invalid = ",verb=\"invalid\",outcome=\"invalid\"";
        assert_eq!(at("herd_requests_total", invalid), Some(1.0));
        assert_eq!(at("herd_invalid_lines_total", ""), Some(1.0));
        assert_eq!(at("herd_updates_stale_total", ""), Some(2.0));
        let stale = ",source=\"peer\",result=\"stale\"";
        assert_eq!(at("herd_updates_total", stale), Some(1.0));
        assert_eq!(at("herd_floods_received_total", ""), Some(2.0));
        assert_eq!(at("herd_floods_stale_total", ""), Some(1.0));
        assert_eq!(at("herd_sync_records_received_total", ""), Some(1.0));
        assert_eq!(at("herd_places_coalesced_total", ""), Some(1.0));
        assert_eq!(at("herd_places_rate_limited_total", ""), Some(2.0));
        let limited = ",provider=\"google\",status=\"OVER_QUERY_LIMIT\"";
        assert_eq!(at("herd_places_answers_total", limited), Some(1.0));
        assert_eq!(
            at("herd_admin_requests_total", ",path=\"/metrics\""),
            Some(1.0)
        );
        assert_eq!(at("herd_admin_requests_total", ",path=\"/\""), Some(0.0));
        assert_eq!(
            at("herd_admin_refused_total", ",reason=\"host\""),
            Some(0.0)
        );
    }

    #[test]
    fn histograms_are_cumulative_and_links_cover_every_neighbour() {
        let text = scraped();
        let at = |name: &str, labels: &str| sample(&text, name, labels);
        let bucket = |le: &str| {
            at(
                "herd_request_duration_seconds_bucket",
                &format!(",verb=\"IAMAT\",le=\"{le}\""),
            )
        };
        assert_eq!(bucket("0.00025"), Some(0.0));
        assert_eq!(bucket("0.0005"), Some(1.0));
        assert_eq!(bucket("+Inf"), Some(1.0));
        let whatsat = ",verb=\"WHATSAT\"";
        assert_eq!(
            at("herd_request_duration_seconds_count", whatsat),
            Some(0.0)
        );
        let syncing = ",neighbour=\"Jaquez\",state=\"syncing\"";
        assert_eq!(at("herd_link_state", syncing), Some(1.0));
        assert_eq!(at("herd_link_up", ",neighbour=\"Jaquez\""), Some(0.0));
        let down = ",neighbour=\"Juzang\",state=\"down\"";
        assert_eq!(at("herd_link_state", down), Some(1.0));
        assert_eq!(
            at("herd_link_changed_seconds", ",neighbour=\"Juzang\""),
            None
        );
        assert!(at("herd_link_changed_seconds", ",neighbour=\"Jaquez\"").is_some());
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render(
            "a\"b\\c",
            &Metrics::default(),
            &[],
            0.0,
            &AdminCounters::default(),
        );
        assert!(
            text.contains("herd_records{server=\"a\\\"b\\\\c\"} 0\n"),
            "{text}"
        );
    }
}
