//! Property tests of the tool's parsers of outside input: signed documents ([`crate::signed`])
//! and the two kinds it keeps, backup and archive manifests, through their parse function; and
//! the backup file names read from a directory listing.
//!
//! Never a panic, whatever the file holds; every manifest this version writes reads back equal
//! and verifies; and a changed manifest never verifies unless it says exactly what was signed.
//!
//! A module of the library rather than a file in `tests/`: the manifest modules are not public.

#[path = "../../core/kernel/tests/support/inputs.rs"]
mod inputs;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;

use proptest::prelude::*;
use ransomeye_intel::GraphDigest;
use ransomeye_kernel::keys::SigningKey;
use serde::de::DeserializeOwned;
use serde::Serialize;

// The two manifest kinds, wherever the command modules keep them.
use crate::backup_set::manifest as backup;
use crate::commands::archive::manifest as archive;
use crate::signed::Signed;
use crate::trust::TrustKeys;

fn archive_body() -> impl Strategy<Value = archive::Body> {
    let text = any::<String>;
    (
        (any::<u32>(), file_name(), text(), text(), text(), text()),
        (
            any::<u64>(),
            any::<Option<i64>>(),
            any::<Option<i64>>(),
            proptest::option::of(text()),
            proptest::option::of(text()),
        ),
        (any::<u64>(), text(), any::<u64>(), text(), text()),
        (
            any::<i32>(),
            text(),
            text(),
            prop_oneof![Just(archive::State::Written), Just(archive::State::Pruned)],
            any::<Option<u64>>(),
        ),
    )
        .prop_map(
            |(
                (format, file, table, primary_key, time_column, cutoff),
                (rows, first_id, last_id, first_time, last_time),
                (plaintext_bytes, plaintext_sha256, file_bytes, file_sha256, archive_key_id),
                (zstd_level, tool_version, created_at, state, rows_deleted),
            )| archive::Body {
                format,
                file,
                table,
                primary_key,
                time_column,
                cutoff,
                rows,
                first_id,
                last_id,
                first_time,
                last_time,
                plaintext_bytes,
                plaintext_sha256,
                file_bytes,
                file_sha256,
                archive_key_id,
                zstd_level,
                tool_version,
                created_at,
                state,
                rows_deleted,
            },
        )
}

/// A data file's name as a manifest may hold it: one plain path component (anything else is
/// refused when the manifest is read).
fn file_name() -> impl Strategy<Value = String> {
    "[^/\\x00]{1,40}".prop_filter("a plain name", |s| s != "." && s != "..")
}

fn sealed_file() -> impl Strategy<Value = backup::SealedFile> {
    (
        any::<String>(),
        any::<u64>(),
        any::<String>(),
        any::<u64>(),
        any::<String>(),
    )
        .prop_map(|(file, bytes, sha256, plaintext_bytes, plaintext_sha256)| {
            backup::SealedFile {
                file,
                bytes,
                sha256,
                plaintext_bytes,
                plaintext_sha256,
            }
        })
}

fn entry() -> impl Strategy<Value = backup::Entry> {
    (
        any::<String>(),
        prop_oneof![
            Just(backup::Kind::Config),
            Just(backup::Kind::Artifact),
            Just(backup::Kind::Intel)
        ],
        any::<String>(),
        any::<u64>(),
        any::<i64>(),
        any::<u32>(),
        any::<String>(),
        any::<String>(),
    )
        .prop_map(
            |(path, kind, source, size, mtime, mode, sha256, stored_in)| backup::Entry {
                path,
                kind,
                source,
                size,
                mtime,
                mode,
                sha256,
                stored_in,
            },
        )
}

fn backup_body() -> impl Strategy<Value = backup::Body> {
    let text = any::<String>;
    (
        (any::<u32>(), text(), text(), text(), text(), text()),
        (text(), text(), any::<i32>(), sealed_file(), sealed_file()),
        (
            proptest::collection::btree_map(text(), any::<u64>(), 0..4),
            (any::<u64>(), any::<u64>(), any::<u64>(), text()),
            proptest::collection::vec(entry(), 0..3),
        ),
    )
        .prop_map(
            |(
                (format, name, snapshot_time, database, server_version, pg_dump_version),
                (tool_version, backup_key_id, zstd_level, dump, files),
                (tables, (nodes, edges, bytes, sha256), entries),
            )| backup::Body {
                format,
                name,
                snapshot_time,
                database,
                server_version,
                pg_dump_version,
                tool_version,
                backup_key_id,
                zstd_level,
                dump,
                files,
                tables: tables.into_iter().collect::<BTreeMap<_, _>>(),
                intel: GraphDigest {
                    nodes,
                    edges,
                    bytes,
                    sha256,
                },
                entries,
            },
        )
}

/// A fresh trust key and the verifying side of it.
fn keys() -> (SigningKey, TrustKeys) {
    let key = SigningKey::generate().expect("the system random source works");
    let trust = TrustKeys::new(key.public_key());
    (key, trust)
}

fn parse<B: Serialize + DeserializeOwned>(text: &[u8]) -> Option<Signed<B>> {
    Signed::from_slice(text, Path::new("x.manifest.json"), "manifest").ok()
}

/// `body`, signed and written as this version writes it, reads back equal and verifies.
fn round_trips<B>(body: B) -> Result<(), TestCaseError>
where
    B: Serialize + DeserializeOwned + PartialEq + Debug + Clone,
{
    let (key, trust) = keys();
    let text = Signed::sign(body.clone(), &key)
        .and_then(|s| s.to_vec())
        .map_err(|e| TestCaseError::fail(format!("cannot write: {}", e.what)))?;
    let read = parse::<B>(&text).ok_or_else(|| TestCaseError::fail("does not read back"))?;
    prop_assert_eq!(&read.body, &body);
    prop_assert_eq!(read.verify_signature(&trust), Ok(()));
    Ok(())
}

/// `body`, signed and written, then changed by `edits`: it reads or is refused, and if its
/// signature still verifies it says exactly what was signed.
fn changes_are_caught<B>(body: B, edits: &[inputs::Edit]) -> Result<(), TestCaseError>
where
    B: Serialize + DeserializeOwned + PartialEq + Debug + Clone,
{
    let (key, trust) = keys();
    let text = Signed::sign(body.clone(), &key)
        .and_then(|s| s.to_vec())
        .map_err(|e| TestCaseError::fail(format!("cannot write: {}", e.what)))?;
    let changed = inputs::apply(text, edits);
    if let Some(read) = parse::<B>(&changed) {
        if read.verify_signature(&trust).is_ok() {
            prop_assert_eq!(&read.body, &body, "{}", String::from_utf8_lossy(&changed));
        }
    }
    Ok(())
}

/// The name of a backup taken at a generated time, with its `-N` suffix if any.
fn backup_name() -> impl Strategy<Value = String> {
    ("[0-9]{8}", "[0-9]{6}", proptest::option::of(1u32..)).prop_map(|(date, time, n)| match n {
        Some(n) => format!("{}{date}T{time}Z-{n}", backup::PREFIX),
        None => format!("{}{date}T{time}Z", backup::PREFIX),
    })
}

proptest! {
    #![proptest_config(inputs::config())]

    #[test]
    fn archive_manifests_round_trip(body in archive_body()) {
        round_trips(body)?;
    }

    #[test]
    fn backup_manifests_round_trip(body in backup_body()) {
        round_trips(body)?;
    }

    #[test]
    fn changed_archive_manifests_never_verify_as_something_else(body in archive_body(), changes in inputs::edits()) {
        changes_are_caught(body, &changes)?;
    }

    #[test]
    fn changed_backup_manifests_never_verify_as_something_else(body in backup_body(), changes in inputs::edits()) {
        changes_are_caught(body, &changes)?;
    }

    #[test]
    fn arbitrary_bytes_are_refused_as_manifests(bytes in inputs::arbitrary_bytes()) {
        let (_, trust) = keys();
        if let Some(m) = parse::<archive::Body>(&bytes) {
            prop_assert!(m.verify_signature(&trust).is_err());
        }
        if let Some(m) = parse::<backup::Body>(&bytes) {
            prop_assert!(m.verify_signature(&trust).is_err());
        }
    }

    #[test]
    fn backup_names_are_recognised_in_every_file_name(name in backup_name()) {
        prop_assert!(backup::is_backup_name(&name));
        for suffix in [backup::DUMP_SUFFIX, backup::FILES_SUFFIX, backup::MANIFEST_SUFFIX] {
            let file = format!("{name}{suffix}");
            prop_assert_eq!(backup::backup_name(&file), Some(name.as_str()));
            let paths = backup::Paths::of(&Path::new("/b").join(&file));
            prop_assert_eq!(paths, Some(backup::Paths::new(Path::new("/b"), &name)));
        }
    }

    #[test]
    fn any_file_name_is_a_backup_file_or_not(
        file in inputs::hostile_text(
            (backup_name(), prop_oneof![Just(""), Just(".enc"), Just(".files.enc"), Just(".manifest.json")])
                .prop_map(|(n, s)| format!("{n}{s}")),
        ),
    ) {
        if let Some(name) = backup::backup_name(&file) {
            prop_assert!(backup::is_backup_name(name));
            prop_assert!(file.starts_with(name));
        }
        if let Some(paths) = backup::Paths::of(Path::new(&file)) {
            prop_assert!(backup::is_backup_name(&paths.name));
        }
    }
}
