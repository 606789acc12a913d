//! The PlacesActor: one per server, answering "what lies near this point"
//! (SPEC §5) in Google's Nearby Search response format.
//!
//! The actor owns one provider (one file each in this folder) and does what
//! every provider needs around it: cut `results` to the WHATSAT bound and
//! shape the JSON as SPEC §3 asks (no blank line inside, two newlines after).
//! Places are never flooded; each server asks its own provider.

pub mod offline;

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use serde::Serialize;
use serde_json::{json, Value};

use crate::metrics::Metrics;
use crate::protocol::{self, Location, Radius};

const LOG: &str = "places";

/// What a WHATSAT asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Query {
    pub location: Location,
    pub radius: Radius,
    pub bound: u8,
}

/// A WHATSAT's places question. Answered with the JSON body, shaped and
/// followed by two newlines, ready to write after the AT line.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Bytes")]
pub struct Nearby {
    pub location: Location,
    pub radius: Radius,
    pub bound: u8,
}

/// A source of places. Answers in the legacy Nearby Search format, errors
/// included (as a `status` and an `error_message`), and never fails otherwise.
pub trait Provider {
    /// The provider's name, as in the configuration and the metrics.
    fn name(&self) -> &'static str;
    fn nearby(&self, query: Query) -> LocalBoxFuture<'static, Value>;
}

/// A legacy-format error answer with one of Google's statuses.
pub fn error_answer(status: &str, message: &str) -> Value {
    json!({
        "error_message": message,
        "html_attributions": [],
        "results": [],
        "status": status,
    })
}

/// Cuts `results` to `bound` entries and writes the JSON as Google does
/// (three-space indentation), shaped by [`protocol::places_body`].
pub fn format_answer(mut answer: Value, bound: u8) -> Bytes {
    if let Some(results) = answer.get_mut("results").and_then(Value::as_array_mut) {
        results.truncate(usize::from(bound));
    }
    let mut json = Vec::with_capacity(1024);
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut json, formatter);
    if answer.serialize(&mut serializer).is_err() {
        json = br#"{"html_attributions":[],"results":[],"status":"UNKNOWN_ERROR"}"#.to_vec();
    }
    Bytes::from(protocol::places_body(&json))
}

/// The status field of an answer, for metrics.
fn status_of(answer: &Value) -> &str {
    answer
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("UNKNOWN_ERROR")
}

/// Owns the provider of one server.
pub struct PlacesActor {
    server: Arc<str>,
    provider: Box<dyn Provider>,
    metrics: Arc<Metrics>,
}

impl PlacesActor {
    pub fn new(server: Arc<str>, provider: Box<dyn Provider>, metrics: Arc<Metrics>) -> Self {
        PlacesActor {
            server,
            provider,
            metrics,
        }
    }
}

impl Actor for PlacesActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        log::info!(target: LOG, "{}: places from {}", self.server, self.provider.name());
    }
}

impl Handler<Nearby> for PlacesActor {
    type Result = ResponseFuture<Bytes>;

    fn handle(&mut self, msg: Nearby, _: &mut Context<Self>) -> Self::Result {
        let query = Query {
            location: msg.location,
            radius: msg.radius,
            bound: msg.bound,
        };
        let answer = self.provider.nearby(query);
        let metrics = self.metrics.clone();
        let provider = self.provider.name();
        Box::pin(async move {
            let answer = answer.await;
            metrics.count_places(provider, status_of(&answer));
            format_answer(answer, query.bound)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_is_cut_to_the_bound_and_shaped() {
        let answer = json!({"html_attributions": [], "results": [1, 2, 3, 4], "status": "OK"});
        let body = format_answer(answer, 2);
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.ends_with("}\n\n"));
        assert!(!text.trim_end().contains("\n\n"));
        let parsed: Value = serde_json::from_str(text).unwrap();
        assert_eq!(parsed["results"], json!([1, 2]));
        assert!(
            text.contains("\n   \"results\""),
            "three-space indent: {text}"
        );
    }

    #[test]
    fn error_answers_carry_status_and_message() {
        let answer = error_answer("OVER_QUERY_LIMIT", "slow down");
        assert_eq!(status_of(&answer), "OVER_QUERY_LIMIT");
        assert_eq!(answer["error_message"], "slow down");
        assert_eq!(answer["results"], json!([]));
    }
}
