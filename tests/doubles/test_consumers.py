"""Tests of tests/doubles/pinning_server.py and tests/doubles/tls_consumer.py, the two
certificate consumers of t-consumers.sh.

    /usr/bin/python3 -m unittest -v tests/doubles/test_consumers.py
    (or: cd tests/doubles && /usr/bin/python3 -m unittest -v test_consumers)

A throw-away PKI made with the openssl CLI: a CA in a hashed directory (`openssl rehash`,
as p11enroll's trust dir), two client certificates A and B of it, one of a stranger CA,
and the server's certificate for IP 127.0.0.1 from a second CA. Both programs run as
subprocesses on 127.0.0.1 (stopped by PID on cleanup). The pinning server is checked with
Python's ssl as the client; the consumer against the pinning server, with PEM keys (the
PKCS#11 engine path is t-consumers.sh's).
"""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

SERVER = os.path.join(HERE, "pinning_server.py")
CONSUMER = os.path.join(HERE, "tls_consumer.py")
WAIT = 20


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_pki(d):
    """In d: ca/ (hashed, client CA), a.pem/b.pem (serials 0x0A, 0x0B), stranger.pem
    (serial 0x0A of another CA), server.pem for 127.0.0.1 signed by tls-ca.pem."""
    os.mkdir(os.path.join(d, "ca"))

    def ca(name, cn):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key",
                "-out", name + ".pem", "-days", "2", "-subj", "/CN=" + cn,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign", cwd=d)

    def leaf(name, issuer, serial, subj, ext):
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write(ext)
        openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key",
                "-out", name + ".csr", "-subj", subj, cwd=d)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", issuer + ".pem", "-CAkey",
                issuer + ".key", "-set_serial", serial, "-days", "2", "-extfile", name + ".ext",
                "-out", name + ".pem", cwd=d)
    client = "keyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\n"
    ca("client-ca", "client CA")
    ca("stranger-ca", "stranger CA")
    ca("tls-ca", "server CA")
    leaf("a", "client-ca", "0x0A", "/O=Example/CN=a.example.com", client)
    leaf("b", "client-ca", "0x0B", "/O=Example/CN=b.example.com", client)
    leaf("stranger", "stranger-ca", "0x0A", "/CN=stranger", client)
    leaf("server", "tls-ca", "2", "/CN=127.0.0.1",
         "subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n")
    shutil.copy(os.path.join(d, "client-ca.pem"), os.path.join(d, "ca", "client-ca.pem"))
    openssl("rehash", "ca", cwd=d)


def wait_for(what, pred, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("waited %d s for %s" % (timeout, what))
        time.sleep(0.02)


def read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def state(path):
    return dict(line.split("=", 1) for line in read(path).splitlines() if "=" in line)


class Proc:
    """A double as a subprocess, its stderr in a file; stop() ends it by PID."""

    def __init__(self, d, name, argv):
        self.log_path = os.path.join(d, name + ".log")
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable] + argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log_file)

    def log(self):
        return read(self.log_path)

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self):
        harness.stop_process(self.proc)
        self.log_file.close()


def gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


class PkiCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = tempfile.mkdtemp(prefix="consumers-test-pki-")
        make_pki(cls.pki)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.pki, ignore_errors=True)

    def setUp(self):
        self.d = tempfile.mkdtemp(prefix="consumers-test-")
        self.addCleanup(shutil.rmtree, self.d, True)
        self.pin_file = os.path.join(self.d, "pin")
        self.pin("0A")

    def p(self, name):
        return os.path.join(self.pki, name)

    def pin(self, text):
        with open(self.pin_file + ".tmp", "w") as f:
            f.write(text + "\n")
        os.replace(self.pin_file + ".tmp", self.pin_file)

    def start_server(self):
        ready = os.path.join(self.d, "server.port")
        self.server_state = os.path.join(self.d, "server.state")
        self.server_pid = os.path.join(self.d, "server.pid")
        self.server = Proc(self.d, "server", [
            SERVER, "--cert", self.p("server.pem"), "--key", self.p("server.key"),
            "--capath", self.p("ca"), "--pin-file", self.pin_file, "--ready-file", ready,
            "--pidfile", self.server_pid, "--state-file", self.server_state])
        self.addCleanup(self.server.stop)
        wait_for("the pinning server's ready file", lambda: read(ready).strip()
                 or self.server.proc.poll() is not None)
        self.assertIsNone(self.server.proc.poll(), self.server.log())
        self.port = int(read(ready))

    def reload_server(self, pin, shown=None):
        """Pins PIN (as written in the file), waits until the server shows it as SHOWN."""
        gen = int(read(self.server_state).split()[1])
        self.pin(pin)
        self.server.signal(signal.SIGHUP)
        want = "generation %d pinned %s\n" % (gen + 1, pin if shown is None else shown)
        wait_for(want.strip(), lambda: read(self.server_state) == want)


class PinningServer(PkiCase):
    def connect(self, who):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.p("tls-ca.pem"))
        ctx.load_cert_chain(self.p(who + ".pem"), self.p(who + ".key"))
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.port), WAIT),
                            server_hostname="127.0.0.1")
        self.addCleanup(s.close)
        return s

    def reply(self, s):
        """The server's line ('' when it closed without one, or refused the handshake)."""
        data = b""
        try:
            while not data.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (ssl.SSLError, OSError):
            pass
        return data.decode()

    def test_pinned_serial_only_from_the_ca_directory(self):
        self.start_server()
        self.assertEqual(read(self.server_state), "generation 1 pinned 0A\n")
        a = self.connect("a")
        self.assertEqual(self.reply(a), "accepted serial 0A\n")
        self.assertEqual(self.reply(self.connect("b")), "refused serial 0B: pinned 0A\n")
        # Serial 0A too, but from a CA not in the directory: the handshake fails.
        self.assertEqual(self.reply(self.connect("stranger")), "")
        wait_for("the handshake failure in the log",
                 lambda: "handshake failed" in self.server.log())
        log = self.server.log()
        self.assertIn("accepted serial 0A (O=Example,CN=a.example.com)", log)
        self.assertIn("refused serial 0B (O=Example,CN=b.example.com): pinned 0A", log)
        self.assertIn("certificate verify failed", log)
        self.assertNotIn("closed serial 0A", log, "the accepted connection stays open")
        a.close()
        wait_for("the closed connection in the log",
                 lambda: "closed serial 0A" in self.server.log())

    def test_sighup_reads_the_pin_again_and_drops_the_old_serial(self):
        self.start_server()
        a = self.connect("a")
        self.assertEqual(self.reply(a), "accepted serial 0A\n")
        self.reload_server("0B")
        # The open connection of the serial no longer pinned is cut.
        self.assertEqual(self.reply(a), "")
        self.assertIn("dropped serial 0A: pinned 0B", self.server.log())
        self.assertEqual(self.reply(self.connect("a")), "refused serial 0A: pinned 0B\n")
        self.assertEqual(self.reply(self.connect("b")), "accepted serial 0B\n")
        # Colons and case are ignored; an empty pin refuses everyone.
        self.reload_server("0:b", "0B")
        self.reload_server("", "nothing")
        self.assertEqual(self.reply(self.connect("b")), "refused serial 0B: pinned nothing\n")

    def test_stop_removes_its_files(self):
        self.start_server()
        self.server.stop()
        self.assertEqual(self.server.proc.returncode, 0)
        self.assertFalse(os.path.exists(self.server_pid))
        self.assertFalse(os.path.exists(os.path.join(self.d, "server.port")))


class TlsConsumer(PkiCase):
    def configure(self, who):
        path = os.path.join(self.d, "consumer.conf")
        with open(path + ".tmp", "w") as f:
            f.write("key=%s\ncert=%s\n" % (self.p(who + ".key"), self.p(who + ".pem")))
        os.replace(path + ".tmp", path)
        return path

    def start_consumer(self):
        self.consumer_state = os.path.join(self.d, "consumer.state")
        self.consumer_pid = os.path.join(self.d, "consumer.pid")
        self.consumer = Proc(self.d, "consumer", [
            CONSUMER, "--connect", str(self.port), "--cafile", self.p("tls-ca.pem"),
            "--config", os.path.join(self.d, "consumer.conf"),
            "--state-file", self.consumer_state, "--pidfile", self.consumer_pid])
        self.addCleanup(self.consumer.stop)

    def wait_state(self, **want):
        def matches():
            s = state(self.consumer_state)
            return all(s.get(k) == str(v) for k, v in want.items())
        try:
            wait_for("consumer state %s" % want, matches)
        except AssertionError:
            raise AssertionError("state %s, log:\n%s"
                                 % (state(self.consumer_state), self.consumer.log()))
        return state(self.consumer_state)

    def once(self, *extra):
        return subprocess.run([sys.executable, CONSUMER, "--once", "--connect", str(self.port),
                               "--cafile", self.p("tls-ca.pem")] + list(extra),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)

    def test_sighup_connects_again_with_the_new_certificate(self):
        self.start_server()
        self.configure("a")
        self.start_consumer()
        first = self.wait_state(generation=1, reply="accepted serial 0A", closed="")
        self.assertEqual(first["cert"], self.p("a.pem"))
        self.configure("b")
        self.reload_server("0B")
        # The server cut the old serial (without a TLS close_notify: s_client exits 1);
        # the consumer says so and waits for its own reload.
        self.wait_state(generation=1, closed="exit status 1")
        self.consumer.signal(signal.SIGHUP)
        second = self.wait_state(generation=2, reply="accepted serial 0B", closed="")
        self.assertNotEqual(first["pid"], second["pid"])
        self.assertEqual(second["cert"], self.p("b.pem"))
        self.assertTrue(gone(int(first["pid"])), "the first s_client has ended")
        # Stopped: its s_client with it.
        self.consumer.stop()
        self.assertEqual(self.consumer.proc.returncode, 0)
        self.assertTrue(gone(int(second["pid"])), "s_client ended with the consumer")
        self.assertFalse(os.path.exists(self.consumer_pid))

    def test_unreadable_configuration_keeps_the_connection(self):
        self.start_server()
        self.configure("a")
        self.start_consumer()
        first = self.wait_state(generation=1, reply="accepted serial 0A")
        with open(os.path.join(self.d, "consumer.conf"), "w") as f:
            f.write("cert=%s\n" % self.p("b.pem"))
        self.consumer.signal(signal.SIGHUP)
        wait_for("the refusal in the log",
                 lambda: "cannot read the configuration" in self.consumer.log())
        self.assertEqual(state(self.consumer_state), first)

    def test_once_prints_the_reply(self):
        self.start_server()
        r = self.once("--key", self.p("a.key"), "--cert", self.p("a.pem"))
        self.assertEqual((r.returncode, r.stdout), (0, "accepted serial 0A\n"), r.stderr)
        r = self.once("--key", self.p("b.key"), "--cert", self.p("b.pem"))
        self.assertEqual((r.returncode, r.stdout), (1, "refused serial 0B: pinned 0A\n"), r.stderr)
        r = self.once("--config", self.configure("stranger"))
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertTrue(r.stdout.startswith("no reply (s_client "), r.stdout)
        self.server.stop()
        r = self.once("--key", self.p("a.key"), "--cert", self.p("a.pem"))
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
