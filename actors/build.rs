//! Build script: turns the GeoNames data that the `cities-json` crate ships
//! (22 MB of JSON) into a compact table of about 3 MB for `places/offline.rs`.
//!
//! At run time that crate would materialise every place as four `String`s in
//! a static that is never freed (tens of MB, and seconds of parsing in debug
//! builds). The data still comes only from the dependency, found through
//! `cargo metadata`, so nothing is downloaded, at build time or at run time.
//!
//! Table (little-endian): `u32` count, then per place: latitude and longitude
//! as `i32` in 1e-5 degrees (the data has five decimals, so this is exact),
//! two bytes of country code, a `u8` name length and the name's UTF-8 bytes.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("places.bin");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest_dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    // Only the packages of the platform being built for: the others may not
    // have been fetched, and nothing may be downloaded here.
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let metadata = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
        ])
        .arg(&target)
        .current_dir(&manifest_dir)
        .output()
        .expect("run cargo metadata");
    assert!(
        metadata.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&metadata.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&metadata.stdout).expect("cargo metadata prints JSON");
    let manifest = metadata["packages"]
        .as_array()
        .and_then(|packages| {
            packages
                .iter()
                .find(|p| p["name"] == "cities-json")
                .and_then(|p| p["manifest_path"].as_str())
        })
        .expect("cities-json is a dependency");
    let data = PathBuf::from(manifest)
        .parent()
        .expect("a manifest has a folder")
        .join("upstream")
        .join("cities.json");
    println!("cargo:rerun-if-changed={}", data.display());
    let cities: Vec<serde_json::Value> =
        serde_json::from_slice(&fs::read(&data).expect("read cities.json"))
            .expect("parse cities.json");

    let mut table = Vec::with_capacity(4 << 20);
    let mut count: u32 = 0;
    table.extend_from_slice(&0u32.to_le_bytes());
    for city in &cities {
        let (Some(lat), Some(lng), Some(name), Some(country)) = (
            city["lat"].as_str().and_then(e5),
            city["lng"].as_str().and_then(e5),
            city["name"].as_str(),
            city["country"].as_str(),
        ) else {
            continue;
        };
        let name = truncate(name, 255);
        let cc = country.as_bytes();
        table.extend_from_slice(&lat.to_le_bytes());
        table.extend_from_slice(&lng.to_le_bytes());
        table.extend_from_slice(&[*cc.first().unwrap_or(&b'?'), *cc.get(1).unwrap_or(&b'?')]);
        table.push(name.len() as u8);
        table.extend_from_slice(name.as_bytes());
        count += 1;
    }
    table[..4].copy_from_slice(&count.to_le_bytes());
    fs::write(&out, table).expect("write places.bin");
}

/// "42.57952" -> 4257952, exactly (up to five decimals).
fn e5(text: &str) -> Option<i32> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if frac.len() > 5 {
        // More precision than the table keeps: round through a float.
        let value: f64 = text.parse().ok()?;
        return Some((value * 1e5).round() as i32);
    }
    let scaled = format!("{int}{frac:0<5}").parse::<i32>().ok()?;
    Some(if negative { -scaled } else { scaled })
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
