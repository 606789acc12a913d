//! `herdctl dump`: every record a server holds, as its AT lines, sorted, one
//! per line — exactly the admin listener's `/records`. Two servers that have
//! converged print identical dumps, so `diff` between dumps is an invariant
//! check an operator (or a fault-injection test) can run at any time.

use std::io::Write;

use super::{http, CtlError};

/// The dump of the server whose admin listener is at `address`, asked with
/// the admin `token`.
pub fn fetch(address: &str, token: &str) -> Result<Vec<u8>, CtlError> {
    Ok(http::get_ok_with_token(address, "/records", Some(token))?.body)
}

/// Prints the dump of the server at `address` to standard output, byte for
/// byte.
pub fn run(address: &str, token: &str) -> Result<(), CtlError> {
    let dump = fetch(address, token)?;
    std::io::stdout()
        .write_all(&dump)
        .map_err(CtlError::WriteDump)
}
