//! One log record as one line of JSON (`herd.log_format = "json"`), for
//! Loki, Elasticsearch and the like to take without parsing:
//!
//! ```text
//! {"time":"2026-12-02T19:05:01.123456Z","level":"info","target":"connection","server":"Riley","message":"127.0.0.1:40312 < IAMAT ...","addr":"127.0.0.1:40312","direction":"in"}
//! ```
//!
//! `server` is the name the message starts with (`Riley: ...`), taken off
//! the message; a record of no server of this process has no `server`. The
//! record's structured key-values (`addr`, `direction` of a logged client
//! line) follow as fields of their own, numbers and booleans as such, other
//! values as strings. serde_json escapes every control character, so a line
//! is always one line, whatever bytes a client sent.

use log::kv::{self, Key, Value, VisitSource};
use log::Record;
use serde::ser::{Error as _, SerializeMap, Serializer as _};

/// The fields every line has: a key-value of the same name is left out
/// rather than written twice (a JSON object with a repeated key is read
/// differently by different tools).
const FIXED_FIELDS: [&str; 5] = ["time", "level", "target", "server", "message"];

/// What a line says besides the record's key-values.
pub struct Line<'a> {
    /// RFC 3339, UTC, microseconds.
    pub time: &'a str,
    pub level: log::Level,
    pub target: &'a str,
    pub server: Option<&'a str>,
    /// The message, without its `Server: ` prefix.
    pub message: &'a str,
}

/// Appends `line` and the key-values of `record` to `out` as one JSON
/// object and a `\n`.
pub fn write(out: &mut Vec<u8>, line: &Line, record: &Record) {
    let start = out.len();
    let mut serializer = serde_json::Serializer::new(&mut *out);
    let written = write_object(&mut serializer, line, record);
    let out = serializer.into_inner();
    match written {
        Ok(()) => out.push(b'\n'),
        // Writing to a Vec cannot fail, and every value is text or a number;
        // should it fail all the same, no half object is left behind.
        Err(_) => out.truncate(start),
    }
}

fn write_object(
    serializer: &mut serde_json::Serializer<&mut Vec<u8>>,
    line: &Line,
    record: &Record,
) -> Result<(), serde_json::Error> {
    let mut map = serializer.serialize_map(None)?;
    map.serialize_entry("time", line.time)?;
    map.serialize_entry("level", level_name(line.level))?;
    map.serialize_entry("target", line.target)?;
    if let Some(server) = line.server {
        map.serialize_entry("server", server)?;
    }
    map.serialize_entry("message", line.message)?;
    let mut fields = Fields {
        map: &mut map,
        failed: None,
    };
    if record.key_values().visit(&mut fields).is_err() {
        return Err(fields
            .failed
            .unwrap_or_else(|| serde_json::Error::custom("key-values")));
    }
    map.end()
}

/// Levels in lower case, as most log tools spell them.
fn level_name(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "error",
        log::Level::Warn => "warn",
        log::Level::Info => "info",
        log::Level::Debug => "debug",
        log::Level::Trace => "trace",
    }
}

/// Writes each key-value of a record into the open JSON object.
struct Fields<'m, M: SerializeMap<Error = serde_json::Error>> {
    map: &'m mut M,
    failed: Option<serde_json::Error>,
}

impl<'kvs, M: SerializeMap<Error = serde_json::Error>> VisitSource<'kvs> for Fields<'_, M> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
        let key = key.as_str();
        if FIXED_FIELDS.contains(&key) {
            return Ok(());
        }
        let written = if let Some(b) = value.to_bool() {
            self.map.serialize_entry(key, &b)
        } else if let Some(n) = value.to_u64() {
            self.map.serialize_entry(key, &n)
        } else if let Some(n) = value.to_i64() {
            self.map.serialize_entry(key, &n)
        } else if let Some(n) = value.to_f64() {
            self.map.serialize_entry(key, &n)
        } else if let Some(text) = value.to_borrowed_str() {
            self.map.serialize_entry(key, text)
        } else {
            self.map.serialize_entry(key, &AsText(&value))
        };
        written.map_err(|e| {
            self.failed = Some(e);
            kv::Error::msg("a key-value could not be written")
        })
    }
}

/// A value written as a JSON string through its `Display`, with no
/// intermediate `String`.
struct AsText<'a, T: std::fmt::Display>(&'a T);

impl<T: std::fmt::Display> serde::Serialize for AsText<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value as Json};

    fn line<'a>(server: Option<&'a str>, message: &'a str) -> Line<'a> {
        Line {
            time: "2026-12-02T19:05:01.123456Z",
            level: log::Level::Info,
            target: "connection",
            server,
            message,
        }
    }

    /// The line written for `line` and key-values `kvs`, checked to be one
    /// line ending in `\n`, parsed.
    fn written(line: &Line, kvs: &[(&str, Value)]) -> Json {
        let mut out = b"before\n".to_vec();
        let record = Record::builder()
            .args(format_args!("unused: the message comes from Line"))
            .key_values(&kvs)
            .build();
        write(&mut out, line, &record);
        let text = out.strip_prefix(b"before\n").expect("appended");
        assert_eq!(text.last(), Some(&b'\n'));
        assert!(!text[..text.len() - 1].contains(&b'\n'), "one line");
        serde_json::from_slice(text).expect("JSON")
    }

    #[test]
    fn a_line_log_has_its_fields_and_key_values() {
        let message = "127.0.0.1:40312 < IAMAT a +1+1 1";
        let kvs = [
            ("addr", Value::from("127.0.0.1:40312")),
            ("direction", Value::from("in")),
        ];
        assert_eq!(
            written(&line(Some("Riley"), message), &kvs),
            json!({
                "time": "2026-12-02T19:05:01.123456Z",
                "level": "info",
                "target": "connection",
                "server": "Riley",
                "message": message,
                "addr": "127.0.0.1:40312",
                "direction": "in",
            })
        );
    }

    #[test]
    fn fields_keep_their_order_for_people_reading_the_raw_line() {
        let mut out = Vec::new();
        let record = Record::builder().args(format_args!("")).build();
        write(&mut out, &line(Some("Riley"), "up"), &record);
        assert_eq!(
            String::from_utf8(out).expect("UTF-8"),
            "{\"time\":\"2026-12-02T19:05:01.123456Z\",\"level\":\"info\",\
             \"target\":\"connection\",\"server\":\"Riley\",\"message\":\"up\"}\n"
        );
    }

    #[test]
    fn a_record_of_no_server_has_no_server_field() {
        let parsed = written(&line(None, "shutting down"), &[]);
        assert_eq!(parsed.get("server"), None);
        assert_eq!(parsed["message"], "shutting down");
    }

    #[test]
    fn control_characters_never_break_the_line() {
        let message = "a\u{1b}[2J\r\nb\u{7}\"\\";
        let mut out = Vec::new();
        let record = Record::builder().args(format_args!("")).build();
        write(&mut out, &line(Some("Riley"), message), &record);
        let body = &out[..out.len() - 1];
        assert!(!body.iter().any(|b| *b < 0x20), "{out:?}");
        let parsed: Json = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(parsed["message"], message);
    }

    #[test]
    fn numbers_stay_numbers_and_fixed_fields_are_not_repeated() {
        let kvs = [
            ("records", Value::from(12u64)),
            ("delta", Value::from(-3i64)),
            ("ok", Value::from(true)),
            ("message", Value::from("a second message")),
            ("peer", Value::from_display(&std::net::Ipv4Addr::LOCALHOST)),
        ];
        let mut out = Vec::new();
        let record = Record::builder()
            .args(format_args!(""))
            .key_values(&kvs)
            .build();
        write(&mut out, &line(Some("Riley"), "synced"), &record);
        let text = String::from_utf8(out).expect("UTF-8");
        assert_eq!(text.matches("\"message\"").count(), 1, "{text}");
        let parsed: Json = serde_json::from_str(&text).expect("JSON");
        assert_eq!(parsed["message"], "synced");
        assert_eq!(parsed["records"], 12);
        assert_eq!(parsed["delta"], -3);
        assert_eq!(parsed["ok"], true);
        assert_eq!(parsed["peer"], "127.0.0.1");
    }
}
