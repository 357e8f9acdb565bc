#!/usr/bin/python3
"""vicc.py [vicc arguments...]

Runs vsmartcard's vicc (Debian package vsmartcard-vpicc) as installed on Debian 12,
with the workarounds it needs there:
  - the package is installed one directory too deep
    (/usr/lib/python3/site-packages/virtualsmartcard/virtualsmartcard): that
    directory's parent goes on sys.path;
  - it imports PyCrypto's `Crypto`; python3-pycryptodome provides `Cryptodome`:
    pyshim/Crypto maps one onto the other;
  - every APDU crossed the vpcd socket with a 40 ms delayed ACK (vpcd's next
    write waits for the ACK under Nagle), so OpenSC's probe of an unrecognised
    card (~55 APDUs, repeated on each PKCS#11 call) took 2.4 s per call; the
    socket acks at once (TCP_QUICKACK, re-armed around each recv).
"""
import glob
import os
import runpy
import shutil
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def package_dir():
    for pattern in ("/usr/lib/python3/site-packages/virtualsmartcard",
                    "/usr/lib/python3/dist-packages/virtualsmartcard",
                    "/usr/local/lib/python3*/*-packages/virtualsmartcard",
                    "/usr/lib/python3*/site-packages/virtualsmartcard"):
        for d in sorted(glob.glob(pattern)):
            if os.path.exists(os.path.join(d, "virtualsmartcard", "VirtualSmartcard.py")):
                return d
    return None


def quickack_recv():
    recv = socket.socket.recv

    def ack(sock):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except (OSError, AttributeError):
            pass

    def patched(self, *args, **kwargs):
        ack(self)
        data = recv(self, *args, **kwargs)
        ack(self)
        return data

    socket.socket.recv = patched


def main():
    vicc = shutil.which("vicc") or "/usr/bin/vicc"
    if not os.path.exists(vicc):
        sys.stderr.write("vicc.py: vicc not found (install vsmartcard-vpicc)\n")
        return 127
    sys.dont_write_bytecode = True  # no __pycache__ in the source tree (pyshim)
    d = package_dir()
    sys.path[:0] = [os.path.join(HERE, "pyshim")] + ([d] if d else [])
    quickack_recv()
    sys.argv[0] = vicc
    runpy.run_path(vicc, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
