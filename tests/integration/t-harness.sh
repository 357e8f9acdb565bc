#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-harness.sh: the test environment itself works, independently of p11enroll:
# scepserver starts, answers and issues a certificate to the Debian `scepclient`,
# SoftHSM tokens are created, and a failing test's servers are stopped by its trap.
# If these fail, the p11enroll failures in the other files are not p11enroll's.
. "$(dirname "$0")/lib.sh"

test_scepserver_issues_to_scepclient() {
	start_scepserver "$T/srv" || return
	curl -fsS "$SCEP_URL?operation=GetCACaps" >caps.txt
	assert_contains caps.txt POSTPKIOperation
	assert_contains caps.txt SHA-256
	# scepclient writes csr.pem/self.pem into its working directory and reuses them:
	# one directory per run.
	mkdir good bad
	(cd good && scepclient -server-url "$SCEP_URL" -challenge "$SCEP_CHALLENGE" \
		-private-key key.pem -certificate cert.pem -cn harness.example.com) >good.log 2>&1
	assert_eq 0 $? "scepclient exit status"
	openssl verify -CAfile "$SCEP_CA_PEM" good/cert.pem >verify.txt 2>&1
	assert_contains verify.txt "good/cert.pem: OK"
	(cd bad && scepclient -server-url "$SCEP_URL" -challenge wrong-challenge \
		-private-key key.pem -certificate cert.pem -cn other.example.com) >bad.log 2>&1
	assert_eq 1 $? "scepclient exit status with a wrong challenge"
	assert_contains bad.log "failInfo: badRequest"
	assert_no_file bad/cert.pem

	local pid
	pid=$(cat "$SCEP_PIDFILE")
	stop_pid "$SCEP_PIDFILE"
	if kill -0 "$pid" 2>/dev/null; then fail "scepserver $pid still running after stop_pid"; fi
	if curl -fsS --max-time 2 -o /dev/null "$SCEP_URL?operation=GetCACaps" 2>/dev/null; then
		fail "something still answers on $SCEP_URL"
	fi
}

test_two_servers_have_different_cas() {
	start_scepserver "$T/a" || return
	local fp_a url_a=$SCEP_URL
	fp_a=$(ca_fingerprint "$SCEP_CA_PEM")
	SCEP_CA=other start_scepserver "$T/b" || return
	assert_eq 1 "$([ "$fp_a" != "$(ca_fingerprint "$SCEP_CA_PEM")" ] && echo 1)" "CAs differ"
	assert_eq 1 "$([ "$url_a" != "$SCEP_URL" ] && echo 1)" "URLs differ"
	# Same CA from the cache for a second server of the same name.
	start_scepserver "$T/c" || return
	assert_eq "$fp_a" "$(ca_fingerprint "$SCEP_CA_PEM")" "cached CA reused"
}

test_token_is_fresh_and_usable() {
	make_token || return
	assert_eq 0 "$(count_objects privkey)" "private keys on a new token"
	assert_eq 600 "$(stat -c %a "$PIN_FILE")" "PIN file mode"
	p11tool --keypairgen --key-type EC:prime256v1 --id 01 --label probe >/dev/null 2>&1
	assert_eq 1 "$(count_objects privkey)" "private keys after pkcs11-tool keygen"
}

# pool_spki N FILE: the public key (DER) of the pool's key number N (from 0) into FILE.
pool_spki() {
	awk -v n="$(($1 + 1))" '/-----BEGIN/ { c++ } c == n' "$P11E_RSA_POOL" |
		openssl pkey -pubout -outform DER -out "$2" 2>/dev/null
}

# The shim that hands SoftHSM pre-made RSA keys (tests/fault/keypool_rsa.c, lib.sh's
# run_tests): SoftHSM's key pairs are still its own (local, never extractable), each one
# a different key of the pool, and nothing but SoftHSM under the shim gets one.
test_softhsm_rsa_keys_from_the_pool() {
	if [ -z "${P11E_RSA_SHIM:-}" ] || [ "${LD_PRELOAD:-}" = "${LD_PRELOAD#*"$P11E_RSA_SHIM"}" ]; then
		fail "the key pool shim is not preloaded (P11E_RSA_SHIM); run the tests with make integration"
		return 1
	fi
	make_token || return
	p11tool --keypairgen --key-type rsa:2048 --id 01 --label first >/dev/null 2>&1
	p11tool --keypairgen --key-type rsa:2048 --id 02 --label second >/dev/null 2>&1
	local i
	for i in 1 2; do
		token_spki "0$i" "spki$i.der" 2>/dev/null
		pool_spki $((i - 1)) "pool$i.der" || return
		cmp -s "spki$i.der" "pool$i.der"
		assert_eq 0 $? "SoftHSM's key $i is the pool's key $((i - 1))"
	done
	cmp -s spki1.der spki2.der
	assert_eq 1 $? "two keys of one test differ"
	assert_eq 2 "$(cat "$P11E_RSA_POOL_STATE")" "keys taken from the pool"
	token_objects >objects.txt
	assert_match objects.txt '^privkey\|01\|first\|.*never extractable, local'
	assert_match objects.txt '^privkey\|02\|second\|.*never extractable, local'
	# Without a counter, SoftHSM's own generator: not the pool's next key.
	(
		unset P11E_RSA_POOL_STATE
		p11tool --keypairgen --key-type rsa:2048 --id 03 --label own >/dev/null 2>&1
	)
	token_spki 03 spki3.der 2>/dev/null
	pool_spki 2 pool3.der || return
	assert_eq 1 "$([ -s spki3.der ] && ! cmp -s spki3.der pool3.der && echo 1)" \
		"without a counter, a key of SoftHSM's own generator"
	# Another caller of RSA_generate_key_ex (python3-cryptography's) is left alone.
	/usr/bin/python3 -c 'import sys
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives import serialization as s
k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
sys.stdout.buffer.write(k.public_key().public_bytes(s.Encoding.DER, s.PublicFormat.SubjectPublicKeyInfo))' >py.der
	assert_eq 1 "$([ -s py.der ] && ! cmp -s py.der pool3.der && echo 1)" "python3's key is its own"
	assert_eq 2 "$(cat "$P11E_RSA_POOL_STATE")" "keys taken from the pool after the other generators"
}

test_failing_test_stops_its_servers() {
	mkdir meta
	cat >meta/t-meta.sh <<EOF
. "$P11E_LIB_DIR/lib.sh"
test_x() {
	start_scepserver "\$T/srv" || return
	cat "\$SCEP_PIDFILE" >"$T/meta.pid"
	fail "deliberate"
	exit 3
}
run_tests
EOF
	P11E_RUN_DIR=$T/meta-run P11E_RESULTS='' P11E_TESTS='' bash meta/t-meta.sh >meta.out 2>&1
	assert_eq 1 $? "exit status of a file with a failing test"
	assert_contains meta.out "FAIL t-meta/x: deliberate"
	local pid
	pid=$(cat meta.pid 2>/dev/null)
	assert_eq 1 "$([ -n "$pid" ] && echo 1)" "meta test started a server"
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		fail "scepserver $pid of the failed test is still running"
		kill "$pid"
	fi
}

# A process a test starts and does not stop (here: a server started through a function,
# whose $! is a subshell's PID, as t-stepca's s_server was) fails that test, by name,
# and is stopped; a test that stops what it starts passes.
test_test_that_leaves_a_process_fails() {
	mkdir meta
	echo ". '$P11E_LIB_DIR/lib.sh'" >meta/t-meta.sh
	cat >>meta/t-meta.sh <<'EOF'
server() { /usr/bin/sleep "$@"; } # the command, not lib.sh's builtin: a process of its own
test_leaks() {
	server 61 &
	echo $! >srv.pid
	register_pidfile "$T/srv.pid"
	sleep 0.2
	ps -o pid= --ppid "$(cat srv.pid)" | tr -d ' ' >"$T/../leaked.pid"
}
test_stops() {
	sleep 62 &
	echo $! >srv.pid
	register_pidfile "$T/srv.pid"
}
run_tests
EOF
	P11E_RUN_DIR=$T/meta-run P11E_RESULTS='' P11E_TESTS='' bash meta/t-meta.sh >meta.out 2>&1
	assert_eq 1 $? "exit status of a file with a leaking test"
	assert_contains meta.out "FAIL t-meta/leaks: processes left running after the test (now stopped): "
	assert_match meta.out "FAIL t-meta/leaks: .*[0-9]+ /usr/bin/sleep 61$" || return
	assert_contains meta.out "ok t-meta/stops"
	local pid state
	pid=$(cat meta-run/t-meta/leaked.pid 2>/dev/null)
	assert_match meta-run/t-meta/leaked.pid '^[0-9]+$' || return
	# Stopped: gone, or a zombie its new parent has not reaped yet.
	state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)
	if [ -n "$state" ] && [ "$state" != Z ]; then
		fail "the leaked sleep $pid is still running (state $state)"
		kill "$pid"
	fi
}

# A failed test says what went wrong, also once its directory is gone (CI): the error
# line of the command's stderr rather than its last line, and the error lines of the
# servers' logs and the other stderr files.
test_failure_shows_what_went_wrong() {
	mkdir meta
	echo ". '$P11E_LIB_DIR/lib.sh'" >meta/t-meta.sh
	cat >>meta/t-meta.sh <<'EOF'
station() {
	ERR=$T/run2.err
	printf '%s\n' "token 'card-02': failed: HTTP 500 from the server" "token 'card-03': done" >"$ERR"
	return 69
}
test_x() {
	mkdir srv
	printf '%s\n' "GET GetCACert -> 200" "POST PKIOperation -> 500 unparseable (odd)" >srv/responder.log
	printf '%s\n' "p11enroll: error: the first run" >run1.err
	assert_exit 0 station
}
run_tests
EOF
	P11E_RUN_DIR=$T/meta-run P11E_RESULTS='' P11E_TESTS='' bash meta/t-meta.sh >meta.out 2>&1
	assert_eq 1 $? "exit status of a file with a failing test"
	assert_contains meta.out "exited 69, expected 0 (stderr: token 'card-02': failed: HTTP 500 from the server)"
	assert_contains meta.out "    srv/responder.log: POST PKIOperation -> 500 unparseable (odd)"
	assert_contains meta.out "    run1.err: p11enroll: error: the first run"
	assert_not_contains meta.out "GetCACert -> 200"
}

# stop_pid signals the process its file names, never another that has the PID since:
# one started after the file was written is left running (a check spawns more than
# pid_max processes; another test's server or card could hold the number by then).
test_stop_pid_leaves_a_reused_pid_alone() {
	local old pid
	echo 1 >stale.pid
	old=$(stat -c %.9Y stale.pid)
	sleep 1
	sleep 60 &
	pid=$!
	echo "$pid" >stale.pid
	touch -d "@$old" stale.pid # as if written before that process existed
	stop_pid stale.pid >stop.out
	assert_eq 1 "$(kill -0 "$pid" 2>/dev/null && echo 1)" "the newer process still runs"
	assert_contains stop.out "names PID $pid, now another process's"
	assert_no_file stale.pid
	# Its own file, written after it started: stopped.
	echo "$pid" >own.pid
	stop_pid own.pid
	assert_eq "" "$(kill -0 "$pid" 2>/dev/null && echo 1)" "the process its file names is stopped"
}

run_tests
