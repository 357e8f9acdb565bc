"""Tests of tests/doubles/ndes_admin.py (NDES MSCEP_ADMIN double) and
tests/doubles/challenge_verifier.py (one-time challenges for scepserver).

    /usr/bin/python3 -m unittest -v tests/doubles/test_ndes_admin.py
    (or: cd tests/doubles && /usr/bin/python3 -m unittest -v test_ndes_admin)

The double runs as a subprocess on a free 127.0.0.1 port and is stopped by PID
on cleanup.  NTLM is exercised with a client written here (Type 1, Type 2
parsing, Type 3 with NTLMv2) and with curl --ntlm, the independent reference.
The end-to-end test has the Debian scepserver enforce the challenges through
challenge_verifier.py, with scepclient as the SCEP client.
"""

import base64
import datetime
import hashlib
import hmac
import http.client
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import keypool  # noqa: E402
import ndes_admin  # noqa: E402  (md4 only; its KATs are below)
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.x509.oid import AttributeOID, NameOID  # noqa: E402

ADMIN = os.path.join(HERE, "ndes_admin.py")
VERIFIER = os.path.join(HERE, "challenge_verifier.py")
PASSWORD = "Pa$$w0rd \u00e9t\u00e9"      # a space and non-ASCII on purpose
# curl's NTLM hashes each password byte as one UTF-16 unit (Latin-1), so the
# curl tests use an ASCII password; see Curl.test_non_ascii_password_is_latin1
ASCII_PASSWORD = "S3cret pass$word"
PATH = "/certsrv/mscep_admin/"
HTTP_TIMEOUT = 20
CHALLENGE_RE = re.compile(r"enrollment challenge password is:\s*<B>\s*(\S+)\s*</B>")
THUMB_RE = re.compile(r"thumbprint \(hash value\) for the CA certificate is:\s*<B>\s*"
                      r"([0-9A-F]{8}(?: [0-9A-F]{8}){3})\s*</B>")

HAVE_CURL = shutil.which("curl") is not None
HAVE_SCEP = shutil.which("scepserver") is not None and shutil.which("scepclient") is not None

KEY = keypool.rsa_key()


def now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def self_signed(cn, ip=None):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
         .public_key(KEY.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now() - datetime.timedelta(minutes=5))
         .not_valid_after(now() + datetime.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True))
    if ip:
        import ipaddress
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
    return b.sign(KEY, hashes.SHA256())


def decode_page(body):
    """UTF-16LE with or without BOM (NUL bytes at odd offsets), else UTF-8."""
    if body.startswith(b"\xff\xfe"):
        return body[2:].decode("utf-16-le")
    if len(body) >= 2 and body[1::2][:64].count(0) > 16:
        return body.decode("utf-16-le")
    return body.decode("utf-8")


def challenge_in(body):
    m = CHALLENGE_RE.search(decode_page(body))
    return m.group(1) if m else None


# ---------------------------------------------------------------------------
# NTLM client side (MS-NLMP), written independently of the server's code

UNICODE, OEM, REQ_TARGET, NTLM_KEY = 0x1, 0x2, 0x4, 0x200
ALWAYS_SIGN, ESS, TARGET_INFO, VERSION = 0x8000, 0x80000, 0x800000, 0x2000000
KEY_128, KEY_EXCH, KEY_56 = 0x20000000, 0x40000000, 0x80000000


def ntlm_type1(flags=UNICODE | OEM | REQ_TARGET | NTLM_KEY | ALWAYS_SIGN | ESS | KEY_128 | KEY_56):
    return b"NTLMSSP\x00" + struct.pack("<II", 1, flags) + bytes(16)


def ntlm_parse_type2(msg):
    assert msg[:8] == b"NTLMSSP\x00", msg[:8]
    mtype, = struct.unpack_from("<I", msg, 8)
    assert mtype == 2, mtype
    tlen, _, toff = struct.unpack_from("<HHI", msg, 12)
    flags, = struct.unpack_from("<I", msg, 20)
    challenge = msg[24:32]
    ilen, _, ioff = struct.unpack_from("<HHI", msg, 40)
    info = msg[ioff:ioff + ilen]
    pairs, i = {}, 0
    while i + 4 <= len(info):
        av_id, av_len = struct.unpack_from("<HH", info, i)
        pairs[av_id] = info[i + 4:i + 4 + av_len]
        i += 4 + av_len
        if av_id == 0:
            break
    return dict(flags=flags, challenge=challenge, info=info, pairs=pairs,
                target=msg[toff:toff + tlen])


def ntowf_v2(password, user, domain):
    nt = ndes_admin.md4(password.encode("utf-16-le"))
    return hmac.new(nt, (user.upper() + domain).encode("utf-16-le"), hashlib.md5).digest()


def ntlm_type3(t2, user, domain, password, kind="v2", workstation="DEVICE"):
    unicode = bool(t2["flags"] & UNICODE)
    enc = (lambda s: s.encode("utf-16-le")) if unicode else (lambda s: s.encode("latin-1"))
    client_challenge = os.urandom(8)
    if kind == "v2":
        ts = struct.pack("<Q", 116444736000000000 + int(time.time() * 1e7))
        blob = (b"\x01\x01" + bytes(6) + ts + client_challenge + bytes(4) + t2["info"]
                + bytes(4))
        key = ntowf_v2(password, user, domain)
        nt = hmac.new(key, t2["challenge"] + blob, hashlib.md5).digest() + blob
        lm = hmac.new(key, t2["challenge"] + client_challenge, hashlib.md5).digest() \
            + client_challenge
    elif kind == "v1":
        nt, lm = os.urandom(24), os.urandom(24)
    elif kind == "lm-only":
        nt, lm = b"", os.urandom(24)
    else:
        raise ValueError(kind)
    fields = [lm, nt, enc(domain), enc(user), enc(workstation), b""]
    off = 64
    header, payload = b"", b""
    for f in fields:
        header += struct.pack("<HHI", len(f), len(f), off + len(payload))
        payload += f
    flags = t2["flags"] & ~KEY_EXCH
    return b"NTLMSSP\x00" + struct.pack("<I", 3) + header + struct.pack("<I", flags) + payload


def spnego_init(ntlm_token):
    """NegTokenInit offering NTLMSSP with an optimistic mechToken (what Windows sends)."""
    oid = bytes.fromhex("060a2b06010401823702020a")
    mech_types = ndes_admin.der(0xA0, ndes_admin.der(0x30, oid))
    mech_token = ndes_admin.der(0xA2, ndes_admin.der(0x04, ntlm_token))
    inner = ndes_admin.der(0xA0, ndes_admin.der(0x30, mech_types + mech_token))
    spnego_oid = bytes.fromhex("06062b0601050502")
    return ndes_admin.der(0x60, spnego_oid + inner)


def spnego_resp(ntlm_token):
    return ndes_admin.der(0xA1, ndes_admin.der(0x30, ndes_admin.der(
        0xA2, ndes_admin.der(0x04, ntlm_token))))


def spnego_token(resp):
    """The responseToken inside a NegTokenResp (found by the NTLMSSP signature)."""
    i = resp.find(b"NTLMSSP\x00")
    return resp[i:] if i >= 0 else None


# ---------------------------------------------------------------------------
# processes


class Tmp:
    def __init__(self, testcase):
        self.path = tempfile.mkdtemp(prefix="ndes-admin-test-")
        testcase.addCleanup(shutil.rmtree, self.path, True)

    def file(self, name, data=None, mode=0o600):
        p = os.path.join(self.path, name)
        if data is not None:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data if isinstance(data, bytes) else data.encode())
        return p


class AdminProcess(harness.ServerProcess):
    """ndes_admin.py as a subprocess (harness.ServerProcess); its password file and, unless
    given, its challenge directory in the test's tmp."""

    def __init__(self, tmp, *extra, user="enroll@example.com", password=PASSWORD,
                 challenge_dir=None, https=None):
        self.dir = challenge_dir or tmp.file("challenges-dir")
        self.password = password
        pwfile = tmp.file("password-%d" % id(self), password + "\n")
        self.https = https
        args = ["--dir", self.dir, "--user", user, "--password-file", pwfile] + list(extra)
        if https:
            args += ["--https", https[0], https[1]]
        super().__init__(ADMIN, *args)
        self.url = "%s://127.0.0.1:%d%s" % ("https" if https else "http", self.port, PATH)

    def lines(self, name):
        try:
            with open(os.path.join(self.dir, name)) as f:
                return f.read().split()
        except FileNotFoundError:
            return []

    def connect(self):
        if self.https:
            ctx = ssl.create_default_context(cafile=self.https[0])
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT,
                                               context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)


def get(conn, path=PATH, auth=None):
    """(status, headers list, body) on a kept-alive connection."""
    conn.request("GET", path, headers={"Authorization": auth} if auth else {})
    resp = conn.getresponse()
    body = resp.read()
    return resp.status, resp.getheaders(), body


def header_values(headers, name):
    return [v for k, v in headers if k.lower() == name.lower()]


def ntlm_login(conn, user, domain, password, scheme="NTLM", kind="v2", type1=None,
               wrap=False, path=PATH, t3_conn=None):
    """Full handshake; the Type 3 goes on t3_conn when given.  (status, headers, body, t2)."""
    t1 = type1 or ntlm_type1()
    status, headers, _ = get(conn, path, "%s %s" % (
        scheme, base64.b64encode(spnego_init(t1) if wrap else t1).decode()))
    if status != 401:
        return status, headers, None, None
    offers = [v for v in header_values(headers, "WWW-Authenticate")
              if v.lower().startswith(scheme.lower() + " ")]
    assert len(offers) == 1, headers
    raw = base64.b64decode(offers[0].split(" ", 1)[1])
    t2 = ntlm_parse_type2(spnego_token(raw) if wrap else raw)
    t3 = ntlm_type3(t2, user, domain, password, kind)
    status, headers, body = get(t3_conn or conn, path, "%s %s" % (
        scheme, base64.b64encode(spnego_resp(t3) if wrap else t3).decode()))
    return status, headers, body, t2


def curl(*args, timeout=30):
    return subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", "15"] + list(args),
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)


def make_csr(challenge=None, tag="PrintableString", cn="device.example.com"):
    b = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    if challenge is not None:
        enc = "utf-16-be" if tag == "BMPString" else "utf-8"
        b = b.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode(enc),
                            _tag=getattr(x509.name._ASN1Type, tag))
    return b.sign(KEY, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def verify(data, *args, env=None):
    e = dict(os.environ)
    e.pop("NDES_CHALLENGE_DIR", None)
    e.update(env or {})
    p = subprocess.run([VERIFIER] + list(args), input=data, capture_output=True, env=e,
                       timeout=30)
    return p.returncode


class Base(unittest.TestCase):
    def setUp(self):
        self.tmp = Tmp(self)

    def admin(self, *extra, **kw):
        a = AdminProcess(self.tmp, *extra, **kw)
        self.addCleanup(a.cleanup)
        self.addCleanup(self.check_log_clean, a)  # after stop(), before cleanup()
        self.addCleanup(a.stop)
        return a

    def check_log_clean(self, a):
        """Runs after stop(): no password and no challenge in the log."""
        log = a.log()
        self.assertNotIn(a.password, log)
        for c in a.lines("challenges") + a.lines("reusable"):
            self.assertNotIn(c, log)
        self.assertNotIn("Traceback", log)

    def assert_page(self, status, headers, body, a=None):
        self.assertEqual(status, 200, body[:200])
        self.assertEqual(header_values(headers, "Content-Type"), ["text/html"])
        self.assertNotEqual(body[:2], b"\xff\xfe")
        self.assertEqual(body[1::2][:40], bytes(40))   # UTF-16LE of ASCII text
        challenge = challenge_in(body)
        self.assertIsNotNone(challenge, decode_page(body)[:400])
        self.assertRegex(challenge, r"^[0-9A-F]{16}$")
        if a is not None:
            self.assertIn(challenge, a.lines("challenges"))
        return challenge


# ---------------------------------------------------------------------------


class Primitives(unittest.TestCase):
    def test_md4_rfc1320(self):
        for msg, digest in [(b"", "31d6cfe0d16ae931b73c59d7e0c089c0"),
                            (b"a", "bde52cb31de33e46245e05fbdbd6fb24"),
                            (b"abc", "a448017aaf21d8525fc10ae87aa6729d"),
                            (b"message digest", "d9130a8164549fe818874806e1c7014b"),
                            (b"12345678901234567890123456789012345678901234567890123456789012"
                             b"345678901234567890", "e33b4ddc9c38f2199c3e7b164fcc0536")]:
            self.assertEqual(ndes_admin.md4(msg).hex(), digest)

    def test_ntlmv2_ms_nlmp_vectors(self):
        # MS-NLMP 4.2.4: User/Domain/Password, server challenge 0123456789abcdef
        self.assertEqual(ndes_admin.nt_hash("Password").hex(), "a4f49c406510bdcab6824ee7c30fd852")
        key = ntowf_v2("Password", "User", "Domain")
        self.assertEqual(key.hex(), "0c868a403bfd7a93a3001ef22ef02e3f")
        self.assertEqual(key, ndes_admin.ntowf_v2("Password", "User", "Domain"))
        info = (struct.pack("<HH", 2, 12) + "Domain".encode("utf-16-le")
                + struct.pack("<HH", 1, 12) + "Server".encode("utf-16-le") + bytes(4))
        temp = b"\x01\x01" + bytes(6) + bytes(8) + b"\xaa" * 8 + bytes(4) + info + bytes(4)
        proof = hmac.new(key, bytes.fromhex("0123456789abcdef") + temp, hashlib.md5).digest()
        self.assertEqual(proof.hex(), "68cd0ab851e51c96aabc927bebef6a1c")

    def test_account_forms(self):
        for user, domain in [("enroll@example.com", None), ("EXAMPLE\\enroll", None),
                             ("enroll", "EXAMPLE"), ("enroll", "example.com")]:
            acc = ndes_admin.Account(user, domain)
            self.assertEqual((acc.name, acc.nb_domain, acc.dns_domain),
                             ("enroll", "EXAMPLE", "example.com"), user)
            for u, d in [("enroll@example.com", ""), ("ENROLL@EXAMPLE.COM", ""),
                         ("enroll", "EXAMPLE"), ("Enroll", "example"), ("enroll", ""),
                         ("enroll", "example.com")]:
                self.assertTrue(acc.matches(u, d), (user, u, d))
            for u, d in [("enroll@other.com", ""), ("other", "EXAMPLE"), ("enroll", "OTHER"),
                         ("enroll@example.com", "OTHER"), ("", "")]:
                self.assertFalse(acc.matches(u, d), (user, u, d))
        acc = ndes_admin.Account("CORP\\svc", "corp.example.net")
        self.assertEqual((acc.nb_domain, acc.dns_domain), ("CORP", "corp.example.net"))
        self.assertTrue(acc.matches("svc@corp.example.net", ""))


class Ntlm(Base):
    def test_handshake_both_user_forms_both_configs(self):
        for configured in ("enroll@example.com", "EXAMPLE\\enroll"):
            a = self.admin(user=configured, challenge_dir=self.tmp.file("d-" + configured[:4]))
            for user, domain in [("enroll@example.com", ""), ("enroll", "EXAMPLE"),
                                 ("ENROLL", "example.com"), ("enroll", "example")]:
                with self.subTest(configured=configured, user=user, domain=domain):
                    conn = a.connect()
                    try:
                        status, headers, body, t2 = ntlm_login(conn, user, domain, PASSWORD)
                    finally:
                        conn.close()
                    self.assert_page(status, headers, body, a)
                    self.assertTrue(t2["flags"] & UNICODE)
                    self.assertTrue(t2["flags"] & TARGET_INFO and t2["flags"] & ESS)
                    self.assertTrue(t2["flags"] & 0x200)
                    self.assertEqual(t2["pairs"][2].decode("utf-16-le"), "EXAMPLE")
                    self.assertEqual(t2["pairs"][4].decode("utf-16-le"), "example.com")
                    self.assertIn(1, t2["pairs"])
                    self.assertEqual(len(t2["pairs"][7]), 8)
                    self.assertEqual(t2["pairs"][0], b"")
            self.assertEqual(len(set(a.lines("challenges"))), 4)

    def test_unauthenticated_gets_ntlm_offer(self):
        a = self.admin()
        conn = a.connect()
        self.addCleanup(conn.close)
        status, headers, body = get(conn)
        self.assertEqual(status, 401)
        self.assertEqual(header_values(headers, "WWW-Authenticate"), ["NTLM"])
        self.assertIsNone(challenge_in(body))
        self.assertEqual(a.lines("challenges"), [])

    def test_oem_client(self):
        a = self.admin()
        conn = a.connect()
        self.addCleanup(conn.close)
        status, headers, body, t2 = ntlm_login(
            conn, "EXAMPLE\\enroll".split("\\")[1], "EXAMPLE", PASSWORD,
            type1=ntlm_type1(OEM | REQ_TARGET | NTLM_KEY | ALWAYS_SIGN | ESS))
        self.assertFalse(t2["flags"] & UNICODE)
        self.assertTrue(t2["flags"] & OEM)
        self.assert_page(status, headers, body, a)

    def test_wrong_password_and_user(self):
        a = self.admin()
        for user, domain, password in [("enroll@example.com", "", PASSWORD + "x"),
                                       ("enroll", "EXAMPLE", "pa$$w0rd \u00e9t\u00e9"),
                                       ("other@example.com", "", PASSWORD),
                                       ("enroll@example.org", "", PASSWORD),
                                       ("enroll", "OTHER", PASSWORD)]:
            with self.subTest(user=user, domain=domain):
                conn = a.connect()
                try:
                    status, headers, body, _ = ntlm_login(conn, user, domain, password)
                finally:
                    conn.close()
                self.assertEqual(status, 401)
                self.assertEqual(header_values(headers, "WWW-Authenticate"), ["NTLM"])
                self.assertIsNone(challenge_in(body))
        self.assertEqual(a.lines("challenges"), [])

    def test_type3_on_new_connection_fails(self):
        a = self.admin()
        c1, c2 = a.connect(), a.connect()
        self.addCleanup(c1.close)
        self.addCleanup(c2.close)
        status, _, body, _ = ntlm_login(c1, "enroll@example.com", "", PASSWORD, t3_conn=c2)
        self.assertEqual(status, 401)
        self.assertIsNone(challenge_in(body))
        self.assertIn("without a Type 2", a.log())
        self.assertEqual(a.lines("challenges"), [])

    def test_ntlmv1_and_lm_only_refused(self):
        a = self.admin()
        for kind in ("v1", "lm-only"):
            with self.subTest(kind=kind):
                conn = a.connect()
                try:
                    status, _, body, _ = ntlm_login(conn, "enroll@example.com", "", PASSWORD,
                                                    kind=kind)
                finally:
                    conn.close()
                self.assertEqual(status, 401)
                self.assertIsNone(challenge_in(body))
        self.assertEqual(a.lines("challenges"), [])

    def test_type2_is_single_use_and_auth_persists_on_connection(self):
        a = self.admin()
        conn = a.connect()
        self.addCleanup(conn.close)
        t1 = base64.b64encode(ntlm_type1()).decode()
        status, headers, _ = get(conn, auth="NTLM " + t1)
        t2 = ntlm_parse_type2(base64.b64decode(
            header_values(headers, "WWW-Authenticate")[0].split()[1]))
        t3 = "NTLM " + base64.b64encode(ntlm_type3(t2, "enroll@example.com", "",
                                                   PASSWORD)).decode()
        first = get(conn, auth=t3)
        c1 = self.assert_page(*first, a)
        # IIS keeps the connection authenticated: no header needed, a new challenge
        c2 = self.assert_page(*get(conn), a)
        self.assertNotEqual(c1, c2)
        # a replayed Type 3 (its Type 2 is spent) is refused
        conn2 = a.connect()
        self.addCleanup(conn2.close)
        get(conn2, auth="NTLM " + t1)
        self.assertEqual(get(conn2, auth=t3)[0], 401)

    def test_paths(self):
        a = self.admin()
        for path in ("/certsrv/mscep_admin/", "/CertSrv/MSCEP_ADMIN", "/CERTSRV/mscep_admin",
                     "/certsrv/mscep_admin/?x=1", "/CertSrv/MSCEP_ADMIN?foo"):
            with self.subTest(path=path):
                conn = a.connect()
                try:
                    status, headers, body, _ = ntlm_login(conn, "enroll", "EXAMPLE", PASSWORD,
                                                          path=path)
                finally:
                    conn.close()
                self.assert_page(status, headers, body, a)
        for path in ("/", "/certsrv/mscep/mscep.dll", "/certsrv/mscep_admin/x",
                     "/certsrv/mscep_adminx"):
            with self.subTest(path=path):
                conn = a.connect()
                try:
                    self.assertEqual(get(conn, path)[0], 404)
                finally:
                    conn.close()


class Negotiate(Base):
    def test_offers_both_schemes(self):
        a = self.admin("--auth", "negotiate")
        conn = a.connect()
        self.addCleanup(conn.close)
        status, headers, _ = get(conn)
        self.assertEqual(status, 401)
        self.assertEqual(header_values(headers, "WWW-Authenticate"), ["Negotiate", "NTLM"])

    def test_raw_spnego_and_ntlm(self):
        a = self.admin("--auth", "negotiate")
        for scheme, wrap in (("Negotiate", False), ("Negotiate", True), ("NTLM", False)):
            with self.subTest(scheme=scheme, spnego=wrap):
                conn = a.connect()
                try:
                    status, headers, body, _ = ntlm_login(conn, "enroll@example.com", "",
                                                          PASSWORD, scheme=scheme, wrap=wrap)
                finally:
                    conn.close()
                self.assert_page(status, headers, body, a)
                if wrap:   # SPNEGO accept-completed on the 200
                    final = header_values(headers, "WWW-Authenticate")
                    self.assertEqual(len(final), 1)
                    self.assertEqual(base64.b64decode(final[0].split()[1]),
                                     bytes.fromhex("a1073005a0030a0100"))

    def test_wrong_password_and_kerberos_token(self):
        a = self.admin("--auth", "negotiate")
        conn = a.connect()
        self.addCleanup(conn.close)
        status, _, _, _ = ntlm_login(conn, "enroll@example.com", "", "nope", scheme="Negotiate",
                                     wrap=True)
        self.assertEqual(status, 401)
        krb = ndes_admin.der(0x60, bytes.fromhex("06062b0601050502") + b"\xa0\x03\x30\x01\x00")
        status, headers, _ = get(conn, auth="Negotiate " + base64.b64encode(krb).decode())
        self.assertEqual(status, 401)
        self.assertEqual(header_values(headers, "WWW-Authenticate"), ["Negotiate", "NTLM"])

    def test_ntlm_mode_does_not_take_negotiate(self):
        a = self.admin()
        conn = a.connect()
        self.addCleanup(conn.close)
        status, headers, _ = get(conn, auth="Negotiate " + base64.b64encode(
            ntlm_type1()).decode())
        self.assertEqual(status, 401)
        self.assertEqual(header_values(headers, "WWW-Authenticate"), ["NTLM"])


@unittest.skipUnless(HAVE_CURL, "curl not installed")
class Curl(Base):
    """curl's NTLM (OEM Type 1, NTLMv2 Type 3) is the independent reference client."""

    def admin(self, *extra, **kw):
        kw.setdefault("password", ASCII_PASSWORD)
        return super().admin(*extra, **kw)

    def fetch(self, a, login, password, encoding="utf-8"):
        """curl --ntlm; the credentials go through a config file, not argv."""
        cfg = self.tmp.file("curl-cfg", ('user = "%s:%s"\n' % (
            login.replace("\\", "\\\\"), password.replace("\\", "\\\\"))).encode(encoding))
        return curl("--ntlm", "-K", cfg, "-o", "-", "-w", "\n%{http_code}", a.url)

    def test_curl_ntlm_both_forms(self):
        a = self.admin()
        for login in ("enroll@example.com", "EXAMPLE\\enroll", "example.com\\Enroll"):
            with self.subTest(login=login):
                p = self.fetch(a, login, ASCII_PASSWORD)
                body, _, code = p.stdout.rpartition(b"\n")
                self.assertEqual(code, b"200", p.stderr)
                challenge = challenge_in(body)
                self.assertRegex(challenge, r"^[0-9A-F]{16}$")
                self.assertIn(challenge, a.lines("challenges"))
        self.assertEqual(len(a.lines("challenges")), 3)
        self.assertIn("Type 2 sent (oem)", a.log())

    def test_non_ascii_password_is_latin1(self):
        """curl 7.88 builds the NT hash from the password bytes taken as Latin-1: a UTF-8
        non-ASCII password fails against a server hashing the real UTF-16 (like Windows);
        the same password handed over in Latin-1 works."""
        a = self.admin(password=PASSWORD)
        p = self.fetch(a, "enroll@example.com", PASSWORD)
        self.assertEqual(p.stdout.rpartition(b"\n")[2], b"401")
        p = self.fetch(a, "enroll@example.com", PASSWORD, encoding="latin-1")
        self.assertEqual(p.stdout.rpartition(b"\n")[2], b"200", p.stderr)

    def test_curl_wrong_password(self):
        a = self.admin()
        p = self.fetch(a, "enroll@example.com", "wrong")
        body, _, code = p.stdout.rpartition(b"\n")
        self.assertEqual(code, b"401")
        self.assertIsNone(challenge_in(body))

    def test_curl_negotiate_server(self):
        a = self.admin("--auth", "negotiate")
        p = self.fetch(a, "EXAMPLE\\enroll", ASCII_PASSWORD)
        body, _, code = p.stdout.rpartition(b"\n")
        self.assertEqual(code, b"200", p.stderr)
        self.assertIsNotNone(challenge_in(body))


class Pages(Base):
    def login(self, a, **kw):
        conn = a.connect()
        try:
            status, headers, body, _ = ntlm_login(conn, "enroll@example.com", "", PASSWORD, **kw)
        finally:
            conn.close()
        return status, headers, body

    def test_normal_page_shape(self):
        ca = self_signed("Test CA")
        ca_pem = self.tmp.file("ca.pem", ca.public_bytes(serialization.Encoding.PEM))
        a = self.admin("--ca-cert", ca_pem)
        status, headers, body = self.login(a)
        challenge = self.assert_page(status, headers, body, a)
        text = decode_page(body)
        self.assertIn('<Meta HTTP-Equiv="Content-Type" Content="text/html; charset=UTF-8">', text)
        self.assertIn("<Title>Network Device Enrollment Service</Title>", text)
        self.assertIn("The enrollment challenge password is: <B> %s </B>" % challenge, text)
        self.assertIn("This password can be used only once and will expire within 60 minutes.",
                      text)
        md5 = hashlib.md5(ca.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
        self.assertEqual(THUMB_RE.search(text).group(1),
                         " ".join(md5[i:i + 8] for i in range(0, 32, 8)))
        self.assertTrue(text.startswith("<HTML>") and text.rstrip().endswith("</HTML>"))
        st = os.stat(os.path.join(a.dir, "challenges"))
        self.assertEqual(st.st_mode & 0o777, 0o600)

    def test_random_thumbprint_without_ca(self):
        a = self.admin()
        self.assertIsNotNone(THUMB_RE.search(decode_page(self.login(a)[2])))

    def test_cache_full_after_n(self):
        a = self.admin("--cache", "2")
        got = [challenge_in(self.login(a)[2]) for _ in range(3)]
        self.assertIsNotNone(got[0])
        self.assertIsNotNone(got[1])
        self.assertIsNone(got[2])
        status, headers, body = self.login(a)
        self.assertEqual(status, 200)
        self.assertEqual(body[1::2][:40], bytes(40))
        self.assertIn("The password cache is full.", decode_page(body))
        # consuming one (what the verifier does) frees a slot
        self.assertEqual(verify(make_csr(got[0]), "--dir", a.dir), 0)
        self.assertIsNotNone(challenge_in(self.login(a)[2]))
        self.assertIsNone(challenge_in(self.login(a)[2]))
        self.assertEqual(len(a.lines("challenges")), 3)

    def test_mode_cache_full_and_no_permission(self):
        for mode, marker in (("cache-full", "The password cache is full."),
                             ("no-permission", "You do not have sufficient permission to "
                              "enroll with SCEP. Please contact your system administrator.")):
            with self.subTest(mode=mode):
                a = self.admin("--mode", mode, challenge_dir=self.tmp.file("d-" + mode))
                status, headers, body = self.login(a)
                self.assertEqual(status, 200)
                self.assertEqual(header_values(headers, "Content-Type"), ["text/html"])
                self.assertEqual(body[1::2][:40], bytes(40))
                text = decode_page(body)
                self.assertIn(marker, text)
                self.assertIsNone(challenge_in(body))
                self.assertEqual(a.lines("challenges"), [])

    def test_encodings(self):
        a = self.admin("--mode", "utf8", challenge_dir=self.tmp.file("d-utf8"))
        body = self.login(a)[2]
        self.assertNotIn(b"\x00", body)
        self.assertIn(challenge_in(body), a.lines("challenges"))
        b = self.admin("--mode", "utf16-bom", challenge_dir=self.tmp.file("d-bom"))
        body = self.login(b)[2]
        self.assertEqual(body[:2], b"\xff\xfe")
        self.assertIn(challenge_in(body), b.lines("challenges"))

    def test_will_not_expire(self):
        a = self.admin("--mode", "will-not-expire", "--cache", "1")
        pages = [decode_page(self.login(a)[2]) for _ in range(3)]
        challenges = {CHALLENGE_RE.search(p).group(1) for p in pages}
        self.assertEqual(len(challenges), 1)
        self.assertIn("This password will not expire.", pages[0])
        challenge = challenges.pop()
        self.assertEqual(a.lines("reusable"), [challenge])
        for _ in range(2):  # reusable: accepted every time
            self.assertEqual(verify(make_csr(challenge), "--dir", a.dir), 0)

    def test_chars_and_length(self):
        for args, pattern in ((["--length", "32"], r"^[0-9A-F]{32}$"),
                              (["--chars", "digits", "--length", "8"], r"^[0-9]{8}$"),
                              (["--chars", "alnum", "--length", "20"], r"^[0-9A-Za-z]{20}$")):
            with self.subTest(args=args):
                a = self.admin(*args, challenge_dir=self.tmp.file("d-%s" % "".join(args)))
                self.assertRegex(CHALLENGE_RE.search(decode_page(self.login(a)[2])).group(1),
                                 pattern)

    def test_redirect_once(self):
        a = self.admin("--redirect-to", "https://ndes.example.com/CertSrv/MSCEP_ADMIN/")
        conn = a.connect()
        self.addCleanup(conn.close)
        status, headers, _ = get(conn)
        self.assertEqual(status, 302)
        self.assertEqual(header_values(headers, "Location"),
                         ["https://ndes.example.com/CertSrv/MSCEP_ADMIN/"])
        self.assertEqual(get(conn)[0], 401)
        self.assert_page(*self.login(a), a)

    def test_sigterm_exit_0_and_ready_file_removed(self):
        a = self.admin()
        self.login(a)
        self.assertEqual(a.stop(), 0)
        self.assertFalse(os.path.exists(a.ready))
        self.assertIn("stopping", a.log())

    def test_bad_start(self):
        p = subprocess.run([sys.executable, ADMIN, "--port", "0", "--dir", self.tmp.path,
                            "--user", "u@example.com", "--password-file",
                            self.tmp.file("missing")], capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 1)


class Basic(Base):
    def setUp(self):
        super().setUp()
        cert = self_signed("127.0.0.1", ip="127.0.0.1")
        self.cert = self.tmp.file("tls.pem", cert.public_bytes(serialization.Encoding.PEM))
        self.key = self.tmp.file("tls.key", KEY.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))

    def basic(self, login, password):
        return "Basic " + base64.b64encode(("%s:%s" % (login, password)).encode()).decode()

    def test_basic_over_https(self):
        a = self.admin("--auth", "basic", user="EXAMPLE\\enroll", https=(self.cert, self.key))
        conn = a.connect()
        self.addCleanup(conn.close)
        status, headers, _ = get(conn)
        self.assertEqual(status, 401)
        self.assertEqual(header_values(headers, "WWW-Authenticate"), ['Basic realm="127.0.0.1"'])
        for login in ("enroll@example.com", "EXAMPLE\\enroll", "Enroll"):
            with self.subTest(login=login):
                self.assert_page(*get(conn, auth=self.basic(login, PASSWORD)), a)
        for login, pw in (("enroll@example.com", "x"), ("bob@example.com", PASSWORD),
                          ("OTHER\\enroll", PASSWORD)):
            with self.subTest(login=login, pw=pw):
                self.assertEqual(get(conn, auth=self.basic(login, pw))[0], 401)
        # NTLM is not offered in basic mode
        self.assertEqual(get(conn, auth="NTLM " + base64.b64encode(ntlm_type1()).decode())[0],
                         401)

    def test_untrusted_certificate_refused_by_client(self):
        a = self.admin("--auth", "basic", https=(self.cert, self.key))
        conn = http.client.HTTPSConnection("127.0.0.1", a.port, timeout=HTTP_TIMEOUT,
                                           context=ssl.create_default_context())
        self.addCleanup(conn.close)
        with self.assertRaises(ssl.SSLCertVerificationError):
            get(conn)
        # the server survives a failed handshake
        conn = a.connect()
        self.addCleanup(conn.close)
        self.assert_page(*get(conn, auth=self.basic("enroll@example.com", PASSWORD)), a)

    @unittest.skipUnless(HAVE_CURL, "curl not installed")
    def test_curl_basic_ca_file(self):
        a = self.admin("--auth", "basic", https=(self.cert, self.key))
        cfg = self.tmp.file("cfg", 'user = "enroll@example.com:%s"\n' % PASSWORD)
        p = curl("--basic", "-K", cfg, "--cacert", self.cert, "-o", "-", a.url)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(challenge_in(p.stdout), a.lines("challenges"))
        p = curl("--basic", "-K", cfg, "-o", "-", a.url)   # no CA file: untrusted
        self.assertEqual(p.returncode, 60, p.stderr)


class Verifier(Base):
    def setUp(self):
        super().setUp()
        self.dir = self.tmp.file("vdir")
        os.mkdir(self.dir)
        with open(os.path.join(self.dir, "challenges"), "w") as f:
            f.write("AAAA1111BBBB2222\nCCCC3333DDDD4444\n")

    def test_once_then_rejected(self):
        csr = make_csr("AAAA1111BBBB2222")
        self.assertEqual(verify(csr, "--dir", self.dir), 0)
        self.assertEqual(verify(csr, "--dir", self.dir), 1)
        self.assertEqual(verify(make_csr("AAAA1111BBBB2222", cn="other"), "--dir", self.dir), 1)
        with open(os.path.join(self.dir, "used")) as f:
            self.assertEqual(f.read(), "AAAA1111BBBB2222\n")
        with open(os.path.join(self.dir, "verifier.log")) as f:
            log = f.read()
        self.assertIn("accepted one-time challenge", log)
        self.assertIn("already used", log)
        self.assertNotIn("AAAA1111BBBB2222", log)

    def test_rejections(self):
        cases = [(make_csr("0000000000000000"), "unknown"),
                 (make_csr("aaaa1111bbbb2222"), "unknown"),          # case matters
                 (make_csr(None), "missing"),
                 (make_csr("CCCC3333DDDD4444", tag="BMPString"), "bmp"),
                 (make_csr("CCCC3333DDDD4444", tag="IA5String"), "not decodable"),
                 (b"garbage", "not a CSR"),
                 (b"", "not a CSR")]
        for data, why in cases:
            with self.subTest(why=why):
                self.assertEqual(verify(data, "--dir", self.dir), 1)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "used")))
        self.assertEqual(verify(make_csr(None), "--dir", self.dir, "--allow-no-challenge"), 0)
        # a tampered CSR (signature no longer verifies)
        csr = bytearray(make_csr("CCCC3333DDDD4444"))
        csr[-5] ^= 1
        self.assertEqual(verify(bytes(csr), "--dir", self.dir), 1)
        # UTF8String is accepted unless --printable-only
        utf8 = make_csr("CCCC3333DDDD4444", tag="UTF8String")
        self.assertEqual(verify(utf8, "--dir", self.dir, "--printable-only"), 1)
        self.assertEqual(verify(utf8, "--dir", self.dir), 0)

    def test_dir_from_env_wrapper_and_missing(self):
        self.assertEqual(verify(make_csr("AAAA1111BBBB2222")), 2)   # no dir at all
        self.assertEqual(verify(make_csr("AAAA1111BBBB2222"),
                                env={"NDES_CHALLENGE_DIR": self.dir}), 0)
        p = subprocess.run([VERIFIER, "--write-wrapper", self.dir], capture_output=True,
                           text=True, timeout=30)
        wrapper = p.stdout.strip()
        self.assertEqual(wrapper, os.path.join(self.dir, "verify.sh"))
        self.assertTrue(os.access(wrapper, os.X_OK))
        run = lambda csr: subprocess.run([wrapper], input=csr, capture_output=True,  # noqa
                                         cwd="/", timeout=30).returncode
        self.assertEqual(run(make_csr("CCCC3333DDDD4444")), 0)
        self.assertEqual(run(make_csr("CCCC3333DDDD4444")), 1)

    def test_concurrent_use_accepts_exactly_one(self):
        csr = make_csr("CCCC3333DDDD4444")
        procs = [subprocess.Popen([VERIFIER, "--dir", self.dir], stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(8)]
        codes = []
        for p in procs:
            p.stdin.write(csr)
            p.stdin.close()
        for p in procs:
            codes.append(p.wait(30))
        self.assertEqual(sorted(codes), [0] + [1] * 7)


# ---------------------------------------------------------------------------


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@unittest.skipUnless(HAVE_SCEP and HAVE_CURL, "scepserver/scepclient/curl not installed")
class EndToEnd(Base):
    """ndes_admin issues, curl --ntlm fetches, scepserver + verifier enforce, scepclient enrolls."""

    @classmethod
    def setUpClass(cls):
        cls.ca_dir = tempfile.mkdtemp(prefix="ndes-e2e-ca-")
        p = subprocess.run(["scepserver", "ca", "-init", "-depot", "depot"], cwd=cls.ca_dir,
                           capture_output=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError("scepserver ca -init: %s" % p.stderr)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.ca_dir, ignore_errors=True)

    def start_scepserver(self, wrapper):
        work = self.tmp.file("scepserver")
        shutil.copytree(os.path.join(self.ca_dir, "depot"), os.path.join(work, "depot"))
        log = open(os.path.join(work, "log"), "wb")
        self.addCleanup(log.close)
        for _ in range(3):
            port = free_port()
            # no -challenge: scepserver would check it too, after the verifier consumed
            # the one-time challenge, and every request would fail
            proc = subprocess.Popen(["scepserver", "-depot", "depot", "-port", str(port),
                                     "-csrverifierexec", wrapper], cwd=work,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            self.addCleanup(harness.stop_process, proc)
            deadline = time.monotonic() + 10
            while proc.poll() is None and time.monotonic() < deadline:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                try:
                    c.request("GET", "/scep?operation=GetCACaps")
                    if c.getresponse().status == 200:
                        return "http://127.0.0.1:%d/scep" % port
                except OSError:
                    time.sleep(0.05)
                finally:
                    c.close()
            harness.stop_process(proc)
        self.fail("scepserver did not start")

    def enroll(self, url, challenge, name):
        work = self.tmp.file("client-" + name)
        os.mkdir(work)  # scepclient writes csr.pem/self.pem into its cwd
        p = subprocess.run(["scepclient", "-server-url", url, "-private-key", "k.pem",
                            "-certificate", "c.pem", "-challenge", challenge, "-cn", name],
                           cwd=work, capture_output=True, timeout=60)
        return p.returncode, p.stdout + p.stderr, os.path.exists(os.path.join(work, "c.pem"))

    def test_challenge_enforced_by_scepserver(self):
        ca_pem = os.path.join(self.ca_dir, "depot", "ca.pem")
        a = self.admin("--ca-cert", ca_pem, password=ASCII_PASSWORD)
        p = subprocess.run([VERIFIER, "--write-wrapper", a.dir], capture_output=True, text=True,
                           timeout=30)
        url = self.start_scepserver(p.stdout.strip())
        cfg = self.tmp.file("cfg", 'user = "enroll@example.com:%s"\n' % ASCII_PASSWORD)
        c = curl("--ntlm", "-K", cfg, "-o", "-", a.url)
        self.assertEqual(c.returncode, 0, c.stderr)
        text = decode_page(c.stdout)
        challenge = CHALLENGE_RE.search(text).group(1)
        with open(ca_pem, "rb") as f:
            der = x509.load_pem_x509_certificate(f.read()).public_bytes(
                serialization.Encoding.DER)
        self.assertEqual(THUMB_RE.search(text).group(1).replace(" ", ""),
                         hashlib.md5(der).hexdigest().upper())

        rc, out, cert = self.enroll(url, challenge, "device-1")
        self.assertEqual(rc, 0, out)
        self.assertTrue(cert)
        rc, out, cert = self.enroll(url, challenge, "device-2")   # reuse
        self.assertNotEqual(rc, 0)
        self.assertIn(b"badRequest", out)
        self.assertFalse(cert)
        rc, out, cert = self.enroll(url, "0123456789ABCDEF", "device-3")   # never issued
        self.assertNotEqual(rc, 0)
        self.assertFalse(cert)
        with open(os.path.join(a.dir, "verifier.log")) as f:
            log = f.read()
        self.assertEqual(log.count("accepted one-time challenge"), 1)
        self.assertEqual(log.count("challenge already used"), 1)
        self.assertEqual(log.count("challenge unknown"), 1)


if __name__ == "__main__":
    unittest.main()
