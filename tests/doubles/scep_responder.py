#!/usr/bin/python3
"""SCEP (RFC 8894) server test double: an NDES-shaped responder with hostile modes.

Built on http.server and tests/doubles/scepmsg.py (asn1crypto + cryptography),
independent of p11enroll's C code.  It listens on 127.0.0.1 only.

    scep_responder.py --port PORT --dir DIR --mode MODE [--challenge SECRET]
                      [--single-ca] [--max-url N] [--pidfile FILE] [--ready-file FILE]
                      [--two-tier [--include-root] [--aia-broken | --aia-wrong]]

--port 0 picks a free port.  The ready-file (written atomically, content
"PORT\\n") appears only once the socket listens; a stale one is removed at
start, and both pid- and ready-file are removed on SIGTERM/SIGINT.

DIR (created, or reused when present):
    ca.pem ca.key          CA, RSA-2048, self-signed, keyUsage keyCertSign+cRLSign
    ca.sha256              hex SHA-256 of the CA certificate DER (the client's fingerprint)
    ra-sign.pem ra-sign.key  RA signing cert (keyUsage digitalSignature), issued by the CA
    ra-enc.pem ra-enc.key    RA encryption cert (keyUsage keyEncipherment), issued by the CA
    issued/<serial>.pem    every certificate issued (serial in lowercase hex)
    next-ca.pem next-ca.key, next-ra-sign.*, next-ra-enc.*   the next CA (same subject
                           name, new key) and its RA pair, made in the rollover modes;
                           next-ca.sha256 its fingerprint
    root.pem root.key root.sha256   --two-tier: "Responder Root CA", self-signed
    issuing.pem issuing.key issuing.sha256   --two-tier: "Responder Issuing CA", CA:TRUE,
                           issued by the root, caIssuers http://127.0.0.1:PORT/aia/root.der
    issuing-ra-sign.* issuing-ra-enc.*   --two-tier: the RA pair, issued by the issuing CA
    aia-wrong-root.pem .key   --aia-wrong: another "Responder Root CA" (other key)
    stranger.pem stranger.key   mode stranger: "scep_responder RA (stranger)", self-signed,
                           keyUsage digitalSignature+keyEncipherment, CA:FALSE
With --single-ca the CA decrypts requests and signs CertReps itself (like
scepserver) and GetCACert returns the CA alone.

--two-tier (NDES on two-tier AD CS): the issuing CA issues, the RA pair decrypts
and signs (with --single-ca the issuing CA does both), and GetCACert returns
[RA signing, RA encryption, issuing CA], no root; --include-root appends the
root.  A single certificate goes out as application/x-x509-ca-cert, more as a
degenerate PKCS#7 (application/x-x509-ca-ra-cert).  The ca.* files stay those
of the single-tier CA, unused.  GET /aia/root.der serves the root's DER as
application/pkix-cert (404 without --two-tier); --aia-broken serves an HTML
page there instead, --aia-wrong a different self-signed root of the same name
that did not sign the issuing CA.  The port is known only once the socket is
bound (and DIR may be a copy from another run), so when issuing.pem's caIssuers
URL names another port the certificate is issued again at start (same key, new
serial; the RA certificates stay valid) and issuing.pem/issuing.sha256 are
rewritten, logging
    issuing CA certificate issued again for caIssuers URL (serial HEX)
Read issuing.* only after the ready-file appears.  --two-tier does not combine
with the rollover modes.

Endpoints: /scep, /cgi-bin/pkiclient.exe, /certsrv/mscep/mscep.dll (any case).
    GET  ?operation=GetCACaps
    GET  ?operation=GetCACert
    GET  ?operation=GetNextCACert           rollover modes (else 404)
    POST ?operation=PKIOperation            body = DER pkiMessage
    GET  ?operation=PKIOperation&message=B64 (URL-encoded base64)
    GET  /aia/root.der                      --two-tier only, logged as "GET /aia/root.der
         -> 200 root certificate" ("... not a certificate (--aia-broken)", "... a root
         that did not sign the issuing CA (--aia-wrong)")

Request handling: the pkiMessage is verified and decrypted with scepmsg.
Unparseable -> HTTP 500; not verifiable/decryptable -> CertRep FAILURE with
the failInfo scepmsg reports (badMessageCheck unless the cause is an
unsupported algorithm, badAlg, or a missing signer certificate, badCertId).
PKCSReq (19) and RenewalReq (17): CSR self-signature must verify (else
FAILURE badMessageCheck); with --challenge the CSR's challengePassword must
match (else FAILURE badRequest), except for a renewal signed by a certificate
of this CA that carries no challenge.  CertPoll (20) answers for a pending or
already issued transactionID (unknown -> FAILURE badCertId).  Other types ->
FAILURE badRequest.  The request's signer certificate must hold an RSA key
(the SUCCESS envelope uses RSA key transport to it).

The hostile modes break only SUCCESS replies to PKIOperation (and the
transport modes every PKIOperation reply); GetCACaps/GetCACert stay normal.
One line per request is logged to stderr; challenges are never logged.

Mode stranger: GetCACert returns the genuine certificates (as above) plus the
stranger's (last).  Every parseable PKIOperation is answered with CertRep
PENDING signed by the stranger (its certificate included; transactionID and
recipientNonce answer the request, only the signer is wrong).  Before that
answer one of these lines is logged (tests assert on them):
    stranger decrypted the request
    stranger could not decrypt the request (encrypted to RECIPIENT[; RECIPIENT...])
    stranger could not decrypt the request (no pkcsPKIEnvelope)
RECIPIENT is the subject (RFC 4514, e.g. "CN=scep_responder RA encryption,O=p11enroll
tests") of the GetCACert certificate a RecipientInfo names, else "an unknown
certificate (issuer NAME, serial HEX)" or "an unknown certificate
(subjectKeyIdentifier HEX)".  The reply's own line reads
"POST PKIOperation -> 200 PKCSReq: PENDING signed by the stranger (mode stranger)".
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import os
import select
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keypool  # noqa: E402
import scepmsg  # noqa: E402
import serving  # noqa: E402
from asn1crypto import cms, x509 as asn1x509  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: E402
from serving import write_file  # noqa: E402
from cryptography.x509.oid import (AttributeOID, AuthorityInformationAccessOID,  # noqa: E402
                                   ExtendedKeyUsageOID, NameOID)

BUSY_COUNT = 2         # mode busy: PKIOperations answered 503 before serving
BUSY_RETRY_AFTER = 4   # mode busy: the Retry-After of those answers, seconds

CROWD_SIZE = 65    # certificates in mode crowd's GetCACert

MODES = {
    "normal": "issue at once",
    "nocaps": "GetCACaps: close the connection without answering (old NDES)",
    "getonly": "caps without POSTPKIOperation (SHA-256 AES DES3); POST -> 405",
    "pending": "first PKCSReq of a transactionID -> PENDING; CertPoll -> SUCCESS",
    "pending-fail": "PKCSReq -> PENDING; CertPoll -> FAILURE badRequest",
    "pending-forever": "PKCSReq -> PENDING; CertPoll (checked as in pending) -> PENDING",
    "reject": "every PKCSReq/CertPoll -> FAILURE badRequest",
    "wrong-nonce": "SUCCESS with recipientNonce != the request's senderNonce",
    "no-nonce": "SUCCESS without recipientNonce",
    "txid-prefix": "SUCCESS with the transactionID shortened by 4 characters",
    "txid-longer": "SUCCESS with 4 characters appended to the transactionID",
    "bad-signature": "SUCCESS with one byte of the signature flipped",
    "bad-digest": "SUCCESS whose messageDigest does not match the content",
    "rogue-signer": "SUCCESS signed by a fresh self-signed key not in GetCACert (cert included)",
    "wrong-key": "SUCCESS carrying a certificate issued for a different, fresh key",
    "truncated": "SUCCESS cut at 60% (Content-Length = the cut length)",
    "garbage": "PKIOperation -> random bytes as application/x-pki-message",
    "huge": "PKIOperation -> a 50 MiB body, streamed",
    "slow": "SUCCESS sent one byte per second; stops when the client goes away",
    "http500": "PKIOperation -> HTTP 500 with a text body",
    "des-reply": "SUCCESS encrypted with single DES, signed with SHA-1 by the CA (like scepserver)",
    "rollover": "caps add GetNextCACert, which serves the next CA (DIR/next-ca.pem, same subject "
                "name) and its RA certificates, signed by the current RA (RFC 8894 4.7)",
    "rollover-by-ca": "as rollover, GetNextCACert signed by the current CA itself",
    "rollover-stranger": "as rollover, GetNextCACert signed by a stranger's self-signed key",
    "rollover-forged": "as rollover, GetNextCACert with one byte of the signature flipped",
    "rolled": "after the rollover: GetCACert serves the next CA and its RA, which issue; "
              "GetNextCACert -> 404; renewals signed under the old CA are accepted",
    "busy": "the first %d PKIOperations -> HTTP 503 with Retry-After: %d, then as normal"
            % (BUSY_COUNT, BUSY_RETRY_AFTER),
    "crowd": "GetCACert adds self-signed certificates of one fresh key (CN crowd N) until it "
             "holds %d, one more than a client need take; PKIOperation as normal" % CROWD_SIZE,
    "stranger": "GetCACert adds a stranger's self-signed certificate (DIR/stranger.pem); every "
                "PKIOperation -> PENDING signed by the stranger, logging whether the stranger "
                "could decrypt the request",
}

# modes whose GetCACaps advertise GetNextCACert
NEXT_CA_MODES = ("rollover", "rollover-by-ca", "rollover-stranger", "rollover-forged", "rolled")

CAPS_NORMAL = b"POSTPKIOperation\nSHA-256\nAES\nSCEPStandard\nRenewal"
CAPS_GETONLY = b"SHA-256\nAES\nDES3"

SCEP_PATHS = ("/scep", "/cgi-bin/pkiclient.exe", "/certsrv/mscep/mscep.dll")
AIA_PATH = "/aia/root.der"   # --two-tier: the root, named by the issuing CA's caIssuers
CT_AIA = "application/pkix-cert"
AIA_BROKEN_BODY = b"<html><body>The certificate has moved.</body></html>\n"
CT_PKI = "application/x-pki-message"
MAX_BODY = 1 << 20          # largest POSTed pkiMessage accepted
HUGE_SIZE = 50 * 1024 * 1024
CHUNK = 64 * 1024

MSG_NAMES = {scepmsg.MSG_PKCSREQ: "PKCSReq", scepmsg.MSG_RENEWALREQ: "RenewalReq",
             scepmsg.MSG_CERTPOLL: "CertPoll", scepmsg.MSG_GETCERT: "GetCert",
             scepmsg.MSG_GETCRL: "GetCRL", scepmsg.MSG_CERTREP: "CertRep"}
FAIL_NAMES = {"0": "badAlg", "1": "badMessageCheck", "2": "badRequest",
              "3": "badTime", "4": "badCertId"}


def log(msg):
    """One line on stderr (exception texts may span lines)."""
    sys.stderr.write("scep_responder: %s\n" % " ".join(str(msg).split()))
    sys.stderr.flush()


def flip_byte(data, index):
    b = bytearray(data)
    b[index] ^= 0x01
    return bytes(b)


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


# ---------------------------------------------------------------------------
# key material


def new_rsa_key():
    return keypool.rsa_key()


def fresh_key_like(public_key):
    """A new private key of the same kind (RSA size / EC curve) as public_key."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return ec.generate_private_key(public_key.curve)
    if isinstance(public_key, rsa.RSAPublicKey):
        return keypool.rsa_key(public_key.key_size)
    return new_rsa_key()


def name(common_name):
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "p11enroll tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def ski_of(cert):
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value


def build_cert(subject, public_key, issuer_cert, issuer_key, extensions,
               not_before, not_after, serial=None):
    """Certificate with SKI/AKI added; issuer_cert None = self-signed.

    extensions: list of (ExtensionType, critical)."""
    if issuer_cert is None:
        issuer_name = subject
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
    else:
        issuer_name = issuer_cert.subject
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski_of(issuer_cert))
    b = (x509.CertificateBuilder()
         .subject_name(subject)
         .issuer_name(issuer_name)
         .public_key(public_key)
         .serial_number(serial or x509.random_serial_number())
         .not_valid_before(not_before)
         .not_valid_after(not_after))
    for ext, critical in extensions:
        b = b.add_extension(ext, critical=critical)
    b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    b = b.add_extension(aki, critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def key_usage(digital_signature=False, key_encipherment=False, cert_sign=False):
    return x509.KeyUsage(digital_signature=digital_signature, content_commitment=False,
                         key_encipherment=key_encipherment, data_encipherment=False,
                         key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
                         encipher_only=False, decipher_only=False)


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def ca_extensions():
    return [(x509.BasicConstraints(ca=True, path_length=None), True),
            (key_usage(cert_sign=True), True)]


def ca_issuers_urls(cert):
    """The caIssuers URLs of a certificate's authorityInfoAccess ([] without one)."""
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return [d.access_location.value for d in aia
            if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS]


class Pki:
    """CA + RA signing + RA encryption certificates kept in a directory.

    two_tier: root -> issuing CA -> RA pair; the issuing CA (ca_cert/ca_key here)
    issues and names http://127.0.0.1:<aia_port>/aia/root.der as caIssuers."""

    def __init__(self, directory, single_ca=False, mode="normal", ca_days=3650,
                 two_tier=False, include_root=False, aia_port=None, aia="good"):
        self.dir = directory
        self.issued_dir = os.path.join(directory, "issued")
        os.makedirs(self.issued_dir, exist_ok=True)
        now = utcnow()
        self.ca_key, self.ca_cert, ca_new = self._load_or_create(
            "ca", lambda key: build_cert(
                name("scep_responder CA"), key.public_key(), None, key,
                [(x509.BasicConstraints(ca=True, path_length=None), True),
                 (key_usage(cert_sign=True), True)],
                now - datetime.timedelta(days=1), now + datetime.timedelta(days=ca_days)))
        self.sign_key, self.sign_cert, _ = self._load_or_create(
            "ra-sign", lambda key: self._ra_cert(key, "scep_responder RA signing",
                                                 key_usage(digital_signature=True)),
            recreate=ca_new)
        self.enc_key, self.enc_cert, _ = self._load_or_create(
            "ra-enc", lambda key: self._ra_cert(key, "scep_responder RA encryption",
                                                key_usage(key_encipherment=True)),
            recreate=ca_new)
        self.old_ca_cert = self.ca_cert
        write_file(os.path.join(directory, "ca.sha256"),
                   (hashlib.sha256(scepmsg.cert_der(self.ca_cert)).hexdigest() + "\n").encode())
        if mode in NEXT_CA_MODES:
            self._load_next(ca_new)
        if mode == "rolled":
            self.ca_key, self.ca_cert = self.next_ca_key, self.next_ca_cert
            self.sign_key, self.sign_cert = self.next_sign_key, self.next_sign_cert
            self.enc_key, self.enc_cert = self.next_enc_key, self.next_enc_cert
        self.aia = None     # (body, log note) served at AIA_PATH in two-tier mode
        if two_tier:
            self._load_two_tier(aia_port, ca_days, aia)
            self.ca_key, self.ca_cert = self.issuing_key, self.issuing_cert
            self.old_ca_cert = self.ca_cert
            self.sign_key, self.sign_cert = self.issuing_sign_key, self.issuing_sign_cert
            self.enc_key, self.enc_cert = self.issuing_enc_key, self.issuing_enc_cert
        if mode == "stranger":
            self.stranger_key, self.stranger_cert, _ = self._load_or_create(
                "stranger", lambda key: build_cert(
                    name("scep_responder RA (stranger)"), key.public_key(), None, key,
                    [(x509.BasicConstraints(ca=False, path_length=None), True),
                     (key_usage(digital_signature=True, key_encipherment=True), True)],
                    utcnow() - datetime.timedelta(days=1),
                    utcnow() + datetime.timedelta(days=3650)))
        if single_ca:  # the CA is its own RA, like scepserver
            self.sign_key, self.sign_cert = self.ca_key, self.ca_cert
            self.enc_key, self.enc_cert = self.ca_key, self.ca_cert
            ras = []
        else:
            ras = [self.sign_cert, self.enc_cert]
        if two_tier:   # NDES on two-tier AD CS: the RA pair and the issuing CA, no root
            certs = ras + [self.ca_cert] + ([self.root_cert] if include_root else [])
        else:
            certs = [self.ca_cert] + ras
        if mode == "stranger":
            certs.append(self.stranger_cert)
        if mode == "crowd":
            crowd_key = new_rsa_key()
            certs += [build_cert(name("crowd %d" % i), crowd_key.public_key(), None, crowd_key,
                                 [(x509.BasicConstraints(ca=False, path_length=None), True)],
                                 utcnow() - datetime.timedelta(days=1),
                                 utcnow() + datetime.timedelta(days=30))
                      for i in range(CROWD_SIZE - len(certs))]
        if len(certs) == 1:
            self.getcacert = ("application/x-x509-ca-cert", scepmsg.cert_der(certs[0]))
        else:
            self.getcacert = ("application/x-x509-ca-ra-cert", scepmsg.degenerate_certs(certs))
        self.known_certs = certs + [self.ca_cert, self.sign_cert, self.enc_cert]

    def _load_two_tier(self, aia_port, ca_days, aia):
        """root.* and issuing.* (and the issuing CA's RA pair, issuing-ra-sign.* and
        issuing-ra-enc.*): created when missing; the issuing CA certificate is issued
        again (same key, new serial) when its caIssuers URL names another port, as in
        a directory copied from another run."""
        now = utcnow()
        validity = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=ca_days))
        self.root_key, self.root_cert, root_new = self._load_or_create(
            "root", lambda key: build_cert(name("Responder Root CA"), key.public_key(), None,
                                           key, ca_extensions(), *validity))
        url = "http://127.0.0.1:%d%s" % (aia_port, AIA_PATH)

        def issuing(key):
            aia_ext = x509.AuthorityInformationAccess([x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(url))])
            return build_cert(name("Responder Issuing CA"), key.public_key(), self.root_cert,
                              self.root_key, ca_extensions() + [(aia_ext, False)], *validity)

        self.issuing_key, self.issuing_cert, issuing_new = self._load_or_create(
            "issuing", issuing, recreate=root_new)
        if not issuing_new and ca_issuers_urls(self.issuing_cert) != [url]:
            self.issuing_cert = issuing(self.issuing_key)
            write_file(os.path.join(self.dir, "issuing.pem"), pem(self.issuing_cert))
            log("issuing CA certificate issued again for caIssuers %s (serial %x)"
                % (url, self.issuing_cert.serial_number))
        for stem, cert in (("root", self.root_cert), ("issuing", self.issuing_cert)):
            write_file(os.path.join(self.dir, stem + ".sha256"),
                       (hashlib.sha256(scepmsg.cert_der(cert)).hexdigest() + "\n").encode())
        issuer = (self.issuing_cert, self.issuing_key)
        self.issuing_sign_key, self.issuing_sign_cert, _ = self._load_or_create(
            "issuing-ra-sign", lambda key: self._ra_cert(key, "Responder RA signing",
                                                         key_usage(digital_signature=True),
                                                         issuer),
            recreate=issuing_new)
        self.issuing_enc_key, self.issuing_enc_cert, _ = self._load_or_create(
            "issuing-ra-enc", lambda key: self._ra_cert(key, "Responder RA encryption",
                                                        key_usage(key_encipherment=True),
                                                        issuer),
            recreate=issuing_new)
        if aia == "broken":
            self.aia = (AIA_BROKEN_BODY, "not a certificate (--aia-broken)")
        elif aia == "wrong":
            _, wrong, _ = self._load_or_create(
                "aia-wrong-root", lambda key: build_cert(name("Responder Root CA"),
                                                        key.public_key(), None, key,
                                                        ca_extensions(), *validity))
            self.aia = (scepmsg.cert_der(wrong), "a root that did not sign the issuing CA "
                        "(--aia-wrong)")
        else:
            self.aia = (scepmsg.cert_der(self.root_cert), "root certificate")

    def _load_next(self, recreate):
        """The next CA: the current one's subject name, a new key, 20 years."""
        now = utcnow()
        self.next_ca_key, self.next_ca_cert, new = self._load_or_create(
            "next-ca", lambda key: build_cert(
                name("scep_responder CA"), key.public_key(), None, key,
                [(x509.BasicConstraints(ca=True, path_length=None), True),
                 (key_usage(cert_sign=True), True)],
                now - datetime.timedelta(days=1), now + datetime.timedelta(days=7300)),
            recreate=recreate)
        issuer = (self.next_ca_cert, self.next_ca_key)
        self.next_sign_key, self.next_sign_cert, _ = self._load_or_create(
            "next-ra-sign", lambda key: self._ra_cert(key, "scep_responder next RA signing",
                                                      key_usage(digital_signature=True),
                                                      issuer),
            recreate=new)
        self.next_enc_key, self.next_enc_cert, _ = self._load_or_create(
            "next-ra-enc", lambda key: self._ra_cert(key, "scep_responder next RA encryption",
                                                     key_usage(key_encipherment=True), issuer),
            recreate=new)
        write_file(os.path.join(self.dir, "next-ca.sha256"),
                   (hashlib.sha256(scepmsg.cert_der(self.next_ca_cert)).hexdigest()
                    + "\n").encode())

    def _ra_cert(self, key, common_name, ku, issuer=None):
        now = utcnow()
        ca_cert, ca_key = issuer or (self.ca_cert, self.ca_key)
        return build_cert(name(common_name), key.public_key(), ca_cert, ca_key,
                          [(x509.BasicConstraints(ca=False, path_length=None), True),
                           (ku, True)],
                          now - datetime.timedelta(days=1), now + datetime.timedelta(days=3650))

    def _load_or_create(self, stem, make_cert, recreate=False):
        key_path = os.path.join(self.dir, stem + ".key")
        cert_path = os.path.join(self.dir, stem + ".pem")
        if not recreate and os.path.exists(key_path) and os.path.exists(cert_path):
            return scepmsg.load_key(key_path), scepmsg.load_cert(cert_path), False
        key = new_rsa_key()
        cert = make_cert(key)
        write_file(key_path, key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()), 0o600)
        write_file(cert_path, pem(cert))
        return key, cert, True

    def issued_by_ca(self, cert_der):
        """True when cert_der is a certificate signed by this CA, or by the CA it
        rolled over from (a renewal signer)."""
        for ca in (self.ca_cert, self.old_ca_cert):
            try:
                cert = scepmsg.load_cert(cert_der)
                if cert.issuer != ca.subject:
                    continue
                ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                                       padding.PKCS1v15(), cert.signature_hash_algorithm)
                return True
            except Exception:
                continue
        return False


# ---------------------------------------------------------------------------
# SCEP logic (bytes in, Reply out; no HTTP here)


class Reply:
    """What the HTTP layer sends for a PKIOperation, plus a log summary."""

    def __init__(self, body, summary, code=200, ctype=CT_PKI):
        self.body, self.summary, self.code, self.ctype = body, summary, code, ctype


def _flip_nonce(kw):
    kw["recipient_nonce"] = flip_byte(kw["recipient_nonce"] or bytes(16), 0)


def _rogue_signer(responder, kw):
    kw["signer_key"], kw["signer_cert"] = responder.rogue()


def _des_by_ca(responder, kw):
    kw.update(cipher="des", digest="sha1",
              signer_key=responder.pki.ca_key, signer_cert=responder.pki.ca_cert)


# mode -> function(responder, certrep kwargs) breaking a SUCCESS CertRep in one way
SUCCESS_TWEAKS = {
    "wrong-nonce": lambda r, kw: _flip_nonce(kw),
    "no-nonce": lambda r, kw: kw.update(recipient_nonce=None),
    "txid-prefix": lambda r, kw: kw.update(txid=kw["txid"][:-4]),
    "txid-longer": lambda r, kw: kw.update(txid=kw["txid"] + "0A1B"),
    # RSA PKCS#1 v1.5: any flipped bit invalidates the signature
    "bad-signature": lambda r, kw: kw.update(
        tamper={"signature": lambda s: flip_byte(s, len(s) // 2)}),
    # the last byte of the EnvelopedData is ciphertext: the ASN.1 stays intact
    "bad-digest": lambda r, kw: kw.update(tamper={"content": lambda c: flip_byte(c, -1)}),
    "rogue-signer": _rogue_signer,
    "des-reply": _des_by_ca,
}


def challenge_of(csr):
    try:
        return csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
    except x509.AttributeNotFound:
        return None


def describe_recipient(who):
    """A certificate as its subject (RFC 4514, e.g. "CN=scep_responder CA,O=p11enroll
    tests"); a string as it is."""
    return who.subject.rfc4514_string() if isinstance(who, x509.Certificate) else who


def names_equal(der_a, der_b):
    """RFC 5280 name comparison (asn1crypto normalises case/space/string type)."""
    return asn1x509.Name.load(der_a) == asn1x509.Name.load(der_b)


class Responder:
    def __init__(self, pki, mode, challenge=None):
        self.pki, self.mode, self.challenge = pki, mode, challenge
        self.lock = threading.Lock()
        # One request's PKI work at a time (pki_operation, next_ca): the Pki's certificate
        # objects are shared by the server's threads, and Debian 12's cryptography (38)
        # holds a certificate borrowed while it builds Python objects from it (.subject,
        # the first .extensions), so that a second thread using the same certificate then
        # fails with "RuntimeError: Already borrowed" (seen: t-provision's
        # pending_then_polled, about 1 run in 50: two cards' polls issued at once, ski_of
        # of the CA against its .subject, and the card got an empty reply; 8 threads on one
        # certificate with sys.setswitchinterval(1e-6) fail hundreds of times in 300
        # rounds, also with its extensions parsed beforehand). The threads run Python one
        # at a time anyway (the GIL); waits (mode slow) stay outside.
        self.pki_lock = threading.Lock()
        self.pending = {}   # txid -> CSR DER awaiting a CertPoll
        self.issued = {}    # txid -> issued certificate
        self._rogue = None
        self.busy_left = BUSY_COUNT if mode == "busy" else 0

    def rogue(self):
        with self.lock:
            if self._rogue is None:
                key = new_rsa_key()
                now = utcnow()
                cert = build_cert(name("scep_responder rogue signer"), key.public_key(), None,
                                  key, [(key_usage(digital_signature=True), True)],
                                  now - datetime.timedelta(days=1),
                                  now + datetime.timedelta(days=30))
                self._rogue = (key, cert)
            return self._rogue

    # -- GetNextCACert

    def next_ca(self):
        """GetNextCACert body (RFC 8894 4.7): SignedData over a degenerate SignedData
        holding the next CA and its RA pair; None when there is no next CA."""
        with self.pki_lock:
            return self._next_ca()

    def _next_ca(self):
        pki = self.pki
        if self.mode not in NEXT_CA_MODES or self.mode == "rolled":
            return None
        signer_cert, signer_key = pki.sign_cert, pki.sign_key
        if self.mode == "rollover-by-ca":
            signer_cert, signer_key = pki.ca_cert, pki.ca_key
        elif self.mode == "rollover-stranger":
            signer_key, signer_cert = self.rogue()
        tamper = None
        if self.mode == "rollover-forged":
            tamper = {"signature": lambda s: flip_byte(s, len(s) // 2)}
        content = scepmsg.degenerate_certs([pki.next_ca_cert, pki.next_sign_cert,
                                            pki.next_enc_cert])
        return scepmsg.signed_data(content, signer_cert, signer_key, [], tamper=tamper)

    # -- entry point

    def pki_operation(self, der):
        with self.pki_lock:
            return self._pki_operation(der)

    def _pki_operation(self, der):
        try:
            outer = scepmsg.parse_pkimessage(der, verify=False)
        except Exception as e:  # ScepError, or asn1crypto on odd encodings
            return Reply(("cannot parse pkiMessage: %s\n" % e).encode(),
                         "unparseable (%s)" % e, code=500, ctype="text/plain")
        mname = MSG_NAMES.get(outer["message_type"], "type=%s" % outer["message_type"])
        if self.mode == "stranger":
            return self.stranger(outer, mname)
        try:
            req = scepmsg.parse_pkimessage(der, ra_key=self.pki.enc_key, ra_cert=self.pki.enc_cert)
        except scepmsg.ScepError as e:
            return self.failure(outer, e.fail_info, "%s: %s" % (mname, e))
        except Exception as e:
            return self.failure(outer, scepmsg.FAIL_BAD_MESSAGE_CHECK, "%s: %s" % (mname, e))
        if not req["txid"] or req["sender_nonce"] is None:
            return self.failure(req, scepmsg.FAIL_BAD_MESSAGE_CHECK,
                                "%s: transactionID or senderNonce missing" % mname)
        mt = req["message_type"]
        if mt in (scepmsg.MSG_PKCSREQ, scepmsg.MSG_RENEWALREQ, scepmsg.MSG_CERTPOLL):
            if req["envelope"] is None:
                return self.failure(req, scepmsg.FAIL_BAD_REQUEST, "%s: no pkcsPKIEnvelope" % mname)
            if self.mode == "reject":
                return self.failure(req, scepmsg.FAIL_BAD_REQUEST, "%s: rejected (mode)" % mname)
            if mt == scepmsg.MSG_CERTPOLL:
                return self.poll(req, mname)
            return self.enroll(req, mname)
        return self.failure(req, scepmsg.FAIL_BAD_REQUEST, "%s: unsupported" % mname)

    # -- mode stranger

    def stranger(self, outer, mname):
        """Whatever the request: try the stranger's key on it, log the outcome, answer
        PENDING signed by the stranger (transactionID and recipientNonce correct)."""
        pki = self.pki
        env = outer["envelope"]
        if env is None:
            log("stranger could not decrypt the request (no pkcsPKIEnvelope)")
        else:
            try:
                named = self.recipients(env)
            except Exception as e:   # asn1crypto on a malformed envelope
                named = [("unparseable EnvelopedData: %s" % e, None)]
            mine = [rid for who, rid in named if who is pki.stranger_cert]
            try:
                if not mine:
                    raise scepmsg.ScepError("not encrypted to the stranger")
                cert = pki.stranger_cert if mine[0] == "issuer_and_serial_number" else None
                scepmsg.decrypt_envelope(env, pki.stranger_key, cert)
                log("stranger decrypted the request")
            except Exception:
                log("stranger could not decrypt the request (encrypted to %s)"
                    % "; ".join(describe_recipient(who) for who, _ in named))
        kw = self._certrep_args(outer, scepmsg.STATUS_PENDING)
        kw.update(signer_cert=pki.stranger_cert, signer_key=pki.stranger_key)
        return Reply(scepmsg.certrep(**kw), "%s: PENDING signed by the stranger (mode stranger)"
                     % mname)

    def recipients(self, env_der):
        """[(known certificate or a description string, rid kind)] for each
        RecipientInfo of an EnvelopedData."""
        out = []
        for ri in cms.ContentInfo.load(env_der)["content"]["recipient_infos"]:
            if ri.name != "ktri":
                out.append(("a %s recipient" % ri.name, None))
                continue
            rid = ri.chosen["rid"]
            who = None
            for c in self.pki.known_certs:
                ac = asn1x509.Certificate.load(scepmsg.cert_der(c))
                if rid.name == "issuer_and_serial_number":
                    if (ac.issuer == rid.chosen["issuer"]
                            and ac.serial_number == rid.chosen["serial_number"].native):
                        who = c
                elif ac.key_identifier == rid.chosen.native:
                    who = c
                if who is not None:
                    break
            if who is None:
                if rid.name == "issuer_and_serial_number":
                    who = "an unknown certificate (issuer %s, serial %x)" % (
                        rid.chosen["issuer"].human_friendly, rid.chosen["serial_number"].native)
                else:
                    who = "an unknown certificate (subjectKeyIdentifier %s)" % (
                        rid.chosen.native.hex())
            out.append((who, rid.name))
        return out

    # -- message types

    def enroll(self, req, mname):
        txid = req["txid"]
        try:
            csr = x509.load_der_x509_csr(req["csr_der"])
        except Exception as e:
            return self.failure(req, scepmsg.FAIL_BAD_REQUEST, "%s: bad CSR: %s" % (mname, e))
        if not csr.is_signature_valid:
            return self.failure(req, scepmsg.FAIL_BAD_MESSAGE_CHECK,
                                "%s: CSR self-signature invalid" % mname)
        problem = self.authorisation_problem(req, csr)
        if problem:
            return self.failure(req, scepmsg.FAIL_BAD_REQUEST, "%s: %s" % (mname, problem))
        if self.mode in ("pending", "pending-fail", "pending-forever"):
            with self.lock:
                done = self.issued.get(txid)
                if done is None:
                    self.pending[txid] = req["csr_der"]
            if done is not None:
                return self.success(req, done, mname)
            return self.status_only(req, scepmsg.STATUS_PENDING, None, "%s: PENDING" % mname)
        cert = self.issue(csr)
        with self.lock:
            self.issued[txid] = cert
        return self.success(req, cert, mname)

    def poll(self, req, mname):
        txid = req["txid"]
        with self.lock:
            csr_der = self.pending.get(txid)
            done = self.issued.get(txid)
        if done is not None:
            return self.success(req, done, mname)
        if csr_der is None:
            return self.failure(req, scepmsg.FAIL_BAD_CERT_ID, "%s: unknown transactionID" % mname)
        issuer_der, subject_der = req["issuer_and_subject"]
        csr = x509.load_der_x509_csr(csr_der)
        if not (names_equal(subject_der, csr.subject.public_bytes())
                and names_equal(issuer_der, self.pki.ca_cert.subject.public_bytes())):
            return self.failure(req, scepmsg.FAIL_BAD_CERT_ID,
                                "%s: IssuerAndSubject does not match the pending request" % mname)
        if self.mode == "pending-forever":
            return self.status_only(req, scepmsg.STATUS_PENDING, None, "%s: PENDING" % mname)
        if self.mode == "pending-fail":
            with self.lock:
                self.pending.pop(txid, None)
            return self.failure(req, scepmsg.FAIL_BAD_REQUEST, "%s: rejected (mode)" % mname)
        cert = self.issue(csr)
        with self.lock:
            self.pending.pop(txid, None)
            self.issued[txid] = cert
        return self.success(req, cert, mname)

    def authorisation_problem(self, req, csr):
        """None when the request may be served, else a reason (never the secret)."""
        if self.challenge is None:
            return None
        given = challenge_of(csr)
        if given is None:
            if self.pki.issued_by_ca(req["signer_cert"]):
                return None  # renewal signed with a certificate of this CA
            return "challengePassword missing"
        if not hmac.compare_digest(given, self.challenge.encode()):
            return "challengePassword mismatch"
        return None

    # -- issuing

    def issue(self, csr):
        public_key = csr.public_key()
        if self.mode == "wrong-key":
            public_key = fresh_key_like(public_key).public_key()
        is_rsa = isinstance(public_key, rsa.RSAPublicKey)
        extensions = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (key_usage(digital_signature=True, key_encipherment=is_rsa), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
        ]
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            extensions.append((san.value, san.critical))
        except x509.ExtensionNotFound:
            pass
        now = utcnow()
        cert = build_cert(csr.subject, public_key, self.pki.ca_cert, self.pki.ca_key, extensions,
                          now - datetime.timedelta(minutes=10), now + datetime.timedelta(days=365))
        write_file(os.path.join(self.pki.issued_dir, "%x.pem" % cert.serial_number), pem(cert))
        return cert

    # -- CertRep builders

    def _certrep_args(self, req, status, fail_info=None):
        return dict(signer_cert=self.pki.sign_cert, signer_key=self.pki.sign_key,
                    txid=req["txid"], recipient_nonce=req["sender_nonce"], sender_nonce=None,
                    status=status, fail_info=fail_info, digest="sha256")

    def success(self, req, cert, mname):
        kw = self._certrep_args(req, scepmsg.STATUS_SUCCESS)
        kw.update(issued_certs=[cert, self.pki.ca_cert], recipient_cert=req["signer_cert"],
                  cipher="aes128")
        tweak = SUCCESS_TWEAKS.get(self.mode)
        if tweak:
            tweak(self, kw)
        summary = "%s: SUCCESS serial=%x" % (mname, cert.serial_number)
        if self.mode != "normal":
            summary += " (mode %s)" % self.mode
        return Reply(scepmsg.certrep(**kw), summary)

    def status_only(self, req, status, fail_info, summary):
        return Reply(scepmsg.certrep(**self._certrep_args(req, status, fail_info)), summary)

    def failure(self, req, fail_info, why):
        return self.status_only(req, scepmsg.STATUS_FAILURE, fail_info,
                                "FAILURE %s (%s)" % (FAIL_NAMES.get(fail_info, fail_info), why))


# ---------------------------------------------------------------------------
# HTTP


class Server(ThreadingHTTPServer):
    daemon_threads = True       # a slow/huge handler never blocks shutdown
    request_queue_size = 64

    def server_bind(self):
        # skip HTTPServer's getfqdn() (a reverse DNS lookup) on 127.0.0.1
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "scep_responder/1"

    # http.server would log every request line (with message=...): we log our own
    def log_request(self, code="-", size="-"):
        pass

    def log_message(self, fmt, *args):
        log("%s %s" % (self.command or "-", fmt % args))

    @property
    def responder(self):
        return self.server.responder

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_HEAD(self):
        self.send_text(405, "method not allowed\n", "HEAD -> 405")

    # -- dispatch

    def dispatch(self, method):
        max_url = self.server.max_url
        if max_url and len(self.path) > max_url:
            return self.send_text(414, "URI too long\n", "%s -> 414 (URL of %d > %d chars)"
                                  % (method, len(self.path), max_url))
        url = urlsplit(self.path)
        aia = self.responder.pki.aia
        if aia is not None and url.path == AIA_PATH and method == "GET":
            return self.send_body(200, CT_AIA, aia[0], method, AIA_PATH, "200 %s" % aia[1])
        if url.path.lower().rstrip("/") not in SCEP_PATHS:
            return self.send_text(404, "not found\n", "%s %s -> 404" % (method, url.path[:80]))
        params = parse_qs(url.query)
        op = params.get("operation", [""])[0]
        mode = self.responder.mode
        if op == "GetCACaps" and method == "GET":
            if mode == "nocaps":
                self.close_connection = True
                self.log_line(method, op, "connection closed without answer (mode nocaps)")
                return
            caps = CAPS_GETONLY if mode == "getonly" else CAPS_NORMAL
            if mode in NEXT_CA_MODES:
                caps += b"\nGetNextCACert"
            return self.send_body(200, "text/plain", caps, method, op, "200")
        if op == "GetCACert" and method == "GET":
            ctype, body = self.responder.pki.getcacert
            return self.send_body(200, ctype, body, method, op, "200 %s" % ctype)
        if op == "GetNextCACert" and method == "GET":
            body = self.responder.next_ca()
            if body is None:
                return self.send_text(404, "no next CA\n",
                                      "GET GetNextCACert -> 404 (no rollover in progress)")
            return self.send_body(200, "application/x-x509-next-ca-cert", body, method, op,
                                  "200 next CA (mode %s)" % mode)
        if op == "PKIOperation":
            if method == "POST":
                if mode == "getonly":
                    return self.send_text(405, "POST not supported\n",
                                          "POST PKIOperation -> 405 (mode getonly)",
                                          {"Allow": "GET"})
                der = self.read_body()
                if der is None:
                    return
                ctype = self.headers.get("Content-Type", "")
                note = "" if ctype.split(";")[0].strip().lower() == CT_PKI else \
                    " [request Content-Type %r]" % ctype
            else:
                raw = params.get("message", [None])[0]
                if raw is None:
                    return self.send_text(400, "message parameter missing\n",
                                          "GET PKIOperation -> 400 (no message)")
                # parse_qs turned an unescaped '+' into ' '; base64 has no spaces
                try:
                    der = base64.b64decode("".join(raw.replace(" ", "+").split()), validate=True)
                except ValueError:
                    return self.send_text(400, "message is not base64\n",
                                          "GET PKIOperation -> 400 (bad base64)")
                note = ""
            return self.pki_operation(method, der, note)
        return self.send_text(400, "unsupported operation\n",
                              "%s operation=%r -> 400" % (method, op[:40]))

    def read_body(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.send_text(411, "Content-Length required\n", "POST -> 411")
            return None
        length = int(length)
        if length > MAX_BODY:
            self.send_text(413, "request too large\n", "POST -> 413 (%d bytes)" % length)
            return None
        return self.rfile.read(length)

    def pki_operation(self, method, der, note):
        op = "PKIOperation"
        mode = self.responder.mode
        if mode == "busy":
            with self.responder.lock:
                busy = self.responder.busy_left > 0
                self.responder.busy_left -= busy
            if busy:
                return self.send_text(503, "busy, come back later\n",
                                      "%s %s -> 503 Retry-After %d at %.3f (mode busy)"
                                      % (method, op, BUSY_RETRY_AFTER, time.time()),
                                      {"Retry-After": str(BUSY_RETRY_AFTER)})
            log("%s %s served at %.3f (mode busy)" % (method, op, time.time()))
        if mode == "http500":
            return self.send_text(500, "simulated internal server error\n",
                                  "%s %s -> 500 (mode http500)" % (method, op))
        if mode == "garbage":
            return self.send_body(200, CT_PKI, os.urandom(2048), method, op,
                                  "200 2048 random bytes (mode garbage)")
        if mode == "huge":
            return self.send_huge(method, op)
        reply = self.responder.pki_operation(der)
        body = reply.body
        if reply.code == 200 and mode == "truncated":
            body = body[:len(body) * 6 // 10]
            reply.summary += " cut to %d of %d bytes" % (len(body), len(reply.body))
        if reply.code == 200 and mode == "slow":
            return self.send_slowly(body, method, op, reply.summary + note)
        return self.send_body(reply.code, reply.ctype, body, method, op,
                              "%d %s%s" % (reply.code, reply.summary, note))

    # -- senders

    def log_line(self, method, op, result):
        log("%s %s -> %s" % (method, op, result))

    def send_headers(self, code, ctype, length, extra=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if code >= 400:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def send_body(self, code, ctype, body, method, op, result):
        self.log_line(method, op, result)
        try:
            self.send_headers(code, ctype, len(body))
            self.wfile.write(body)
        except OSError as e:
            log("%s %s: client went away (%s)" % (method, op, e))
            self.close_connection = True

    def send_text(self, code, text, logline, extra=None):
        log(logline)
        try:
            self.send_headers(code, "text/plain; charset=utf-8", len(text.encode()), extra)
            self.wfile.write(text.encode())
        except OSError:
            self.close_connection = True

    def peer_closed(self):
        """True when the client has closed its side (readable with EOF)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def send_huge(self, method, op):
        """A DER SEQUENCE header announcing the whole 50 MiB, then zeros, in chunks."""
        self.log_line(method, op, "200 streaming %d bytes (mode huge)" % HUGE_SIZE)
        header = b"\x30\x84" + (HUGE_SIZE - 6).to_bytes(4, "big")
        chunk = bytes(CHUNK)
        sent = 0
        self.close_connection = True
        try:
            self.send_headers(200, CT_PKI, HUGE_SIZE)
            self.wfile.write(header)
            sent = len(header)
            while sent < HUGE_SIZE:
                n = min(CHUNK, HUGE_SIZE - sent)
                self.wfile.write(chunk[:n])
                sent += n
        except OSError:
            log("%s %s: huge: client went away after %d of %d bytes"
                % (method, op, sent, HUGE_SIZE))
            return
        log("%s %s: huge: sent all %d bytes" % (method, op, sent))

    def send_slowly(self, body, method, op, summary):
        self.log_line(method, op, "200 %s, one byte per second (mode slow)" % summary)
        self.close_connection = True
        sent = 0
        try:
            self.send_headers(200, CT_PKI, len(body))
            while sent < len(body):
                if self.peer_closed():
                    raise ConnectionResetError("peer closed")
                self.wfile.write(body[sent:sent + 1])
                sent += 1
                time.sleep(1)
        except OSError:
            log("%s %s: slow: client went away after %d of %d bytes"
                % (method, op, sent, len(body)))
            return
        log("%s %s: slow: sent all %d bytes" % (method, op, sent))


# ---------------------------------------------------------------------------
# main


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="SCEP server test double (127.0.0.1 only).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="modes:\n" + "\n".join("  %-14s %s" % kv for kv in MODES.items()))
    p.add_argument("--port", type=int, required=True, help="TCP port; 0 = pick a free one")
    p.add_argument("--dir", required=True, help="state directory (CA, RA, issued/)")
    p.add_argument("--mode", default="normal", choices=sorted(MODES), metavar="MODE",
                   help="behaviour, see below (default normal)")
    p.add_argument("--challenge", help="required challengePassword (default: none required)")
    p.add_argument("--single-ca", action="store_true",
                   help="the CA is its own RA (GetCACert = CA certificate only), like scepserver")
    p.add_argument("--max-url", type=int, default=0,
                   help="answer 414 to request URLs longer than this (IIS: 2048)")
    p.add_argument("--ca-days", type=int, default=3650, metavar="N",
                   help="validity of a CA created in --dir (default 3650 days; an existing "
                        "CA is kept)")
    p.add_argument("--two-tier", action="store_true",
                   help="root -> issuing CA -> RA pair; GetCACert = RA pair + issuing CA "
                        "(no root); the root is served at %s (the issuing CA's caIssuers)"
                        % AIA_PATH)
    p.add_argument("--include-root", action="store_true",
                   help="with --two-tier: GetCACert also returns the root (last)")
    p.add_argument("--aia-broken", action="store_true",
                   help="with --two-tier: %s serves an HTML page, not a certificate" % AIA_PATH)
    p.add_argument("--aia-wrong", action="store_true",
                   help="with --two-tier: %s serves another self-signed root of the same "
                        "name, which did not sign the issuing CA" % AIA_PATH)
    p.add_argument("--pidfile", help="write the process id here")
    p.add_argument("--ready-file", help="write the port here once listening")
    args = p.parse_args(argv)
    if not args.two_tier:
        for flag in ("include_root", "aia_broken", "aia_wrong"):
            if getattr(args, flag):
                p.error("--%s needs --two-tier" % flag.replace("_", "-"))
    if args.aia_broken and args.aia_wrong:
        p.error("--aia-broken and --aia-wrong exclude each other")
    if args.two_tier and args.mode in NEXT_CA_MODES:
        p.error("--two-tier does not combine with mode %s" % args.mode)
    return args


def main(argv=None):
    args = parse_args(argv)
    aia = "broken" if args.aia_broken else "wrong" if args.aia_wrong else "good"

    def build():
        # listen first: the two-tier issuing CA names this port in its caIssuers URL
        try:
            server = Server(("127.0.0.1", args.port), Handler)
        except OSError as e:
            log("cannot listen on 127.0.0.1:%d: %s" % (args.port, e))
            return None
        port = server.server_address[1]
        try:
            pki = Pki(args.dir, args.single_ca, args.mode, args.ca_days, args.two_tier,
                      args.include_root, port, aia)
        except BaseException:
            server.server_close()
            raise
        server.responder = Responder(pki, args.mode, args.challenge)
        server.max_url = args.max_url
        flags = "".join(" " + f for f, on in [
            ("single-ca", args.single_ca), ("two-tier", args.two_tier),
            ("include-root", args.include_root), ("aia-broken", args.aia_broken),
            ("aia-wrong", args.aia_wrong)] if on)
        return server, "listening on http://127.0.0.1:%d/scep mode=%s%s%s" % (
            port, args.mode, flags,
            " challenge required" if args.challenge is not None else "")

    return serving.run(build, args.pidfile, args.ready_file, log)


if __name__ == "__main__":
    sys.exit(main())
