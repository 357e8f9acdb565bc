#!/usr/bin/python3
"""A mutual-TLS server on 127.0.0.1 that accepts one client certificate serial only.

What a service that pins its clients' certificates does (an MQTT broker, a VPN
concentrator with a serial allow-list): the client must present a certificate that
verifies against a CA directory (OpenSSL's hashed -CApath, p11enroll's trust dir), and its
serial must be the pinned one. The pin is read from a file at start and again on SIGHUP,
as a service's reload does; the tests' `after` hook writes that file and sends SIGHUP.

    pinning_server.py --cert PEM --key PEM --capath DIR --pin-file FILE [--port N]
                      [--ready-file FILE] [--pidfile FILE] [--state-file FILE]

Each connection: the TLS handshake (CERT_REQUIRED, chain verified against --capath; one
that fails is logged "handshake failed: ..."), then one line to the client:
  "accepted serial S" and the connection stays open until the client closes it, or
  "refused serial S: pinned P" and the server closes it.
S is the certificate's serial as OpenSSL prints it (upper-case hex, even length); the pin
file's first line is compared as a number (hex, colons and case ignored; empty: nothing
is pinned, every client is refused). On SIGHUP the pin file, the CA directory and the
server's own certificate are read again; then every open connection whose serial is no
longer pinned is cut ("dropped serial S: pinned P"), and --state-file is rewritten
(atomically) as "generation N pinned P". One line per event to stderr. --port 0 (the
default) picks a free port, written to --ready-file once listening; pid and ready files
are removed on SIGTERM/SIGINT. Python 3 standard library only.
"""
import argparse
import os
import signal
import socket
import socketserver
import ssl
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import serving  # noqa: E402

HANDSHAKE_TIMEOUT = 10
SHORT = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
         "countryName": "C"}


def log(msg):
    sys.stderr.write("pinning_server: %s\n" % msg)
    sys.stderr.flush()


def serial_hex(n):
    """A serial as OpenSSL prints it (BN_bn2hex): upper-case hex of even length."""
    h = "%X" % n
    return "0" + h if len(h) % 2 else h


def read_pin(path):
    """The pinned serial (an int) from the file's first line, None when it is empty."""
    lines = serving.read_lines(path)
    if not lines or not lines[0]:
        return None
    return int(lines[0].replace(":", ""), 16)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, args):
        super().__init__(("127.0.0.1", args.port), Handler)
        self.args = args
        self.mutex = threading.Lock()
        self.reloading = threading.Lock()  # one reload at a time (two SIGHUPs in a row)
        self.generation = 0
        self.ctx = None
        self.pin = None
        self.live = {}  # socket -> serial (int) of the accepted connections still open
        self.reload()

    def serve_forever(self, poll_interval=0.05):
        super().serve_forever(poll_interval)

    def reload(self):
        """Reads the certificate, CA directory and pin again; cuts connections no longer
        pinned. Raises what reading them raised (at start: the server does not start)."""
        with self.reloading:
            self._reload()

    def _reload(self):
        a = self.args
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_cert_chain(a.cert, a.key)
        ctx.load_verify_locations(capath=a.capath)
        pin = read_pin(a.pin_file)
        with self.mutex:
            self.ctx, self.pin = ctx, pin
            self.generation += 1
            gen = self.generation
            cut = [(s, n) for s, n in self.live.items() if n != pin]
        shown = serial_hex(pin) if pin is not None else "nothing"
        log("generation %d: pinned %s" % (gen, shown))
        for sock, n in cut:
            log("dropped serial %s: pinned %s" % (serial_hex(n), shown))
            try:
                # The plain socket's shutdown: the handler's thread owns the TLS object.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass
        if a.state_file:
            serving.write_file(a.state_file, b"generation %d pinned %s\n" % (gen, shown.encode()))

    def current(self):
        with self.mutex:
            return self.ctx, self.pin


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        srv = self.server
        ctx, _ = srv.current()
        self.request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            conn = ctx.wrap_socket(self.request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log("handshake failed: %s" % e)
            return
        try:
            self.talk(conn)
        finally:
            conn.close()

    def talk(self, conn):
        srv = self.server
        cert = conn.getpeercert()
        n = int(cert["serialNumber"], 16)
        subject = ",".join("%s=%s" % (SHORT.get(k, k), v)
                           for rdn in cert["subject"] for k, v in rdn)
        with srv.mutex:
            pin = srv.pin
            if n == pin:
                srv.live[conn] = n
        if n != pin:
            shown = serial_hex(pin) if pin is not None else "nothing"
            log("refused serial %s (%s): pinned %s" % (serial_hex(n), subject, shown))
            conn.sendall(b"refused serial %s: pinned %s\n"
                         % (serial_hex(n).encode(), shown.encode()))
            return
        log("accepted serial %s (%s)" % (serial_hex(n), subject))
        try:
            conn.sendall(b"accepted serial %s\n" % serial_hex(n).encode())
            conn.settimeout(None)
            while conn.recv(4096):
                pass
        except (ssl.SSLError, OSError):
            pass
        finally:
            with srv.mutex:
                srv.live.pop(conn, None)
        log("closed serial %s" % serial_hex(n))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cert", required=True, help="the server's certificate (PEM)")
    p.add_argument("--key", required=True, help="the server's key (PEM)")
    p.add_argument("--capath", required=True, metavar="DIR",
                   help="hashed CA directory the client certificates must verify against")
    p.add_argument("--pin-file", required=True, metavar="FILE",
                   help="first line: the serial accepted (hex)")
    p.add_argument("--port", type=int, default=0, help="listen on 127.0.0.1:N (0: any free)")
    p.add_argument("--state-file", help="'generation N pinned S', rewritten at each (re)load")
    p.add_argument("--pidfile", help="write the process id here")
    p.add_argument("--ready-file", help="write the port here once listening")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    def build():
        try:
            server = Server(args)
        except (OSError, ValueError, ssl.SSLError) as e:
            log("cannot start: %s" % e)
            return None

        def hup(signum, frame):
            # Read in another thread: never inside a lock the interrupted code holds.
            def again():
                try:
                    server.reload()
                except (OSError, ValueError, ssl.SSLError) as e:
                    log("reload failed, the previous pin stays: %s" % e)
            threading.Thread(target=again, daemon=True).start()
        signal.signal(signal.SIGHUP, hup)
        return server, "listening on 127.0.0.1:%d, client certificates from %s" % (
            server.server_address[1], args.capath)

    return serving.run(build, args.pidfile, args.ready_file, log)


if __name__ == "__main__":
    sys.exit(main())
