//! `herdctl trace CLIENT`: the path the client's current record took through
//! the herd. It asks one server for the herd (`/herd`), then every server for
//! its `/trace?client=CLIENT` (when it took the record it holds, and from
//! whom), and prints the tree from the origin down, each hop with its delay:
//!
//! ```text
//! kiwi.cs.ucla.edu: AT Riley +0.263873386 kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503
//! Riley from a client at 1764881701.123456789
//!   Jaquez from Riley +0.412 ms
//!     Bernard from Jaquez +0.380 ms (+0.792 ms from the origin)
//!   Juzang from Riley +0.401 ms
//!     Campbell from Juzang +0.290 ms (+0.691 ms from the origin)
//! ```
//!
//! A delay is the receiver's clock minus the sender's at the moment each
//! store took the record: exact on one machine, off by the clocks' skew
//! between machines. Servers that hold another record, none, remember no
//! arrival (an update older than the last 65,536 they took, or one loaded
//! from their journal) or do not answer are listed after the tree.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Deserialize;

use super::{http, status, CtlError};

/// One server's `/trace` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct TraceView {
    pub at_line: Option<String>,
    pub received_ns: Option<u64>,
    /// `client`, `peer` or `sync`.
    pub via: Option<String>,
    pub from: Option<String>,
}

/// Prints the path of `client`'s record through the herd seen from the
/// server whose admin listener is at `address`, asking with the admin
/// `token` (the same for the herd).
pub fn run(address: &str, token: &str, client: &str) -> Result<(), CtlError> {
    let token = Some(token);
    let herd = status::fetch_herd(address, token)?;
    let path = format!("/trace?client={}", percent_encoded(client));
    let answers: Vec<(String, Option<TraceView>)> = herd
        .servers
        .iter()
        .map(|m| {
            let host = m.admin_url.trim_start_matches("http://");
            let view = http::get_ok_with_token(host, &path, token)
                .ok()
                .and_then(|r| serde_json::from_slice(&r.body).ok());
            (m.name.clone(), view)
        })
        .collect();
    print!("{}", render(client, &answers));
    Ok(())
}

/// `client` for a URL query: unreserved bytes as they are, all others `%XX`.
fn percent_encoded(client: &str) -> String {
    let mut out = String::with_capacity(client.len());
    for b in client.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The tree as text, from every server's answer (`None`: did not answer).
pub fn render(client: &str, answers: &[(String, Option<TraceView>)]) -> String {
    let mut out = String::new();
    // The record most servers hold is the one traced.
    let mut held: BTreeMap<&str, usize> = BTreeMap::new();
    for line in answers
        .iter()
        .filter_map(|(_, v)| v.as_ref()?.at_line.as_deref())
    {
        *held.entry(line).or_default() += 1;
    }
    let Some((line, _)) = held.iter().max_by_key(|(_, n)| **n) else {
        let _ = writeln!(out, "{client}: no server holds a record of it");
        write_others(&mut out, answers, None, &[]);
        return out;
    };
    let _ = writeln!(out, "{client}: {line}");
    let on_line: Vec<(&str, &TraceView)> = answers
        .iter()
        .filter_map(|(name, v)| Some((name.as_str(), v.as_ref()?)))
        .filter(|(_, v)| v.at_line.as_deref() == Some(*line) && v.received_ns.is_some())
        .collect();
    let mut shown = Vec::new();
    for (name, view) in on_line
        .iter()
        .filter(|(_, v)| v.via.as_deref() == Some("client"))
    {
        let at = view.received_ns.unwrap_or(0);
        let _ = writeln!(
            out,
            "{name} from a client at {}.{:09}",
            at / 1_000_000_000,
            at % 1_000_000_000
        );
        shown.push(*name);
        write_children(&mut out, &on_line, name, at, at, 1, &mut shown);
    }
    write_others(&mut out, answers, Some(line), &shown);
    out
}

/// The servers that took the record from `parent` (at `parent_at`), each
/// with its delay, and theirs below them.
fn write_children<'a>(
    out: &mut String,
    on_line: &[(&'a str, &TraceView)],
    parent: &str,
    parent_at: u64,
    origin_at: u64,
    depth: usize,
    shown: &mut Vec<&'a str>,
) {
    for (name, view) in on_line {
        if view.from.as_deref() != Some(parent) || shown.contains(name) {
            continue;
        }
        let at = view.received_ns.unwrap_or(parent_at);
        let ms = |from: u64| (i128::from(at) - i128::from(from)) as f64 / 1e6;
        let sync = if view.via.as_deref() == Some("sync") {
            " (sync)"
        } else {
            ""
        };
        let _ = write!(
            out,
            "{:indent$}{name} from {parent}{sync} {:+.3} ms",
            "",
            ms(parent_at),
            indent = 2 * depth
        );
        if depth > 1 {
            let _ = write!(out, " ({:+.3} ms from the origin)", ms(origin_at));
        }
        out.push('\n');
        shown.push(name);
        write_children(out, on_line, name, at, origin_at, depth + 1, shown);
    }
}

/// Every server not in the tree, and why.
fn write_others(
    out: &mut String,
    answers: &[(String, Option<TraceView>)],
    line: Option<&str>,
    shown: &[&str],
) {
    for (name, view) in answers {
        if shown.contains(&name.as_str()) {
            continue;
        }
        let why = match view {
            None => "did not answer".to_string(),
            Some(v) if v.at_line.is_none() => "does not know the client".to_string(),
            Some(v) if v.at_line.as_deref() != line => {
                format!(
                    "holds another record: {}",
                    v.at_line.as_deref().unwrap_or("")
                )
            }
            Some(v) if v.received_ns.is_none() => {
                "holds it, arrival not remembered (older, or from its journal)".to_string()
            }
            Some(v) => format!(
                "holds it, from {} (not on the path from the origin)",
                v.from.as_deref().unwrap_or("?")
            ),
        };
        let _ = writeln!(out, "{name}: {why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(line: &str, at: u64, via: &str, from: Option<&str>) -> Option<TraceView> {
        Some(TraceView {
            at_line: Some(line.into()),
            received_ns: Some(at),
            via: Some(via.into()),
            from: from.map(str::to_string),
        })
    }

    #[test]
    fn the_path_is_printed_from_the_origin_down_with_each_hops_delay() {
        let l = "AT Riley +0.1 kiwi +1+1 1.0";
        let answers = vec![
            ("Riley".to_string(), view(l, 1_000_000_000, "client", None)),
            (
                "Jaquez".to_string(),
                view(l, 1_000_400_000, "peer", Some("Riley")),
            ),
            (
                "Bernard".to_string(),
                view(l, 1_000_900_000, "sync", Some("Jaquez")),
            ),
            (
                "Juzang".to_string(),
                Some(TraceView {
                    at_line: None,
                    received_ns: None,
                    via: None,
                    from: None,
                }),
            ),
            ("Campbell".to_string(), None),
        ];
        let text = render("kiwi", &answers);
        assert_eq!(
            text,
            "kiwi: AT Riley +0.1 kiwi +1+1 1.0\n\
             Riley from a client at 1.000000000\n\
             \x20 Jaquez from Riley +0.400 ms\n\
             \x20   Bernard from Jaquez (sync) +0.500 ms (+0.900 ms from the origin)\n\
             Juzang: does not know the client\n\
             Campbell: did not answer\n"
        );
        assert_eq!(percent_encoded("a b/%"), "a%20b%2F%25");
    }
}
