#!/usr/bin/python3
"""A minimal forwarding HTTP proxy for tests, bound to 127.0.0.1 only.

It serves absolute-URI GET and POST requests (what a client sends to an http proxy for
http:// URLs), forwards them to the origin (which must be on 127.0.0.1) over one origin
connection per client connection (pinned, as proxies that pass NTLM through do: NTLM
authenticates a connection), and logs one line
per request ("proxy: GET http://127.0.0.1:PORT/... -> 200") to stderr, so a test can tell
whether a client used it. CONNECT (https through the proxy) is not needed by the tests and
is answered 501.

    http_proxy.py --ready-file FILE      # writes the chosen port once listening
"""
import argparse
import http.client
import http.server
import os
import signal
import sys
import threading
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def forward(self):
        url = urllib.parse.urlsplit(self.path)
        if url.scheme != "http" or url.hostname != "127.0.0.1":
            self.send_error(403, "only http://127.0.0.1 origins")
            sys.stderr.write("proxy: %s %s -> 403\n" % (self.command, self.path))
            return
        body = None
        if self.command == "POST":
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        origin = ("127.0.0.1", url.port or 80)
        if getattr(self, "origin", None) != origin:
            self.origin, self.conn = origin, http.client.HTTPConnection(*origin, timeout=30)
        conn = self.conn
        path = url.path + ("?" + url.query if url.query else "")
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("proxy-connection", "connection", "host")}
        conn.request(self.command, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        sys.stderr.write("proxy: %s %s -> %d\n" % (self.command, self.path, resp.status))
        sys.stderr.flush()

    do_GET = forward
    do_POST = forward

    def do_CONNECT(self):
        self.send_error(501)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ready-file", required=True)
    args = p.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM,
                  lambda s, f: threading.Thread(target=server.shutdown, daemon=True).start())
    tmp = args.ready_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % server.server_address[1])
    os.rename(tmp, args.ready_file)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
