//! `herdctl status`: the live page's picture in the terminal. It asks one
//! server for the herd (`/herd`), then every server for its `/status`, and
//! prints the servers (up or down, records, uptime), then each link once with
//! its state as both ends report it:
//!
//! ```text
//! server    state  records  uptime  version
//! Riley     up          12     93s  0.1.0
//! Jaquez    down
//! links
//! Riley -- Jaquez    down     (Riley: connecting since 12:00:01Z; Jaquez: not answering)
//! Riley -- Juzang    up
//! 4/5 servers up, 4/6 links up, 12 records at most
//! ```
//!
//! A link is "up" when both ends say their outgoing link is up, "partial"
//! when only one does, "down" otherwise, the same rule as the page.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Deserialize;

use super::{http, CtlError};

#[derive(Debug, Deserialize)]
pub(super) struct HerdView {
    pub(super) servers: Vec<MemberView>,
}

#[derive(Debug, Deserialize)]
pub(super) struct MemberView {
    pub(super) name: String,
    pub(super) admin_url: String,
    neighbours: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct StatusView {
    records: u64,
    uptime_seconds: u64,
    version: String,
    #[serde(default)]
    shutting_down: bool,
    neighbours: Vec<LinkView>,
    /// Absent from servers older than the topology digest.
    #[serde(default)]
    topology: Option<TopologyView>,
}

#[derive(Debug, Deserialize)]
struct TopologyView {
    digest: String,
    mixed: bool,
}

#[derive(Debug, Deserialize)]
struct LinkView {
    name: String,
    state: String,
    since: u64,
}

/// Prints the herd as seen from the server whose admin listener is at
/// `address`, asking with the admin `token` (the same for the herd).
pub fn run(address: &str, token: &str) -> Result<(), CtlError> {
    print!("{}", render(address, Some(token))?);
    Ok(())
}

/// What one server's status says, by server name; `None` for a server that
/// did not answer.
type Statuses<'a> = BTreeMap<&'a str, Option<StatusView>>;

/// The whole picture as text.
pub fn render(address: &str, token: Option<&str>) -> Result<String, CtlError> {
    let herd = fetch_herd(address, token)?;
    let statuses = fetch_statuses(&herd, token);
    let width = name_width(&herd);
    let mut out = String::new();
    let (up, most) = write_servers(&mut out, &herd, &statuses, width);
    let _ = writeln!(out, "links");
    let (links_up, links) = write_links(&mut out, &herd, &statuses, width);
    let _ = writeln!(
        out,
        "{up}/{} servers up, {links_up}/{links} links up, {most} records at most",
        herd.servers.len()
    );
    write_topology(&mut out, &statuses);
    Ok(out)
}

/// Whether the servers agree on the links (SPEC §4): when they do not, the
/// herd floods every update, and the servers of each topology are named.
fn write_topology(out: &mut String, statuses: &Statuses) {
    let mut by_digest: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut mixed = false;
    for (name, status) in statuses {
        if let Some(topology) = status.as_ref().and_then(|s| s.topology.as_ref()) {
            by_digest.entry(&topology.digest).or_default().push(name);
            mixed |= topology.mixed;
        }
    }
    if by_digest.len() <= 1 && !mixed {
        let _ = writeln!(out, "topology: every server up agrees on the links");
        return;
    }
    let _ = writeln!(
        out,
        "topology: MIXED, servers were given different links; updates are flooded until they agree"
    );
    for (digest, names) in by_digest {
        let _ = writeln!(out, "  {digest}  {}", names.join(", "));
    }
}

/// The herd as the server at `address` describes it (`/herd`).
pub(super) fn fetch_herd(address: &str, token: Option<&str>) -> Result<HerdView, CtlError> {
    let herd_answer = http::get_ok_with_token(address, "/herd", token)?;
    serde_json::from_slice(&herd_answer.body).map_err(|source| CtlError::NotHerd {
        address: address.to_owned(),
        source,
    })
}

/// Every server's `/status`, asked of each server itself.
fn fetch_statuses<'a>(herd: &'a HerdView, token: Option<&str>) -> Statuses<'a> {
    herd.servers
        .iter()
        .map(|m| {
            let host = m.admin_url.trim_start_matches("http://");
            let status = http::get_ok_with_token(host, "/status", token)
                .ok()
                .and_then(|r| serde_json::from_slice(&r.body).ok());
            (m.name.as_str(), status)
        })
        .collect()
}

/// The width of the server column: the longest name, at least "server".
fn name_width(herd: &HerdView) -> usize {
    herd.servers
        .iter()
        .map(|m| m.name.len())
        .max()
        .unwrap_or(6)
        .max(6)
}

/// The servers table; returns how many servers are up and the most records
/// any of them holds.
fn write_servers(
    out: &mut String,
    herd: &HerdView,
    statuses: &Statuses,
    width: usize,
) -> (usize, u64) {
    let _ = writeln!(
        out,
        "{:width$}  state  records    uptime  version",
        "server"
    );
    let mut up = 0;
    let mut most = 0;
    for m in &herd.servers {
        match &statuses[m.name.as_str()] {
            Some(s) => {
                up += 1;
                most = most.max(s.records);
                let state = if s.shutting_down { "stop" } else { "up" };
                let _ = writeln!(
                    out,
                    "{:width$}  {state:5}  {:7}  {:>8}  {}",
                    m.name,
                    s.records,
                    format!("{}s", s.uptime_seconds),
                    s.version
                );
            }
            None => {
                let _ = writeln!(out, "{:width$}  down", m.name);
            }
        }
    }
    (up, most)
}

/// Every link of the herd once, its two ends in name order, in the order the
/// herd lists servers and their neighbours.
fn unique_links(herd: &HerdView) -> Vec<(&str, &str)> {
    let mut seen = std::collections::BTreeSet::new();
    let mut links = Vec::new();
    for m in &herd.servers {
        for n in &m.neighbours {
            let (a, b) = if m.name <= *n {
                (m.name.as_str(), n.as_str())
            } else {
                (n.as_str(), m.name.as_str())
            };
            if seen.insert((a, b)) {
                links.push((a, b));
            }
        }
    }
    links
}

/// The outgoing link from `from` to `to` as `from` reports it, if `from`
/// answered and lists it.
fn link_side<'a>(statuses: &'a Statuses, from: &str, to: &str) -> Option<&'a LinkView> {
    statuses
        .get(from)?
        .as_ref()?
        .neighbours
        .iter()
        .find(|l| l.name == to)
}

/// "up" when both ends say their outgoing link is up, "partial" when only
/// one does, "down" otherwise.
fn link_state(ab: Option<&LinkView>, ba: Option<&LinkView>) -> &'static str {
    let is_up = |l: Option<&LinkView>| l.is_some_and(|l| l.state == "up");
    match (is_up(ab), is_up(ba)) {
        (true, true) => "up",
        (true, false) | (false, true) => "partial",
        _ => "down",
    }
}

/// The links table; returns how many links are up and how many there are.
fn write_links(
    out: &mut String,
    herd: &HerdView,
    statuses: &Statuses,
    width: usize,
) -> (usize, usize) {
    let links = unique_links(herd);
    let mut links_up = 0;
    for &(a, b) in &links {
        let (ab, ba) = (link_side(statuses, a, b), link_side(statuses, b, a));
        let state = link_state(ab, ba);
        let label = format!("{a} -- {b}");
        if state == "up" {
            links_up += 1;
            let _ = writeln!(out, "{label:lw$}  up", lw = 2 * width + 4);
        } else {
            let _ = writeln!(
                out,
                "{label:lw$}  {state:7}  ({}; {})",
                describe_side(a, ab),
                describe_side(b, ba),
                lw = 2 * width + 4
            );
        }
    }
    (links_up, links.len())
}

/// One end of a link that is not up: its state and since when, or that the
/// server did not answer.
fn describe_side(who: &str, l: Option<&LinkView>) -> String {
    match l {
        Some(l) => format!("{who}: {} since {}", l.state, clock(l.since)),
        None => format!("{who}: not answering"),
    }
}

/// Unix seconds as a UTC time of day, `HH:MM:SSZ`.
fn clock(unix: u64) -> String {
    let day = unix % 86_400;
    format!("{:02}:{:02}:{:02}Z", day / 3600, day % 3600 / 60, day % 60)
}

#[cfg(test)]
mod tests {
    use super::clock;

    #[test]
    fn clock_is_the_utc_time_of_day() {
        assert_eq!(clock(0), "00:00:00Z");
        assert_eq!(clock(1_700_000_000), "22:13:20Z");
    }
}
