//! From a message of the alerts stream to one syslog message (docs/ALERTS.md, "Renderings").
//!
//! Uses no clock: the timestamp is the alert's own `raised_at`. Whatever the bytes, a message
//! comes out, so that one bad alert can never stop the forwarder or be lost silently:
//!
//! - bytes that are not UTF-8 are written as `\xNN` and the alert is then read as usual, with
//!   `invalidUtf8="N"` saying how many bytes were replaced;
//! - a message that is not an alert document is forwarded as `malformed`: its bytes (escaped)
//!   in the structured data, the severity from its subject, the time JetStream stored it.

use serde_json::Value;

use super::document::{msgid, Alert, Severity};
use super::escape_invalid_utf8;
use crate::syslog::format::{self, Record, SdElement, Timestamp};

/// The enterprise number in the SD-IDs (`alert@32473`, `meta@32473`): 32473 is the example
/// number RFC 5612 reserves for documentation; a site with its own number can map the names in
/// its SIEM.
pub const ENTERPRISE: &str = "32473";

/// The syslog output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// RFC 5424 (structured data, full timestamp).
    Rfc5424,
    /// RFC 3164 (BSD syslog, at most 1024 bytes).
    Rfc3164,
}

/// How to render: the facility, the format and what the forwarder knows about its clock.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// Syslog facility (0..=23).
    pub facility: u8,
    /// RFC 5424 or RFC 3164.
    pub format: Format,
    /// Whether the forwarder's clock is known to be synchronised (`timeQuality isSynced`).
    /// It is never used: the timestamp is the alert's own.
    pub clock_synced: bool,
}

/// What JetStream says about a stored message, for alerts that lack their own data.
#[derive(Debug, Clone, Copy)]
pub struct StoredAt {
    /// Sequence in the stream.
    pub seq: u64,
    /// When JetStream stored it (the bus's clock, ns since the epoch).
    pub ns: i64,
}

/// A JSON value as an SD or key=value parameter: strings as they are, anything else as JSON.
fn param_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn stored_timestamp(stored: StoredAt) -> Timestamp {
    let secs = stored.ns.div_euclid(1_000_000_000);
    Timestamp {
        days: secs.div_euclid(86_400),
        secs: secs.rem_euclid(86_400) as u32,
        micros: (stored.ns.rem_euclid(1_000_000_000) / 1000) as u32,
        frac_digits: 6,
    }
}

/// The syslog message for the stream message `payload` published on `subject`.
pub fn render(subject: &str, payload: &[u8], stored: StoredAt, style: Style) -> Vec<u8> {
    let record = record(subject, payload, stored, style);
    match style.format {
        Format::Rfc5424 => format::rfc5424(&record),
        Format::Rfc3164 => format::rfc3164(&record),
    }
}

/// The [`Record`] for a stream message (see [`render`]).
pub fn record(subject: &str, payload: &[u8], stored: StoredAt, style: Style) -> Record {
    let (text, replaced) = match std::str::from_utf8(payload) {
        Ok(s) => (s.to_string(), 0),
        Err(_) => {
            let count = payload.utf8_chunks().map(|c| c.invalid().len()).sum();
            (escape_invalid_utf8(payload, true), count)
        }
    };
    let mut record = match serde_json::from_str::<Alert>(&text) {
        Ok(alert) => from_alert(&alert, stored, style, replaced),
        Err(e) => malformed(subject, payload, stored, style, &e.to_string()),
    };
    if style.format == Format::Rfc5424 {
        record.structured.push(SdElement {
            id: "timeQuality".into(),
            params: vec![
                ("tzKnown".into(), "1".into()),
                (
                    "isSynced".into(),
                    if style.clock_synced { "1" } else { "0" }.into(),
                ),
            ],
        });
    }
    record
}

fn from_alert(alert: &Alert, stored: StoredAt, style: Style, replaced: usize) -> Record {
    let severity = Severity::parse(&alert.severity);
    let mut params: Vec<(String, String)> = vec![
        ("id".into(), alert.id.clone()),
        ("severity".into(), alert.severity.clone()),
        ("raisedAt".into(), alert.raised_at.clone()),
    ];
    let timestamp = Timestamp::parse_rfc3339(&alert.raised_at).unwrap_or_else(|| {
        params.push(("raisedAtInvalid".into(), "1".into()));
        stored_timestamp(stored)
    });
    let host = alert.host.clone().unwrap_or_default();
    let source = alert.source.clone().unwrap_or_default();
    // The header fields allow printable ASCII only: the original goes along when it had more.
    if format::header_field(&host, 255) != host && !host.is_empty() {
        params.push(("host".into(), host.clone()));
    }
    if format::header_field(&source, 48) != source && !source.is_empty() {
        params.push(("source".into(), source.clone()));
    }
    if severity.is_none() {
        params.push(("severityUnknown".into(), "1".into()));
    }
    if replaced > 0 {
        params.push(("invalidUtf8".into(), replaced.to_string()));
    }
    for (name, value) in &alert.extra {
        params.push((name.clone(), param_value(value)));
    }
    let mut structured = vec![SdElement {
        id: format!("alert@{ENTERPRISE}"),
        params,
    }];
    if !alert.metadata.is_empty() {
        structured.push(SdElement {
            id: format!("meta@{ENTERPRISE}"),
            params: alert
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), param_value(v)))
                .collect(),
        });
    }
    Record {
        facility: style.facility,
        // An unknown severity is reported as an error rather than dropped.
        severity: severity.map_or(3, |s| s.code),
        timestamp,
        hostname: host,
        app_name: if source.is_empty() {
            "ransomeye".into()
        } else {
            source
        },
        msgid: msgid(&alert.id),
        structured,
        msg: alert.title.clone(),
    }
}

fn malformed(subject: &str, payload: &[u8], stored: StoredAt, style: Style, why: &str) -> Record {
    let severity = subject
        .strip_prefix("alerts.")
        .and_then(Severity::parse)
        .map_or(3, |s| s.code);
    Record {
        facility: style.facility,
        severity,
        timestamp: stored_timestamp(stored),
        hostname: String::new(),
        app_name: "ransomeye".into(),
        msgid: "malformed".into(),
        structured: vec![SdElement {
            id: format!("alert@{ENTERPRISE}"),
            params: vec![
                ("malformed".into(), why.into()),
                ("subject".into(), subject.into()),
                ("seq".into(), stored.seq.to_string()),
                ("payload".into(), escape_invalid_utf8(payload, false)),
            ],
        }],
        msg: "malformed alert (not an alert document)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORED: StoredAt = StoredAt {
        seq: 7,
        ns: 1_764_625_453_123_456_789,
    };

    fn style(format: Format) -> Style {
        Style {
            facility: 16,
            format,
            clock_synced: false,
        }
    }

    fn text(subject: &str, payload: &[u8], format: Format) -> String {
        String::from_utf8(render(subject, payload, STORED, style(format))).unwrap_or_default()
    }

    #[test]
    fn an_alert_renders_with_its_own_time_and_every_field() {
        let alert = br#"{"id":"0f6c2a8e-9b7d-4e1f-8a3b-5c7d9e1f2a3b","severity":"high","title":"Mass encryption","host":"ws-042","source":"edr","raised_at":"2026-12-01T21:44:13.5Z","metadata":{"pid":4242,"path":"C:\\a\"b]"},"tactic":"T1486"}"#;
        assert_eq!(
            text("alerts.high", alert, Format::Rfc5424),
            "<131>1 2026-12-01T21:44:13.5Z ws-042 edr - 0f6c2a8e9b7d4e1f8a3b5c7d9e1f2a3b \
             [alert@32473 id=\"0f6c2a8e-9b7d-4e1f-8a3b-5c7d9e1f2a3b\" severity=\"high\" \
             raisedAt=\"2026-12-01T21:44:13.5Z\" tactic=\"T1486\"]\
             [meta@32473 path=\"C:\\\\a\\\"b\\]\" pid=\"4242\"]\
             [timeQuality tzKnown=\"1\" isSynced=\"0\"] Mass encryption"
        );
    }

    #[test]
    fn non_utf8_bytes_are_escaped_and_counted() {
        let alert = b"{\"id\":\"x1\",\"severity\":\"low\",\"title\":\"t\",\"raised_at\":\"2026-12-01T00:00:00Z\",\"metadata\":{\"file\":\"a\xffb\"}}";
        let out = text("alerts.low", alert, Format::Rfc5424);
        // The value is `a\xFFb`; in SD its backslash is escaped (§6.3.3).
        assert!(out.contains(r#"file="a\\xFFb""#), "{out}");
        assert!(out.contains("invalidUtf8=\"1\""), "{out}");
    }

    #[test]
    fn a_malformed_message_is_forwarded_not_dropped() {
        let out = text("alerts.critical", b"not json \xfe", Format::Rfc5424);
        assert!(
            out.starts_with("<130>1 2025-12-01T21:44:13.123456Z - ransomeye - malformed "),
            "{out}"
        );
        assert!(out.contains(r#"payload="not json \\xFE""#), "{out}");
    }

    #[test]
    fn a_bad_raised_at_falls_back_to_the_stored_time_and_says_so() {
        let alert = br#"{"id":"x","severity":"info","title":"t","raised_at":"yesterday"}"#;
        let out = text("alerts.info", alert, Format::Rfc3164);
        assert!(
            out.starts_with("<134>Dec  1 21:44:13 - ransomeye: id=\"x\""),
            "{out}"
        );
        assert!(out.contains("raisedAtInvalid=\"1\""), "{out}");
    }
}
