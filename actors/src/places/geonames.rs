//! The `offline` provider's places from a GeoNames dump
//! (`places.geonames_file`): `allCountries.txt`, a country file such as
//! `US.txt`, or `cities500.txt`, in GeoNames' tab-separated format
//! (<https://download.geonames.org/export/dump/readme.txt>), loaded once per
//! process in a background thread instead of the embedded towns.
//!
//! Every row becomes a place, whatever its feature class: islands, parks,
//! schools, airports, hotels. Its `types` come from the feature code
//! ([`super::feature_types`]), its `vicinity` from the admin names when
//! GeoNames' `admin1CodesASCII.txt` and `admin2Codes.txt` lie next to the
//! dump, else from the codes ("CA, US"), its `place_id` is
//! `geonames-<geonameid>`.
//!
//! Memory: one fixed 24-byte [`Entry`] per place, one arena of all names,
//! and small interned tables of feature codes and vicinities; the entries
//! are arranged as a k-d tree ([`super::kdtree`]) in place.
//!
//! The file is read as a stream, line by line, and every line is checked;
//! the first malformed one stops the load with the file name and line
//! number ([`GeoNamesError`]), and the server exits with status 2 (see
//! [`load_in_background`]). While the file loads, a WHATSAT waits for it up
//! to the places deadline, then gets `UNKNOWN_ERROR` "still loading".

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::future::{FutureExt, LocalBoxFuture};
use serde_json::{json, Value};

use super::feature_types::types_for;
use super::kdtree::{self, Located};
use super::offline::nearby_answer;
use super::{error_answer, Provider, Query};

const LOG: &str = "places";

/// Columns of a GeoNames row.
const COLUMNS: usize = 19;

/// Longest name kept, in bytes (cut at a character boundary).
const MAX_NAME: usize = 255;

/// What can be wrong with a GeoNames file.
#[derive(Debug, thiserror::Error)]
pub enum GeoNamesError {
    #[error("{file}: cannot read: {error}")]
    Read { file: String, error: std::io::Error },
    #[error("{file}:{line}: {reason}")]
    Malformed {
        file: String,
        line: u64,
        reason: String,
    },
    #[error("{file}: more names than this index can hold (4 GB)")]
    TooLarge { file: String },
}

/// One place: 24 bytes.
#[derive(Debug, Clone, Copy)]
struct Entry {
    lat_e5: i32,
    lng_e5: i32,
    geonameid: u32,
    name_start: u32,
    vicinity: u32,
    feature: u16,
    name_len: u8,
}

impl Located for Entry {
    fn lat_e5(&self) -> i32 {
        self.lat_e5
    }
    fn lng_e5(&self) -> i32 {
        self.lng_e5
    }
}

/// The fields of a row that make a place.
#[derive(Debug, PartialEq)]
struct Row<'a> {
    geonameid: u32,
    name: &'a str,
    lat_e5: i32,
    lng_e5: i32,
    class: u8,
    code: &'a str,
    country: &'a str,
    admin1: &'a str,
    admin2: &'a str,
}

fn text<'a>(field: &'a [u8], what: &str) -> Result<&'a str, String> {
    std::str::from_utf8(field).map_err(|_| format!("{what} is not UTF-8"))
}

/// Degrees in 1e-5, within ±`limit`.
fn degrees_e5(field: &[u8], what: &str, limit: f64) -> Result<i32, String> {
    let value: f64 = text(field, what)?.parse().map_err(|_| {
        format!(
            "{what} {:?} is not a number",
            String::from_utf8_lossy(field)
        )
    })?;
    if !value.is_finite() || value.abs() > limit {
        return Err(format!("{what} {value} is out of range"));
    }
    Ok((value * 1e5).round() as i32)
}

/// Parses one line (without its line end) of a GeoNames dump.
fn parse_row(line: &[u8]) -> Result<Row<'_>, String> {
    let mut fields = [&b""[..]; COLUMNS];
    let mut count = 0;
    for field in line.split(|&b| b == b'\t') {
        if count < COLUMNS {
            fields[count] = field;
        }
        count += 1;
    }
    if count != COLUMNS {
        return Err(format!("{count} tab-separated columns, not {COLUMNS}"));
    }
    let geonameid = text(fields[0], "geonameid")?
        .parse()
        .map_err(|_| "geonameid is not a number".to_string())?;
    let name = text(fields[1], "name")?;
    if name.is_empty() {
        return Err("empty name".into());
    }
    let class = match fields[6] {
        [] => 0,
        [c] if b"AHLPRSTUV".contains(c) => *c,
        other => {
            return Err(format!(
                "feature class {:?} is not one of A H L P R S T U V",
                String::from_utf8_lossy(other)
            ))
        }
    };
    let code = text(fields[7], "feature code")?;
    if code.len() > 10 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!(
            "feature code {code:?} is not 0-10 letters or digits"
        ));
    }
    let country = text(fields[8], "country code")?;
    if !(country.is_empty()
        || country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase()))
    {
        return Err(format!(
            "country code {country:?} is not two capital letters"
        ));
    }
    Ok(Row {
        geonameid,
        name,
        lat_e5: degrees_e5(fields[4], "latitude", 90.0)?,
        lng_e5: degrees_e5(fields[5], "longitude", 180.0)?,
        class,
        code,
        country,
        admin1: text(fields[10], "admin1 code")?,
        admin2: text(fields[11], "admin2 code")?,
    })
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Admin names by `CC.ADMIN1` or `CC.ADMIN1.ADMIN2`, from GeoNames'
/// `admin1CodesASCII.txt` / `admin2Codes.txt` (code, name, ascii name, id).
fn read_admin_names(path: &Path, names: &mut HashMap<String, String>) -> Result<(), GeoNamesError> {
    let file = path.display().to_string();
    let Ok(opened) = File::open(path) else {
        return Ok(()); // Optional: codes stand in for names.
    };
    for (n, line) in BufReader::new(opened).split(b'\n').enumerate() {
        let line = line.map_err(|error| GeoNamesError::Read {
            file: file.clone(),
            error,
        })?;
        let malformed = |reason: &str| GeoNamesError::Malformed {
            file: file.clone(),
            line: n as u64 + 1,
            reason: reason.into(),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        if line.is_empty() {
            continue;
        }
        let line = std::str::from_utf8(line).map_err(|_| malformed("not UTF-8"))?;
        let mut fields = line.split('\t');
        let (Some(code), Some(name)) = (fields.next(), fields.next()) else {
            return Err(malformed("no tab-separated code and name"));
        };
        names.insert(code.to_owned(), name.to_owned());
    }
    Ok(())
}

/// Builds the index while the file is read.
struct Loader {
    file: String,
    entries: Vec<Entry>,
    names: Vec<u8>,
    features: Vec<(u8, Box<str>)>,
    /// Class byte and code -> index in `features`.
    feature_ids: HashMap<Box<[u8]>, u16>,
    vicinities: Vec<Box<str>>,
    /// Country, admin1 and admin2 codes, tab-separated -> index in `vicinities`.
    vicinity_ids: HashMap<Box<[u8]>, u32>,
    admin_names: HashMap<String, String>,
    /// Scratch space for the keys above, so a known key costs no allocation.
    key: Vec<u8>,
}

impl Loader {
    /// An empty loader for `file`, sized for a file of `size` bytes.
    fn new(file: String, size: u64, admin_names: HashMap<String, String>) -> Loader {
        // About 135 bytes a row in allCountries; the estimate only saves
        // some regrowth.
        let rows = usize::try_from(size / 135).unwrap_or(0).min(20_000_000);
        Loader {
            file,
            entries: Vec::with_capacity(rows),
            names: Vec::with_capacity(rows * 12),
            features: Vec::new(),
            feature_ids: HashMap::new(),
            vicinities: Vec::new(),
            vicinity_ids: HashMap::new(),
            admin_names,
            key: Vec::with_capacity(64),
        }
    }

    /// Adds every row `reader` holds (blank lines skipped), counting rows in
    /// `progress`; stops at the first malformed row.
    fn read_rows(
        &mut self,
        mut reader: impl BufRead,
        progress: &AtomicU64,
    ) -> Result<(), GeoNamesError> {
        let mut line = Vec::with_capacity(1024);
        let mut number = 0u64;
        loop {
            line.clear();
            let read = reader.read_until(b'\n', &mut line);
            if read.map_err(|error| GeoNamesError::Read {
                file: self.file.clone(),
                error,
            })? == 0
            {
                break;
            }
            number += 1;
            let content = line.strip_suffix(b"\n").unwrap_or(&line);
            let content = content.strip_suffix(b"\r").unwrap_or(content);
            if content.is_empty() {
                continue;
            }
            let added = parse_row(content).and_then(|row| self.add(&row));
            if let Err(reason) = added {
                return Err(GeoNamesError::Malformed {
                    file: self.file.clone(),
                    line: number,
                    reason,
                });
            }
            if number.is_multiple_of(65_536) {
                progress.store(number, Ordering::Relaxed);
            }
        }
        progress.store(number, Ordering::Relaxed);
        Ok(())
    }

    /// The searchable index of what was loaded.
    fn into_index(self) -> GeoIndex {
        let Loader {
            mut entries,
            mut names,
            features,
            vicinities,
            ..
        } = self;
        entries.shrink_to_fit();
        names.shrink_to_fit();
        kdtree::build(&mut entries);
        GeoIndex {
            entries,
            names,
            features,
            vicinities,
        }
    }

    fn feature(&mut self, class: u8, code: &str) -> Result<u16, String> {
        self.key.clear();
        self.key.push(class);
        self.key.extend_from_slice(code.as_bytes());
        if let Some(&id) = self.feature_ids.get(self.key.as_slice()) {
            return Ok(id);
        }
        let id = u16::try_from(self.features.len())
            .map_err(|_| "more than 65,535 distinct feature codes".to_string())?;
        self.features.push((class, code.into()));
        self.feature_ids.insert(self.key.as_slice().into(), id);
        Ok(id)
    }

    /// "admin2 name, admin1 name (or code), CC", from what is known.
    fn vicinity_text(&self, row: &Row) -> String {
        let admin1_key = format!("{}.{}", row.country, row.admin1);
        let admin2 = self
            .admin_names
            .get(&format!("{admin1_key}.{}", row.admin2));
        let admin1 = self
            .admin_names
            .get(&admin1_key)
            .map_or(row.admin1, String::as_str);
        let parts = [admin2.map_or("", String::as_str), admin1, row.country];
        parts
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn vicinity(&mut self, row: &Row) -> Result<u32, String> {
        self.key.clear();
        for part in [row.country, row.admin1, row.admin2] {
            self.key.extend_from_slice(part.as_bytes());
            self.key.push(b'\t');
        }
        if let Some(&id) = self.vicinity_ids.get(self.key.as_slice()) {
            return Ok(id);
        }
        let id = u32::try_from(self.vicinities.len())
            .map_err(|_| "too many distinct admin areas".to_string())?;
        let text = self.vicinity_text(row);
        self.vicinities.push(text.into());
        self.vicinity_ids.insert(self.key.as_slice().into(), id);
        Ok(id)
    }

    fn add(&mut self, row: &Row) -> Result<(), String> {
        let name = truncate(row.name, MAX_NAME);
        let name_start = u32::try_from(self.names.len())
            .ok()
            .filter(|start| start.checked_add(name.len() as u32).is_some())
            .ok_or_else(|| "names beyond 4 GB".to_string())?;
        let entry = Entry {
            lat_e5: row.lat_e5,
            lng_e5: row.lng_e5,
            geonameid: row.geonameid,
            name_start,
            vicinity: self.vicinity(row)?,
            feature: self.feature(row.class, row.code)?,
            name_len: name.len() as u8,
        };
        self.names.extend_from_slice(name.as_bytes());
        self.entries.push(entry);
        Ok(())
    }
}

/// Every place of a GeoNames file, searchable by distance.
pub struct GeoIndex {
    entries: Vec<Entry>,
    names: Vec<u8>,
    features: Vec<(u8, Box<str>)>,
    vicinities: Vec<Box<str>>,
}

impl GeoIndex {
    /// Reads `path` (and the admin name files beside it), counting rows
    /// in `progress`.
    pub fn load(path: &Path, progress: &AtomicU64) -> Result<GeoIndex, GeoNamesError> {
        let file = path.display().to_string();
        let opened = File::open(path).map_err(|error| GeoNamesError::Read {
            file: file.clone(),
            error,
        })?;
        let size = opened.metadata().map(|m| m.len()).unwrap_or(0);
        let mut admin_names = HashMap::new();
        if let Some(dir) = path.parent() {
            read_admin_names(&dir.join("admin1CodesASCII.txt"), &mut admin_names)?;
            read_admin_names(&dir.join("admin2Codes.txt"), &mut admin_names)?;
        }
        let mut loader = Loader::new(file, size, admin_names);
        loader.read_rows(BufReader::with_capacity(1 << 20, opened), progress)?;
        Ok(loader.into_index())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Memory held, in bytes (entries, names, interned tables).
    pub fn bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.names.capacity()
            + self.vicinities.iter().map(|v| v.len() + 16).sum::<usize>()
            + self.features.len() * 24
    }

    fn name(&self, entry: &Entry) -> &str {
        let start = entry.name_start as usize;
        self.names
            .get(start..start + usize::from(entry.name_len))
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .unwrap_or("")
    }

    fn place_json(&self, entry: &Entry) -> Value {
        let (class, code) = self
            .features
            .get(usize::from(entry.feature))
            .map_or((0, ""), |(class, code)| (*class, &**code));
        let vicinity = self
            .vicinities
            .get(entry.vicinity as usize)
            .map_or("", |v| &**v);
        json!({
            "geometry": { "location": {
                "lat": f64::from(entry.lat_e5) / 1e5,
                "lng": f64::from(entry.lng_e5) / 1e5,
            } },
            "name": self.name(entry),
            "place_id": format!("geonames-{}", entry.geonameid),
            "types": types_for(class, code),
            "vicinity": vicinity,
        })
    }

    /// The legacy Nearby Search answer for `query`.
    pub fn answer(&self, query: &Query) -> Value {
        let found = kdtree::nearest(
            &self.entries,
            query.location.lat,
            query.location.lon,
            query.radius.km() * 1000.0,
            usize::from(query.bound),
        );
        nearby_answer(
            found
                .iter()
                .map(|&(_, i)| self.place_json(&self.entries[i]))
                .collect(),
        )
    }
}

/// A file being loaded, or loaded.
pub struct Loading {
    file: PathBuf,
    index: OnceLock<GeoIndex>,
    rows: AtomicU64,
    ready: tokio::sync::watch::Sender<bool>,
}

impl Loading {
    pub fn index(&self) -> Option<&GeoIndex> {
        self.index.get()
    }

    /// Waits until the index is ready, at most `wait`.
    async fn ready_within(&self, wait: Duration) -> Option<&GeoIndex> {
        let mut ready = self.ready.subscribe();
        let _ = tokio::time::timeout(wait, ready.wait_for(|r| *r)).await;
        self.index.get()
    }
}

/// What to do when the file turns out malformed: the process cannot serve
/// the places it was told to, so it stops with the settings-error status.
fn refuse(server: &str, error: &GeoNamesError) -> ! {
    log::error!(target: LOG, "{server}: places.geonames_file refused: {error}; exiting");
    eprintln!("herd: places.geonames_file refused: {error}");
    log::logger().flush();
    std::process::exit(2)
}

/// Starts loading `file` in a background thread, once per process, and
/// returns its handle. A malformed or unreadable file ends the process
/// with status 2, naming the file and line. `server`, the first server to
/// ask for the file, names the log lines (and so picks their log file).
pub fn load_in_background(server: Arc<str>, file: &Path) -> Arc<Loading> {
    static LOADS: Mutex<Vec<Arc<Loading>>> = Mutex::new(Vec::new());
    let mut loads = LOADS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(loading) = loads.iter().find(|l| l.file == file) {
        return loading.clone();
    }
    let loading = Arc::new(Loading {
        file: file.to_owned(),
        index: OnceLock::new(),
        rows: AtomicU64::new(0),
        ready: tokio::sync::watch::Sender::new(false),
    });
    loads.push(loading.clone());
    let shared = loading.clone();
    let spawned = std::thread::Builder::new()
        .name("places-load".into())
        .spawn(move || {
            let started = Instant::now();
            match GeoIndex::load(&shared.file, &shared.rows) {
                Ok(index) => {
                    log::info!(target: LOG,
                        "{server}: offline places loaded from {}: {} places in {:.2} s, {} MB \
                         ({} bytes per place)",
                        shared.file.display(), index.len(), started.elapsed().as_secs_f64(),
                        index.bytes() >> 20, index.bytes() / index.len().max(1));
                    let _ = shared.index.set(index);
                    shared.ready.send_replace(true);
                }
                Err(error) => refuse(&server, &error),
            }
        });
    if let Err(e) = spawned {
        refuse(
            "places",
            &GeoNamesError::Read {
                file: file.display().to_string(),
                error: e,
            },
        );
    }
    loading
}

/// The `offline` provider answering from a GeoNames file.
pub struct GeoNames {
    loading: Arc<Loading>,
    /// Longest a WHATSAT waits for the file to finish loading.
    wait: Duration,
}

impl GeoNames {
    pub fn new(server: Arc<str>, file: &Path, wait: Duration) -> GeoNames {
        GeoNames {
            loading: load_in_background(server, file),
            wait,
        }
    }
}

impl Provider for GeoNames {
    fn name(&self) -> &'static str {
        "offline"
    }

    fn nearby(&self, query: Query) -> LocalBoxFuture<'static, Value> {
        if let Some(index) = self.loading.index() {
            return std::future::ready(index.answer(&query)).boxed_local();
        }
        let loading = self.loading.clone();
        let wait = self.wait;
        async move {
            match loading.ready_within(wait).await {
                Some(index) => index.answer(&query),
                None => error_answer(
                    "UNKNOWN_ERROR",
                    &format!(
                        "places data is still loading ({} rows read so far); try again shortly",
                        loading.rows.load(Ordering::Relaxed)
                    ),
                ),
            }
        }
        .boxed_local()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANACAPA: &[u8] = b"5325223\tAnacapa Island\tAnacapa Island\t\t34.01667\t-119.38333\tT\tISL\tUS\t\tCA\t111\t\t\t0\t\t21\tAmerica/Los_Angeles\t2006-01-15";

    #[test]
    fn a_row_gives_its_place() {
        let row = parse_row(ANACAPA).unwrap();
        assert_eq!(
            row,
            Row {
                geonameid: 5325223,
                name: "Anacapa Island",
                lat_e5: 3_401_667,
                lng_e5: -11_938_333,
                class: b'T',
                code: "ISL",
                country: "US",
                admin1: "CA",
                admin2: "111",
            }
        );
        assert_eq!(std::mem::size_of::<Entry>(), 24);
    }

    /// A file of `lines` in a folder of its own (no admin name files).
    fn file_of(tag: &str, lines: &[&[u8]]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("geonames-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("US.txt");
        std::fs::write(&path, lines.join(&b'\n')).unwrap();
        path
    }

    #[test]
    fn a_file_loads_with_code_vicinities_and_reports_the_bad_line_number() {
        let path = file_of("good", &[ANACAPA, b"", ANACAPA]);
        let index = GeoIndex::load(&path, &AtomicU64::new(0)).unwrap();
        assert_eq!(index.len(), 2, "the empty line is skipped");
        let place = index.place_json(&index.entries[0]);
        assert_eq!(place["vicinity"], "CA, US");
        assert_eq!(place["place_id"], "geonames-5325223");
        assert_eq!(place["types"], json!(["natural_feature", "establishment"]));

        let path = file_of("bad", &[ANACAPA, b"", ANACAPA, b"1\tTwo columns"]);
        let error = GeoIndex::load(&path, &AtomicU64::new(0)).err().unwrap();
        let shown = error.to_string();
        assert!(
            shown.starts_with(&format!("{}:4: 2 tab-separated columns", path.display())),
            "{shown}"
        );
    }

    #[test]
    fn malformed_rows_say_why() {
        let with = |column: usize, value: &str| {
            let mut fields: Vec<&[u8]> = ANACAPA.split(|&b| b == b'\t').collect();
            fields[column] = value.as_bytes();
            parse_row(&fields.join(&b'\t')).map(|_| ()).unwrap_err()
        };
        assert!(parse_row(b"1\tx")
            .unwrap_err()
            .contains("2 tab-separated columns"));
        assert!(with(0, "12a").contains("geonameid"));
        assert!(with(1, "").contains("empty name"));
        assert!(with(4, "91").contains("latitude 91 is out of range"));
        assert!(with(5, "east").contains("longitude"));
        assert!(with(5, "NaN").contains("out of range"));
        assert!(with(6, "X").contains("feature class"));
        assert!(with(7, "IS L").contains("feature code"));
        assert!(with(8, "usa").contains("country code"));
        let mut bad_utf8 = ANACAPA.to_vec();
        bad_utf8[10] = 0xff;
        assert!(parse_row(&bad_utf8).unwrap_err().contains("not UTF-8"));
    }
}
