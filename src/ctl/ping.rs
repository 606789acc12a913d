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

/// The probe line: valid WHATSAT, a client name chosen to be unused.
pub const PROBE: &str = "WHATSAT .herdctl.ping 1 1";

/// Pings `address` (`host:port`) within `timeout`; returns how long the
/// answer took.
pub fn ping(address: &str, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let targets: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {address}: {e}"))?
        .collect();
    let mut last_error = format!("{address} resolves to no address");
    for target in targets {
        match probe(target, started + timeout) {
            Ok(()) => return Ok(started.elapsed()),
            Err(e) => last_error = format!("{address} ({target}): {e}"),
        }
    }
    Err(last_error)
}

/// What is left of the time before `deadline`, or an error when none is.
fn remaining(deadline: Instant) -> Result<Duration, String> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
        .ok_or_else(|| "no answer before the deadline".to_string())
}

fn probe(target: SocketAddr, deadline: Instant) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&target, remaining(deadline)?)
        .map_err(|e| format!("cannot connect: {e}"))?;
    stream
        .set_write_timeout(Some(remaining(deadline)?))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("{PROBE}\n").as_bytes())
        .map_err(|e| format!("cannot send the probe: {e}"))?;
    // Half-closing asks the server to answer and then close (SPEC §3).
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("cannot half-close: {e}"))?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !answer.contains(&b'\n') {
        stream
            .set_read_timeout(Some(remaining(deadline)?))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("no answer: {e}")),
        }
        if answer.len() > 64 * 1024 {
            break;
        }
    }
    judge(&answer)
}

/// Whether `answer` is what a healthy server says to [`PROBE`].
pub fn judge(answer: &[u8]) -> Result<(), String> {
    let first = answer.split(|&b| b == b'\n').next().unwrap_or_default();
    let unknown = format!("? {PROBE}");
    if answer.contains(&b'\n') && (first == unknown.as_bytes() || first.starts_with(b"AT ")) {
        Ok(())
    } else if answer.is_empty() {
        Err("the server closed without answering".into())
    } else {
        Err(format!(
            "unexpected answer: {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
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
