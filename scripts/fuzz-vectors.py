#!/usr/bin/env python3
"""Seeds the fuzz targets from the third-party vectors in $KEYGATE_VECTORS.

usage: fuzz-vectors.py VECTORS_DIR SEEDS_DIR

Every file is walked (JSON member by member, other files whole) and each piece
goes to the targets that read its kind: DIDs, JWKs, addresses and PEM keys to the
key parsers, SSH signatures to sshsig, Sign-In with Ethereum messages to siwe,
certificates to x509, CBOR (hex in the vectors) to cose. The seeds are written
under SEEDS_DIR/TARGET/ as v-HASH; SEEDS_DIR/vector-hashes lists them, so that
scripts/fuzz never commits a copy of a vector to the corpus.
"""
import hashlib
import json
import os
import sys

vectors, seeds = sys.argv[1], sys.argv[2]
written = set()


def seed(target, data):
    if isinstance(data, str):
        data = data.encode()
    if not data or len(data) > 64 * 1024:
        return
    digest = hashlib.sha1(data).hexdigest()
    os.makedirs(os.path.join(seeds, target), exist_ok=True)
    with open(os.path.join(seeds, target, "v-" + digest[:16]), "wb") as f:
        f.write(data)
    written.add(digest)


def text_piece(s):
    s_stripped = s.strip()
    if s_stripped.startswith("did:"):
        seed("did", s_stripped)
        seed("key_list", s_stripped)
    if s_stripped.startswith("0x") and len(s_stripped) == 42:
        seed("did", s_stripped)
    if "BEGIN CERTIFICATE" in s or "BEGIN PUBLIC KEY" in s:
        seed("key_list", s)
        seed("x509", b"\x00" + s.encode())
    if "BEGIN SSH SIGNATURE" in s:
        seed("sshsig", s)
    if s.startswith(("ssh-", "ecdsa-", "sk-")):
        seed("key_list", s)
        seed("key_stream", b"\x07" + s.encode())
    if "wants you to sign in with your Ethereum account" in s:
        seed("siwe", s)
    if len(s_stripped) >= 16 and len(s_stripped) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in s_stripped):
        raw = bytes.fromhex(s_stripped)
        if raw[:1] and 0xA0 <= raw[0] <= 0xBF:  # a CBOR map
            seed("cose", raw)


def walk(value):
    if isinstance(value, dict):
        if "kty" in value:
            seed("did", json.dumps(value))
            seed("key_list", json.dumps(value))
        for v in value.values():
            walk(v)
    elif isinstance(value, list):
        for v in value:
            walk(v)
    elif isinstance(value, str):
        text_piece(value)


for root, _, files in os.walk(vectors):
    for name in sorted(files):
        path = os.path.join(root, name)
        with open(path, "rb") as f:
            raw = f.read()
        if name.endswith(".json"):
            try:
                walk(json.loads(raw))
            except ValueError:
                pass
        else:
            try:
                text_piece(raw.decode())
            except UnicodeDecodeError:
                if raw[:1] == b"\x30":  # DER
                    seed("x509", b"\x01" + len(raw).to_bytes(2, "big") + raw)

with open(os.path.join(seeds, "vector-hashes"), "w") as f:
    f.write("\n".join(sorted(written)) + "\n")
print(f"{len(written)} seeds from {vectors}")
