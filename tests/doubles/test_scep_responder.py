"""Tests of tests/doubles/scep_responder.py, the SCEP server test double.

    /usr/bin/python3 -m unittest -v tests/doubles/test_scep_responder.py
    (or: cd tests/doubles && /usr/bin/python3 -m unittest -v test_scep_responder)

Each test talks HTTP to a responder subprocess on 127.0.0.1 (free port, stopped
by PID on cleanup).  Requests are built with scepmsg; replies are checked with
scepmsg.parse_pkimessage.  When the Debian `scepclient` is installed, one
enrollment is cross-checked with that independent client.
"""

import base64
import datetime
import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import keypool  # noqa: E402
import scepmsg  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: E402
from cryptography.x509.oid import AttributeOID, ExtendedKeyUsageOID, NameOID  # noqa: E402

RESPONDER = os.path.join(HERE, "scep_responder.py")
CHALLENGE = "Chall-3nge-42"
HTTP_TIMEOUT = 20

STATE = None  # shared responder --dir: the CA is created once for all tests


def setUpModule():
    global STATE
    STATE = tempfile.mkdtemp(prefix="scep-responder-test-")


def tearDownModule():
    shutil.rmtree(STATE, ignore_errors=True)


# ---------------------------------------------------------------------------
# responder process


class ResponderProcess(harness.ServerProcess):
    """scep_responder.py as a subprocess (harness.ServerProcess)."""

    def __init__(self, mode="normal", *extra, state_dir=None, challenge=CHALLENGE):
        self.dir = state_dir or STATE
        args = ["--dir", self.dir, "--mode", mode] + list(extra)
        if challenge is not None:
            args += ["--challenge", challenge]
        super().__init__(RESPONDER, *args, start_seconds=60)  # a first start makes three RSA keys

    # -- HTTP

    def request(self, method, target, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
        try:
            conn.request(method, target, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type"), resp.read()
        finally:
            conn.close()

    def get(self, query, path="/scep"):
        return self.request("GET", path + "?" + query)

    def post_pki(self, der):
        return self.request("POST", "/scep?operation=PKIOperation", der,
                            {"Content-Type": "application/x-pki-message"})

    def get_pki(self, der):
        msg = urllib.parse.quote(base64.b64encode(der).decode(), safe="")
        return self.get("operation=PKIOperation&message=" + msg)

    def ca_certs(self):
        status, ctype, body = self.get("operation=GetCACert")
        assert status == 200, status
        if ctype == "application/x-x509-ca-cert":
            return [body]
        assert ctype == "application/x-x509-ca-ra-cert", ctype
        return scepmsg.parse_degenerate(body)


def start(testcase, mode="normal", *extra, **kw):
    r = ResponderProcess(mode, *extra, **kw)
    testcase.addCleanup(r.cleanup)
    return r


# ---------------------------------------------------------------------------
# client side


def spki(obj):
    return obj.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def key_usage(cert):
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def choose_ra(cert_ders):
    """(encryption cert, signing cert) by the rule in shared notes scep.md."""
    certs = [x509.load_der_x509_certificate(d) for d in cert_ders]
    leaves = [c for c in certs
              if not any(o is not c and o.issuer == c.subject for o in certs)]
    if not leaves:
        return certs[0], certs[0]
    enc = [c for c in leaves if key_usage(c) and key_usage(c).key_encipherment]
    sig = [c for c in leaves if key_usage(c) and key_usage(c).digital_signature]
    return (enc or leaves)[0], (sig or leaves)[0]


def is_ca(cert):
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def issuing_ca(cert_ders):
    """The CA certificate of a GetCACert bundle that issued no other CA in it (the one
    that issues end-entity certificates): the CA itself, or a two-tier issuing CA."""
    certs = [x509.load_der_x509_certificate(d) for d in cert_ders]
    cas = [c for c in certs if is_ca(c)]
    lowest = [c for c in cas if not any(o is not c and o.issuer == c.subject for o in cas)]
    return scepmsg.cert_der(lowest[0])


SUBJECT = x509.Name([
    x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Org"),
    x509.NameAttribute(NameOID.COMMON_NAME, "device-17.example.com"),
])
SAN = x509.SubjectAlternativeName([x509.DNSName("device-17.example.com"),
                                   x509.DNSName("alt.example.com")])


def make_csr(key, subject=SUBJECT, challenge=CHALLENGE, san=SAN):
    b = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if san is not None:
        b = b.add_extension(san, critical=False)
    if challenge is not None:
        b = b.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode(),
                            _tag=x509.name._ASN1Type.PrintableString)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def self_signed(key, subject=SUBJECT):
    """The request signer of a first enrollment (RFC 8894 section 2.3)."""
    now = datetime.datetime.utcnow()
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False,
                                         False, False), critical=True)
            .sign(key, hashes.SHA256()))


RSA_KEY = keypool.rsa_key()
SIGNER = self_signed(RSA_KEY)   # also the transient RSA signer for EC enrollments
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def new_txid():
    return os.urandom(16).hex().upper()


class Exchange:
    """One request as sent, so its reply can be checked against it."""

    def __init__(self, responder, csr_der=None, signer=SIGNER, signer_key=RSA_KEY,
                 message=None, recipient=None, **kw):
        self.r = responder
        self.ca_certs = responder.ca_certs()
        self.ca = issuing_ca(self.ca_certs)
        self.ra_enc, self.ra_sign = choose_ra(self.ca_certs)
        self.signer, self.signer_key = signer, signer_key
        self.txid = kw.pop("txid", None) or new_txid()
        self.nonce = os.urandom(16)
        self.csr_der = csr_der
        if message is None:
            message = scepmsg.pkcsreq(signer, signer_key, recipient or self.ra_enc, csr_der,
                                      self.txid, sender_nonce=self.nonce, **kw)
        self.message = message

    def poll(self):
        """A CertPoll for this transaction (same txid, fresh nonce)."""
        self.nonce = os.urandom(16)
        csr = x509.load_der_x509_csr(self.csr_der)
        ca = x509.load_der_x509_certificate(self.ca)
        self.message = scepmsg.certpoll(self.signer, self.signer_key, self.ra_enc,
                                        ca.subject.public_bytes(), csr.subject.public_bytes(),
                                        self.txid, sender_nonce=self.nonce)
        return self

    def send(self, method="POST"):
        if method == "POST":
            self.status, self.ctype, self.body = self.r.post_pki(self.message)
        else:
            self.status, self.ctype, self.body = self.r.get_pki(self.message)
        return self

    def parse(self, verify=True):
        return scepmsg.parse_pkimessage(self.body, ra_key=self.signer_key, ra_cert=self.signer,
                                        extra_certs=self.ca_certs, verify=verify)


class Checks(unittest.TestCase):
    """Assertions shared by the test classes."""

    def assert_certrep(self, ex, status, fail_info=None, verify=True):
        """The reply is a CertRep with this status, answering ex's request."""
        self.assertEqual(ex.status, 200, ex.body[:200])
        self.assertEqual(ex.ctype, "application/x-pki-message")
        res = ex.parse(verify=verify)
        self.assertEqual(res["message_type"], scepmsg.MSG_CERTREP)
        self.assertEqual(res["status"], status)
        self.assertEqual(res["fail_info"], fail_info)
        self.assertEqual(len(res["sender_nonce"]), 16)
        self.assertNotEqual(res["sender_nonce"], ex.nonce)
        if status != scepmsg.STATUS_SUCCESS:
            self.assertIsNone(res["envelope"])
        return res

    def assert_answers(self, ex, res):
        self.assertEqual(res["recipient_nonce"], ex.nonce)
        self.assertEqual(res["txid"], ex.txid)

    def assert_success(self, ex, verify=True, key_matches=True):
        """SUCCESS; returns (parse result, issued certificate)."""
        res = self.assert_certrep(ex, scepmsg.STATUS_SUCCESS, verify=verify)
        self.assertEqual(res["cipher"], "aes128")
        self.assertEqual(res["digest"], "sha256")
        issued = [x509.load_der_x509_certificate(d) for d in res["issued_certs"]]
        self.assertEqual(len(issued), 2)
        self.assertEqual(scepmsg.cert_der(issued[1]), ex.ca)
        cert, ca = issued[0], issued[1]
        ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                               cert.signature_hash_algorithm)
        csr = x509.load_der_x509_csr(ex.csr_der)
        if key_matches:
            self.assertEqual(spki(cert), spki(csr))
        return res, cert

    def assert_signed_by(self, res, cert_der):
        self.assertTrue(res["signature_ok"])
        self.assertEqual(res["signer_cert"], cert_der)


# ---------------------------------------------------------------------------
# normal mode (one responder for the class)


class TestNormalMode(Checks):
    @classmethod
    def setUpClass(cls):
        cls.r = ResponderProcess("normal")
        cls.addClassCleanup(cls.r.cleanup)

    def test_caps(self):
        status, ctype, body = self.r.get("operation=GetCACaps")
        self.assertEqual(status, 200)
        self.assertTrue(ctype.startswith("text/plain"))
        self.assertEqual(body, b"POSTPKIOperation\nSHA-256\nAES\nSCEPStandard\nRenewal")

    def test_paths(self):
        for path in ("/scep", "/cgi-bin/pkiclient.exe", "/certsrv/mscep/mscep.dll",
                     "/CertSrv/mscep/mscep.dll"):
            self.assertEqual(self.r.get("operation=GetCACaps", path)[0], 200, path)
        self.assertEqual(self.r.get("operation=GetCACaps", "/other")[0], 404)
        self.assertEqual(self.r.get("operation=Nonsense")[0], 400)

    def test_getcacert_ndes_shape(self):
        status, ctype, body = self.r.get("operation=GetCACert")
        self.assertEqual((status, ctype), (200, "application/x-x509-ca-ra-cert"))
        ders = scepmsg.parse_degenerate(body)
        self.assertEqual(len(ders), 3)
        ca, sign, enc = [x509.load_der_x509_certificate(d) for d in ders]
        with open(os.path.join(STATE, "ca.pem"), "rb") as f:
            self.assertEqual(scepmsg.load_cert(f.read()), ca)
        with open(os.path.join(STATE, "ca.sha256")) as f:
            self.assertEqual(f.read().strip(), hashlib.sha256(ders[0]).hexdigest())
        self.assertEqual(ca.issuer, ca.subject)
        self.assertTrue(ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        self.assertIsInstance(ca.public_key(), rsa.RSAPublicKey)
        self.assertEqual(ca.public_key().key_size, 2048)
        for ra in (sign, enc):
            self.assertEqual(ra.issuer, ca.subject)
            ca.public_key().verify(ra.signature, ra.tbs_certificate_bytes, padding.PKCS1v15(),
                                   ra.signature_hash_algorithm)
        self.assertTrue(key_usage(sign).digital_signature)
        self.assertFalse(key_usage(sign).key_encipherment)
        self.assertTrue(key_usage(enc).key_encipherment)
        self.assertFalse(key_usage(enc).digital_signature)

    def check_issued(self, ex, cert, rsa_key):
        csr = x509.load_der_x509_csr(ex.csr_der)
        self.assertEqual(cert.subject.public_bytes(), csr.subject.public_bytes())  # RDN order
        self.assertEqual(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value,
                         SAN)
        ku = key_usage(cert)
        self.assertTrue(ku.digital_signature)
        self.assertEqual(ku.key_encipherment, rsa_key)
        self.assertEqual(list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value),
                         [ExtendedKeyUsageOID.CLIENT_AUTH])
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        self.assertEqual(cert.signature_hash_algorithm.name, "sha256")
        now = datetime.datetime.utcnow()
        self.assertLess(cert.not_valid_before, now)
        self.assertGreater(cert.not_valid_after, now + datetime.timedelta(days=364))
        with open(os.path.join(STATE, "issued", "%x.pem" % cert.serial_number), "rb") as f:
            self.assertEqual(scepmsg.load_cert(f.read()), cert)

    def test_enroll_rsa_post(self):
        ex = Exchange(self.r, make_csr(RSA_KEY)).send()
        res, cert = self.assert_success(ex)
        self.assert_answers(ex, res)
        self.assert_signed_by(res, scepmsg.cert_der(ex.ra_sign))
        self.check_issued(ex, cert, rsa_key=True)

    def test_enroll_ec_post(self):
        # the EC key is in the CSR only; the pkiMessage is signed with a transient RSA key
        ex = Exchange(self.r, make_csr(EC_KEY)).send()
        res, cert = self.assert_success(ex)
        self.assert_answers(ex, res)
        self.assertIsInstance(cert.public_key(), ec.EllipticCurvePublicKey)
        self.check_issued(ex, cert, rsa_key=False)

    def test_enroll_get(self):
        ex = Exchange(self.r, make_csr(EC_KEY)).send("GET")
        res, cert = self.assert_success(ex)
        self.assert_answers(ex, res)

    def test_enroll_get_unescaped_base64(self):
        # some clients put raw base64 ('+', '/', '=') into the query
        while True:
            ex = Exchange(self.r, make_csr(RSA_KEY))
            b64 = base64.b64encode(ex.message).decode()
            if "+" in b64:
                break
        ex.status, ex.ctype, ex.body = self.r.get("operation=PKIOperation&message=" + b64)
        res, _ = self.assert_success(ex)
        self.assert_answers(ex, res)

    def test_keep_alive(self):
        ex = Exchange(self.r, make_csr(RSA_KEY))
        conn = http.client.HTTPConnection("127.0.0.1", self.r.port, timeout=HTTP_TIMEOUT)
        self.addCleanup(conn.close)
        for _ in range(2):
            for target in ("/scep?operation=GetCACaps", "/scep?operation=GetCACert"):
                conn.request("GET", target)
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200)
                resp.read()
            conn.request("POST", "/scep?operation=PKIOperation", ex.message,
                         {"Content-Type": "application/x-pki-message"})
            resp = conn.getresponse()
            ex.status, ex.ctype, ex.body = resp.status, resp.getheader("Content-Type"), resp.read()
            self.assert_success(ex)

    def test_enroll_des3_sha1_request(self):
        ex = Exchange(self.r, make_csr(RSA_KEY), cipher="des3", digest="sha1").send()
        res, _ = self.assert_success(ex)  # the reply stays AES-128 / SHA-256
        self.assert_answers(ex, res)

    def test_wrong_challenge(self):
        ex = Exchange(self.r, make_csr(RSA_KEY, challenge="not-the-secret")).send()
        res = self.assert_certrep(ex, scepmsg.STATUS_FAILURE, scepmsg.FAIL_BAD_REQUEST)
        self.assert_answers(ex, res)
        self.assert_signed_by(res, scepmsg.cert_der(ex.ra_sign))
        self.assertNotIn(CHALLENGE, self.r.log())
        self.assertNotIn("not-the-secret", self.r.log())

    def test_missing_challenge(self):
        ex = Exchange(self.r, make_csr(RSA_KEY, challenge=None)).send()
        res = self.assert_certrep(ex, scepmsg.STATUS_FAILURE, scepmsg.FAIL_BAD_REQUEST)
        self.assert_answers(ex, res)

    def test_renewal_signed_by_issued_cert(self):
        first = Exchange(self.r, make_csr(RSA_KEY)).send()
        _, old_cert = self.assert_success(first)
        new_key = keypool.rsa_key()
        for mtype in (scepmsg.MSG_PKCSREQ, scepmsg.MSG_RENEWALREQ):
            ex = Exchange(self.r, make_csr(new_key, challenge=None), signer=old_cert,
                          signer_key=RSA_KEY, message_type=mtype).send()
            res, cert = self.assert_success(ex)
            self.assert_answers(ex, res)
            self.assertEqual(spki(cert), spki(new_key))

    def test_bad_csr_signature(self):
        csr = bytearray(make_csr(RSA_KEY))
        csr[-1] ^= 1  # last byte of the signature BIT STRING
        ex = Exchange(self.r, bytes(csr)).send()
        res = self.assert_certrep(ex, scepmsg.STATUS_FAILURE, scepmsg.FAIL_BAD_MESSAGE_CHECK)
        self.assert_answers(ex, res)

    def test_encrypted_to_wrong_recipient(self):
        probe = Exchange(self.r, make_csr(RSA_KEY))
        ex = Exchange(self.r, make_csr(RSA_KEY), recipient=probe.ra_sign).send()
        res = self.assert_certrep(ex, scepmsg.STATUS_FAILURE, scepmsg.FAIL_BAD_MESSAGE_CHECK)
        self.assert_answers(ex, res)
        self.assert_signed_by(res, scepmsg.cert_der(ex.ra_sign))

    def test_bad_request_signature(self):
        ex = Exchange(self.r, make_csr(RSA_KEY),
                      tamper={"signature": lambda s: bytes([s[0] ^ 1]) + s[1:]}).send()
        res = self.assert_certrep(ex, scepmsg.STATUS_FAILURE, scepmsg.FAIL_BAD_MESSAGE_CHECK)
        self.assert_answers(ex, res)

    def test_unparseable_is_http_500(self):
        status, ctype, body = self.r.post_pki(b"\x30\x03\x02\x01")
        self.assertEqual(status, 500)
        self.assertTrue(ctype.startswith("text/plain"))

    def test_certpoll_unknown_transaction(self):
        ex = Exchange(self.r, make_csr(RSA_KEY)).poll().send()
        res = self.assert_certrep(ex, scepmsg.STATUS_FAILURE, scepmsg.FAIL_BAD_CERT_ID)
        self.assert_answers(ex, res)

    def test_certpoll_after_success_returns_the_cert(self):
        ex = Exchange(self.r, make_csr(RSA_KEY)).send()
        _, cert = self.assert_success(ex)
        res, again = self.assert_success(ex.poll().send())
        self.assert_answers(ex, res)
        self.assertEqual(again, cert)

    def test_log_lines(self):
        Exchange(self.r, make_csr(RSA_KEY)).send()
        log = self.r.log()
        self.assertIn("POST PKIOperation -> 200 PKCSReq: SUCCESS serial=", log)
        self.assertIn("GET GetCACert -> 200", log)
        self.assertNotIn(CHALLENGE, log)


# ---------------------------------------------------------------------------
# the other modes (one responder per test)


class TestModes(Checks):
    def test_nocaps(self):
        r = start(self, "nocaps")
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            r.get("operation=GetCACaps")
        self.assertEqual(len(r.ca_certs()), 3)
        self.assert_success(Exchange(r, make_csr(RSA_KEY)).send())

    def test_getonly(self):
        r = start(self, "getonly", "--max-url", "2048")
        self.assertEqual(r.get("operation=GetCACaps")[2], b"SHA-256\nAES\nDES3")
        ex = Exchange(r, make_csr(RSA_KEY))
        self.assertEqual(ex.send("POST").status, 405)
        self.assertGreater(len(base64.b64encode(ex.message)), 2048)
        self.assertEqual(ex.send("GET").status, 414)   # a real PKCSReq exceeds IIS's limit
        self.assertIn("414", r.log())

    def test_getonly_short_get_works(self):
        r = start(self, "getonly")
        ex = Exchange(r, make_csr(EC_KEY)).send("GET")
        res, _ = self.assert_success(ex)
        self.assert_answers(ex, res)

    def test_busy_then_serves(self):
        r = start(self, "busy")
        ex = Exchange(r, make_csr(RSA_KEY))
        for _ in range(2):
            conn = http.client.HTTPConnection("127.0.0.1", r.port, timeout=HTTP_TIMEOUT)
            try:
                conn.request("POST", "/scep?operation=PKIOperation", ex.message,
                             {"Content-Type": "application/x-pki-message"})
                resp = conn.getresponse()
                resp.read()
                self.assertEqual((resp.status, resp.getheader("Retry-After")), (503, "4"))
            finally:
                conn.close()
        self.assert_success(ex.send())

    def test_single_ca(self):
        r = start(self, "normal", "--single-ca")
        status, ctype, body = r.get("operation=GetCACert")
        self.assertEqual((status, ctype), (200, "application/x-x509-ca-cert"))
        with open(os.path.join(STATE, "ca.pem"), "rb") as f:
            self.assertEqual(scepmsg.load_cert(body), scepmsg.load_cert(f.read()))
        for key in (RSA_KEY, EC_KEY):
            ex = Exchange(r, make_csr(key)).send()
            res, _ = self.assert_success(ex)
            self.assert_answers(ex, res)
            self.assert_signed_by(res, body)

    def test_pending_then_poll_success(self):
        r = start(self, "pending")
        ex = Exchange(r, make_csr(EC_KEY)).send()
        res = self.assert_certrep(ex, scepmsg.STATUS_PENDING)
        self.assert_answers(ex, res)
        ex.send()  # the same PKCSReq again: still pending
        self.assert_certrep(ex, scepmsg.STATUS_PENDING)
        res, cert = self.assert_success(ex.poll().send())
        self.assert_answers(ex, res)
        res, again = self.assert_success(ex.poll().send())
        self.assertEqual(again, cert)

    def test_pending_poll_with_other_subject_is_refused(self):
        r = start(self, "pending")
        ex = Exchange(r, make_csr(RSA_KEY)).send()
        self.assert_certrep(ex, scepmsg.STATUS_PENDING)
        other = make_csr(RSA_KEY, subject=x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, "someone-else")]))
        ex.csr_der = other
        res = self.assert_certrep(ex.poll().send(), scepmsg.STATUS_FAILURE,
                                  scepmsg.FAIL_BAD_CERT_ID)
        self.assert_answers(ex, res)

    def test_pending_fail(self):
        r = start(self, "pending-fail")
        ex = Exchange(r, make_csr(RSA_KEY)).send()
        self.assert_certrep(ex, scepmsg.STATUS_PENDING)
        res = self.assert_certrep(ex.poll().send(), scepmsg.STATUS_FAILURE,
                                  scepmsg.FAIL_BAD_REQUEST)
        self.assert_answers(ex, res)

    def test_reject(self):
        r = start(self, "reject")
        issued_before = set(os.listdir(os.path.join(STATE, "issued")))
        ex = Exchange(r, make_csr(RSA_KEY)).send()
        res = self.assert_certrep(ex, scepmsg.STATUS_FAILURE, scepmsg.FAIL_BAD_REQUEST)
        self.assert_answers(ex, res)
        self.assertEqual(set(os.listdir(os.path.join(STATE, "issued"))), issued_before)
        res = self.assert_certrep(ex.poll().send(), scepmsg.STATUS_FAILURE,
                                  scepmsg.FAIL_BAD_REQUEST)
        self.assert_answers(ex, res)


class TestHostileModes(Checks):
    """Hostile SUCCESS replies, each broken in exactly the claimed way, and hostile
    transports (a class of its own: with TestModes in one, it was the longest of
    make doubles, 24 s, where the others take at most 10)."""

    def hostile(self, mode, key=RSA_KEY):
        r = start(self, mode)
        return r, Exchange(r, make_csr(key)).send()

    def test_wrong_nonce(self):
        _, ex = self.hostile("wrong-nonce")
        res, _ = self.assert_success(ex)
        self.assertEqual(res["txid"], ex.txid)
        self.assertEqual(len(res["recipient_nonce"]), 16)
        self.assertNotEqual(res["recipient_nonce"], ex.nonce)

    def test_no_nonce(self):
        _, ex = self.hostile("no-nonce")
        res, _ = self.assert_success(ex)
        self.assertEqual(res["txid"], ex.txid)
        self.assertIsNone(res["recipient_nonce"])
        self.assertNotIn(scepmsg.OID_RECIPIENT_NONCE, res["raw_attrs"])

    def test_txid_prefix(self):
        _, ex = self.hostile("txid-prefix")
        res, _ = self.assert_success(ex)
        self.assertEqual(res["recipient_nonce"], ex.nonce)
        self.assertEqual(res["txid"], ex.txid[:-4])

    def test_txid_longer(self):
        _, ex = self.hostile("txid-longer")
        res, _ = self.assert_success(ex)
        self.assertEqual(res["recipient_nonce"], ex.nonce)
        self.assertTrue(res["txid"].startswith(ex.txid))
        self.assertEqual(len(res["txid"]), len(ex.txid) + 4)

    def test_bad_signature(self):
        _, ex = self.hostile("bad-signature")
        with self.assertRaisesRegex(scepmsg.ScepError, "bad signature"):
            ex.parse()
        res, _ = self.assert_success(ex, verify=False)
        self.assertFalse(res["signature_ok"])
        self.assertTrue(res["digest_ok"])
        self.assertEqual(res["signer_cert"], scepmsg.cert_der(ex.ra_sign))
        self.assert_answers(ex, res)

    def test_bad_digest(self):
        _, ex = self.hostile("bad-digest")
        with self.assertRaisesRegex(scepmsg.ScepError, "messageDigest"):
            ex.parse()
        res = scepmsg.parse_pkimessage(ex.body, verify=False)   # no decryption: content altered
        self.assertTrue(res["signature_ok"])
        self.assertFalse(res["digest_ok"])
        self.assertEqual(res["status"], scepmsg.STATUS_SUCCESS)
        self.assert_answers(ex, res)

    def test_rogue_signer(self):
        _, ex = self.hostile("rogue-signer")
        res, _ = self.assert_success(ex)   # valid signature by an included certificate ...
        self.assert_answers(ex, res)
        self.assertNotIn(res["signer_cert"], ex.ca_certs)   # ... that GetCACert never named
        rogue = x509.load_der_x509_certificate(res["signer_cert"])
        self.assertEqual(rogue.issuer, rogue.subject)

    def test_wrong_key(self):
        for key in (RSA_KEY, EC_KEY):
            _, ex = self.hostile("wrong-key", key)
            res, cert = self.assert_success(ex, key_matches=False)
            self.assert_answers(ex, res)
            self.assertNotEqual(spki(cert), spki(key))
            kind = ec.EllipticCurvePublicKey if key is EC_KEY else rsa.RSAPublicKey
            self.assertIsInstance(cert.public_key(), kind)

    def test_truncated(self):
        _, ex = self.hostile("truncated")
        self.assertEqual(ex.status, 200)
        with self.assertRaises(scepmsg.ScepError):
            ex.parse()
        self.assertEqual(ex.body[:2], b"\x30\x82")
        full = 4 + int.from_bytes(ex.body[2:4], "big")
        self.assertEqual(len(ex.body), full * 6 // 10)

    def test_garbage(self):
        _, ex = self.hostile("garbage")
        self.assertEqual((ex.status, ex.ctype), (200, "application/x-pki-message"))
        self.assertGreater(len(ex.body), 0)
        with self.assertRaises(scepmsg.ScepError):
            ex.parse()

    def test_http500(self):
        _, ex = self.hostile("http500")
        self.assertEqual(ex.status, 500)
        self.assertTrue(ex.ctype.startswith("text/plain"))
        self.assertTrue(ex.body)

    def test_des_reply(self):
        _, ex = self.hostile("des-reply")
        res = self.assert_certrep(ex, scepmsg.STATUS_SUCCESS)
        self.assert_answers(ex, res)
        self.assertEqual(res["cipher"], "des")
        self.assertEqual(res["digest"], "sha1")
        self.assert_signed_by(res, ex.ca_certs[0])   # the CA, not the RA signing cert
        cert = x509.load_der_x509_certificate(res["issued_certs"][0])
        self.assertEqual(spki(cert), spki(RSA_KEY))

    def test_huge(self):
        r = start(self, "huge")
        ex = Exchange(r, make_csr(RSA_KEY))
        conn = http.client.HTTPConnection("127.0.0.1", r.port, timeout=HTTP_TIMEOUT)
        self.addCleanup(conn.close)
        conn.request("POST", "/scep?operation=PKIOperation", ex.message,
                     {"Content-Type": "application/x-pki-message"})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        self.assertEqual(int(resp.getheader("Content-Length")), 50 * 1024 * 1024)
        first = resp.read(6)
        self.assertEqual(first[:2], b"\x30\x84")
        total = len(first)
        while True:
            chunk = resp.read(1 << 20)
            if not chunk:
                break
            total += len(chunk)
        self.assertEqual(total, 50 * 1024 * 1024)
        # a client that gives up early: the handler stops
        conn2 = http.client.HTTPConnection("127.0.0.1", r.port, timeout=HTTP_TIMEOUT)
        conn2.request("POST", "/scep?operation=PKIOperation", ex.message)
        resp2 = conn2.getresponse()
        resp2.read(1 << 20)
        conn2.sock.shutdown(socket.SHUT_RDWR)
        conn2.close()
        self.wait_for_log(r, "huge: client went away after")

    def test_slow(self):
        r = start(self, "slow")
        ex = Exchange(r, make_csr(RSA_KEY))
        s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
        s.sendall(b"POST /scep?operation=PKIOperation HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/x-pki-message\r\nContent-Length: %d\r\n\r\n"
                  % len(ex.message) + ex.message)
        got = b""
        deadline = time.monotonic() + 3.5
        s.settimeout(0.2)
        while time.monotonic() < deadline:   # a client with a 3.5 s timeout
            try:
                data = s.recv(65536)
                if not data:
                    break
                got += data
            except socket.timeout:
                pass
        s.close()
        head, _, body = got.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0]
                     .split(b":")[1])
        self.assertGreater(length, 1000)
        self.assertTrue(1 <= len(body) <= 5, len(body))   # one byte per second
        self.wait_for_log(r, "slow: client went away after")
        self.assertEqual(r.get("operation=GetCACaps")[0], 200)   # still serving

    def wait_for_log(self, r, text, timeout=10):
        deadline = time.monotonic() + timeout
        while text not in r.log():
            if time.monotonic() > deadline:
                self.fail("%r not logged:\n%s" % (text, r.log()))
            time.sleep(0.1)


# ---------------------------------------------------------------------------
# CA rollover (GetNextCACert, RFC 8894 section 4.7)


class TestRollover(Checks):
    """Each test has its own directory: rolled mode swaps the CA it serves."""

    def start_in(self, mode, d=None):
        if d is None:
            d = tempfile.mkdtemp(prefix="scep-responder-rollover-")
            self.addCleanup(shutil.rmtree, d, True)
        return start(self, mode, state_dir=d), d

    def next_ca(self, r):
        """(parse result of the outer SignedData, next CA certificates) of GetNextCACert."""
        status, ctype, body = r.get("operation=GetNextCACert")
        self.assertEqual((status, ctype), (200, "application/x-x509-next-ca-cert"))
        res = scepmsg.parse_pkimessage(body, extra_certs=r.ca_certs(), verify=False)
        self.assertTrue(res["digest_ok"])
        self.assertEqual(res["content_type"], "1.2.840.113549.1.7.1")
        return body, res, [x509.load_der_x509_certificate(c)
                           for c in scepmsg.parse_degenerate(res["econtent"])]

    def openssl_verify(self, body, ca_pem_path):
        """OpenSSL's CLI as the independent judge of the signature and the signer's chain."""
        work = tempfile.mkdtemp(prefix="scep-nextca-")
        self.addCleanup(shutil.rmtree, work, True)
        with open(os.path.join(work, "next.der"), "wb") as f:
            f.write(body)
        return subprocess.run(["openssl", "cms", "-verify", "-inform", "DER", "-in",
                               os.path.join(work, "next.der"), "-CAfile", ca_pem_path,
                               "-purpose", "any", "-binary", "-out",
                               os.path.join(work, "inner.der")],
                              capture_output=True, text=True)

    def test_normal_has_no_next_ca(self):
        r, _ = self.start_in("normal")
        self.assertNotIn(b"GetNextCACert", r.get("operation=GetCACaps")[2])
        self.assertEqual(r.get("operation=GetNextCACert")[0], 404)

    def test_rollover_signed_by_current_ra(self):
        r, d = self.start_in("rollover")
        self.assertTrue(r.get("operation=GetCACaps")[2].endswith(b"\nGetNextCACert"))
        ca_certs = r.ca_certs()
        current = x509.load_der_x509_certificate(ca_certs[0])
        body, res, nxt = self.next_ca(r)
        _, ra_sign = choose_ra(ca_certs)
        self.assertTrue(res["signature_ok"])
        self.assertEqual(res["signer_cert"], scepmsg.cert_der(ra_sign))
        self.assertEqual(len(nxt), 3)
        self.assertEqual(nxt[0], scepmsg.load_cert(os.path.join(d, "next-ca.pem")))
        self.assertEqual(nxt[0].subject, current.subject)   # a renewed CA keeps its name
        self.assertNotEqual(spki(nxt[0]), spki(current))
        self.assertTrue(nxt[0].extensions.get_extension_for_class(x509.BasicConstraints)
                        .value.ca)
        for ra in nxt[1:]:
            nxt[0].public_key().verify(ra.signature, ra.tbs_certificate_bytes,
                                       padding.PKCS1v15(), ra.signature_hash_algorithm)
        p = self.openssl_verify(body, os.path.join(d, "ca.pem"))
        self.assertEqual(p.returncode, 0, p.stderr)
        # GetCACert and issuing stay with the current CA
        self.assert_success(Exchange(r, make_csr(RSA_KEY)).send())
        self.assertIn("GetNextCACert -> 200 next CA", r.log())

    def test_rollover_by_ca(self):
        r, d = self.start_in("rollover-by-ca")
        body, res, _ = self.next_ca(r)
        self.assertTrue(res["signature_ok"])
        self.assertEqual(res["signer_cert"], r.ca_certs()[0])
        self.assertEqual(self.openssl_verify(body, os.path.join(d, "ca.pem")).returncode, 0)

    def test_rollover_stranger(self):
        r, d = self.start_in("rollover-stranger")
        body, res, nxt = self.next_ca(r)
        self.assertTrue(res["signature_ok"])                 # valid, by a certificate ...
        self.assertNotIn(res["signer_cert"], r.ca_certs())   # ... GetCACert never named
        stranger = x509.load_der_x509_certificate(res["signer_cert"])
        self.assertEqual(stranger.issuer, stranger.subject)
        self.assertEqual(nxt[0], scepmsg.load_cert(os.path.join(d, "next-ca.pem")))
        self.assertNotEqual(self.openssl_verify(body, os.path.join(d, "ca.pem")).returncode, 0)

    def test_rollover_forged(self):
        r, d = self.start_in("rollover-forged")
        body, res, _ = self.next_ca(r)
        self.assertFalse(res["signature_ok"])
        self.assertNotEqual(self.openssl_verify(body, os.path.join(d, "ca.pem")).returncode, 0)

    def test_rolled_serves_and_issues_with_the_next_ca(self):
        r, d = self.start_in("rollover")
        first = Exchange(r, make_csr(RSA_KEY)).send()
        _, old_cert = self.assert_success(first)
        old_ca = r.ca_certs()
        _, _, nxt = self.next_ca(r)
        r.stop()
        r2, _ = self.start_in("rolled", d)
        new_ca = r2.ca_certs()
        self.assertEqual(len(new_ca), 3)
        self.assertEqual(new_ca[0], scepmsg.cert_der(nxt[0]))
        self.assertNotEqual(new_ca[0], old_ca[0])
        self.assertIn(b"GetNextCACert", r2.get("operation=GetCACaps")[2])
        self.assertEqual(r2.get("operation=GetNextCACert")[0], 404)
        # issued (and signed, and encrypted to) under the next CA: assert_success
        # checks the issued certificate against GetCACert's CA
        ex = Exchange(r2, make_csr(EC_KEY)).send()
        res, _ = self.assert_success(ex)
        self.assert_signed_by(res, scepmsg.cert_der(choose_ra(new_ca)[1]))
        # a renewal signed with the certificate of the old CA needs no challenge
        new_key = keypool.rsa_key()
        ex = Exchange(r2, make_csr(new_key, challenge=None), signer=old_cert,
                      signer_key=RSA_KEY, message_type=scepmsg.MSG_RENEWALREQ).send()
        _, cert = self.assert_success(ex)
        self.assertEqual(cert.issuer, nxt[0].subject)
        nxt[0].public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                                   padding.PKCS1v15(), cert.signature_hash_algorithm)


# ---------------------------------------------------------------------------
# two-tier PKI (root -> issuing CA -> RA pair, NDES on two-tier AD CS)


def ca_issuers(cert):
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    return [d.access_location.value for d in aia
            if d.access_method == x509.oid.AuthorityInformationAccessOID.CA_ISSUERS]


def signed_by(child, parent):
    """True when parent's key signed child (names not compared)."""
    try:
        parent.public_key().verify(child.signature, child.tbs_certificate_bytes,
                                   padding.PKCS1v15(), child.signature_hash_algorithm)
        return True
    except Exception:
        return False


def free_port(avoid=()):
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port


class TestTwoTier(Checks):
    """One directory for the class (keys made once); each test starts its own
    responder, so issuing.pem always names the port of the running one."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="scep-responder-2tier-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)

    def start2(self, *extra, mode="normal", state_dir=None):
        return start(self, mode, "--two-tier", *extra, state_dir=state_dir or self.dir)

    def file_cert(self, stem, d=None):
        return scepmsg.load_cert(os.path.join(d or self.dir, stem + ".pem"))

    def check_pki(self, r, d=None):
        """(root, issuing) from DIR, checked against each other and the port."""
        root, issuing = self.file_cert("root", d), self.file_cert("issuing", d)
        self.assertEqual(root.subject.rfc4514_string(), "CN=Responder Root CA,O=p11enroll tests")
        self.assertEqual(root.issuer, root.subject)
        self.assertTrue(signed_by(root, root))
        self.assertEqual(issuing.subject.rfc4514_string(),
                         "CN=Responder Issuing CA,O=p11enroll tests")
        self.assertEqual(issuing.issuer, root.subject)
        self.assertTrue(signed_by(issuing, root))
        for c in (root, issuing):
            self.assertTrue(is_ca(c))
            ku = key_usage(c)
            self.assertTrue(ku.key_cert_sign and ku.crl_sign and not ku.digital_signature)
            self.assertEqual(c.public_key().key_size, 2048)
        self.assertEqual(ca_issuers(issuing), ["http://127.0.0.1:%d/aia/root.der" % r.port])
        for stem, c in (("root", root), ("issuing", issuing)):
            with open(os.path.join(d or self.dir, stem + ".sha256")) as f:
                self.assertEqual(f.read().strip(),
                                 hashlib.sha256(scepmsg.cert_der(c)).hexdigest())
        return root, issuing

    def test_getcacert_ndes_shape_without_root(self):
        r = self.start2()
        status, ctype, body = r.get("operation=GetCACert")
        self.assertEqual((status, ctype), (200, "application/x-x509-ca-ra-cert"))
        sign, enc, issuing = [x509.load_der_x509_certificate(d)
                              for d in scepmsg.parse_degenerate(body)]
        root, issuing_file = self.check_pki(r)
        self.assertEqual(issuing, issuing_file)
        for ra in (sign, enc):
            self.assertEqual(ra.issuer, issuing.subject)
            self.assertTrue(signed_by(ra, issuing))
            self.assertFalse(is_ca(ra))
        self.assertEqual((key_usage(sign).digital_signature, key_usage(sign).key_encipherment),
                         (True, False))
        self.assertEqual((key_usage(enc).digital_signature, key_usage(enc).key_encipherment),
                         (False, True))
        self.assertEqual(choose_ra(scepmsg.parse_degenerate(body)), (enc, sign))
        self.assertIn("mode=normal two-tier", r.log())

    def test_include_root(self):
        r = self.start2("--include-root")
        certs = r.ca_certs()
        root, issuing = self.check_pki(r)
        self.assertEqual(len(certs), 4)
        self.assertEqual(certs[2:], [scepmsg.cert_der(issuing), scepmsg.cert_der(root)])

    def test_enroll_issued_by_the_issuing_ca(self):
        r = self.start2()
        ex = Exchange(r, make_csr(RSA_KEY)).send()
        res, cert = self.assert_success(ex)   # issued[1] is the issuing CA of the bundle
        self.assert_answers(ex, res)
        self.assert_signed_by(res, scepmsg.cert_der(ex.ra_sign))
        root, issuing = self.check_pki(r)
        self.assertEqual(ex.ca, scepmsg.cert_der(issuing))
        self.assertEqual(cert.issuer, issuing.subject)
        self.assertTrue(signed_by(cert, issuing))
        # OpenSSL builds the whole chain to the root
        work = tempfile.mkdtemp(prefix="scep-2tier-")
        self.addCleanup(shutil.rmtree, work, True)
        with open(os.path.join(work, "leaf.pem"), "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        p = subprocess.run(["openssl", "verify", "-CAfile", os.path.join(self.dir, "root.pem"),
                            "-untrusted", os.path.join(self.dir, "issuing.pem"),
                            os.path.join(work, "leaf.pem")], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # a CertPoll names the issuing CA as issuer
        res, again = self.assert_success(ex.poll().send())
        self.assertEqual(again, cert)

    def test_single_ca(self):
        r = self.start2("--single-ca")
        status, ctype, body = r.get("operation=GetCACert")
        self.assertEqual((status, ctype), (200, "application/x-x509-ca-cert"))
        root, issuing = self.check_pki(r)
        self.assertEqual(body, scepmsg.cert_der(issuing))
        ex = Exchange(r, make_csr(EC_KEY)).send()
        res, cert = self.assert_success(ex)
        self.assert_signed_by(res, body)
        self.assertEqual(cert.issuer, issuing.subject)
        r.stop()
        r = self.start2("--single-ca", "--include-root")
        self.assertEqual(r.ca_certs(), [scepmsg.cert_der(self.file_cert("issuing")),
                                        scepmsg.cert_der(root)])

    def test_aia_serves_the_root(self):
        r = self.start2()
        status, ctype, body = r.get("", path="/aia/root.der")
        self.assertEqual((status, ctype), (200, "application/pkix-cert"))
        root, issuing = self.check_pki(r)
        self.assertEqual(body, scepmsg.cert_der(root))
        # the client's way: follow the issuing CA's caIssuers URL, check the signature
        url = urllib.parse.urlsplit(ca_issuers(issuing)[0])
        self.assertEqual((url.hostname, url.port), ("127.0.0.1", r.port))
        status, _, fetched = r.get("", path=url.path)
        fetched = x509.load_der_x509_certificate(fetched)
        self.assertTrue(signed_by(issuing, fetched))
        self.assertTrue(signed_by(fetched, fetched))
        self.assertIn("GET /aia/root.der -> 200 root certificate", r.log())
        self.assertEqual(r.get("", path="/aia/other.der")[0], 404)

    def test_aia_broken(self):
        r = self.start2("--aia-broken")
        status, ctype, body = r.get("", path="/aia/root.der")
        self.assertEqual((status, ctype), (200, "application/pkix-cert"))
        self.assertTrue(body)
        with self.assertRaises(ValueError):
            x509.load_der_x509_certificate(body)
        with self.assertRaises(ValueError):
            x509.load_pem_x509_certificate(body)
        self.check_pki(r)
        self.assertIn("GET /aia/root.der -> 200 not a certificate (--aia-broken)", r.log())

    def test_aia_wrong(self):
        r = self.start2("--aia-wrong")
        status, ctype, body = r.get("", path="/aia/root.der")
        self.assertEqual((status, ctype), (200, "application/pkix-cert"))
        root, issuing = self.check_pki(r)
        wrong = x509.load_der_x509_certificate(body)
        self.assertEqual(wrong.subject, root.subject)   # same name ...
        self.assertEqual(wrong.issuer, wrong.subject)
        self.assertTrue(signed_by(wrong, wrong))
        self.assertNotEqual(spki(wrong), spki(root))    # ... other key:
        self.assertFalse(signed_by(issuing, wrong))     # it did not sign the issuing CA
        self.assertIn("GET /aia/root.der -> 200 a root that did not sign the issuing CA",
                      r.log())

    def test_reissued_for_a_new_port(self):
        d = tempfile.mkdtemp(prefix="scep-responder-2tier-copy-")
        self.addCleanup(shutil.rmtree, d, True)
        r1 = self.start2(state_dir=d)
        root1, issuing1 = self.check_pki(r1, d)
        ras1 = r1.ca_certs()[:2]
        r1.stop()
        self.assertNotIn("issued again", r1.log())
        # the same port again: nothing changes
        r2 = self.start2("--port", str(r1.port), state_dir=d)
        self.assertEqual(r2.port, r1.port)
        self.assertEqual(self.check_pki(r2, d), (root1, issuing1))
        self.assertNotIn("issued again", r2.log())
        r2.stop()
        # a copy of the directory (as tests/integration/lib.sh makes from its cache),
        # served on another port
        copy = d + ".copy"
        shutil.copytree(d, copy)
        self.addCleanup(shutil.rmtree, copy, True)
        r3 = self.start2("--port", str(free_port({r1.port})), state_dir=copy)
        root3, issuing3 = self.check_pki(r3, copy)
        self.assertEqual(root3, root1)
        self.assertEqual(spki(issuing3), spki(issuing1))
        self.assertEqual(issuing3.subject, issuing1.subject)
        self.assertNotEqual(issuing3.serial_number, issuing1.serial_number)
        self.assertEqual(ca_issuers(issuing1), ["http://127.0.0.1:%d/aia/root.der" % r1.port])
        self.assertIn("issuing CA certificate issued again for caIssuers "
                      "http://127.0.0.1:%d/aia/root.der (serial %x)"
                      % (r3.port, issuing3.serial_number), r3.log())
        certs = r3.ca_certs()
        self.assertEqual(certs[:2], ras1)               # the RA pair is kept ...
        self.assertEqual(certs[2], scepmsg.cert_der(issuing3))
        for ra in certs[:2]:                            # ... and chains to the new cert
            self.assertTrue(signed_by(x509.load_der_x509_certificate(ra), issuing3))
        self.assertEqual(r3.get("", path="/aia/root.der")[2], scepmsg.cert_der(root1))
        self.assert_success(Exchange(r3, make_csr(RSA_KEY)).send())
        # the original directory is untouched
        self.assertEqual(self.file_cert("issuing", d), issuing1)

    def test_no_aia_without_two_tier(self):
        r = start(self, "normal")
        self.assertEqual(r.get("", path="/aia/root.der")[0], 404)

    def test_option_errors(self):
        for extra in (["--include-root"], ["--aia-broken"], ["--aia-wrong"],
                      ["--two-tier", "--aia-broken", "--aia-wrong"],
                      ["--two-tier", "--mode", "rollover"]):
            p = subprocess.run([sys.executable, RESPONDER, "--port", "0", "--dir", self.dir]
                               + extra, capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 2, extra)
            self.assertIn("error:", p.stderr)


# ---------------------------------------------------------------------------
# mode stranger: a self-signed certificate posing as an RA in GetCACert


class TestStranger(Checks):
    def stranger(self, d=None):
        return scepmsg.load_cert(os.path.join(d or STATE, "stranger.pem"))

    def check_reply(self, r, ex):
        """PENDING signed by the stranger, answering ex; only the signer is wrong."""
        res = self.assert_certrep(ex, scepmsg.STATUS_PENDING)
        self.assert_answers(ex, res)
        self.assert_signed_by(res, scepmsg.cert_der(self.stranger()))
        self.assertIn(res["signer_cert"], res["certs"])
        self.assertNotIn(CHALLENGE, r.log())
        self.assertIn("POST PKIOperation -> 200 PKCSReq: PENDING signed by the stranger "
                      "(mode stranger)", r.log())
        return res

    def test_getcacert(self):
        r = start(self, "stranger")
        certs = r.ca_certs()
        self.assertEqual(len(certs), 4)
        ca, sign, enc, stranger = [x509.load_der_x509_certificate(d) for d in certs]
        self.assertEqual(stranger, self.stranger())
        self.assertEqual(ca, scepmsg.load_cert(os.path.join(STATE, "ca.pem")))
        self.assertEqual(stranger.issuer, stranger.subject)
        self.assertEqual(stranger.subject.rfc4514_string(),
                         "CN=scep_responder RA (stranger),O=p11enroll tests")
        self.assertTrue(signed_by(stranger, stranger))
        self.assertFalse(signed_by(stranger, ca))
        self.assertFalse(is_ca(stranger))
        ku = key_usage(stranger)
        self.assertEqual((ku.digital_signature, ku.key_encipherment, ku.key_cert_sign),
                         (True, True, False))
        self.assertEqual(issuing_ca(certs), certs[0])
        # cached: a restart serves the same stranger
        r.stop()
        self.assertEqual(start(self, "stranger").ca_certs()[3], certs[3])

    def test_request_encrypted_to_the_ra(self):
        r = start(self, "stranger")
        ex = Exchange(r, make_csr(RSA_KEY)).send()
        self.check_reply(r, ex)
        self.assertIn("stranger could not decrypt the request (encrypted to "
                      "CN=scep_responder RA encryption,O=p11enroll tests)", r.log())
        self.assertNotIn("stranger decrypted", r.log())

    def test_request_encrypted_to_the_stranger(self):
        r = start(self, "stranger")
        ex = Exchange(r, make_csr(RSA_KEY), recipient=self.stranger()).send()
        self.check_reply(r, ex)
        self.assertIn("scep_responder: stranger decrypted the request\n", r.log())
        self.assertNotIn("could not decrypt", r.log())
        # a CertPoll is answered the same way
        ex.poll()
        ex.message = scepmsg.certpoll(ex.signer, ex.signer_key, self.stranger(),
                                      x509.load_der_x509_certificate(ex.ca).subject.public_bytes(),
                                      SUBJECT.public_bytes(), ex.txid, sender_nonce=ex.nonce)
        res = self.assert_certrep(ex.send(), scepmsg.STATUS_PENDING)
        self.assert_answers(ex, res)
        self.assertEqual(r.log().count("stranger decrypted the request"), 2)

    def test_request_encrypted_to_an_unknown_certificate(self):
        r = start(self, "stranger")
        ex = Exchange(r, make_csr(RSA_KEY), recipient=SIGNER).send()
        self.check_reply(r, ex)
        self.assertIn("stranger could not decrypt the request (encrypted to an unknown "
                      "certificate (issuer ", r.log())
        self.assertIn("serial %x))" % SIGNER.serial_number, r.log())

    def test_single_ca(self):
        r = start(self, "stranger", "--single-ca")
        status, ctype, body = r.get("operation=GetCACert")
        self.assertEqual((status, ctype), (200, "application/x-x509-ca-ra-cert"))
        certs = scepmsg.parse_degenerate(body)
        self.assertEqual(certs[1], scepmsg.cert_der(self.stranger()))
        self.assertEqual(len(certs), 2)
        ex = Exchange(r, make_csr(RSA_KEY), recipient=certs[0]).send()
        self.check_reply(r, ex)
        self.assertIn("stranger could not decrypt the request (encrypted to "
                      "CN=scep_responder CA,O=p11enroll tests)", r.log())

    def test_two_tier(self):
        d = tempfile.mkdtemp(prefix="scep-responder-stranger-2tier-")
        self.addCleanup(shutil.rmtree, d, True)
        r = start(self, "stranger", "--two-tier", state_dir=d)
        certs = r.ca_certs()
        self.assertEqual(len(certs), 4)
        self.assertEqual(certs[3], scepmsg.cert_der(self.stranger(d)))
        self.assertEqual(issuing_ca(certs), certs[2])
        ex = Exchange(r, make_csr(RSA_KEY)).send()
        res = self.assert_certrep(ex, scepmsg.STATUS_PENDING)
        self.assert_answers(ex, res)
        self.assertEqual(res["signer_cert"], certs[3])
        self.assertIn("stranger could not decrypt the request (encrypted to "
                      "CN=Responder RA encryption,O=p11enroll tests)", r.log())


# ---------------------------------------------------------------------------
# process behaviour


class TestProcess(unittest.TestCase):
    def test_restart_reuses_the_ca_and_cleans_up(self):
        d = tempfile.mkdtemp(prefix="scep-responder-dir-")
        self.addCleanup(shutil.rmtree, d, True)
        r1 = start(self, "normal", state_dir=d)
        ca1 = r1.ca_certs()
        with open(r1.pidfile) as f:
            self.assertEqual(int(f.read()), r1.proc.pid)
        r1.stop()
        self.assertEqual(r1.proc.returncode, 0)
        self.assertFalse(os.path.exists(r1.ready))
        self.assertFalse(os.path.exists(r1.pidfile))
        self.assertEqual(oct(os.stat(os.path.join(d, "ca.key")).st_mode & 0o777), "0o600")
        r2 = start(self, "normal", state_dir=d)
        self.assertEqual(r2.ca_certs(), ca1)

    def test_listens_on_loopback_only(self):
        r = start(self)
        out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout \
            if shutil.which("ss") else ""
        for line in out.splitlines():
            if ":%d " % r.port in line:
                self.assertIn("127.0.0.1:%d" % r.port, line)

    def test_busy_port_fails(self):
        r = start(self)
        p = subprocess.run([sys.executable, RESPONDER, "--port", str(r.port), "--dir", STATE,
                            "--mode", "normal"], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("cannot listen", p.stderr)


class TestThreads(Checks):
    """The server's threads share the Pki's certificate objects, which Debian 12's
    cryptography (38) cannot have used by two threads at once ("RuntimeError: Already
    borrowed"), so a request's PKI work holds Responder.pki_lock."""

    def setUp(self):
        import scep_responder
        d = tempfile.mkdtemp(prefix="scep-responder-threads-")
        self.addCleanup(shutil.rmtree, d, True)
        self.pki = scep_responder.Pki(d)
        self.responder = scep_responder.Responder(self.pki, "normal")
        self.csr = make_csr(RSA_KEY)

    def pkcsreq(self):
        return scepmsg.pkcsreq(SIGNER, RSA_KEY, self.pki.enc_cert, self.csr, new_txid(),
                               sender_nonce=os.urandom(16))

    def test_pki_used_under_the_lock(self):
        """Every use of the Pki while serving a request is made holding pki_lock."""
        responder, pki, unlocked = self.responder, self.pki, []

        class Watched:
            def __getattr__(self, name):
                if not responder.pki_lock.locked():
                    unlocked.append(name)
                return getattr(pki, name)

        msg = self.pkcsreq()
        responder.pki = Watched()
        reply = responder.pki_operation(msg)
        self.assertEqual((reply.code, "SUCCESS" in reply.summary), (200, True), reply.summary)
        self.assertEqual(unlocked, [])

    def test_requests_at_once(self):
        """8 threads of 4 PKCSReqs each, the interpreter switching threads as often as it
        can: every request gets its certificate."""
        import threading
        msgs = [[self.pkcsreq() for _ in range(4)] for _ in range(8)]
        results = []
        start_all = threading.Barrier(len(msgs))

        def run(batch):
            start_all.wait()
            for m in batch:
                try:
                    reply = self.responder.pki_operation(m)
                    results.append((reply.code, reply.summary))
                except Exception as e:  # what the server's thread would die of
                    results.append((None, "%s: %s" % (type(e).__name__, e)))

        old = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        try:
            threads = [threading.Thread(target=run, args=(b,)) for b in msgs]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            sys.setswitchinterval(old)
        self.assertEqual(len(results), 32)
        self.assertEqual([r for r in results if r[0] != 200 or "SUCCESS" not in r[1]], [])


# ---------------------------------------------------------------------------
# cross-check with an independent client


@unittest.skipUnless(shutil.which("scepclient"), "Debian scepclient not installed")
class TestScepclient(unittest.TestCase):
    def enroll(self, *extra):
        r = start(self, "normal", *extra)
        work = tempfile.mkdtemp(prefix="scepclient-")   # it writes csr.pem/self.pem in its cwd
        self.addCleanup(shutil.rmtree, work, True)
        key = keypool.rsa_key()
        with open(os.path.join(work, "k.pem"), "wb") as f:   # scepclient wants PKCS#1 PEM
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))
        p = subprocess.run(["scepclient", "-private-key", "k.pem", "-certificate", "cert.pem",
                            "-server-url", "http://127.0.0.1:%d/scep" % r.port,
                            "-challenge", CHALLENGE, "-cn", "scepclient-crosscheck"],
                           cwd=work, capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr + r.log())
        cert = scepmsg.load_cert(os.path.join(work, "cert.pem"))
        self.assertEqual(spki(cert), spki(key))
        ca = scepmsg.load_cert(os.path.join(STATE, "ca.pem"))
        self.assertEqual(cert.issuer, ca.subject)
        self.assertIn("PKCSReq: SUCCESS", r.log())

    def test_scepclient_ndes_shape(self):
        self.enroll()

    def test_scepclient_single_ca(self):
        self.enroll("--single-ca")


if __name__ == "__main__":
    unittest.main()
