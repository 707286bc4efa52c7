#!/usr/bin/env python3
"""Cross-check docs/FORMAT.md against its own test vectors and core/kernel/tests/vectors/.

This is an independent implementation of the envelope format and of signed manifests written from
docs/FORMAT.md alone (sections 1 "Key ids", 2 "The envelope" and 4.1 "Signed documents"), NOT from
the Rust sources. If it agrees with the vectors, the document is a sufficient specification.

Checks:
  * every ```vector block in docs/FORMAT.md: decrypt(ciphertext, key) == plaintext, and
    encrypt(plaintext, key, salt, nonce_prefix, segment_size) == ciphertext byte for byte;
  * every line of core/kernel/tests/vectors/expected.txt (`file key outcome`):
      ok:<sha256>  -> the file decrypts and the plaintext has that SHA-256;
      anything else -> the file is rejected (the error kind this decryptor reports is printed and
                       compared with the expected one for information);
  * every manifest in ops/tests/fixtures/format1 (written by the format-1 code) verifies against the
    fixtures' trust public key, the example of section 4.1 has the stated length, and every one-byte
    change to a manifest's body outside whitespace between tokens fails.

Usage (from the repository root):  python3 scripts/format-crosscheck.py
Exit status: 0 if every check passes, 1 otherwise. Requires the `cryptography` package.
"""

import hashlib
import hmac
import os
import re
import struct
import sys

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# --- section 2.1: header -------------------------------------------------------------------------

MAGIC = bytes.fromhex("895259454e560d0a")  # "\x89RYENV\r\n"
assert MAGIC == b"\x89RYENV\r\n"
VERSION = 1
PURPOSES = {1: "archive", 2: "backup"}
PURPOSE_BYTE = {v: k for k, v in PURPOSES.items()}
HEADER_LEN = 61
MIN_SEGMENT, MAX_SEGMENT = 16, 16 * 1024 * 1024  # "readers accept 16 ..= 16 777 216"
TAG_LEN = 16


class EnvelopeError(Exception):
    """kind is one of the outcome words used by expected.txt, as best this reader can tell."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


# --- section 1: key ids ----------------------------------------------------------------------------


def key_id(key: bytes, purpose: str) -> bytes:
    """HMAC-SHA256(key = the 32 key bytes, message = "ransomeye key id v1 " ‖ P)[0..8]."""
    assert len(key) == 32
    msg = b"ransomeye key id v1 " + purpose.encode("ascii")
    return hmac.new(key, msg, hashlib.sha256).digest()[:8]


# --- section 2.2 / 2.3 -----------------------------------------------------------------------------


def file_key(key: bytes, salt: bytes, purpose_byte: int) -> bytes:
    info = b"ransomeye-envelope-v1" + bytes([purpose_byte])
    assert len(info) == 22  # 21 ASCII bytes, then 0x01 or 0x02
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(key)


def nonce(prefix: bytes, i: int, last: bool) -> bytes:
    assert len(prefix) == 7 and 0 <= i < 2**32
    return prefix + struct.pack(">I", i) + (b"\x01" if last else b"\x00")


def build_header(purpose: str, segment_size: int, kid: bytes, salt: bytes, prefix: bytes) -> bytes:
    h = MAGIC + bytes([VERSION, PURPOSE_BYTE[purpose]]) + struct.pack(">I", segment_size) + kid + salt + prefix
    assert len(h) == HEADER_LEN
    return h


def parse_header(data: bytes):
    if len(data) < HEADER_LEN:
        # Section 2.1 does not say what to call a too-short header; check the magic prefix first so that
        # a short foreign file is "bad-magic" rather than "truncated-header".
        if data[: len(MAGIC)] != MAGIC[: len(data)]:
            raise EnvelopeError("bad-magic", f"bad magic {data[:8].hex()}")
        raise EnvelopeError("truncated-header", f"file is {len(data)} bytes, a header is {HEADER_LEN}")
    h = data[:HEADER_LEN]
    if h[0:8] != MAGIC:
        raise EnvelopeError("bad-magic", f"bad magic {h[0:8].hex()}")
    if h[8] != VERSION:
        raise EnvelopeError("unsupported-version", f"version {h[8]}")
    if h[9] not in PURPOSES:
        raise EnvelopeError("unknown-purpose", f"purpose byte {h[9]:#04x}")
    (segment_size,) = struct.unpack(">I", h[10:14])
    if not MIN_SEGMENT <= segment_size <= MAX_SEGMENT:
        raise EnvelopeError("bad-segment-size", f"segment size {segment_size}")
    return {
        "raw": h,
        "purpose": PURPOSES[h[9]],
        "purpose_byte": h[9],
        "segment_size": segment_size,
        "key_id": h[14:22],
        "salt": h[22:54],
        "nonce_prefix": h[54:61],
    }


# --- section 2.4: writing --------------------------------------------------------------------------


def encrypt(plaintext: bytes, key: bytes, purpose: str, segment_size: int, salt: bytes, prefix: bytes) -> bytes:
    header = build_header(purpose, segment_size, key_id(key, purpose), salt, prefix)
    aead = AESGCM(file_key(key, salt, PURPOSE_BYTE[purpose]))
    # Segments of exactly segment_size, the final one 1..=segment_size bytes, or 0 iff plaintext is empty.
    if plaintext:
        segs = [plaintext[o : o + segment_size] for o in range(0, len(plaintext), segment_size)]
    else:
        segs = [b""]
    out = [header]
    for i, seg in enumerate(segs):
        out.append(aead.encrypt(nonce(prefix, i, i == len(segs) - 1), seg, header))
    return b"".join(out)


# --- section 2.5: reading --------------------------------------------------------------------------


def decrypt(data: bytes, key: bytes, key_purpose: str = "archive") -> bytes:
    hdr = parse_header(data)
    # "a key whose id or purpose differs from the header's" is rejected before decrypting anything.
    if hdr["purpose"] != key_purpose:
        raise EnvelopeError("wrong-key", f"key purpose {key_purpose}, file purpose {hdr['purpose']}")
    expected_kid = key_id(key, key_purpose)
    if hdr["key_id"] != expected_kid:
        raise EnvelopeError(
            "wrong-key", f"file key id {hdr['key_id'].hex()}, this key's id {expected_kid.hex()}"
        )
    aead = AESGCM(file_key(key, hdr["salt"], hdr["purpose_byte"]))
    chunk_len = hdr["segment_size"] + TAG_LEN
    body = memoryview(data)[HEADER_LEN:]
    out = []
    pos, i = 0, 0
    while True:
        chunk = bytes(body[pos : pos + chunk_len])
        pos += len(chunk)
        last = pos >= len(body)  # "If at least one more byte follows, the chunk is a non-final segment"
        if last and len(chunk) < TAG_LEN:
            raise EnvelopeError("truncated", f"final chunk of segment {i} is {len(chunk)} bytes, shorter than a tag")
        if i >= 2**32:
            raise EnvelopeError("too-many-segments", "more than 2^32 segments")
        try:
            out.append(aead.decrypt(nonce(hdr["nonce_prefix"], i, last), chunk, hdr["raw"]))
        except InvalidTag:
            raise EnvelopeError(
                "authentication", f"segment {i} ({'final' if last else 'non-final'}, {len(chunk)} bytes) fails"
            ) from None
        if last:
            return b"".join(out)
        i += 1


# --- section 4.1: signed documents -----------------------------------------------------------------

JSON_WS = b" \t\n\r"


def value_end(data: bytes, start: int) -> int:
    """End (exclusive) of the JSON object or array opening at data[start]."""
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(data)):
        b = data[i:i + 1]
        if in_string:
            if escaped:
                escaped = False
            elif b == b"\\":
                escaped = True
            elif b == b'"':
                in_string = False
        elif b == b'"':
            in_string = True
        elif b in (b"{", b"["):
            depth += 1
        elif b in (b"}", b"]"):
            depth -= 1
            if depth == 0:
                return i + 1
    raise ValueError("unterminated value")


def signed_message(body: bytes) -> bytes:
    """Step 2: the body without the whitespace between tokens; strings byte for byte."""
    out, in_string, escaped = bytearray(), False, False
    for c in body:
        b = bytes([c])
        if in_string:
            out += b
            if escaped:
                escaped = False
            elif b == b"\\":
                escaped = True
            elif b == b'"':
                in_string = False
        elif b not in JSON_WS:
            in_string = b == b'"'
            out += b
    return bytes(out)


def verify_manifest(data: bytes, public_key: bytes) -> str:
    """'' if the signed document verifies, else why not."""
    import json

    try:
        doc = json.loads(data)
    except ValueError as e:
        return f"not JSON: {e}"
    if not isinstance(doc, dict) or sorted(doc) != ["body", "signature", "signing_key_id"]:
        return "not exactly body, signing_key_id, signature"
    # Step 1: the bytes of the body value as stored (the top-level member named "body").
    m = re.match(rb'\s*\{\s*"body"\s*:\s*', data)
    if not m:
        return "body is not the first member (this checker only finds it there)"
    body = data[m.end():value_end(data, m.end())]
    kid = hashlib.sha256(public_key).digest()[:8].hex()
    if doc["signing_key_id"] != kid:
        return f"signing_key_id {doc['signing_key_id']} is not the trust key {kid}"
    sig = doc["signature"]
    if not re.fullmatch(r"[0-9a-f]{128}", sig):
        return "signature is not 128 lower-case hex digits"
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(bytes.fromhex(sig), signed_message(body))
    except InvalidSignature:
        return "signature does not verify"
    return ""


def check_manifests(rep: "Report", root: str):
    text = open(os.path.join(root, "docs", "FORMAT.md"), encoding="utf-8").read()
    example = re.search(r"is signed as the (\d+) bytes `([^`]*)`", text)
    stored = re.search(r"Example: the stored body\n\n```json\n(.*?)```", text, re.S)
    if example and stored:
        msg = signed_message(stored.group(1).strip().encode())
        rep.check(msg == example.group(2).encode() and len(msg) == int(example.group(1)),
                  "FORMAT.md 4.1 example", f"{len(msg)} bytes: {msg.decode()}")
    else:
        rep.check(False, "FORMAT.md 4.1 example", "not found")
    fixtures = os.path.join(root, "ops", "tests", "fixtures", "format1")
    config = open(os.path.join(fixtures, "kernel.toml"), encoding="utf-8").read()
    public_key = bytes.fromhex(re.search(r'public_key = "([0-9a-f]{64})"', config).group(1))
    for sub in ("backups", "archive"):
        for fname in sorted(os.listdir(os.path.join(fixtures, sub))):
            if not fname.endswith(".manifest.json"):
                continue
            data = open(os.path.join(fixtures, sub, fname), "rb").read()
            why = verify_manifest(data, public_key)
            rep.check(why == "", f"{sub}/{fname}", why or "verifies")
            start = re.match(rb'\s*\{\s*"body"\s*:\s*', data).end()
            end = value_end(data, start)
            accepted = []
            for i in range(start, end):
                if data[i:i + 1] in JSON_WS and not signed_message(data[start:i + 1]).endswith(data[i:i + 1]):
                    continue  # whitespace between tokens is not signed
                changed = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
                if verify_manifest(changed, public_key) == "":
                    accepted.append(i)
            rep.check(not accepted, f"{sub}/{fname} changed", f"{end - start} body bytes flipped one at a time, "
                      f"{len(accepted)} accepted {accepted[:5]}")


# --- driver ----------------------------------------------------------------------------------------

KEYS = {"doc": bytes(range(32)), "other": b"\xee" * 32}


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok: bool, name: str, detail: str):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")


def parse_doc_vectors(text: str):
    blocks = re.findall(r"^```vector[ \t]*\n(.*?)^```", text, flags=re.S | re.M)
    vectors = []
    for block in blocks:
        v = {}
        for line in block.splitlines():
            if not line.strip():
                continue
            k, sep, val = line.partition(":")
            if not sep:
                raise ValueError(f"bad vector line {line!r}")
            v[k.strip()] = val.strip()
        vectors.append(v)
    return vectors


def check_doc_vectors(rep: Report, root: str):
    with open(os.path.join(root, "docs", "FORMAT.md"), encoding="utf-8") as f:
        vectors = parse_doc_vectors(f.read())
    rep.check(len(vectors) > 0, "docs/FORMAT.md", f"{len(vectors)} vector block(s) found")
    for v in vectors:
        name = f"doc vector {v.get('name', '?')}"
        try:
            key = bytes.fromhex(v["key"])
            salt = bytes.fromhex(v["salt"])
            prefix = bytes.fromhex(v["nonce_prefix"])
            seg = int(v["segment_size"])
            purpose = v["purpose"]
            pt = bytes.fromhex(v["plaintext"])
            ct = bytes.fromhex(v["ciphertext"])
        except (KeyError, ValueError) as e:
            rep.check(False, name, f"malformed vector block: {e!r}")
            continue
        try:
            got = decrypt(ct, key, purpose)
            rep.check(got == pt, f"{name} decrypt", "plaintext matches" if got == pt else f"got {got.hex()}")
        except EnvelopeError as e:
            rep.check(False, f"{name} decrypt", f"rejected ({e.kind}): {e}")
        enc = encrypt(pt, key, purpose, seg, salt, prefix)
        if enc == ct:
            rep.check(True, f"{name} encrypt", f"{len(enc)} bytes identical")
        else:
            diff = next((j for j in range(min(len(enc), len(ct))) if enc[j] != ct[j]), min(len(enc), len(ct)))
            rep.check(False, f"{name} encrypt", f"differs at byte {diff} (ours {len(enc)} bytes, doc {len(ct)})")


def check_vector_files(rep: Report, root: str):
    vdir = os.path.join(root, "core", "kernel", "tests", "vectors")
    with open(os.path.join(vdir, "expected.txt"), encoding="utf-8") as f:
        lines = [l.split() for l in f if l.strip() and not l.lstrip().startswith("#")]
    listed = set()
    for fields in lines:
        if len(fields) != 3:
            rep.check(False, "expected.txt", f"malformed line {' '.join(fields)!r}")
            continue
        fname, keyname, outcome = fields
        listed.add(fname)
        name = f"{fname} [{keyname}] expect {outcome}"
        try:
            with open(os.path.join(vdir, fname), "rb") as fh:
                data = fh.read()
            key = KEYS[keyname]
        except (OSError, KeyError) as e:
            rep.check(False, name, f"cannot set up: {e!r}")
            continue
        try:
            pt = decrypt(data, key, "archive")
            result = None
        except EnvelopeError as e:
            result = e
        if outcome.startswith("ok:"):
            if result is not None:
                rep.check(False, name, f"rejected ({result.kind}): {result}")
            else:
                digest = hashlib.sha256(pt).hexdigest()
                rep.check(digest == outcome[3:], name, f"{len(pt)} bytes, sha256 {digest}")
        else:
            if result is None:
                rep.check(False, name, f"accepted ({len(pt)} bytes of plaintext)")
            else:
                same = "same kind" if result.kind == outcome else f"NOTE: kind differs from expected {outcome}"
                rep.check(True, name, f"rejected ({result.kind}, {same}): {result}")
    for fname in sorted(os.listdir(vdir)):
        if fname != "expected.txt" and fname not in listed:
            rep.check(False, fname, "vector file not listed in expected.txt")


def main() -> int:
    root = os.getcwd()
    if not os.path.exists(os.path.join(root, "docs", "FORMAT.md")):
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rep = Report()
    # Sanity check of section 1 against the doc vectors' header key id (bytes 14..22).
    check_doc_vectors(rep, root)
    check_vector_files(rep, root)
    check_manifests(rep, root)
    print(f"{rep.passed} passed, {rep.failed} failed")
    return 0 if rep.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
