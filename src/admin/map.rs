//! `/places`: the base map of the live page, drawn from data the herd
//! already has: the offline places table every binary embeds (GeoNames,
//! about 154,000 populated places, `herd_actors::places::offline`). Where
//! people live outlines the continents well enough to tell where a client
//! is; no tiles, nothing fetched from anywhere at run time.
//!
//! `GET /places?south=S&west=W&north=N&east=E` answers the places inside
//! that box (degrees, no wrap across the antimeridian), thinned to one dot
//! per cell of a grid [`DOTS_ACROSS`] cells wide, and, when the box is at
//! most [`CITY_SPAN_DEG`] high (a city and its surroundings), the places'
//! names too, for labels:
//!
//! ```json
//! {"loaded": true, "dots": [[34.0522, -118.2437], ...],
//!  "names": [[34.0635, -118.4455, "Westwood"], ...]}
//! ```
//!
//! `loaded` is false (and the lists empty) while the table is still being
//! decoded in the background; the page asks again on its next round.

use herd_actors::places::offline;
use serde::{Deserialize, Serialize};

/// Width of the thinning grid, in cells, across the box asked for.
pub const DOTS_ACROSS: f64 = 600.0;

/// Boxes at most this many degrees high get place names.
pub const CITY_SPAN_DEG: f64 = 1.5;

/// Names sent at most (the closest to the box's centre).
pub const MAX_NAMES: usize = 2_000;

/// The box asked for.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Bounds {
    pub south: f64,
    pub west: f64,
    pub north: f64,
    pub east: f64,
}

impl Bounds {
    /// Reads and checks `south`, `west`, `north`, `east` from a query string.
    pub fn parse(query: &str) -> Result<Bounds, String> {
        let bounds = actix_web::web::Query::<Bounds>::from_query(query)
            .map_err(|e| format!("want south, west, north, east in degrees: {e}"))?
            .into_inner();
        let Bounds {
            south,
            west,
            north,
            east,
        } = bounds;
        let inside = |v: f64, limit: f64| v.is_finite() && v.abs() <= limit;
        if !(inside(south, 90.0) && inside(north, 90.0) && south < north) {
            return Err(format!(
                "south {south} and north {north} are not a band of latitude"
            ));
        }
        if !(inside(west, 180.0) && inside(east, 180.0) && west < east) {
            return Err(format!(
                "west {west} and east {east} are not a band of longitude"
            ));
        }
        Ok(bounds)
    }

    fn contains(&self, lat: f64, lon: f64) -> bool {
        (self.south..=self.north).contains(&lat) && (self.west..=self.east).contains(&lon)
    }
}

/// The answer of `/places`.
#[derive(Debug, Serialize)]
pub struct Layer {
    pub loaded: bool,
    pub dots: Vec<[f64; 2]>,
    pub names: Vec<(f64, f64, &'static str)>,
}

/// Degrees to four decimals (about 10 m): enough for a map, and short.
fn short(degrees: f64) -> f64 {
    (degrees * 1e4).round() / 1e4
}

/// The layer of `bounds`. Starts loading the table when nothing did yet (a
/// herd on a Google provider loads it for its map only).
pub fn layer(bounds: &Bounds) -> Layer {
    let Some(places) = offline::loaded_places() else {
        offline::load_in_background();
        return Layer {
            loaded: false,
            dots: Vec::new(),
            names: Vec::new(),
        };
    };
    let step = (bounds.east - bounds.west) / DOTS_ACROSS;
    let with_names = bounds.north - bounds.south <= CITY_SPAN_DEG;
    let mut cells = std::collections::HashSet::new();
    let mut dots = Vec::new();
    let mut names = Vec::new();
    for (lat, lon, name) in places.filter(|(lat, lon, _)| bounds.contains(*lat, *lon)) {
        let cell = (
            ((lat - bounds.south) / step) as u32,
            ((lon - bounds.west) / step) as u32,
        );
        if cells.insert(cell) {
            dots.push([short(lat), short(lon)]);
        }
        if with_names {
            names.push((short(lat), short(lon), name));
        }
    }
    if names.len() > MAX_NAMES {
        let centre = (
            (bounds.south + bounds.north) / 2.0,
            (bounds.west + bounds.east) / 2.0,
        );
        let away = |p: &(f64, f64, &str)| offline::distance_m(centre.0, centre.1, p.0, p.1);
        names.sort_by(|a, b| away(a).total_cmp(&away(b)));
        names.truncate(MAX_NAMES);
    }
    Layer {
        loaded: true,
        dots,
        names,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_is_four_finite_ordered_degrees() {
        let b = Bounds::parse("south=33.5&west=-119&north=34.5&east=-118").unwrap();
        assert_eq!((b.south, b.east), (33.5, -118.0));
        for bad in [
            "",
            "south=1&west=2&north=3",
            "south=x&west=0&north=1&east=1",
            "south=NaN&west=0&north=1&east=1",
            "south=inf&west=0&north=1&east=1",
            "south=2&west=0&north=1&east=1",
            "south=0&west=0&north=91&east=1",
            "south=0&west=10&north=1&east=1",
            "south=0&west=-181&north=1&east=1",
        ] {
            assert!(Bounds::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn los_angeles_has_dots_and_names_the_world_only_dots() {
        let world = Bounds::parse("south=-90&west=-180&north=90&east=180").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut layer = super::layer(&world);
        while !layer.loaded && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
            layer = super::layer(&world);
        }
        assert!(layer.loaded);
        // Thinned: far fewer dots than places, but the continents are there.
        assert!(
            (5_000..40_000).contains(&layer.dots.len()),
            "{}",
            layer.dots.len()
        );
        assert!(layer.names.is_empty());
        let la = Bounds::parse("south=33.8&west=-118.7&north=34.3&east=-118.0").unwrap();
        let city = super::layer(&la);
        assert!(city.dots.iter().all(|[lat, lon]| la.contains(*lat, *lon)));
        assert!(
            city.names.iter().any(|(_, _, n)| *n == "Santa Monica"),
            "{:?}",
            city.names.len()
        );
    }
}
