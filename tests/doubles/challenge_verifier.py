#!/usr/bin/python3
"""One-time challenge enforcement for the Debian scepserver (micromdm scep 2.1.0).

    scepserver -depot depot -port PORT -csrverifierexec PROGRAM     (no -challenge)

scepserver runs PROGRAM with no arguments for every PKCSReq/RenewalReq, in its
own working directory and environment, writes the decrypted CSR (DER) to its
stdin and discards its stdout/stderr; exit status 0 issues the certificate,
anything else makes scepserver answer CertRep FAILURE badRequest.  (Newer
upstream versions also set TRANSACTIONID in the environment; it is logged when
present.)  Do not also give scepserver -challenge: it checks that static
challenge after the verifier has consumed the one-time one, so every request
fails (measured).  A challenge is consumed even when scepserver then fails to
issue (e.g. a DN it already issued).

The challenge directory DIR is the one ndes_admin.py --dir writes:
    DIR/challenges   issued one-time challenges, one per line
    DIR/used         challenges already consumed (appended here, fsync'ed)
    DIR/reusable     single-password-mode challenges (never consumed)
    DIR/lock         flock'ed around the check-and-append (shared with ndes_admin.py)
    DIR/verifier.log one line per decision (never the challenge)

A CSR is accepted when its self-signature verifies and it carries exactly one
challengePassword, a PrintableString or UTF8String (--printable-only: only
PrintableString), that is listed in DIR/challenges and not yet in DIR/used (it
is then appended to DIR/used), or listed in DIR/reusable.  --allow-no-challenge
also accepts a CSR without challengePassword (a renewal: scepserver does not
tell the verifier who signed the request).

Usage:
    challenge_verifier.py [--dir DIR] [--allow-no-challenge] [--printable-only] < csr.der
        DIR defaults to $NDES_CHALLENGE_DIR (scepserver passes its environment on).
    challenge_verifier.py --write-wrapper DIR [--allow-no-challenge] [--printable-only]
        writes DIR/verify.sh (0755) that runs this verifier for DIR, and prints its path:
        scepserver -csrverifierexec DIR/verify.sh
Exit status: 0 accept, 1 reject, 2 usage or internal error (also a rejection).
"""

import argparse
import fcntl
import hmac
import os
import shlex
import sys
import time

from asn1crypto import csr as asn1csr
from cryptography import x509
from cryptography.hazmat.primitives import serialization

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serving import append_line, read_lines  # noqa: E402

ENV_DIR = "NDES_CHALLENGE_DIR"
MAX_CSR = 1 << 20
ACCEPT, REJECT, ERROR = 0, 1, 2


class Reject(Exception):
    pass


def listed(value, values):
    found = False
    for v in values:   # constant time per entry; no early exit
        found |= hmac.compare_digest(v.encode("utf-8"), value.encode("utf-8"))
    return found


def load_csr(data):
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_csr(data)
    return x509.load_der_x509_csr(data)


def challenge_of(csr_der, printable_only):
    """The challengePassword string, None when absent; Reject on a bad encoding."""
    req = asn1csr.CertificationRequest.load(csr_der)
    found = []
    try:
        for attr in req["certification_request_info"]["attributes"]:
            if attr["type"].dotted != "1.2.840.113549.1.9.7":
                continue
            for value in attr["values"]:
                found.append((value.name, value.native))
    except (ValueError, TypeError) as e:
        raise Reject("challengePassword not decodable (%s)" % e)
    if not found:
        return None
    if len(found) > 1:
        raise Reject("%d challengePassword values" % len(found))
    kind, text = found[0]
    allowed = ("printable_string",) if printable_only else ("printable_string", "utf8_string")
    if kind not in allowed:
        raise Reject("challengePassword is a %s" % kind)
    if not text:
        raise Reject("empty challengePassword")
    return text


class Verifier:
    def __init__(self, directory, allow_no_challenge=False, printable_only=False):
        self.dir = directory
        self.allow_no_challenge = allow_no_challenge
        self.printable_only = printable_only

    def path(self, name):
        return os.path.join(self.dir, name)

    def decide(self, data):
        """(exit status, reason); consumes the challenge on acceptance."""
        try:
            if len(data) > MAX_CSR:
                raise Reject("CSR of %d bytes too large" % len(data))
            try:
                csr = load_csr(data)
                der = csr.public_bytes(serialization.Encoding.DER)
            except ValueError as e:
                raise Reject("not a CSR (%s)" % " ".join(str(e).split())[:100])
            if not csr.is_signature_valid:
                raise Reject("CSR self-signature invalid")
            subject = csr.subject.rfc4514_string()[:120]
            challenge = challenge_of(der, self.printable_only)
            if challenge is None:
                if self.allow_no_challenge:
                    return ACCEPT, "accepted without challengePassword (allowed) %s" % subject
                raise Reject("challengePassword missing (%s)" % subject)
            return self.consume(challenge, subject)
        except Reject as e:
            return REJECT, "rejected: %s" % e

    def consume(self, challenge, subject):
        fd = os.open(self.path("lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if listed(challenge, read_lines(self.path("reusable"))):
                return ACCEPT, "accepted single-password challenge for %s" % subject
            if not listed(challenge, read_lines(self.path("challenges"))):
                raise Reject("challenge unknown (%s)" % subject)
            if listed(challenge, read_lines(self.path("used"))):
                raise Reject("challenge already used (%s)" % subject)
            append_line(self.path("used"), challenge)
            return ACCEPT, "accepted one-time challenge for %s" % subject
        finally:
            os.close(fd)    # releases the flock


def log(directory, line):
    txid = os.environ.get("TRANSACTIONID")
    text = "%s challenge_verifier[%d]: %s%s" % (
        time.strftime("%Y-%m-%dT%H:%M:%S"), os.getpid(),
        "txid=%s " % txid[:64] if txid else "", " ".join(line.split()))
    sys.stderr.write(text + "\n")
    if directory:
        try:
            append_line(os.path.join(directory, "verifier.log"), text)
        except OSError:
            pass


def write_wrapper(directory, extra):
    directory = os.path.abspath(directory)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    script = os.path.join(directory, "verify.sh")
    body = "#!/bin/sh\n# scepserver -csrverifierexec %s\nexec %s %s --dir %s%s\n" % (
        shlex.quote(script), shlex.quote(sys.executable or "/usr/bin/python3"),
        shlex.quote(os.path.abspath(__file__)), shlex.quote(directory),
        "".join(" " + shlex.quote(a) for a in extra))
    tmp = script + ".tmp"
    with open(tmp, "w") as f:
        f.write(body)
    os.chmod(tmp, 0o755)
    os.replace(tmp, script)
    return script


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", help="challenge directory (default $%s)" % ENV_DIR)
    p.add_argument("--allow-no-challenge", action="store_true",
                   help="accept CSRs without challengePassword (renewals)")
    p.add_argument("--printable-only", action="store_true",
                   help="accept only a PrintableString challengePassword")
    p.add_argument("--write-wrapper", metavar="DIR",
                   help="write DIR/verify.sh for scepserver -csrverifierexec and exit")
    args = p.parse_args(argv)
    extra = [a for a, on in (("--allow-no-challenge", args.allow_no_challenge),
                             ("--printable-only", args.printable_only)) if on]
    if args.write_wrapper:
        print(write_wrapper(args.write_wrapper, extra))
        return 0
    directory = args.dir or os.environ.get(ENV_DIR)
    if not directory or not os.path.isdir(directory):
        log(None, "no challenge directory (--dir or $%s): rejecting" % ENV_DIR)
        return ERROR
    try:
        data = sys.stdin.buffer.read(MAX_CSR + 1)
        status, reason = Verifier(directory, args.allow_no_challenge,
                                  args.printable_only).decide(data)
    except Exception as e:   # anything unexpected: reject, say why
        status, reason = ERROR, "internal error, rejecting: %s: %s" % (type(e).__name__, e)
    log(directory, reason)
    return status


if __name__ == "__main__":
    sys.exit(main())
