//! Canonical JSON: the one byte encoding of a JSON value that the export uses (docs/FORMAT.md, 7.5).
//!
//! This module owns parsing JSON text (strict RFC 8259, plus PostgreSQL `jsonb`'s restrictions) into a
//! small tree whose numbers keep their exact decimal value, and writing that tree back canonically:
//! object keys sorted by their UTF-8 bytes (a repeated key keeps its last value, as `jsonb` does), no
//! whitespace, strings escaped exactly as `serde_json` escapes them, and numbers written the way
//! PostgreSQL's `numeric` prints them (no exponent, trailing fraction zeros kept, never `-0`). Numbers
//! never pass through a binary float, so nothing stored in `jsonb` is rounded by an export.

use std::borrow::Cow;
use std::fmt;

/// Deepest nesting of arrays and objects accepted. It bounds the parser's recursion (about 2 KiB of stack
/// per level in an unoptimised build); intel properties are a few levels deep.
pub const MAX_DEPTH: usize = 128;
/// Most digits before the decimal point PostgreSQL's `numeric` holds.
const MAX_INTEGER_DIGITS: usize = 131_072;
/// Most digits after the decimal point PostgreSQL's `numeric` holds.
const MAX_FRACTION_DIGITS: usize = 16_383;

/// A JSON value as parsed: numbers are kept as their canonical decimal text. Strings and numbers
/// borrow from the input when it already holds them in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    Null,
    Bool(bool),
    /// Canonical decimal text (see [`canonical_number`]).
    Number(Cow<'a, str>),
    /// The decoded string.
    String(Cow<'a, str>),
    Array(Vec<Value<'a>>),
    /// Members in input order, repeated keys included (the writer keeps the last).
    Object(Vec<(Cow<'a, str>, Value<'a>)>),
}

/// Why a text is not acceptable JSON, and where (byte offset from the start of the text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset of the problem, counted from 0.
    pub offset: usize,
    /// What is wrong.
    pub reason: &'static str,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

impl std::error::Error for JsonError {}

/// Parses a complete JSON text (surrounding whitespace allowed) into a [`Value`].
pub(crate) fn parse(text: &str) -> Result<Value<'_>, JsonError> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        pos: 0,
    };
    p.skip_ws();
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(p.err("unexpected data after the JSON value"));
    }
    Ok(v)
}

/// Re-encodes any JSON text canonically.
pub(crate) fn canonicalize(text: &str) -> Result<String, JsonError> {
    let mut out = String::with_capacity(text.len());
    canonicalize_into(text, &mut out)?;
    Ok(out)
}

/// Appends the canonical encoding of a JSON text to `out` (nothing is appended on error).
pub(crate) fn canonicalize_into(text: &str, out: &mut String) -> Result<(), JsonError> {
    let v = parse(text)?;
    write_value(&v, out);
    Ok(())
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, reason: &'static str) -> JsonError {
        JsonError {
            offset: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect(&mut self, b: u8, reason: &'static str) -> Result<(), JsonError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(reason))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, JsonError> {
        match self.peek() {
            None => Err(self.err("unexpected end of JSON")),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b'-' | b'0'..=b'9') => Ok(Value::Number(self.number()?)),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(_) => Err(self.err("expected a JSON value")),
        }
    }

    fn literal(&mut self, word: &'static str, v: Value<'a>) -> Result<Value<'a>, JsonError> {
        if self.s[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.err("expected a JSON value"))
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value<'a>, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("JSON nested deeper than 128 levels"));
        }
        self.pos += 1; // '{'
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a string key"));
            }
            let key = self.string()?;
            self.skip_ws();
            self.expect(b':', "expected ':' after an object key")?;
            self.skip_ws();
            let v = self.value(depth)?;
            members.push((key, v));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.err("expected ',' or '}' in an object")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value<'a>, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("JSON nested deeper than 128 levels"));
        }
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.err("expected ',' or ']' in an array")),
            }
        }
    }

    /// Parses a string literal (at its opening quote) and returns its decoded contents, borrowed
    /// when it has no escape sequence.
    fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        self.pos += 1; // '"'
        let start = self.pos;
        let mut owned: Option<String> = None;
        let mut run = self.pos; // start of the current run of literal characters
        loop {
            let Some(b) = self.peek() else {
                return Err(self.err("unterminated string"));
            };
            match b {
                b'"' => {
                    let end = self.pos;
                    self.pos += 1;
                    return Ok(match owned {
                        None => Cow::Borrowed(&self.text[start..end]),
                        Some(mut out) => {
                            out.push_str(&self.text[run..end]);
                            Cow::Owned(out)
                        }
                    });
                }
                b'\\' => {
                    let out = owned.get_or_insert_with(String::new);
                    out.push_str(&self.text[run..self.pos]);
                    self.escape(out)?;
                    run = self.pos;
                }
                0x00..=0x1f => {
                    return Err(self.err("control character in a string (must be escaped)"))
                }
                _ => self.pos += 1,
            }
        }
    }

    /// Decodes one escape sequence (at its backslash) onto `out`.
    fn escape(&mut self, out: &mut String) -> Result<(), JsonError> {
        let start = self.pos;
        self.pos += 1;
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                let hi = self.hex4()?;
                let code = if (0xd800..0xdc00).contains(&hi) {
                    if !self.s[self.pos..].starts_with(b"\\u") {
                        return Err(JsonError {
                            offset: start,
                            reason: "unpaired UTF-16 surrogate in a \\u escape",
                        });
                    }
                    self.pos += 2;
                    let lo = self.hex4()?;
                    if !(0xdc00..0xe000).contains(&lo) {
                        return Err(JsonError {
                            offset: start,
                            reason: "unpaired UTF-16 surrogate in a \\u escape",
                        });
                    }
                    0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                } else if (0xdc00..0xe000).contains(&hi) {
                    return Err(JsonError {
                        offset: start,
                        reason: "unpaired UTF-16 surrogate in a \\u escape",
                    });
                } else {
                    hi
                };
                if code == 0 {
                    return Err(JsonError {
                        offset: start,
                        reason: "\\u0000 is not allowed (PostgreSQL text and jsonb cannot hold it)",
                    });
                }
                let c = char::from_u32(code).ok_or(JsonError {
                    offset: start,
                    reason: "invalid \\u escape",
                })?;
                out.push(c);
                return Ok(());
            }
            _ => return Err(self.err("invalid escape sequence")),
        };
        self.pos += 1;
        out.push(c);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let Some(digits) = self.s.get(self.pos..self.pos + 4) else {
            return Err(self.err("truncated \\u escape"));
        };
        let mut v = 0u32;
        for &d in digits {
            let n = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(self.err("invalid hex digit in a \\u escape")),
            };
            v = v * 16 + u32::from(n);
        }
        self.pos += 4;
        Ok(v)
    }

    /// Parses a number (RFC 8259 grammar) and returns its canonical text, borrowed when the input
    /// already is (no exponent, not a negative zero).
    fn number(&mut self) -> Result<Cow<'a, str>, JsonError> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let int_start = self.pos;
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = self.peek() {
                    self.pos += 1;
                }
            }
            _ => return Err(self.err("invalid number")),
        }
        let int = &self.text[int_start..self.pos];
        let mut frac = "";
        if self.peek() == Some(b'.') {
            self.pos += 1;
            let f = self.pos;
            while let Some(b'0'..=b'9') = self.peek() {
                self.pos += 1;
            }
            if self.pos == f {
                return Err(self.err("invalid number: no digit after '.'"));
            }
            frac = &self.text[f..self.pos];
        }
        let mut exp: i64 = 0;
        let exponent = matches!(self.peek(), Some(b'e' | b'E'));
        let negative_zero = negative && int.bytes().chain(frac.bytes()).all(|b| b == b'0');
        if !exponent && !negative_zero {
            return Ok(Cow::Borrowed(&self.text[start..self.pos]));
        }
        if exponent {
            self.pos += 1;
            let exp_negative = match self.peek() {
                Some(b'-') => {
                    self.pos += 1;
                    true
                }
                Some(b'+') => {
                    self.pos += 1;
                    false
                }
                _ => false,
            };
            let e = self.pos;
            while let Some(b'0'..=b'9') = self.peek() {
                // Saturates far beyond any exponent PostgreSQL accepts.
                exp = (exp * 10 + i64::from(self.s[self.pos] - b'0')).min(10_000_000);
                self.pos += 1;
            }
            if self.pos == e {
                return Err(self.err("invalid number: no digit in the exponent"));
            }
            if exp_negative {
                exp = -exp;
            }
        }
        canonical_number(negative, int, frac, exp)
            .map(Cow::Owned)
            .map_err(|reason| JsonError {
                offset: start,
                reason,
            })
    }
}

/// The canonical text of the number `±int.frac × 10^exp`: what PostgreSQL's `numeric` prints for it.
///
/// The digits are shifted by the exponent; the result has no exponent, no leading zeros, as many
/// fraction digits as the input had after the shift (`max(0, len(frac) - exp)`, so `1.50` stays `1.50`
/// and `1.5e1` is `15`), and no minus sign when every digit is zero.
pub(crate) fn canonical_number(
    negative: bool,
    int: &str,
    frac: &str,
    exp: i64,
) -> Result<String, &'static str> {
    const OUT_OF_RANGE: &str = "number outside PostgreSQL's numeric range";
    let digits_len = (int.len() + frac.len()) as i64;
    // Position of the decimal point within int ‖ frac after applying the exponent.
    let point = int.len() as i64 + exp;
    let scale = (digits_len - point).max(0);
    if scale > MAX_FRACTION_DIGITS as i64 || point > digits_len + MAX_INTEGER_DIGITS as i64 {
        return Err(OUT_OF_RANGE);
    }
    let digit = |i: i64| -> u8 {
        let i = i as usize;
        if i < int.len() {
            int.as_bytes()[i]
        } else {
            frac.as_bytes()[i - int.len()]
        }
    };
    let mut out = String::with_capacity(point.max(1) as usize + scale as usize + 3);
    let zero = int.bytes().chain(frac.bytes()).all(|b| b == b'0');
    if negative && !zero {
        out.push('-');
    }
    // Integer part: digits before the point (zeros past the given digits), leading zeros dropped.
    let mut leading = true;
    for i in 0..point.max(0) {
        let d = if i < digits_len { digit(i) } else { b'0' };
        if leading && d == b'0' {
            continue;
        }
        leading = false;
        out.push(char::from(d));
    }
    if leading {
        out.push('0');
    }
    if out.len() - usize::from(negative && !zero) > MAX_INTEGER_DIGITS {
        return Err(OUT_OF_RANGE);
    }
    if scale > 0 {
        out.push('.');
        for i in point..digits_len {
            out.push(char::from(if i < 0 { b'0' } else { digit(i) }));
        }
    }
    Ok(out)
}

/// Appends the canonical encoding of `v`.
pub(crate) fn write_value(v: &Value<'_>, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => out.push_str(n),
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<&(Cow<'_, str>, Value<'_>)> = members.iter().collect();
            // Stable: among equal keys, input order is kept, so the last one is the one written.
            sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            let mut first = true;
            for (n, (key, value)) in sorted.iter().map(|m| (&m.0, &m.1)).enumerate() {
                if sorted.get(n + 1).is_some_and(|next| next.0 == *key) {
                    continue; // a later member has the same key
                }
                if !first {
                    out.push(',');
                }
                first = false;
                write_str(key, out);
                out.push(':');
                write_value(value, out);
            }
            out.push('}');
        }
    }
}

/// Appends `s` as a JSON string literal, escaped exactly as `serde_json` does: `"` and `\` with a
/// backslash, U+0008, U+0009, U+000A, U+000C, U+000D as `\b \t \n \f \r`, other characters below
/// U+0020 as `\u00XX` (lower-case hex), everything else (U+007F, U+2028, all non-ASCII) as raw UTF-8.
pub(crate) fn write_str(s: &str, out: &mut String) {
    out.push('"');
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x09 => "\\t",
            0x0a => "\\n",
            0x0c => "\\f",
            0x0d => "\\r",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[run..i]);
        if escaped.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escaped);
        }
        run = i + 1;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        canonicalize(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn objects_are_sorted_bytewise_compact_and_keep_the_last_repeated_key() {
        assert_eq!(
            canon(
                r#"{"tags": [], "source": "x", "confidence": 0.50, "A": 1, "é": 2, "aa": {"z": null, "b": true}}"#
            ),
            r#"{"A":1,"aa":{"b":true,"z":null},"confidence":0.50,"source":"x","tags":[],"é":2}"#
        );
        assert_eq!(canon(r#"{"b":1,"a":2,"b":3}"#), r#"{"a":2,"b":3}"#);
        assert_eq!(canon(" [ 1 , { } , [ ] , \"\" ] "), r#"[1,{},[],""]"#);
    }

    #[test]
    fn numbers_take_postgresql_numeric_form_without_rounding() {
        // Each pair was checked against PostgreSQL 15: select 'IN'::jsonb::text.
        for (input, expected) in [
            ("0", "0"),
            ("-0", "0"),
            ("-0.00", "0.00"),
            ("0e5", "0"),
            ("1e2", "100"),
            ("1.50e1", "15.0"),
            ("1e-2", "0.01"),
            ("1.5E+3", "1500"),
            ("-1.23e-5", "-0.0000123"),
            ("0.000e-3", "0.000000"),
            ("12.340e1", "123.40"),
            ("-0.0e-2", "0.000"),
            ("5e-0", "5"),
            ("100e-2", "1.00"),
            ("1.50", "1.50"),
            ("-42", "-42"),
            ("9223372036854775808", "9223372036854775808"),
            (
                "123456789012345678901234567890.123456789",
                "123456789012345678901234567890.123456789",
            ),
            (
                "0.1000000000000000055511151231257827",
                "0.1000000000000000055511151231257827",
            ),
        ] {
            assert_eq!(canon(input), expected, "{input}");
        }
        assert_eq!(canon("1e1000").len(), 1001);
        assert!(canonicalize("1e-16383").is_ok());
        assert!(canonicalize("1e-16384").is_err());
        assert!(canonicalize("1e131071").is_ok());
        assert!(canonicalize("1e131072").is_err());
        assert!(canonicalize("1e99999999999999999999").is_err());
    }

    #[test]
    fn invalid_json_is_rejected_with_its_offset() {
        for (input, offset) in [
            ("", 0),
            ("{", 1),
            ("{\"a\" 1}", 5),
            ("[1,]", 3),
            ("01", 1),
            ("1.", 2),
            ("1e", 2),
            ("+1", 0),
            ("NaN", 0),
            ("\"a\u{1}\"", 2),
            ("\"\\x\"", 2),
            ("\"\\u0000\"", 1),
            ("\"\\ud800\"", 1),
            ("\"\\udc00x\"", 1),
            ("\"\\ud800\\u0041\"", 1),
            ("\"abc", 4),
            ("{} {}", 3),
            ("tru", 0),
        ] {
            let err = canonicalize(input).expect_err(input);
            assert_eq!(err.offset, offset, "{input}: {err}");
        }
    }

    #[test]
    fn strings_are_decoded_and_escaped_like_serde_json() {
        let mut all = String::new();
        for c in (0u32..0x80).chain([0xe9, 0x2028, 0x2029, 0xfeff, 0x1f98a]) {
            if c != 0 {
                all.push(char::from_u32(c).expect("char"));
            }
        }
        let mut ours = String::new();
        write_str(&all, &mut ours);
        assert_eq!(ours, serde_json::to_string(&all).expect("serde_json"));
        // Decoding every escape form gives back the same string.
        assert_eq!(
            parse(r#""\u00e9\u0041\/\b\f\n\r\t\"\\\ud83e\udd8a""#),
            Ok(Value::String("éA/\u{8}\u{c}\n\r\t\"\\🦊".into()))
        );
        assert_eq!(
            canon(r#""\u00e9\u0041\/\u001f\u007f\u2028""#),
            "\"éA/\\u001f\u{7f}\u{2028}\""
        );
    }

    #[test]
    fn nesting_is_bounded_and_fits_a_small_stack() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let too_deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        // A quarter of a tokio worker thread's stack, in an unoptimised build.
        let handle = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || (canonicalize(&ok).is_ok(), canonicalize(&too_deep).is_err()))
            .expect("thread");
        assert_eq!(handle.join().expect("no stack overflow"), (true, true));
    }
}
