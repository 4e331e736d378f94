"""A C2SP tlog-cosignature/v1 (Ed25519) verifier and signer written from the
specification (c2sp.org/tlog-cosignature, c2sp.org/signed-note), sharing no
code with Ward. Usage:

    cosignature.py verify NOTE_FILE VKEY      -> prints the cosignature's timestamp
    cosignature.py sign NOTE_FILE NAME SEED_HEX TIMESTAMP
                                              -> prints the note with a cosignature
                                                 line added, then the vkey
"""
import base64
import hashlib
import struct
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives import serialization

DASH = "\u2014 "


def key_id(name, public):
    return hashlib.sha256(name.encode() + b"\n" + b"\x04" + public).digest()[:4]


def split(note):
    text, sigs = note.rsplit("\n\n", 1)
    return text + "\n", sigs


def message(text, timestamp):
    return b"cosignature/v1\ntime %d\n" % timestamp + text.encode()


def verify(note, vkey):
    name, kid_hex, material = vkey.split("+", 2)
    raw = base64.b64decode(material)
    assert raw[0] == 0x04, "not a cosignature/v1 key"
    public = raw[1:]
    assert len(public) == 32
    assert key_id(name, public).hex() == kid_hex, "key ID mismatch"
    text, sigs = split(note)
    for line in sigs.splitlines():
        assert line.startswith(DASH)
        who, blob = line[len(DASH):].split(" ", 1)
        blob = base64.b64decode(blob)
        if who != name or blob[:4] != key_id(name, public):
            continue
        assert len(blob) == 4 + 8 + 64
        (timestamp,) = struct.unpack(">Q", blob[4:12])
        assert timestamp < 2**63
        Ed25519PublicKey.from_public_bytes(public).verify(blob[12:], message(text, timestamp))
        return timestamp
    raise SystemExit("no cosignature by " + name)


def sign(note, name, seed_hex, timestamp):
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    text, _ = split(note)
    blob = key_id(name, public) + struct.pack(">Q", timestamp) + key.sign(message(text, timestamp))
    line = DASH + name + " " + base64.b64encode(blob).decode() + "\n"
    vkey = "%s+%s+%s" % (name, key_id(name, public).hex(), base64.b64encode(b"\x04" + public).decode())
    sys.stdout.write(note + line)
    sys.stdout.write("VKEY " + vkey + "\n")


if __name__ == "__main__":
    with open(sys.argv[2], encoding="utf-8") as f:
        note = f.read()
    if sys.argv[1] == "verify":
        print(verify(note, sys.argv[3]))
    else:
        sign(note, sys.argv[3], sys.argv[4], int(sys.argv[5]))
