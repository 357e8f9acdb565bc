# shellcheck shell=bash disable=SC2034,SC2119,SC2120  # make_token, write_conf: optional arguments; SCEP_* are read by the tests
# lib.sh: sourced by tests/integration/t-*.sh and tests/demo.sh.
#
# A test file defines functions named test_* and ends with `run_tests`. Each test runs in
# a subshell, in its own directory $T, with a trap that stops every process it started
# (also when it fails or is interrupted). Assertions do not abort the test: they record a
# failure, print a line to the test's log and return 1 (use `|| return` where the rest of
# the test would make no sense).
#
# Environment:
#   P11ENROLL      the binary under test (absolute path; set by run.sh)
#   P11E_RUN_DIR   per-run directory (test dirs, the cached CA depots); created if unset
#   P11E_RESULTS   file the runner collects "ok"/"FAIL"/"skip" lines from (optional)
#   P11E_TESTS     only run tests whose "file/name" matches this extended regex
#   P11E_CMD_TIMEOUT  seconds a single p11enroll run may take (default 120)

P11E_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRCDIR=$(cd "$P11E_LIB_DIR/../.." && pwd)
export SRCDIR

MODULE=${MODULE:-/usr/lib/softhsm/libsofthsm2.so}
SPY_MODULE=${SPY_MODULE:-$(find /usr/lib -maxdepth 2 -name pkcs11-spy.so 2>/dev/null | head -n1)}
SPY_MODULE=${SPY_MODULE:-/usr/lib/x86_64-linux-gnu/pkcs11-spy.so}

# ---------------------------------------------------------------- processes

# free_port: prints a TCP port that was free on 127.0.0.1 a moment ago.
free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# register_pidfile FILE: stop_all (and the test trap) will stop the process in FILE.
P11E_PIDFILES=()
register_pidfile() {
	P11E_PIDFILES+=("$1")
}

# stop_pid FILE: stops the process whose PID is in FILE: SIGTERM, wait up to 5 s,
# then SIGKILL. Removes FILE. Quiet if it has already gone.
stop_pid() {
	local file=$1 pid i state
	[ -s "$file" ] || return 0
	pid=$(head -n1 "$file")
	rm -f "$file"
	case "$pid" in '' | *[!0-9]*) return 0 ;; esac
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)
		if [ "$state" = Z ]; then
			wait "$pid" 2>/dev/null
			break
		fi
		[ $i -eq 50 ] && kill -KILL "$pid" 2>/dev/null
		sleep 0.1
	done
	wait "$pid" 2>/dev/null
	return 0
}

# stop_all: stops every registered process (newest first).
stop_all() {
	local i
	for ((i = ${#P11E_PIDFILES[@]} - 1; i >= 0; i--)); do
		stop_pid "${P11E_PIDFILES[$i]}"
	done
	P11E_PIDFILES=()
}

# ---------------------------------------------------------------- SCEP server

# _ca_depot NAME DEST: puts a scepserver CA depot into DEST. `scepserver ca -init`
# generates a 4096-bit RSA key (0.4-3.7 s, median ~0.9 s measured), so depots are
# generated once per run in $P11E_RUN_DIR/ca-cache/NAME and copied. Each server gets a
# fresh copy: scepserver refuses a second certificate for a DN it already issued.
_ca_depot() {
	local name=$1 dest=$2 cache tmp
	cache=${P11E_CA_CACHE:-$P11E_RUN_DIR/ca-cache}/$name
	if [ ! -f "$cache/depot/ca.pem" ]; then
		mkdir -p "${cache%/*}"
		tmp=$(mktemp -d "${cache%/*}/.new.XXXXXX") || return 1
		if ! (cd "$tmp" && scepserver ca -init -depot depot -organization "p11enroll test CA $name") \
			>"$tmp/init.log" 2>&1; then
			echo "scepserver ca -init failed:" >&2
			cat "$tmp/init.log" >&2
			rm -rf "$tmp"
			return 1
		fi
		rm -rf "$cache"
		mv "$tmp" "$cache" || return 1
	fi
	rm -rf "$dest"
	cp -r "$cache/depot" "$dest" && chmod -R u+w "$dest"
}

# start_scepserver DIR [extra scepserver flags...]
#   Runs scepserver in the background with a CA depot in DIR/depot, on $SCEP_LISTEN_PORT if set
#   (else a free port), with challenge $SCEP_CHALLENGE (else a random one). The CA is the
#   cached depot named $SCEP_CA (default "main"; use another name for a different CA).
#   Sets SCEP_URL, SCEP_PORT, SCEP_CHALLENGE, SCEP_PIDFILE, SCEP_CA_PEM (not exported).
#   Must not be called in $(...): the server is a child of the calling shell.
#   scepserver binds every interface: only ever talk to it through 127.0.0.1.
start_scepserver() {
	local dir=$1 port pid tries i fixed_port=${SCEP_LISTEN_PORT:-}
	shift
	mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || return 1
	_ca_depot "${SCEP_CA:-main}" "$dir/depot" || return 1
	SCEP_CHALLENGE=${SCEP_CHALLENGE:-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')}
	for ((tries = 0; tries < 3; tries++)); do
		port=${fixed_port:-$(free_port)}
		scepserver -depot "$dir/depot" -port "$port" -challenge "$SCEP_CHALLENGE" "$@" \
			>>"$dir/scepserver.log" 2>&1 </dev/null &
		pid=$!
		echo "$pid" >"$dir/scepserver.pid"
		register_pidfile "$dir/scepserver.pid"
		for ((i = 0; i < 100; i++)); do
			if ! kill -0 "$pid" 2>/dev/null; then
				wait "$pid" 2>/dev/null
				break
			fi
			if curl -fsS --max-time 1 -o /dev/null \
				"http://127.0.0.1:$port/scep?operation=GetCACaps" 2>/dev/null; then
				# Not exported: the challenge must not reach p11enroll's environment.
				SCEP_URL=http://127.0.0.1:$port/scep SCEP_PORT=$port
				SCEP_PIDFILE=$dir/scepserver.pid SCEP_CA_PEM=$dir/depot/ca.pem
				return 0
			fi
			sleep 0.1
		done
		stop_pid "$dir/scepserver.pid"
		# Retry on another port only if the port was ours to choose (lost a race for it).
		[ -z "$fixed_port" ] || break
	done
	echo "scepserver did not answer GetCACaps on 127.0.0.1:$port within 10 s; its log:" >&2
	tail -n 20 "$dir/scepserver.log" >&2
	return 1
}

# ca_fingerprint PEM: "AB:CD:..." SHA-256 over the DER certificate.
ca_fingerprint() {
	openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/^.*=//'
}

# ---------------------------------------------------------------- token

# make_token [LABEL]: a fresh SoftHSM token in $T/hsm (softhsm-setup/softhsm-token.sh).
#   Exports SOFTHSM2_CONF; sets TOKEN_LABEL, PIN_FILE, PIN (a throw-away test PIN).
make_token() {
	local dir=${HSM_DIR:-$T/hsm}
	TOKEN_LABEL=${1:-p11e-test}
	"$SRCDIR/softhsm-setup/softhsm-token.sh" "$dir" "$TOKEN_LABEL" >"$dir.env" 2>"$dir.log" || {
		cat "$dir.log" >&2
		return 1
	}
	# shellcheck disable=SC1090
	. "$dir.env"
	PIN_FILE=$dir/pin
	PIN=$(head -n1 "$PIN_FILE")
}

# p11tool ARGS...: pkcs11-tool logged in to the test token.
p11tool() {
	pkcs11-tool --module "$MODULE" --token-label "$TOKEN_LABEL" --login --pin "$PIN" "$@"
}

# count_objects TYPE: number of privkey|pubkey|cert objects on the test token.
count_objects() {
	local n
	n=$(p11tool --list-objects --type "$1" 2>/dev/null |
		grep -Ec '^(Private Key|Public Key|Certificate) Object')
	echo "${n:-0}"
}

# token_objects: one line per object on the test token: "TYPE|ID|LABEL|ACCESS" with TYPE
# privkey, pubkey or cert (from `pkcs11-tool -O`; ID in lower-case hex).
token_objects() {
	p11tool --list-objects 2>/dev/null | awk '
		function flush() { if (type != "") print type "|" tolower(id) "|" label "|" access; type = "" }
		/^Private Key Object/ { flush(); type = "privkey"; id = label = access = ""; next }
		/^Public Key Object/ { flush(); type = "pubkey"; id = label = access = ""; next }
		/^Certificate Object/ { flush(); type = "cert"; id = label = access = ""; next }
		/^[^ ]/ { flush(); next }
		/^  label:/ { sub(/^  label:[ ]*/, ""); label = $0 }
		/^  ID:/ { sub(/^  ID:[ ]*/, ""); id = $0 }
		/^  Access:/ { sub(/^  Access:[ ]*/, ""); access = $0 }
		END { flush() }'
}

# ---------------------------------------------------------------- configuration

# write_conf [FILE]: writes a p11enroll configuration (default $T/p11enroll.conf, mode
# 0600) from these variables and sets CONF to it:
#   SCEP_URL (required), SCEP_CHALLENGE -> CHALLENGE_FILE (default $T/challenge, 0600),
#   CA_FP (optional), SCEP_TIMEOUT (optional), TOKEN_URI (default pkcs11:token=$TOKEN_LABEL),
#   MODULE, PIN_FILE, KEY_TYPE (rsa:2048), KEY_LABEL (p11enroll), DN, SAN_DNS,
#   TRUST_DIR ($T/trust), STATE_DIR ($T/state), CERT_FILE ($T/cert.pem).
# Set a variable to "-" to leave its line out.
write_conf() {
	CONF=${1:-$T/p11enroll.conf}
	: "${CHALLENGE_FILE:=$T/challenge}"
	: "${TOKEN_URI:=pkcs11:token=$TOKEN_LABEL}"
	: "${KEY_TYPE:=rsa:2048}" "${KEY_LABEL:=p11enroll}"
	: "${DN:=CN=host.example.com,O=Example}" "${SAN_DNS:=host.example.com, alt.example.com}"
	: "${TRUST_DIR:=$T/trust}" "${STATE_DIR:=$T/state}" "${CERT_FILE:=$T/cert.pem}"
	if [ "$CHALLENGE_FILE" != - ] && [ -n "${SCEP_CHALLENGE:-}" ]; then
		(umask 077 && printf '%s\n' "$SCEP_CHALLENGE" >"$CHALLENGE_FILE")
	fi
	_line() { [ -z "$2" ] || [ "$2" = - ] || printf '%s = %s\n' "$1" "$2"; }
	(
		umask 077
		{
			echo "# p11enroll test configuration"
			echo "[scep]"
			_line url "${SCEP_URL:-}"
			_line challenge_file "$CHALLENGE_FILE"
			_line ca_fingerprint "${CA_FP:-}"
			_line timeout "${SCEP_TIMEOUT:-}"
			echo
			echo "[token]"
			_line uri "$TOKEN_URI"
			_line module "$MODULE"
			_line pin_file "${PIN_FILE:-}"
			echo
			echo "[key]"
			_line type "$KEY_TYPE"
			_line label "$KEY_LABEL"
			echo
			echo "[subject]"
			_line dn "$DN"
			_line san_dns "$SAN_DNS"
			echo
			echo "[trust]"
			_line dir "$TRUST_DIR"
			echo
			echo "[agent]"
			_line state_dir "$STATE_DIR"
			_line cert_file "$CERT_FILE"
		} >"$CONF"
	)
}

# setup_enroll: token + scepserver + configuration, the usual start of a test.
#   CA_FP defaults to the server CA's correct "sha256:..." fingerprint; set CA_FP=- for none.
setup_enroll() {
	make_token || return
	start_scepserver "$T/srv" || return
	if [ -z "${CA_FP:-}" ]; then
		CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	fi
	write_conf
}

# norm_hex TEXT: lower-case hex digits only ("AB:CD" -> "abcd").
norm_hex() {
	printf '%s' "$1" | tr -d ': \n' | tr 'A-F' 'a-f'
}

# conf_line FILE REGEX: number of the first line matching REGEX.
conf_line() {
	grep -nE "$2" "$1" | head -n1 | cut -d: -f1
}

# ---------------------------------------------------------------- running p11enroll

# p11e ARGS...: runs "$P11ENROLL" -c "$CONF" ARGS... with a time limit. Sets RC and OUT/ERR
# (files holding its stdout/stderr; each run gets new ones, kept in $T).
# p11e_raw ARGS...: the same without -c.
P11E_RUNS=0
p11e_raw() {
	P11E_RUNS=$((P11E_RUNS + 1))
	OUT=$T/run$P11E_RUNS.out
	ERR=$T/run$P11E_RUNS.err
	echo "+ p11enroll $*" >&2
	timeout -k 5 "${P11E_CMD_TIMEOUT:-120}" "$P11ENROLL" "$@" >"$OUT" 2>"$ERR" </dev/null
	RC=$?
	[ $RC -ne 124 ] || echo "(killed after ${P11E_CMD_TIMEOUT:-120} s)" >>"$ERR"
	sed 's/^/  stdout: /' "$OUT" >&2
	sed 's/^/  stderr: /' "$ERR" >&2
	echo "  exit $RC" >&2
	return $RC
}
p11e() {
	p11e_raw -c "$CONF" "$@"
}

# out_value KEY: the value of the "KEY: value" line in the last run's stdout.
out_value() {
	sed -n "s/^$1:[[:space:]]*//p" "$OUT" | head -n1
}

# ---------------------------------------------------------------- assertions

ASSERTS=0
FAILS=0

# fail MSG: records a failure of the current test.
fail() {
	FAILS=$((FAILS + 1))
	echo "ASSERTION FAILED: $*" >&2
	if [ -n "${T:-}" ]; then
		echo "$*" >>"$T/.failures"
	fi
	return 1
}

_pass() {
	ASSERTS=$((ASSERTS + 1))
	echo "  pass: $*" >&2
}

# _last_err: the first error-looking line of the last p11enroll stderr, for messages.
_last_err() {
	[ -n "${ERR:-}" ] && [ -s "$ERR" ] || return 0
	printf ' (stderr: %s)' "$(grep -v '^(killed' "$ERR" | tail -n1 | cut -c1-200)"
}

# assert_eq EXPECTED ACTUAL [WHAT]
assert_eq() {
	ASSERTS=$((ASSERTS + 1))
	if [ "$1" = "$2" ]; then
		_pass "${3:-value} = '$1'"
	else
		fail "${3:-value}: expected '$1', got '$2'"
	fi
}

# assert_exit CODE CMD...: runs CMD and checks its exit status.
assert_exit() {
	local want=$1 rc
	shift
	ERR=
	"$@"
	rc=$?
	ASSERTS=$((ASSERTS + 1))
	if [ "$rc" = "$want" ]; then
		_pass "exit $rc from: $*"
	elif [ "$rc" = 124 ]; then
		fail "'$*' timed out (expected exit $want)"
	else
		fail "'$*' exited $rc, expected $want$(_last_err)"
	fi
}

# assert_contains FILE TEXT: FILE contains TEXT (a fixed string).
assert_contains() {
	ASSERTS=$((ASSERTS + 1))
	if grep -qF -- "$2" "$1" 2>/dev/null; then
		_pass "$(basename "$1") contains '$2'"
	else
		fail "$(basename "$1") does not contain '$2'$( [ -e "$1" ] || echo ' (no such file)')"
	fi
}

# assert_contains_i FILE TEXT: the same, ignoring case.
assert_contains_i() {
	ASSERTS=$((ASSERTS + 1))
	if grep -qiF -- "$2" "$1" 2>/dev/null; then
		_pass "$(basename "$1") contains '$2' (any case)"
	else
		fail "$(basename "$1") does not contain '$2' (any case)"
	fi
}

# assert_match FILE ERE: some line of FILE matches the extended regex.
assert_match() {
	ASSERTS=$((ASSERTS + 1))
	if grep -qE -- "$2" "$1" 2>/dev/null; then
		_pass "$(basename "$1") matches /$2/"
	else
		fail "$(basename "$1") has no line matching /$2/"
	fi
}

# assert_not_contains FILE TEXT
assert_not_contains() {
	ASSERTS=$((ASSERTS + 1))
	if grep -qF -- "$2" "$1" 2>/dev/null; then
		fail "$(basename "$1") contains '$2' but must not"
	else
		_pass "$(basename "$1") does not contain '$2'"
	fi
}

# assert_file / assert_no_file PATH
assert_file() {
	ASSERTS=$((ASSERTS + 1))
	if [ -s "$1" ]; then _pass "$1 exists"; else fail "$1 missing or empty"; fi
}
assert_no_file() {
	ASSERTS=$((ASSERTS + 1))
	if [ -e "$1" ]; then fail "$1 exists but must not"; else _pass "$1 absent"; fi
}

# skip REASON: ends the current test as skipped (only for a real impossibility).
skip() {
	echo "$*" >"$T/.skip"
	touch "$T/.done"
	exit 0
}

# ---------------------------------------------------------------- runner

_report() {
	# _report ok|FAIL|skip NAME [REASON]
	local line
	if [ -n "${3:-}" ]; then line="$1 $2: $3"; else line="$1 $2"; fi
	echo "$line"
	[ -z "${P11E_RESULTS:-}" ] || echo "$line" >>"$P11E_RESULTS"
}

_run_one() {
	local fn=$1 file=$2 name dir rc reason
	name=$file/${fn#test_}
	dir=$P11E_RUN_DIR/$file/${fn#test_}
	rm -rf "$dir"
	mkdir -p "$dir"
	(
		T=$dir
		cd "$T" || exit 1
		# shellcheck disable=SC2317
		_test_exit() {
			local rc=$?
			trap - EXIT INT TERM
			stop_all
			echo "$ASSERTS $FAILS" >"$T/.counts"
			exit "$rc"
		}
		trap _test_exit EXIT
		trap 'fail "interrupted"; exit 130' INT TERM
		"$fn"
		touch "$T/.done"
	) >"$dir/log" 2>&1 </dev/null
	rc=$?
	if [ -s "$dir/.failures" ]; then
		reason=$(head -n1 "$dir/.failures")
		local n
		n=$(wc -l <"$dir/.failures")
		[ "$n" -le 1 ] || reason="$reason (+$((n - 1)) more)"
	elif [ ! -e "$dir/.done" ]; then
		reason="test aborted with exit status $rc (log: $dir/log)"
	fi
	if [ -n "${reason:-}" ]; then
		_report FAIL "$name" "$reason"
		sed 's/^/    /' "$dir/.failures" 2>/dev/null | tail -n +2
		echo "    log: $dir/log"
		return 1
	elif [ -s "$dir/.skip" ]; then
		_report skip "$name" "$(head -n1 "$dir/.skip")"
	else
		_report ok "$name"
	fi
	return 0
}

# run_tests: runs every test_* function of the calling file (in name order).
run_tests() {
	local file fn own_dir=0 failed=0 passed=0
	file=$(basename "$0" .sh)
	if [ -z "${P11E_RUN_DIR:-}" ]; then
		P11E_RUN_DIR=$(mktemp -d /tmp/p11e-test.XXXXXX)
		export P11E_RUN_DIR
		own_dir=1
	fi
	export P11E_CA_CACHE=${P11E_CA_CACHE:-$P11E_RUN_DIR/ca-cache}
	if [ -z "${P11ENROLL:-}" ] || [ ! -x "$P11ENROLL" ]; then
		echo "P11ENROLL is not set to an executable (got '${P11ENROLL:-}')" >&2
		exit 2
	fi
	for fn in $(declare -F | awk '{print $3}' | grep '^test_'); do
		if [ -n "${P11E_TESTS:-}" ] && ! [[ $file/${fn#test_} =~ $P11E_TESTS ]]; then
			continue
		fi
		if _run_one "$fn" "$file"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
	done
	if [ $own_dir = 1 ]; then
		echo "$passed passed, $failed failed"
		if [ $failed = 0 ]; then rm -rf "$P11E_RUN_DIR"; else echo "test dirs kept in $P11E_RUN_DIR" >&2; fi
	fi
	[ $failed = 0 ]
}
