//! The `google` places provider: Google's legacy Nearby Search endpoint
//! (SPEC §5), `GET <base>/maps/api/place/nearbysearch/json?location=LAT,LNG
//! &radius=METRES&key=KEY`.
//!
//! Google answers in exactly the format WHATSAT must give, so a JSON object
//! with a `status` is passed through as it came, Google's own error statuses
//! (`REQUEST_DENIED`, `OVER_QUERY_LIMIT`, `INVALID_REQUEST`, ...) and
//! `next_page_token` included; the actor only cuts `results` to the bound
//! and reshapes the whitespace. Anything else (an HTTP error without such a
//! body, a body that is not JSON, no answer at all) becomes an error answer
//! in the same format (see [`super::http`]).

use futures_util::future::{FutureExt, LocalBoxFuture};
use serde_json::Value;

use super::http::{self, Upstream};
use super::{error_answer, Provider, Query};

/// Path of the legacy Nearby Search endpoint.
pub const PATH: &str = "/maps/api/place/nearbysearch/json";

/// The legacy Google provider of one server.
pub struct Google {
    upstream: Upstream,
    clients: http::Clients,
}

impl Google {
    pub fn new(upstream: Upstream) -> Google {
        let clients = http::Clients::new(upstream.timeout);
        Google { upstream, clients }
    }

    /// The request URL for `query`; it holds the key, so it is never logged
    /// without [`Upstream::redact`].
    pub fn url(&self, query: &Query) -> String {
        format!(
            "{}{PATH}?location={},{}&radius={}&key={}",
            self.upstream.base_url,
            query.location.lat,
            query.location.lon,
            query.radius.metres(),
            http::percent_encode(&self.upstream.api_key)
        )
    }
}

/// Turns an HTTP status and body into the answer.
pub fn answer_from(code: u16, body: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(body) {
        Ok(answer) if answer.get("status").is_some_and(Value::is_string) => answer,
        _ if !(200..300).contains(&code) => error_answer(
            http::status_for_http(code),
            &format!("the places service answered HTTP {code}"),
        ),
        _ => error_answer(
            "UNKNOWN_ERROR",
            "the places service sent an answer that is not Nearby Search JSON",
        ),
    }
}

impl Provider for Google {
    fn name(&self) -> &'static str {
        "google"
    }

    fn nearby(&self, query: Query) -> LocalBoxFuture<'static, Value> {
        let url = self.url(&query);
        let upstream = self.upstream.clone();
        let clients = self.clients.clone();
        async move {
            let request = |client: &awc::Client| {
                client
                    .get(&url)
                    .insert_header(("Accept", "application/json"))
            };
            let what = format!("GET {url}");
            upstream
                .exchange(&clients, &what, request, |r| r.send(), answer_from)
                .await
        }
        .boxed_local()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn google_bodies_pass_through_whatever_the_http_code() {
        let denied = br#"{"error_message":"The provided API key is invalid.","html_attributions":[],"results":[],"status":"REQUEST_DENIED"}"#;
        assert_eq!(answer_from(200, denied)["status"], "REQUEST_DENIED");
        assert_eq!(answer_from(403, denied)["status"], "REQUEST_DENIED");
        let ok = br#"{"html_attributions":[],"next_page_token":"t","results":[{"name":"a"}],"status":"OK"}"#;
        let answer = answer_from(200, ok);
        assert_eq!(answer["next_page_token"], "t");
        // Key order is Google's (serde_json keeps it).
        let keys: Vec<&String> = answer.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["html_attributions", "next_page_token", "results", "status"]
        );
    }

    #[test]
    fn other_bodies_become_error_answers() {
        assert_eq!(
            answer_from(500, b"<html>oops</html>")["status"],
            "UNKNOWN_ERROR"
        );
        assert_eq!(answer_from(429, b"")["status"], "OVER_QUERY_LIMIT");
        assert_eq!(answer_from(403, b"{}")["status"], "REQUEST_DENIED");
        let malformed = answer_from(200, b"{\"results\": [");
        assert_eq!(malformed["status"], "UNKNOWN_ERROR");
        assert!(malformed["error_message"].as_str().is_some());
        assert_eq!(answer_from(200, br#"{"status": 3}"#)["results"], json!([]));
    }
}
