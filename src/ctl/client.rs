//! `herdctl iamat`, `whatsat` and `send`: one connection, lines out, the
//! answers printed as they come.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{CtlError, ANSWER_TIMEOUT};

/// The current time as `secs.nanos`, as an IAMAT carries it.
pub fn now_text() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// Sends `lines`, half-closes, and returns everything the server sends
/// until it closes.
pub fn exchange(address: &str, lines: &[Vec<u8>]) -> Result<Vec<u8>, CtlError> {
    let address_of = || address.to_owned();
    let mut stream = TcpStream::connect(address).map_err(|source| CtlError::Connect {
        address: address_of(),
        source,
    })?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    for line in lines {
        stream
            .write_all(line)
            .and_then(|()| stream.write_all(b"\n"))
            .map_err(|source| CtlError::Send {
                address: address_of(),
                source,
            })?;
    }
    stream
        .shutdown(Shutdown::Write)
        .map_err(CtlError::HalfClose)?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|source| CtlError::Read {
            address: address_of(),
            source,
        })?;
    Ok(answer)
}

/// Runs an exchange and prints the answer verbatim.
pub fn print_exchange(address: &str, lines: &[Vec<u8>]) -> Result<(), CtlError> {
    let answer = exchange(address, lines)?;
    Ok(std::io::stdout().write_all(&answer)?)
}
