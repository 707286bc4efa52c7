//! Envelope round trips, tamper rejection, and the test vectors of docs/FORMAT.md and
//! core/kernel/tests/vectors/.

use std::io::{Read, Write};
use std::path::PathBuf;

use proptest::prelude::*;

use super::*;
use crate::keys::{KeyPurpose, SymmetricKey};

fn key(byte: u8) -> SymmetricKey {
    SymmetricKey::from_bytes(KeyPurpose::Archive, [byte; 32])
}

fn seal(key: &SymmetricKey, segment_size: u32, plaintext: &[u8]) -> Vec<u8> {
    let mut w = EnvelopeWriter::with_parameters(
        Vec::new(),
        key,
        Purpose::Archive,
        segment_size,
        [0x11; SALT_LEN],
        [0x22; NONCE_PREFIX_LEN],
    )
    .expect("writer");
    w.write_all(plaintext).expect("write");
    w.finish().expect("finish")
}

fn open(key: &SymmetricKey, file: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::new();
    let result = EnvelopeReader::open(file, key).and_then(|mut r| r.read_to_end(&mut out));
    match result {
        Ok(_) => Ok(out),
        Err(e) => Err(EnvelopeError::from_io(&e)
            .cloned()
            .unwrap_or_else(|| panic!("non-envelope error {e}"))),
    }
}

fn segments(segment_size: u32, file: &[u8]) -> Vec<Vec<u8>> {
    file[HEADER_LEN..]
        .chunks(segment_size as usize + TAG_LEN)
        .map(<[u8]>::to_vec)
        .collect()
}

fn reassemble(file: &[u8], segs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = file[..HEADER_LEN].to_vec();
    for s in segs {
        out.extend_from_slice(s);
    }
    out
}

#[test]
fn round_trip_at_and_around_segment_boundaries() {
    let k = key(1);
    for len in [0usize, 1, 31, 32, 33, 64, 65, 96, 1000] {
        let plain: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let file = seal(&k, 32, &plain);
        assert_eq!(open(&k, &file).expect("opens"), plain, "len {len}");
        let expected_segments = len.div_ceil(32).max(1);
        assert_eq!(
            file.len(),
            HEADER_LEN + len + expected_segments * TAG_LEN,
            "len {len}"
        );
    }
}

#[test]
fn every_read_size_yields_the_same_plaintext() {
    // Reads smaller than a sealed segment go through the reader's buffer; larger ones decrypt
    // in the caller's buffer. Both must agree, also on where segments end.
    let k = key(13);
    let plain: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let file = seal(&k, 32, &plain);
    for size in [1usize, 7, 32, 48, 49, 50, 64, 4096] {
        let mut r = EnvelopeReader::open(&file[..], &k).expect("open");
        let mut out = Vec::new();
        let mut buf = vec![0u8; size];
        loop {
            let n = r.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, plain, "read size {size}");
    }
}

#[test]
fn a_failed_segment_leaves_no_plaintext_in_the_callers_buffer() {
    let k = key(14);
    let file = seal(&k, 32, &[0x41; 100]);
    let mut bad = file.clone();
    bad[HEADER_LEN + 48 + 3] ^= 1; // inside segment 1
    let mut r = EnvelopeReader::open(&bad[..], &k).expect("open");
    let mut buf = vec![0u8; 4096];
    assert_eq!(r.read(&mut buf).expect("segment 0 is intact"), 32);
    buf.fill(0xEE);
    assert!(r.read(&mut buf).is_err());
    assert!(
        !buf[..32].contains(&0x41),
        "unauthenticated plaintext left in the buffer"
    );
    assert!(
        r.read(&mut buf).is_err(),
        "a failed reader must stay failed"
    );
}

#[test]
fn default_writer_uses_fresh_salt_and_nonce_prefix_per_file() {
    let k = key(1);
    let mut a = EnvelopeWriter::new(Vec::new(), &k, Purpose::Archive).expect("writer");
    a.write_all(b"same").expect("write");
    let a = a.finish().expect("finish");
    let mut b = EnvelopeWriter::new(Vec::new(), &k, Purpose::Archive).expect("writer");
    b.write_all(b"same").expect("write");
    let b = b.finish().expect("finish");
    assert_ne!(a[22..61], b[22..61], "salt and nonce prefix must differ");
    assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
    assert_eq!(open(&k, &a).expect("a"), b"same");
}

#[test]
fn truncation_at_every_byte_is_rejected() {
    let k = key(2);
    let file = seal(&k, 32, &[0xAA; 100]);
    for cut in 0..file.len() {
        let err = open(&k, &file[..cut]).expect_err(&format!("cut at {cut} must fail"));
        let expected_kind = match cut {
            0..=7 => matches!(
                err,
                EnvelopeError::BadMagic | EnvelopeError::TruncatedHeader { .. }
            ),
            8..=60 => matches!(err, EnvelopeError::TruncatedHeader { .. }),
            _ => matches!(
                err,
                EnvelopeError::Truncated { .. } | EnvelopeError::Authentication { last: true, .. }
            ),
        };
        assert!(expected_kind, "cut at {cut}: {err}");
    }
}

#[test]
fn truncation_exactly_at_a_segment_boundary_is_rejected() {
    let k = key(2);
    let file = seal(&k, 32, &[0xAA; 100]);
    let boundary = HEADER_LEN + 2 * (32 + TAG_LEN);
    let err = open(&k, &file[..boundary]).expect_err("boundary cut");
    assert!(
        matches!(
            err,
            EnvelopeError::Authentication {
                segment: 1,
                last: true,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn reordered_duplicated_and_dropped_segments_are_rejected() {
    let k = key(3);
    let file = seal(&k, 32, &(0..=255).collect::<Vec<u8>>()[..100]);
    let segs = segments(32, &file);
    assert_eq!(segs.len(), 4);
    let swapped = reassemble(
        &file,
        &[
            segs[1].clone(),
            segs[0].clone(),
            segs[2].clone(),
            segs[3].clone(),
        ],
    );
    let duplicated = reassemble(
        &file,
        &[
            segs[0].clone(),
            segs[0].clone(),
            segs[1].clone(),
            segs[2].clone(),
            segs[3].clone(),
        ],
    );
    let dropped_middle = reassemble(&file, &[segs[0].clone(), segs[2].clone(), segs[3].clone()]);
    let dropped_last = reassemble(&file, &segs[..3]);
    for (name, bad) in [
        ("swapped", swapped),
        ("duplicated", duplicated),
        ("dropped middle", dropped_middle),
        ("dropped last", dropped_last),
    ] {
        let err = open(&k, &bad).expect_err(name);
        assert!(
            matches!(err, EnvelopeError::Authentication { .. }),
            "{name}: {err}"
        );
    }
}

#[test]
fn data_after_the_final_segment_is_rejected() {
    let k = key(4);
    let file = seal(&k, 32, b"complete");
    for extra in [&b"x"[..], &[0u8; 16][..], &[0u8; 200][..]] {
        let mut bad = file.clone();
        bad.extend_from_slice(extra);
        assert!(
            open(&k, &bad).is_err(),
            "{} trailing bytes accepted",
            extra.len()
        );
    }
    // A whole valid envelope appended is still rejected.
    let mut twice = file.clone();
    twice.extend_from_slice(&file);
    assert!(open(&k, &twice).is_err());
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let k = key(5);
    let file = seal(&k, 32, b"evidence that must not change silently; 48 bytes");
    for byte in 0..file.len() {
        for bit in 0..8 {
            let mut bad = file.clone();
            bad[byte] ^= 1 << bit;
            assert!(
                open(&k, &bad).is_err(),
                "flip of bit {bit} in byte {byte} accepted"
            );
        }
    }
}

#[test]
fn wrong_key_unknown_version_and_wrong_purpose_are_named() {
    let file = seal(&key(6), 32, b"x");
    assert!(matches!(
        open(&key(7), &file),
        Err(EnvelopeError::WrongKey { .. })
    ));
    let mut v2 = file.clone();
    v2[8] = 2;
    assert_eq!(
        open(&key(6), &v2),
        Err(EnvelopeError::UnsupportedVersion(2))
    );
    let backup_key = SymmetricKey::from_bytes(KeyPurpose::Backup, [6; 32]);
    assert!(matches!(
        open(&backup_key, &file),
        Err(EnvelopeError::WrongPurpose { .. })
    ));
    assert_eq!(
        open(&key(6), b"PK\x03\x04 not ours"),
        Err(EnvelopeError::BadMagic)
    );
}

#[test]
fn empty_final_segment_after_data_is_rejected() {
    // Hand-build what no writer emits: one full non-final segment, then an empty final one.
    let k = key(12);
    let salt = [3u8; SALT_LEN];
    let prefix = [4u8; NONCE_PREFIX_LEN];
    let header = Header {
        purpose: Purpose::Archive,
        segment_size: 16,
        key_id: k.id(),
        salt,
        nonce_prefix: prefix,
    }
    .to_bytes();
    let file_key = derive_file_key(&k, Purpose::Archive, &salt);
    let mut file = header.to_vec();
    for (i, (plain, last)) in [(&[7u8; 16][..], false), (&[][..], true)]
        .into_iter()
        .enumerate()
    {
        let mut seg = plain.to_vec();
        let tag = file_key
            .seal_in_place_separate_tag(
                segment_nonce(&prefix, i as u32, last),
                ring::aead::Aad::from(&header[..]),
                &mut seg,
            )
            .expect("seal");
        seg.extend_from_slice(tag.as_ref());
        file.extend_from_slice(&seg);
    }
    assert_eq!(
        open(&k, &file),
        Err(EnvelopeError::EmptyFinalSegment { segment: 1 })
    );
}

#[test]
fn unfinished_writer_never_yields_a_valid_stream() {
    let k = key(8);
    let mut sink = Vec::new();
    {
        let mut w = EnvelopeWriter::with_parameters(
            &mut sink,
            &k,
            Purpose::Archive,
            32,
            [1; SALT_LEN],
            [2; NONCE_PREFIX_LEN],
        )
        .expect("writer");
        w.write_all(&[9u8; 100]).expect("write");
        // dropped without finish()
    }
    assert!(open(&k, &sink).is_err());
}

#[test]
fn memory_stays_at_one_segment() {
    // The writer's buffer never grows past one segment plus its tag, whatever is written.
    let k = key(9);
    let mut w = EnvelopeWriter::new(std::io::sink(), &k, Purpose::Archive).expect("writer");
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..16 {
        w.write_all(&chunk).expect("write");
        assert!(w.buffer_capacity() <= DEFAULT_SEGMENT_SIZE as usize + TAG_LEN);
    }
    w.finish().expect("finish");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_round_trip(plain in proptest::collection::vec(any::<u8>(), 0..2000), seg in 16u32..300, chunk in 1usize..500) {
        let k = key(10);
        let mut w = EnvelopeWriter::new(Vec::new(), &k, Purpose::Archive).expect("writer");
        // Exercise arbitrary write boundaries, then re-seal with a small segment size.
        for c in plain.chunks(chunk) { w.write_all(c).expect("write"); }
        let file = w.finish().expect("finish");
        prop_assert_eq!(open(&k, &file).expect("open"), plain.clone());
        let small = seal(&k, seg, &plain);
        prop_assert_eq!(open(&k, &small).expect("open small"), plain);
    }

    #[test]
    fn prop_any_tampering_is_rejected(plain in proptest::collection::vec(any::<u8>(), 0..400), pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let k = key(11);
        let file = seal(&k, 64, &plain);
        let mut bad = file.clone();
        let i = pos.index(bad.len());
        bad[i] ^= flip;
        prop_assert!(open(&k, &bad).is_err());
    }
}

// The header parser and the reader's entry point take whatever a file holds: arbitrary bytes
// must come back as an error (never a panic), and every header a writer can make must parse
// back to itself.

fn any_header() -> impl Strategy<Value = Header> {
    (
        prop_oneof![Just(Purpose::Archive), Just(Purpose::Backup)],
        MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE,
        any::<[u8; 8]>(),
        any::<[u8; SALT_LEN]>(),
        any::<[u8; NONCE_PREFIX_LEN]>(),
    )
        .prop_map(
            |(purpose, segment_size, key_id, salt, nonce_prefix)| Header {
                purpose,
                segment_size,
                key_id: KeyId(key_id),
                salt,
                nonce_prefix,
            },
        )
}

/// A header's bytes with up to three bytes replaced: mostly near-valid input, which reaches
/// every check of the parser (arbitrary bytes almost never get past the magic).
fn mutated_header_bytes() -> impl Strategy<Value = [u8; HEADER_LEN]> {
    (
        any_header(),
        proptest::collection::vec((0..HEADER_LEN, any::<u8>()), 0..=3),
    )
        .prop_map(|(header, edits)| {
            let mut b = header.to_bytes();
            for (i, v) in edits {
                b[i] = v;
            }
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn prop_header_round_trips(header in any_header()) {
        prop_assert_eq!(Header::parse(&header.to_bytes()), Ok(header.clone()));
        prop_assert_eq!(Header::read_from(&mut &header.to_bytes()[..]).expect("read"), header);
    }

    #[test]
    fn prop_header_parse_accepts_exactly_what_it_would_write(
        b in prop_oneof![any::<[u8; HEADER_LEN]>(), mutated_header_bytes()],
    ) {
        // Accepted bytes are the header's own encoding: no two spellings of one header.
        if let Ok(header) = Header::parse(&b) {
            prop_assert_eq!(header.to_bytes(), b);
        }
    }

    #[test]
    fn prop_header_read_from_never_panics_and_needs_a_whole_header(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..2 * HEADER_LEN),
            (mutated_header_bytes(), 0..=HEADER_LEN).prop_map(|(b, len)| b[..len].to_vec()),
        ],
    ) {
        match Header::read_from(&mut &bytes[..]) {
            Ok(header) => {
                prop_assert!(bytes.len() >= HEADER_LEN);
                prop_assert_eq!(&header.to_bytes()[..], &bytes[..HEADER_LEN]);
            }
            Err(e) => {
                prop_assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
                prop_assert!(EnvelopeError::from_io(&e).is_some(), "not an envelope error: {}", e);
            }
        }
    }

    #[test]
    fn prop_reader_refuses_arbitrary_bytes_after_any_header(
        header in any_header(),
        own_key in any::<bool>(),
        tail in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        // The header names the key the reader holds (or not), so the reader gets past the
        // key checks into segment decryption; bytes nobody sealed never authenticate.
        let k = key(12);
        let mut header = header;
        header.purpose = Purpose::Archive;
        if own_key {
            header.key_id = k.id();
        }
        header.segment_size = header.segment_size.min(512);
        let mut file = header.to_bytes().to_vec();
        file.extend_from_slice(&tail);
        prop_assert!(open(&k, &file).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// Test vectors. docs/FORMAT.md holds ```vector blocks (the spec's known-answer tests);
// core/kernel/tests/vectors/ holds good and broken files with their expected outcome.
// Set RANSOMEYE_REGEN_VECTORS=1 to print the doc blocks and rewrite the vector files.

fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

#[derive(Debug, Default)]
struct DocVector {
    name: String,
    segment_size: u32,
    key: Vec<u8>,
    salt: Vec<u8>,
    nonce_prefix: Vec<u8>,
    plaintext: Vec<u8>,
    ciphertext: Vec<u8>,
}

fn doc_vectors() -> Vec<DocVector> {
    let text = std::fs::read_to_string(repo_path("docs/FORMAT.md")).expect("docs/FORMAT.md");
    let mut out = Vec::new();
    let mut current: Option<DocVector> = None;
    for line in text.lines() {
        if line.trim() == "```vector" {
            current = Some(DocVector::default());
            continue;
        }
        if line.trim() == "```" {
            if let Some(v) = current.take() {
                out.push(v);
            }
            continue;
        }
        let Some(v) = current.as_mut() else { continue };
        let (field, value) = line.split_once(':').expect("field: value");
        let value = value.trim();
        let bytes = || hex::decode(value).expect("hex");
        match field.trim() {
            "name" => v.name = value.to_string(),
            "purpose" => assert_eq!(value, "archive"),
            "segment_size" => v.segment_size = value.parse().expect("number"),
            "key" => v.key = bytes(),
            "salt" => v.salt = bytes(),
            "nonce_prefix" => v.nonce_prefix = bytes(),
            "plaintext" => v.plaintext = bytes(),
            "ciphertext" => v.ciphertext = bytes(),
            other => panic!("unknown vector field {other}"),
        }
    }
    out
}

fn vector_key(bytes: &[u8]) -> SymmetricKey {
    SymmetricKey::from_bytes(KeyPurpose::Archive, bytes.try_into().expect("32-byte key"))
}

const DOC_KEY: [u8; 32] = {
    let mut k = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        k[i] = i as u8;
        i += 1;
    }
    k
};

fn regen_requested() -> bool {
    std::env::var_os("RANSOMEYE_REGEN_VECTORS").is_some()
}

#[test]
fn format_doc_vectors_decrypt_and_reencrypt_exactly() {
    if regen_requested() {
        let salt: [u8; SALT_LEN] = std::array::from_fn(|i| 0xA0u8.wrapping_add(i as u8));
        let prefix: [u8; NONCE_PREFIX_LEN] = [0xB0, 0xB1, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6];
        let k = vector_key(&DOC_KEY);
        for (name, seg, plain) in [
            ("empty", 16u32, Vec::new()),
            (
                "three-segments",
                16,
                b"RansomEye envelope test vector, 3 segs".to_vec(),
            ),
        ] {
            let file = {
                let mut w = EnvelopeWriter::with_parameters(
                    Vec::new(),
                    &k,
                    Purpose::Archive,
                    seg,
                    salt,
                    prefix,
                )
                .expect("w");
                w.write_all(&plain).expect("write");
                w.finish().expect("finish")
            };
            println!(
                "```vector\nname: {name}\npurpose: archive\nsegment_size: {seg}\nkey: {}\nsalt: {}\nnonce_prefix: {}\nplaintext: {}\nciphertext: {}\n```\n",
                hex::encode(DOC_KEY), hex::encode(salt), hex::encode(prefix), hex::encode(&plain), hex::encode(&file)
            );
        }
        return;
    }
    let vectors = doc_vectors();
    assert!(
        vectors.len() >= 2,
        "docs/FORMAT.md must hold the test vectors"
    );
    for v in vectors {
        let k = vector_key(&v.key);
        assert_eq!(
            open(&k, &v.ciphertext).expect(&v.name),
            v.plaintext,
            "{}",
            v.name
        );
        let mut w = EnvelopeWriter::with_parameters(
            Vec::new(),
            &k,
            Purpose::Archive,
            v.segment_size,
            v.salt.as_slice().try_into().expect("salt"),
            v.nonce_prefix.as_slice().try_into().expect("prefix"),
        )
        .expect("writer");
        w.write_all(&v.plaintext).expect("write");
        assert_eq!(
            w.finish().expect("finish"),
            v.ciphertext,
            "{} re-encrypts",
            v.name
        );
    }
}

/// The kinds of outcome a vector file can have, as written in `expected.txt`.
fn outcome_kind(result: &Result<Vec<u8>, EnvelopeError>) -> String {
    match result {
        Ok(plain) => format!(
            "ok:{}",
            hex::encode(ring::digest::digest(&ring::digest::SHA256, plain))
        ),
        Err(EnvelopeError::TruncatedHeader { .. }) => "truncated-header".into(),
        Err(EnvelopeError::BadMagic) => "bad-magic".into(),
        Err(EnvelopeError::UnsupportedVersion(_)) => "unsupported-version".into(),
        Err(EnvelopeError::UnknownPurpose(_)) => "unknown-purpose".into(),
        Err(EnvelopeError::BadSegmentSize(_)) => "bad-segment-size".into(),
        Err(EnvelopeError::WrongKey { .. }) => "wrong-key".into(),
        Err(EnvelopeError::WrongPurpose { .. }) => "wrong-purpose".into(),
        Err(EnvelopeError::Authentication { .. }) => "authentication".into(),
        Err(EnvelopeError::Truncated { .. }) => "truncated".into(),
        Err(EnvelopeError::EmptyFinalSegment { .. }) => "empty-final-segment".into(),
        Err(other) => format!("other:{other}"),
    }
}

fn broken_variants(good: &[u8], seg: u32) -> Vec<(&'static str, Vec<u8>)> {
    let segs = segments(seg, good);
    let mut flip_header = good.to_vec();
    flip_header[30] ^= 0x01;
    let mut flip_body = good.to_vec();
    flip_body[HEADER_LEN + 5] ^= 0x80;
    let mut flip_tag = good.to_vec();
    let last = flip_tag.len() - 1;
    flip_tag[last] ^= 0x01;
    let mut version = good.to_vec();
    version[8] = 9;
    let mut trailing = good.to_vec();
    trailing.extend_from_slice(b"trailing garbage");
    let mut swapped = segs.clone();
    swapped.swap(0, 1);
    let mut duplicated = segs.clone();
    duplicated.insert(1, segs[0].clone());
    vec![
        ("good.env", good.to_vec()),
        ("truncated-in-header.env", good[..40].to_vec()),
        (
            "truncated-mid-segment.env",
            good[..HEADER_LEN + seg as usize + TAG_LEN + 7].to_vec(),
        ),
        (
            "truncated-at-boundary.env",
            good[..HEADER_LEN + 2 * (seg as usize + TAG_LEN)].to_vec(),
        ),
        ("header-bit-flip.env", flip_header),
        ("body-bit-flip.env", flip_body),
        ("tag-bit-flip.env", flip_tag),
        ("unknown-version.env", version),
        ("trailing-data.env", trailing),
        ("segments-swapped.env", reassemble(good, &swapped)),
        ("segment-duplicated.env", reassemble(good, &duplicated)),
        (
            "segment-dropped.env",
            reassemble(good, &[segs[0].clone(), segs[2].clone(), segs[3].clone()]),
        ),
        (
            "not-an-envelope.env",
            b"PK\x03\x04 this is a zip file, not an envelope".to_vec(),
        ),
    ]
}

#[test]
fn vector_files_have_their_expected_outcomes() {
    let dir = repo_path("core/kernel/tests/vectors");
    let k = vector_key(&DOC_KEY);
    let other = vector_key(&[0xEE; 32]);
    if regen_requested() {
        let plain: Vec<u8> =
            b"RansomEye vector kit: four segments of sixteen bytes, then a tail".to_vec();
        let good = {
            let mut w = EnvelopeWriter::with_parameters(
                Vec::new(),
                &k,
                Purpose::Archive,
                16,
                [0x5A; SALT_LEN],
                [0xC3; NONCE_PREFIX_LEN],
            )
            .expect("w");
            w.write_all(&plain).expect("write");
            w.finish().expect("finish")
        };
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut expected = String::from("# file key outcome — key `doc` is docs/FORMAT.md's key (00 01 .. 1f), `other` is 32 bytes of 0xee\n");
        for (name, bytes) in broken_variants(&good, 16) {
            std::fs::write(dir.join(name), &bytes).expect("write vector");
            expected.push_str(&format!("{name} doc {}\n", outcome_kind(&open(&k, &bytes))));
        }
        expected.push_str(&format!(
            "good.env other {}\n",
            outcome_kind(&open(&other, &good))
        ));
        std::fs::write(dir.join("expected.txt"), expected).expect("write expected");
    }
    let expected = std::fs::read_to_string(dir.join("expected.txt")).expect("expected.txt");
    let mut checked = 0;
    for line in expected
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [file, key_name, outcome] = fields[..] else {
            panic!("bad line {line}")
        };
        let bytes = std::fs::read(dir.join(file)).expect(file);
        let key = if key_name == "doc" { &k } else { &other };
        assert_eq!(
            outcome_kind(&open(key, &bytes)),
            outcome,
            "{file} with key {key_name}"
        );
        if file != "good.env" || key_name != "doc" {
            assert!(
                !outcome.starts_with("ok:"),
                "{file} must be a broken vector"
            );
        }
        checked += 1;
    }
    assert!(checked >= 13, "only {checked} vectors checked");
}
