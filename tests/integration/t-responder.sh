#!/bin/bash
# Against the project's SCEP responder double (tests/doubles/scep_responder.py), for what
# the real scepserver cannot do: EC certificates, separate RA signing and encryption
# certificates (NDES-shaped), GET only, no GetCACaps, FAILURE, PENDING, and hostile
# answers. Each hostile answer must give the documented exit code, a message that names
# what was wrong, no crash (also under ASan/UBSan), no certificate on the token or in
# cert_file, the key this run generated taken back (token and state_dir as they were),
# and the next run against a good server completes.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

ISSUER_EXPECT="O=p11enroll tests"

# setup_responder MODE [flags]: token + responder + configuration.
setup_responder() {
	make_token || return
	start_responder "$T/resp" "$@" || return
	write_conf
}

# A good server on the same CA, for the run after a failure: same pki dir, new port.
restart_good() {
	stop_pid "$T/resp/responder.pid"
	start_responder "$T/resp" normal || return
	write_conf
}

check_ec() {
	local curve=$1
	assert_exit 0 p11e enroll || return
	check_enrollment
	openssl x509 -in "$CERT_FILE" -noout -text >cert.txt
	assert_contains cert.txt "id-ecPublicKey"
	assert_contains cert.txt "NIST CURVE: $curve"
	check_second_enroll
}

test_ec_p256_end_to_end() {
	KEY_TYPE=ec:P-256
	setup_responder normal || return
	check_ec P-256
}

test_ec_p384_end_to_end() {
	KEY_TYPE=ec:P-384
	setup_responder normal || return
	check_ec P-384
}

test_separate_ra_certificates() {
	setup_responder normal || return
	assert_exit 0 p11e check || return
	assert_match "$OUT" '^RA encrypt:.*CN=.*'
	grep '^RA encrypt:' "$OUT" >ra-enc.txt
	grep '^RA sign:' "$OUT" >ra-sign.txt
	if cmp -s <(cut -d: -f2- ra-enc.txt) <(cut -d: -f2- ra-sign.txt); then
		fail "check shows the same RA certificate for encryption and signing"
	else
		_pass "separate RA encryption and signing certificates"
	fi
	assert_exit 0 p11e -v enroll || return
	check_enrollment
	assert_file "$TRUST_DIR/ra-enc.crt"
	assert_file "$TRUST_DIR/ra-sign.crt"
	# The request went to the encryption certificate, the reply came from the signing one.
	openssl x509 -in "$TRUST_DIR/ra-enc.crt" -noout -ext keyUsage >ku-enc.txt
	assert_contains ku-enc.txt "Key Encipherment"
	assert_contains "$T/resp/responder.log" "SUCCESS"
}

test_get_only_server() {
	setup_responder getonly || return
	assert_exit 0 p11e -v enroll || return
	assert_contains "$ERR" "PKIOperation by GET"
	check_enrollment
}

# IIS truncates query strings past 2048 bytes (HTTP 414 / 404.15): a GET-only server
# with that limit cannot take a PKCSReq, and the message must say why.
test_get_too_long_for_server_69() {
	setup_responder getonly --max-url 2048 || return
	assert_exit 69 p11e enroll || return
	assert_contains "$ERR" "too long for the server"
	assert_contains "$ERR" "does not offer POST"
	assert_eq 0 "$(count_objects privkey)" "private keys (this run's key taken back)"
}

test_no_getcacaps_falls_back_to_3des_sha1_get() {
	setup_responder nocaps || return
	assert_exit 0 p11e -v enroll || return
	assert_contains "$ERR" "assuming no capabilities (3DES, SHA-1, GET)"
	assert_contains "$ERR" "DES-EDE3-CBC"
	assert_contains "$ERR" "PKIOperation by GET"
	check_enrollment
}

test_single_des_reply_accepted_with_warning() {
	setup_responder des-reply || return
	assert_exit 0 p11e enroll || return
	assert_contains "$ERR" "single DES"
	check_enrollment
}

test_failure_77_token_as_before() {
	setup_responder reject || return
	assert_exit 77 p11e enroll || return
	assert_contains "$ERR" "badRequest"
	assert_eq 0 "$(count_objects cert)" "certificates on the token after FAILURE"
	assert_eq 0 "$(count_objects privkey)" "private keys after FAILURE (this run's key taken back)"
	assert_no_file "$CERT_FILE"
	restart_good || return
	assert_exit 0 p11e enroll || return
	check_enrollment
}

# A crash (kill -9) while the request is on the wire leaves the key without a
# certificate; the next run reuses it instead of generating another.
test_crash_mid_enrollment_then_key_reused() {
	local pid i
	setup_responder slow || return
	# Wait on p11enroll's own log, not by opening the token alongside it: a second
	# process reading SoftHSM's files while p11enroll starts can make it see no token.
	"$P11ENROLL" -v -c "$CONF" enroll >crash.out 2>crash.err </dev/null &
	pid=$!
	for ((i = 0; i < 200; i++)); do
		grep -q "PKIOperation by POST" crash.err 2>/dev/null && break
		sleep 0.05
	done
	sleep 0.5
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	assert_eq 1 "$(count_objects privkey)" "private keys after the crash" || return
	assert_eq 0 "$(count_objects cert)" "certificates after the crash"
	assert_no_file "$CERT_FILE"
	restart_good || return
	assert_exit 0 p11e enroll || return
	assert_contains "$ERR" "reusing key"
	check_enrollment
}

# pending_file: the profile's pending transaction in state_dir.
pending_file() {
	echo "$STATE_DIR/pending-${KEY_LABEL:-p11enroll}.txn"
}

test_pending_75_then_next_run_polls() {
	setup_responder pending || return
	assert_exit 75 p11e enroll || return
	assert_contains "$ERR" "PENDING"
	assert_match "$ERR" 'transactionID [0-9A-F]{64}'
	assert_contains "$ERR" "run \`p11enroll enroll\` again after"
	assert_eq 0 "$(count_objects cert)" "certificates on the token after PENDING"
	assert_file "$(pending_file)" || return
	assert_eq 600 "$(stat -c %a "$(pending_file)")" "mode of the pending transaction file"
	local txid
	txid=$(sed -n 's/^transaction_id=//p' "$(pending_file)")
	# The next run polls the same transaction (CertPoll) and completes it.
	assert_exit 0 p11e -v enroll || return
	assert_contains "$ERR" "polling pending transaction $txid"
	assert_contains "$ERR" "CertPoll transactionID $txid"
	assert_contains "$T/resp/responder.log" "CertPoll"
	assert_no_file "$(pending_file)"
	check_enrollment
}

test_pending_wait_completes_in_one_run() {
	setup_responder pending || return
	assert_exit 0 p11e -v enroll --wait --max-wait 2m || return
	assert_contains "$ERR" "polling again in"
	assert_no_file "$(pending_file)"
	check_enrollment
}

test_pending_then_failure_77_clears_transaction() {
	setup_responder pending-fail || return
	assert_exit 75 p11e enroll || return
	assert_file "$(pending_file)" || return
	assert_exit 77 p11e enroll || return
	assert_contains "$ERR" "failInfo badRequest"
	assert_no_file "$(pending_file)"
	assert_eq 0 "$(count_objects cert)" "certificates on the token"
	# The key of the refused request is taken back, as a renewal's is.
	assert_contains "$ERR" "removed the key this attempt polled for"
	assert_eq 0 "$(count_objects privkey)" "private keys after the refusal"
	assert_eq 0 "$(grep -c '^key=' "$STATE_DIR/keys-p11enroll.txt")" "keys in the key record"
}

test_pending_max_wait_75() {
	local t0 t1
	setup_responder pending-forever || return
	t0=$(date +%s)
	assert_exit 75 p11e enroll --max-wait 5s || return
	t1=$(date +%s)
	assert_contains "$ERR" "--max-wait reached"
	assert_eq 1 "$([ $((t1 - t0)) -le 12 ] && echo 1)" "gave up after --max-wait ($((t1 - t0)) s)"
	assert_match "$(pending_file)" '^polls=[1-9]'
}

# hostile MODE EXIT TEXT: one hostile answer.
hostile() {
	local mode=$1 want=$2 text=$3
	SCEP_TIMEOUT=${SCEP_TIMEOUT:-10}
	setup_responder "$mode" || return
	assert_exit "$want" p11e enroll || return
	assert_contains_i "$ERR" "$text"
	assert_eq 0 "$(count_objects cert)" "certificates on the token after '$mode'"
	assert_no_file "$CERT_FILE"
	assert_eq 0 "$(count_objects privkey)" "private keys (this run's key taken back)"
	# state_dir as before: nothing pending, no stray files; the record of this attempt,
	# the profile's (empty) lock file, and its key record naming no key (the key this run
	# generated was taken back and forgotten).
	assert_eq "" "$(ls -A "$STATE_DIR" 2>/dev/null |
		grep -v -e '^ca.pin$' -e '^last-p11enroll.txt$' -e '^lock-p11enroll$' \
			-e '^keys-p11enroll.txt$')" "files in state_dir"
	assert_eq 0 "$(grep -c '^key=' "$STATE_DIR/keys-p11enroll.txt")" \
		"keys named in the key record after '$mode'"
	assert_contains "$STATE_DIR/last-p11enroll.txt" "err=-"
}

# A GetCACert of 65 certificates: the network process takes at most 64 (NETPROC_CERTS_MAX)
# and refuses the bundle before p11enroll parses any of them.
test_hostile_getcacert_of_65_certificates_76() {
	hostile crowd 76 "GetCACert bundle holds 65 certificates; p11enroll takes at most 64"
}
test_hostile_wrong_nonce_76() { hostile wrong-nonce 76 "recipientNonce differs"; }
test_hostile_missing_nonce_76() { hostile no-nonce 76 "recipientNonce is missing"; }
test_hostile_txid_prefix_76() { hostile txid-prefix 76 "transactionID"; }
test_hostile_txid_longer_76() { hostile txid-longer 76 "transactionID"; }
test_hostile_bad_signature_76() { hostile bad-signature 76 "signature does not verify"; }
test_hostile_rogue_signer_76() { hostile rogue-signer 76 "neither the issuing CA nor its RA signing certificate"; }
test_hostile_garbage_76() { hostile garbage 76 "not a valid CMS message"; }
test_hostile_http500_69() { hostile http500 69 "HTTP 500"; }

test_hostile_bad_digest_76_then_good_server() {
	hostile bad-digest 76 "" || return
	restart_good || return
	assert_exit 0 p11e enroll || return
	check_enrollment
}

test_hostile_wrong_key_76_then_good_server() {
	hostile wrong-key 76 "none for our key" || return
	restart_good || return
	assert_exit 0 p11e enroll || return
	check_enrollment
}

test_hostile_truncated_76_then_good_server() {
	hostile truncated 76 "not a valid CMS message" || return
	restart_good || return
	assert_exit 0 p11e enroll || return
	check_enrollment
}

test_hostile_huge_body_69() {
	local t0 t1
	t0=$(date +%s)
	hostile huge 69 "exceeds" || return
	t1=$(date +%s)
	assert_eq 1 "$([ $((t1 - t0)) -lt 20 ] && echo 1)" "a 50 MB answer is cut off early ($((t1 - t0)) s)"
}

# The client gives up on its own timeout: measured on the server's side, which counts the
# seconds (bytes) of the slow reply it sent before the client went away, so that the time
# the test takes to set up (a loaded machine) does not count. Without a timeout the client
# would wait for the whole reply (thousands of seconds).
test_hostile_one_byte_per_second_69_within_timeout() {
	local sent total i line=
	SCEP_TIMEOUT=4
	hostile slow 69 "cannot reach" || return
	for ((i = 0; i < 40; i++)); do
		line=$(grep -o 'slow: client went away after [0-9]* of [0-9]* bytes' "$T/resp/responder.log")
		[ -z "$line" ] || break
		sleep 0.1
	done
	read -r sent total < <(echo "$line" | awk '{ print $6, $8 }')
	assert_eq 1 "$([ -n "$sent" ] && [ "$sent" -lt "$total" ] && [ "$sent" -le $((SCEP_TIMEOUT + 2)) ] && echo 1)" \
		"the client went away within its timeout ($SCEP_TIMEOUT s): ${line:-no such line in the log of the responder}"
}

run_tests
