#!/usr/bin/python3
"""make-tokserve-seeds.py: writes the seeds of fuzz_tokserve (tests/fuzz/seeds/fuzz_tokserve/):
runs of token-process requests in the format that target reads (each a 2-byte little-endian
length and a wire.h message: numbers as 8-byte little-endian, byte strings as a 4-byte
length and the bytes, 0xffffffff for none). The handles are those fuzz_tokserve's fixture
gets (FUZZ_VERBOSE=1 prints them): EC key 2/3, RSA key 4/5. Written independently of the
C writers, from tokens/tokproc.h's list of requests."""
import os
import struct
import sys

PRESENT, LOGIN, FIND_KEYS, GENERATE, DESTROY_KEY, FIX_ID, ATTRS, FIND_CERT = range(2, 10)
STORE_CERT, HAS_CERT, DESTROY_CERT, OTHER_CERTS, GRANT, KEY_OP, RELEASE = range(10, 17)
FIND_PRIVATE = 19
EC, RSA = (2, 3), (4, 5)


def num(v):
    return struct.pack("<q", v)


def data(b):
    return struct.pack("<I", 0xFFFFFFFF) if b is None else struct.pack("<I", len(b)) + b


def req(op, *fields):
    body = num(op) + b"".join(fields)
    return struct.pack("<H", len(body)) + body


def key(k):
    return num(k[0]) + num(k[1])


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "seeds", "fuzz_tokserve")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(here, "..", "data", "ca.der"), "rb") as f:
        cert = f.read()
    find = req(FIND_KEYS, data(b"fz"))
    seeds = {
        "find": find + req(PRESENT),
        "rsa-sign-decrypt": find + req(GRANT, key(RSA), num(3), num(1))
        + req(KEY_OP, num(0), num(0), data(bytes(51)), num(256))
        + req(KEY_OP, num(0), num(1), data(bytes(256)), num(256)) + req(RELEASE, num(0)),
        "ec-sign": find + req(GRANT, key(EC), num(1), num(0))
        + req(KEY_OP, num(0), num(0), data(bytes(range(32))), num(132))
        + req(KEY_OP, num(0), num(0), data(bytes(32)), num(132)) + req(RELEASE, num(0)),
        "certs": find + req(FIND_CERT, key(RSA)) + req(HAS_CERT, key(RSA), data(cert))
        + req(STORE_CERT, key(EC), data(cert)) + req(OTHER_CERTS, key(RSA), data(None), num(0))
        + req(DESTROY_CERT, key(EC), data(cert)),
        "attrs": find + req(ATTRS, key(EC)) + req(FIX_ID, key(RSA)),
        "private": find + req(FIND_PRIVATE, num(RSA[0]), num(0))
        + req(FIND_PRIVATE, num(EC[0]), num(0)) + req(FIND_PRIVATE, key(RSA))
        + req(FIND_PRIVATE, num(99), num(0)) + req(FIND_PRIVATE, num(0), num(0)),
        "destroy": find + req(GENERATE, data(b"p11e-temporary!"), num(0), num(2), num(256),
                              num(0), data(b"fz")) + find
        + req(DESTROY_KEY, num(0), num(EC[1])) + req(DESTROY_KEY, num(7), num(0)),
        "generate": req(GENERATE, data(b"p11e-temporary!"), num(0), num(2), num(256), num(0),
                        data(b"fz")) + find,
        "refused": req(FIND_KEYS, data(b"other")) + req(GRANT, num(99), num(100), num(1), num(0))
        + find + req(GRANT, key(RSA), num(4), num(0)) + req(KEY_OP, num(7), num(0), data(b"x"),
                                                         num(16))
        + req(LOGIN, data(b"5678"), num(0)),
    }
    for name, b in seeds.items():
        with open(os.path.join(out, name + ".bin"), "wb") as f:
            f.write(b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
