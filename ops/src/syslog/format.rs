//! Rendering one syslog message as RFC 5424 or RFC 3164 bytes (docs/ALERTS.md, "Renderings").
//!
//! Pure: no clock, no I/O, no alert parsing. The caller builds a [`Record`] (the alert's own
//! raised-at time, the names, the parameters) and gets the bytes of one message, without any
//! transport framing ([`octet_counted`] adds RFC 6587's). Every field is made valid for its
//! grammar here, so that any input (control characters, oversized values, names with spaces)
//! still gives a message a strict parser accepts:
//!
//! - header fields (HOSTNAME, APP-NAME, MSGID) are PRINTUSASCII (33–126) cut to their maximum
//!   length, `-` when empty;
//! - SD-NAMEs (element ids and parameter names) are at most 32 printable characters other than
//!   `=`, space, `]` and `"`; parameter values are escaped per RFC 5424 §6.3.3 (`"`, `\` and `]`
//!   preceded by a backslash);
//! - timestamps carry at most 6 fractional digits (truncated, never rounded up across a second);
//! - an RFC 3164 message is at most [`RFC3164_MAX`] bytes, cut on a character boundary and ending
//!   in [`TRUNCATED`] when cut.

use std::fmt::Write as _;

/// The largest RFC 3164 packet (RFC 3164 §4.1).
pub const RFC3164_MAX: usize = 1024;

/// What ends an RFC 3164 message that had to be cut to [`RFC3164_MAX`].
pub const TRUNCATED: &str = "...[truncated]";

/// The byte order mark that starts an RFC 5424 MSG in UTF-8 (§6.4).
const BOM: &str = "\u{feff}";

/// A point in time in UTC, to the microsecond, with the number of fractional digits to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    /// Days since 1970-01-01 (negative before).
    pub days: i64,
    /// Seconds into the day, 0..86 400 (a leap second 60 is folded into 59).
    pub secs: u32,
    /// Microseconds into the second.
    pub micros: u32,
    /// Fractional digits to print, 0..=6: as many as the source gave, at most 6.
    pub frac_digits: u8,
}

impl Timestamp {
    /// Parses an RFC 3339 date-time (`2026-12-01T21:44:13.123456789+01:00`, `T` or space,
    /// `Z` or an offset) into UTC. Fractional digits past the sixth are dropped (truncated).
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        let num = |from: usize, len: usize| -> Option<i64> {
            let part = b.get(from..from + len)?;
            if !part.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(part).ok()?.parse().ok()
        };
        let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
        let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
        if b.get(4) != Some(&b'-')
            || b.get(7) != Some(&b'-')
            || !matches!(b.get(10), Some(b'T' | b't' | b' '))
            || b.get(13) != Some(&b':')
            || b.get(16) != Some(&b':')
        {
            return None;
        }
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        let mut i = 19;
        let (mut micros, mut frac_digits) = (0u32, 0u8);
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                if i - start < 6 {
                    micros = micros * 10 + u32::from(b[i] - b'0');
                    frac_digits += 1;
                }
                i += 1;
            }
            if i == start {
                return None;
            }
            micros *= 10u32.pow(6 - u32::from(frac_digits));
        }
        let offset_secs = match b.get(i) {
            Some(b'Z' | b'z') if i + 1 == b.len() => 0,
            Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
                let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
                if h > 23 || m > 59 {
                    return None;
                }
                let off = h * 3600 + m * 60;
                if *sign == b'-' {
                    -off
                } else {
                    off
                }
            }
            _ => return None,
        };
        let local =
            days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second.min(59);
        let utc = local - offset_secs;
        Some(Timestamp {
            days: utc.div_euclid(86_400),
            secs: utc.rem_euclid(86_400) as u32,
            micros,
            frac_digits,
        })
    }

    /// RFC 5424's TIMESTAMP (§6.2.3): `YYYY-MM-DDThh:mm:ss[.f{1,6}]Z`.
    pub fn rfc5424(&self) -> String {
        let (y, m, d) = civil_from_days(self.days);
        let (hh, mm, ss) = (self.secs / 3600, self.secs / 60 % 60, self.secs % 60);
        let mut out = format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}");
        if self.frac_digits > 0 {
            let digits = usize::from(self.frac_digits.min(6));
            let frac = format!("{:06}", self.micros % 1_000_000);
            out.push('.');
            out.push_str(&frac[..digits]);
        }
        out.push('Z');
        out
    }

    /// RFC 3164's TIMESTAMP (§4.1.2), in UTC: `Mmm dd hh:mm:ss`, the day space-padded.
    pub fn rfc3164(&self) -> String {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let (_, m, d) = civil_from_days(self.days);
        let (hh, mm, ss) = (self.secs / 3600, self.secs / 60 % 60, self.secs % 60);
        let month = MONTHS[(m as usize).clamp(1, 12) - 1];
        format!("{month} {d:>2} {hh:02}:{mm:02}:{ss:02}")
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// One structured-data element: an SD-ID and its parameters, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SdElement {
    /// The SD-ID (`alert@32473`, `timeQuality`); made a valid SD-NAME when rendered.
    pub id: String,
    /// PARAM-NAME, PARAM-VALUE pairs; names made valid SD-NAMEs, values escaped, when rendered.
    pub params: Vec<(String, String)>,
}

/// One message, with everything the two renderings need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Facility (0..=23).
    pub facility: u8,
    /// Syslog severity (0 emergency ..= 7 debug).
    pub severity: u8,
    /// The event's own time.
    pub timestamp: Timestamp,
    /// Where the event happened.
    pub hostname: String,
    /// What raised it (APP-NAME in 5424, TAG in 3164).
    pub app_name: String,
    /// MSGID (5424 only); at most 32 printable characters.
    pub msgid: String,
    /// Structured data: in 5424 as SD-ELEMENTs, in 3164 as `name="value"` pairs.
    pub structured: Vec<SdElement>,
    /// The free-text message.
    pub msg: String,
}

impl Record {
    /// PRI's value: facility × 8 + severity.
    pub fn pri(&self) -> u8 {
        self.facility.min(23) * 8 + self.severity.min(7)
    }
}

/// `s` restricted to PRINTUSASCII (every other character becomes `_`) and cut to `max`
/// characters; `-` (NILVALUE) when empty.
pub fn header_field(s: &str, max: usize) -> String {
    let out: String = s
        .chars()
        .take(max)
        .map(|c| if ('!'..='~').contains(&c) { c } else { '_' })
        .collect();
    if out.is_empty() {
        "-".into()
    } else {
        out
    }
}

/// `s` as an SD-NAME: at most 32 printable US-ASCII characters other than `=`, space, `]`
/// and `"` (every other character becomes `_`); `_` when empty.
pub fn sd_name(s: &str) -> String {
    let out: String = s
        .chars()
        .take(32)
        .map(|c| match c {
            '=' | ']' | '"' => '_',
            c if ('!'..='~').contains(&c) => c,
            _ => '_',
        })
        .collect();
    if out.is_empty() {
        "_".into()
    } else {
        out
    }
}

/// A PARAM-VALUE escaped per RFC 5424 §6.3.3: `"`, `\` and `]` get a backslash before them.
pub fn sd_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The message as RFC 5424 bytes (§6): `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID SD [MSG]`.
pub fn rfc5424(r: &Record) -> Vec<u8> {
    let mut out = format!(
        "<{}>1 {} {} {} - {} ",
        r.pri(),
        r.timestamp.rfc5424(),
        header_field(&r.hostname, 255),
        header_field(&r.app_name, 48),
        header_field(&r.msgid, 32),
    );
    if r.structured.is_empty() {
        out.push('-');
    }
    for element in &r.structured {
        out.push('[');
        out.push_str(&sd_name(&element.id));
        for (name, value) in &element.params {
            let _ = write!(out, " {}=\"{}\"", sd_name(name), sd_escape(value));
        }
        out.push(']');
    }
    if !r.msg.is_empty() {
        out.push(' ');
        if !r.msg.is_ascii() {
            out.push_str(BOM);
        }
        out.push_str(&r.msg);
    }
    out.into_bytes()
}

/// A value for RFC 3164's `name="value"` pairs: `"` and `\` get a backslash, control characters
/// become `\n`, `\r`, `\t` or `\xNN`, so a message stays on one line.
fn quote_3164(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// RFC 3164's TAG: at most 32 alphanumeric characters (also `_`, `-`, `.`); `ransomeye` when
/// nothing is left.
fn tag_3164(s: &str) -> String {
    let out: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(32)
        .collect();
    if out.is_empty() {
        "ransomeye".into()
    } else {
        out
    }
}

/// The message as RFC 3164 bytes: `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG: CONTENT`, where CONTENT
/// is every structured parameter as `name="value"` (in order: the alert's own fields first, so
/// its id survives a cut) followed by `msg="…"` placed after the alert element. At most
/// [`RFC3164_MAX`] bytes: a longer message is cut on a character boundary and ends in
/// [`TRUNCATED`].
pub fn rfc3164(r: &Record) -> Vec<u8> {
    let mut out = format!(
        "<{}>{} {} {}:",
        r.pri(),
        r.timestamp.rfc3164(),
        header_field(&r.hostname, 255),
        tag_3164(&r.app_name),
    );
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (i, element) in r.structured.iter().enumerate() {
        for (name, value) in &element.params {
            pairs.push((sd_name(name), value.clone()));
        }
        if i == 0 && !r.msg.is_empty() {
            pairs.push(("msg".into(), r.msg.clone()));
        }
    }
    if r.structured.is_empty() && !r.msg.is_empty() {
        pairs.push(("msg".into(), r.msg.clone()));
    }
    for (name, value) in &pairs {
        let _ = write!(out, " {name}={}", quote_3164(value));
    }
    if out.len() > RFC3164_MAX {
        let mut cut = RFC3164_MAX - TRUNCATED.len();
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        // A lone backslash at the end would escape the marker's first character.
        let trailing = out.bytes().rev().take_while(|&b| b == b'\\').count();
        if trailing % 2 == 1 {
            out.pop();
        }
        out.push_str(TRUNCATED);
    }
    out.into_bytes()
}

/// RFC 6587 §3.4.1 octet-counting framing (also RFC 5425's): `LEN SP MESSAGE`.
pub fn octet_counted(message: &[u8]) -> Vec<u8> {
    let mut out = format!("{} ", message.len()).into_bytes();
    out.extend_from_slice(message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    fn record() -> Record {
        Record {
            facility: 16,
            severity: 3,
            timestamp: ts("2026-12-01T21:44:13.123456789Z"),
            hostname: "ws-042".into(),
            app_name: "edr-sensor".into(),
            msgid: "0f6c2a8e9b7d4e1f8a3b5c7d9e1f2a3b".into(),
            structured: vec![
                SdElement {
                    id: "alert@32473".into(),
                    params: vec![
                        ("id".into(), "0f6c2a8e-9b7d-4e1f-8a3b-5c7d9e1f2a3b".into()),
                        ("severity".into(), "high".into()),
                    ],
                },
                SdElement {
                    id: "meta@32473".into(),
                    params: vec![("path".into(), r#"C:\x "y" [z]"#.into())],
                },
            ],
            msg: "Mass file encryption".into(),
        }
    }

    #[test]
    fn the_5424_rendering_matches_the_documented_example() {
        let got = String::from_utf8(rfc5424(&record())).unwrap_or_default();
        assert_eq!(
            got,
            "<131>1 2026-12-01T21:44:13.123456Z ws-042 edr-sensor - 0f6c2a8e9b7d4e1f8a3b5c7d9e1f2a3b \
             [alert@32473 id=\"0f6c2a8e-9b7d-4e1f-8a3b-5c7d9e1f2a3b\" severity=\"high\"]\
             [meta@32473 path=\"C:\\\\x \\\"y\\\" [z\\]\"] Mass file encryption"
        );
    }

    #[test]
    fn the_3164_rendering_matches_the_documented_example() {
        let got = String::from_utf8(rfc3164(&record())).unwrap_or_default();
        assert_eq!(
            got,
            "<131>Dec  1 21:44:13 ws-042 edr-sensor: id=\"0f6c2a8e-9b7d-4e1f-8a3b-5c7d9e1f2a3b\" \
             severity=\"high\" msg=\"Mass file encryption\" path=\"C:\\\\x \\\"y\\\" [z]\""
        );
    }

    #[test]
    fn timestamps_convert_offsets_to_utc_and_keep_at_most_six_digits() {
        assert_eq!(
            ts("2026-12-01T23:44:13+02:00").rfc5424(),
            "2026-12-01T21:44:13Z"
        );
        assert_eq!(
            ts("2026-01-01T00:30:00.5-01:00").rfc5424(),
            "2026-01-01T01:30:00.5Z"
        );
        assert_eq!(
            ts("2024-02-29T00:00:00.1234567Z").rfc5424(),
            "2024-02-29T00:00:00.123456Z"
        );
        assert_eq!(
            ts("2026-03-01T00:00:00+00:30").rfc5424(),
            "2026-02-28T23:30:00Z"
        );
        assert_eq!(ts("2026-12-01 09:05:01Z").rfc3164(), "Dec  1 09:05:01");
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-12-01T00:00:00",
            "2026-12-01T00:00:00.Z",
            "2026-12-01T24:00:00Z",
            "2026-12-01T00:00:00+0100",
            "２026-12-01T00:00:00Z",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_long_3164_message_is_cut_on_a_character_boundary_and_marked() {
        let mut r = record();
        r.msg = "é".repeat(2000);
        let out = rfc3164(&r);
        assert!(out.len() <= RFC3164_MAX, "{}", out.len());
        let text = String::from_utf8(out).unwrap_or_default();
        assert!(text.ends_with(TRUNCATED));
        assert!(text.contains("id=\"0f6c2a8e-9b7d-4e1f-8a3b-5c7d9e1f2a3b\""));
    }

    #[test]
    fn header_fields_and_names_are_made_valid() {
        assert_eq!(header_field("häst 1", 255), "h_st_1");
        assert_eq!(header_field("", 48), "-");
        assert_eq!(header_field(&"x".repeat(40), 32).len(), 32);
        assert_eq!(sd_name("a b=c]\"d"), "a_b_c__d");
        assert_eq!(sd_name(&"k".repeat(40)).len(), 32);
        assert_eq!(sd_name(""), "_");
    }

    /// Undoes [`sd_escape`] the way a receiver does; `None` when a `"` or `]` is unescaped or
    /// a backslash dangles.
    fn sd_unescape(s: &str) -> Option<String> {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?),
                '"' | ']' => return None,
                c => out.push(c),
            }
        }
        Some(out)
    }

    proptest! {
        #[test]
        fn sd_values_round_trip_through_escaping(v in any::<String>()) {
            prop_assert_eq!(sd_unescape(&sd_escape(&v)), Some(v));
        }

        #[test]
        fn sd_names_are_always_valid(v in any::<String>()) {
            let name = sd_name(&v);
            prop_assert!((1..=32).contains(&name.len()));
            prop_assert!(name.bytes().all(|b| (33..=126).contains(&b) && !b"=]\"".contains(&b)));
        }

        #[test]
        fn msgids_are_at_most_32_printable_characters(v in any::<String>()) {
            let id = header_field(&v, 32);
            prop_assert!((1..=32).contains(&id.len()));
            prop_assert!(id.bytes().all(|b| (33..=126).contains(&b)));
        }

        #[test]
        fn a_3164_message_fits_and_stays_utf8(
            msg in any::<String>(),
            values in proptest::collection::vec(any::<String>(), 0..8),
            pad in 0usize..1200,
        ) {
            let mut r = record();
            r.msg = format!("{}{msg}", "x".repeat(pad));
            r.structured[1].params = values.into_iter().map(|v| ("k".to_string(), v)).collect();
            let out = rfc3164(&r);
            prop_assert!(out.len() <= RFC3164_MAX);
            let text = String::from_utf8(out);
            prop_assert!(text.is_ok());
            let text = text.unwrap_or_default();
            prop_assert!(!text.contains('\n'));
            if pad >= RFC3164_MAX {
                prop_assert!(text.ends_with(TRUNCATED));
            } else if !text.ends_with(TRUNCATED) {
                // Not cut: every value is there in full.
                let quoted = quote_3164(&r.msg);
                prop_assert!(text.contains(&quoted));
            }
        }

        #[test]
        fn timestamps_have_at_most_six_fractional_digits(
            secs in 0i64..4_102_444_800, frac in "[0-9]{1,12}", off_h in 0u32..24, off_m in 0u32..60,
        ) {
            let days = secs / 86_400;
            let (y, m, d) = civil_from_days(days);
            let s = secs % 86_400;
            let text = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac}+{off_h:02}:{off_m:02}",
                s / 3600, s / 60 % 60, s % 60);
            let t = Timestamp::parse_rfc3339(&text);
            prop_assert!(t.is_some(), "{}", text);
            let out = t.map(|t| t.rfc5424()).unwrap_or_default();
            let frac_out = out.split('.').nth(1).map_or(0, |f| f.len() - 1);
            prop_assert!(frac_out <= 6 && frac_out == frac.len().min(6), "{} -> {}", text, out);
        }

        #[test]
        fn the_calendar_round_trips(days in -800_000i64..800_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), days);
        }
    }
}
