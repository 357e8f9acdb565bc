#!/usr/bin/python3
"""Microsoft NDES challenge page (MSCEP_ADMIN) test double.

A http.server double of the IIS page that hands out one-time SCEP challenge
passwords, behind IIS Windows authentication (NTLM, Negotiate offering NTLM)
or Basic.  It listens on 127.0.0.1 only.  With tests/doubles/challenge_verifier.py
behind `scepserver -csrverifierexec`, the challenges it issues are enforced by
a real SCEP server.

    ndes_admin.py --port PORT --dir DIR --user USER --password-file FILE
                  [--domain DOMAIN] [--auth ntlm|negotiate|basic] [--mode MODE]
                  [--https CERT KEY] [--cache N] [--chars hex|digits|alnum]
                  [--length N] [--ca-cert PEM] [--redirect-to URL]
                  [--ready-file FILE] [--pidfile FILE]

--port 0 picks a free port; the ready-file (written atomically, content
"PORT\\n") appears once the socket listens and is removed on exit, like
scep_responder.py.  SIGTERM/SIGINT: clean exit 0.

Paths: /certsrv/mscep_admin (any case, optional trailing slash and query);
anything else 404.  Only GET (405 otherwise).

Account: --user is "user@dns.domain" or "NBDOMAIN\\user" (or a bare "user").
--domain sets the NetBIOS domain name, or the DNS domain name when it holds a
dot.  Unset parts are derived: NetBIOS = first label of the DNS domain in
upper case; DNS = NetBIOS in lower case + ".com" ("EXAMPLE\\enroll" is also
"enroll@example.com"); nothing at all -> EXAMPLE / example.com.  A client may
name the account as "user@dns" (empty domain field), as user + domain field
NetBIOS or DNS name, or as a bare user with an empty domain (the server's own
domain, as IIS does); user and domain compare case-insensitively.

Authentication (per TCP connection, HTTP/1.1 keep-alive):
  ntlm       401 + "WWW-Authenticate: NTLM"; Type 1 -> 401 + Type 2 (random server
             challenge, target info NbDomain/NbComputer/DnsDomain/DnsComputer/
             Timestamp/EOL); Type 3 must carry an NTLMv2 response that verifies
             (HMAC-MD5 with NTOWFv2 of the user and domain strings the client sent).
             NTLMv1/NTLM2-session (24-byte NT response), LM-only and anonymous are
             rejected.  A Type 3 on another connection than its Type 2 fails.
             Once authenticated, later requests on the connection need no header
             (IIS's default); a new Type 1 restarts the handshake.
  negotiate  as ntlm, but the 401 offers "Negotiate" and "NTLM" (two headers, like
             IIS).  "Negotiate" tokens may be raw NTLMSSP or SPNEGO-wrapped NTLMSSP
             (answered as SPNEGO NegTokenResp); Kerberos-only tokens are rejected.
  basic      401 + 'WWW-Authenticate: Basic realm="..."'.
Failed authentication -> 401 again, never a page.

Pages (200, Content-Type "text/html" without charset, body UTF-16LE without BOM
while the HTML's meta tag claims UTF-8 -- the real NDES shape):
  normal           a fresh challenge (secrets; --chars, --length) appended to
                   DIR/challenges (one per line, fsync'ed, mode 0600), then the
                   page with the CA thumbprint (MD5 of --ca-cert's DER, else random)
                   and "The enrollment challenge password is: <B> ... </B>".
                   When --cache unused challenges (in DIR/challenges, not in
                   DIR/used) are outstanding: the "password cache is full" page.
                   Unlike NDES (60 minutes), challenges never expire here.
  cache-full       always the "The password cache is full." page
  no-permission    always "You do not have sufficient permission to enroll with SCEP. ..."
  utf8             as normal, body UTF-8
  utf16-bom        as normal, body UTF-16LE with BOM FF FE
  will-not-expire  single-password mode: one challenge (kept in DIR/reusable, which the
                   verifier accepts any number of times), "This password will not expire."
--redirect-to URL: the first request that is not authenticated yet gets
"302 Location: URL" (once per server run).

DIR/lock is flock'ed around reading/appending the challenge files (shared with
challenge_verifier.py).  One line per request is logged to stderr; passwords,
challenges and Authorization headers never are.
"""

import argparse
import base64
import fcntl
import hashlib
import hmac
import os
import secrets
import socketserver
import ssl
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import serving  # noqa: E402
from serving import append_line, read_lines, write_file  # noqa: E402

MODES = {
    "normal": "issue a one-time challenge per page",
    "cache-full": "always 'The password cache is full.'",
    "no-permission": "always 'You do not have sufficient permission to enroll with SCEP.'",
    "utf8": "as normal, body in UTF-8",
    "utf16-bom": "as normal, body UTF-16LE with a byte-order mark",
    "will-not-expire": "single-password mode: the same reusable challenge every time",
}
AUTHS = ("ntlm", "negotiate", "basic")
CHARSETS = {"hex": "0123456789ABCDEF", "digits": "0123456789",
            "alnum": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"}
ADMIN_PATH = "/certsrv/mscep_admin"
COMPUTER = "NDES01"
CA_NAME = "EXAMPLE-ISSUING-CA"
MAX_HEADER_TOKEN = 16384     # base64 Authorization token bytes accepted
MAX_DISCARD = 1 << 20        # request body bytes read and dropped


def log(msg):
    sys.stderr.write("ndes_admin: %s\n" % " ".join(str(msg).split()))
    sys.stderr.flush()


# ---------------------------------------------------------------------------
# MD4 (RFC 1320): hashlib's md4 is gone under OpenSSL 3 without the legacy provider


def md4(data):
    def f(x, y, z):
        return (x & y) | (~x & z)

    def g(x, y, z):
        return (x & y) | (x & z) | (y & z)

    def h(x, y, z):
        return x ^ y ^ z

    def rotl(v, s):
        v &= 0xFFFFFFFF
        return ((v << s) | (v >> (32 - s))) & 0xFFFFFFFF

    msg = bytes(data)
    bit_len = (8 * len(msg)) & 0xFFFFFFFFFFFFFFFF
    msg += b"\x80" + b"\x00" * ((55 - len(msg)) % 64) + struct.pack("<Q", bit_len)
    a, b, c, d = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476
    for off in range(0, len(msg), 64):
        x = struct.unpack("<16I", msg[off:off + 64])
        aa, bb, cc, dd = a, b, c, d
        for i in (0, 4, 8, 12):
            a = rotl(a + f(b, c, d) + x[i], 3)
            d = rotl(d + f(a, b, c) + x[i + 1], 7)
            c = rotl(c + f(d, a, b) + x[i + 2], 11)
            b = rotl(b + f(c, d, a) + x[i + 3], 19)
        for i in (0, 1, 2, 3):
            a = rotl(a + g(b, c, d) + x[i] + 0x5A827999, 3)
            d = rotl(d + g(a, b, c) + x[i + 4] + 0x5A827999, 5)
            c = rotl(c + g(d, a, b) + x[i + 8] + 0x5A827999, 9)
            b = rotl(b + g(c, d, a) + x[i + 12] + 0x5A827999, 13)
        for i in (0, 2, 1, 3):
            a = rotl(a + h(b, c, d) + x[i] + 0x6ED9EBA1, 3)
            d = rotl(d + h(a, b, c) + x[i + 8] + 0x6ED9EBA1, 9)
            c = rotl(c + h(d, a, b) + x[i + 4] + 0x6ED9EBA1, 11)
            b = rotl(b + h(c, d, a) + x[i + 12] + 0x6ED9EBA1, 15)
        a, b = (a + aa) & 0xFFFFFFFF, (b + bb) & 0xFFFFFFFF
        c, d = (c + cc) & 0xFFFFFFFF, (d + dd) & 0xFFFFFFFF
    return struct.pack("<4I", a, b, c, d)


# ---------------------------------------------------------------------------
# NTLM (MS-NLMP) server side

NTLMSSP = b"NTLMSSP\x00"
NEG_UNICODE = 0x00000001
NEG_OEM = 0x00000002
NEG_REQUEST_TARGET = 0x00000004
NEG_SIGN = 0x00000010
NEG_SEAL = 0x00000020
NEG_NTLM = 0x00000200
NEG_ALWAYS_SIGN = 0x00008000
TARGET_TYPE_DOMAIN = 0x00010000
NEG_EXTENDED_SESSIONSECURITY = 0x00080000
NEG_TARGET_INFO = 0x00800000
NEG_VERSION = 0x02000000
NEG_128 = 0x20000000
NEG_KEY_EXCH = 0x40000000
NEG_56 = 0x80000000
ECHOED = (NEG_SIGN | NEG_SEAL | NEG_EXTENDED_SESSIONSECURITY | NEG_128 | NEG_KEY_EXCH
          | NEG_56)

AV_EOL, AV_NB_COMPUTER, AV_NB_DOMAIN, AV_DNS_COMPUTER, AV_DNS_DOMAIN = 0, 1, 2, 3, 4
AV_TIMESTAMP = 7
WINDOWS_VERSION = bytes([10, 0]) + struct.pack("<H", 17763) + b"\x00\x00\x00\x0f"
FILETIME_EPOCH = 116444736000000000   # 1601-01-01 -> 1970-01-01 in 100 ns


class NtlmError(Exception):
    pass


def nt_hash(password):
    return md4(password.encode("utf-16-le"))


def ntowf_v2(password, user, domain):
    return hmac.new(nt_hash(password), (user.upper() + domain).encode("utf-16-le"),
                    "md5").digest()


def filetime_now():
    return FILETIME_EPOCH + time.time_ns() // 100


def av_pairs(pairs):
    out = b""
    for av_id, value in pairs:
        out += struct.pack("<HH", av_id, len(value)) + value
    return out + struct.pack("<HH", AV_EOL, 0)


def field(data, off):
    """The payload a security buffer (len, maxlen, offset) at off points to."""
    if off + 8 > len(data):
        raise NtlmError("message too short")
    length, _, start = struct.unpack_from("<HHI", data, off)
    if start + length > len(data):
        raise NtlmError("field out of bounds")
    return data[start:start + length]


def message_type(data):
    if len(data) < 12 or not data.startswith(NTLMSSP):
        raise NtlmError("not an NTLMSSP message")
    return struct.unpack_from("<I", data, 8)[0]


def challenge_message(negotiate, server_challenge, account):
    """Type 2 for the client's Type 1 bytes."""
    if message_type(negotiate) != 1 or len(negotiate) < 16:
        raise NtlmError("expected a NEGOTIATE_MESSAGE")
    client_flags = struct.unpack_from("<I", negotiate, 12)[0]
    flags = (NEG_REQUEST_TARGET | NEG_NTLM | NEG_ALWAYS_SIGN | TARGET_TYPE_DOMAIN
             | NEG_TARGET_INFO | NEG_VERSION | (client_flags & ECHOED))
    # MS-NLMP 3.2.5.1.1: Unicode when offered, else OEM when that alone is offered
    unicode = bool(client_flags & NEG_UNICODE) or not client_flags & NEG_OEM
    flags |= NEG_UNICODE if unicode else NEG_OEM
    target = account.nb_domain.encode("utf-16-le" if unicode else "latin-1")
    info = av_pairs([
        (AV_NB_DOMAIN, account.nb_domain.encode("utf-16-le")),
        (AV_NB_COMPUTER, COMPUTER.encode("utf-16-le")),
        (AV_DNS_DOMAIN, account.dns_domain.encode("utf-16-le")),
        (AV_DNS_COMPUTER, ("%s.%s" % (COMPUTER.lower(), account.dns_domain)).encode("utf-16-le")),
        (AV_TIMESTAMP, struct.pack("<Q", filetime_now())),
    ])
    header_len = 56
    msg = (NTLMSSP + struct.pack("<I", 2)
           + struct.pack("<HHI", len(target), len(target), header_len)
           + struct.pack("<I", flags) + server_challenge + bytes(8)
           + struct.pack("<HHI", len(info), len(info), header_len + len(target))
           + WINDOWS_VERSION)
    assert len(msg) == header_len
    return msg + target + info, flags


def verify_authenticate(auth, server_challenge, type2_flags, account, password):
    """Check a Type 3; returns (user, domain) as the client named them, raises NtlmError."""
    if message_type(auth) != 3:
        raise NtlmError("expected an AUTHENTICATE_MESSAGE")
    lm = field(auth, 12)
    nt = field(auth, 20)
    flags = struct.unpack_from("<I", auth, 60)[0] if len(auth) >= 64 else type2_flags
    enc = "utf-16-le" if flags & NEG_UNICODE else "latin-1"
    try:
        domain = field(auth, 28).decode(enc)
        user = field(auth, 36).decode(enc)
    except UnicodeDecodeError:
        raise NtlmError("undecodable user or domain")
    if not user and not nt:
        raise NtlmError("anonymous authentication refused")
    if not nt:
        raise NtlmError("LM-only response refused (%d bytes LM)" % len(lm))
    if len(nt) == 24:
        raise NtlmError("NTLMv1 response refused")
    if len(nt) < 16 + 28 or nt[16:18] != b"\x01\x01":
        raise NtlmError("malformed NTLMv2 response (%d bytes)" % len(nt))
    if not account.matches(user, domain):
        raise NtlmError("unknown account %r domain %r" % (user, domain))
    blob = nt[16:]
    proof = hmac.new(ntowf_v2(password, user, domain), server_challenge + blob, "md5").digest()
    if not hmac.compare_digest(proof, nt[:16]):
        raise NtlmError("NTLMv2 response does not verify (wrong password) for %r domain %r"
                        % (user, domain))
    return user, domain


# SPNEGO (RFC 4178) around NTLMSSP, the "Negotiate" scheme's NTLM fallback
NTLMSSP_OID_DER = bytes.fromhex("060a2b06010401823702020a")   # 1.3.6.1.4.1.311.2.2.10


def der(tag, content):
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def neg_token_resp(state, token=None):
    """NegTokenResp: negState (0 accept-completed, 1 accept-incomplete), NTLMSSP, token."""
    body = der(0xA0, der(0x0A, bytes([state])))
    if token is not None:
        body += der(0xA1, NTLMSSP_OID_DER) + der(0xA2, der(0x04, token))
    return der(0xA1, der(0x30, body))


def unwrap_negotiate(token):
    """(ntlm message, spnego?) from a Negotiate token: raw NTLMSSP or SPNEGO-wrapped."""
    if token.startswith(NTLMSSP):
        return token, False
    if token[:1] in (b"\x60", b"\xa1"):
        i = token.find(NTLMSSP)
        if i >= 0:
            return token[i:], True
        raise NtlmError("Negotiate token without NTLMSSP (Kerberos?) refused")
    raise NtlmError("unrecognised Negotiate token")


# ---------------------------------------------------------------------------
# account


class Account:
    def __init__(self, user, domain=None):
        nb = dns = None
        if "\\" in user:
            nb, name = user.split("\\", 1)
        elif "@" in user:
            name, dns = user.rsplit("@", 1)
        else:
            name = user
        if domain:
            if "." in domain:
                dns = domain
            else:
                nb = domain
        if not nb and not dns:
            nb, dns = "EXAMPLE", "example.com"
        self.name = name
        self.nb_domain = (nb or dns.split(".")[0]).upper()
        self.dns_domain = (dns or nb.lower() + ".com").lower()
        if not name:
            raise ValueError("empty user name")

    def matches(self, user, domain):
        """Does (user, domain) as a client sent them name this account?"""
        domains = ("", self.nb_domain.lower(), self.dns_domain.lower())
        if "@" in user:
            name, suffix = user.rsplit("@", 1)
            if suffix.lower() != self.dns_domain:
                return False
        else:
            name = user
        return name.lower() == self.name.lower() and domain.lower() in domains

    def matches_basic(self, login):
        if "\\" in login:
            domain, user = login.split("\\", 1)
            return bool(domain) and self.matches(user, domain)
        return self.matches(login, "")


# ---------------------------------------------------------------------------
# challenge store (shared with challenge_verifier.py)


class Store:
    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.challenges = os.path.join(directory, "challenges")
        self.used = os.path.join(directory, "used")
        self.reusable = os.path.join(directory, "reusable")
        self.lock_path = os.path.join(directory, "lock")
        self.thread_lock = threading.Lock()

    def locked(self):
        store = self

        class Locked:
            def __enter__(self):
                store.thread_lock.acquire()
                self.fd = os.open(store.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(self.fd, fcntl.LOCK_EX)

            def __exit__(self, *exc):
                os.close(self.fd)        # releases the flock
                store.thread_lock.release()
        return Locked()

    def issue(self, generate, cache):
        """A new challenge, or None when `cache` unused ones are outstanding."""
        with self.locked():
            used = set(read_lines(self.used))
            outstanding = [c for c in read_lines(self.challenges) if c not in used]
            if len(outstanding) >= cache:
                return None
            challenge = generate()
            append_line(self.challenges, challenge)
            return challenge

    def single(self, generate):
        """The single (reusable) password, created on first use."""
        with self.locked():
            existing = read_lines(self.reusable)
            if existing:
                return existing[0]
            challenge = generate()
            append_line(self.reusable, challenge)
            return challenge


# ---------------------------------------------------------------------------
# pages

PAGE_HEAD = (
    '<HTML><Head><Meta HTTP-Equiv="Content-Type" Content="text/html; charset=UTF-8">\r\n'
    '<Title>Network Device Enrollment Service</Title></Head>\r\n'
    '<Body BgColor=#FFFFFF><Font ID=locPageFont Face="Arial">\r\n'
    '<Table Border=0 CellSpacing=0 CellPadding=4 Width=100% BgColor=#008080>\r\n'
    '<TR><TD><Font Color=#FFFFFF><LocID ID=locMSCertSrv><Font Face="Arial" Size=-1><B><I>'
    'Microsoft</I></B></Font><Font Face="Arial" Size=-1><B> Active Directory Certificate '
    'Services  --  </B></Font></LocID><Font Face="Arial" Size=-1><B>' + CA_NAME
    + '</B></Font></Font></TD></TR>\r\n</Table>\r\n'
    '<P><Font Face="Arial" Size=-1><B>Network Device Enrollment Service</B></Font></P>\r\n')
PAGE_TAIL = '</Font>\r\n</Body></HTML>\r\n'


def page_challenge(thumbprint, challenge, single):
    expiry = ("This password will not expire." if single else
              "This password can be used only once and will expire within 60 minutes.")
    refresh = ("" if single else
               "<P> Each enrollment requires a new challenge password. You can refresh this "
               "web page to obtain a new challenge password. \r\n")
    return (PAGE_HEAD
            + "<P>Network Device Enrollment Service allows you to obtain certificates for "
              "routers or other network devices using the Simple Certificate Enrollment "
              "Protocol (SCEP).</P>\r\n"
            + "<P>To complete certificate enrollment for your network device you will need "
              "the following information:\r\n"
            + "<P> The thumbprint (hash value) for the CA certificate is: <B> %s </B>\r\n"
            % thumbprint
            + "<P> The enrollment challenge password is: <B> %s </B>\r\n" % challenge
            + "<P> %s\r\n" % expiry
            + refresh
            + "<P> For more information see  <A HREF=http://go.microsoft.com/fwlink/?LinkId="
              "67852>Using Network Device Enrollment Service </A>.\r\n"
            + PAGE_TAIL)


def page_message(text):
    return PAGE_HEAD + "<P> %s \r\n" % text + PAGE_TAIL


CACHE_FULL = ("The password cache is full. This may be because a large number of passwords "
              "have been recently requested. Wait for the passwords to expire or be used, "
              "or contact your system administrator to increase the cache size.")
NO_PERMISSION = ("You do not have sufficient permission to enroll with SCEP. Please contact "
                 "your system administrator.")

UNAUTHORIZED = (
    '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN""http://www.w3.org/TR/html4/strict.dtd">'
    '\r\n<HTML><HEAD><TITLE>Not Authorized</TITLE>\r\n<META HTTP-EQUIV="Content-Type" '
    'Content="text/html; charset=us-ascii"></HEAD>\r\n<BODY><h2>Not Authorized</h2>\r\n'
    '<hr><p>HTTP Error 401. The requested resource requires user authentication.</p>\r\n'
    '</BODY></HTML>\r\n').encode()


def thumbprint_of(ca_cert_path):
    """MD5 of the CA certificate DER, as NDES shows it: 4 groups of 8 upper-case hex."""
    if ca_cert_path:
        with open(ca_cert_path, "rb") as f:
            data = f.read()
        if b"-----BEGIN" in data:
            b64 = data.split(b"-----BEGIN CERTIFICATE-----", 1)[1].split(b"-----END", 1)[0]
            data = base64.b64decode(b"".join(b64.split()))
        digest = hashlib.md5(data).hexdigest().upper()
    else:
        digest = secrets.token_hex(16).upper()
    return " ".join(digest[i:i + 8] for i in range(0, 32, 8))


# ---------------------------------------------------------------------------
# HTTP


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64
    tls = None              # ssl.SSLContext with --https

    def server_bind(self):
        # skip HTTPServer's getfqdn() (a reverse DNS lookup) on 127.0.0.1
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def finish_request(self, request, client_address):
        # the TLS handshake runs here, in the connection's thread, not in accept()
        if self.tls is None:
            return super().finish_request(request, client_address)
        request.settimeout(30)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log("TLS handshake with %s failed: %s" % (client_address[0], e))
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            conn.close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"
    timeout = 60

    def setup(self):
        super().setup()
        self.conn_id = next(self.server.conn_ids)
        self.ntlm_state = None      # (server challenge, type 2 flags, scheme, spnego)
        self.authenticated = None   # account string once authenticated on this connection
        self.extra_headers = []     # SPNEGO accept-completed for the next reply

    def log_request(self, code="-", size="-"):
        pass

    def log_message(self, fmt, *args):
        log("conn %d: %s" % (self.conn_id, fmt % args))

    def note(self, result):
        path = urlsplit(self.path).path[:80]
        log("conn %d: %s %s -> %s" % (self.conn_id, self.command, path, result))

    # -- senders

    def send(self, code, body, ctype="text/html", headers=(), result=""):
        self.note("%d %s" % (code, result))
        try:
            self.send_response(code)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            self.close_connection = True

    def challenge_headers(self):
        auth = self.server.auth
        if auth == "basic":
            return [("WWW-Authenticate", 'Basic realm="%s"' % self.server.realm)]
        if auth == "negotiate":
            return [("WWW-Authenticate", "Negotiate"), ("WWW-Authenticate", "NTLM")]
        return [("WWW-Authenticate", "NTLM")]

    def unauthorized(self, why):
        self.ntlm_state = None
        self.send(401, UNAUTHORIZED, headers=self.challenge_headers(), result=why)

    # -- requests

    def do_GET(self):
        self.handle_admin()

    def do_HEAD(self):
        self.send(405, b"", headers=[("Allow", "GET")], result="method not allowed")

    def do_POST(self):
        self.discard_body()
        self.send(405, b"", headers=[("Allow", "GET")], result="method not allowed")

    do_PUT = do_DELETE = do_OPTIONS = do_POST

    def discard_body(self):
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit() or int(length) > MAX_DISCARD:
            self.close_connection = True
            return
        self.rfile.read(int(length))

    def handle_admin(self):
        self.discard_body()
        path = urlsplit(self.path).path
        if path.rstrip("/").lower() != ADMIN_PATH:
            return self.send(404, b"<HTML><BODY>404 - File or directory not found.</BODY></HTML>",
                             result="not found")
        user = self.authenticate()
        if user is None:
            return
        self.serve_page(user)

    def redirect_once(self):
        srv = self.server
        if not srv.redirect_to:
            return False
        with srv.redirect_lock:
            if srv.redirected:
                return False
            srv.redirected = True
        self.send(302, b"", headers=[("Location", srv.redirect_to)],
                  result="redirect (once) to %s" % srv.redirect_to)
        return True

    def authenticate(self):
        """The authenticated account, or None once a reply has been sent."""
        header = self.headers.get("Authorization")
        if header is None and self.authenticated:
            return self.authenticated     # IIS keeps NTLM auth for the connection
        if self.redirect_once():
            return None
        if header is None:
            self.unauthorized("no credentials")
            return None
        scheme, _, token = header.strip().partition(" ")
        scheme = scheme.lower()
        token = token.strip()
        if len(token) > MAX_HEADER_TOKEN:
            self.unauthorized("Authorization token too long")
            return None
        auth = self.server.auth
        if auth == "basic":
            if scheme != "basic":
                self.unauthorized("scheme %s not offered" % scheme[:20])
                return None
            return self.basic(token)
        if scheme == "ntlm" or (scheme == "negotiate" and auth == "negotiate"):
            return self.ntlm(scheme, token)
        self.unauthorized("scheme %s not offered" % scheme[:20])
        return None

    def basic(self, token):
        try:
            login, sep, password = base64.b64decode(token, validate=True).decode(
                "utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            self.unauthorized("malformed Basic credentials")
            return None
        ok_password = hmac.compare_digest(password.encode(), self.server.password.encode())
        if not sep or not self.server.account.matches_basic(login) or not ok_password:
            self.unauthorized("Basic: bad user or password for %r" % login[:64])
            return None
        return login

    def ntlm(self, scheme, token):
        try:
            raw = base64.b64decode(token, validate=True)
        except ValueError:
            self.unauthorized("malformed %s token" % scheme)
            return None
        try:
            spnego = False
            if scheme == "negotiate":
                raw, spnego = unwrap_negotiate(raw)
            kind = message_type(raw)
            if kind == 1:
                self.authenticated = None
                server_challenge = secrets.token_bytes(8)
                type2, flags = challenge_message(raw, server_challenge, self.server.account)
                self.ntlm_state = (server_challenge, flags, scheme, spnego)
                out = neg_token_resp(1, type2) if spnego else type2
                hdr = "%s %s" % ("Negotiate" if scheme == "negotiate" else "NTLM",
                                 base64.b64encode(out).decode())
                self.send(401, UNAUTHORIZED, headers=[("WWW-Authenticate", hdr)],
                          result="%s Type 2 sent (%s)" % (
                              scheme, "unicode" if flags & NEG_UNICODE else "oem"))
                return None
            if kind != 3:
                raise NtlmError("unexpected NTLM message type %d" % kind)
            if self.ntlm_state is None:
                raise NtlmError("Type 3 without a Type 2 on this connection")
            server_challenge, flags, _, spnego2 = self.ntlm_state
            self.ntlm_state = None
            user, domain = verify_authenticate(raw, server_challenge, flags,
                                               self.server.account, self.server.password)
        except NtlmError as e:
            self.unauthorized("%s: %s" % (scheme, e))
            return None
        self.authenticated = "%s\\%s" % (domain, user) if domain else user
        if spnego or spnego2:
            self.extra_headers = [("WWW-Authenticate", "Negotiate " + base64.b64encode(
                neg_token_resp(0)).decode())]
        return self.authenticated

    def serve_page(self, user):
        srv = self.server
        mode = srv.mode
        headers, self.extra_headers = self.extra_headers, []
        if mode == "cache-full":
            html, result = page_message(CACHE_FULL), "cache full (mode)"
        elif mode == "no-permission":
            html, result = page_message(NO_PERMISSION), "no permission (mode)"
        elif mode == "will-not-expire":
            challenge = srv.store.single(srv.generate)
            html, result = page_challenge(srv.thumbprint, challenge, True), "single password"
        else:
            challenge = srv.store.issue(srv.generate, srv.cache)
            if challenge is None:
                html, result = page_message(CACHE_FULL), "cache full (%d outstanding)" % srv.cache
            else:
                html, result = page_challenge(srv.thumbprint, challenge, False), "challenge issued"
        if mode == "utf8":
            body = html.encode("utf-8")
        elif mode == "utf16-bom":
            body = b"\xff\xfe" + html.encode("utf-16-le")
        else:
            body = html.encode("utf-16-le")
        self.send(200, body, headers=headers, result="%s for %s" % (result, user))


# ---------------------------------------------------------------------------
# main


def read_password(path):
    with open(path, encoding="utf-8") as f:
        data = f.read()
    if data.endswith("\n"):
        data = data[:-1]
        if data.endswith("\r"):
            data = data[:-1]
    return data


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="NDES MSCEP_ADMIN challenge page test double (127.0.0.1 only).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="modes:\n" + "\n".join("  %-16s %s" % kv for kv in MODES.items()))
    p.add_argument("--port", type=int, required=True, help="TCP port; 0 = pick a free one")
    p.add_argument("--dir", required=True, help="challenge directory (challenges, used, lock)")
    p.add_argument("--user", required=True, help='"user@dns.domain" or "DOMAIN\\user"')
    p.add_argument("--password-file", required=True, help="the account's password (one line)")
    p.add_argument("--domain", help="NetBIOS domain name, or the DNS domain when dotted")
    p.add_argument("--auth", default="ntlm", choices=AUTHS)
    p.add_argument("--mode", default="normal", choices=sorted(MODES), metavar="MODE",
                   help="behaviour, see below (default normal)")
    p.add_argument("--https", nargs=2, metavar=("CERT", "KEY"), help="serve TLS")
    p.add_argument("--cache", type=int, default=5,
                   help="unused challenges outstanding before 'cache is full' (default 5)")
    p.add_argument("--chars", default="hex", choices=sorted(CHARSETS),
                   help="challenge characters (default hex: upper-case)")
    p.add_argument("--length", type=int, default=16, help="challenge length (default 16)")
    p.add_argument("--ca-cert", help="CA certificate (PEM/DER) whose MD5 thumbprint is shown")
    p.add_argument("--redirect-to", metavar="URL",
                   help="answer the first unauthenticated request with 302 to URL")
    p.add_argument("--ready-file", help="write the port here once listening")
    p.add_argument("--pidfile", help="write the process id here")
    args = p.parse_args(argv)
    if not 1 <= args.length <= 256:
        p.error("--length must be 1..256")
    if args.cache < 1:
        p.error("--cache must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)

    def build():
        try:
            account = Account(args.user, args.domain)
            password = read_password(args.password_file)
            thumbprint = thumbprint_of(args.ca_cert)
            tls = None
            if args.https:
                tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                tls.load_cert_chain(args.https[0], args.https[1])
            server = Server(("127.0.0.1", args.port), Handler)
        except (OSError, ValueError, ssl.SSLError) as e:
            log("cannot start: %s" % e)
            return None
        alphabet = CHARSETS[args.chars]
        server.tls = tls
        server.auth, server.mode, server.cache = args.auth, args.mode, args.cache
        server.account, server.password = account, password
        server.realm = "127.0.0.1"
        server.thumbprint = thumbprint
        server.store = Store(args.dir)
        server.generate = lambda: "".join(secrets.choice(alphabet) for _ in range(args.length))
        server.redirect_to = args.redirect_to
        server.redirect_lock = threading.Lock()
        server.redirected = False
        server.conn_ids = iter(range(1, 1 << 62))
        return server, "listening on %s://127.0.0.1:%d%s/ auth=%s mode=%s account=%s (%s\\%s)" % (
            "https" if tls else "http", server.server_address[1], ADMIN_PATH, args.auth,
            args.mode, args.user, account.nb_domain, account.name)

    return serving.run(build, args.pidfile, args.ready_file, log)


if __name__ == "__main__":
    sys.exit(main())
