//! Who may read the admin listener (SPEC §7, "a web page in a browser
//! reading the admin port"): every request passes three checks before any
//! handler sees it.
//!
//! 1. **Host.** The `Host` header must name this server: `localhost`, a
//!    loopback address, the address the request arrived on, or one of the
//!    names of its [`AdminPlan`] (the server's `host`, its `admin_listen`,
//!    `admin.allowed_hosts`). A DNS-rebinding page sends its own name, so it
//!    is refused with `421 Misdirected Request`. The port is not compared: a
//!    port mapping (docker `-p 8080:13665`) changes it, and a rebinding page
//!    cannot change the name.
//! 2. **Origin.** A request that carries `Origin` (a browser's cross-origin
//!    fetch) must come from a page of this herd: an allowed name (as above)
//!    at one of the herd's admin ports, or at the port the request was sent
//!    to. Others get `403`. Allowed origins are echoed in
//!    `Access-Control-Allow-Origin` (never `*`), with `Vary: Origin`, and
//!    their preflights (`OPTIONS`, for the `Authorization` header) answered.
//! 3. **Token.** Every server has one (made on first start when none is
//!    set). Every path but the page (`/`, static, no data), `/healthz` (for
//!    orchestrators) and `/metrics` (counts only, no client data, for
//!    scrapers) wants `Authorization: Bearer <token>`, compared in constant
//!    time; without it `401` with `WWW-Authenticate: Bearer`.
//!
//! Each refusal is counted by [`Refusal`] (`herd_admin_refused_total`) and
//! logged by the caller.

use std::net::IpAddr;

use subtle::ConstantTimeEq;

use crate::settings::AdminPlan;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `Host` missing, malformed or not a name of this server.
    Host,
    /// `Origin` not a page of this herd.
    Origin,
    /// Token missing or wrong.
    Token,
    /// A query the handler cannot read (counted by the handler).
    Query,
}

impl Refusal {
    /// Every reason (each has its counter from the start).
    pub const ALL: [Refusal; 4] = [
        Refusal::Host,
        Refusal::Origin,
        Refusal::Token,
        Refusal::Query,
    ];

    /// The `reason` label of `herd_admin_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Host => "host",
            Refusal::Origin => "origin",
            Refusal::Token => "token",
            Refusal::Query => "query",
        }
    }
}

/// The paths anyone who reaches the listener by a right name may read:
/// none holds a client's position (docs/security.md, "The admin token").
const OPEN_PATHS: [&str; 3] = ["/", "/healthz", "/metrics"];

/// The checks of one admin listener.
#[derive(Debug, Clone)]
pub struct Guard {
    names: Vec<String>,
    herd_ports: Vec<u16>,
    token: Vec<u8>,
}

/// A `host[:port]` as sent in `Host` or inside an `Origin`.
#[derive(Debug, PartialEq, Eq)]
struct Authority {
    /// Lower-case, without brackets or a trailing dot.
    name: String,
    port: Option<u16>,
}

/// Parses `host`, `host:port`, `[v6]` or `[v6]:port`; anything else
/// (spaces, control bytes, an unbracketed IPv6, a bad port, a user part)
/// is `None`.
fn authority(text: &str) -> Option<Authority> {
    let (name, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']')?;
            inside.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':')?),
            };
            (inside, port)
        }
        None => {
            let (name, port) = match text.split_once(':') {
                Some((name, port)) => (name, Some(port)),
                None => (text, None),
            };
            // A registered name or an IPv4 address.
            let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._".contains(&b);
            if !name.bytes().all(allowed) {
                return None;
            }
            (name, port)
        }
    };
    let port = match port {
        None => None,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(digits.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    (!name.is_empty()).then_some(Authority { name, port })
}

/// An IP address compared across IPv4 and IPv4-mapped IPv6.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl Guard {
    pub fn new(plan: &AdminPlan) -> Guard {
        Guard {
            names: plan.names.clone(),
            herd_ports: plan.herd_ports.clone(),
            token: plan.token.as_bytes().to_vec(),
        }
    }

    /// Whether `name` (parsed from a Host or Origin) names this server, for
    /// a request that arrived on `local`.
    fn is_mine(&self, name: &str, local: Option<IpAddr>) -> bool {
        if name == "localhost" {
            return true;
        }
        if let Ok(ip) = name.parse::<IpAddr>() {
            let ip = canonical(ip);
            return ip.is_loopback()
                || local.is_some_and(|l| canonical(l) == ip)
                || self
                    .names
                    .iter()
                    .any(|n| n.parse::<IpAddr>().is_ok_and(|n| canonical(n) == ip));
        }
        self.names.iter().any(|n| n == name)
    }

    /// Check 1: the `Host` header (raw bytes, `None` when absent).
    pub fn check_host(&self, host: Option<&[u8]>, local: Option<IpAddr>) -> Result<(), Refusal> {
        let host = host
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(authority)
            .ok_or(Refusal::Host)?;
        if self.is_mine(&host.name, local) {
            Ok(())
        } else {
            Err(Refusal::Host)
        }
    }

    /// Check 2: an `Origin` header, for a request whose `Host` carried
    /// `host_port`. Returns the origin to echo.
    pub fn check_origin<'a>(
        &self,
        origin: &'a [u8],
        host_port: Option<u16>,
        local: Option<IpAddr>,
    ) -> Result<&'a str, Refusal> {
        let text = std::str::from_utf8(origin).map_err(|_| Refusal::Origin)?;
        let rest = text
            .strip_prefix("http://")
            .or_else(|| text.strip_prefix("https://"))
            .ok_or(Refusal::Origin)?;
        let page = authority(rest).ok_or(Refusal::Origin)?;
        let port_ok =
            page.port == host_port || page.port.is_some_and(|p| self.herd_ports.contains(&p));
        if port_ok && self.is_mine(&page.name, local) {
            Ok(text)
        } else {
            Err(Refusal::Origin)
        }
    }

    /// Check 3: the `Authorization` header for `path`.
    pub fn check_token(&self, path: &str, authorization: Option<&[u8]>) -> Result<(), Refusal> {
        if OPEN_PATHS.contains(&path) {
            return Ok(());
        }
        let presented = authorization
            .and_then(|a| {
                let (scheme, value) = a.split_at_checked(7)?;
                scheme.eq_ignore_ascii_case(b"Bearer ").then_some(value)
            })
            .map(<[u8]>::trim_ascii)
            .ok_or(Refusal::Token)?;
        if bool::from(presented.ct_eq(self.token.as_slice())) {
            Ok(())
        } else {
            Err(Refusal::Token)
        }
    }

    /// The port of a `Host` header that passed [`Guard::check_host`].
    pub fn host_port(host: Option<&[u8]>) -> Option<u16> {
        host.and_then(|h| std::str::from_utf8(h).ok())
            .and_then(authority)
            .and_then(|a| a.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::new(&AdminPlan {
            token: "0123456789abcdef".into(),
            names: vec!["riley".into(), "10.0.0.5".into()],
            herd_ports: vec![13665, 13666],
            test_hooks: false,
        })
    }

    #[test]
    fn hosts_of_this_server_pass_and_others_are_refused() {
        let g = guard();
        let local: Option<IpAddr> = "172.18.0.3".parse().ok();
        for ok in [
            "localhost",
            "LOCALHOST:13665",
            "127.0.0.1:13665",
            "127.0.0.2",
            "[::1]:13665",
            "riley",
            "Riley.:80",
            "10.0.0.5:1",
            "172.18.0.3:13665",
        ] {
            assert_eq!(g.check_host(Some(ok.as_bytes()), local), Ok(()), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:13665",
            "riley.evil.example",
            "localhost.evil.example",
            "172.18.0.4",
            "",
            "::1",
            "riley:",
            "riley:x",
            "riley:99999",
            "ri ley",
            "riley\0",
            "user@riley",
            "[evil]:1",
        ] {
            assert_eq!(
                g.check_host(Some(bad.as_bytes()), local),
                Err(Refusal::Host),
                "{bad:?}"
            );
        }
        assert_eq!(g.check_host(None, local), Err(Refusal::Host));
        assert_eq!(g.check_host(Some(b"\xff"), local), Err(Refusal::Host));
    }

    #[test]
    fn origins_are_pages_of_this_herd_only() {
        let g = guard();
        let at = |o: &'static str, port| g.check_origin(o.as_bytes(), port, None);
        assert_eq!(
            at("http://127.0.0.1:13666", Some(13665)),
            Ok("http://127.0.0.1:13666")
        );
        assert!(at("http://localhost:13665", Some(13665)).is_ok());
        assert!(at("https://riley", None).is_ok());
        assert!(at("http://riley:8080", Some(8080)).is_ok());
        for bad in [
            "http://evil.example:13665",
            "http://127.0.0.1:3000",
            "null",
            "file://",
            "http://riley.evil.example:13665",
            "ftp://riley:13665",
        ] {
            assert_eq!(at(bad, Some(13665)), Err(Refusal::Origin), "{bad}");
        }
    }

    #[test]
    fn the_token_guards_every_path_but_the_page_healthz_and_metrics() {
        let g = guard();
        for open in ["/", "/healthz", "/metrics"] {
            assert_eq!(g.check_token(open, None), Ok(()));
        }
        for path in [
            "/status",
            "/records",
            "/herd",
            "/places",
            "/x",
            "/metrics/x",
        ] {
            assert_eq!(g.check_token(path, None), Err(Refusal::Token), "{path}");
        }
        let check = |a: &str| g.check_token("/records", Some(a.as_bytes()));
        assert_eq!(check("Bearer 0123456789abcdef"), Ok(()));
        assert_eq!(check("bearer 0123456789abcdef"), Ok(()));
        for wrong in [
            "Bearer 0123456789abcdeF",
            "Bearer 0123456789abcde",
            "Bearer 0123456789abcdef0",
            "Basic 0123456789abcdef",
            "0123456789abcdef",
            "Bearer",
            "",
        ] {
            assert_eq!(check(wrong), Err(Refusal::Token), "{wrong:?}");
        }
    }
}
