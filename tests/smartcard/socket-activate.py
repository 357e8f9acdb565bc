#!/usr/bin/python3
"""socket-activate.py SOCKET PROGRAM [ARGS...]

systemd-style socket activation of one program, without systemd: binds a
listening Unix socket at SOCKET, hands it over as file descriptor 3 with
LISTEN_FDS=1 and LISTEN_PID set to this process, and execs PROGRAM in this
same process (the PID a caller recorded is PROGRAM's PID).

Used for a private pcscd: pcsc-lite 1.9.9's daemon always listens on the
compiled-in /run/pcscd/pcscd.comm (it ignores PCSCLITE_CSOCK_NAME, which only
the client library reads), except when it is socket-activated; then it serves
the socket it was given.
"""
import os
import socket
import sys

LISTEN_FD = 3


def main():
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    path = sys.argv[1]
    if len(os.fsencode(path)) > 107:
        sys.stderr.write("socket-activate.py: socket path longer than 107 bytes: %s\n" % path)
        return 2
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(128)
    if sock.fileno() != LISTEN_FD:
        os.dup2(sock.fileno(), LISTEN_FD)
    os.set_inheritable(LISTEN_FD, True)
    os.environ["LISTEN_FDS"] = "1"
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.environ.pop("LISTEN_FDNAMES", None)
    os.execvp(sys.argv[2], sys.argv[2:])
    return 127


if __name__ == "__main__":
    sys.exit(main())
