//! Logging: `env_logger` on stderr (filtered by `RUST_LOG`, default `info`),
//! and a copy of each server's own lines in `<log_dir>/<Name>.log`.
//!
//! Actors log with their role as the target (`connection`, `store`, `peer`,
//! `places`, `listener`) and start every message with their server's name
//! and a colon; that prefix is how a line finds its server's file, so the
//! all-in-one mode still writes one file per server. Files are buffered and
//! flushed every 100 ms and at exit.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use log::{LevelFilter, Log, Metadata, Record};

type LogFile = Arc<Mutex<BufWriter<File>>>;

thread_local! {
    /// The line being written, reused for every log line of this thread.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
    /// The RFC 3339 text of the last whole second stamped on this thread.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Appends `2026-11-26T22:46:38.176513Z`: the date and time part is
/// formatted once per second per thread, the microseconds every time.
fn stamp(line: &mut String) {
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    SECOND.with_borrow_mut(|(secs, text)| {
        if *secs != now.as_secs() {
            *secs = now.as_secs();
            let whole = std::time::UNIX_EPOCH + Duration::from_secs(now.as_secs());
            *text = humantime::format_rfc3339_seconds(whole).to_string();
            text.pop(); // the trailing 'Z'
        }
        line.push_str(text);
    });
    let _ = write!(line, ".{:06}Z", now.subsec_micros());
}

struct HerdLogger {
    stderr: env_logger::Logger,
    /// One file per server of this process: a handful, so a list scanned
    /// by name is cheaper than hashing the name for every line.
    files: Vec<(String, LogFile)>,
    file_level: LevelFilter,
}

impl Log for HerdLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.stderr.enabled(metadata) || metadata.level() <= self.file_level
    }

    fn log(&self, record: &Record) {
        if self.stderr.matches(record) {
            self.stderr.log(record);
        }
        if record.level() > self.file_level || self.files.is_empty() {
            return;
        }
        // Format once into this thread's buffer (no allocation per line), then
        // route by the server name that starts the message.
        LINE.with_borrow_mut(|line| {
            line.clear();
            stamp(line);
            let _ = write!(line, " {:<5} {}: ", record.level(), record.target());
            let start = line.len();
            let _ = writeln!(line, "{}", record.args());
            let Some((server, _)) = line[start..].split_once(':') else {
                return;
            };
            if let Some((_, file)) = self.files.iter().find(|(name, _)| name == server) {
                if let Ok(mut file) = file.lock() {
                    let _ = file.write_all(line.as_bytes());
                }
            }
        });
    }

    fn flush(&self) {
        self.stderr.flush();
        for (_, file) in &self.files {
            if let Ok(mut file) = file.lock() {
                let _ = file.flush();
            }
        }
    }
}

/// Installs the logger for `servers`. A log file that cannot be opened is
/// reported and skipped; the server still runs and logs to stderr.
pub fn init(log_dir: &str, servers: &[String], file_level: &str) {
    let stderr =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let file_level = file_level.parse().unwrap_or(LevelFilter::Info);
    let mut files = Vec::new();
    let mut problems = Vec::new();
    if !log_dir.is_empty() {
        if let Err(e) = std::fs::create_dir_all(log_dir) {
            problems.push(format!("cannot create log folder {log_dir}: {e}"));
        }
        for server in servers {
            let path = Path::new(log_dir).join(format!("{server}.log"));
            match OpenOptions::new().create(true).append(true).open(&path) {
                Ok(file) => {
                    files.push((server.clone(), Arc::new(Mutex::new(BufWriter::new(file)))));
                }
                Err(e) => problems.push(format!("cannot open log file {}: {e}", path.display())),
            }
        }
    }
    let max = stderr.filter().max(file_level);
    let logger = HerdLogger {
        stderr,
        files: files.clone(),
        file_level: if files.is_empty() {
            LevelFilter::Off
        } else {
            file_level
        },
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(max);
    }
    for problem in problems {
        log::warn!(target: "herd", "{problem}");
    }
    if !files.is_empty() {
        let spawned = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(100));
                for (_, file) in &files {
                    if let Ok(mut file) = file.lock() {
                        let _ = file.flush();
                    }
                }
            });
        if let Err(e) = spawned {
            log::warn!(target: "herd", "log files will only be flushed at exit: {e}");
        }
    }
}

/// Logs every panic to the log of each server of this process (a panic
/// names no server, and in one process they share it), with its thread and
/// place, and lets the process go on: a panic ends only the task it
/// happened in (one connection, one request), never the other connections
/// or the other servers (SPEC §4).
pub fn log_panics(servers: Vec<String>) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        for server in &servers {
            log::error!(target: "herd", "{server}: panic in thread {thread}: {info}");
        }
        log::logger().flush();
    }));
}
