//! Input strategies for the property tests of every parser of outside input (envelope header,
//! configuration, connection URLs, intel JSON, bus messages, signed manifests).
//!
//! Arbitrary bytes almost never get past a parser's first check (a magic number, an opening
//! brace), so each parser is also fed mutations of valid input: a valid encoding with a few
//! bytes replaced, inserted or removed, or cut short. Those reach every later check.
//!
//! One file, included with `#[path]` by each crate's `tests/properties.rs`, so that all crates
//! share one definition without a published crate.

#![allow(dead_code)] // each including test uses a part

use proptest::prelude::*;

/// Cases per property: 256, so that the suite stays fast, unless `PROPTEST_CASES` asks for
/// more (a longer search by hand: `PROPTEST_CASES=100000 cargo nextest run -E 'binary(properties)'`).
pub fn config() -> ProptestConfig {
    // `ProptestConfig::default()` reads the environment variable.
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 256;
    }
    config
}

/// Largest arbitrary input, in bytes: enough for every branch of a header or a short message.
pub const MAX_LEN: usize = 512;

/// One change to a byte string, at a position taken modulo its length.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Replace the byte at the position.
    Replace(prop::sample::Index, u8),
    /// Insert a byte before the position.
    Insert(prop::sample::Index, u8),
    /// Remove the byte at the position.
    Remove(prop::sample::Index),
    /// Drop everything from the position on.
    Truncate(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Replace(i, b)),
        2 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        2 => any::<prop::sample::Index>().prop_map(Edit::Remove),
        1 => any::<prop::sample::Index>().prop_map(Edit::Truncate),
    ]
}

/// Applies `edits` to `bytes` in order.
pub fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        match e {
            Edit::Insert(i, b) => {
                let at = i.index(bytes.len() + 1);
                bytes.insert(at, *b);
            }
            _ if bytes.is_empty() => {}
            Edit::Replace(i, b) => {
                let at = i.index(bytes.len());
                bytes[at] = *b;
            }
            Edit::Remove(i) => {
                bytes.remove(i.index(bytes.len()));
            }
            Edit::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        }
    }
    bytes
}

/// Arbitrary bytes, up to [`MAX_LEN`].
pub fn arbitrary_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..MAX_LEN)
}

/// One to four edits, for a test that builds the valid input itself (e.g. signs it).
pub fn edits() -> impl Strategy<Value = Vec<Edit>> {
    proptest::collection::vec(edit(), 1..=4)
}

/// Valid encodings from `valid`, each with one to four edits.
pub fn mutated<S>(valid: S) -> impl Strategy<Value = Vec<u8>>
where
    S: Strategy<Value = Vec<u8>>,
{
    (valid, edits()).prop_map(|(v, edits)| apply(v, &edits))
}

/// What a parser of bytes must survive: arbitrary bytes, or mutations of `valid`.
pub fn hostile_bytes<S>(valid: S) -> impl Strategy<Value = Vec<u8>>
where
    S: Strategy<Value = Vec<u8>>,
{
    prop_oneof![arbitrary_bytes(), mutated(valid)]
}

/// What a parser of text must survive: arbitrary strings, or mutations of `valid` made UTF-8
/// again (a mutation that breaks a multi-byte character becomes U+FFFD).
pub fn hostile_text<S>(valid: S) -> impl Strategy<Value = String>
where
    S: Strategy<Value = String>,
{
    prop_oneof![
        any::<String>(),
        mutated(valid.prop_map(String::into_bytes))
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}
