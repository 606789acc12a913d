//! `herdctl ping`: is a server up and answering? Made for health checks
//! (a container image without a shell runs `herdctl --server NAME ping`).
//!
//! It reports nothing and changes nothing: it connects, asks WHATSAT for a
//! client name nobody uses, and wants an answer within the deadline. The
//! question goes through the server's connection and store actors, so a
//! server whose listener accepts but whose store is stuck fails the check.
//! Any well-formed answer counts (the `?` copy for an unknown client, or an
//! AT line should somebody have reported that name).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Why a ping failed.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("cannot resolve {address}: {source}")]
    Resolve {
        address: String,
        source: std::io::Error,
    },
    #[error("{address} resolves to no address")]
    NoAddress { address: String },
    /// The last address tried, and why it failed.
    #[error("{address} ({target}): {source}")]
    Probe {
        address: String,
        target: SocketAddr,
        source: ProbeError,
    },
}

/// Why one address did not answer the probe.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no answer before the deadline")]
    Deadline,
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("{0}")]
    Socket(std::io::Error),
    #[error("cannot send the probe: {0}")]
    Send(std::io::Error),
    #[error("cannot half-close: {0}")]
    HalfClose(std::io::Error),
    #[error("no answer: {0}")]
    Read(std::io::Error),
    #[error("the server closed without answering")]
    Closed,
    #[error("unexpected answer: {0:?}")]
    Unexpected(String),
}

/// The probe line: valid WHATSAT, a client name chosen to be unused.
pub const PROBE: &str = "WHATSAT .herdctl.ping 1 1";

/// Pings `address` (`host:port`) within `timeout`; returns how long the
/// answer took.
pub fn ping(address: &str, timeout: Duration) -> Result<Duration, PingError> {
    let started = Instant::now();
    let targets: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|source| PingError::Resolve {
            address: address.to_owned(),
            source,
        })?
        .collect();
    let mut last_error = PingError::NoAddress {
        address: address.to_owned(),
    };
    for target in targets {
        match probe(target, started + timeout) {
            Ok(()) => return Ok(started.elapsed()),
            Err(source) => {
                last_error = PingError::Probe {
                    address: address.to_owned(),
                    target,
                    source,
                }
            }
        }
    }
    Err(last_error)
}

/// What is left of the time before `deadline`, or an error when none is.
fn remaining(deadline: Instant) -> Result<Duration, ProbeError> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
        .ok_or(ProbeError::Deadline)
}

fn probe(target: SocketAddr, deadline: Instant) -> Result<(), ProbeError> {
    let mut stream =
        TcpStream::connect_timeout(&target, remaining(deadline)?).map_err(ProbeError::Connect)?;
    stream
        .set_write_timeout(Some(remaining(deadline)?))
        .map_err(ProbeError::Socket)?;
    stream
        .write_all(format!("{PROBE}\n").as_bytes())
        .map_err(ProbeError::Send)?;
    // Half-closing asks the server to answer and then close (SPEC §3).
    stream
        .shutdown(Shutdown::Write)
        .map_err(ProbeError::HalfClose)?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !answer.contains(&b'\n') {
        stream
            .set_read_timeout(Some(remaining(deadline)?))
            .map_err(ProbeError::Socket)?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(ProbeError::Read(e)),
        }
        if answer.len() > 64 * 1024 {
            break;
        }
    }
    judge(&answer)
}

/// Whether `answer` is what a healthy server says to [`PROBE`].
pub fn judge(answer: &[u8]) -> Result<(), ProbeError> {
    let first = answer.split(|&b| b == b'\n').next().unwrap_or_default();
    let unknown = format!("? {PROBE}");
    if answer.contains(&b'\n') && (first == unknown.as_bytes() || first.starts_with(b"AT ")) {
        Ok(())
    } else if answer.is_empty() {
        Err(ProbeError::Closed)
    } else {
        Err(ProbeError::Unexpected(
            String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn judges_answers() {
        assert!(judge(b"? WHATSAT .herdctl.ping 1 1\n").is_ok());
        assert!(judge(b"AT Riley +0.1 .herdctl.ping +1+1 1\n{}\n\n").is_ok());
        assert!(judge(b"").is_err());
        assert!(judge(b"? WHATSAT .herdctl.ping 1 1").is_err(), "no newline");
        assert!(judge(b"? HELLO\n").is_err());
    }

    #[test]
    fn fails_fast_on_a_closed_port() {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("ephemeral port");
        let result = ping(&format!("127.0.0.1:{port}"), Duration::from_secs(2));
        assert!(result.is_err(), "{result:?}");
    }

    #[test]
    fn times_out_on_a_silent_server() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let started = Instant::now();
        let result = ping(&address, Duration::from_millis(300));
        assert!(result.is_err(), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(listener);
    }
}
