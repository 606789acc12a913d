//! The `google-new` places provider: Places API (New) Nearby Search (SPEC
//! §5), `POST <base>/v1/places:searchNearby` with the key in
//! `X-Goog-Api-Key` and the wanted fields in `X-Goog-FieldMask`, its answer
//! converted field by field into the legacy Nearby Search format that
//! WHATSAT speaks. docs/places.md has the mapping as a table:
//!
//! | Places API (New)                  | legacy                         |
//! |-----------------------------------|--------------------------------|
//! | `businessStatus`                  | `business_status`              |
//! | `location.latitude/longitude`     | `geometry.location.lat/lng`    |
//! | `viewport.high/low`               | `geometry.viewport.northeast/southwest` |
//! | `iconMaskBaseUri` + `.png`        | `icon`                         |
//! | `iconBackgroundColor`             | `icon_background_color`        |
//! | `iconMaskBaseUri`                 | `icon_mask_base_uri`           |
//! | `displayName.text`                | `name`                         |
//! | `id`                              | `place_id`                     |
//! | `rating`                          | `rating`                       |
//! | `types`                           | `types`                        |
//! | `userRatingCount`                 | `user_ratings_total`           |
//! | `shortFormattedAddress` (else `formattedAddress`) | `vicinity`     |
//!
//! A field is written only when Google gave it. `status` is `OK` with at
//! least one place, else `ZERO_RESULTS` (Google answers `{}` when nothing is
//! near). Errors come as `{"error": {"code", "message", "status"}}` with a
//! gRPC status name, mapped to the nearest legacy status; the message is
//! kept as `error_message`.

use futures_util::future::{FutureExt, LocalBoxFuture};
use serde_json::{json, Map, Value};

use super::http::{self, Upstream};
use super::{error_answer, Provider, Query};
use crate::protocol::MAX_BOUND;

/// Path of the New Nearby Search method.
pub const PATH: &str = "/v1/places:searchNearby";

/// The fields asked for: exactly those the conversion uses (Google bills by
/// the field mask, so nothing more).
pub const FIELD_MASK: &str = "places.id,places.displayName,places.shortFormattedAddress,\
places.formattedAddress,places.location,places.viewport,places.types,places.rating,\
places.userRatingCount,places.businessStatus,places.iconMaskBaseUri,places.iconBackgroundColor";

/// The Places API (New) provider of one server.
pub struct GoogleNew {
    upstream: Upstream,
    clients: http::Clients,
}

impl GoogleNew {
    pub fn new(upstream: Upstream) -> GoogleNew {
        let clients = http::Clients::new(upstream.timeout);
        GoogleNew { upstream, clients }
    }
}

/// The request body for `query`. It always asks for the most places a
/// WHATSAT may want ([`MAX_BOUND`], also Google's own maximum), whatever
/// the bound: Google bills per request, not per place, so one answer is cut
/// to every bound and cached for all of them (docs/places.md).
pub fn request_body(query: &Query) -> Value {
    json!({
        "maxResultCount": MAX_BOUND,
        "locationRestriction": {
            "circle": {
                "center": {
                    "latitude": query.location.lat,
                    "longitude": query.location.lon,
                },
                "radius": f64::from(query.radius.metres()),
            }
        }
    })
}

/// The legacy status nearest to a gRPC status name of an error body.
fn legacy_status(grpc: &str, code: u16) -> &'static str {
    match grpc {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" | "NOT_FOUND" => {
            "INVALID_REQUEST"
        }
        "PERMISSION_DENIED" | "UNAUTHENTICATED" => "REQUEST_DENIED",
        "RESOURCE_EXHAUSTED" => "OVER_QUERY_LIMIT",
        _ => http::status_for_http(code),
    }
}

/// Turns an HTTP status and body into a legacy answer.
pub fn answer_from(code: u16, body: &[u8]) -> Value {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    if let Some(error) = parsed.as_ref().and_then(|v| v.get("error")) {
        let grpc = error.get("status").and_then(Value::as_str).unwrap_or("");
        let message = error.get("message").and_then(Value::as_str).map_or_else(
            || format!("the places service answered HTTP {code}"),
            str::to_owned,
        );
        return error_answer(legacy_status(grpc, code), &message);
    }
    if !(200..300).contains(&code) {
        return error_answer(
            http::status_for_http(code),
            &format!("the places service answered HTTP {code}"),
        );
    }
    let places = match parsed.as_ref().map(|v| v.get("places")) {
        Some(None) if parsed.as_ref().is_some_and(Value::is_object) => Vec::new(),
        Some(Some(Value::Array(places))) => places.iter().map(legacy_place).collect(),
        _ => {
            return error_answer(
                "UNKNOWN_ERROR",
                "the places service sent an answer that is not searchNearby JSON",
            )
        }
    };
    let status = if places.is_empty() {
        "ZERO_RESULTS"
    } else {
        "OK"
    };
    json!({
        "html_attributions": [],
        "results": places,
        "status": status,
    })
}

/// `{latitude, longitude}` as `{lat, lng}`, when both are numbers.
fn lat_lng(point: Option<&Value>) -> Option<Value> {
    let point = point?;
    let lat = point.get("latitude")?.as_f64()?;
    let lng = point.get("longitude")?.as_f64()?;
    Some(json!({ "lat": lat, "lng": lng }))
}

/// One New place as a legacy result; keys in the alphabetical order Google
/// uses in legacy answers.
pub fn legacy_place(place: &Value) -> Value {
    let mut out = Map::new();
    let field = |name: &str| place.get(name).filter(|v| !v.is_null());
    if let Some(status) = field("businessStatus") {
        out.insert("business_status".into(), status.clone());
    }
    let mut geometry = Map::new();
    if let Some(location) = lat_lng(field("location")) {
        geometry.insert("location".into(), location);
    }
    if let Some(viewport) = field("viewport") {
        if let (Some(ne), Some(sw)) = (lat_lng(viewport.get("high")), lat_lng(viewport.get("low")))
        {
            geometry.insert(
                "viewport".into(),
                json!({ "northeast": ne, "southwest": sw }),
            );
        }
    }
    if !geometry.is_empty() {
        out.insert("geometry".into(), Value::Object(geometry));
    }
    let icon_base = field("iconMaskBaseUri").and_then(Value::as_str);
    if let Some(base) = icon_base {
        out.insert("icon".into(), Value::from(format!("{base}.png")));
    }
    if let Some(colour) = field("iconBackgroundColor") {
        out.insert("icon_background_color".into(), colour.clone());
    }
    if let Some(base) = icon_base {
        out.insert("icon_mask_base_uri".into(), Value::from(base));
    }
    if let Some(name) = field("displayName").and_then(|d| d.get("text")) {
        out.insert("name".into(), name.clone());
    }
    if let Some(id) = field("id") {
        out.insert("place_id".into(), id.clone());
    }
    if let Some(rating) = field("rating") {
        out.insert("rating".into(), rating.clone());
    }
    if let Some(types) = field("types") {
        out.insert("types".into(), types.clone());
    }
    if let Some(count) = field("userRatingCount") {
        out.insert("user_ratings_total".into(), count.clone());
    }
    if let Some(vicinity) = field("shortFormattedAddress").or_else(|| field("formattedAddress")) {
        out.insert("vicinity".into(), vicinity.clone());
    }
    Value::Object(out)
}

impl Provider for GoogleNew {
    fn name(&self) -> &'static str {
        "google-new"
    }

    fn nearby(&self, query: Query) -> LocalBoxFuture<'static, Value> {
        let url = format!("{}{PATH}", self.upstream.base_url);
        let body = request_body(&query);
        let upstream = self.upstream.clone();
        let clients = self.clients.clone();
        async move {
            let request = |client: &awc::Client| {
                client
                    .post(&url)
                    .insert_header(("X-Goog-Api-Key", upstream.api_key.as_str()))
                    .insert_header(("X-Goog-FieldMask", FIELD_MASK))
            };
            let what = format!("POST {url} {body}");
            upstream
                .exchange(
                    &clients,
                    &what,
                    request,
                    |r| r.send_json(&body),
                    answer_from,
                )
                .await
        }
        .boxed_local()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Location, Radius};

    #[test]
    fn the_request_asks_for_20_results_whatever_the_bound_in_a_circle_in_metres() {
        let query = Query {
            location: Location {
                lat: 34.06893,
                lon: -118.445127,
            },
            radius: Radius::parse(b"1.5").unwrap(),
            bound: 7,
        };
        assert_eq!(
            request_body(&query),
            json!({"maxResultCount": 20, "locationRestriction": {"circle": {
                "center": {"latitude": 34.06893, "longitude": -118.445127},
                "radius": 1500.0}}})
        );
    }

    #[test]
    fn a_new_place_becomes_a_legacy_result_field_by_field() {
        let new = json!({
            "id": "ChIJ1",
            "types": ["cafe", "food"],
            "formattedAddress": "1 Long Road, Los Angeles, CA 90024, USA",
            "shortFormattedAddress": "1 Long Road, Los Angeles",
            "location": {"latitude": 34.07, "longitude": -118.44},
            "viewport": {"low": {"latitude": 34.0, "longitude": -118.5},
                         "high": {"latitude": 34.1, "longitude": -118.4}},
            "rating": 4.5,
            "userRatingCount": 120,
            "businessStatus": "OPERATIONAL",
            "displayName": {"text": "Kiwi Cafe", "languageCode": "en"},
            "iconMaskBaseUri": "https://maps.gstatic.com/mapfiles/place_api/icons/v2/cafe_pinlet",
            "iconBackgroundColor": "#FF9E67"
        });
        let legacy = legacy_place(&new);
        assert_eq!(
            legacy,
            json!({
                "business_status": "OPERATIONAL",
                "geometry": {"location": {"lat": 34.07, "lng": -118.44},
                             "viewport": {"northeast": {"lat": 34.1, "lng": -118.4},
                                          "southwest": {"lat": 34.0, "lng": -118.5}}},
                "icon": "https://maps.gstatic.com/mapfiles/place_api/icons/v2/cafe_pinlet.png",
                "icon_background_color": "#FF9E67",
                "icon_mask_base_uri": "https://maps.gstatic.com/mapfiles/place_api/icons/v2/cafe_pinlet",
                "name": "Kiwi Cafe",
                "place_id": "ChIJ1",
                "rating": 4.5,
                "types": ["cafe", "food"],
                "user_ratings_total": 120,
                "vicinity": "1 Long Road, Los Angeles"
            })
        );
        // Missing fields stay missing; the long address stands in for vicinity.
        let sparse = legacy_place(&json!({"id": "x", "formattedAddress": "Somewhere"}));
        assert_eq!(sparse, json!({"place_id": "x", "vicinity": "Somewhere"}));
    }

    #[test]
    fn statuses_ok_zero_and_errors() {
        let ok = answer_from(200, br#"{"places": [{"id": "a"}, {"id": "b"}]}"#);
        assert_eq!(ok["status"], "OK");
        assert_eq!(ok["results"].as_array().unwrap().len(), 2);
        assert_eq!(answer_from(200, b"{}")["status"], "ZERO_RESULTS");
        let denied = answer_from(
            403,
            br#"{"error": {"code": 403, "message": "API key not valid.", "status": "PERMISSION_DENIED"}}"#,
        );
        assert_eq!(denied["status"], "REQUEST_DENIED");
        assert_eq!(denied["error_message"], "API key not valid.");
        let quota = answer_from(
            429,
            br#"{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}"#,
        );
        assert_eq!(quota["status"], "OVER_QUERY_LIMIT");
        let bad = answer_from(
            400,
            br#"{"error": {"code": 400, "message": "m", "status": "INVALID_ARGUMENT"}}"#,
        );
        assert_eq!(bad["status"], "INVALID_REQUEST");
        assert_eq!(answer_from(502, b"Bad Gateway")["status"], "UNKNOWN_ERROR");
        assert_eq!(answer_from(200, b"[1]")["status"], "UNKNOWN_ERROR");
        assert_eq!(
            answer_from(200, br#"{"places": 3}"#)["status"],
            "UNKNOWN_ERROR"
        );
    }
}
