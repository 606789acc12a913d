//! What the two Google providers share: the awc client (rustls, never
//! OpenSSL), the upstream settings, redaction of the API key, and turning
//! every way an HTTP exchange can fail into a legacy-format error answer
//! with one of Google's statuses.
//!
//! The API key is a secret: it is only ever put into the request itself.
//! Everything that is logged or answered goes through [`Upstream::redact`],
//! which replaces the key (and its URL-encoded form) with `REDACTED`, so an
//! error message that happens to quote a URL cannot leak it either.

use std::sync::{Arc, Once};
use std::time::Duration;

use serde_json::Value;

use super::error_answer;

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
        let base_url = base_url.trim_end_matches('/').to_owned();
        let uri: awc::http::Uri = base_url
            .parse()
            .map_err(|e| format!("places base URL {base_url:?} is not a URL: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(format!(
                "places base URL {base_url:?} must be http:// or https:// with a host"
            ));
        }
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

/// A client for one server's thread. Installs ring as rustls' crypto
/// provider first (awc builds its TLS configuration when the client is
/// made, and rustls refuses to guess when no provider is chosen).
pub fn client(timeout: Duration) -> awc::Client {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        // Err means another part of the process chose one already: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    awc::Client::builder()
        // A backstop only: the PlacesActor's deadline fires first.
        .timeout(timeout + Duration::from_secs(1))
        .finish()
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
        assert_eq!(upstream("k").base_url, "http://127.0.0.1:9");
        let bad = |url| Upstream::new("R".into(), url, "k", Duration::from_secs(1)).is_err();
        assert!(bad("maps.googleapis.com"));
        assert!(bad("ftp://maps.googleapis.com"));
        assert!(bad("not a url"));
        assert!(Upstream::new("R".into(), "https://x", "", Duration::from_secs(1)).is_err());
    }

    #[test]
    fn http_codes_map_to_google_statuses() {
        assert_eq!(status_for_http(400), "INVALID_REQUEST");
        assert_eq!(status_for_http(403), "REQUEST_DENIED");
        assert_eq!(status_for_http(429), "OVER_QUERY_LIMIT");
        assert_eq!(status_for_http(503), "UNKNOWN_ERROR");
    }
}
