//! Addresses in the settings: a [`Host`] (an IP address or a DNS name, as
//! `host`, `listen` and `admin_listen` are written), an [`Endpoint`] (a host
//! and a port, as a server dials a neighbour), and the one rule for a
//! wildcard address ([`is_wildcard`]).
//!
//! A name stays a name here: a neighbour's `host` is looked up each time it
//! is dialled (in docker compose or Kubernetes the name outlives the
//! address). Only a listener's address is resolved, once, when a server's
//! plan is made.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use serde::{Deserialize, Serialize};

/// Whether `ip` is every address of this machine (`0.0.0.0`, `::`): a
/// listener bound to it has no address of its own to be reached at. The
/// one rule for the settings, the admin listener and herdctl.
pub fn is_wildcard(ip: IpAddr) -> bool {
    ip.is_unspecified()
}

/// A host as a setting names it: an IP address (an IPv6 one with or without
/// brackets) or a DNS name (letters, digits, `-`, `_` and `.`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

/// A text that is neither an IP address nor a host name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or a host name")]
pub struct NotAHost(String);

impl Host {
    /// `127.0.0.1`, the default of every address setting.
    pub const LOOPBACK: Host = Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST));

    /// Whether this is a wildcard IP address ([`is_wildcard`]); a name never is.
    pub fn is_wildcard(&self) -> bool {
        matches!(self, Host::Ip(ip) if is_wildcard(*ip))
    }

    /// This host at `port`.
    pub fn at(&self, port: u16) -> Endpoint {
        Endpoint {
            host: self.clone(),
            port,
        }
    }
}

impl Default for Host {
    fn default() -> Self {
        Host::LOOPBACK
    }
}

impl TryFrom<String> for Host {
    type Error = NotAHost;

    fn try_from(text: String) -> Result<Host, NotAHost> {
        let trimmed = text.trim();
        let bare = trimmed
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(trimmed);
        if let Ok(ip) = bare.parse() {
            return Ok(Host::Ip(ip));
        }
        let name_like = !trimmed.is_empty()
            && trimmed
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if name_like {
            Ok(Host::Name(trimmed.to_owned()))
        } else {
            Err(NotAHost(text))
        }
    }
}

impl std::str::FromStr for Host {
    type Err = NotAHost;

    fn from_str(text: &str) -> Result<Host, NotAHost> {
        Host::try_from(text.to_owned())
    }
}

/// The address or name, as written (an IPv6 address without brackets).
impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => ip.fmt(f),
            Host::Name(name) => f.write_str(name),
        }
    }
}

impl From<Host> for String {
    fn from(host: Host) -> String {
        host.to_string()
    }
}

/// A host and a port: `host:port` (`[v6]:port`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Endpoint {
    pub host: Host,
    pub port: u16,
}

/// A text that is not `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAnEndpoint {
    #[error("{0:?} is not host:port")]
    NoPort(String),
    #[error("{text:?}: {source}")]
    Host { text: String, source: NotAHost },
}

impl Endpoint {
    /// The socket address to bind: an IP address as it is, a name as the
    /// resolver has it (its first address).
    pub fn resolve(&self) -> std::io::Result<SocketAddr> {
        match &self.host {
            Host::Ip(ip) => Ok(SocketAddr::new(*ip, self.port)),
            Host::Name(name) => (name.as_str(), self.port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no address")
                }),
        }
    }
}

impl TryFrom<String> for Endpoint {
    type Error = NotAnEndpoint;

    fn try_from(text: String) -> Result<Endpoint, NotAnEndpoint> {
        let Some((host, port)) = text.trim().rsplit_once(':') else {
            return Err(NotAnEndpoint::NoPort(text));
        };
        let Ok(port) = port.parse() else {
            return Err(NotAnEndpoint::NoPort(text));
        };
        match host.parse::<Host>() {
            Ok(host) => Ok(Endpoint { host, port }),
            Err(source) => Err(NotAnEndpoint::Host { text, source }),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            _ => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

impl From<Endpoint> for String {
    fn from(endpoint: Endpoint) -> String {
        endpoint.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_unspecified_addresses_are_wildcards() {
        for wildcard in ["0.0.0.0", "::", "[::]", " 0.0.0.0 "] {
            let host: Host = wildcard.parse().expect("an address");
            assert!(host.is_wildcard(), "{wildcard}");
        }
        for not in [
            "127.0.0.1",
            "::1",
            "10.0.0.5",
            "riley",
            "herd-0.herd",
            "0.0.0.0.example",
        ] {
            let host: Host = not.parse().expect("an address or a name");
            assert!(!host.is_wildcard(), "{not}");
        }
        assert!(is_wildcard(IpAddr::from([0, 0, 0, 0])));
        assert!(!is_wildcard(IpAddr::from([127, 0, 0, 1])));
        // What is not an address at all is no wildcard either: refused.
        for bad in ["", " ", "0.0.0.0:1", "a b", "[::"] {
            assert!(bad.parse::<Host>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn endpoints_are_read_and_written_as_host_colon_port() {
        for text in ["127.0.0.1:40001", "riley:14665", "[::1]:14665"] {
            let endpoint = Endpoint::try_from(text.to_string()).expect("an endpoint");
            assert_eq!(endpoint.to_string(), text);
        }
        let v6 = Host::try_from("::1".to_string()).expect("an address");
        assert_eq!(v6.at(1).to_string(), "[::1]:1");
        let proxy = Endpoint::try_from("127.0.0.1:40001".to_string()).expect("an endpoint");
        assert_eq!(
            proxy.resolve().ok(),
            Some(SocketAddr::from(([127, 0, 0, 1], 40001)))
        );
        for bad in ["riley", "riley:", "riley:70000", ":1", "a b:1"] {
            assert!(Endpoint::try_from(bad.to_string()).is_err(), "{bad:?}");
        }
    }
}
