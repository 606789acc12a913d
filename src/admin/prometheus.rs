//! `/metrics`: one server's [`Metrics`] in the Prometheus text exposition
//! format (version 0.0.4), written by hand: a handful of `# HELP`/`# TYPE`
//! headers and `name{label="value"} number` lines need no crate.
//!
//! Every family carries a `server` label so that one scrape config over all
//! the admin ports yields series that are told apart without relabelling.
//! Names and meanings are listed in docs/operations.md; keep the two in step.

use std::fmt::Write;

use herd_actors::metrics::{Histogram, LinkState, Metrics};

/// Writes a label value with the escapes the format asks for.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A text under construction: families, then their samples.
struct Out {
    text: String,
    server: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One sample; `labels` are extra `(name, value)` pairs after `server`.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = write!(self.text, "{name}{{server=\"{}\"", self.server);
        for (label, v) in labels {
            let _ = write!(self.text, ",{label}=\"{}\"", escape(v));
        }
        let _ = writeln!(self.text, "}} {value}");
    }

    /// A family with a single sample and no extra labels.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The `_bucket`, `_sum` and `_count` lines of one histogram.
    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &Histogram) {
        let snapshot = histogram.snapshot();
        let bucket = format!("{name}_bucket");
        for (bound, cumulative) in &snapshot.buckets {
            let le = format!("{bound}");
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative);
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket, &with_le, snapshot.count);
        self.sample(&format!("{name}_sum"), labels, snapshot.sum_seconds);
        self.sample(&format!("{name}_count"), labels, snapshot.count);
    }
}

/// The whole `/metrics` text of server `server`, whose configured neighbours
/// are `neighbours` (each gets link series even before its first attempt).
/// `admin_requests` are the admin listener's own requests by path,
/// `admin_refused` those it refused, by reason.
pub fn render(
    server: &str,
    m: &Metrics,
    neighbours: &[String],
    uptime_seconds: f64,
    admin_requests: &[(&str, u64)],
    admin_refused: &[(&str, u64)],
) -> String {
    let get = Metrics::get;
    let mut out = Out {
        text: String::with_capacity(8192),
        server: escape(server),
    };

    out.family(
        "herd_build_info",
        "gauge",
        "Version of the running herd binary (always 1).",
    );
    out.sample(
        "herd_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    out.single(
        "herd_uptime_seconds",
        "gauge",
        "Seconds since this server started.",
        format!("{uptime_seconds:.3}"),
    );

    out.family(
        "herd_requests_total",
        "counter",
        "Client commands answered, by verb and outcome.",
    );
    out.sample(
        "herd_requests_total",
        &[("verb", "IAMAT"), ("outcome", "ok")],
        get(&m.iamat_ok),
    );
    out.sample(
        "herd_requests_total",
        &[("verb", "WHATSAT"), ("outcome", "ok")],
        get(&m.whatsat_ok),
    );
    out.sample(
        "herd_requests_total",
        &[("verb", "WHATSAT"), ("outcome", "unknown_client")],
        get(&m.whatsat_unknown),
    );
    out.sample(
        "herd_requests_total",
        &[("verb", "invalid"), ("outcome", "invalid")],
        get(&m.invalid_lines),
    );
    out.single(
        "herd_invalid_lines_total",
        "counter",
        "Lines answered with '?' (bad commands, unknown WHATSAT clients, AT from clients).",
        get(&m.invalid_lines),
    );
    out.single(
        "herd_overlong_lines_total",
        "counter",
        "Lines over the length limit (the connection was closed).",
        get(&m.overlong_lines),
    );

    out.family(
        "herd_request_duration_seconds",
        "histogram",
        "Time from a command's arrival to its answer being queued, by verb.",
    );
    out.histogram(
        "herd_request_duration_seconds",
        &[("verb", "IAMAT")],
        &m.iamat_latency,
    );
    out.histogram(
        "herd_request_duration_seconds",
        &[("verb", "WHATSAT")],
        &m.whatsat_latency,
    );

    out.single(
        "herd_connections_open",
        "gauge",
        "Client connections open now.",
        get(&m.connections_open),
    );
    out.single(
        "herd_connections_total",
        "counter",
        "Client connections accepted.",
        get(&m.connections_total),
    );
    out.single(
        "herd_connections_refused_total",
        "counter",
        "Client connections refused at the connection limit.",
        get(&m.connections_refused),
    );

    out.single(
        "herd_records",
        "gauge",
        "Client records held.",
        get(&m.records),
    );

    out.family(
        "herd_updates_total",
        "counter",
        "Updates offered to the store, by source (client, peer flood, sync) and result (new, stale).",
    );
    for (source, new, stale) in [
        ("client", &m.updates_new_client, &m.updates_stale_client),
        ("peer", &m.updates_new_peer, &m.updates_stale_peer),
        ("sync", &m.updates_new_sync, &m.updates_stale_sync),
    ] {
        out.sample(
            "herd_updates_total",
            &[("source", source), ("result", "new")],
            get(new),
        );
        out.sample(
            "herd_updates_total",
            &[("source", source), ("result", "stale")],
            get(stale),
        );
    }
    out.single(
        "herd_floods_sent_total",
        "counter",
        "Records sent to neighbours as floods.",
        get(&m.floods_sent),
    );
    out.single(
        "herd_floods_received_total",
        "counter",
        "Floods received from neighbours (new or stale).",
        get(&m.updates_new_peer) + get(&m.updates_stale_peer),
    );
    out.single(
        "herd_floods_stale_total",
        "counter",
        "Floods received that were not newer than the record held.",
        get(&m.updates_stale_peer),
    );
    out.single(
        "herd_sync_runs_total",
        "counter",
        "Catch-up syncs run on outgoing links.",
        get(&m.sync_runs),
    );
    out.single(
        "herd_sync_records_sent_total",
        "counter",
        "Records sent to neighbours by catch-up syncs.",
        get(&m.sync_records_sent),
    );
    out.single(
        "herd_sync_records_received_total",
        "counter",
        "Records received from neighbours by catch-up syncs (new or stale).",
        get(&m.updates_new_sync) + get(&m.updates_stale_sync),
    );
    out.single(
        "herd_peer_auth_failures_total",
        "counter",
        "Incoming peer connections rejected at the handshake.",
        get(&m.peer_auth_failures),
    );
    out.single(
        "herd_peer_seal_failures_total",
        "counter",
        "Sealed peer frames refused (tampered, replayed, reordered, cut off or under another key); each closed its link.",
        get(&m.peer_seal_failures),
    );
    out.single(
        "herd_records_refused_total",
        "counter",
        "Records from neighbours, syncs or the journal refused for breaking a client rule.",
        get(&m.records_refused),
    );
    out.single(
        "herd_peer_handshakes_dropped_total",
        "counter",
        "Unauthenticated peer connections dropped for a newer one: limits.max_peer_handshakes were in progress.",
        get(&m.peer_handshakes_dropped),
    );

    let links = m.links();
    out.family(
        "herd_link_up",
        "gauge",
        "1 when the outgoing link to the neighbour is up, else 0.",
    );
    for n in neighbours {
        let up = links.get(n).is_some_and(|l| l.state == LinkState::Up);
        out.sample("herd_link_up", &[("neighbour", n)], u8::from(up));
    }
    out.family(
        "herd_link_state",
        "gauge",
        "1 for the state the outgoing link to the neighbour is in, 0 for the others.",
    );
    for n in neighbours {
        let state = links.get(n).map_or(LinkState::Down, |l| l.state);
        for s in LinkState::ALL {
            out.sample(
                "herd_link_state",
                &[("neighbour", n), ("state", s.label())],
                u8::from(state == s),
            );
        }
    }
    out.family(
        "herd_link_changed_seconds",
        "gauge",
        "Unix time of the outgoing link's last change of state.",
    );
    for n in neighbours {
        if let Some(link) = links.get(n) {
            out.sample("herd_link_changed_seconds", &[("neighbour", n)], link.since);
        }
    }

    out.family(
        "herd_places_answers_total",
        "counter",
        "Places answers by provider and status.",
    );
    for ((provider, status), count) in m.places_counts() {
        out.sample(
            "herd_places_answers_total",
            &[("provider", &provider), ("status", &status)],
            count,
        );
    }
    out.single(
        "herd_places_cache_hits_total",
        "counter",
        "Places answers served from the cache.",
        get(&m.places_cache_hits),
    );
    out.single(
        "herd_places_upstream_calls_total",
        "counter",
        "Requests made to the places provider.",
        get(&m.places_upstream_calls),
    );
    out.family(
        "herd_admin_requests_total",
        "counter",
        "Requests to this admin listener, by path (this scrape included).",
    );
    for (path, count) in admin_requests {
        out.sample("herd_admin_requests_total", &[("path", path)], count);
    }
    out.family(
        "herd_admin_refused_total",
        "counter",
        "Admin requests refused, by reason: host (not a name of this server), \
         origin (not a page of this herd), token (missing or wrong), query (unreadable).",
    );
    for (reason, count) in admin_refused {
        out.sample("herd_admin_refused_total", &[("reason", reason)], count);
    }
    out.text
}
