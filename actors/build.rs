//! Build script: turns the GeoNames data that the `cities-json` crate ships
//! (22 MB of JSON) into a compact table of about 3 MB for `places/offline.rs`.
//!
//! At run time that crate would materialise every place as four `String`s in
//! a static that is never freed (tens of MB, and seconds of parsing in debug
//! builds), so it is a build-dependency only, read here through its own API
//! (`cities_json::CITIES`). Nothing asks cargo about the dependency graph, so
//! the build needs exactly what cargo itself downloads for it, and nothing is
//! downloaded at build time or at run time.
//!
//! Table (little-endian): `u32` count, then per place: latitude and longitude
//! as `i32` in 1e-5 degrees (the data has five decimals, so rounding the
//! parsed degrees is exact), two bytes of country code, a `u8` name length and
//! the name's UTF-8 bytes.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    println!("cargo:rerun-if-changed=build.rs");
    let Some(out_dir) = env::var_os("OUT_DIR") else {
        eprintln!("build.rs: cargo did not set OUT_DIR");
        return ExitCode::FAILURE;
    };
    let out = PathBuf::from(out_dir).join("places.bin");
    if let Err(error) = fs::write(&out, table()) {
        eprintln!("build.rs: cannot write {}: {error}", out.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The compact table of every place the crate ships with a usable position.
fn table() -> Vec<u8> {
    let cities = &*cities_json::CITIES;
    let mut table = Vec::with_capacity(4 << 20);
    let mut count: u32 = 0;
    table.extend_from_slice(&0u32.to_le_bytes());
    for city in cities {
        let (Some(lat), Some(lng)) = (e5(city.lat, 90.0), e5(city.lng, 180.0)) else {
            continue;
        };
        let name = truncate(&city.name, 255);
        let cc = city.country.as_bytes();
        table.extend_from_slice(&lat.to_le_bytes());
        table.extend_from_slice(&lng.to_le_bytes());
        table.extend_from_slice(&[*cc.first().unwrap_or(&b'?'), *cc.get(1).unwrap_or(&b'?')]);
        table.push(name.len() as u8);
        table.extend_from_slice(name.as_bytes());
        count += 1;
    }
    table[..4].copy_from_slice(&count.to_le_bytes());
    table
}

/// Degrees -> 1e-5 degrees, exact for the data's five decimals; `None` when
/// not finite or beyond `limit`.
fn e5(degrees: f64, limit: f64) -> Option<i32> {
    (degrees.is_finite() && degrees.abs() <= limit).then(|| (degrees * 1e5).round() as i32)
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
