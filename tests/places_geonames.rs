//! The offline provider reading a GeoNames dump (`places.geonames_file`,
//! SPEC §5) end to end: real files, read by a real `herd` process (a server
//! in the test process where only its answers are checked).
//!
//! `tests/fixtures/geonames/US.txt` holds ten hand-made rows in GeoNames'
//! exact format (19 tab-separated columns; coordinates rounded) around
//! Anacapa Island, where the embedded towns have nothing within 10 km, with
//! the `admin1CodesASCII.txt` and `admin2Codes.txt` lines they need;
//! `tests/fixtures/geonames-malformed/US.txt` has 18 columns on line 3.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{wait_until, Client, Herd, HerdBuilder};
use serde_json::Value;

/// By Anacapa Island, as the issue measured it.
const ANACAPA: &str = "+34.068940-119.445127";

fn fixture(path: &str) -> String {
    format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))
}

/// Riley reading `file`, with more `[places]` lines.
fn herd_reading(file: &str, places: &[&str]) -> HerdBuilder {
    Herd::one("Riley")
        .setting("places", &format!("geonames_file = {file:?}"))
        .settings("places", places)
}

fn iamat_anacapa(client: &mut Client) -> String {
    client.send(&format!("IAMAT kiwi {ANACAPA} 1621464827.959498503"));
    let at = client.read_line();
    assert!(at.starts_with("AT Riley "), "{at}");
    at
}

fn whatsat(client: &mut Client, at: &str, radius: &str, bound: u8) -> Value {
    client.send(&format!("WHATSAT kiwi {radius} {bound}"));
    assert_eq!(client.read_line(), at);
    let json = client.read_until_blank();
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

fn names(answer: &Value) -> Vec<&str> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect()
}

#[test]
fn a_geonames_file_gives_islands_parks_and_lighthouses_closest_first() {
    let herd = herd_reading(&fixture("geonames/US.txt"), &[]).start_one();
    let mut client = herd.client("Riley");
    let at = iamat_anacapa(&mut client);

    let answer = whatsat(&mut client, &at, "10", 20);
    assert_eq!(answer["status"], "OK", "{answer}");
    assert_eq!(
        names(&answer),
        [
            "Anacapa Passage",
            "West Anacapa Island",
            "Channel Islands National Park",
            "Anacapa Island",
            "Anacapa Island Light",
        ]
    );
    let island = &answer["results"][1];
    assert_eq!(island["place_id"], "geonames-5325224");
    assert_eq!(island["types"][0], "natural_feature");
    assert_eq!(island["vicinity"], "Ventura County, California, US");
    assert_eq!(island["geometry"]["location"]["lat"], 34.01444);
    assert_eq!(island["geometry"]["location"]["lng"], -119.42694);
    assert_eq!(answer["results"][2]["types"][0], "park");
    assert_eq!(answer["results"][4]["types"][0], "tourist_attraction");
    assert!(answer["html_attributions"][0]
        .as_str()
        .unwrap()
        .contains("GeoNames"));

    // Farther out: the town, its airport, hotel and school; cut to the bound.
    let wide = whatsat(&mut client, &at, "40", 20);
    let types = |name: &str| {
        let place = wide["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {wide}"));
        place["types"][0].as_str().unwrap().to_string()
    };
    assert_eq!(types("Camarillo Airport"), "airport");
    assert_eq!(types("Oxnard Harbor Hotel"), "lodging");
    assert_eq!(types("Oxnard High School"), "school");
    assert_eq!(types("Oxnard"), "locality");
    assert_eq!(names(&whatsat(&mut client, &at, "40", 2)).len(), 2);

    // The load is in the server's log, with its size.
    herd.wait_for_log("Riley", &["Riley: offline places loaded from"]);
}

#[test]
fn a_malformed_geonames_file_stops_the_server_naming_file_and_line() {
    let file = fixture("geonames-malformed/US.txt");
    let output = herd_reading(&file, &[]).build().run_to_exit("Riley", &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{file}:3: 18 tab-separated columns")),
        "{stderr}"
    );

    // A file that is not there is a settings error, before anything starts
    // (named here through the environment, as an operator may).
    let missing = [(
        "HERD_PLACES__GEONAMES_FILE",
        "/nonexistent/allCountries.txt",
    )];
    let output = Herd::one("Riley").build().run_to_exit("Riley", &missing);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/allCountries.txt"), "{stderr}");
}

/// Writes `rows` made-up GeoNames rows (places on a grid over Europe) to
/// `path`.
fn write_rows(path: &std::path::Path, rows: u32) {
    let file = std::fs::File::create(path).unwrap();
    let mut out = std::io::BufWriter::new(file);
    for id in 0..rows {
        let lat = 40.0 + f64::from(id % 1000) * 0.01;
        let lng = f64::from(id / 1000) * 0.01;
        writeln!(
            out,
            "{id}\tPlace {id}\tPlace {id}\t\t{lat:.5}\t{lng:.5}\tS\tHTL\tFR\t\t11\t75\t\t\t0\t\t35\tEurope/Paris\t2024-01-01"
        )
        .unwrap();
    }
    out.flush().unwrap();
}

#[test]
fn the_listener_answers_while_a_large_file_loads() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("allCountries.txt");
    write_rows(&file, 400_000);
    // A WHATSAT waits for the load at most timeout_ms: here 1 ms.
    let builder = herd_reading(file.to_str().unwrap(), &["timeout_ms = 1"]);
    let started = Instant::now();
    let herd = builder.start_in_process();
    let listening = started.elapsed();
    let mut client = herd.client("Riley");
    let at = iamat_anacapa(&mut client);
    let early = whatsat(&mut client, &at, "10", 5);
    assert_eq!(early["status"], "UNKNOWN_ERROR", "{early}");
    assert!(
        early["error_message"]
            .as_str()
            .unwrap()
            .contains("still loading"),
        "{early}"
    );
    eprintln!("listening after {listening:?}, while the file was still loading");

    // Once loaded, the places are there (Paris at 48.85, 2.35 is on the grid).
    client.send("IAMAT kiwi +48.85+2.35 1621464828.0");
    let at = client.read_line();
    wait_until(Duration::from_secs(120), "the file to load", || {
        whatsat(&mut client, &at, "1", 3)["status"] == "OK"
    });
    let answer = whatsat(&mut client, &at, "1", 3);
    assert_eq!(names(&answer)[0], "Place 235885");
    assert_eq!(answer["results"][0]["types"][0], "lodging");
    assert_eq!(answer["results"][0]["vicinity"], "11, FR");
}

/// The figures of BENCHMARKS.md, "Places", for a GeoNames file. Not a test:
/// make a file with `bench/gen_geonames.py`, then run
/// `HERD_BENCH_GEONAMES=/path/allCountries.txt cargo test --release --test
/// places_geonames -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_geonames_file() {
    let Ok(file) = std::env::var("HERD_BENCH_GEONAMES") else {
        eprintln!("set HERD_BENCH_GEONAMES to a GeoNames file");
        return;
    };
    let herd = herd_reading(&file, &["timeout_ms = 600000"]).build();
    let port = herd.ports("Riley").client;
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_herd"))
        .arg("--config")
        .arg(&herd.config)
        .arg("Riley")
        .current_dir(herd.dir.path())
        .env("HERD_HERD__LOG_LINES", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    /// Stops the server however the measurement ends.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Stop(child);
    wait_until(Duration::from_secs(10), "the listener", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let listening = started.elapsed();
    wait_until(Duration::from_secs(1200), "the file to load", || {
        herd.log("Riley").contains("offline places loaded")
    });
    let loaded = started.elapsed();
    let mut client = Client::connect(port);
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.0.id())).unwrap();
    let memory = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_default()
            .to_string()
    };
    let log = herd.log("Riley");
    let line = log
        .lines()
        .find(|l| l.contains("offline places loaded"))
        .unwrap_or_default();
    println!("listening after {listening:?}; loaded after {loaded:?}");
    println!("{line}");
    println!("{} / {}", memory("VmRSS"), memory("VmHWM"));

    // Query points: the town centres the generator wrote, else Anacapa.
    let points: Vec<String> = std::fs::read_to_string(format!("{file}.queries"))
        .map(|text| {
            text.lines()
                .filter_map(|l| {
                    let (lat, lng) = l.split_once(' ')?;
                    let (lat, lng): (f64, f64) = (lat.parse().ok()?, lng.parse().ok()?);
                    Some(format!("{lat:+.5}{lng:+.5}"))
                })
                .collect()
        })
        .unwrap_or_default();
    let points = if points.is_empty() {
        vec![ANACAPA.to_string()]
    } else {
        points
    };
    for (i, point) in points.iter().enumerate() {
        client.send(&format!("IAMAT q{i} {point} 1621464827.0"));
        client.read_line();
    }
    for radius in ["1", "10", "50"] {
        let mut micros = Vec::new();
        let mut results = 0;
        for n in 0..5000 {
            let i = n % points.len();
            let begun = Instant::now();
            client.send(&format!("WHATSAT q{i} {radius} 20"));
            client.read_line();
            let json = client.read_until_blank();
            micros.push(begun.elapsed().as_micros());
            results += json.matches("\"place_id\"").count();
        }
        micros.sort_unstable();
        println!(
            "WHATSAT radius {radius} km bound 20: p50 {} us, p99 {} us, {:.1} results on average",
            micros[micros.len() / 2],
            micros[micros.len() * 99 / 100],
            results as f64 / 5000.0
        );
    }
    drop(child);
}
