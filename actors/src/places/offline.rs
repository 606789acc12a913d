//! The `offline` places provider: GeoNames populated places (every place of
//! 1,000 people or more, about 154,000) shipped by the `cities-json` crate and
//! compacted at build time (see `build.rs`) into a table embedded in the
//! binary, so nothing is downloaded at run time.
//!
//! Decoding the table takes milliseconds; it still happens in a background
//! thread started with the first server, never before a listener is up, and
//! a WHATSAT that comes before it is ready waits for it off the actor thread.
//! The index is a grid of quarter-degree cells: places are sorted by cell, so
//! a query looks up the ranges of the cells its circle can touch and measures
//! great-circle distances to what they hold, closest first. The whole index
//! is a few MB: one array of places and one string of all names.

use std::collections::HashMap;
use std::sync::OnceLock;

use futures_util::future::{FutureExt, LocalBoxFuture};
use serde_json::{json, Value};

use super::{Provider, Query};
use crate::record::fnv1a;

/// Mean Earth radius, in metres.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Side of a grid cell, in degrees.
const CELL_DEG: f64 = 0.25;

/// The attribution GeoNames asks for (CC BY 4.0).
pub const ATTRIBUTION: &str =
    "Place data from <a href=\"https://www.geonames.org/\">GeoNames</a>, licensed under CC BY 4.0";

/// The compact table written by `build.rs`.
static TABLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/places.bin"));

/// One place of the embedded data; its name is a range of [`PlaceIndex::names`].
#[derive(Debug, Clone, Copy)]
struct Place {
    lat_e5: i32,
    lng_e5: i32,
    name_start: u32,
    name_len: u8,
    country: [u8; 2],
}

impl Place {
    fn lat(&self) -> f64 {
        f64::from(self.lat_e5) / 1e5
    }

    fn lng(&self) -> f64 {
        f64::from(self.lng_e5) / 1e5
    }
}

/// All places, sorted by grid cell.
#[derive(Debug, Default)]
pub struct PlaceIndex {
    places: Vec<Place>,
    names: String,
    /// Cell -> range of `places`.
    cells: HashMap<(i32, i32), (u32, u32)>,
}

static INDEX: OnceLock<PlaceIndex> = OnceLock::new();

fn cell_of(lat: f64, lng: f64) -> (i32, i32) {
    (
        (lat / CELL_DEG).floor() as i32,
        (lng / CELL_DEG).floor() as i32,
    )
}

/// Great-circle distance in metres (haversine).
pub fn distance_m(lat1: f64, lng1: f64, lat2: f64, lng2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lng2 - lng1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
}

/// Reads the table; a truncated table (which the build cannot produce) ends
/// the list early rather than failing.
fn decode(table: &[u8]) -> (Vec<Place>, String) {
    let word = |at: usize| -> Option<[u8; 4]> { table.get(at..at + 4)?.try_into().ok() };
    let count = word(0).map_or(0, u32::from_le_bytes) as usize;
    let mut places = Vec::with_capacity(count);
    let mut names = String::with_capacity(count * 10);
    let mut at = 4;
    while places.len() < count {
        let (Some(lat), Some(lng), Some(cc), Some(&len)) = (
            word(at),
            word(at + 4),
            table.get(at + 8..at + 10),
            table.get(at + 10),
        ) else {
            break;
        };
        let Some(name) = table.get(at + 11..at + 11 + usize::from(len)) else {
            break;
        };
        places.push(Place {
            lat_e5: i32::from_le_bytes(lat),
            lng_e5: i32::from_le_bytes(lng),
            name_start: names.len() as u32,
            name_len: len,
            country: [cc[0], cc[1]],
        });
        names.push_str(&String::from_utf8_lossy(name));
        at += 11 + usize::from(len);
    }
    (places, names)
}

impl PlaceIndex {
    fn build() -> PlaceIndex {
        let (mut places, names) = decode(TABLE);
        places.sort_by_cached_key(|p| cell_of(p.lat(), p.lng()));
        let mut cells = HashMap::new();
        let mut start = 0;
        while start < places.len() {
            let cell = cell_of(places[start].lat(), places[start].lng());
            let end = places[start..]
                .iter()
                .position(|p| cell_of(p.lat(), p.lng()) != cell)
                .map_or(places.len(), |n| start + n);
            cells.insert(cell, (start as u32, end as u32));
            start = end;
        }
        PlaceIndex {
            places,
            names,
            cells,
        }
    }

    fn name(&self, place: &Place) -> &str {
        let start = place.name_start as usize;
        self.names
            .get(start..start + usize::from(place.name_len))
            .unwrap_or("")
    }

    /// Places within `radius_m` of (lat, lng), closest first, at most `limit`.
    fn within(&self, lat: f64, lng: f64, radius_m: f64, limit: usize) -> Vec<(f64, &Place)> {
        let lat_span = (radius_m / EARTH_RADIUS_M).to_degrees();
        let cos_lat = lat.to_radians().cos().abs();
        // Near a pole every longitude may be within reach.
        let lng_span = if cos_lat * 180.0 > lat_span {
            (lat_span / cos_lat).min(180.0)
        } else {
            180.0
        };
        let (lat_lo, _) = cell_of(lat - lat_span, 0.0);
        let (lat_hi, _) = cell_of(lat + lat_span, 0.0);
        let (_, lng_lo) = cell_of(0.0, lng - lng_span);
        let (_, lng_hi) = cell_of(0.0, lng + lng_span);
        let lng_cells = (360.0 / CELL_DEG) as i32;
        let mut found = Vec::new();
        for row in lat_lo..=lat_hi {
            for col in lng_lo..=lng_hi.min(lng_lo + lng_cells - 1) {
                // Wrap across the antimeridian.
                let wrapped = (col + lng_cells / 2).rem_euclid(lng_cells) - lng_cells / 2;
                let Some(&(start, end)) = self.cells.get(&(row, wrapped)) else {
                    continue;
                };
                for place in &self.places[start as usize..end as usize] {
                    let d = distance_m(lat, lng, place.lat(), place.lng());
                    if d <= radius_m {
                        found.push((d, place));
                    }
                }
            }
        }
        found.sort_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then_with(|| self.name(a.1).cmp(self.name(b.1)))
        });
        found.truncate(limit);
        found
    }

    fn answer(&self, query: Query) -> Value {
        let places = self.within(
            query.location.lat,
            query.location.lon,
            query.radius.km() * 1000.0,
            usize::from(query.bound),
        );
        nearby_answer(
            places
                .iter()
                .map(|(_, place)| self.place_json(place))
                .collect(),
        )
    }

    fn place_json(&self, place: &Place) -> Value {
        let name = self.name(place);
        let country = String::from_utf8_lossy(&place.country);
        let id = fnv1a(format!("{name}|{}|{}", place.lat_e5, place.lng_e5).as_bytes());
        json!({
            "geometry": { "location": { "lat": place.lat(), "lng": place.lng() } },
            "name": name,
            "place_id": format!("geonames-{id:016x}"),
            "types": ["locality", "political"],
            "vicinity": format!("{name}, {country}"),
        })
    }
}

/// Starts building the index in the background (once per process).
/// A Nearby Search answer of GeoNames places, closest first: `OK`, or
/// `ZERO_RESULTS` when there are none (the embedded table and a GeoNames
/// file answer alike).
pub fn nearby_answer(results: Vec<Value>) -> Value {
    let status = if results.is_empty() {
        "ZERO_RESULTS"
    } else {
        "OK"
    };
    json!({
        "html_attributions": [ATTRIBUTION],
        "results": results,
        "status": status,
    })
}

pub fn load_in_background() {
    if INDEX.get().is_some() {
        return;
    }
    static STARTED: OnceLock<()> = OnceLock::new();
    if STARTED.set(()).is_ok() {
        let spawned = std::thread::Builder::new()
            .name("places-load".into())
            .spawn(|| {
                let started = std::time::Instant::now();
                let index = INDEX.get_or_init(PlaceIndex::build);
                log::info!(target: "places", "offline places loaded: {} places in {:?}",
                    index.places.len(), started.elapsed());
            });
        if let Err(e) = spawned {
            log::warn!(target: "places", "could not load places in the background: {e}");
        }
    }
}

/// Every place of the table as `(lat, lng, name)`, or `None` until it is
/// loaded: a read-only view (the admin page draws its base map from it).
pub fn loaded_places() -> Option<impl Iterator<Item = (f64, f64, &'static str)>> {
    let index = INDEX.get()?;
    Some(
        index
            .places
            .iter()
            .map(|p| (p.lat(), p.lng(), index.name(p))),
    )
}

/// The offline provider.
#[derive(Debug, Default)]
pub struct Offline;

impl Offline {
    pub fn new() -> Offline {
        load_in_background();
        Offline
    }
}

impl Provider for Offline {
    fn name(&self) -> &'static str {
        "offline"
    }

    fn nearby(&self, query: Query) -> LocalBoxFuture<'static, Value> {
        if let Some(index) = INDEX.get() {
            return std::future::ready(index.answer(query)).boxed_local();
        }
        load_in_background();
        async move {
            let waited = tokio::task::spawn_blocking(move || {
                INDEX.get_or_init(PlaceIndex::build).answer(query)
            })
            .await;
            waited.unwrap_or_else(|e| {
                super::error_answer("UNKNOWN_ERROR", &format!("places data unavailable: {e}"))
            })
        }
        .boxed_local()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Location, Radius};

    fn query(lat: f64, lon: f64, km: &str, bound: u8) -> Query {
        Query {
            location: Location { lat, lon },
            radius: Radius::parse(km.as_bytes()).unwrap(),
            bound,
        }
    }

    fn index() -> &'static PlaceIndex {
        INDEX.get_or_init(PlaceIndex::build)
    }

    #[test]
    fn haversine_matches_a_known_distance() {
        // Los Angeles City Hall to San Francisco City Hall: about 559 km.
        let d = distance_m(34.0537, -118.2428, 37.7793, -122.4193);
        assert!((d - 559_000.0).abs() < 2_000.0, "{d}");
    }

    #[test]
    fn ucla_has_westwood_nearby_closest_first() {
        let answer = index().answer(query(34.068930, -118.445127, "10", 5));
        assert_eq!(answer["status"], "OK");
        let results = answer["results"].as_array().unwrap();
        assert!(!results.is_empty() && results.len() <= 5);
        let names: Vec<&str> = results
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(
            names
                .iter()
                .any(|n| n.contains("Westwood") || n.contains("Beverly Hills")),
            "{names:?}"
        );
        let dist = |r: &Value| {
            let loc = &r["geometry"]["location"];
            distance_m(
                34.068930,
                -118.445127,
                loc["lat"].as_f64().unwrap(),
                loc["lng"].as_f64().unwrap(),
            )
        };
        assert!(results.windows(2).all(|w| dist(&w[0]) <= dist(&w[1])));
        assert!(results.iter().all(|r| dist(r) <= 10_000.0));
        assert_eq!(answer["html_attributions"][0], ATTRIBUTION);
    }

    #[test]
    fn middle_of_the_ocean_has_zero_results() {
        let answer = index().answer(query(-30.0, -140.0, "50", 20));
        assert_eq!(answer["status"], "ZERO_RESULTS");
        assert_eq!(answer["results"], json!([]));
    }

    #[test]
    fn search_wraps_the_antimeridian_and_survives_the_poles() {
        // Egvekinot (66.32, -179.12) lies about 44 km east of 179.9 E.
        let across = index().within(66.32321, 179.9, 50_000.0, 50);
        assert!(
            across.iter().any(|(_, p)| index().name(p) == "Egvekinot"),
            "{across:?}"
        );
        let _ = index().within(90.0, 0.0, 50_000.0, 20);
        let _ = index().within(-90.0, 180.0, 50_000.0, 20);
    }
}
