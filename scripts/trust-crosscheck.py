#!/usr/bin/env python3
"""Independent check of docs/TRUST_UPDATE.md's test vectors, written from the document alone.

For each message in core/trust/tests/vectors/v1.json: derive the keys from their seeds, rebuild the
signing input from the message's JSON members as the document specifies (domain line, then
name=value lines in the documented order), compare it with the stored one, and verify every
signature with the key the document says signs it. Uses the `cryptography` package for Ed25519.

    python3 scripts/trust-crosscheck.py [VECTORS.json]
"""
import hashlib
import json
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

FIELDS = {
    "update": ("ransomeye-trust-update-v1",
               ["rotation_id", "version", "old_key_id", "new_key_id", "new_public_key", "issued_at", "deadline"]),
    "ack": ("ransomeye-trust-ack-v1", ["agent_id", "rotation_id", "version", "new_key_id"]),
    "commit": ("ransomeye-trust-commit-v1", ["rotation_id", "version", "key_id", "committed_at"]),
    "abort": ("ransomeye-trust-abort-v1", ["rotation_id", "version", "old_key_id", "new_key_id", "aborted_at"]),
}


def public_key(seed_hex):
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def signing_input(kind, message):
    domain, names = FIELDS[kind]
    return (domain + "\n" + "".join(f"{n}={message[n]}\n" for n in names)).encode()


def verify(public, signature_hex, data):
    Ed25519PublicKey.from_public_bytes(public).verify(bytes.fromhex(signature_hex), data)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "core/trust/tests/vectors/v1.json"
    v = json.load(open(path))
    keys = {}
    for name in ("old_key", "new_key", "agent_key"):
        pk = public_key(v[name]["seed"])
        assert pk.hex() == v[name]["public_key"], f"{name}: public key differs"
        assert hashlib.sha256(pk).hexdigest()[:16] == v[name]["key_id"], f"{name}: key id differs"
        keys[name] = pk
    for kind in FIELDS:
        data = signing_input(kind, v[kind]["message"])
        assert data.decode() == v[kind]["signing_input"], f"{kind}: signing input differs"
    u, a, c, x = (v[k]["message"] for k in ("update", "ack", "commit", "abort"))
    assert u["new_public_key"] == keys["new_key"].hex() and u["new_key_id"] == v["new_key"]["key_id"]
    assert u["old_key_id"] == v["old_key"]["key_id"]
    verify(keys["old_key"], u["old_signature"], signing_input("update", u))
    verify(keys["new_key"], u["new_signature"], signing_input("update", u))
    verify(keys["agent_key"], a["signature"], signing_input("ack", a))
    verify(keys["new_key"], c["signature"], signing_input("commit", c))
    verify(keys["old_key"], x["signature"], signing_input("abort", x))
    print(f"{path}: 3 keys, 4 signing inputs and 5 signatures match docs/TRUST_UPDATE.md")


if __name__ == "__main__":
    main()
