//! Logging: `env_logger` on stderr (filtered by `RUST_LOG`, default `info`),
//! and a copy of each server's own lines in `<log_dir>/<Name>.log`.
//!
//! Actors log with their role as the target (`connection`, `store`, `peer`,
//! `places`, `listener`) and start every message with their server's name
//! and a colon; that prefix is how a line finds its server's file, so the
//! all-in-one mode still writes one file per server. Files are buffered (64
//! KiB) and flushed every 100 ms and at exit: a line reaches its file within
//! 100 ms, and a SIGTERM loses none. Every 100 ms what a file gained is also
//! written to disk and dropped from the page cache ([`write_out`]).
//!
//! `herd.log_format` chooses what a line looks like, on stderr and in the
//! files alike: `text` (`<time> <LEVEL> <target>: <Name>: <message>`) or
//! `json`, one object per line ([`json`]), for log collectors.

mod json;

use std::cell::RefCell;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use log::{LevelFilter, Log, Metadata, Record};

crate::choice::choice! {
    /// What a log line looks like (`herd.log_format`).
    #[derive(Default)]
    pub enum LogFormat ("log format") {
        /// Plain lines for people: time, level, target, message.
        #[default]
        Text = "text",
        /// One JSON object per line, for Loki, Elasticsearch and the like.
        Json = "json",
    }
}

type LogFile = Arc<Mutex<BufWriter<File>>>;

/// Bytes of log lines held before a write: at full load a few hundred
/// lines go to the file in one write (every 100 ms at least, and at exit).
const LOG_BUFFER: usize = 64 * 1024;

thread_local! {
    /// The line being written, reused for every log line of this thread.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
    /// The RFC 3339 text of the last whole second stamped on this thread.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    /// The time and message of the record being written as JSON.
    static MESSAGE: RefCell<String> = const { RefCell::new(String::new()) };
    /// The JSON line being written, reused like `LINE`.
    static JSON: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
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
    // Six digits, zero-padded, without the formatting machinery (every
    // client line is logged).
    let micros = now.subsec_micros();
    line.push('.');
    for shift in [100_000, 10_000, 1_000, 100, 10, 1] {
        line.push(char::from(b'0' + (micros / shift % 10) as u8));
    }
    line.push('Z');
}

/// The level as `{:<5}` would write it, without the formatting machinery
/// (a log line is written for every client line).
fn padded(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "ERROR",
        log::Level::Warn => "WARN ",
        log::Level::Info => "INFO ",
        log::Level::Debug => "DEBUG",
        log::Level::Trace => "TRACE",
    }
}

/// Splits `Name: message` into the server and the message when `Name` is
/// one of `servers`; otherwise the message is no server's.
fn split_server<'m>(message: &'m str, servers: &[String]) -> (Option<&'m str>, &'m str) {
    // Every client line is logged: a prefix test per server of this process
    // (a handful) costs less than searching the message for ": ".
    for server in servers {
        if let Some(rest) = message
            .strip_prefix(server.as_str())
            .and_then(|rest| rest.strip_prefix(": "))
        {
            return (Some(&message[..server.len()]), rest);
        }
    }
    (None, message)
}

/// Formats `record` as a JSON line (reusing this thread's buffers) and hands
/// it, with the server it belongs to, to `sink`.
fn with_json_line(record: &Record, servers: &[String], sink: impl FnOnce(Option<&str>, &[u8])) {
    MESSAGE.with_borrow_mut(|text| {
        text.clear();
        stamp(text);
        let time_end = text.len();
        let _ = write!(text, "{}", record.args());
        let (time, message) = text.split_at(time_end);
        let (server, message) = split_server(message, servers);
        let line = json::Line {
            time,
            level: record.level(),
            target: record.target(),
            server,
            message,
        };
        JSON.with_borrow_mut(|out| {
            out.clear();
            json::write(out, &line, record);
            sink(server, out);
        });
    });
}

struct HerdLogger {
    stderr: env_logger::Logger,
    format: LogFormat,
    /// The servers of this process, whose names start their messages.
    servers: Box<[String]>,
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
        let to_stderr = self.stderr.matches(record);
        let to_file = record.level() <= self.file_level && !self.files.is_empty();
        match self.format {
            LogFormat::Text => {
                if to_stderr {
                    self.stderr.log(record);
                }
                if to_file {
                    self.log_text_to_file(record);
                }
            }
            // Formatted once, with one time, for stderr and the file alike;
            // env_logger still decides (RUST_LOG) what reaches stderr.
            LogFormat::Json if to_stderr || to_file => {
                with_json_line(record, &self.servers, |server, line| {
                    if to_stderr {
                        let _ = std::io::stderr().lock().write_all(line);
                    }
                    if let Some(file) = server.and_then(|s| self.file_of(s)).filter(|_| to_file) {
                        if let Ok(mut file) = file.lock() {
                            let _ = file.write_all(line);
                        }
                    }
                });
            }
            LogFormat::Json => {}
        }
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

impl HerdLogger {
    fn file_of(&self, server: &str) -> Option<&LogFile> {
        self.files
            .iter()
            .find(|(name, _)| name == server)
            .map(|(_, file)| file)
    }

    fn log_text_to_file(&self, record: &Record) {
        // Format once into this thread's buffer (no allocation per line), then
        // route by the server name that starts the message.
        LINE.with_borrow_mut(|line| {
            line.clear();
            stamp(line);
            line.push(' ');
            line.push_str(padded(record.level()));
            line.push(' ');
            line.push_str(record.target());
            line.push_str(": ");
            let start = line.len();
            let _ = write!(line, "{}", record.args());
            line.push('\n');
            let (server, _) = split_server(&line[start..], &self.servers);
            if let Some(file) = server.and_then(|server| self.file_of(server)) {
                if let Ok(mut file) = file.lock() {
                    let _ = file.write_all(line.as_bytes());
                }
            }
        });
    }
}

/// Installs the logger for `servers`, writing lines in `format`. A log file
/// that cannot be opened is reported and skipped; the server still runs and
/// logs to stderr.
pub fn init(log_dir: Option<&Path>, servers: &[String], file_level: &str, format: LogFormat) {
    let stderr =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let file_level = file_level.parse().unwrap_or(LevelFilter::Info);
    let mut files = Vec::new();
    // A second handle on each file, for the flush thread to write it out
    // with ([`write_out`]) without holding up a thread that logs.
    let mut second_handles = Vec::new();
    let mut problems = Vec::new();
    if let Some(log_dir) = log_dir {
        if let Err(e) = std::fs::create_dir_all(log_dir) {
            problems.push(format!(
                "cannot create log folder {}: {e}",
                log_dir.display()
            ));
        }
        for server in servers {
            let path = log_dir.join(format!("{server}.log"));
            match OpenOptions::new().create(true).append(true).open(&path) {
                Ok(file) => {
                    second_handles.push(file.try_clone().ok());
                    files.push((
                        server.clone(),
                        Arc::new(Mutex::new(BufWriter::with_capacity(LOG_BUFFER, file))),
                    ));
                }
                Err(e) => problems.push(format!("cannot open log file {}: {e}", path.display())),
            }
        }
    }
    let max = stderr.filter().max(file_level);
    let logger = HerdLogger {
        stderr,
        format,
        servers: servers.into(),
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
        // Each file, its second handle, and how far it has been written out.
        let mut flushed: Vec<(LogFile, Option<File>, u64)> = files
            .into_iter()
            .zip(second_handles)
            .map(|((_, file), out)| (file, out, 0))
            .collect();
        let spawned = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(100));
                for (file, out, written_out) in &mut flushed {
                    if let Ok(mut file) = file.lock() {
                        let _ = file.flush();
                    }
                    if let Some(out) = out {
                        write_out(out, written_out);
                    }
                }
            });
        if let Err(e) = spawned {
            log::warn!(target: "herd", "log files will only be flushed at exit: {e}");
        }
    }
}

/// Writes what `file` gained since `written_out` to disk and drops it from
/// the page cache. At full load a server logs over 100 MB a second (every
/// client line, SPEC §6) that nobody reads back at once: kept cached, a few
/// seconds of it take gigabytes of memory, and on the benchmark machine a
/// write cost over ten times more once the cache held about 2 GB more
/// (BENCHMARKS.md, "Log files and the page cache").
fn write_out(file: &File, written_out: &mut u64) {
    let Ok(length) = file.metadata().map(|m| m.len()) else {
        return;
    };
    if length < *written_out {
        // Truncated under us (a rotation by copy and truncate): start over.
        *written_out = 0;
    }
    if length == *written_out || file.sync_data().is_err() {
        return;
    }
    // From the start of the page written out last time: it may have been
    // only partly written then, and a page partly in range stays cached.
    let page = rustix::param::page_size() as u64;
    let from = *written_out - *written_out % page;
    let _ = rustix::fs::fadvise(
        file,
        from,
        std::num::NonZeroU64::new(length - from),
        rustix::fs::Advice::DontNeed,
    );
    *written_out = length;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_belongs_to_the_server_it_starts_with() {
        let servers = ["Riley".to_string(), "Jaquez".to_string()];
        assert_eq!(
            split_server("Riley: client 127.0.0.1:4 connected", &servers),
            (Some("Riley"), "client 127.0.0.1:4 connected")
        );
        // Not a server of this process, or no prefix at all: no server's.
        assert_eq!(split_server("Bernard: up", &servers), (None, "Bernard: up"));
        assert_eq!(
            split_server("shutting down", &servers),
            (None, "shutting down")
        );
    }

    #[test]
    fn a_stamp_is_rfc3339_with_six_digits_of_microseconds() {
        let mut line = String::new();
        stamp(&mut line);
        // 2026-11-26T22:46:38.176513Z
        let bytes = line.as_bytes();
        assert_eq!(bytes.len(), 27, "{line}");
        assert_eq!(
            (bytes[10], bytes[19], bytes[26]),
            (b'T', b'.', b'Z'),
            "{line}"
        );
        assert!(bytes[20..26].iter().all(u8::is_ascii_digit), "{line}");
        let whole = humantime::parse_rfc3339(&format!("{}Z", &line[..19]));
        assert!(whole.is_ok(), "{line}");
    }

    #[test]
    fn the_format_setting_is_text_or_json() {
        #[derive(serde::Deserialize)]
        struct Holder {
            format: LogFormat,
        }
        let parse = |text: &str| serde_json::from_str::<Holder>(text).map(|h| h.format);
        assert_eq!(parse(r#"{"format":"json"}"#).ok(), Some(LogFormat::Json));
        assert_eq!(parse(r#"{"format":"text"}"#).ok(), Some(LogFormat::Text));
        assert!(parse(r#"{"format":"yaml"}"#).is_err());
        assert_eq!(LogFormat::default(), LogFormat::Text);
    }
}
