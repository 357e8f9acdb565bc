#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-errors.sh: failures a user meets, each with its documented exit code and nothing
# half-done left behind on the token or in the files.
#   69 unreachable  74 token/PIN  76 verification  77 rejected by the CA
. "$(dirname "$0")/lib.sh"

test_wrong_challenge_is_rejected_77() {
	setup_enroll || return
	(umask 077 && echo "not-the-challenge-$RANDOM" >"$CHALLENGE_FILE")
	assert_exit 77 p11e enroll
	assert_eq 0 "$(count_objects cert)" "certificates on the token"
	assert_no_file "$CERT_FILE"
	assert_eq 0 "$(count_objects privkey)" "private keys after the rejection (this run's key taken back)"
	# Fixing the challenge then works.
	(umask 077 && echo "$SCEP_CHALLENGE" >"$CHALLENGE_FILE")
	assert_exit 0 p11e enroll
	assert_eq 1 "$(count_objects cert)" "certificates after enrolling with the right challenge"
	assert_file "$CERT_FILE"
}

test_wrong_ca_fingerprint_76_no_key() {
	make_token || return
	# A real fingerprint, of another CA.
	SCEP_CA=other start_scepserver "$T/other" || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	stop_pid "$SCEP_PIDFILE"
	start_scepserver "$T/srv" || return
	write_conf
	assert_exit 76 p11e enroll
	assert_contains_i "$ERR" fingerprint
	assert_eq 0 "$(count_objects privkey)" "private keys on the token"
	assert_eq 0 "$(count_objects cert)" "certificates on the token"
	assert_no_file "$CERT_FILE"
}

test_pinned_ca_change_76() {
	CA_FP=-
	setup_enroll || return
	local fp
	fp=$(ca_fingerprint "$SCEP_CA_PEM")
	assert_exit 0 p11e enroll || return
	# Without ca_fingerprint, p11enroll trusts the CA on first use and shows its fingerprint.
	if tr -d ':' <"$ERR" | tr 'A-F' 'a-f' | grep -qF "$(norm_hex "$fp")"; then
		_pass "stderr shows the CA's SHA-256 fingerprint"
	else
		fail "stderr does not show the CA's SHA-256 fingerprint $fp"
	fi
	# Same URL, a different CA: refused, whatever the profile.
	stop_pid "$SCEP_PIDFILE"
	SCEP_CA=other SCEP_LISTEN_PORT=$SCEP_PORT start_scepserver "$T/srv2" || return
	KEY_LABEL=second CERT_FILE=$T/cert2.pem write_conf "$T/second.conf"
	assert_exit 76 p11e enroll
	assert_eq 1 "$(count_objects privkey)" "private keys (none generated for the second profile)"
	assert_no_file "$T/cert2.pem"
}

test_server_down_69_fast() {
	make_token || return
	SCEP_URL=http://127.0.0.1:$(free_port)/scep SCEP_CHALLENGE=x SCEP_TIMEOUT=5 CA_FP=- write_conf
	local t0 t1
	t0=$(date +%s)
	assert_exit 69 p11e enroll
	t1=$(date +%s)
	assert_eq 1 "$([ $((t1 - t0)) -lt 8 ] && echo 1)" "returned within timeout + 3 s ($((t1 - t0)) s)"
	assert_eq 0 "$(count_objects privkey)" "private keys on the token"
}

# A full disk, emulated by a 1 KiB file size limit (the trust dir's CA certificate is
# larger): a clear error, nothing half-written, no key spent; then the next run completes.
test_full_disk_74_then_completes() {
	setup_enroll || return
	(ulimit -f 1 && p11e enroll)
	RC=$?
	# p11e ran in the subshell: its output files are the next run's.
	P11E_RUNS=$((P11E_RUNS + 1))
	ERR=$T/run$P11E_RUNS.err
	assert_eq 74 "$RC" "exit status with a full disk" || return
	assert_match "$ERR" 'cannot write .*(File too large|No space left)'
	assert_eq 0 "$(count_objects privkey)" "private keys after the failed run"
	ls -A "$TRUST_DIR" 2>/dev/null | grep -c 'tmp' >tmpfiles.txt
	assert_eq 0 "$(cat tmpfiles.txt)" "temporary files left in the trust dir"
	assert_exit 0 p11e enroll || return
	check_enrollment
}

# A server that accepts the connection and never answers: the timeout must fire.
test_silent_server_69_within_timeout() {
	make_token || return
	python3 -c '
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
with open(sys.argv[1], "w") as f:
    f.write(str(s.getsockname()[1]))
time.sleep(300)' "$T/silent.port" &
	echo $! >"$T/silent.pid"
	register_pidfile "$T/silent.pid"
	local i t0 t1
	for ((i = 0; i < 50; i++)); do
		[ -s "$T/silent.port" ] && break
		sleep 0.1
	done
	SCEP_URL=http://127.0.0.1:$(cat "$T/silent.port")/scep SCEP_CHALLENGE=x SCEP_TIMEOUT=5 CA_FP=- write_conf
	t0=$(date +%s)
	assert_exit 69 p11e enroll
	t1=$(date +%s)
	assert_eq 1 "$([ $((t1 - t0)) -lt 8 ] && echo 1)" "returned within timeout + 3 s ($((t1 - t0)) s)"
	assert_eq 0 "$(count_objects privkey)" "private keys on the token"
}

test_no_token_74_names_uri() {
	make_token || return
	start_scepserver "$T/srv" || return
	TOKEN_URI=pkcs11:token=no-such-token CA_FP=- write_conf
	assert_exit 74 p11e enroll
	assert_contains "$ERR" "pkcs11:token=no-such-token"
	assert_eq 0 "$(count_objects privkey)" "private keys on the existing token"
}

# Exactly one C_Login with a wrong PIN (no retry loop that would lock a real card),
# seen through OpenSC's pkcs11-spy in front of SoftHSM.
test_wrong_pin_74_one_login() {
	make_token || return
	start_scepserver "$T/srv" || return
	local wrong
	wrong=wrong-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
	(umask 077 && echo "$wrong" >"$T/wrong-pin")
	# Directly against SoftHSM (under ASan this also checks the error path for leaks).
	PIN_FILE=$T/wrong-pin CA_FP=- write_conf
	assert_exit 74 p11e enroll
	assert_contains_i "$ERR" pin
	assert_not_contains "$ERR" "$wrong"
	assert_not_contains "$OUT" "$wrong"
	# Through the spy, to count the logins. pkcs11-spy itself leaks (its log FILE and
	# config, allocated in its C_Initialize, are never freed), which LeakSanitizer would
	# blame on p11enroll: leak detection is off for this one run only.
	PIN_FILE=$T/wrong-pin MODULE=$SPY_MODULE CA_FP=- write_conf "$T/spy.conf"
	PKCS11SPY=$MODULE PKCS11SPY_OUTPUT=$T/spy.log \
		ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 assert_exit 74 p11e enroll
	assert_file "$T/spy.log" || return
	assert_eq 1 "$(grep -cE '^[0-9]+: C_Login(User)?$' "$T/spy.log")" "C_Login calls"
	assert_not_contains "$ERR" "$wrong"
	assert_not_contains "$OUT" "$wrong"
	assert_eq 0 "$(count_objects privkey)" "private keys on the token"
}

run_tests
