#!/usr/bin/python3
"""Regenerate the SCEP test fixtures in this directory.

    /usr/bin/python3 tests/data/gen-fixtures.py [OUTDIR]
    /usr/bin/python3 tests/data/gen-fixtures.py --nextca-only [OUTDIR]
    /usr/bin/python3 tests/data/gen-fixtures.py --chains-only [OUTDIR]
    /usr/bin/python3 tests/data/gen-fixtures.py --envelopes-only [OUTDIR]

--nextca-only regenerates only the GetNextCACert fixtures (nextca-*), reusing
the CA, RA and intermediate keys already in OUTDIR.

--chains-only regenerates only the multi-tier GetCACert fixtures (a PKI of
their own: root2, policy2, issuing1/2, ra2-*, stranger-self, getcacert-2tier*,
-3tier, -ndes-*, -issuing-only*, -stranger*, -two-roots, and the CertReps
certrep-*-signed / certrep-success-issuing1), reusing ca.der, ra-sign.der,
ra-enc.der, the client's key and certificate and TXID/NONCE from OUTDIR; in
fixtures.txt it replaces or appends only its own keys (ROOT2_SHA256,
ISSUING1_SHA256, ISSUING2_SHA256, POLICY2_SHA256, STRANGER_SHA256).

--envelopes-only regenerates only the bare CertRep envelopes (envelope-*: an
EnvelopedData of the bundle [issued, ca] to client-selfsigned.der in each
cipher, and hostile ones), reusing issued.der, ca.der and
client-selfsigned.der.

Uses only asn1crypto + cryptography (through tests/doubles/scepmsg.py), never
p11enroll's code or the openssl CLI.  Keys are fresh on every run, so every
DER changes; nonces, transaction ID derivation, content keys, IVs and the
garbage fixture come from a seeded RNG.  The values tests need are written to
fixtures.txt.
"""

import datetime
import hashlib
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "doubles"))

import scepmsg  # noqa: E402
from asn1crypto import algos, cms, core  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from cryptography.x509.oid import (AuthorityInformationAccessOID,  # noqa: E402
                                   ExtendedKeyUsageOID, NameOID)

NOT_BEFORE = datetime.datetime(2020, 1, 1, 0, 0, 0)
NOT_AFTER = datetime.datetime(2049, 12, 31, 23, 59, 59)
CHALLENGE = "secret"
CLIENT_CN = "client.example.com"

ONLY_FLAGS = ("--nextca-only", "--chains-only", "--envelopes-only")
ARGS = [a for a in sys.argv[1:] if a not in ONLY_FLAGS]
NEXTCA_ONLY = "--nextca-only" in sys.argv[1:]
CHAINS_ONLY = "--chains-only" in sys.argv[1:]
ENVELOPES_ONLY = "--envelopes-only" in sys.argv[1:]
OUT = os.path.abspath(ARGS[0]) if ARGS else HERE
rng = random.Random(8894)
_serial = [0x1000]


def next_serial():
    _serial[0] += 1
    return _serial[0]


def write(name, data):
    mode = "w" if isinstance(data, str) else "wb"
    kw = {"newline": ""} if mode == "w" else {}
    with open(os.path.join(OUT, name), mode, **kw) as f:
        f.write(data)


def newkey():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_key(name, key):
    write(name, key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


KU_NONE = dict(digital_signature=False, content_commitment=False, key_encipherment=False,
               data_encipherment=False, key_agreement=False, key_cert_sign=False,
               crl_sign=False, encipher_only=False, decipher_only=False)


def make_cert(cn, key, issuer_cert=None, issuer_key=None, ca=False, ku=None,
              eku=None, digest=hashes.SHA256, ca_issuers=None):
    """ku: None -> no keyUsage extension; else dict of KeyUsage flags set True.
    ca_issuers: URL for an authorityInfoAccess caIssuers entry."""
    pub = key.public_key()
    b = (x509.CertificateBuilder()
         .subject_name(name(cn))
         .issuer_name(issuer_cert.subject if issuer_cert else name(cn))
         .public_key(pub)
         .serial_number(next_serial())
         .not_valid_before(NOT_BEFORE)
         .not_valid_after(NOT_AFTER)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False))
    if ca:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    if ku is not None:
        flags = dict(KU_NONE)
        flags.update({k: True for k in ku})
        b = b.add_extension(x509.KeyUsage(**flags), critical=True)
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if issuer_cert is not None:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_cert.public_key()), critical=False)
    if ca_issuers is not None:
        b = b.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            AuthorityInformationAccessOID.CA_ISSUERS,
            x509.UniformResourceIdentifier(ca_issuers))]), critical=False)
    return b.sign(issuer_key if issuer_key is not None else key, digest())


def main():
    os.makedirs(OUT, exist_ok=True)

    # --- CA and RA certificates ------------------------------------------
    ca_key = newkey()
    ca = make_cert("Test SCEP CA", ca_key, ca=True, ku=["key_cert_sign", "crl_sign"])
    write("ca.der", der(ca))
    write_key("ca.key.pem", ca_key)

    ra_sign_key = newkey()
    ra_sign = make_cert("Test RA Sign", ra_sign_key, ca, ca_key, ku=["digital_signature"])
    write("ra-sign.der", der(ra_sign))
    write_key("ra-sign.key.pem", ra_sign_key)

    ra_enc_key = newkey()
    ra_enc = make_cert("Test RA Enc", ra_enc_key, ca, ca_key, ku=["key_encipherment"])
    write("ra-enc.der", der(ra_enc))
    write_key("ra-enc.key.pem", ra_enc_key)

    ra_both_key = newkey()
    ra_both = make_cert("Test RA Both", ra_both_key, ca, ca_key, ku=None)
    write("ra-both.der", der(ra_both))
    write_key("ra-both.key.pem", ra_both_key)

    # separate hierarchy: root -> intermediate -> RA (no keyUsage)
    root_key = newkey()
    root = make_cert("Test Root CA", root_key, ca=True, ku=["key_cert_sign", "crl_sign"])
    write("root.der", der(root))
    write_key("root.key.pem", root_key)
    int_key = newkey()
    inter = make_cert("Test Intermediate CA", int_key, root, root_key, ca=True,
                      ku=["key_cert_sign", "crl_sign"])
    write("intermediate.der", der(inter))
    write_key("intermediate.key.pem", int_key)
    ra_int_key = newkey()
    ra_int = make_cert("Test RA Intermediate", ra_int_key, inter, int_key, ku=None)
    write("ra-int.der", der(ra_int))
    write_key("ra-int.key.pem", ra_int_key)

    # --- GetCACert responses ----------------------------------------------
    write("getcacert-ca-only.der", der(ca))
    write("getcacert-ra.p7", scepmsg.degenerate_certs([ca, ra_sign, ra_enc]))
    write("getcacert-ra-reversed.p7", scepmsg.degenerate_certs([ra_enc, ca, ra_sign]))
    write("getcacert-ra-both.p7", scepmsg.degenerate_certs([ca, ra_both]))
    write("getcacert-intermediate.p7", scepmsg.degenerate_certs([ra_int, inter, root]))

    # --- GetCACaps bodies -------------------------------------------------
    write("caps-scepserver.txt",
          "Renewal\nSHA-1\nSHA-256\nAES\nDES3\nSCEPStandard\nPOSTPKIOperation")
    write("caps-mixed.txt", "postpkioperation\r\nsha-256\r\nUnknownThing\r\n\r\naes\r\n")
    write("caps-empty.txt", "")
    write("caps-des3-only.txt", "DES3\nSHA-1\n")

    # --- client side ------------------------------------------------------
    client_key = newkey()
    write_key("client.key.pem", client_key)
    client_ss = make_cert(CLIENT_CN, client_key,
                          ku=["digital_signature", "key_encipherment"])
    write("client-selfsigned.der", der(client_ss))
    issued = make_cert(CLIENT_CN, client_key, ca, ca_key,
                       ku=["digital_signature", "key_encipherment"],
                       eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    write("issued.der", der(issued))
    issued_int = make_cert(CLIENT_CN, client_key, inter, int_key,
                           ku=["digital_signature", "key_encipherment"],
                           eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    write("issued-int.der", der(issued_int))
    other_key = newkey()
    write_key("other.key.pem", other_key)
    issued_other = make_cert(CLIENT_CN, other_key, ca, ca_key,
                             ku=["digital_signature", "key_encipherment"],
                             eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    write("issued-other-key.der", der(issued_other))
    rogue_key = newkey()
    write_key("rogue.key.pem", rogue_key)
    rogue = make_cert("Test Rogue RA", rogue_key, ku=None)
    write("rogue.der", der(rogue))

    client_spki = client_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    txid = hashlib.sha256(client_spki).hexdigest().upper()  # 64 hex chars
    nonce = bytes(rng.getrandbits(8) for _ in range(16))

    csr = scepmsg.csr(client_key, CLIENT_CN, challenge=CHALLENGE)
    write("client.csr.der", csr)
    write("pkcsreq.der", scepmsg.pkcsreq(client_ss, client_key, ra_enc, csr, txid,
                                         sender_nonce=nonce, rng=rng))

    def fp(c, h):
        return hashlib.new(h, der(c)).hexdigest().upper()

    write("fixtures.txt", "".join("%s=%s\n" % kv for kv in [
        ("TXID", txid),
        ("NONCE", nonce.hex().upper()),
        ("CHALLENGE", CHALLENGE),
        ("CA_SHA256", fp(ca, "sha256")),
        ("CA_SHA1", fp(ca, "sha1")),
        ("ROOT_SHA256", fp(root, "sha256")),
        ("INTERMEDIATE_SHA256", fp(inter, "sha256")),
        ("ISSUED_SERIAL", "%X" % issued.serial_number),
    ]))

    # --- CertReps -----------------------------------------------------------
    def rep(fname, status=scepmsg.STATUS_SUCCESS, signer=(ra_sign, ra_sign_key),
            certs=(issued, ca), **kw):
        args = dict(txid=txid, recipient_nonce=nonce, sender_nonce=None,
                    status=status, issued_certs=list(certs), recipient_cert=client_ss,
                    rng=rng)
        args.update(kw)
        data = scepmsg.certrep(signer[0], signer[1], **args)
        write(fname, data)
        return data

    success = rep("certrep-success.der")
    rep("certrep-success-des3.der", cipher="des3")
    rep("certrep-success-des.der", cipher="des")
    rep("certrep-success-sha1-by-ca.der", signer=(ca, ca_key), digest="sha1",
        include_signer_cert=False, certs=[issued])
    # exactly what the Debian scepserver sends: CA-signed, SHA-1, DES, issued cert only
    rep("certrep-scepserver.der", signer=(ca, ca_key), digest="sha1", cipher="des",
        include_signer_cert=False, certs=[issued])
    rep("certrep-success-no-signer-cert.der", include_signer_cert=False)
    rep("certrep-success-intermediate.der", signer=(ra_int, ra_int_key),
        certs=[issued_int, inter])
    rep("certrep-failure.der", status=scepmsg.STATUS_FAILURE,
        fail_info=scepmsg.FAIL_BAD_REQUEST)
    rep("certrep-failure-badcertid.der", status=scepmsg.STATUS_FAILURE,
        fail_info=scepmsg.FAIL_BAD_CERT_ID)
    rep("certrep-failure-empty-content.der", status=scepmsg.STATUS_FAILURE,
        fail_info=scepmsg.FAIL_BAD_REQUEST, empty_content=True)
    rep("certrep-pending.der", status=scepmsg.STATUS_PENDING)
    rep("certrep-wrong-nonce.der", recipient_nonce=nonce[:-1] + bytes([nonce[-1] ^ 0x01]))
    rep("certrep-no-recipient-nonce.der", recipient_nonce=None)
    rep("certrep-txid-prefix.der", txid=txid[:-8])
    rep("certrep-txid-longer.der", txid=txid + "00")

    def flip_mid(b):
        i = len(b) // 2
        return b[:i] + bytes([b[i] ^ 0x01]) + b[i + 1:]

    def flip_last(b):
        return b[:-1] + bytes([b[-1] ^ 0x01])

    rep("certrep-bad-signature.der", tamper={"signature": flip_mid})
    rep("certrep-bad-digest.der", tamper={"content": flip_last})
    rep("certrep-rogue-signer.der", signer=(rogue, rogue_key))
    rep("certrep-wrong-key.der", certs=[issued_other])
    write("certrep-truncated.der", success[:len(success) * 6 // 10])
    write("certrep-garbage.der", bytes(rng.getrandbits(8) for _ in range(200)))
    rep("certrep-bad-msgtype.der", message_type=scepmsg.MSG_PKCSREQ)
    rep("certrep-success-no-certs.der", certs=[])

    envelopes(issued, ca, client_ss)
    nextca(ca, ca_key, ra_sign, ra_sign_key, root, root_key, ra_int, ra_int_key,
           rogue, rogue_key, issued)
    chains(ca, ra_sign, ra_enc, client_ss, client_key, txid, nonce)


def nextca(ca, ca_key, ra_sign, ra_sign_key, root, root_key, ra_int, ra_int_key,
           rogue, rogue_key, issued):
    """GetNextCACert responses (RFC 8894 4.7): SignedData by the current CA or
    its RA whose content is a degenerate SignedData with the next CA (and RA)."""
    next_key = newkey()
    nxt = make_cert("Test SCEP CA 2", next_key, ca=True, ku=["key_cert_sign", "crl_sign"])
    write("next-ca.der", der(nxt))
    write_key("next-ca.key.pem", next_key)
    next_ra = make_cert("Test RA Sign 2", newkey(), nxt, next_key, ku=["digital_signature"])
    next_root_key = newkey()
    next_root = make_cert("Test Root CA 2", next_root_key, ca=True,
                          ku=["key_cert_sign", "crl_sign"])
    expired = (x509.CertificateBuilder()
               .subject_name(name("Test SCEP CA expired"))
               .issuer_name(name("Test SCEP CA expired"))
               .public_key(next_key.public_key()).serial_number(next_serial())
               .not_valid_before(NOT_BEFORE)
               .not_valid_after(datetime.datetime(2021, 1, 1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .sign(next_key, hashes.SHA256()))
    # a certificate in the current GetCACert bundle that does not chain to its CA
    stranger_key = newkey()
    stranger = make_cert("Test Stranger RA", stranger_key, root, root_key,
                         ku=["digital_signature"])
    write("getcacert-ra-stranger.p7", scepmsg.degenerate_certs([ca, ra_sign, stranger]))

    def sd(fname, certs, signer=(ca, ca_key), content=None, **kw):
        body = content if content is not None else scepmsg.degenerate_certs(certs)
        data = scepmsg.signed_data(body, signer[0], signer[1], [], **kw)
        write(fname, data)
        return data

    good = sd("nextca-by-ra.der", [nxt, next_ra], signer=(ra_sign, ra_sign_key))
    sd("nextca-by-ca.der", [nxt])
    sd("nextca-by-ca-sha1-no-cert.der", [nxt], digest="sha1", include_signer_cert=False)
    sd("nextca-by-ra-int.der", [next_root], signer=(ra_int, ra_int_key))
    sd("nextca-raw-cert.der", None, content=der(nxt))

    def flip_mid(b):
        i = len(b) // 2
        return b[:i] + bytes([b[i] ^ 0x01]) + b[i + 1:]

    sd("nextca-bad-signature.der", [nxt], tamper={"signature": flip_mid})
    sd("nextca-bad-digest.der", [nxt], tamper={"content": flip_mid})
    sd("nextca-rogue-signer.der", [nxt], signer=(rogue, rogue_key))
    sd("nextca-stranger-signer.der", [nxt], signer=(stranger, stranger_key))
    sd("nextca-same-ca.der", [ca])
    sd("nextca-not-ca.der", [issued])
    sd("nextca-expired.der", [expired])
    sd("nextca-content-garbage.der", None,
       content=bytes(rng.getrandbits(8) for _ in range(300)))
    sd("nextca-no-content.der", None, content=b"")
    write("nextca-truncated.der", good[:len(good) * 6 // 10])
    write("nextca-garbage.der", bytes(rng.getrandbits(8) for _ in range(200)))
    write("nextca-degenerate-only.der", scepmsg.degenerate_certs([nxt]))


def nextca_only():
    def cert(n):
        return x509.load_der_x509_certificate(open(os.path.join(OUT, n), "rb").read())

    def key(n):
        return serialization.load_pem_private_key(open(os.path.join(OUT, n), "rb").read(),
                                                  None)

    nextca(cert("ca.der"), key("ca.key.pem"), cert("ra-sign.der"), key("ra-sign.key.pem"),
           cert("root.der"), key("root.key.pem"), cert("ra-int.der"), key("ra-int.key.pem"),
           cert("rogue.der"), key("rogue.key.pem"), cert("issued.der"))


def envelopes(issued, ca, client_ss):
    """Bare envelopes of a SUCCESS CertRep (what p11enroll's network process takes
    apart): the bundle [issued, ca] to client_ss in every cipher, and hostile ones."""
    erng = random.Random(3369)
    bundle = scepmsg.degenerate_certs([issued, ca])

    def env(fname, cipher="aes128", to=client_ss, content=bundle, key=None, iv=None,
            edit=None):
        ci = cms.ContentInfo.load(scepmsg.envelope(content, to, cipher=cipher, rng=erng,
                                                   key=key, iv=iv))
        if edit is not None:
            edit(ci["content"])
        write(fname, ci.dump(force=True))

    for c in ("aes128", "aes192", "aes256", "des3", "des"):
        env("envelope-%s.der" % c, cipher=c)
    # the CA's certificate instead of ours: the envelope is not for us
    env("envelope-other-recipient.der", to=ca)

    def add_stranger_first(ed):
        other = cms.ContentInfo.load(scepmsg.envelope(bundle, ca, rng=erng))
        ris = ed["recipient_infos"]
        ed["recipient_infos"] = cms.RecipientInfos(
            [other["content"]["recipient_infos"][0].copy()] + [r.copy() for r in ris])
    env("envelope-two-recipients.der", edit=add_stranger_first)

    def oaep(ed):
        ed["recipient_infos"][0].chosen["key_encryption_algorithm"] = \
            cms.KeyEncryptionAlgorithm({"algorithm": "rsaes_oaep",
                                        "parameters": algos.RSAESOAEPParams({
                                            "hash_algorithm": {"algorithm": "sha256"},
                                            "mask_gen_algorithm": {
                                                "algorithm": "mgf1",
                                                "parameters": {"algorithm": "sha256"}}})})
    env("envelope-oaep.der", edit=oaep)

    def cipher_ofb(ed):
        alg = ed["encrypted_content_info"]["content_encryption_algorithm"]
        ed["encrypted_content_info"]["content_encryption_algorithm"] = \
            algos.EncryptionAlgorithm({"algorithm": "aes128_ofb",
                                       "parameters": alg["parameters"].copy()})
    env("envelope-aes128-ofb.der", edit=cipher_ofb)

    def short_iv(ed):
        alg = ed["encrypted_content_info"]["content_encryption_algorithm"]
        ed["encrypted_content_info"]["content_encryption_algorithm"] = \
            algos.EncryptionAlgorithm({"algorithm": "aes128_cbc",
                                       "parameters": core.OctetString(
                                           alg["parameters"].native[:8])})
    env("envelope-short-iv.der", edit=short_iv)

    def partial_block(ed):
        eci = ed["encrypted_content_info"]
        eci["encrypted_content"] = eci["encrypted_content"].native[:-3]
    env("envelope-partial-block.der", edit=partial_block)

    def no_content(ed):
        ed["encrypted_content_info"]["encrypted_content"] = None
    env("envelope-no-content.der", edit=no_content)

    # AES-256 declared, a 16-byte key sent: the key's length gives it away
    def claim_aes256(ed):
        alg = ed["encrypted_content_info"]["content_encryption_algorithm"]
        ed["encrypted_content_info"]["content_encryption_algorithm"] = \
            algos.EncryptionAlgorithm({"algorithm": "aes256_cbc",
                                       "parameters": alg["parameters"].copy()})
    env("envelope-key-too-short.der", edit=claim_aes256)

    # a whole block less of ciphertext: the last block left decrypts to bytes that are
    # no PKCS#7 padding
    def cut_padding(ed):
        eci = ed["encrypted_content_info"]
        eci["encrypted_content"] = eci["encrypted_content"].native[:-16]
    env("envelope-cut-padding.der", edit=cut_padding)

    # bytes after the EnvelopedData
    ci = cms.ContentInfo.load(scepmsg.envelope(bundle, client_ss, rng=erng))
    write("envelope-trailing.der", ci.dump() + b"\x00\x00")
    # BER as streaming CMS encoders write it (BouncyCastle, so EJBCA): every constructed
    # value of indefinite length, the encrypted content a constructed string of 16-byte
    # pieces
    write("envelope-aes128-ber.der",
          to_indefinite_ber(scepmsg.envelope(bundle, client_ss, rng=erng)))


def to_indefinite_ber(der):
    """der re-encoded: each constructed value with an indefinite length (0x80 ... 00 00),
    each [0] IMPLICIT OCTET STRING (tag 0x80) as a constructed one of 16-byte pieces."""
    def length(n):
        if n < 0x80:
            return bytes([n])
        k = (n.bit_length() + 7) // 8
        return bytes([0x80 | k]) + n.to_bytes(k, "big")

    out, i = b"", 0
    while i < len(der):
        tag, n = der[i], der[i + 1]
        i += 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(der[i:i + k], "big")
            i += k
        val = der[i:i + n]
        i += n
        if tag & 0x20:
            out += bytes([tag, 0x80]) + to_indefinite_ber(val) + b"\x00\x00"
        elif tag == 0x80:
            out += b"\xa0\x80" + b"".join(b"\x04" + length(len(val[k:k + 16])) + val[k:k + 16]
                                         for k in range(0, len(val), 16)) + b"\x00\x00"
        else:
            out += bytes([tag]) + length(n) + val
    return out


def envelopes_only():
    def cert(n):
        return x509.load_der_x509_certificate(open(os.path.join(OUT, n), "rb").read())

    envelopes(cert("issued.der"), cert("ca.der"), cert("client-selfsigned.der"))


ISSUING1_AIA = "http://127.0.0.1:1/root2.der"   # fixed, never contacted
CHAIN_KEYS = ("ROOT2_SHA256", "ISSUING1_SHA256", "ISSUING2_SHA256", "POLICY2_SHA256",
              "STRANGER_SHA256")


def update_fixtures_txt(values):
    """Replaces the values of these keys in fixtures.txt, appends the missing ones;
    every other line stays as it is."""
    path = os.path.join(OUT, "fixtures.txt")
    with open(path, newline="") as f:
        lines = f.read().splitlines()
    left = dict(values)
    out = []
    for line in lines:
        k = line.split("=", 1)[0]
        if k in left:
            line = "%s=%s" % (k, left.pop(k))
        out.append(line)
    out += ["%s=%s" % (k, v) for k, v in values if k in left]
    write("fixtures.txt", "".join(line + "\n" for line in out))


def chains(ca, ra_sign, ra_enc, client_ss, client_key, txid, nonce):
    """Multi-tier GetCACert fixtures: a PKI of their own (root2 -> policy2 -> issuing2,
    root2 -> issuing1 -> RA pair), a self-signed stranger posing as an RA, bundles
    mixing them (also with the single-tier ca.der and its RA pair), and CertReps
    answering pkcsreq.der signed by each of them."""
    crng = random.Random(88940)   # its own stream: the other fixtures stay as they are
    _serial[0] = 0x2000           # serials apart from the other fixtures'
    ca_ku = ["key_cert_sign", "crl_sign"]

    def mk(fname, cn, issuer=None, **kw):
        key = newkey()
        c = make_cert(cn, key, issuer[0] if issuer else None, issuer[1] if issuer else None,
                      **kw)
        write(fname + ".der", der(c))
        write_key(fname + ".key.pem", key)
        return c, key

    root2 = mk("root2", "Test Root CA 2", ca=True, ku=ca_ku)
    policy2 = mk("policy2", "Test Policy CA 2", root2, ca=True, ku=ca_ku)
    issuing2 = mk("issuing2", "Test Issuing CA 2", policy2, ca=True, ku=ca_ku)
    issuing1 = mk("issuing1", "Test Issuing CA 1", root2, ca=True, ku=ca_ku,
                  ca_issuers=ISSUING1_AIA)
    ra2_enc = mk("ra2-enc", "Test RA2 Enc", issuing1, ku=["key_encipherment"])
    ra2_sign = mk("ra2-sign", "Test RA2 Sign", issuing1, ku=["digital_signature"])
    ra2_both = mk("ra2-both", "Test RA2 Both", issuing1,
                  ku=["digital_signature", "key_encipherment"])
    stranger = mk("stranger-self", "Test RA (stranger)",
                  ku=["digital_signature", "key_encipherment"])
    issued1 = make_cert(CLIENT_CN, client_key, issuing1[0], issuing1[1],
                        ku=["digital_signature", "key_encipherment"],
                        eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    write("issued-issuing1.der", der(issued1))

    # --- GetCACert responses ----------------------------------------------
    r2, i1, i2, p2 = root2[0], issuing1[0], issuing2[0], policy2[0]
    st = stranger[0]
    for fname, certs in [
            ("getcacert-2tier.p7", [i1, r2]),
            ("getcacert-2tier-reversed.p7", [r2, i1]),
            ("getcacert-issuing-only.p7", [i1]),
            ("getcacert-3tier.p7", [p2, r2, i2]),   # deliberately not in chain order
            ("getcacert-ndes-2tier.p7", [ra2_sign[0], ra2_enc[0], i1]),   # NDES: no root
            ("getcacert-ndes-2tier-root.p7", [ra2_enc[0], r2, ra2_sign[0], i1]),
            ("getcacert-2tier-ra-both.p7", [r2, ra2_both[0], i1]),
            ("getcacert-stranger-self.p7", [ca, st]),
            ("getcacert-ndes-stranger.p7", [ca, ra_sign, ra_enc, st]),
            ("getcacert-2tier-stranger.p7", [i1, st, r2]),
            ("getcacert-two-roots.p7", [r2, i1, ca])]:
        write(fname, scepmsg.degenerate_certs(certs))
    write("getcacert-issuing-only.der", der(i1))

    # --- CertReps answering pkcsreq.der (same TXID and NONCE) --------------
    def rep(fname, signer, status=scepmsg.STATUS_PENDING, certs=(), **kw):
        args = dict(txid=txid, recipient_nonce=nonce, sender_nonce=None,
                    status=status, issued_certs=list(certs), recipient_cert=client_ss,
                    rng=crng)
        args.update(kw)
        write(fname, scepmsg.certrep(signer[0], signer[1], **args))

    rep("certrep-stranger-signed.der", stranger)
    rep("certrep-issuing1-signed.der", issuing1)
    rep("certrep-ra2-signed.der", ra2_sign)
    rep("certrep-root2-signed.der", root2)
    rep("certrep-success-issuing1.der", issuing1, status=scepmsg.STATUS_SUCCESS,
        certs=(issued1, i1))
    # Digests: SHA-2 is fine, MD5 is refused (RFC 8894 2.9); eContentType must be data;
    # the certificates inside the envelope must not be followed by trailing bytes.
    rep("certrep-sha512-signed.der", issuing1, digest="sha512")
    rep("certrep-md5-signed.der", issuing1, digest="md5")
    write("certrep-econtent-signed-data.der", scepmsg.pkimessage(
        issuing1[0], issuing1[1], scepmsg.MSG_CERTREP, txid, bytes(range(16)), recipient_nonce=nonce,
        status=scepmsg.STATUS_PENDING, rng=crng, econtent_type="signed_data"))
    write("certrep-success-trailing.der", scepmsg.pkimessage(
        issuing1[0], issuing1[1], scepmsg.MSG_CERTREP, txid, bytes(range(16)), recipient_nonce=nonce,
        status=scepmsg.STATUS_SUCCESS, recipient_cert=client_ss, rng=crng,
        inner=scepmsg.degenerate_certs([issued1, i1]) + b"\x00\x00"))
    # failInfoText as RFC 8894 puts it, and as step-ca does (under the id-scep arc)
    for fname, oid in [("certrep-failure-text.der", "1.3.6.1.5.5.7.24.1"),
                       ("certrep-failure-text-arc.der", "1.3.6.1.5.5.7.24")]:
        rep(fname, issuing1, status=scepmsg.STATUS_FAILURE,
            fail_info=scepmsg.FAIL_BAD_REQUEST,
            extra_attributes=[scepmsg._attr(oid, [core.UTF8String("wrong password provided")])])

    def fp(c):
        return hashlib.sha256(der(c)).hexdigest().upper()

    update_fixtures_txt(list(zip(CHAIN_KEYS, (fp(r2), fp(i1), fp(i2), fp(p2), fp(st)))))


def chains_only():
    def cert(n):
        return x509.load_der_x509_certificate(open(os.path.join(OUT, n), "rb").read())

    def key(n):
        return serialization.load_pem_private_key(open(os.path.join(OUT, n), "rb").read(),
                                                  None)

    with open(os.path.join(OUT, "fixtures.txt")) as f:
        fx = dict(line.strip().split("=", 1) for line in f if "=" in line)
    chains(cert("ca.der"), cert("ra-sign.der"), cert("ra-enc.der"),
           cert("client-selfsigned.der"), key("client.key.pem"), fx["TXID"],
           bytes.fromhex(fx["NONCE"]))


if __name__ == "__main__":
    if NEXTCA_ONLY:
        nextca_only()
    elif CHAINS_ONLY:
        chains_only()
    elif ENVELOPES_ONLY:
        envelopes_only()
    else:
        main()
