//! How bytes that came from outside (client lines, peer lines, stored
//! records) are shown in logs: [`LogText`].
//!
//! A client chooses every byte of its line, so a line written to the log raw
//! could carry ESC sequences that repaint an operator's terminal, or a CR
//! that hides the start of a log line. Here control bytes and backslashes
//! are escaped (`\x1b`, `\r`, `\\`) and invalid UTF-8 is shown as `\xNN`, so
//! a logged line is one printable line that says exactly which bytes came.

use std::fmt::{self, Write as _};

/// Displays bytes from outside safely; see the module comment.
pub struct LogText<'a> {
    bytes: &'a [u8],
    /// Whether bytes were cut off at the end (shown as `...`).
    clipped: bool,
}

impl<'a> LogText<'a> {
    /// All of `bytes`.
    pub fn new(bytes: &'a [u8]) -> LogText<'a> {
        LogText {
            bytes,
            clipped: false,
        }
    }

    /// At most the first `max` bytes, marked when cut.
    pub fn clipped(bytes: &'a [u8], max: usize) -> LogText<'a> {
        LogText {
            bytes: bytes.get(..max).unwrap_or(bytes),
            clipped: bytes.len() > max,
        }
    }
}

impl LogText<'_> {
    /// Appends the text to `out`, as [`Display`](fmt::Display) shows it.
    /// The common case, printable ASCII without a backslash, is copied
    /// without the formatting machinery (a hot path logs it per update).
    pub fn write_to(&self, out: &mut String) {
        match std::str::from_utf8(self.bytes) {
            Ok(text) if is_plain(self.bytes) => {
                out.push_str(text);
                if self.clipped {
                    out.push('…');
                }
            }
            _ => {
                let _ = write!(out, "{self}");
            }
        }
    }
}

/// Printable ASCII but the backslash: shown as it is. One pass with no
/// early exit, which the compiler turns into wide compares: every client
/// line is logged, and a byte-at-a-time test was a third of an IAMAT's
/// instructions.
fn is_plain(bytes: &[u8]) -> bool {
    bytes.iter().fold(true, |plain, &b| {
        plain & (b.wrapping_sub(0x20) < 0x5f) & (b != b'\\')
    })
}

impl fmt::Display for LogText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The common case, printable UTF-8, is written in one piece.
        for chunk in self.bytes.utf8_chunks() {
            let valid = chunk.valid();
            let mut rest = valid;
            while let Some(at) = rest.find(|c: char| c.is_control() || c == '\\') {
                f.write_str(&rest[..at])?;
                let c = rest[at..].chars().next().unwrap_or('?');
                match c {
                    '\r' => f.write_str("\\r")?,
                    '\n' => f.write_str("\\n")?,
                    '\t' => f.write_str("\\t")?,
                    '\\' => f.write_str("\\\\")?,
                    c if (c as u32) < 0x100 => write!(f, "\\x{:02x}", c as u32)?,
                    c => write!(f, "\\u{{{:x}}}", c as u32)?,
                }
                rest = &rest[at + c.len_utf8()..];
            }
            f.write_str(rest)?;
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        if self.clipped {
            f.write_char('…')?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_to_appends_what_display_shows() {
        let cases: [&[u8]; 6] = [
            b"kiwi.cs.ucla.edu",
            b"a b",
            b"back\\slash",
            b"\x1b[2J",
            b"\xff\xfe",
            "é".as_bytes(),
        ];
        for bytes in cases {
            for text in [LogText::new(bytes), LogText::clipped(bytes, 3)] {
                let mut out = String::from("> ");
                text.write_to(&mut out);
                assert_eq!(out, format!("> {text}"), "{bytes:?}");
            }
        }
    }

    #[test]
    fn printable_text_is_unchanged() {
        let line = "IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503 é";
        assert_eq!(LogText::new(line.as_bytes()).to_string(), line);
    }

    #[test]
    fn control_bytes_and_backslashes_are_escaped() {
        let line = b"IAMAT \x1b[2Jk\r\x00 +1+1 \\x1b 1\x7f\tz";
        assert_eq!(
            LogText::new(line).to_string(),
            "IAMAT \\x1b[2Jk\\r\\x00 +1+1 \\\\x1b 1\\x7f\\tz"
        );
    }

    #[test]
    fn invalid_utf8_is_shown_as_bytes() {
        assert_eq!(LogText::new(b"a\xff\xfeb").to_string(), "a\\xff\\xfeb");
    }

    #[test]
    fn clipped_text_is_marked() {
        assert_eq!(LogText::clipped(b"abcdef", 3).to_string(), "abc…");
        assert_eq!(LogText::clipped(b"abc", 3).to_string(), "abc");
    }
}
