//! Fuzz target `record_fields`: structure-aware, for the fields that once
//! crashed the herd.
//!
//! Random bytes almost never make a valid AT or IAMAT line, let alone one
//! whose fields are padded to tens of kilobytes (the line with 65,500
//! leading zeros wrapped the record's offsets). Here the input chooses the
//! fields instead: origin, diff, client, and the location and time as
//! digits with up to 70,000 leading zeros each, joined by any white space.
//! Whatever the parser and [`Record`] make of the line, a record that is
//! made must read back exactly the fields it was made from, be at most
//! [`protocol::MAX_AT_LINE_BYTES`] long, and a line with a field beyond
//! [`protocol::MAX_FIELD_BYTES`] must be refused, from a client (IAMAT) and
//! from a peer (AT) alike.

#![no_main]

use arbitrary::Arbitrary;
use herd_fuzz::protocol::{self, Command, Diff, Timestamp};
use herd_fuzz::record::Record;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Fields {
    origin: Vec<u8>,
    diff: i64,
    client: Vec<u8>,
    lat_negative: bool,
    lat_zeros: u16,
    lat: u8,
    lat_fraction: Option<u32>,
    lon_negative: bool,
    lon_zeros: u16,
    lon: u8,
    lon_fraction: Option<u32>,
    time_zeros: u16,
    time: u64,
    time_fraction: Option<u32>,
    /// Index into the white-space bytes, per gap.
    gaps: [u8; 6],
}

const SPACES: &[u8] = b" \t\r\x0b\x0c";

fn number(zeros: u16, int: u64, fraction: Option<u32>) -> Vec<u8> {
    let mut text = vec![b'0'; usize::from(zeros) % 70_001];
    text.extend_from_slice(int.to_string().as_bytes());
    if let Some(fraction) = fraction {
        text.extend_from_slice(format!(".{fraction}").as_bytes());
    }
    text
}

impl Fields {
    fn location(&self) -> Vec<u8> {
        let sign = |negative: bool| if negative { b'-' } else { b'+' };
        let mut text = vec![sign(self.lat_negative)];
        text.extend(number(
            self.lat_zeros,
            u64::from(self.lat),
            self.lat_fraction,
        ));
        text.push(sign(self.lon_negative));
        text.extend(number(
            self.lon_zeros,
            u64::from(self.lon),
            self.lon_fraction,
        ));
        text
    }

    fn line(&self, words: &[&[u8]]) -> Vec<u8> {
        let mut line = Vec::new();
        for (i, word) in words.iter().enumerate() {
            if i > 0 {
                line.push(SPACES[usize::from(self.gaps[i % 6]) % SPACES.len()]);
            }
            line.extend_from_slice(word);
        }
        line
    }
}

fuzz_target!(|fields: Fields| {
    // Names are single fields: white space inside one would only shift the
    // fields (the byte-level targets cover that), so it is taken out here.
    let mut fields = fields;
    fields.origin.retain(|&b| !protocol::is_space(b));
    fields.client.retain(|&b| !protocol::is_space(b));
    let location = fields.location();
    let time = number(fields.time_zeros, fields.time, fields.time_fraction);
    let diff = Diff::from_nanos(i128::from(fields.diff)).to_string();
    let too_long =
        location.len() > protocol::MAX_FIELD_BYTES || time.len() > protocol::MAX_FIELD_BYTES;

    let at = fields.line(&[
        b"AT",
        &fields.origin,
        diff.as_bytes(),
        &fields.client,
        &location,
        &time,
    ]);
    match Record::from_at_line(&at) {
        Ok(record) => {
            assert!(!too_long, "a field beyond the bound was stored");
            assert!(record.at_line().len() <= protocol::MAX_AT_LINE_BYTES);
            assert_eq!(record.origin(), &fields.origin[..]);
            assert_eq!(record.client(), &fields.client[..]);
            assert_eq!(record.location_text(), &location[..]);
            assert_eq!(record.time_text(), &time[..]);
            assert_eq!(record.diff().to_string(), diff);
            assert!(record.location().is_some());
        }
        Err(_) => assert!(!matches!(protocol::parse_line(&at), Command::At(_))),
    }

    let iamat = fields.line(&[b"IAMAT", &fields.client, &location, &time]);
    if let Command::IAmAt(cmd) = protocol::parse_line(&iamat) {
        assert!(!too_long, "a field beyond the bound was accepted");
        let received = Timestamp::new(1_700_000_000, 0).expect("valid");
        let record =
            Record::from_iamat("Riley", received, &cmd).expect("a parsed IAMAT makes a record");
        assert_eq!(record.client(), cmd.client);
        assert_eq!(record.location_text(), &location[..]);
        assert_eq!(record.time_text(), &time[..]);
        assert_eq!(record.time(), cmd.time);
    }
});
