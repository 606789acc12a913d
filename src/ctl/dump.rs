//! `herdctl dump`: every record a server holds, as its AT lines, sorted, one
//! per line — exactly the admin listener's `/records`. Two servers that have
//! converged print identical dumps, so `diff` between dumps is an invariant
//! check an operator (or a fault-injection test) can run at any time.

use std::io::Write;
use std::path::Path;

use super::{http, CtlError};

/// The dump of `server` (a name from the settings, or the admin `host:port`),
/// asked with the admin `token` if there is one.
pub fn fetch(server: &str, config: &Path, token: Option<&str>) -> Result<Vec<u8>, CtlError> {
    let address = http::resolve_admin(server, config)?;
    Ok(http::get_ok_with_token(&address, "/records", token)?.body)
}

/// Prints the dump of `server` to standard output, byte for byte.
pub fn run(server: &str, config: &Path, token: Option<&str>) -> Result<(), CtlError> {
    let dump = fetch(server, config, token)?;
    std::io::stdout()
        .write_all(&dump)
        .map_err(CtlError::WriteDump)
}
