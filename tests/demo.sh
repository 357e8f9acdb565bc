#!/bin/bash
# demo.sh BINARY: the body of `make demo`. In a temporary directory: a SoftHSM token,
# a scepserver CA on a free loopback port, a p11enroll configuration; then
# `p11enroll check`, `enroll`, `status`, and a look at the result with openssl and
# pkcs11-tool. Everything it started is stopped (by PID) and the directory removed,
# also on failure or Ctrl-C. Exits with enroll's status.
set -uo pipefail

[ $# -eq 1 ] || {
	echo "usage: $0 BINARY" >&2
	exit 64
}
BIN=$1
case "$BIN" in /*) ;; *) BIN=$PWD/$BIN ;; esac
[ -x "$BIN" ] || {
	echo "$0: $BIN is not executable (run make)" >&2
	exit 64
}
for cmd in scepserver softhsm2-util pkcs11-tool openssl curl python3; do
	command -v "$cmd" >/dev/null || {
		echo "$0: $cmd not found; run: tests/install-deps.sh build" >&2
		exit 69
	}
done

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/integration/lib.sh"

T=$(mktemp -d /tmp/p11enroll-demo.XXXXXX)
P11E_RUN_DIR=$T
export P11E_RUN_DIR
# shellcheck disable=SC2317  # called by the trap
cleanup() {
	stop_all
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -t 1 ]; then
	say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
	say() { printf '\n== %s\n' "$*"; }
fi
show() {
	echo "\$ $*"
	"$@"
}

say "SoftHSM token 'demo' in $T/hsm"
make_token demo || exit 1

say "scepserver (Debian 'scep' package), new CA, on 127.0.0.1"
start_scepserver "$T/srv" || exit 1
echo "SCEP URL: $SCEP_URL"

say "configuration $T/p11enroll.conf (PIN and challenge in 0600 files)"
CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
KEY_TYPE=${KEY_TYPE:-rsa:2048}
write_conf "$T/p11enroll.conf"
cat "$CONF"

say "p11enroll check"
show "$BIN" -c "$CONF" check
echo "(exit $?)"

say "p11enroll enroll"
show "$BIN" -c "$CONF" enroll
rc=$?
echo "(exit $rc)"

say "p11enroll status"
show "$BIN" -c "$CONF" status
echo "(exit $?)"

if [ -s "$CERT_FILE" ]; then
	say "the issued certificate"
	show openssl x509 -in "$CERT_FILE" -noout -subject -issuer -dates -ext subjectAltName
	show openssl verify -CApath "$TRUST_DIR" "$CERT_FILE"
	ls -l "$TRUST_DIR"
fi

say "objects on the token"
echo "\$ pkcs11-tool --module $MODULE --token-label $TOKEN_LABEL --login --pin \$(cat $PIN_FILE) -O"
p11tool -O

say "cleaning up"
if [ "$rc" -eq 0 ]; then echo "demo OK"; else echo "enroll failed with exit $rc"; fi
exit "$rc"
