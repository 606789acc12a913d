//! The client wire protocol of SPEC §3: parsing a line into a [`Command`] and
//! formatting the answers, as pure functions over bytes.
//!
//! Nothing here does I/O or keeps state, so every rule of the protocol can be
//! unit-tested (and fuzzed) in isolation. Lines are bytes, not `String`s: a
//! client may send invalid UTF-8 and gets it copied back verbatim.
//!
//! Numbers are parsed exactly. A [`Timestamp`] is whole seconds plus
//! nanoseconds, never an `f64`, so the diff of an `AT` answer is computed with
//! integer arithmetic and is right to the last of its nine fraction digits.
//! Range checks on latitude, longitude and radius compare the decimal text
//! itself, so `+90.0000000000000000001` is rejected even though it rounds to
//! 90.0 as a float.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest client name accepted, in bytes.
pub const MAX_CLIENT_BYTES: usize = 255;

/// Longest location, time or diff text accepted, in bytes. With the client
/// name and the server name bounded too, a stored `AT` line is at most
/// [`MAX_AT_LINE_BYTES`] long, whichever way it came in (client, neighbour,
/// sync or journal), and padding such as 65,500 leading zeros is refused.
pub const MAX_FIELD_BYTES: usize = 255;

/// Longest server name, in bytes.
pub const MAX_SERVER_NAME_BYTES: usize = 64;

/// Longest `AT` line that any valid update can make: `AT`, five fields and
/// five spaces.
pub const MAX_AT_LINE_BYTES: usize =
    2 + 5 + MAX_SERVER_NAME_BYTES + MAX_CLIENT_BYTES + 3 * MAX_FIELD_BYTES;

/// How far ahead of the server's clock a client's time may be, unless
/// `limits.max_future_skew_ms` says otherwise: one day.
pub const DEFAULT_MAX_FUTURE_SKEW: std::time::Duration = std::time::Duration::from_secs(86_400);

/// Largest WHATSAT radius, in kilometres.
pub const MAX_RADIUS_KM: u64 = 50;

/// Largest WHATSAT bound (number of places returned).
pub const MAX_BOUND: u8 = 20;

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// White space as SPEC §3 defines it: space, tab, CR, LF, FF and VT.
/// (`u8::is_ascii_whitespace` leaves out VT, hence this function.)
pub fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c)
}

/// Splits a line into its white-space separated fields.
pub fn fields(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| is_space(b)).filter(|f| !f.is_empty())
}

/// A point in time as POSIX seconds and nanoseconds.
///
/// Ordered by seconds, then nanoseconds: exactly the order of the instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    secs: u64,
    nanos: u32,
}

impl Timestamp {
    /// Builds a timestamp; `nanos` must be below one second.
    pub fn new(secs: u64, nanos: u32) -> Option<Timestamp> {
        (nanos < 1_000_000_000).then_some(Timestamp { secs, nanos })
    }

    /// The current time of this machine's clock.
    pub fn now() -> Timestamp {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            secs: since.as_secs(),
            nanos: since.subsec_nanos(),
        }
    }

    /// Parses `D+[.D{1,9}]`: non-negative seconds with up to nine fraction
    /// digits. No sign, no exponent, no `NaN`, no infinity.
    pub fn parse(text: &[u8]) -> Option<Timestamp> {
        let (int, frac) = split_decimal(text)?;
        if frac.map_or(0, <[u8]>::len) > 9 {
            return None;
        }
        let secs = parse_u64(int)?;
        let mut nanos: u32 = 0;
        let frac = frac.unwrap_or(&[]);
        for i in 0..9 {
            let digit = frac.get(i).map_or(0, |d| u32::from(d - b'0'));
            nanos = nanos * 10 + digit;
        }
        Some(Timestamp { secs, nanos })
    }

    pub fn secs(self) -> u64 {
        self.secs
    }

    pub fn subsec_nanos(self) -> u32 {
        self.nanos
    }

    /// Nanoseconds since the epoch.
    pub fn as_nanos(self) -> i128 {
        i128::from(self.secs) * NANOS_PER_SEC + i128::from(self.nanos)
    }

    /// Whether this time is further ahead of `now` than `max_skew` (SPEC §3,
    /// `limits.max_future_skew_ms`). Such a time is refused from clients and
    /// peers alike: no later real update could ever be newer, so it would
    /// pin the client's record for good.
    pub fn too_far_ahead_of(self, now: Timestamp, max_skew: std::time::Duration) -> bool {
        Diff::between(self, now).as_nanos()
            > i128::try_from(max_skew.as_nanos()).unwrap_or(i128::MAX)
    }
}

/// A signed difference between two [`Timestamp`]s, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Diff(i128);

impl Diff {
    /// `later - earlier`, exactly.
    pub fn between(later: Timestamp, earlier: Timestamp) -> Diff {
        Diff(later.as_nanos() - earlier.as_nanos())
    }

    pub fn from_nanos(nanos: i128) -> Diff {
        Diff(nanos)
    }

    pub fn as_nanos(self) -> i128 {
        self.0
    }

    /// Parses the diff field of an `AT` line: a mandatory sign, seconds, and
    /// exactly nine fraction digits (the form [`Diff`]'s `Display` writes).
    pub fn parse(text: &[u8]) -> Option<Diff> {
        let (&sign, rest) = text.split_first()?;
        let negative = match sign {
            b'+' => false,
            b'-' => true,
            _ => return None,
        };
        let (int, frac) = split_decimal(rest)?;
        let frac = frac?;
        if frac.len() != 9 {
            return None;
        }
        let secs = i128::from(parse_u64(int)?);
        let nanos = i128::from(parse_u64(frac)?);
        let magnitude = secs * NANOS_PER_SEC + nanos;
        Some(Diff(if negative { -magnitude } else { magnitude }))
    }
}

impl Diff {
    /// The length of the diff's text: sign, seconds, dot, nine digits.
    pub fn text_len(self) -> usize {
        let secs = self.0.unsigned_abs() / NANOS_PER_SEC as u128;
        let digits = secs.checked_ilog10().map_or(1, |log| log as usize + 1);
        2 + digits + 9
    }

    /// Appends the diff's text to `out`: always signed (`+` for zero and
    /// above), always nine fraction digits. Written digit by digit, without
    /// `fmt` or a temporary string: every IAMAT formats one.
    pub fn write_to(self, out: &mut Vec<u8>) {
        out.push(if self.0 < 0 { b'-' } else { b'+' });
        let magnitude = self.0.unsigned_abs();
        let secs = magnitude / NANOS_PER_SEC as u128;
        let nanos = magnitude % NANOS_PER_SEC as u128;
        // u128 seconds have at most 39 digits.
        let mut digits = [0u8; 39];
        let mut start = digits.len();
        let mut rest = secs;
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        out.extend_from_slice(&digits[start..]);
        out.push(b'.');
        let mut fraction = [b'0'; 9];
        let mut rest = nanos;
        for digit in fraction.iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        out.extend_from_slice(&fraction);
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = Vec::with_capacity(24);
        self.write_to(&mut text);
        // Only a sign, digits and a dot.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

/// A position in ISO 6709 decimal degrees, read from a client's text for
/// distance computations. Only the degrees are here: the text itself stays
/// in the [`Record`](crate::record::Record), since answers copy it byte for
/// byte.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

impl Location {
    /// Parses `±D+[.D+]±D+[.D+]` with latitude in [-90, 90] and longitude in
    /// [-180, 180]. Both signs are mandatory.
    pub fn parse(text: &[u8]) -> Option<Location> {
        let (lat_text, lon_text) = Location::split_checked(text)?;
        // Only signs, digits and one dot each remain: valid UTF-8 and valid floats.
        let degrees = |t: &[u8]| std::str::from_utf8(t).ok()?.parse().ok();
        Some(Location {
            lat: degrees(lat_text)?,
            lon: degrees(lon_text)?,
        })
    }

    /// Whether `text` is a valid location, without computing the degrees:
    /// IAMAT and AT only check it (the record keeps the text), so the hot
    /// path does no float parsing.
    pub fn is_valid(text: &[u8]) -> bool {
        Location::split_checked(text).is_some()
    }

    /// The latitude and longitude texts, each checked against its range.
    fn split_checked(text: &[u8]) -> Option<(&[u8], &[u8])> {
        if !matches!(text.first(), Some(b'+' | b'-')) {
            return None;
        }
        // The longitude starts at the second sign.
        let split = 1 + text[1..].iter().position(|&b| b == b'+' || b == b'-')?;
        let (lat_text, lon_text) = text.split_at(split);
        (signed_degrees_valid(lat_text, 90) && signed_degrees_valid(lon_text, 180))
            .then_some((lat_text, lon_text))
    }
}

/// Checks one signed coordinate: digits, at most one dot, `|value| <= limit`
/// exactly.
fn signed_degrees_valid(text: &[u8], limit: u64) -> bool {
    split_decimal(&text[1..]).is_some_and(|(int, frac)| decimal_at_most(int, frac, limit))
}

/// A WHATSAT radius in kilometres: `D+[.D+]`, above 0 and at most 50.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Radius {
    km: f64,
}

impl Radius {
    pub fn parse(text: &[u8]) -> Option<Radius> {
        let (int, frac) = split_decimal(text)?;
        let all_zero = int.iter().chain(frac.unwrap_or(&[])).all(|&d| d == b'0');
        if all_zero || !decimal_at_most(int, frac, MAX_RADIUS_KM) {
            return None;
        }
        let km = std::str::from_utf8(text).ok()?.parse().ok()?;
        Some(Radius { km })
    }

    pub fn km(self) -> f64 {
        self.km
    }

    /// The radius in whole metres, rounded up (never below 1).
    pub fn metres(self) -> u32 {
        // At most 50 km, so the cast cannot overflow.
        ((self.km * 1000.0).ceil() as u32).max(1)
    }
}

/// Parses a WHATSAT bound: decimal digits only, from 1 to 20.
fn parse_bound(text: &[u8]) -> Option<u8> {
    let value = parse_u64(text)?;
    (1..=u64::from(MAX_BOUND))
        .contains(&value)
        .then_some(value as u8)
}

/// Splits `D+[.D+]` into its integer and fraction digits.
fn split_decimal(text: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let (int, frac) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (&text[..dot], Some(&text[dot + 1..])),
        None => (text, None),
    };
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    (digits(int) && frac.is_none_or(digits)).then_some((int, frac))
}

/// Whether the non-negative decimal `int.frac` is at most `limit`, compared
/// on the digits themselves (no rounding).
fn decimal_at_most(int: &[u8], frac: Option<&[u8]>, limit: u64) -> bool {
    let significant = trim_leading_zeros(int);
    if significant.len() > 19 {
        return false;
    }
    let value = if significant.is_empty() {
        0
    } else {
        match parse_u64(significant) {
            Some(value) => value,
            None => return false,
        }
    };
    value < limit || (value == limit && frac.unwrap_or(&[]).iter().all(|&d| d == b'0'))
}

fn trim_leading_zeros(digits: &[u8]) -> &[u8] {
    let first = digits
        .iter()
        .position(|&d| d != b'0')
        .unwrap_or(digits.len());
    &digits[first..]
}

/// Parses ASCII digits into a `u64`, refusing empty input and overflow.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Checks a client name: non-empty, at most [`MAX_CLIENT_BYTES`], no white
/// space (the field splitter already guarantees that last part).
fn valid_client(name: &[u8]) -> bool {
    !name.is_empty() && name.len() <= MAX_CLIENT_BYTES && !name.iter().any(|&b| is_space(b))
}

/// A valid IAMAT: the three client fields as sent, and what they mean.
#[derive(Debug, Clone, PartialEq)]
pub struct IAmAt<'a> {
    pub client: &'a [u8],
    /// Checked by the parser; [`Location::parse`] gives the degrees.
    pub location_text: &'a [u8],
    pub time_text: &'a [u8],
    pub time: Timestamp,
}

/// A valid WHATSAT.
#[derive(Debug, Clone, PartialEq)]
pub struct WhatsAt<'a> {
    pub client: &'a [u8],
    pub radius: Radius,
    pub bound: u8,
}

/// A valid AT line: an update flooded from a peer (never valid from a client).
#[derive(Debug, Clone, PartialEq)]
pub struct At<'a> {
    pub origin: &'a [u8],
    pub diff: Diff,
    pub client: &'a [u8],
    /// Checked by the parser; [`Location::parse`] gives the degrees.
    pub location_text: &'a [u8],
    pub time_text: &'a [u8],
    pub time: Timestamp,
}

/// One line of the client protocol, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Command<'a> {
    /// A line of nothing but white space: ignored, not answered.
    Blank,
    IAmAt(IAmAt<'a>),
    WhatsAt(WhatsAt<'a>),
    /// A well-formed AT line; only an authenticated peer may send one.
    At(At<'a>),
    /// Anything else: answered with `? ` and a copy of the line.
    Invalid,
}

/// Parses one line (without its terminator).
pub fn parse_line(line: &[u8]) -> Command<'_> {
    let mut parts = fields(line);
    let Some(verb) = parts.next() else {
        return Command::Blank;
    };
    let mut args = [&[][..]; 5];
    let mut count = 0;
    for field in parts {
        if count == args.len() {
            return Command::Invalid;
        }
        args[count] = field;
        count += 1;
    }
    let parsed = match (verb, count) {
        (b"IAMAT", 3) => parse_iamat(&args[..3]).map(Command::IAmAt),
        (b"WHATSAT", 3) => parse_whatsat(&args[..3]).map(Command::WhatsAt),
        (b"AT", 5) => parse_at(&args).map(Command::At),
        _ => None,
    };
    parsed.unwrap_or(Command::Invalid)
}

/// Whether every field is within [`MAX_FIELD_BYTES`] (the client name has
/// its own, equal, bound): one length rule for every way a line comes in.
fn fields_within_bound(args: &[&[u8]]) -> bool {
    args.iter().all(|field| field.len() <= MAX_FIELD_BYTES)
}

fn parse_iamat<'a>(args: &[&'a [u8]]) -> Option<IAmAt<'a>> {
    let [client, location_text, time_text] = *args else {
        return None;
    };
    if !valid_client(client) || !fields_within_bound(args) {
        return None;
    }
    Some(IAmAt {
        client,
        location_text: Location::is_valid(location_text).then_some(location_text)?,
        time_text,
        time: Timestamp::parse(time_text)?,
    })
}

fn parse_whatsat<'a>(args: &[&'a [u8]]) -> Option<WhatsAt<'a>> {
    let [client, radius, bound] = *args else {
        return None;
    };
    if !valid_client(client) {
        return None;
    }
    Some(WhatsAt {
        client,
        radius: Radius::parse(radius)?,
        bound: parse_bound(bound)?,
    })
}

fn parse_at<'a>(args: &[&'a [u8]]) -> Option<At<'a>> {
    let [origin, diff, client, location_text, time_text] = *args else {
        return None;
    };
    if !valid_client(client) || !valid_server_name(origin) || !fields_within_bound(args) {
        return None;
    }
    Some(At {
        origin,
        diff: Diff::parse(diff)?,
        client,
        location_text: Location::is_valid(location_text).then_some(location_text)?,
        time_text,
        time: Timestamp::parse(time_text)?,
    })
}

/// A server name: 1 to 64 bytes of ASCII letters, digits, `-`, `_` or `.`.
pub fn valid_server_name(name: &[u8]) -> bool {
    (1..=MAX_SERVER_NAME_BYTES).contains(&name.len())
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether a line (without its terminator) is HTTP rather than the client
/// protocol: a request line (`<method> <target> HTTP/<d>.<d>`, e.g.
/// `POST / HTTP/1.1`) or a `Host:` header (any case). A web page's `fetch`
/// to a client port sends both before its body, so a connection whose
/// line says HTTP is closed before anything after it is read as a command
/// (SPEC §7); no line of the client protocol looks like either (every
/// command has four fields or more).
pub fn looks_like_http(line: &[u8]) -> bool {
    if line
        .get(..5)
        .is_some_and(|head| head.eq_ignore_ascii_case(b"host:"))
    {
        return true;
    }
    // The version ends the line: most lines are ruled out on that alone,
    // without a scan (this runs on every client line).
    let Some(tail) = line.len().checked_sub(8).and_then(|at| line.get(at..)) else {
        return false;
    };
    if !tail.starts_with(b"HTTP/") {
        return false;
    }
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    // RFC 9110's token characters for the method.
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let is_version = matches!(version, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit());
    !method.is_empty()
        && method.iter().all(|&b| token(b))
        && !target.is_empty()
        && target.iter().all(|b| b.is_ascii_graphic())
        && is_version
}

/// Formats the answer to an invalid line: `? ` and the line verbatim.
pub fn invalid_answer(line: &[u8]) -> Vec<u8> {
    let mut answer = Vec::with_capacity(line.len() + 3);
    answer.extend_from_slice(b"? ");
    answer.extend_from_slice(line);
    answer.push(b'\n');
    answer
}

/// Formats an AT line (without its newline):
/// `AT <origin> <diff> <client> <location> <time>`.
pub fn format_at(
    origin: &[u8],
    diff: Diff,
    client: &[u8],
    location_text: &[u8],
    time_text: &[u8],
) -> Vec<u8> {
    // Exactly the line's length: a record keeps it as a boxed slice, and a
    // Vec with spare room would be reallocated to shrink it.
    // "AT" and five spaces, then the fields.
    let mut line = Vec::with_capacity(
        7 + diff.text_len() + origin.len() + client.len() + location_text.len() + time_text.len(),
    );
    line.extend_from_slice(b"AT ");
    line.extend_from_slice(origin);
    line.push(b' ');
    diff.write_to(&mut line);
    for field in [client, location_text, time_text] {
        line.push(b' ');
        line.extend_from_slice(field);
    }
    line
}

/// Shapes a places JSON body as SPEC §3 asks: every run of two or more
/// newlines collapsed to one, trailing newlines removed, then two newlines.
pub fn places_body(json: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(json.len() + 2);
    for &b in json {
        if b == b'\n' && body.last() == Some(&b'\n') {
            continue;
        }
        body.push(b);
    }
    while body.last() == Some(&b'\n') {
        body.pop();
    }
    body.extend_from_slice(b"\n\n");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        Timestamp::parse(text.as_bytes()).expect("valid timestamp")
    }

    #[test]
    fn timestamp_parses_exact_nanoseconds() {
        assert_eq!(
            ts("1621464827.959498503"),
            Timestamp::new(1621464827, 959498503).unwrap()
        );
        assert_eq!(ts("5"), Timestamp::new(5, 0).unwrap());
        assert_eq!(ts("5.5"), Timestamp::new(5, 500_000_000).unwrap());
        assert_eq!(ts("0.000000001"), Timestamp::new(0, 1).unwrap());
        assert_eq!(ts("007.10"), Timestamp::new(7, 100_000_000).unwrap());
    }

    #[test]
    fn timestamp_rejects_what_spec_forbids() {
        for bad in [
            "",
            "-1",
            "+1",
            "1e9",
            "NaN",
            "nan",
            "inf",
            "1.",
            ".5",
            "1.2.3",
            "1.0000000001",
            "18446744073709551616",
            "0x10",
            " 1",
            "1,5",
        ] {
            assert_eq!(Timestamp::parse(bad.as_bytes()), None, "{bad:?}");
        }
        assert!(Timestamp::parse(b"18446744073709551615.999999999").is_some());
    }

    #[test]
    fn diff_is_exact_and_always_signed_with_nine_digits() {
        let cases = [
            ("1621464828.223372", "1621464827.959498503", "+0.263873497"),
            ("10.000000000", "10.000000005", "-0.000000005"),
            ("22", "10", "+12.000000000"),
            ("5", "5", "+0.000000000"),
            ("0", "1.5", "-1.500000000"),
        ];
        for (now, client, expected) in cases {
            assert_eq!(Diff::between(ts(now), ts(client)).to_string(), expected);
        }
        let huge = Diff::between(ts("0"), ts("18446744073709551615.999999999"));
        assert_eq!(huge.to_string(), "-18446744073709551615.999999999");
    }

    #[test]
    fn diff_round_trips_through_its_text() {
        for text in [
            "+0.000000000",
            "-0.000000005",
            "+12.000000000",
            "-99.123456789",
        ] {
            assert_eq!(Diff::parse(text.as_bytes()).unwrap().to_string(), text);
        }
        for bad in [
            "0.000000000",
            "+1",
            "+1.5",
            "+1.0000000000",
            "--1.000000000",
            "+.000000000",
        ] {
            assert_eq!(Diff::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn location_accepts_iso6709_with_any_digit_counts() {
        for good in [
            "+34.068930-118.445127",
            "+12-118",
            "+5.5-0.25",
            "+034.068930-118.445127",
            "+90-180",
            "-90.000+180.0000",
            "-0+0",
        ] {
            assert!(Location::parse(good.as_bytes()).is_some(), "{good:?}");
        }
        let loc = Location::parse(b"+34.068930-118.445127").unwrap();
        assert_eq!((loc.lat, loc.lon), (34.068930, -118.445127));
    }

    #[test]
    fn location_rejects_out_of_range_and_malformed() {
        for bad in [
            "+91-118",
            "+90.0000000000000000001+0",
            "+0-181",
            "+0+180.000001",
            "34.068930-118.445127",
            "+34.068930118.445127",
            "+34.-118",
            "+.5-118",
            "+NaN-118",
            "+1e1-118",
            "+34.068930-118.445127+1",
            "++34-118",
            "+34--118",
            "+",
            "",
            "+0000000000000000000000091+0",
        ] {
            assert_eq!(Location::parse(bad.as_bytes()), None, "{bad:?}");
        }
        assert!(Location::parse(b"+0000000000000000000000090+0").is_some());
    }

    #[test]
    fn radius_and_bound_ranges() {
        for good in ["10", "50", "50.000", "0.001", "1.5", "007"] {
            assert!(Radius::parse(good.as_bytes()).is_some(), "{good:?}");
        }
        for bad in [
            "0",
            "0.000",
            "50.5",
            "50.0000001",
            "-1",
            "+10",
            "1e1",
            "",
            ".5",
            "51",
        ] {
            assert_eq!(Radius::parse(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(Radius::parse(b"10").unwrap().metres(), 10_000);
        assert_eq!(Radius::parse(b"0.0001").unwrap().metres(), 1);
        for (text, value) in [("1", Some(1)), ("20", Some(20)), ("05", Some(5))] {
            assert_eq!(parse_bound(text.as_bytes()), value);
        }
        for bad in ["0", "21", "2.5", "-1", "+1", "", "99999999999999999999999"] {
            assert_eq!(parse_bound(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn iamat_keeps_fields_verbatim() {
        let line = b"IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503";
        let Command::IAmAt(cmd) = parse_line(line) else {
            panic!("IAMAT not parsed");
        };
        assert_eq!(cmd.client, b"kiwi.cs.ucla.edu");
        assert_eq!(cmd.location_text, b"+34.068930-118.445127");
        assert_eq!(cmd.time_text, b"1621464827.959498503");
    }

    #[test]
    fn fields_split_on_every_kind_of_white_space() {
        let line = b" \t IAMAT\x0bkiwi\x0c+1+2 \r 3.5\t";
        assert!(matches!(parse_line(line), Command::IAmAt(_)));
        assert_eq!(parse_line(b" \t\x0b\x0c\r"), Command::Blank);
        assert_eq!(parse_line(b""), Command::Blank);
    }

    #[test]
    fn invalid_lines_of_spec_section_7() {
        for bad in [
            "HELLO world",
            "iamat kiwi +1+1 1",
            "IAMAT kiwi +1+1",
            "IAMAT kiwi +1+1 1 extra",
            "IAMAT kiwi +91-100 1",
            "IAMAT kiwi +10-181 1",
            "IAMAT kiwi +10-100 NaN",
            "IAMAT kiwi +10-100 1e9",
            "IAMAT kiwi +10-100 1.0123456789",
            "IAMAT kiwi +10-100 -5",
            "WHATSAT kiwi 0 5",
            "WHATSAT kiwi 50.5 5",
            "WHATSAT kiwi -1 5",
            "WHATSAT kiwi 10 0",
            "WHATSAT kiwi 10 21",
            "WHATSAT kiwi 10 2.5",
            "WHATSAT kiwi 10",
            "AT Riley +0.1 kiwi +1+1 1",
        ] {
            assert_eq!(parse_line(bad.as_bytes()), Command::Invalid, "{bad:?}");
        }
        let long_name = format!("IAMAT {} +1+1 1", "x".repeat(256));
        assert_eq!(parse_line(long_name.as_bytes()), Command::Invalid);
        let max_name = format!("IAMAT {} +1+1 1", "x".repeat(255));
        assert!(matches!(parse_line(max_name.as_bytes()), Command::IAmAt(_)));
    }

    #[test]
    fn at_lines_parse_fully() {
        let line =
            b"AT Riley +0.263873386 kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503";
        let Command::At(at) = parse_line(line) else {
            panic!("AT not parsed");
        };
        assert_eq!(at.origin, b"Riley");
        assert_eq!(at.diff, Diff::from_nanos(263_873_386));
        let again = format_at(
            at.origin,
            at.diff,
            at.client,
            at.location_text,
            at.time_text,
        );
        assert_eq!(&again[..], &line[..]);
    }

    #[test]
    fn invalid_answer_copies_bytes_including_invalid_utf8() {
        let line = b"\xff\xfe HELLO \x80";
        assert_eq!(invalid_answer(line), b"? \xff\xfe HELLO \x80\n");
    }

    #[test]
    fn places_body_collapses_newlines_and_ends_with_two() {
        assert_eq!(
            places_body(b"{\n\n\n  \"a\": 1\n}\n\n\n"),
            b"{\n  \"a\": 1\n}\n\n"
        );
        assert_eq!(places_body(b"{}"), b"{}\n\n");
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn no_input_panics(line in proptest::collection::vec(any::<u8>(), 0..300)) {
                let _ = parse_line(&line);
            }

            #[test]
            fn iamat_round_trips(
                client in "[!-~]{1,40}",
                lat in -90_000_000i64..=90_000_000,
                lon in -180_000_000i64..=180_000_000,
                secs in 0u64..=4_000_000_000,
                nanos in 0u32..1_000_000_000,
            ) {
                let loc = format!("{}{}.{:06}{}{}.{:06}",
                    if lat < 0 { '-' } else { '+' }, lat.abs() / 1_000_000, lat.abs() % 1_000_000,
                    if lon < 0 { '-' } else { '+' }, lon.abs() / 1_000_000, lon.abs() % 1_000_000);
                let time = format!("{secs}.{nanos:09}");
                let line = format!("IAMAT {client} {loc} {time}");
                let Command::IAmAt(cmd) = parse_line(line.as_bytes()) else {
                    return Err(TestCaseError::fail(format!("not parsed: {line}")));
                };
                prop_assert_eq!(cmd.client, client.as_bytes());
                prop_assert_eq!(cmd.location_text, loc.as_bytes());
                prop_assert_eq!(cmd.time, Timestamp::new(secs, nanos).unwrap());
            }

            #[test]
            fn at_lines_round_trip(
                origin in "[A-Za-z][A-Za-z0-9_-]{0,15}",
                diff in any::<i64>(),
                client in "[!-~]{1,40}",
                secs in 0u64..=4_000_000_000,
                nanos in 0u32..1_000_000_000,
            ) {
                let time = format!("{secs}.{nanos:09}");
                let line = format_at(origin.as_bytes(), Diff::from_nanos(diff.into()),
                    client.as_bytes(), b"+1.5-2.25", time.as_bytes());
                let Command::At(at) = parse_line(&line) else {
                    return Err(TestCaseError::fail("AT not parsed"));
                };
                prop_assert_eq!(at.diff, Diff::from_nanos(diff.into()));
                let again = format_at(at.origin, at.diff, at.client, at.location_text, at.time_text);
                // Allocated at exactly its length: never reallocated to shrink.
                prop_assert_eq!(again.capacity(), again.len());
                prop_assert_eq!(again, line);
            }

            #[test]
            fn diff_text_round_trips(nanos in any::<i64>()) {
                let diff = Diff::from_nanos(nanos.into());
                prop_assert_eq!(Diff::parse(diff.to_string().as_bytes()), Some(diff));
            }

            /// The hand-written digits agree with `fmt` over the whole range
            /// a diff can take (two timestamps of up to u64 seconds apart).
            #[test]
            fn diff_digits_agree_with_fmt(nanos in any::<i128>()) {
                let nanos = nanos % (i128::from(u64::MAX) * NANOS_PER_SEC);
                let magnitude = nanos.unsigned_abs();
                let expected = format!("{}{}.{:09}", if nanos < 0 { '-' } else { '+' },
                    magnitude / 1_000_000_000, magnitude % 1_000_000_000);
                prop_assert_eq!(Diff::from_nanos(nanos).text_len(), expected.len());
                prop_assert_eq!(Diff::from_nanos(nanos).to_string(), expected);
            }
        }
    }
}

#[cfg(test)]
mod bounds_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn padded_fields_beyond_the_bound_are_invalid_from_clients_and_peers() {
        let zeros = "0".repeat(65_500);
        let iamat = format!("IAMAT k +{zeros}1-1 1");
        assert_eq!(parse_line(iamat.as_bytes()), Command::Invalid);
        let at = format!("AT Riley +0.000000000 k +{zeros}1-1 1");
        assert_eq!(parse_line(at.as_bytes()), Command::Invalid);
        let time = format!("IAMAT k +1-1 {zeros}1");
        assert_eq!(parse_line(time.as_bytes()), Command::Invalid);
    }

    #[test]
    fn fields_at_the_bound_are_valid_and_make_a_bounded_line() {
        let location = format!("+{}1-1", "0".repeat(MAX_FIELD_BYTES - 4));
        let time = format!("{}1", "0".repeat(MAX_FIELD_BYTES - 1));
        let client = "c".repeat(MAX_CLIENT_BYTES);
        let origin = "S".repeat(MAX_SERVER_NAME_BYTES);
        let line = format!("AT {origin} +0.000000000 {client} {location} {time}");
        assert!(matches!(parse_line(line.as_bytes()), Command::At(_)));
        assert!(line.len() <= MAX_AT_LINE_BYTES);
        let longer = format!("IAMAT {client} +0{} {time}", &location[1..]);
        assert_eq!(parse_line(longer.as_bytes()), Command::Invalid);
    }

    #[test]
    fn times_beyond_the_skew_are_too_far_ahead() {
        let now = Timestamp::new(1_000_000, 0).unwrap();
        let day = Duration::from_secs(86_400);
        let at_limit = Timestamp::new(1_000_000 + 86_400, 0).unwrap();
        let beyond = Timestamp::new(1_000_000 + 86_400, 1).unwrap();
        assert!(!at_limit.too_far_ahead_of(now, day));
        assert!(beyond.too_far_ahead_of(now, day));
        assert!(!Timestamp::new(0, 0).unwrap().too_far_ahead_of(now, day));
        let pin = Timestamp::new(u64::MAX, 999_999_999).unwrap();
        assert!(pin.too_far_ahead_of(now, day));
        assert!(!pin.too_far_ahead_of(now, Duration::MAX));
    }
}

#[cfg(test)]
mod http_tests {
    use super::*;

    #[test]
    fn http_request_lines_and_host_headers_look_like_http() {
        for line in [
            &b"POST / HTTP/1.1"[..],
            b"GET /x HTTP/1.0",
            b"OPTIONS * HTTP/1.1",
            b"PRI * HTTP/2.0",
            b"CONNECT 127.0.0.1:12665 HTTP/1.1",
            b"Host: 127.0.0.1:12665",
            b"host:x",
            b"HOST: evil.example",
        ] {
            assert!(looks_like_http(line), "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn client_lines_do_not_look_like_http() {
        for line in [
            &b"IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503"[..],
            b"WHATSAT kiwi.cs.ucla.edu 10 5",
            b"IAMAT HTTP/1.1 +1+1 1",
            b"AT Riley +0.1 HTTP/1.1 +1+1 1",
            b"HELLO there",
            b"POST /",
            b"POST / HTTP/1.1 extra",
            b"POST  / HTTP/1.1",
            b"POST / HTTP/1.x",
            b"Hostname: x",
            b"Host",
            b"",
            b"\xff / HTTP/1.1",
        ] {
            assert!(!looks_like_http(line), "{}", String::from_utf8_lossy(line));
        }
    }
}
