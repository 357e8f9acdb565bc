#!/usr/bin/python3
"""A long-lived TLS client that presents a certificate, and takes a new one on SIGHUP.

What uses a client certificate held on a token (a VPN client, an MQTT or mTLS agent)
looks like this to the tests: a connection kept open with the key and certificate it was
configured with, made again with the configuration read anew when it is told to reload.
The connection is `openssl s_client`: with a PKCS#11 key URI it signs through OpenSSL's
pkcs11 engine (libengine-pkcs11-openssl, loaded by --openssl-conf), which Python's ssl
cannot do.

    tls_consumer.py --connect PORT --cafile PEM (--config FILE | --key KEY --cert PEM)
                    [--pin-file FILE] [--openssl-conf FILE] [--state-file FILE]
                    [--pidfile FILE] [--once] [--timeout SECONDS]

--config FILE holds "key=KEY" and "cert=PEM" lines (the tests' `after` hook writes it);
KEY is a PEM file or a "pkcs11:" URI, which gets "pin-source=file:" --pin-file added (the
PIN is never in argv). The server at 127.0.0.1:PORT must present a certificate for
IP 127.0.0.1 that verifies against --cafile. Its first line (the pinning server's
"accepted serial S" or "refused ...") is the connection's reply.

Kept running (the default): on start and on each SIGHUP the configuration is read, the
current s_client (if any) is stopped and a new one connects: a generation. --state-file is
rewritten (atomically) as key=value lines: generation, pid (of s_client), key, cert,
reply (empty until it came) and closed (empty while connected, else how s_client ended).
A configuration that cannot be read keeps the current connection. One line per event to
stderr; s_client's stderr goes there too. SIGTERM/SIGINT stop s_client and exit; s_client
also gets SIGTERM if this process dies. --once: one connection, its reply on stdout, then
exit 0 (accepted), 1 (refused) or 2 (no reply within --timeout, default 20 s).
Python 3 standard library only.
"""
import argparse
import ctypes
import os
import select
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import serving  # noqa: E402

SIGNALS = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT}
PR_SET_PDEATHSIG = 1
STOP_GRACE = 5


def log(msg):
    sys.stderr.write("tls_consumer: %s\n" % msg)
    sys.stderr.flush()


def read_config(path):
    """(key, cert) from "key=" and "cert=" lines; ValueError when one is missing."""
    got = {}
    for line in serving.read_lines(path):
        k, sep, v = line.partition("=")
        if sep:
            got[k.strip()] = v.strip()
    if not got.get("key") or not got.get("cert"):
        raise ValueError("%s has no key= and cert= lines" % path)
    return got["key"], got["cert"]


def s_client_argv(args, key, cert):
    argv = [args.openssl, "s_client", "-quiet", "-connect", "127.0.0.1:%d" % args.connect,
            "-CAfile", args.cafile, "-verify_return_error", "-verify_ip", "127.0.0.1",
            "-cert", cert]
    if key.startswith("pkcs11:"):
        if not args.pin_file:
            raise ValueError("a pkcs11: key needs --pin-file")
        sep = "&" if "?" in key else "?"
        argv += ["-engine", "pkcs11", "-keyform", "engine",
                 "-key", "%s%spin-source=file:%s" % (key, sep, args.pin_file)]
    else:
        argv += ["-key", key]
    return argv


def _child_setup():
    # The mask blocked for sigwait() is inherited across exec: s_client must see SIGTERM.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(args, key, cert):
    env = dict(os.environ)
    if args.openssl_conf:
        env["OPENSSL_CONF"] = args.openssl_conf
    return subprocess.Popen(s_client_argv(args, key, cert), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=env, preexec_fn=_child_setup)


def stop(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def exit_text(rc):
    return "signal %d" % -rc if rc < 0 else "exit status %d" % rc


class Consumer:
    """The kept-running mode: one s_client per generation."""

    def __init__(self, args):
        self.args = args
        self.mutex = threading.Lock()
        self.generation = 0
        self.proc = None
        self.state = {}

    def write_state(self):
        if self.args.state_file:
            text = "".join("%s=%s\n" % (k, self.state.get(k, "")) for k in
                           ("generation", "pid", "key", "cert", "reply", "closed"))
            serving.write_file(self.args.state_file, text.encode())

    def load(self):
        a = self.args
        if a.config:
            return read_config(a.config)
        return a.key, a.cert

    def restart(self):
        try:
            key, cert = self.load()
            s_client_argv(self.args, key, cert)
        except (OSError, ValueError) as e:
            log("cannot read the configuration, the current connection stays: %s" % e)
            return
        stop(self.proc)
        with self.mutex:
            self.generation += 1
            gen = self.generation
        proc = spawn(self.args, key, cert)
        self.proc = proc
        log("generation %d: s_client %d with key %s, certificate %s" % (gen, proc.pid, key, cert))
        with self.mutex:
            self.state = {"generation": gen, "pid": proc.pid, "key": key, "cert": cert}
            self.write_state()
        threading.Thread(target=self.watch, args=(gen, proc), daemon=True).start()

    def watch(self, gen, proc):
        first = proc.stdout.readline().decode("utf-8", "replace").strip()
        if first:
            log("generation %d: the server said: %s" % (gen, first))
            with self.mutex:
                if gen == self.generation:
                    self.state["reply"] = first
                    self.write_state()
        while proc.stdout.read(4096):
            pass
        rc = proc.wait()
        log("generation %d: connection closed (s_client %s)" % (gen, exit_text(rc)))
        with self.mutex:
            if gen == self.generation:
                self.state["closed"] = exit_text(rc)
                self.write_state()

    def run(self):
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        if self.args.pidfile:
            serving.write_file(self.args.pidfile, b"%d\n" % os.getpid())
        try:
            self.restart()
            while True:
                sig = signal.sigwait(SIGNALS)
                if sig != signal.SIGHUP:
                    break
                log("SIGHUP: reloading")
                self.restart()
            log("stopping")
        finally:
            stop(self.proc)
            serving.remove_quietly(self.args.pidfile)
        return 0


def once(args):
    """One connection: its reply on stdout; 0 accepted, 1 refused, 2 none."""
    key, cert = read_config(args.config) if args.config else (args.key, args.cert)
    proc = spawn(args, key, cert)
    line, deadline = b"", time.monotonic() + args.timeout
    try:
        fd = proc.stdout.fileno()
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            line += chunk
    finally:
        stop(proc)
    reply = line.decode("utf-8", "replace").split("\n")[0].strip()
    if not reply:
        print("no reply (s_client %s)" % exit_text(proc.returncode))
        return 2
    print(reply)
    return 0 if reply.startswith("accepted ") else 1


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connect", type=int, required=True, metavar="PORT",
                   help="the server at 127.0.0.1:PORT")
    p.add_argument("--cafile", required=True, help="CA certificate(s) of the server (PEM)")
    p.add_argument("--config", help="key= and cert= lines, read at start and on SIGHUP")
    p.add_argument("--key", help="PEM file or pkcs11: URI (without --config)")
    p.add_argument("--cert", help="certificate (PEM) (without --config)")
    p.add_argument("--pin-file", help="the token PIN for a pkcs11: key (no newline)")
    p.add_argument("--openssl-conf", help="OPENSSL_CONF for s_client (loads the engine)")
    p.add_argument("--openssl", default="/usr/bin/openssl", help="the openssl program")
    p.add_argument("--state-file", help="key=value lines of the current connection")
    p.add_argument("--pidfile", help="write the process id here")
    p.add_argument("--once", action="store_true", help="one connection, the reply on stdout")
    p.add_argument("--timeout", type=float, default=20.0, help="--once: seconds for the reply")
    args = p.parse_args(argv)
    if not args.config and not (args.key and args.cert):
        p.error("give --config, or --key and --cert")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.once:
        return once(args)
    return Consumer(args).run()


if __name__ == "__main__":
    sys.exit(main())
