#!/usr/bin/python3
"""A reverse proxy on 127.0.0.1 that hands its backend one request at a time.

Debian's scepserver (scep 2.1.0) has a race in its file depot: two PKIOperation requests
signed at the same moment can make it fail one ("could not convert  to serial number",
"open .../depot/serial: no such file or directory" or "... file exists"; tests/README.md,
known failures). The station tests put this proxy in front of it: p11enroll's cards still
run at once and queue here, and scepserver sees one request at a time.

    serial_proxy.py --backend PORT [--port N] [--ready-file FILE] [--pidfile FILE]
                    [--max-body BYTES] [--timeout SECONDS]

Every GET (with its query) and POST (with its body) is forwarded to
http://127.0.0.1:PORT with the same method and target; of the request headers only
Content-Type and Content-Length go on, of the answer the status, Content-Type and body come
back. One lock is held from sending a request to the backend until its whole answer has
been read. A request body over --max-body (default 1 MiB) is answered 413 without reaching
the backend; a backend that does not answer within --timeout gives 502. One line per
request to stderr, with the time it waited for the lock. --port 0 (the default) picks a
free port, written to --ready-file (atomically) once listening; pid and ready files are
removed on SIGTERM/SIGINT. Python 3 standard library only.
"""
import argparse
import http.client
import http.server
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import serving  # noqa: E402

MAX_BODY = 1 << 20
MAX_REPLY = 16 << 20
LOG_TARGET = 120  # characters of a request target in the log (GET PKIOperation is long)


def log(msg):
    sys.stderr.write("serial_proxy: %s\n" % msg)
    sys.stderr.flush()


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    backend_port = 0
    max_body = MAX_BODY
    backend_timeout = 60.0
    lock_timeout = 600.0

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.lock = threading.Lock()

    def serve_forever(self, poll_interval=0.05):
        # SIGTERM's shutdown() is seen within 50 ms (not socketserver's 0.5 s).
        super().serve_forever(poll_interval)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # a client that stops sending in the middle of a request

    def log_message(self, fmt, *args):
        pass

    def _answer(self, status, ctype, body):
        self.send_response(status)
        if ctype is not None:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _refuse(self, status, why):
        # Logged before answering: whoever got the answer finds the line in the log.
        log("%s %s -> %d (%s)" % (self.command, self.path[:LOG_TARGET], status, why))
        self.close_connection = True
        self._answer(status, "text/plain", (why + "\n").encode())

    def forward(self):
        srv = self.server
        body = None
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._refuse(411, "chunked request bodies are not forwarded")
        length = self.headers.get("Content-Length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return self._refuse(400, "bad Content-Length")
            if n < 0:
                return self._refuse(400, "bad Content-Length")
            if n > srv.max_body:
                # Read (up to MAX_REPLY) and dropped, so that the client, still sending,
                # gets the answer rather than a reset connection.
                left = n if n <= MAX_REPLY else 0
                while left > 0:
                    chunk = self.rfile.read(min(left, 65536))
                    if not chunk:
                        break
                    left -= len(chunk)
                return self._refuse(413, "request body of %d bytes over %d" % (n, srv.max_body))
            body = self.rfile.read(n)
            if len(body) != n:
                return self._refuse(400, "request body cut short")
        elif self.command == "POST":
            body = b""
        headers = {}
        if self.headers.get("Content-Type") is not None:
            headers["Content-Type"] = self.headers["Content-Type"]
        if body is not None:
            headers["Content-Length"] = str(len(body))

        t0 = time.monotonic()
        if not srv.lock.acquire(timeout=srv.lock_timeout):
            return self._refuse(503, "backend busy for %.0f s" % srv.lock_timeout)
        waited = time.monotonic() - t0
        try:
            t1 = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", srv.backend_port,
                                              timeout=srv.backend_timeout)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read(MAX_REPLY + 1)
                status, ctype = resp.status, resp.getheader("Content-Type")
            finally:
                conn.close()
            took = time.monotonic() - t1
        except (OSError, http.client.HTTPException) as e:
            srv.lock.release()
            return self._refuse(502, "backend: %s (waited %.3f s for the lock)" % (
                e.__class__.__name__ + (": %s" % e if str(e) else ""), waited))
        srv.lock.release()
        if len(data) > MAX_REPLY:
            return self._refuse(502, "backend answer over %d bytes" % MAX_REPLY)
        log("%s %s -> %d, %d bytes; waited %.3f s for the lock, backend %.3f s" % (
            self.command, self.path[:LOG_TARGET], status, len(data), waited, took))
        self._answer(status, ctype, data)

    do_GET = forward
    do_POST = forward


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", type=int, required=True, metavar="PORT",
                   help="forward to http://127.0.0.1:PORT")
    p.add_argument("--port", type=int, default=0, help="listen on 127.0.0.1:N (0: any free)")
    p.add_argument("--max-body", type=int, default=MAX_BODY, metavar="BYTES",
                   help="largest request body forwarded (default %d)" % MAX_BODY)
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="for the backend's answer (default 60)")
    p.add_argument("--pidfile", help="write the process id here")
    p.add_argument("--ready-file", help="write the port here once listening")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    def build():
        try:
            server = Server(("127.0.0.1", args.port), Handler)
        except OSError as e:
            log("cannot listen on 127.0.0.1:%d: %s" % (args.port, e))
            return None
        server.backend_port = args.backend
        server.max_body = args.max_body
        server.backend_timeout = args.timeout
        return server, "listening on http://127.0.0.1:%d, one request at a time to " \
            "http://127.0.0.1:%d" % (server.server_address[1], args.backend)

    return serving.run(build, args.pidfile, args.ready_file, log)


if __name__ == "__main__":
    sys.exit(main())
