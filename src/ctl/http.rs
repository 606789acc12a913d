//! A minimal HTTP/1.0 client for the admin subcommands (`dump`, `status`) and
//! the admin tests: one request per connection, the answer read until the
//! server closes. The admin listener is ours and loopback by default, so
//! nothing more (TLS, redirects, keep-alive) is worth a client crate here.
//!
//! HTTP/1.0 is asked for on purpose: the server then neither keeps the
//! connection open nor uses chunked encoding, so "read to the end" is the
//! whole body.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;

use super::{CtlError, ANSWER_TIMEOUT};
use crate::settings::ADMIN_PORT_OFFSET;

/// Why an admin request got no usable answer. The socket's own errors are
/// kept as their messages, so that results compare (the admin tests do).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("cannot resolve {address}: {reason}")]
    Resolve { address: String, reason: String },
    #[error("{address} resolves to no address")]
    NoAddress { address: String },
    #[error("cannot connect to {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("{0}")]
    Socket(String),
    #[error("a request line or header with a control character")]
    ControlCharacter,
    #[error("cannot send to {address}: {reason}")]
    Send { address: String, reason: String },
    #[error("no complete answer from {address}: {reason}")]
    Read { address: String, reason: String },
    #[error(
        "{address} did not answer in HTTP (is it the admin port? by default the client port + {})",
        ADMIN_PORT_OFFSET
    )]
    NotHttp { address: String },
    #[error(
        "{address}{path} wants the admin token: give it with --admin-token or HERD_ADMIN_TOKEN{}",
        wrong_hint(.wrong_token)
    )]
    Unauthorized {
        address: String,
        path: String,
        /// A token was given, and refused.
        wrong_token: bool,
    },
    #[error("{address}{path} answered {status}: {text}")]
    Status {
        address: String,
        path: String,
        status: u16,
        text: String,
    },
}

fn wrong_hint(wrong_token: &bool) -> &'static str {
    if *wrong_token {
        " (the one given is wrong)"
    } else {
        ""
    }
}

/// A response: status code, headers (names lower-cased) and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` from `address` (`host:port`).
pub fn get(address: &str, path: &str) -> Result<Response, HttpError> {
    get_with_token(address, path, None)
}

/// `GET path` from `address`, with `Authorization: Bearer <token>` when a
/// token is given (the admin token, see docs/operations.md).
pub fn get_with_token(
    address: &str,
    path: &str,
    token: Option<&str>,
) -> Result<Response, HttpError> {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("Authorization", b.as_str()))
        .collect();
    request(address, "GET", path, &headers)
}

/// `method path` from `address` with `headers`; `Host` is `address` unless
/// `headers` name one.
pub fn request(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response, HttpError> {
    let mut stream = connect(address)?;
    let request = request_text(address, method, path, headers)?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| HttpError::Send {
            address: address.to_owned(),
            reason: e.to_string(),
        })?;
    let raw = read_http(&mut stream, address)?;
    parse(&raw).ok_or_else(|| not_http(address))
}

/// The error for an answer that is not HTTP.
fn not_http(address: &str) -> HttpError {
    HttpError::NotHttp {
        address: address.to_owned(),
    }
}

/// A connection to the first address `address` resolves to, reads bounded
/// by [`ANSWER_TIMEOUT`].
fn connect(address: &str) -> Result<TcpStream, HttpError> {
    let address_of = || address.to_owned();
    let targets: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|e| HttpError::Resolve {
            address: address_of(),
            reason: e.to_string(),
        })?
        .collect();
    let target = targets.first().ok_or_else(|| HttpError::NoAddress {
        address: address_of(),
    })?;
    let stream =
        TcpStream::connect_timeout(target, ANSWER_TIMEOUT).map_err(|e| HttpError::Connect {
            address: address_of(),
            reason: e.to_string(),
        })?;
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(|e| HttpError::Socket(e.to_string()))?;
    Ok(stream)
}

/// The request head, refused if a part of it would break its line.
fn request_text(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<String, HttpError> {
    let breaks_line = |t: &str| t.bytes().any(|b| b.is_ascii_control());
    if breaks_line(path)
        || headers
            .iter()
            .any(|(n, v)| breaks_line(n) || breaks_line(v))
    {
        return Err(HttpError::ControlCharacter);
    }
    let mut request = format!("{method} {path} HTTP/1.0\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {address}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Accept: */*\r\n\r\n");
    Ok(request)
}

/// Reads the answer to the end, but gives up as soon as it cannot be HTTP:
/// a client port answers `? ...` and keeps the connection open.
fn read_http(stream: &mut TcpStream, address: &str) -> Result<Vec<u8>, HttpError> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk).map_err(|e| HttpError::Read {
            address: address.to_owned(),
            reason: e.to_string(),
        })?;
        if n == 0 {
            return Ok(raw);
        }
        raw.extend_from_slice(&chunk[..n]);
        let prefix = &raw[..raw.len().min(5)];
        if !b"HTTP/".starts_with(prefix) {
            return Err(not_http(address));
        }
    }
}

/// Splits a raw HTTP/1.x response.
fn parse(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    if !status_line.starts_with("HTTP/1.") {
        return None;
    }
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Response {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    })
}

/// `GET path`, wanting a 200.
pub fn get_ok(address: &str, path: &str) -> Result<Response, HttpError> {
    get_ok_with_token(address, path, None)
}

/// `GET path` with the admin token (if any), wanting a 200. A 401 says how
/// to give the token.
pub fn get_ok_with_token(
    address: &str,
    path: &str,
    token: Option<&str>,
) -> Result<Response, HttpError> {
    let response = get_with_token(address, path, token)?;
    if response.status == 401 {
        return Err(HttpError::Unauthorized {
            address: address.to_owned(),
            path: path.to_owned(),
            wrong_token: token.is_some(),
        });
    }
    if response.status != 200 {
        return Err(HttpError::Status {
            address: address.to_owned(),
            path: path.to_owned(),
            status: response.status,
            text: response.text().trim_end().to_owned(),
        });
    }
    Ok(response)
}

/// The admin address of `server`: `host:port` taken as it is (it must be the
/// admin port), or a server name looked up in the settings file (its
/// [`ServerSection::admin_endpoint`](crate::settings::ServerSection::admin_endpoint)).
pub fn resolve_admin(server: &str, config: &Path) -> Result<String, CtlError> {
    let Some(found) = super::server_settings(server, config)? else {
        return Ok(server.to_string());
    };
    Ok(found.admin_endpoint().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_headers_and_body() {
        let raw = b"HTTP/1.0 503 Service Unavailable\r\ncontent-type: text/plain\r\nX-A: b: c\r\n\r\nshutting down\n";
        let r = parse(raw).unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.header("Content-Type"), Some("text/plain"));
        assert_eq!(r.header("x-a"), Some("b: c"));
        assert_eq!(r.body, b"shutting down\n");
    }

    #[test]
    fn a_line_protocol_answer_is_not_http() {
        assert!(parse(b"? GET /records HTTP/1.0\n? Host: x\n").is_none());
        assert!(parse(b"? GET / HTTP/1.0\r\n\r\n").is_none());
    }
}
