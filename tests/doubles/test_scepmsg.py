"""Self-check of tests/doubles/scepmsg.py and the fixtures in tests/data/.

    cd tests/doubles && /usr/bin/python3 -m unittest -v test_scepmsg
    (or from the repo root: /usr/bin/python3 -m unittest discover -s tests/doubles)

Parses every CertRep back with asn1crypto, verifies signatures with
cryptography, decrypts the envelopes with client.key.pem, and checks that each
negative fixture is broken in exactly the intended way.  When the openssl CLI
is available the good/bad verdicts are cross-checked with `openssl cms`.
"""

import datetime
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "data"))
sys.path.insert(0, HERE)

import scepmsg  # noqa: E402
from asn1crypto import cms, core  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.exceptions import InvalidSignature  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding  # noqa: E402


def rd(name):
    with open(os.path.join(DATA, name), "rb") as f:
        return f.read()


def cert(name):
    return x509.load_der_x509_certificate(rd(name))


def key(name):
    return serialization.load_pem_private_key(rd(name), None)


def fixtures():
    out = {}
    for line in rd("fixtures.txt").decode().splitlines():
        k, v = line.split("=", 1)
        out[k] = v
    return out


FX = fixtures()
TXID = FX["TXID"]
NONCE = bytes.fromhex(FX["NONCE"])
CLIENT_KEY = key("client.key.pem")

OID_AES128_CBC = "2.16.840.1.101.3.4.1.2"
OID_DES_EDE3_CBC = "1.2.840.113549.3.7"
OID_DES_CBC = "1.3.14.3.2.7"


def parse(name, **kw):
    kw.setdefault("ra_key", CLIENT_KEY)
    return scepmsg.parse_pkimessage(rd(name), **kw)


def spki(c):
    return c.public_key().public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)


def tlvs(data):
    """Split DER into (tag, value) pairs (single-byte tags, definite lengths)."""
    out = []
    while data:
        tag, n = data[0], data[1]
        i = 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(data[2:2 + k], "big")
            i += k
        out.append((tag, data[i:i + n]))
        data = data[i + n:]
    return out


def signer_info(der):
    return cms.ContentInfo.load(der)["content"]["signer_infos"][0]


class TestFixtureFiles(unittest.TestCase):
    def test_fixtures_txt(self):
        self.assertRegex(TXID, r"^[0-9A-F]{64}$")
        self.assertEqual(len(NONCE), 16)
        self.assertEqual(TXID, hashlib.sha256(spki(cert("client-selfsigned.der"))).hexdigest().upper())
        self.assertEqual(FX["CA_SHA256"], hashlib.sha256(rd("ca.der")).hexdigest().upper())
        self.assertEqual(FX["CA_SHA1"], hashlib.sha1(rd("ca.der")).hexdigest().upper())
        self.assertEqual(FX["ROOT_SHA256"], hashlib.sha256(rd("root.der")).hexdigest().upper())
        self.assertEqual(int(FX["ISSUED_SERIAL"], 16), cert("issued.der").serial_number)

    def test_caps(self):
        self.assertEqual(rd("caps-scepserver.txt"),
                         b"Renewal\nSHA-1\nSHA-256\nAES\nDES3\nSCEPStandard\nPOSTPKIOperation")
        self.assertEqual(rd("caps-mixed.txt"),
                         b"postpkioperation\r\nsha-256\r\nUnknownThing\r\n\r\naes\r\n")
        self.assertEqual(rd("caps-empty.txt"), b"")
        self.assertEqual(rd("caps-des3-only.txt"), b"DES3\nSHA-1\n")

    def test_keys_match_certs(self):
        for k, c in [("ca", "ca"), ("ra-sign", "ra-sign"), ("ra-enc", "ra-enc"),
                     ("ra-both", "ra-both"), ("client", "client-selfsigned"),
                     ("client", "issued"), ("client", "issued-int"),
                     ("other", "issued-other-key"), ("rogue", "rogue"),
                     ("root", "root"), ("intermediate", "intermediate"),
                     ("ra-int", "ra-int")]:
            pk = key(k + ".key.pem")
            self.assertEqual(spki(cert(c + ".der")),
                             pk.public_key().public_bytes(
                                 serialization.Encoding.DER,
                                 serialization.PublicFormat.SubjectPublicKeyInfo), c)
        self.assertTrue(rd("client.key.pem").startswith(b"-----BEGIN PRIVATE KEY-----"))
        self.assertNotEqual(spki(cert("issued-other-key.der")), spki(cert("issued.der")))

    def _issued_by(self, child, parent):
        c, p = cert(child), cert(parent)
        self.assertEqual(c.issuer, p.subject)
        p.public_key().verify(c.signature, c.tbs_certificate_bytes, padding.PKCS1v15(),
                              c.signature_hash_algorithm)

    def _ku(self, name):
        try:
            return cert(name).extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            return None

    def _is_ca(self, name):
        try:
            return cert(name).extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            return False

    def test_certificates(self):
        cn = lambda n: cert(n).subject.rfc4514_string()  # noqa: E731
        self.assertEqual(cn("ca.der"), "CN=Test SCEP CA")
        self._issued_by("ca.der", "ca.der")
        self.assertTrue(self._is_ca("ca.der"))
        ku = self._ku("ca.der")
        self.assertTrue(ku.key_cert_sign and ku.crl_sign and not ku.digital_signature)
        cert("ca.der").extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        for n, c in [("ra-sign.der", "CN=Test RA Sign"), ("ra-enc.der", "CN=Test RA Enc"),
                     ("ra-both.der", "CN=Test RA Both"), ("issued.der", "CN=client.example.com"),
                     ("issued-other-key.der", "CN=client.example.com")]:
            self.assertEqual(cn(n), c)
            self._issued_by(n, "ca.der")
            self.assertFalse(self._is_ca(n))
        ku = self._ku("ra-sign.der")
        self.assertTrue(ku.digital_signature and not ku.key_encipherment)
        ku = self._ku("ra-enc.der")
        self.assertTrue(ku.key_encipherment and not ku.digital_signature)
        self.assertIsNone(self._ku("ra-both.der"))
        self.assertEqual(cn("client-selfsigned.der"), "CN=client.example.com")
        self._issued_by("client-selfsigned.der", "client-selfsigned.der")
        ku = self._ku("client-selfsigned.der")
        self.assertTrue(ku.digital_signature and ku.key_encipherment)
        self._issued_by("rogue.der", "rogue.der")
        # second hierarchy
        self._issued_by("root.der", "root.der")
        self._issued_by("intermediate.der", "root.der")
        self.assertTrue(self._is_ca("intermediate.der"))
        self._issued_by("ra-int.der", "intermediate.der")
        self.assertIsNone(self._ku("ra-int.der"))
        self._issued_by("issued-int.der", "intermediate.der")

    def test_getcacert(self):
        self.assertEqual(rd("getcacert-ca-only.der"), rd("ca.der"))
        for f, names in [
                ("getcacert-ra.p7", ["ca", "ra-sign", "ra-enc"]),
                ("getcacert-ra-reversed.p7", ["ra-enc", "ca", "ra-sign"]),
                ("getcacert-ra-both.p7", ["ca", "ra-both"]),
                ("getcacert-intermediate.p7", ["ra-int", "intermediate", "root"])]:
            der = rd(f)
            self.assertEqual(scepmsg.parse_degenerate(der), [rd(n + ".der") for n in names], f)
            ci = cms.ContentInfo.load(der)
            self.assertEqual(ci["content_type"].dotted, "1.2.840.113549.1.7.2")
            sd = ci["content"]
            self.assertEqual(len(sd["signer_infos"]), 0)
            self.assertEqual(len(sd["digest_algorithms"]), 0)
            self.assertEqual(sd["encap_content_info"]["content_type"].dotted, "1.2.840.113549.1.7.1")
            self.assertIsInstance(sd["encap_content_info"]["content"], core.Void)

    def test_csr(self):
        req = x509.load_der_x509_csr(rd("client.csr.der"))
        self.assertTrue(req.is_signature_valid)
        self.assertEqual(spki(req), spki(cert("client-selfsigned.der")))
        self.assertEqual(req.subject, cert("client-selfsigned.der").subject)
        self.assertEqual(req.attributes.get_attribute_for_oid(
            x509.oid.AttributeOID.CHALLENGE_PASSWORD).value, FX["CHALLENGE"].encode())


class TestCertRepStructure(unittest.TestCase):
    """DER-level checks done directly with asn1crypto/cryptography, not through the parser."""

    def test_manual_verify_and_decrypt(self):
        der = rd("certrep-success.der")
        ci = cms.ContentInfo.load(der)
        self.assertEqual(ci["content_type"].dotted, "1.2.840.113549.1.7.2")
        sd = ci["content"]
        self.assertEqual(sd["encap_content_info"]["content_type"].dotted, "1.2.840.113549.1.7.1")
        econtent = sd["encap_content_info"]["content"].native
        self.assertIsInstance(econtent, bytes)
        si = sd["signer_infos"][0]
        self.assertEqual(si["sid"].name, "issuer_and_serial_number")
        ra = cert("ra-sign.der")
        self.assertEqual(si["sid"].chosen["serial_number"].native, ra.serial_number)
        raw = si["signed_attrs"].dump()
        self.assertEqual(raw[0], 0xA0)  # [0] IMPLICIT in SignerInfo
        signed = b"\x31" + raw[1:]
        # stored attribute order is DER (sorted) order, so re-encoding is identical
        self.assertEqual(cms.CMSAttributes.load(signed).dump(force=True), signed)
        ra.public_key().verify(si["signature"].native, signed, padding.PKCS1v15(), hashes.SHA256())
        attrs = {a["type"].dotted: a["values"] for a in si["signed_attrs"]}
        self.assertEqual(attrs["1.2.840.113549.1.9.4"][0].native, hashlib.sha256(econtent).digest())
        # envelope
        env = cms.ContentInfo.load(econtent)
        self.assertEqual(env["content_type"].dotted, "1.2.840.113549.1.7.3")
        ed = env["content"]
        self.assertEqual(ed["version"].native, "v0")
        self.assertEqual(len(ed["recipient_infos"]), 1)
        ktri = ed["recipient_infos"][0].chosen
        self.assertEqual(ktri["version"].native, "v0")
        self.assertEqual(ktri["rid"].name, "issuer_and_serial_number")
        cs = cert("client-selfsigned.der")
        self.assertEqual(ktri["rid"].chosen["serial_number"].native, cs.serial_number)
        self.assertEqual(ktri["key_encryption_algorithm"]["algorithm"].dotted, "1.2.840.113549.1.1.1")
        cek = CLIENT_KEY.decrypt(ktri["encrypted_key"].native, padding.PKCS1v15())
        self.assertEqual(len(cek), 16)
        alg = ed["encrypted_content_info"]["content_encryption_algorithm"]
        self.assertEqual(alg["algorithm"].dotted, OID_AES128_CBC)
        iv = alg["parameters"].native
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        d = Cipher(algorithms.AES(cek), modes.CBC(iv)).decryptor()
        pt = d.update(ed["encrypted_content_info"]["encrypted_content"].native) + d.finalize()
        pt = pt[:-pt[-1]]
        inner = cms.ContentInfo.load(pt)
        self.assertEqual(inner["content_type"].dotted, "1.2.840.113549.1.7.2")
        self.assertEqual([c.chosen.dump() for c in inner["content"]["certificates"]],
                         [rd("issued.der"), rd("ca.der")])
        self.assertEqual(len(inner["content"]["signer_infos"]), 0)

    def test_attribute_value_types(self):
        """SCEP attributes are SET OF PrintableString / SET OF OCTET STRING, one value."""
        for f in ["certrep-success.der", "certrep-failure.der", "certrep-pending.der",
                  "pkcsreq.der"]:
            si = signer_info(rd(f))
            seen = set()
            for a in si["signed_attrs"]:
                oid = a["type"].dotted
                seen.add(oid)
                # walk the raw TLVs: SEQUENCE { OID, SET { values } }
                seq = tlvs(a.dump())
                self.assertEqual(len(seq), 1)
                tag, body = seq[0]
                self.assertEqual(tag, 0x30)
                parts = tlvs(body)
                self.assertEqual([t for t, _ in parts], [0x06, 0x31], oid)
                members = tlvs(parts[1][1])
                self.assertEqual(len(members), 1, oid)
                mtag, mval = members[0]
                if oid in (scepmsg.OID_TRANSACTION_ID, scepmsg.OID_MESSAGE_TYPE,
                           scepmsg.OID_PKI_STATUS, scepmsg.OID_FAIL_INFO):
                    self.assertEqual(mtag, 0x13, oid)  # PrintableString
                elif oid in (scepmsg.OID_SENDER_NONCE, scepmsg.OID_RECIPIENT_NONCE):
                    self.assertEqual(mtag, 0x04, oid)  # OCTET STRING
                    self.assertEqual(len(mval), 16)
            self.assertIn(scepmsg.OID_TRANSACTION_ID, seen)
            self.assertIn(scepmsg.OID_MESSAGE_TYPE, seen)
            self.assertIn(scepmsg.OID_SENDER_NONCE, seen)
            self.assertIn("1.2.840.113549.1.9.3", seen)
            self.assertIn("1.2.840.113549.1.9.4", seen)

    def test_cipher_oids(self):
        for f, oid, ivlen, klen in [("certrep-success.der", OID_AES128_CBC, 16, 16),
                                    ("certrep-success-des3.der", OID_DES_EDE3_CBC, 8, 24),
                                    ("certrep-success-des.der", OID_DES_CBC, 8, 8),
                                    ("certrep-scepserver.der", OID_DES_CBC, 8, 8)]:
            econtent = cms.ContentInfo.load(rd(f))["content"]["encap_content_info"]["content"].native
            ed = cms.ContentInfo.load(econtent)["content"]
            alg = ed["encrypted_content_info"]["content_encryption_algorithm"]
            self.assertEqual(alg["algorithm"].dotted, oid, f)
            self.assertEqual(len(alg["parameters"].native), ivlen, f)
            cek = CLIENT_KEY.decrypt(ed["recipient_infos"][0].chosen["encrypted_key"].native,
                                     padding.PKCS1v15())
            self.assertEqual(len(cek), klen, f)


class TestCertReps(unittest.TestCase):
    def check_common(self, r, signer="ra-sign.der", digest="sha256"):
        self.assertTrue(r["signature_ok"])
        self.assertTrue(r["digest_ok"])
        self.assertTrue(r["content_type_attr_ok"])
        self.assertEqual(r["content_type"], "1.2.840.113549.1.7.1")
        self.assertEqual(r["signer_cert"], rd(signer))
        self.assertEqual(r["digest"], digest)
        self.assertEqual(len(r["sender_nonce"]), 16)
        self.assertNotEqual(r["sender_nonce"], NONCE)

    def check_good_success(self, name, cipher="aes128", signer="ra-sign.der", digest="sha256",
                           certs=("issued.der", "ca.der"), extra_certs=()):
        r = parse(name, extra_certs=extra_certs)
        self.check_common(r, signer, digest)
        self.assertEqual(r["txid"], TXID)
        self.assertEqual(r["message_type"], "3")
        self.assertEqual(r["status"], "0")
        self.assertIsNone(r["fail_info"])
        self.assertEqual(r["recipient_nonce"], NONCE)
        self.assertEqual(r["cipher"], cipher)
        self.assertEqual(r["issued_certs"], [rd(c) for c in certs])
        return r

    def test_success(self):
        r = self.check_good_success("certrep-success.der")
        self.assertEqual(r["certs"], [rd("ra-sign.der")])
        self.assertEqual(r["signature_algorithm"], "rsassa_pkcs1v15")
        leaf = x509.load_der_x509_certificate(r["issued_certs"][0])
        self.assertEqual(spki(leaf), spki(cert("client-selfsigned.der")))

    def test_success_des3(self):
        self.check_good_success("certrep-success-des3.der", cipher="des3")

    def test_success_des(self):
        self.check_good_success("certrep-success-des.der", cipher="des")

    def test_success_sha1_by_ca(self):
        name = "certrep-success-sha1-by-ca.der"
        r = parse(name, verify=False)
        self.assertEqual(r["certs"], [])
        self.assertIsNone(r["signer_cert"])
        with self.assertRaises(scepmsg.ScepError):
            parse(name)
        self.check_good_success(name, signer="ca.der", digest="sha1", certs=["issued.der"],
                                extra_certs=[rd("ca.der"), rd("ra-sign.der")])

    def test_scepserver_like(self):
        self.check_good_success("certrep-scepserver.der", cipher="des", signer="ca.der",
                                digest="sha1", certs=["issued.der"],
                                extra_certs=[rd("ca.der")])

    def test_success_no_signer_cert(self):
        name = "certrep-success-no-signer-cert.der"
        self.assertIsNone(parse(name, verify=False)["signer_cert"])
        bundle = scepmsg.parse_degenerate(rd("getcacert-ra.p7"))
        self.check_good_success(name, extra_certs=bundle)

    def test_success_intermediate(self):
        self.check_good_success("certrep-success-intermediate.der", signer="ra-int.der",
                                certs=["issued-int.der", "intermediate.der"])

    def test_success_no_certs(self):
        self.check_good_success("certrep-success-no-certs.der", certs=[])

    def test_failure(self):
        for name, fi in [("certrep-failure.der", "2"), ("certrep-failure-badcertid.der", "4")]:
            r = parse(name)
            self.check_common(r)
            self.assertEqual((r["status"], r["fail_info"], r["message_type"]), ("2", fi, "3"))
            self.assertEqual(r["txid"], TXID)
            self.assertEqual(r["recipient_nonce"], NONCE)
            self.assertFalse(r["econtent_present"])
            self.assertIsNone(r["envelope"])
            self.assertIsNone(r["issued_certs"])

    def test_failure_empty_content(self):
        r = parse("certrep-failure-empty-content.der")
        self.check_common(r)
        self.assertEqual((r["status"], r["fail_info"]), ("2", "2"))
        self.assertTrue(r["econtent_present"])
        self.assertEqual(r["econtent"], b"")
        self.assertIsNone(r["envelope"])

    def test_pending(self):
        r = parse("certrep-pending.der")
        self.check_common(r)
        self.assertEqual((r["status"], r["fail_info"], r["message_type"]), ("3", None, "3"))
        self.assertEqual(r["txid"], TXID)
        self.assertEqual(r["recipient_nonce"], NONCE)
        self.assertFalse(r["econtent_present"])

    def _valid_except(self, name, ra_key=CLIENT_KEY, **expect):
        r = parse(name, ra_key=ra_key)
        self.check_common(r)
        want = dict(txid=TXID, message_type="3", status="0", recipient_nonce=NONCE)
        want.update(expect)
        for k, v in want.items():
            self.assertEqual(r[k], v, k)
        return r

    def test_wrong_nonce(self):
        r = self._valid_except("certrep-wrong-nonce.der",
                               recipient_nonce=NONCE[:-1] + bytes([NONCE[-1] ^ 1]))
        self.assertEqual(r["issued_certs"], [rd("issued.der"), rd("ca.der")])

    def test_no_recipient_nonce(self):
        r = self._valid_except("certrep-no-recipient-nonce.der", recipient_nonce=None)
        self.assertNotIn(scepmsg.OID_RECIPIENT_NONCE, r["raw_attrs"])
        self.assertEqual(r["issued_certs"], [rd("issued.der"), rd("ca.der")])

    def test_txid_prefix(self):
        self._valid_except("certrep-txid-prefix.der", txid=TXID[:-8])
        self.assertEqual(len(TXID[:-8]), 56)

    def test_txid_longer(self):
        self._valid_except("certrep-txid-longer.der", txid=TXID + "00")

    def test_bad_msgtype(self):
        # the parser would treat a "19" as a PKCSReq: decrypt by hand
        r = self._valid_except("certrep-bad-msgtype.der", ra_key=None, message_type="19")
        inner, cipher = scepmsg.decrypt_envelope(r["envelope"], CLIENT_KEY)
        self.assertEqual(scepmsg.parse_degenerate(inner), [rd("issued.der"), rd("ca.der")])

    def test_wrong_key(self):
        r = parse("certrep-wrong-key.der")
        self.check_common(r)
        self.assertEqual(r["issued_certs"], [rd("issued-other-key.der")])
        leaf = x509.load_der_x509_certificate(r["issued_certs"][0])
        self.assertNotEqual(spki(leaf), spki(cert("client-selfsigned.der")))

    def test_rogue_signer(self):
        r = parse("certrep-rogue-signer.der")
        self.check_common(r, signer="rogue.der")
        self.assertEqual(r["certs"], [rd("rogue.der")])
        for b in ["getcacert-ra.p7", "getcacert-ra-both.p7", "getcacert-intermediate.p7",
                  "getcacert-ra-reversed.p7"]:
            self.assertNotIn(rd("rogue.der"), scepmsg.parse_degenerate(rd(b)))
        # verifying against the bundle only finds no signer
        r2 = scepmsg.parse_pkimessage(
            self._strip_certs(rd("certrep-rogue-signer.der")), verify=False,
            extra_certs=scepmsg.parse_degenerate(rd("getcacert-ra.p7")))
        self.assertIsNone(r2["signer_cert"])

    @staticmethod
    def _strip_certs(der):
        ci = cms.ContentInfo.load(der)
        sd = ci["content"]
        new = cms.SignedData({
            "version": sd["version"], "digest_algorithms": sd["digest_algorithms"],
            "encap_content_info": sd["encap_content_info"], "signer_infos": sd["signer_infos"]})
        return cms.ContentInfo({"content_type": "signed_data", "content": new}).dump()

    def test_bad_signature(self):
        name = "certrep-bad-signature.der"
        with self.assertRaises(scepmsg.ScepError):
            parse(name)
        r = parse(name, verify=False)
        self.assertFalse(r["signature_ok"])
        self.assertTrue(r["digest_ok"])
        self.assertEqual(r["signer_cert"], rd("ra-sign.der"))
        self.assertEqual(r["issued_certs"], [rd("issued.der"), rd("ca.der")])
        self.assertEqual((r["txid"], r["recipient_nonce"], r["status"]), (TXID, NONCE, "0"))
        # flipping the middle byte back restores a valid signature: exactly one byte changed
        sig = signer_info(rd(name))["signature"].native
        i = len(sig) // 2
        fixed = sig[:i] + bytes([sig[i] ^ 1]) + sig[i + 1:]
        pub = cert("ra-sign.der").public_key()
        pub.verify(fixed, r["signed_attrs_der"], padding.PKCS1v15(), hashes.SHA256())
        with self.assertRaises(InvalidSignature):
            pub.verify(sig, r["signed_attrs_der"], padding.PKCS1v15(), hashes.SHA256())

    def test_bad_digest(self):
        name = "certrep-bad-digest.der"
        with self.assertRaises(scepmsg.ScepError):
            parse(name)
        r = parse(name, verify=False, ra_key=None)
        self.assertTrue(r["signature_ok"])
        self.assertFalse(r["digest_ok"])
        self.assertEqual((r["txid"], r["recipient_nonce"], r["status"]), (TXID, NONCE, "0"))
        ec = r["econtent"]
        md = r["raw_attrs"]["1.2.840.113549.1.9.4"][0].native
        self.assertNotEqual(hashlib.sha256(ec).digest(), md)
        restored = ec[:-1] + bytes([ec[-1] ^ 1])
        self.assertEqual(hashlib.sha256(restored).digest(), md)
        # restored content is the intact envelope again
        inner, _ = scepmsg.decrypt_envelope(restored, CLIENT_KEY)
        self.assertEqual(scepmsg.parse_degenerate(inner), [rd("issued.der"), rd("ca.der")])
        # the tampered envelope is still well-formed DER
        cms.ContentInfo.load(ec).native

    def test_truncated(self):
        s = rd("certrep-success.der")
        t = rd("certrep-truncated.der")
        self.assertEqual(t, s[:len(s) * 6 // 10])
        with self.assertRaises(scepmsg.ScepError):
            scepmsg.parse_pkimessage(t, CLIENT_KEY)

    def test_garbage(self):
        g = rd("certrep-garbage.der")
        self.assertEqual(len(g), 200)
        with self.assertRaises(scepmsg.ScepError):
            scepmsg.parse_pkimessage(g, CLIENT_KEY)

    def test_decrypt_needs_right_key(self):
        with self.assertRaises(scepmsg.ScepError):
            parse("certrep-success.der", ra_key=key("other.key.pem"))


class TestPKCSReq(unittest.TestCase):
    def test_pkcsreq_fixture(self):
        r = scepmsg.parse_pkimessage(rd("pkcsreq.der"), key("ra-enc.key.pem"),
                                     ra_cert=rd("ra-enc.der"))
        self.assertEqual(r["message_type"], "19")
        self.assertEqual(r["txid"], TXID)
        self.assertEqual(r["sender_nonce"], NONCE)
        self.assertIsNone(r["recipient_nonce"])
        self.assertIsNone(r["status"])
        self.assertEqual(r["signer_cert"], rd("client-selfsigned.der"))
        self.assertEqual(r["csr_der"], rd("client.csr.der"))
        self.assertEqual(r["cipher"], "aes128")
        with self.assertRaises(scepmsg.ScepError):
            scepmsg.parse_pkimessage(rd("pkcsreq.der"), key("ra-sign.key.pem"))

    def test_roundtrip_builders(self):
        ra_enc, ra_key = cert("ra-enc.der"), key("ra-enc.key.pem")
        cs = cert("client-selfsigned.der")
        for cipher in ("aes128", "des3", "des", "aes256"):
            for digest in ("sha256", "sha1", "sha512"):
                der = scepmsg.pkcsreq(cs, CLIENT_KEY, ra_enc, rd("client.csr.der"), "T1",
                                      cipher=cipher, digest=digest,
                                      message_type=scepmsg.MSG_RENEWALREQ)
                r = scepmsg.parse_pkimessage(der, ra_key)
                self.assertEqual((r["cipher"], r["digest"], r["message_type"]),
                                 (cipher, digest, "17"))
                self.assertEqual(r["csr_der"], rd("client.csr.der"))
        der = scepmsg.certpoll(cs, CLIENT_KEY, ra_enc,
                               cert("ca.der").subject.public_bytes(),
                               cs.subject.public_bytes(), "T2", signing_time=None)
        r = scepmsg.parse_pkimessage(der, ra_key)
        self.assertEqual(r["message_type"], "20")
        self.assertEqual(r["issuer_and_subject"],
                         (cert("ca.der").subject.public_bytes(), cs.subject.public_bytes()))
        # a responder answering it
        rep = scepmsg.certrep(cert("ra-sign.der"), key("ra-sign.key.pem"), r["txid"],
                              r["sender_nonce"], None, "0",
                              issued_certs=[cert("issued.der")],
                              recipient_cert=r["signer_cert"], signature_oid="withHash",
                              signing_time=datetime.datetime(2024, 5, 1, 12, 0, 0,
                                                                tzinfo=datetime.timezone.utc))
        rr = scepmsg.parse_pkimessage(rep, CLIENT_KEY)
        self.assertEqual(rr["recipient_nonce"], r["sender_nonce"])
        self.assertEqual(rr["signature_algorithm"], "sha256_rsa")
        self.assertEqual(rr["issued_certs"], [rd("issued.der")])
        self.assertEqual(rr["signing_time"].year, 2024)


OPENSSL = shutil.which("openssl")


@unittest.skipUnless(OPENSSL, "openssl CLI not installed")
class TestOpenSSLCrossCheck(unittest.TestCase):
    """Independent verdicts from the OpenSSL CLI (checking only, never generating)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="scepmsg-")
        for n in ["ca", "ra-sign", "ra-enc", "client-selfsigned", "rogue", "ra-int",
                  "intermediate", "root"]:
            cls.pem(n)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    @classmethod
    def pem(cls, n):
        p = os.path.join(cls.tmp, n + ".pem")
        if not os.path.exists(p):
            with open(p, "wb") as f:
                f.write(cert(n + ".der").public_bytes(serialization.Encoding.PEM))
        return p

    def run_ossl(self, *args):
        return subprocess.run([OPENSSL] + list(args), capture_output=True)

    def verify(self, name, certfiles=("ra-sign",), extra=()):
        args = ["cms", "-verify", "-inform", "DER", "-in", os.path.join(DATA, name),
                "-noverify", "-binary"]
        for c in certfiles:
            args += ["-certfile", self.pem(c)]
        out = os.path.join(self.tmp, name + ".out")
        p = self.run_ossl(*(args + list(extra) + ["-out", out]))
        return p.returncode, out

    def test_envelope_in_indefinite_ber(self):
        """envelope-aes128-ber.der is BER of indefinite lengths throughout (asn1crypto does
        not read it back): OpenSSL opens it to the bundle [issued, ca]."""
        der = rd("envelope-aes128-ber.der")
        self.assertEqual(der[:2], b"\x30\x80")
        self.assertIn(b"\xa0\x80\x04\x10", der)
        path = os.path.join(self.tmp, "envelope-aes128-ber.der")
        with open(path, "wb") as f:
            f.write(der)
        rc, out = self.decrypt(path)
        self.assertEqual(rc, 0)
        with open(out, "rb") as f:
            self.assertEqual(scepmsg.parse_degenerate(f.read()), [rd("issued.der"), rd("ca.der")])

    def decrypt(self, env_path, keyname="client", recip="client-selfsigned"):
        out = env_path + ".dec"
        p = self.run_ossl("cms", "-decrypt", "-inform", "DER", "-in", env_path,
                          "-inkey", os.path.join(DATA, keyname + ".key.pem"),
                          "-recip", self.pem(recip), "-binary",
                          "-provider", "legacy", "-provider", "default", "-out", out)
        return p.returncode, out

    def test_good_certreps(self):
        for name, cf, certs in [
                ("certrep-success.der", ("ra-sign",), ["issued", "ca"]),
                ("certrep-success-des3.der", ("ra-sign",), ["issued", "ca"]),
                ("certrep-success-des.der", ("ra-sign",), ["issued", "ca"]),
                ("certrep-success-sha1-by-ca.der", ("ca",), ["issued"]),
                ("certrep-scepserver.der", ("ca",), ["issued"]),
                ("certrep-success-no-signer-cert.der", ("ra-sign",), ["issued", "ca"]),
                ("certrep-success-intermediate.der", (), ["issued-int", "intermediate"]),
                ("certrep-success-no-certs.der", (), []),
                ("certrep-wrong-nonce.der", (), ["issued", "ca"]),
                ("certrep-no-recipient-nonce.der", (), ["issued", "ca"]),
                ("certrep-txid-prefix.der", (), ["issued", "ca"]),
                ("certrep-txid-longer.der", (), ["issued", "ca"]),
                ("certrep-bad-msgtype.der", (), ["issued", "ca"]),
                ("certrep-rogue-signer.der", (), ["issued", "ca"]),
                ("certrep-wrong-key.der", (), ["issued-other-key"])]:
            with self.subTest(name=name):
                rc, env = self.verify(name, cf)
                self.assertEqual(rc, 0, name)
                rc, inner = self.decrypt(env)
                self.assertEqual(rc, 0, name)
                with open(inner, "rb") as f:
                    self.assertEqual(scepmsg.parse_degenerate(f.read()),
                                     [rd(c + ".der") for c in certs])
                p = self.run_ossl("pkcs7", "-inform", "DER", "-in", inner, "-print_certs",
                                  "-noout")
                self.assertEqual(p.returncode, 0)

    def test_no_signer_cert_needs_bundle(self):
        rc, _ = self.verify("certrep-success-no-signer-cert.der", ())
        self.assertNotEqual(rc, 0)
        rc, _ = self.verify("certrep-scepserver.der", ())
        self.assertNotEqual(rc, 0)

    def test_rogue_chain_fails(self):
        p = self.run_ossl("cms", "-verify", "-inform", "DER", "-in",
                          os.path.join(DATA, "certrep-rogue-signer.der"),
                          "-CAfile", self.pem("ca"), "-purpose", "any", "-out", os.devnull)
        self.assertNotEqual(p.returncode, 0)
        p = self.run_ossl("cms", "-verify", "-inform", "DER", "-in",
                          os.path.join(DATA, "certrep-success.der"),
                          "-CAfile", self.pem("ca"), "-purpose", "any", "-out", os.devnull)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_failure_pending_detached(self):
        for name in ["certrep-failure.der", "certrep-failure-badcertid.der",
                     "certrep-pending.der"]:
            with self.subTest(name=name):
                rc, _ = self.verify(name, extra=["-content", os.devnull])
                self.assertEqual(rc, 0)
        rc, _ = self.verify("certrep-failure-empty-content.der")
        self.assertEqual(rc, 0)

    def test_bad_ones_fail(self):
        for name in ["certrep-bad-signature.der", "certrep-bad-digest.der",
                     "certrep-truncated.der", "certrep-garbage.der"]:
            with self.subTest(name=name):
                rc, _ = self.verify(name)
                self.assertNotEqual(rc, 0)

    def test_des_needs_legacy_provider(self):
        rc, env = self.verify("certrep-success-des.der")
        self.assertEqual(rc, 0)
        p = self.run_ossl("cms", "-decrypt", "-inform", "DER", "-in", env,
                          "-inkey", os.path.join(DATA, "client.key.pem"),
                          "-recip", self.pem("client-selfsigned"), "-out", os.devnull)
        # OpenSSL 3 without the legacy provider refuses DES-CBC
        if p.returncode == 0:
            self.skipTest("this OpenSSL decrypts DES without the legacy provider")

    def test_attributes_as_openssl_sees_them(self):
        p = self.run_ossl("cms", "-cmsout", "-print", "-inform", "DER",
                          "-in", os.path.join(DATA, "certrep-success.der"))
        self.assertEqual(p.returncode, 0)
        out = p.stdout.decode()
        self.assertIn("2.16.840.1.113733.1.9.7", out)
        self.assertIn("PRINTABLESTRING:" + TXID, out)
        self.assertIn("PRINTABLESTRING:3", out)
        self.assertIn("PRINTABLESTRING:0", out)

    def test_getcacert_order(self):
        for f, cns in [("getcacert-ra.p7", ["Test SCEP CA", "Test RA Sign", "Test RA Enc"]),
                       ("getcacert-ra-reversed.p7", ["Test RA Enc", "Test SCEP CA", "Test RA Sign"]),
                       ("getcacert-ra-both.p7", ["Test SCEP CA", "Test RA Both"]),
                       ("getcacert-intermediate.p7",
                        ["Test RA Intermediate", "Test Intermediate CA", "Test Root CA"])]:
            p = self.run_ossl("pkcs7", "-inform", "DER", "-in", os.path.join(DATA, f),
                              "-print_certs", "-noout")
            self.assertEqual(p.returncode, 0)
            subj = [l.split("CN = ", 1)[1] for l in p.stdout.decode().splitlines()
                    if l.startswith("subject=")]
            self.assertEqual(subj, cns, f)

    def test_chain_fixtures(self):
        for n in ["root2", "policy2", "issuing2", "issuing1", "ra2-enc", "ra2-sign",
                  "ra2-both", "stranger-self", "issued-issuing1"]:
            self.pem(n)
        for leaf, untrusted in [("root2", ()), ("policy2", ()), ("issuing2", ("policy2",)),
                                ("issuing1", ()), ("ra2-enc", ("issuing1",)),
                                ("ra2-sign", ("issuing1",)), ("ra2-both", ("issuing1",)),
                                ("issued-issuing1", ("issuing1",))]:
            args = ["verify", "-CAfile", self.pem("root2")]
            for u in untrusted:
                args += ["-untrusted", self.pem(u)]
            p = self.run_ossl(*(args + [self.pem(leaf)]))
            self.assertEqual(p.returncode, 0, leaf + p.stdout.decode() + p.stderr.decode())
        p = self.run_ossl("verify", "-CAfile", self.pem("root2"), self.pem("stranger-self"))
        self.assertNotEqual(p.returncode, 0)
        for f in ["getcacert-2tier.p7", "getcacert-3tier.p7", "getcacert-ndes-2tier-root.p7",
                  "getcacert-two-roots.p7", "getcacert-2tier-stranger.p7"]:
            p = self.run_ossl("pkcs7", "-inform", "DER", "-in", os.path.join(DATA, f),
                              "-print_certs", "-noout")
            self.assertEqual(p.returncode, 0, f)
        # the SUCCESS reply verifies up to root2 and decrypts with the client's key
        rc, env = self.verify("certrep-success-issuing1.der", ("issuing1",))
        self.assertEqual(rc, 0)
        rc, inner = self.decrypt(env)
        self.assertEqual(rc, 0)
        with open(inner, "rb") as f:
            self.assertEqual(scepmsg.parse_degenerate(f.read()),
                             [rd("issued-issuing1.der"), rd("issuing1.der")])
        p = self.run_ossl("cms", "-verify", "-inform", "DER", "-in",
                          os.path.join(DATA, "certrep-stranger-signed.der"), "-content",
                          os.devnull, "-CAfile", self.pem("root2"), "-purpose", "any",
                          "-out", os.devnull)
        self.assertNotEqual(p.returncode, 0)

    def test_pkcsreq(self):
        rc, env = self.verify("pkcsreq.der", ())
        self.assertEqual(rc, 0)
        rc, out = self.decrypt(env, "ra-enc", "ra-enc")
        self.assertEqual(rc, 0)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), rd("client.csr.der"))


class TestChainFixtures(unittest.TestCase):
    """The multi-tier GetCACert fixtures (gen-fixtures.py --chains-only)."""

    def _issued_by(self, child, parent):
        c, p = cert(child + ".der"), cert(parent + ".der")
        self.assertEqual(c.issuer, p.subject, child)
        p.public_key().verify(c.signature, c.tbs_certificate_bytes, padding.PKCS1v15(),
                              c.signature_hash_algorithm)

    def _ext(self, n, cls):
        try:
            return cert(n + ".der").extensions.get_extension_for_class(cls).value
        except x509.ExtensionNotFound:
            return None

    def test_fixtures_txt(self):
        for k, n in [("ROOT2_SHA256", "root2"), ("ISSUING1_SHA256", "issuing1"),
                     ("ISSUING2_SHA256", "issuing2"), ("POLICY2_SHA256", "policy2"),
                     ("STRANGER_SHA256", "stranger-self")]:
            self.assertEqual(FX[k], hashlib.sha256(rd(n + ".der")).hexdigest().upper(), k)

    def test_keys_match_certs(self):
        for n in ["root2", "policy2", "issuing2", "issuing1", "ra2-enc", "ra2-sign",
                  "ra2-both", "stranger-self"]:
            self.assertEqual(spki(cert(n + ".der")), spki(key(n + ".key.pem")), n)
        self.assertEqual(spki(cert("issued-issuing1.der")), spki(CLIENT_KEY))

    def test_chains(self):
        cas = {"root2": "CN=Test Root CA 2", "policy2": "CN=Test Policy CA 2",
               "issuing2": "CN=Test Issuing CA 2", "issuing1": "CN=Test Issuing CA 1"}
        for n, subject in cas.items():
            self.assertEqual(cert(n + ".der").subject.rfc4514_string(), subject)
            self.assertTrue(self._ext(n, x509.BasicConstraints).ca, n)
            ku = self._ext(n, x509.KeyUsage)
            self.assertTrue(ku.key_cert_sign and ku.crl_sign and not ku.digital_signature, n)
            self.assertEqual(cert(n + ".der").public_key().key_size, 2048)
        for child, parent in [("root2", "root2"), ("policy2", "root2"), ("issuing2", "policy2"),
                              ("issuing1", "root2"), ("ra2-enc", "issuing1"),
                              ("ra2-sign", "issuing1"), ("ra2-both", "issuing1"),
                              ("issued-issuing1", "issuing1"),
                              ("stranger-self", "stranger-self")]:
            self._issued_by(child, parent)
        # names distinct from the first PKI's
        first = {cert(n + ".der").subject for n in ["ca", "root", "intermediate", "ra-sign",
                                                    "ra-enc", "ra-both", "ra-int", "rogue"]}
        for n in list(cas) + ["ra2-enc", "ra2-sign", "ra2-both", "stranger-self"]:
            self.assertNotIn(cert(n + ".der").subject, first, n)
        aia = self._ext("issuing1", x509.AuthorityInformationAccess)
        self.assertEqual([(d.access_method, d.access_location.value) for d in aia],
                         [(x509.oid.AuthorityInformationAccessOID.CA_ISSUERS,
                           "http://127.0.0.1:1/root2.der")])
        for n in ["root2", "policy2", "issuing2"]:
            self.assertIsNone(self._ext(n, x509.AuthorityInformationAccess), n)
        for n, ds, ke in [("ra2-enc", False, True), ("ra2-sign", True, False),
                          ("ra2-both", True, True), ("stranger-self", True, True)]:
            ku = self._ext(n, x509.KeyUsage)
            self.assertEqual((ku.digital_signature, ku.key_encipherment, ku.key_cert_sign),
                             (ds, ke, False), n)
            bc = self._ext(n, x509.BasicConstraints)
            self.assertTrue(bc is None or not bc.ca, n)
        self.assertEqual(cert("stranger-self.der").subject.rfc4514_string(),
                         "CN=Test RA (stranger)")

    def test_getcacert(self):
        self.assertEqual(rd("getcacert-issuing-only.der"), rd("issuing1.der"))
        for f, names in [
                ("getcacert-2tier.p7", ["issuing1", "root2"]),
                ("getcacert-2tier-reversed.p7", ["root2", "issuing1"]),
                ("getcacert-issuing-only.p7", ["issuing1"]),
                ("getcacert-3tier.p7", ["policy2", "root2", "issuing2"]),
                ("getcacert-ndes-2tier.p7", ["ra2-sign", "ra2-enc", "issuing1"]),
                ("getcacert-ndes-2tier-root.p7", ["ra2-enc", "root2", "ra2-sign", "issuing1"]),
                ("getcacert-2tier-ra-both.p7", ["root2", "ra2-both", "issuing1"]),
                ("getcacert-stranger-self.p7", ["ca", "stranger-self"]),
                ("getcacert-ndes-stranger.p7", ["ca", "ra-sign", "ra-enc", "stranger-self"]),
                ("getcacert-2tier-stranger.p7", ["issuing1", "stranger-self", "root2"]),
                ("getcacert-two-roots.p7", ["root2", "issuing1", "ca"])]:
            der = rd(f)
            self.assertEqual(scepmsg.parse_degenerate(der), [rd(n + ".der") for n in names], f)
            sd = cms.ContentInfo.load(der)["content"]
            self.assertEqual(len(sd["signer_infos"]), 0, f)

    def test_certreps_pending(self):
        for f, signer in [("certrep-stranger-signed.der", "stranger-self"),
                          ("certrep-issuing1-signed.der", "issuing1"),
                          ("certrep-ra2-signed.der", "ra2-sign"),
                          ("certrep-root2-signed.der", "root2")]:
            r = parse(f)
            self.assertTrue(r["signature_ok"] and r["digest_ok"], f)
            self.assertEqual(r["signer_cert"], rd(signer + ".der"), f)
            self.assertEqual(r["certs"], [rd(signer + ".der")], f)
            self.assertEqual((r["status"], r["fail_info"], r["message_type"]), ("3", None, "3"))
            self.assertEqual((r["txid"], r["recipient_nonce"]), (TXID, NONCE), f)
            self.assertEqual(len(r["sender_nonce"]), 16)
            self.assertFalse(r["econtent_present"], f)

    def test_success_issuing1(self):
        r = parse("certrep-success-issuing1.der")
        self.assertTrue(r["signature_ok"] and r["digest_ok"])
        self.assertEqual(r["signer_cert"], rd("issuing1.der"))
        self.assertEqual((r["status"], r["txid"], r["recipient_nonce"]), ("0", TXID, NONCE))
        self.assertEqual((r["cipher"], r["digest"]), ("aes128", "sha256"))
        self.assertEqual(r["issued_certs"], [rd("issued-issuing1.der"), rd("issuing1.der")])

    def test_chains_only_leaves_the_rest_alone(self):
        tmp = tempfile.mkdtemp(prefix="scepgen-chains-")
        try:
            keep = [f for f in os.listdir(DATA) if os.path.isfile(os.path.join(DATA, f))
                    and not f.startswith(("gen-", "."))]
            for f in keep:
                shutil.copy(os.path.join(DATA, f), tmp)
            with open(os.path.join(tmp, "fixtures.txt")) as f:
                lines = [l for l in f.read().splitlines() if not l.startswith(
                    ("ROOT2_", "ISSUING1_", "ISSUING2_", "POLICY2_", "STRANGER_"))]
            with open(os.path.join(tmp, "fixtures.txt"), "w") as f:
                f.write("".join(l + "\n" for l in lines))
            subprocess.run([sys.executable, os.path.join(DATA, "gen-fixtures.py"),
                            "--chains-only", tmp], check=True)
            self.assertEqual(sorted(os.listdir(tmp)), sorted(keep))
            with open(os.path.join(tmp, "fixtures.txt")) as f:
                new = f.read().splitlines()
            self.assertEqual(new[:len(lines)], lines)
            self.assertEqual([l.split("=")[0] for l in new[len(lines):]],
                             ["ROOT2_SHA256", "ISSUING1_SHA256", "ISSUING2_SHA256",
                              "POLICY2_SHA256", "STRANGER_SHA256"])
            chain_files = ("root2", "policy2", "issuing", "issued-issuing1", "ra2-",
                           "stranger-self", "getcacert-2tier", "getcacert-3tier",
                           "getcacert-ndes-", "getcacert-issuing-only", "getcacert-stranger-self",
                           "getcacert-two-roots", "certrep-stranger-signed", "certrep-failure-text",
                           "certrep-sha512-signed", "certrep-md5-signed",
                           "certrep-econtent-signed-data", "certrep-success-trailing",
                           "certrep-issuing1-signed", "certrep-ra2-signed",
                           "certrep-root2-signed", "certrep-success-issuing1")
            for f in keep:
                if f == "fixtures.txt":
                    continue
                with open(os.path.join(tmp, f), "rb") as fh:
                    same = fh.read() == rd(f)
                self.assertEqual(same, not f.startswith(chain_files), f)
            # a second run replaces its keys instead of appending them again
            subprocess.run([sys.executable, os.path.join(DATA, "gen-fixtures.py"),
                            "--chains-only", tmp], check=True)
            with open(os.path.join(tmp, "fixtures.txt")) as f:
                self.assertEqual(len(f.read().splitlines()), len(new))
        finally:
            shutil.rmtree(tmp)


class TestEnvelopeFixtures(unittest.TestCase):
    """The bare envelopes (envelope-*.der): the good ones open to the bundle [issued, ca]
    with the double's own decryption, each hostile one is broken in exactly one way."""

    SELF = cert("client-selfsigned.der")

    def open(self, name):
        return scepmsg.decrypt_envelope(rd(name), CLIENT_KEY, self.SELF)

    def test_every_cipher(self):
        for c in ("aes128", "aes192", "aes256", "des3", "des"):
            plain, cname = self.open("envelope-%s.der" % c)
            self.assertEqual(cname, c)
            self.assertEqual(scepmsg.parse_degenerate(plain), [rd("issued.der"), rd("ca.der")])

    def test_two_recipients_ours_second(self):
        ed = cms.ContentInfo.load(rd("envelope-two-recipients.der"))["content"]
        rids = [ri.chosen["rid"].chosen["serial_number"].native for ri in ed["recipient_infos"]]
        self.assertEqual(rids, [cert("ca.der").serial_number, self.SELF.serial_number])
        self.assertEqual(self.open("envelope-two-recipients.der")[1], "aes128")

    def refused(self, name, text):
        with self.assertRaises(scepmsg.ScepError) as e:
            self.open(name)
        self.assertIn(text, str(e.exception))

    def test_hostile(self):
        self.refused("envelope-other-recipient.der", "no recipient info")
        self.refused("envelope-oaep.der", "unsupported key transport rsaes_oaep")
        self.refused("envelope-aes128-ofb.der", "unsupported content cipher aes128_ofb")
        self.refused("envelope-key-too-short.der", "content key has wrong length 16")
        self.refused("envelope-no-content.der", "no encrypted content")
        self.refused("envelope-cut-padding.der", "content decryption failed")
        self.refused("envelope-partial-block.der", "content decryption failed")
        alg = cms.ContentInfo.load(rd("envelope-short-iv.der"))["content"][
            "encrypted_content_info"]["content_encryption_algorithm"]
        self.assertEqual((alg["algorithm"].native, len(alg["parameters"].native)),
                         ("aes128_cbc", 8))
        good = rd("envelope-trailing.der")
        n = len(cms.ContentInfo.load(good[:-2]).dump())
        self.assertEqual((len(good) - n, good[n:]), (2, b"\x00\x00"))
        # and without those two bytes it is a good envelope
        self.assertEqual(scepmsg.decrypt_envelope(good[:-2], CLIENT_KEY, self.SELF)[1], "aes128")


class TestRegeneration(unittest.TestCase):
    def test_same_file_names_and_seeded_values(self):
        tmp = tempfile.mkdtemp(prefix="scepgen-")
        try:
            subprocess.run([sys.executable, os.path.join(DATA, "gen-fixtures.py"), tmp],
                           check=True)
            # Only gen-fixtures.py's outputs: other generators (gen-ndes-pages.py) and
            # their folders share tests/data.
            committed = sorted(f for f in os.listdir(DATA)
                               if not f.startswith(("gen-", "."))
                               and os.path.isfile(os.path.join(DATA, f)))
            self.assertEqual(sorted(os.listdir(tmp)), committed)
            with open(os.path.join(tmp, "fixtures.txt")) as f:
                new = dict(l.split("=", 1) for l in f.read().splitlines())
            self.assertEqual(new["NONCE"], FX["NONCE"])
            with open(os.path.join(tmp, "certrep-garbage.der"), "rb") as f:
                self.assertEqual(f.read(), rd("certrep-garbage.der"))
        finally:
            shutil.rmtree(tmp)


if __name__ == "__main__":
    unittest.main()
