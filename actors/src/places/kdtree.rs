//! A static k-d tree over points on the sphere, kept inside the points'
//! own array: [`build`] reorders the slice so that each range's middle
//! element splits it (latitude and longitude by turns), and [`nearest`]
//! walks it for the closest points within a radius. No memory beyond the
//! points themselves, which matters at 12 million places.
//!
//! The walk visits the half nearer to the query first and skips any range
//! whose bounding box cannot hold a point closer than the k-th found so far
//! (or than the radius). The bound is a true lower bound of the great-circle
//! distance on the sphere (latitude gap, and the distance to the nearest
//! meridian of the box), so the answer is exact, across the antimeridian
//! and near the poles too.

use super::offline::{distance_m, EARTH_RADIUS_M};

/// Ranges this small are scanned, not split.
const LEAF: usize = 32;

/// A point the tree can hold: latitude and longitude in 1e-5 degrees.
pub trait Located {
    fn lat_e5(&self) -> i32;
    fn lng_e5(&self) -> i32;
}

fn coordinate<T: Located>(point: &T, depth: u32) -> i32 {
    if depth.is_multiple_of(2) {
        point.lat_e5()
    } else {
        point.lng_e5()
    }
}

/// Reorders `points` into the tree.
pub fn build<T: Located>(points: &mut [T]) {
    build_range(points, 0);
}

fn build_range<T: Located>(points: &mut [T], depth: u32) {
    if points.len() <= LEAF {
        return;
    }
    let mid = points.len() / 2;
    points.select_nth_unstable_by_key(mid, |p| coordinate(p, depth));
    let (left, rest) = points.split_at_mut(mid);
    build_range(left, depth + 1);
    build_range(&mut rest[1..], depth + 1);
}

/// A box of latitudes and longitudes, in degrees, never wrapping.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    lat_lo: f64,
    lat_hi: f64,
    lng_lo: f64,
    lng_hi: f64,
}

/// The angle between two longitudes, in degrees, the short way round.
fn lng_gap(a: f64, b: f64) -> f64 {
    let d = (a - b).abs() % 360.0;
    d.min(360.0 - d)
}

/// What a search looks for, and what it has found.
struct Search {
    lat: f64,
    lng: f64,
    cos_lat: f64,
    radius_m: f64,
    limit: usize,
    /// (distance, index), closest first, at most `limit`.
    found: Vec<(f64, usize)>,
}

impl Search {
    /// No point of the box is nearer than this (metres).
    fn lower_bound(&self, b: &Bounds) -> f64 {
        let lat_gap = if self.lat < b.lat_lo {
            b.lat_lo - self.lat
        } else if self.lat > b.lat_hi {
            self.lat - b.lat_hi
        } else {
            0.0
        };
        let by_lat = lat_gap.to_radians() * EARTH_RADIUS_M;
        let gap = if (b.lng_lo..=b.lng_hi).contains(&self.lng) {
            0.0
        } else {
            lng_gap(self.lng, b.lng_lo).min(lng_gap(self.lng, b.lng_hi))
        };
        // Distance to the nearest meridian of the box: asin(cos φ sin Δλ),
        // or to the nearer pole once Δλ is 90° or more.
        let by_lng = if gap >= 90.0 {
            (90.0 - self.lat.abs()).to_radians() * EARTH_RADIUS_M
        } else {
            (self.cos_lat * gap.to_radians().sin()).min(1.0).asin() * EARTH_RADIUS_M
        };
        by_lat.max(by_lng)
    }

    /// Farthest a point may be and still count.
    fn reach(&self) -> f64 {
        match self.found.last() {
            Some(&(d, _)) if self.found.len() == self.limit => d,
            _ => self.radius_m,
        }
    }

    fn consider<T: Located>(&mut self, points: &[T], index: usize) {
        let p = &points[index];
        let d = distance_m(
            self.lat,
            self.lng,
            f64::from(p.lat_e5()) / 1e5,
            f64::from(p.lng_e5()) / 1e5,
        );
        if d > self.radius_m {
            return;
        }
        let at = self
            .found
            .partition_point(|&(fd, fi)| (fd, fi) < (d, index));
        if at < self.limit {
            self.found.insert(at, (d, index));
            self.found.truncate(self.limit);
        }
    }

    fn walk<T: Located>(&mut self, points: &[T], lo: usize, hi: usize, depth: u32, b: Bounds) {
        if lo >= hi || self.lower_bound(&b) > self.reach() {
            return;
        }
        if hi - lo <= LEAF {
            for i in lo..hi {
                self.consider(points, i);
            }
            return;
        }
        let mid = lo + (hi - lo) / 2;
        self.consider(points, mid);
        let split = f64::from(coordinate(&points[mid], depth)) / 1e5;
        let (mut low, mut high) = (b, b);
        let query = if depth.is_multiple_of(2) {
            low.lat_hi = split;
            high.lat_lo = split;
            self.lat
        } else {
            low.lng_hi = split;
            high.lng_lo = split;
            self.lng
        };
        if query < split {
            self.walk(points, lo, mid, depth + 1, low);
            self.walk(points, mid + 1, hi, depth + 1, high);
        } else {
            self.walk(points, mid + 1, hi, depth + 1, high);
            self.walk(points, lo, mid, depth + 1, low);
        }
    }
}

/// The indices of at most `limit` points of the tree `points` within
/// `radius_m` of (`lat`, `lng`), closest first (ties by index), with their
/// distances in metres.
pub fn nearest<T: Located>(
    points: &[T],
    lat: f64,
    lng: f64,
    radius_m: f64,
    limit: usize,
) -> Vec<(f64, usize)> {
    let mut search = Search {
        lat,
        lng,
        cos_lat: lat.to_radians().cos().abs(),
        radius_m,
        limit,
        found: Vec::with_capacity(limit + 1),
    };
    if limit > 0 {
        let world = Bounds {
            lat_lo: -90.0,
            lat_hi: 90.0,
            lng_lo: -180.0,
            lng_hi: 180.0,
        };
        search.walk(points, 0, points.len(), 0, world);
    }
    search.found
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[derive(Debug, Clone, Copy, PartialEq)]
    struct P(i32, i32);

    impl Located for P {
        fn lat_e5(&self) -> i32 {
            self.0
        }
        fn lng_e5(&self) -> i32 {
            self.1
        }
    }

    /// The answer by brute force.
    fn brute(points: &[P], lat: f64, lng: f64, radius_m: f64, limit: usize) -> Vec<(f64, P)> {
        let mut all: Vec<(f64, P)> = points
            .iter()
            .map(|p| {
                let d = distance_m(lat, lng, f64::from(p.0) / 1e5, f64::from(p.1) / 1e5);
                (d, *p)
            })
            .filter(|(d, _)| *d <= radius_m)
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        all.truncate(limit);
        all
    }

    #[test]
    fn matches_brute_force_everywhere_including_poles_and_antimeridian() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // Clusters near the antimeridian, the poles and one dense town,
        // and points all over.
        let mut points: Vec<P> = Vec::new();
        let clusters: [(f64, f64, f64); 3] =
            [(66.3, 179.9, 1.0), (-89.9, 0.0, 0.5), (89.95, 90.0, 0.1)];
        for (lat, lng, spread) in clusters {
            for _ in 0..3000 {
                let la: f64 = (lat + rng.random_range(-spread..spread)).clamp(-90.0, 90.0);
                let mut lo: f64 = lng + rng.random_range(-spread..spread);
                if lo > 180.0 {
                    lo -= 360.0;
                }
                points.push(P((la * 1e5) as i32, (lo * 1e5) as i32));
            }
        }
        for _ in 0..5000 {
            points.push(P(
                rng.random_range(-9_000_000..=9_000_000),
                rng.random_range(-18_000_000..=18_000_000),
            ));
        }
        for _ in 0..5000 {
            points.push(P(
                3_406_894 + rng.random_range(-2000..2000),
                -11_844_512 + rng.random_range(-2000..2000),
            ));
        }
        let mut tree = points.clone();
        build(&mut tree);
        let queries = [
            (66.32, 179.95, 50_000.0, 20),
            (66.32, -179.95, 50_000.0, 20),
            (-90.0, 180.0, 50_000.0, 20),
            (90.0, -45.0, 50_000.0, 5),
            (34.06894, -118.44512, 1_000.0, 20),
            (34.06894, -118.44512, 50_000.0, 3),
            (0.0, 0.0, 50_000.0, 20),
            (10.0, 20.0, 1.0, 20),
        ];
        for (lat, lng, radius, limit) in queries {
            let got: Vec<(f64, P)> = nearest(&tree, lat, lng, radius, limit)
                .into_iter()
                .map(|(d, i)| (d, tree[i]))
                .collect();
            let want = brute(&points, lat, lng, radius, limit);
            let distances = |v: &[(f64, P)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
            assert_eq!(distances(&got), distances(&want), "{lat} {lng} {radius}");
        }
    }

    #[test]
    fn empty_and_tiny_trees() {
        let mut none: Vec<P> = Vec::new();
        build(&mut none);
        assert!(nearest(&none, 0.0, 0.0, 50_000.0, 20).is_empty());
        let mut one = vec![P(0, 0)];
        build(&mut one);
        assert_eq!(nearest(&one, 0.0, 0.0001, 50_000.0, 20).len(), 1);
        assert!(nearest(&one, 0.0, 0.0001, 50_000.0, 0).is_empty());
    }
}
