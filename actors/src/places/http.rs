//! What the two Google providers share: the awc clients (rustls, never
//! OpenSSL), the upstream settings, redaction of the API key, one log line
//! per upstream call, the one retry of a request whose pooled connection
//! turned out dead, and turning every way an HTTP exchange can fail into a
//! legacy-format error answer with one of Google's statuses.
//!
//! The retry: a kept-alive connection can be closed by the upstream just
//! as it is taken from the pool (the upstream's idle timeout, or an
//! HTTP/1.0 server that closes after each answer while awc reuses the
//! connection). The request then fails before any byte of an answer
//! arrives. Both Nearby Search requests are pure reads, so such a request
//! is sent once more, on a new connection (a client that never reuses one),
//! within the same deadline. awc does not say whether a connection was
//! taken from the pool, so the same failure on a new connection is retried
//! too (harmless for a read); a connection that could not be made at all
//! (refused, DNS, TLS) is not, nor is anything after answer bytes arrived.
//!
//! The API key is a secret: it is only ever put into the request itself.
//! Everything that is logged or answered goes through [`Upstream::redact`],
//! which replaces the key (and its URL-encoded form) with `REDACTED`, so an
//! error message that happens to quote a URL cannot leak it either.

use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use awc::error::{ConnectError, SendRequestError};
use serde_json::Value;

use super::{error_answer, status_of};

const LOG: &str = "places";

/// What sending a request gives.
pub type Sent = <awc::SendClientRequest as std::future::Future>::Output;

/// Largest upstream body read; Google's answers are a few kilobytes.
pub const MAX_BODY: usize = 4 << 20;

/// Where and how a Google provider calls.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The server's name, first word of every log line (SPEC §6 log files).
    pub server: Arc<str>,
    /// Scheme, host and optional port, e.g. `https://maps.googleapis.com`.
    pub base_url: String,
    pub api_key: String,
    /// The per-request deadline; the PlacesActor enforces it around the
    /// whole exchange, the client's own timeout is only a backstop.
    pub timeout: Duration,
}

impl Upstream {
    /// Checks the base URL, so a typo stops the server at start rather than
    /// failing every request.
    pub fn new(
        server: Arc<str>,
        base_url: &str,
        api_key: &str,
        timeout: Duration,
    ) -> Result<Upstream, String> {
        let base_url = check_base_url(base_url)?;
        if api_key.is_empty() {
            return Err("a Google places provider needs GOOGLE_PLACES_API_KEY".into());
        }
        Ok(Upstream {
            server,
            base_url,
            api_key: api_key.to_owned(),
            timeout,
        })
    }

    /// `text` with every occurrence of the key replaced by `REDACTED`.
    pub fn redact(&self, text: &str) -> String {
        let encoded = percent_encode(&self.api_key);
        let text = text.replace(&self.api_key, "REDACTED");
        if encoded != self.api_key {
            text.replace(&encoded, "REDACTED")
        } else {
            text
        }
    }

    /// The answer to a request once sent: the body read (at most
    /// [`MAX_BODY`]) and turned into a legacy answer by `convert`, or an
    /// `UNKNOWN_ERROR` answer when there was no response or no whole body.
    pub async fn receive<S>(
        &self,
        sent: Result<awc::ClientResponse<S>, awc::error::SendRequestError>,
        convert: fn(u16, &[u8]) -> Value,
    ) -> Value
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
    {
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => return self.send_error(&e),
        };
        let code = response.status().as_u16();
        match response.body().limit(MAX_BODY).await {
            Ok(body) => convert(code, &body),
            Err(e) => error_answer(
                "UNKNOWN_ERROR",
                &self.redact(&format!("cannot read the places answer: {e}")),
            ),
        }
    }

    /// Sends the request made by `request` and `send` on the pooled client;
    /// if that fails on a dead connection ([`stale_connection`]), once more
    /// on a new connection. Leaves one log line, `what` the call (redacted
    /// here), whatever happens (see [`CallLog`]).
    pub async fn exchange(
        &self,
        clients: &Clients,
        what: &str,
        request: impl Fn(&awc::Client) -> awc::ClientRequest,
        send: impl Fn(awc::ClientRequest) -> awc::SendClientRequest,
        convert: fn(u16, &[u8]) -> Value,
    ) -> Value {
        let mut log = CallLog::start(self.server.clone(), self.redact(what));
        let mut sent = send(request(&clients.pooled)).await;
        if let Err(error) = &sent {
            if stale_connection(error) {
                log.retried(self.redact(&error.to_string()));
                sent = send(request(&clients.fresh).force_close()).await;
            }
        }
        let answer = self.receive(sent, convert).await;
        log.finish(&answer);
        answer
    }

    /// The answer for a request that did not get an HTTP response.
    pub fn send_error(&self, error: &awc::error::SendRequestError) -> Value {
        use awc::error::SendRequestError as E;
        let message = match error {
            E::Timeout => format!(
                "no answer from the places service within {} ms",
                self.timeout.as_millis()
            ),
            E::Connect(e) => format!("cannot reach the places service: {e}"),
            other => format!("request to the places service failed: {other}"),
        };
        error_answer("UNKNOWN_ERROR", &self.redact(&message))
    }
}

/// `base_url` without trailing slashes, if it is `http://` or `https://`
/// with a host; the reason otherwise. Checked with the settings, so a typo
/// stops the server at start (exit status 2) rather than failing every
/// request.
pub fn check_base_url(base_url: &str) -> Result<String, String> {
    let base_url = base_url.trim_end_matches('/').to_owned();
    let uri: awc::http::Uri = base_url
        .parse()
        .map_err(|e| format!("places base URL {base_url:?} is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(format!(
            "places base URL {base_url:?} must be http:// or https:// with a host"
        ));
    }
    Ok(base_url)
}

/// Whether a request failed in a way that means its connection died
/// before any byte of an answer: closed (end of stream where the answer's
/// head should be), broken or reset while the request was written or the
/// answer awaited, or an HTTP/2 connection going away. Never a failure to
/// connect, a timeout, or an answer that was malformed.
pub fn stale_connection(error: &SendRequestError) -> bool {
    use actix_web::error::ParseError;
    match error {
        SendRequestError::Connect(ConnectError::Disconnected) => true,
        SendRequestError::Send(_) => true,
        SendRequestError::Response(ParseError::Io(_)) => true,
        SendRequestError::H2(e) => e.is_go_away() || e.is_io(),
        _ => false,
    }
}

/// The two clients of a Google provider: `pooled` for every first attempt
/// (connections kept alive), `fresh` for the one retry (never reuses a
/// connection, and the retry closes its own).
#[derive(Clone)]
pub struct Clients {
    pub pooled: awc::Client,
    pub fresh: awc::Client,
}

impl Clients {
    /// The clients of one server's thread. Installs ring as rustls' crypto
    /// provider first (awc builds its TLS configuration when a client is
    /// made, and rustls refuses to guess when no provider is chosen).
    pub fn new(timeout: Duration) -> Clients {
        static PROVIDER: Once = Once::new();
        PROVIDER.call_once(|| {
            // Err means another part of the process chose one already: fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        // A backstop only: the PlacesActor's deadline fires first.
        let backstop = timeout + Duration::from_secs(1);
        let pooled = awc::Client::builder().timeout(backstop).finish();
        let never_reused = awc::Connector::new()
            .conn_keep_alive(Duration::ZERO)
            .conn_lifetime(Duration::ZERO);
        let fresh = awc::Client::builder()
            .connector(never_reused)
            .timeout(backstop)
            .finish();
        Clients { pooled, fresh }
    }
}

/// The log line of one upstream call (target `places`, level info): what
/// was asked, the status, the time, and the retry if there was one. It is
/// written when the call ends, or, if the call is dropped unfinished (the
/// PlacesActor's deadline passed, or the server is stopping), when it is
/// dropped: every call leaves exactly one line.
pub struct CallLog {
    server: Arc<str>,
    what: String,
    started: Instant,
    retried: Option<String>,
    done: bool,
}

impl CallLog {
    /// `what` must already be redacted.
    pub fn start(server: Arc<str>, what: String) -> CallLog {
        CallLog {
            server,
            what,
            started: Instant::now(),
            retried: None,
            done: false,
        }
    }

    /// Notes that the first attempt failed with `why` and was sent again.
    pub fn retried(&mut self, why: String) {
        self.retried = Some(why);
    }

    pub fn finish(mut self, answer: &Value) {
        self.done = true;
        self.write(status_of(answer));
    }

    fn write(&self, outcome: &str) {
        let retry = self.retried.as_ref().map_or(String::new(), |why| {
            format!(" (retried on a new connection after: {why})")
        });
        log::info!(target: LOG, "{}: places {} -> {outcome} in {} ms{retry}",
            self.server, self.what, elapsed_ms(self.started));
    }
}

impl Drop for CallLog {
    fn drop(&mut self) {
        if !self.done {
            self.write("UNKNOWN_ERROR (abandoned unanswered: deadline passed)");
        }
    }
}

/// The legacy status for an HTTP error code without a usable body.
pub fn status_for_http(code: u16) -> &'static str {
    match code {
        400 | 404 | 413 | 414 => "INVALID_REQUEST",
        401 | 403 => "REQUEST_DENIED",
        429 => "OVER_QUERY_LIMIT",
        _ => "UNKNOWN_ERROR",
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Milliseconds since `start`, for log lines.
pub fn elapsed_ms(start: std::time::Instant) -> u128 {
    start.elapsed().as_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(key: &str) -> Upstream {
        Upstream::new(
            "Riley".into(),
            "http://127.0.0.1:9/",
            key,
            Duration::from_secs(5),
        )
        .unwrap()
    }

    #[test]
    fn the_key_is_redacted_plain_and_encoded() {
        let up = upstream("k/y+1");
        assert_eq!(
            up.redact("GET /x?key=k%2Fy%2B1 and k/y+1"),
            "GET /x?key=REDACTED and REDACTED"
        );
    }

    #[test]
    fn base_urls_are_checked_and_trimmed() {
        assert_eq!(check_base_url("https://x/").as_deref(), Ok("https://x"));
        assert_eq!(upstream("k").base_url, "http://127.0.0.1:9");
        let bad = |url| Upstream::new("R".into(), url, "k", Duration::from_secs(1)).is_err();
        assert!(bad("maps.googleapis.com"));
        assert!(bad("ftp://maps.googleapis.com"));
        assert!(bad("not a url"));
        assert!(Upstream::new("R".into(), "https://x", "", Duration::from_secs(1)).is_err());
    }

    #[test]
    fn only_a_connection_dying_before_the_answer_is_worth_a_retry() {
        use actix_web::error::ParseError;
        use std::io::{Error, ErrorKind};
        let reset = || Error::new(ErrorKind::ConnectionReset, "reset");
        assert!(stale_connection(&SendRequestError::Connect(
            ConnectError::Disconnected
        )));
        assert!(stale_connection(&SendRequestError::Send(reset())));
        assert!(stale_connection(&SendRequestError::Response(
            ParseError::Io(reset())
        )));
        // A connection never made, a deadline, a malformed answer: no.
        assert!(!stale_connection(&SendRequestError::Connect(
            ConnectError::Io(Error::new(ErrorKind::ConnectionRefused, "refused"))
        )));
        assert!(!stale_connection(&SendRequestError::Timeout));
        assert!(!stale_connection(&SendRequestError::Response(
            ParseError::Header
        )));
    }

    #[test]
    fn http_codes_map_to_google_statuses() {
        assert_eq!(status_for_http(400), "INVALID_REQUEST");
        assert_eq!(status_for_http(403), "REQUEST_DENIED");
        assert_eq!(status_for_http(429), "OVER_QUERY_LIMIT");
        assert_eq!(status_for_http(503), "UNKNOWN_ERROR");
    }
}
