//! The alert document (docs/ALERTS.md, "The alert document") and the severity map.
//!
//! An alert is a JSON object; the fields below are the ones RansomEye defines. Fields it does
//! not know are kept in [`Alert::extra`] and forwarded, never dropped, so a newer sensor's
//! alert passes through an older forwarder intact.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One alert as raised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Unique id; a UUID for alerts this tool raises.
    pub id: String,
    /// One of [`Severity`]'s names.
    pub severity: String,
    /// One line saying what happened.
    pub title: String,
    /// Where it happened (the sensor's host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// What raised it (sensor, service or `ransomeye-ops`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// When it was raised, by the raiser's clock: RFC 3339.
    pub raised_at: String,
    /// Anything else worth knowing, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
    /// Fields this version does not define, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A severity: RFC 5424's eight names and the platform's five, each mapped to a syslog severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Severity {
    /// The name as it appears in the alert and its subject.
    pub name: &'static str,
    /// The syslog severity code (0 emergency ..= 7 debug).
    pub code: u8,
}

/// The severity map (docs/ALERTS.md, "Severities"). `critical` is both an RFC 5424 name and a
/// platform name; it means the same in both.
pub const SEVERITIES: [Severity; 12] = [
    Severity {
        name: "emergency",
        code: 0,
    },
    Severity {
        name: "alert",
        code: 1,
    },
    Severity {
        name: "critical",
        code: 2,
    },
    Severity {
        name: "error",
        code: 3,
    },
    Severity {
        name: "warning",
        code: 4,
    },
    Severity {
        name: "notice",
        code: 5,
    },
    Severity {
        name: "informational",
        code: 6,
    },
    Severity {
        name: "debug",
        code: 7,
    },
    Severity {
        name: "high",
        code: 3,
    },
    Severity {
        name: "medium",
        code: 4,
    },
    Severity {
        name: "low",
        code: 5,
    },
    Severity {
        name: "info",
        code: 6,
    },
];

impl Severity {
    /// The severity named `name` (exact, lower case).
    pub fn parse(name: &str) -> Option<Severity> {
        SEVERITIES.into_iter().find(|s| s.name == name)
    }

    /// Every name, for messages.
    pub fn names() -> String {
        SEVERITIES.map(|s| s.name).join(", ")
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// The syslog facilities by name (RFC 5424 §6.2.1, with the names of syslog.conf).
pub const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// The facility code of `name` (a name of [`FACILITIES`] or its number 0..=23).
pub fn facility(name: &str) -> Option<u8> {
    if let Ok(n) = name.parse::<u8>() {
        return (n <= 23).then_some(n);
    }
    FACILITIES
        .iter()
        .position(|f| *f == name)
        .and_then(|p| u8::try_from(p).ok())
}

/// A new alert id: a random (version 4) UUID.
pub fn new_id() -> Result<String, ring::error::Unspecified> {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// The alert id as a MSGID of at most 32 printable characters: a UUID without its hyphens
/// (lower case); any other id of at most 32 printable ASCII characters as it is; else `h`
/// and the first 31 hex digits of its SHA-256. The full id is always in the structured data.
pub fn msgid(id: &str) -> String {
    let hexdigits: String = id.chars().filter(|c| *c != '-').collect();
    let is_uuid = id.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| id.as_bytes()[i] == b'-')
        && hexdigits.len() == 32
        && hexdigits.chars().all(|c| c.is_ascii_hexdigit());
    if is_uuid {
        return hexdigits.to_ascii_lowercase();
    }
    if !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| (33..=126).contains(&b)) {
        return id.to_string();
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
    format!("h{}", &hex::encode(digest.as_ref())[..31])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_maps_as_documented() {
        let map: Vec<(&str, u8)> = SEVERITIES.iter().map(|s| (s.name, s.code)).collect();
        assert_eq!(map.len(), 12);
        assert_eq!(Severity::parse("high").map(|s| s.code), Some(3));
        assert_eq!(Severity::parse("info").map(|s| s.code), Some(6));
        assert_eq!(Severity::parse("emergency").map(|s| s.code), Some(0));
        assert_eq!(Severity::parse("High"), None);
        assert_eq!(facility("local0"), Some(16));
        assert_eq!(facility("23"), Some(23));
        assert_eq!(facility("24"), None);
        assert_eq!(facility("local8"), None);
    }

    #[test]
    fn unknown_fields_are_kept() {
        let text = r#"{"id":"a","severity":"low","title":"t","raised_at":"2026-12-01T00:00:00Z","tactic":"T1486","score":{"v":9}}"#;
        let alert: Alert = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(alert.extra["tactic"], "T1486");
        let back = serde_json::to_value(&alert).unwrap_or_default();
        assert_eq!(back["score"]["v"], 9);
    }

    #[test]
    fn msgids_are_short_and_stable() {
        let id = new_id().unwrap_or_default();
        assert_eq!(id.len(), 36);
        assert_eq!(msgid(&id).len(), 32);
        assert!(!msgid(&id).contains('-'));
        assert_eq!(msgid("short-id-1"), "short-id-1");
        let long = "x".repeat(100);
        assert_eq!(msgid(&long).len(), 32);
        assert_eq!(msgid(&long), msgid(&long));
        assert_eq!(msgid("with space").len(), 32);
    }
}
