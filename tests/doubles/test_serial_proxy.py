"""Tests of tests/doubles/serial_proxy.py, the reverse proxy that hands its backend one
request at a time (put in front of scepserver by the station tests).

    /usr/bin/python3 -m unittest -v tests/doubles/test_serial_proxy.py
    (or: cd tests/doubles && /usr/bin/python3 -m unittest -v test_serial_proxy)

The proxy runs as a subprocess on a free 127.0.0.1 port (stopped by PID on cleanup) in
front of a backend in this process that records how many requests it is handling at once
and echoes what it received. Eight clients at once: through the proxy the backend never
sees two requests at the same time; straight to the backend it does (so the count can
tell). Bodies, targets, status codes and Content-Type pass unchanged.
"""

import hashlib
import http.client
import http.server
import os
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

PROXY = os.path.join(HERE, "serial_proxy.py")
HTTP_TIMEOUT = 20
CLIENTS = 8
HOLD = 0.15  # seconds the backend holds each request (overlap is certain without the proxy)


# ---------------------------------------------------------------------------
# backend


class Backend(http.server.ThreadingHTTPServer):
    """Records the requests it handles at once (now, most) and every request it saw."""
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), BackendHandler)
        self.mutex = threading.Lock()
        self.now = self.most = 0
        self.seen = []  # (method, target, content-type, body)
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self):
        self.shutdown()
        self.server_close()

    def handle_error(self, request, client_address):
        pass  # a client gone before the answer (the proxy after its --timeout)


class BackendHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    # A request counts as handled at once with another from its arrival until its reply is
    # made (the HOLD sleep stands for the server's work, scepserver's signing), not while
    # the reply is being written: the proxy may read a whole reply, release its lock and
    # send the next request before this thread has returned from the write.
    def handle_one(self):
        srv = self.server
        with srv.mutex:
            srv.now += 1
            srv.most = max(srv.most, srv.now)
        working = True
        try:
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n) if n else b""
            with srv.mutex:
                srv.seen.append((self.command, self.path, self.headers.get("Content-Type"), body))
            time.sleep(HOLD)
            # GET /status/NNN answers NNN; otherwise 200 with the body reversed and a
            # Content-Type naming what was received.
            status = 200
            if self.path.startswith("/status/"):
                status = int(self.path.split("/")[2])
            reply = b"%s %s %d\n" % (self.command.encode(), self.path.encode(), len(body)) + body[::-1]
            with srv.mutex:
                srv.now -= 1
            working = False
            self.send_response(status)
            self.send_header("Content-Type", "application/x-test; sha256=%s"
                             % hashlib.sha256(body).hexdigest()[:16])
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
        finally:
            if working:
                with srv.mutex:
                    srv.now -= 1

    do_GET = handle_one
    do_POST = handle_one


def expected_reply(method, target, body):
    return b"%s %s %d\n" % (method.encode(), target.encode(), len(body)) + body[::-1]


# ---------------------------------------------------------------------------
# proxy process


class ProxyProcess(harness.ServerProcess):
    """serial_proxy.py in front of the backend on backend_port (harness.ServerProcess)."""

    def __init__(self, backend_port, *extra):
        super().__init__(PROXY, "--backend", str(backend_port), *extra)


def request(port, method, target, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read()
    finally:
        conn.close()


def at_once(port, calls):
    """Runs request(port, *call) for every call in its own thread, all released together;
    returns the answers in the order of calls (an exception in place of a failed one)."""
    results = [None] * len(calls)
    gate = threading.Barrier(len(calls))

    def one(i):
        gate.wait()
        try:
            results[i] = request(port, *calls[i])
        except Exception as e:  # reported by the test, not lost in the thread
            results[i] = e
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HTTP_TIMEOUT * 2)
    return results


def posts(n):
    """n POSTs with bodies of different sizes and bytes (all 256 byte values)."""
    return [("POST", "/scep?operation=PKIOperation&n=%d" % i,
             bytes(range(256)) * (i + 1) + os.urandom(7 * i),
             {"Content-Type": "application/x-pki-message"}) for i in range(n)]


# ---------------------------------------------------------------------------


class SerialProxy(unittest.TestCase):
    def setUp(self):
        self.backend = Backend()
        self.addCleanup(self.backend.stop)
        self.proxy = ProxyProcess(self.backend.server_address[1])
        self.addCleanup(self.proxy.cleanup)

    def check_answers(self, calls, results):
        for (method, target, body, _), got in zip(calls, results):
            self.assertIsInstance(got, tuple, "request %s %s: %r" % (method, target, got))
            status, ctype, data = got
            self.assertEqual(200, status)
            self.assertEqual("application/x-test; sha256=%s"
                             % hashlib.sha256(body).hexdigest()[:16], ctype)
            self.assertEqual(expected_reply(method, target, body), data)

    def test_eight_clients_one_at_a_time(self):
        calls = posts(CLIENTS)
        t0 = time.monotonic()
        results = at_once(self.proxy.port, calls)
        elapsed = time.monotonic() - t0
        self.check_answers(calls, results)
        self.assertEqual(1, self.backend.most, "requests the backend handled at once")
        self.assertEqual(CLIENTS, len(self.backend.seen))
        # They queued: one after another, so at least CLIENTS holds in all.
        self.assertGreaterEqual(elapsed, CLIENTS * HOLD * 0.9)
        # What the backend received is what the clients sent.
        got = sorted((m, t, c, b) for m, t, c, b in self.backend.seen)
        want = sorted((m, t, h["Content-Type"], b) for m, t, b, h in calls)
        self.assertEqual(want, got)
        # One log line per request, with the time it waited for the lock.
        lines = [line for line in self.proxy.log().splitlines() if "-> 200" in line]
        self.assertEqual(CLIENTS, len(lines), self.proxy.log())
        waits = sorted(float(line.split("waited ")[1].split(" s")[0]) for line in lines)
        self.assertLess(waits[0], HOLD)
        # The last of them waited for most of the others (the clients reach the proxy some
        # milliseconds apart, more on a loaded machine: (CLIENTS - 1) * HOLD less that).
        self.assertGreaterEqual(waits[-1], HOLD / 2)

    def test_without_the_proxy_the_backend_sees_them_at_once(self):
        # The control: the count above would have seen concurrency had there been any.
        calls = posts(CLIENTS)
        results = at_once(self.backend.server_address[1], calls)
        self.check_answers(calls, results)
        self.assertGreater(self.backend.most, 1)

    def test_get_with_query_and_mixed_at_once(self):
        calls = [("GET", "/scep?operation=GetCACaps", b"", {}),
                 ("GET", "/scep?operation=GetCACert&message=a%2Fb%2Bc%3D%3D", b"", {}),
                 ("GET", "/scep?operation=PKIOperation&message=" + "QUJD" * 500, b"", {})] + \
            posts(5)
        results = at_once(self.proxy.port, [(m, t, b or None, h) for m, t, b, h in calls])
        self.check_answers(calls, results)
        self.assertEqual(1, self.backend.most)
        gets = sorted((m, t, c) for m, t, c, b in self.backend.seen if m == "GET")
        self.assertEqual(sorted((m, t, None) for m, t, b, h in calls if m == "GET"), gets)

    def test_status_and_content_type_pass_unchanged(self):
        for code in (201, 400, 404, 500, 503):
            status, ctype, data = request(self.proxy.port, "GET", "/status/%d" % code)
            self.assertEqual(code, status)
            self.assertEqual("application/x-test; sha256=%s"
                             % hashlib.sha256(b"").hexdigest()[:16], ctype)
            self.assertEqual(expected_reply("GET", "/status/%d" % code, b""), data)

    def test_empty_post(self):
        calls = [("POST", "/scep?operation=PKIOperation", b"",
                  {"Content-Type": "application/x-pki-message"})]
        self.check_answers(calls, [request(self.proxy.port, *calls[0])])

    def test_body_over_the_limit_never_reaches_the_backend(self):
        body = b"x" * ((1 << 20) + 1)
        status, _, _ = request(self.proxy.port, "POST", "/scep", body,
                               {"Content-Type": "application/x-pki-message"})
        self.assertEqual(413, status)
        self.assertEqual([], self.backend.seen)
        # One MiB exactly is forwarded.
        calls = [("POST", "/scep", body[:-1], {"Content-Type": "application/x-pki-message"})]
        self.check_answers(calls, [request(self.proxy.port, *calls[0])])


class BackendGone(unittest.TestCase):
    def test_502_and_the_next_request_is_served(self):
        backend = Backend()
        port = backend.server_address[1]
        backend.stop()
        proxy = ProxyProcess(port)
        self.addCleanup(proxy.cleanup)
        status, _, _ = request(proxy.port, "GET", "/scep?operation=GetCACaps")
        self.assertEqual(502, status)
        self.assertIn("-> 502", proxy.log())
        # The lock was given back: a second request is answered too (502 again, not stuck).
        status, _, _ = request(proxy.port, "GET", "/scep?operation=GetCACaps")
        self.assertEqual(502, status)

    def test_backend_timeout(self):
        backend = Backend()
        self.addCleanup(backend.stop)
        proxy = ProxyProcess(backend.server_address[1], "--timeout", str(HOLD / 3))
        self.addCleanup(proxy.cleanup)
        t0 = time.monotonic()
        status, _, _ = request(proxy.port, "GET", "/scep")
        self.assertEqual(502, status)
        self.assertLess(time.monotonic() - t0, 5)


class Listening(unittest.TestCase):
    def test_loopback_only_and_files_removed_on_sigterm(self):
        backend = Backend()
        self.addCleanup(backend.stop)
        proxy = ProxyProcess(backend.server_address[1])
        self.addCleanup(proxy.cleanup)
        with open(proxy.pidfile) as f:
            self.assertEqual(proxy.proc.pid, int(f.read()))
        # Listening on 127.0.0.1 only: its socket in /proc/net/tcp is 0100007F:PORT.
        with open("/proc/net/tcp") as f:
            local = [line.split()[1] for line in f.readlines()[1:] if line.split()[3] == "0A"]
        self.assertIn("0100007F:%04X" % proxy.port, local)
        self.assertNotIn("00000000:%04X" % proxy.port, local)
        proxy.stop()
        self.assertEqual(0, proxy.proc.returncode)
        self.assertFalse(os.path.exists(proxy.ready))
        self.assertFalse(os.path.exists(proxy.pidfile))


if __name__ == "__main__":
    unittest.main()
