#!/usr/bin/env python3
"""Writes known-answer vectors from an implementation independent of Vellum's Rust code
(Python's hashlib and the `cryptography` package), so that a vector test checks the Rust
encoders against the specification of each format, not against themselves.

Run from the repository root: python3 tests/vectors/make.py
"""
import hashlib
import json
import os

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


def varint(n):
    """RFC 9000 variable-length integer, as MLS (RFC 9420 section 2.1.2) uses for lengths."""
    if n < 1 << 6:
        return bytes([n])
    if n < 1 << 14:
        return (0x4000 | n).to_bytes(2, "big")
    return (0x80000000 | n).to_bytes(4, "big")


def opaque(b):
    return varint(len(b)) + b


def write(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.write("\n")


# Request signing (crates/wire auth.rs): the bytes, and the Ed25519 signature of the device.
device_seed = bytes([9] * 32)
device = Ed25519PrivateKey.from_private_bytes(device_seed)
device_pub = device.public_key().public_bytes(*RAW)
cases = []
for method, path, device_id, ts, nonce, body in [
    ("POST", "/v1/groups/ab12/messages", "dev-alice-1", 1764000000, "6e6f6e6365", b'{"client_msg_id":"m1"}'),
    ("GET", "/v1/sync?limit=100", "dev-bob-1", 1764000300, "00ff", b""),
    ("DELETE", "/v1/groups/ab12/messages/7", "d", -1, "n", "ünïcode ✓".encode()),
]:
    signed = "vellum-request-v1\n{}\n{}\n{}\n{}\n{}\n{}".format(
        method, path, device_id, ts, nonce, hashlib.sha256(body).hexdigest()
    ).encode()
    cases.append({
        "method": method, "path_and_query": path, "device_id": device_id,
        "timestamp": ts, "nonce": nonce, "body_hex": body.hex(),
        "signing_bytes_hex": signed.hex(),
        "signature_hex": device.sign(signed).hex(),
    })
write("crates/wire/tests/vectors/request_signing.json", {
    "device_seed_hex": device_seed.hex(), "device_public_key_hex": device_pub.hex(),
    "cases": cases,
})

# Device certificate (crates/mls identity.rs): TLS/MLS encoding of
# struct { opaque user<V>; opaque device_id<V>; opaque signature_key<V>; } body;
# opaque org_signature<V>; the org signs "vellum-device-certificate-v1" || body.
org_seed = bytes(range(32))
org = Ed25519PrivateKey.from_private_bytes(org_seed)
body = opaque(b"alice") + opaque(b"dev-alice-1") + opaque(device_pub)
signature = org.sign(b"vellum-device-certificate-v1" + body)
write("crates/mls/tests/vectors/device_certificate.json", {
    "org_seed_hex": org_seed.hex(),
    "org_public_key_hex": org.public_key().public_bytes(*RAW).hex(),
    "user": "alice", "device_id": "dev-alice-1", "signature_key_hex": device_pub.hex(),
    "certificate_hex": (body + opaque(signature)).hex(),
})

# Content commitments (crates/record content.rs): the record's salt s gives each field the
# salt HMAC-SHA256(s, name); its commitment is SHA-256(field salt || UTF-8 value), integers
# in decimal. The record is crates/record/tests/golden/v2/message.json.
import hmac
record_salt = bytes([0xA2] * 32)
content = [
    ("kind", "message"), ("chat_id", "8f14e45fceea167a5a36dedd4bea2543"),
    ("message_id", "c4ca4238a0b923820dcc509a6f75849b"), ("sender_user", "alice"),
    ("sender_device", "dev-alice-1"), ("sent_at", str(1764000000000)),
    ("text", "the figures for Q3 are in"),
]
disclosures = []
commitments = {}
for field, value in content:
    field_salt = hmac.new(record_salt, field.encode(), hashlib.sha256).digest()
    commitments[field] = hashlib.sha256(field_salt + value.encode()).hexdigest()
    disclosures.append({"field": field, "salt": field_salt.hex(), "value": value})
commitment_leaf = {
    "kind": "record", "time": 1764000000250,
    "reference": "8f14e45fceea167a5a36dedd4bea2543/3/" + "03" * 32,
    "key_hash": "ab" * 32, "body": "c2VhbGVk",
    "commitments": dict(sorted(commitments.items())),
}

# log.bin entries (crates/archive): [u32 BE length][SHA-256(0x00 || leaf)][leaf JSON].
entries = []
for leaf in [
    {"kind": "access", "time": 1764000000000, "action": "search",
     "detail": "query sha256:00112233445566778899aabbccddeeff -> 2 records"},
    {"kind": "record", "time": 1764000000250, "reference": "8f14e45fceea167a5a36dedd4bea2543/3",
     "key_hash": "ab" * 32, "body": "c2VhbGVk"},
    {"kind": "hold", "time": 1764000001000, "name": "litigation", "custodian": "bob",
     "chat": None, "from": 1763000000000, "to": None},
    {"kind": "disposition", "time": 1764000002000, "record": 1, "schedule": "transitory"},
    None,  # the record leaf with content commitments, below
]:
    if leaf is None:
        leaf = commitment_leaf

    raw = json.dumps(leaf, separators=(",", ":"), ensure_ascii=False).encode()
    leaf_hash = hashlib.sha256(b"\x00" + raw).digest()
    entries.append({
        "leaf_json": raw.decode(), "leaf_hash_hex": leaf_hash.hex(),
        "entry_hex": (len(raw).to_bytes(4, "big") + leaf_hash + raw).hex(),
    })
# A record's entry carries its sealed content key (64 bytes) after the leaf hash, said by the
# top bit of its length word: [u32 BE 0x80000000 | length][leaf hash][sealed key][leaf JSON].
# The leaf's key_hash is SHA-256 of the key; the leaf hash covers the JSON alone.
record_entries = []
sealed_key = bytes(range(64))
leaf = {"kind": "record", "time": 1764000003000,
        "reference": "8f14e45fceea167a5a36dedd4bea2543/4",
        "key_hash": hashlib.sha256(sealed_key).hexdigest(), "body": "c2VhbGVkIGFnYWlu"}
raw = json.dumps(leaf, separators=(",", ":"), ensure_ascii=False).encode()
leaf_hash = hashlib.sha256(b"\x00" + raw).digest()
record_entries.append({
    "leaf_json": raw.decode(), "sealed_key_hex": sealed_key.hex(),
    "leaf_hash_hex": leaf_hash.hex(),
    "entry_hex": ((0x80000000 | len(raw)).to_bytes(4, "big") + leaf_hash + sealed_key + raw).hex(),
})
write("crates/archive/tests/vectors/log_entries.json", {
    "entries": entries, "record_entries": record_entries,
    "record_salt_hex": record_salt.hex(), "disclosures": disclosures,
})

# records.pub (crates/records): the share hashes are SHA-256 of each share's bytes (the
# base64 line of its share file) and the public key is 32 bytes of X25519, base64.
import base64
d = "crates/records/tests/vectors"
public = json.load(open(f"{d}/records.pub"))
hashes = {}
for i in (1, 2):
    lines = open(f"{d}/share-{i}").read().split("\n")
    assert lines[0] == "vellum-records-share-v1" and lines[1] == str(public["threshold"])
    hashes[i] = hashlib.sha256(base64.b64decode(lines[2])).hexdigest()
write(f"{d}/expected.json", {
    "public_key_hex": base64.b64decode(public["public_key"]).hex(),
    "threshold": public["threshold"], "custodians": public["custodians"],
    "share_1_sha256": hashes[1], "share_2_sha256": hashes[2],
})

# records.pub version 2 and the custodians' archiver binding (crates/record trust.rs,
# crates/records keys.rs). The seed is recovered from shares 1 and 2 by Lagrange
# interpolation at x = 0 over GF(256) with the polynomial 0x11d (as the Shamir crate
# splits it); the binding key is HKDF-SHA256(salt "vellum-records-binding", ikm seed,
# info "ed25519 signing key v1") as an Ed25519 seed; it signs
# "vellum-archiver-binding-v1\n" || the statement's exact JSON text.
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes


def gf_mul(a, b):
    p = 0
    while b:
        if b & 1:
            p ^= a
        a <<= 1
        if a & 0x100:
            a ^= 0x11D
        b >>= 1
    return p


def gf_inv(a):
    return next(x for x in range(1, 256) if gf_mul(a, x) == 1)


shares = []
for i in (1, 2):
    raw = base64.b64decode(open(f"{d}/share-{i}").read().split("\n")[2])
    shares.append((raw[0], raw[1:]))
(x1, y1), (x2, y2) = shares
l1 = gf_mul(x2, gf_inv(x1 ^ x2))  # Lagrange basis at 0 (subtraction is XOR)
l2 = gf_mul(x1, gf_inv(x1 ^ x2))
seed = bytes(gf_mul(a, l1) ^ gf_mul(b, l2) for a, b in zip(y1, y2))
binding_seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"vellum-records-binding",
                    info=b"ed25519 signing key v1").derive(seed)
binding = Ed25519PrivateKey.from_private_bytes(binding_seed)
b64 = lambda b: base64.b64encode(b).decode()


def vkey(name, key_type, seed_bytes):
    pub = Ed25519PrivateKey.from_private_bytes(seed_bytes).public_key().public_bytes(*RAW)
    key_id = hashlib.sha256(name.encode() + b"\n" + bytes([key_type]) + pub).digest()[:4]
    return f"{name}+{key_id.hex()}+{b64(bytes([key_type]) + pub)}"


origin = "records.agency.example/vellum"
v2 = dict(public, version=2, origin=origin,
          binding_key=b64(binding.public_key().public_bytes(*RAW)))
write(f"{d}/records-v2.pub", v2)
statement = {
    "version": 1, "serial": 2, "origin": origin, "archiver_device": "dev-records-1",
    "archiver_identity": b64(device_pub),
    "log_key": vkey(origin, 0x01, bytes([3] * 32)),
    "witnesses": [vkey("witness.ig.example", 0x04, bytes([4] * 32))],
    "witness_quorum": 1, "issued_at": 1764000000000,
    "previous": {"origin": "vellum.records/0a1b2c3d",
                 "log_key": vkey("vellum.records/0a1b2c3d", 0x01, bytes([5] * 32)),
                 "size": 42},
}
text = json.dumps(statement, separators=(",", ":"), ensure_ascii=False)
write(f"{d}/binding.json", {
    "statement": text,
    "signature": b64(binding.sign(b"vellum-archiver-binding-v1\n" + text.encode())),
})
