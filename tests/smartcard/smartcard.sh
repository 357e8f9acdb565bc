#!/bin/bash
# shellcheck shell=bash disable=SC2034  # SC_* are read by the tests that source this
# smartcard.sh: a private PC/SC stack for tests: our own pcscd with the vsmartcard
# virtual reader driver (vpcd), and vsmartcard's virtual card (vicc) to put in it.
# Debian 12 has no virtual card that OpenSC can generate keys on; what this gives is
# a reader with no card, and a reader with a card OpenSC does not recognise.
#
# Sourced by tests/integration/t-smartcard.sh (after lib.sh: processes are registered
# with register_pidfile, so the test's trap stops them), or run by hand:
#   tests/smartcard/smartcard.sh start DIR [card]   prints the PCSCLITE_CSOCK_NAME to export
#   tests/smartcard/smartcard.sh stop DIR
# (a pcscd left alone exits by itself after 60 s without clients: --auto-exit.)
#
# How the pcscd is private (pcsc-lite 1.9.9):
#   - The client library (libpcsclite, which OpenSC's PKCS#11 module loads) reads
#     PCSCLITE_CSOCK_NAME; the daemon does not: it listens on /run/pcscd/pcscd.comm,
#     unless it is socket-activated. socket-activate.py binds DIR/pcscd.comm and execs
#     pcscd with it as fd 3 (LISTEN_FDS/LISTEN_PID). PCSCLITE_CSOCK_NAME=DIR/pcscd.comm
#     is exported for the test's clients (p11enroll, pkcs11-tool, opensc-tool).
#   - Readers come from DIR/reader.conf only (pcscd -c FILE): vpcd on two free ports
#     (vpcd has two slots, "Virtual PCD 00 00" on port P and "Virtual PCD 00 01" on
#     P+1; vicc connects to one of them). vpcd listens on every interface.
#   - pcscd still writes /run/pcscd/pcscd.pid (and removes it on exit). Where a mount
#     namespace is allowed (root, or an unprivileged user namespace), pcscd runs in one
#     with a tmpfs on /run, so nothing outside DIR is touched. Otherwise, as root,
#     that is logged and it runs without; as a user without namespaces it cannot run
#     (pcscd exits when it cannot create /run/pcscd): sc_start_pcscd says so and
#     fails. A system pcscd on /run/pcscd/pcscd.comm is never used nor stopped.
#   - USB readers still come through pcscd's hotplug (libudev): a real reader plugged
#     in shows up as one more slot (the tests only look for the Virtual PCD readers).
#   - Every process is stopped by the PID in its pid file in DIR.

SC_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SC_PYTHON=${SC_PYTHON:-/usr/bin/python3}
SC_VPCD_DRIVER=${SC_VPCD_DRIVER:-/usr/lib/pcsc/drivers/serial/libifdvpcd.so}
SC_OPENSC_MODULE=${SC_OPENSC_MODULE:-$(find /usr/lib /usr/lib64 -maxdepth 2 -name opensc-pkcs11.so 2>/dev/null | head -n1)}
SC_OPENSC_MODULE=${SC_OPENSC_MODULE:-/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so}

# sc_missing: prints what this machine lacks for the private PC/SC stack (nothing if
# all is there).
sc_missing() {
	command -v pcscd >/dev/null || [ -x /usr/sbin/pcscd ] || echo "pcscd (package pcscd)"
	[ -e "$SC_VPCD_DRIVER" ] || echo "$SC_VPCD_DRIVER (package vsmartcard-vpcd)"
	command -v vicc >/dev/null || echo "vicc (package vsmartcard-vpicc)"
	command -v opensc-tool >/dev/null || echo "opensc-tool (package opensc)"
	[ -e "$SC_OPENSC_MODULE" ] || echo "$SC_OPENSC_MODULE (package opensc)"
	[ -x "$SC_PYTHON" ] || echo "$SC_PYTHON"
	"$SC_PYTHON" -c 'import Cryptodome' 2>/dev/null || echo "python3 Cryptodome (package python3-pycryptodome)"
}

_sc_register() {
	if declare -F register_pidfile >/dev/null; then register_pidfile "$1"; fi
}

_sc_stop() {
	if declare -F stop_pid >/dev/null; then
		stop_pid "$1"
		return
	fi
	local pid i
	[ -s "$1" ] || return 0
	pid=$(head -n1 "$1")
	rm -f "$1"
	case "$pid" in '' | *[!0-9]*) return 0 ;; esac
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
}

# _sc_port_pair: prints a port P such that P and P+1 were both free (every interface).
_sc_port_pair() {
	"$SC_PYTHON" -c 'import socket
for _ in range(100):
    a = socket.socket()
    a.bind(("", 0))
    p = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("", p + 1))
    except OSError:
        continue
    finally:
        a.close()
        b.close()
    print(p)
    break'
}

# _sc_isolation: the command prefix that runs pcscd in its own mount namespace, or
# nothing where none can be made (or SC_NO_NAMESPACE is set).
_sc_isolation() {
	if [ -n "${SC_NO_NAMESPACE:-}" ]; then
		return 0
	elif [ "$(id -u)" = 0 ] && unshare -m --propagation private true 2>/dev/null; then
		echo "unshare -m --propagation private"
	elif unshare -r -m --propagation private true 2>/dev/null; then
		echo "unshare -r -m --propagation private"
	fi
}

# sc_readers: opensc-tool's reader list (through $PCSCLITE_CSOCK_NAME).
sc_readers() {
	opensc-tool --list-readers 2>&1
}

# sc_card_in SLOT: true if the reader "Virtual PCD 00 0SLOT" holds a card.
sc_card_in() {
	sc_readers | awk -v r="Virtual PCD 00 0$1" '$2 == "Yes" && index($0, r) { f = 1 } END { exit !f }'
}

# sc_start_pcscd DIR
#   Starts a private pcscd serving DIR/pcscd.comm with two empty vpcd readers. Exports
#   PCSCLITE_CSOCK_NAME; sets SC_DIR, SC_PORT (slot 0's vpcd port; slot 1 is +1),
#   SC_READER0 and SC_READER1 (the reader names). Pid file DIR/pcscd.pid, log DIR/pcscd.log.
#   Not in $(...): pcscd is a child of the calling shell.
sc_start_pcscd() {
	local dir=$1 sock pcscd iso tries i pid
	mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || return 1
	sock=$dir/pcscd.comm
	if [ ${#sock} -gt 107 ]; then
		echo "sc_start_pcscd: socket path too long for a Unix socket (${#sock} > 107): $sock" >&2
		return 1
	fi
	pcscd=$(command -v pcscd || echo /usr/sbin/pcscd)
	iso=$(_sc_isolation)
	if [ -z "$iso" ] && [ "$(id -u)" != 0 ] && ! [ -w /run/pcscd ]; then
		# pcscd exits at once if it cannot create /run/pcscd.
		echo "sc_start_pcscd: cannot run a private pcscd here: as a user it needs a mount" \
			"namespace (unshare -r -m is refused) or a writable /run/pcscd; run the" \
			"tests as root or allow unprivileged user namespaces" >&2
		return 1
	elif [ -z "$iso" ]; then
		echo "sc_start_pcscd: no mount namespace here; pcscd writes /run/pcscd/pcscd.pid" >&2
	fi
	for ((tries = 0; tries < 3; tries++)); do
		SC_PORT=$(_sc_port_pair) || return 1
		printf 'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:0x%X\nLIBPATH %s\nCHANNELID 0x%X\n' \
			"$SC_PORT" "$SC_VPCD_DRIVER" "$SC_PORT" >"$dir/reader.conf"
		echo "--- pcscd, vpcd ports $SC_PORT and $((SC_PORT + 1))" >>"$dir/pcscd.log"
		# shellcheck disable=SC2086,SC2016  # $iso: a command prefix; $@ is for sh -c
		if [ -n "$iso" ]; then
			$iso sh -c 'mount -t tmpfs -o mode=0755 p11e-pcscd /run && exec "$@"' sh \
				"$SC_PYTHON" "$SC_HERE/socket-activate.py" "$sock" \
				"$pcscd" --foreground --auto-exit --debug -c "$dir/reader.conf" \
				>>"$dir/pcscd.log" 2>&1 </dev/null &
		else
			"$SC_PYTHON" "$SC_HERE/socket-activate.py" "$sock" \
				"$pcscd" --foreground --auto-exit --debug -c "$dir/reader.conf" \
				>>"$dir/pcscd.log" 2>&1 </dev/null &
		fi
		pid=$!
		echo "$pid" >"$dir/pcscd.pid"
		_sc_register "$dir/pcscd.pid"
		export PCSCLITE_CSOCK_NAME=$sock
		SC_DIR=$dir SC_READER0="Virtual PCD 00 00" SC_READER1="Virtual PCD 00 01"
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			if grep -q 'daemon ready' "$dir/pcscd.log" && sc_readers >"$dir/readers.txt" &&
				grep -qF "$SC_READER0" "$dir/readers.txt"; then
				return 0
			fi
			sleep 0.1
		done
		# Not up, or without its reader (a vpcd port taken meanwhile): again, other ports.
		_sc_stop "$dir/pcscd.pid"
	done
	echo "sc_start_pcscd: pcscd did not come up with reader '$SC_READER0' in 5 s; its log:" >&2
	tail -n 20 "$dir/pcscd.log" >&2
	return 1
}

# sc_insert_card [SLOT]
#   Starts vicc (an ISO 7816 card OpenSC does not recognise) on the vpcd port of SLOT
#   (default 0) of the pcscd sc_start_pcscd started, and waits until the reader shows
#   the card. Pid file $SC_DIR/vicc-SLOT.pid, log $SC_DIR/vicc-SLOT.log. Not in $(...).
sc_insert_card() {
	local slot=${1:-0} pid i
	"$SC_PYTHON" "$SC_HERE/vicc.py" --type iso7816 --hostname 127.0.0.1 \
		--port $((SC_PORT + slot)) >>"$SC_DIR/vicc-$slot.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$SC_DIR/vicc-$slot.pid"
	_sc_register "$SC_DIR/vicc-$slot.pid"
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sc_card_in "$slot" && return 0
		sleep 0.1
	done
	echo "sc_insert_card: no card in 'Virtual PCD 00 0$slot' after 10 s; vicc's log:" >&2
	tail -n 20 "$SC_DIR/vicc-$slot.log" >&2
	sc_readers >&2
	return 1
}

# sc_remove_card [SLOT]: stops that vicc (the card leaves the reader) and waits until
# the reader is empty.
sc_remove_card() {
	local slot=${1:-0} i
	_sc_stop "$SC_DIR/vicc-$slot.pid"
	for ((i = 0; i < 50; i++)); do
		sc_card_in "$slot" || return 0
		sleep 0.1
	done
	echo "sc_remove_card: reader 'Virtual PCD 00 0$slot' still shows a card" >&2
	return 1
}

# sc_stop_all: stops vicc and pcscd (also done by the test's trap).
sc_stop_all() {
	local f
	for f in "$SC_DIR"/vicc-*.pid; do
		[ -e "$f" ] && _sc_stop "$f"
	done
	_sc_stop "$SC_DIR/pcscd.pid"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -u
	case "${1:-} ${2:-}" in
	start\ ?*)
		missing=$(sc_missing)
		if [ -n "$missing" ]; then
			echo "missing: $missing" >&2
			exit 1
		fi
		sc_start_pcscd "$2" || exit 1
		if [ "${3:-}" = card ]; then sc_insert_card 0 || exit 1; fi
		echo "export PCSCLITE_CSOCK_NAME=$PCSCLITE_CSOCK_NAME"
		echo "# module: $SC_OPENSC_MODULE; readers:" >&2
		sc_readers >&2
		;;
	stop\ ?*)
		SC_DIR=$(cd "$2" && pwd) || exit 1
		sc_stop_all
		;;
	*)
		echo "usage: $0 start DIR [card] | stop DIR" >&2
		exit 2
		;;
	esac
fi
