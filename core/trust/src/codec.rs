//! The field types of the wire format and their strict text forms: lower-case hex of a fixed
//! length, and lower-case hyphenated UUIDs. Parsing refuses every other spelling, so that a field
//! has exactly one text form and the signing input built from it is unambiguous.

use std::fmt;
use std::str::FromStr;

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Decodes exactly `2 * N` lower-case hex digits.
pub(crate) fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Serde for `[u8; N]` as lower-case hex (`#[serde(with = "codec::hex_array")]`).
pub(crate) mod hex_array {
    use super::*;

    pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = String::deserialize(d)?;
        parse_hex(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("expected {} lower-case hex digits", 2 * N))
        })
    }
}

/// A rotation's identifier: 16 random bytes, written as 32 lower-case hex digits. Fresh for every
/// rotation, so an ack of one rotation can never count for another.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RotationId(pub [u8; 16]);

impl RotationId {
    /// Draws a new id from the system's secure random source (`None` if it fails).
    pub fn generate() -> Option<RotationId> {
        let mut id = [0u8; 16];
        SystemRandom::new().fill(&mut id).ok()?;
        Some(RotationId(id))
    }
}

impl fmt::Display for RotationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for RotationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RotationId({self})")
    }
}

impl FromStr for RotationId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_hex(s)
            .map(RotationId)
            .ok_or_else(|| format!("rotation id {s:?} is not 32 lower-case hex digits"))
    }
}

impl Serialize for RotationId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RotationId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// An agent's id: the `agents.id` UUID in PostgreSQL's text form (lower-case, hyphenated,
/// `8-4-4-4-12` hex digits).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(String);

impl AgentId {
    /// The text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A new random (version 4) UUID.
    pub fn generate() -> Option<AgentId> {
        let mut b = [0u8; 16];
        SystemRandom::new().fill(&mut b).ok()?;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(b);
        Some(AgentId(format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )))
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgentId({})", self.0)
    }
}

impl FromStr for AgentId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = s.len() == 36
            && s.bytes().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => b == b'-',
                _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
            });
        if ok {
            Ok(AgentId(s.to_string()))
        } else {
            Err(format!(
                "agent id {s:?} is not a lower-case hyphenated UUID"
            ))
        }
    }
}

impl Serialize for AgentId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AgentId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_fields_accept_only_lower_case_of_the_exact_length() {
        assert_eq!(parse_hex::<2>("0aff"), Some([0x0a, 0xff]));
        assert_eq!(parse_hex::<2>("0AFF"), None);
        assert_eq!(parse_hex::<2>("0af"), None);
        assert_eq!(parse_hex::<2>("0aff00"), None);
        assert_eq!(parse_hex::<2>("0a\nf"), None);
    }

    #[test]
    fn agent_ids_are_canonical_uuids() {
        let id = AgentId::generate().expect("random");
        assert_eq!(id.as_str().parse::<AgentId>(), Ok(id.clone()));
        assert!("6F9619FF-8B86-D011-B42D-00C04FC964FF"
            .parse::<AgentId>()
            .is_err());
        assert!("6f9619ff8b86d011b42d00c04fc964ff"
            .parse::<AgentId>()
            .is_err());
        assert!("6f9619ff-8b86-d011-b42d-00c04fc964ff"
            .parse::<AgentId>()
            .is_ok());
    }

    #[test]
    fn rotation_ids_are_fresh_and_round_trip() {
        let a = RotationId::generate().expect("random");
        let b = RotationId::generate().expect("random");
        assert_ne!(a, b);
        assert_eq!(a.to_string().parse::<RotationId>(), Ok(a));
    }
}
