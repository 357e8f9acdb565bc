#!/bin/bash
# run.sh: runs every tests/integration/t-*.sh against $P11ENROLL (default build/p11enroll).
#   P11ENROLL=build/p11enroll tests/integration/run.sh [t-enroll.sh ...]
#   P11E_TESTS=REGEX   only tests whose "file/name" matches (e.g. 't-enroll/|config')
#   P11E_KEEP=1        keep the per-run directory even when everything passed
# Prints "ok NAME" / "FAIL NAME: reason" / "skip NAME: reason" per test and ends with
# the line "N passed, N failed". Exits 1 if anything failed. A missing component
# (binary, scepserver, SoftHSM, OpenSC...) is a failure, not a skip.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "$here/../.." && pwd)

P11ENROLL=${P11ENROLL:-$srcdir/build/p11enroll}
case "$P11ENROLL" in /*) ;; *) P11ENROLL=$PWD/$P11ENROLL ;; esac
export P11ENROLL

passed=0
failed=0
skipped=0

# Preconditions: everything the tests need must be there.
missing=()
[ -x "$P11ENROLL" ] || missing+=("p11enroll binary $P11ENROLL (run make)")
for cmd in scepserver softhsm2-util pkcs11-tool openssl curl python3 timeout awk od; do
	command -v "$cmd" >/dev/null || missing+=("command $cmd")
done
[ -e /usr/lib/softhsm/libsofthsm2.so ] || missing+=("/usr/lib/softhsm/libsofthsm2.so (softhsm2)")
ls /usr/lib/*/pkcs11-spy.so >/dev/null 2>&1 || missing+=("pkcs11-spy.so (opensc)")
if [ ${#missing[@]} -gt 0 ]; then
	for m in "${missing[@]}"; do
		echo "FAIL setup: missing $m"
	done
	echo "(install with: tests/install-deps.sh test)"
	echo "0 passed, ${#missing[@]} failed"
	exit 1
fi

P11E_RUN_DIR=$(mktemp -d /tmp/p11e-it.XXXXXX)
P11E_RESULTS=$P11E_RUN_DIR/results
export P11E_RUN_DIR P11E_RESULTS
: >"$P11E_RESULTS"

# Ctrl-C reaches the running test too (same process group): its trap stops its servers.
trap 'echo "interrupted; test dirs kept in $P11E_RUN_DIR" >&2; exit 130' INT TERM

if [ $# -gt 0 ]; then
	files=()
	for f in "$@"; do
		case "$f" in */*) files+=("$f") ;; *) files+=("$here/$f") ;; esac
	done
else
	files=("$here"/t-*.sh)
fi

start=$(date +%s)
for f in "${files[@]}"; do
	[ -e "$f" ] || {
		echo "FAIL $(basename "$f" .sh): no such test file"
		failed=$((failed + 1))
		continue
	}
	before=$(wc -l <"$P11E_RESULTS")
	bash "$f"
	rc=$?
	after=$(wc -l <"$P11E_RESULTS")
	# A file that crashed before reporting anything (syntax error...) is a failure.
	if [ "$rc" -ne 0 ] && [ "$after" -eq "$before" ]; then
		echo "FAIL $(basename "$f" .sh): test file exited with status $rc and reported nothing"
		failed=$((failed + 1))
	fi
done

passed=$((passed + $(grep -c '^ok ' "$P11E_RESULTS")))
failed=$((failed + $(grep -c '^FAIL ' "$P11E_RESULTS")))
skipped=$(grep -c '^skip ' "$P11E_RESULTS")

echo "($(($(date +%s) - start)) s, $skipped skipped, p11enroll: $P11ENROLL)"
if [ "$failed" -eq 0 ] && [ "${P11E_KEEP:-0}" != 1 ]; then
	rm -rf "$P11E_RUN_DIR"
else
	echo "(test dirs kept in $P11E_RUN_DIR)"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
