#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-status.sh: `p11enroll status [--json]`: what the token holds, checked against
# pkcs11-tool and openssl; the record of the last enroll/renew attempt; a pending request.
. "$(dirname "$0")/lib.sh"

# jget EXPR: a Python expression over d, the JSON document of the last run's stdout,
# printed as JSON would spell it (null, true, "..." without quotes for strings).
# The stdout must be exactly one JSON object.
jget() {
	python3 -c 'import json, sys
d = json.loads(open(sys.argv[1]).read())
assert isinstance(d, dict)
v = eval(sys.argv[2], {"d": d})
print(v if isinstance(v, str) else json.dumps(v))' "$OUT" "$1"
}

# status_json: `status --json` must exit 0 and print one JSON object.
status_json() {
	assert_exit 0 p11e status --json || return
	if jget 'True' >/dev/null 2>json.err; then
		_pass "status --json printed one JSON object"
	else
		fail "status --json did not print one JSON object: $(tail -n1 json.err)"
		return 1
	fi
}

# iso_date "2027-11-25 22:15:28Z" -> "2027-11-25T22:15:28Z"
iso_date() {
	printf '%s' "$1" | sed 's/ /T/'
}

# record_file: the record of the last attempt in state_dir.
record_file() {
	echo "$STATE_DIR/last-${KEY_LABEL:-p11enroll}.txt"
}

# No secret in what status prints nor in the record.
check_no_secrets() {
	local f
	for f in "$OUT" "$ERR" "$(record_file)"; do
		[ -e "$f" ] || continue
		assert_not_contains "$f" "$PIN"
		[ -z "${SCEP_CHALLENGE:-}" ] || assert_not_contains "$f" "$SCEP_CHALLENGE"
	done
}

test_status_before_enrollment() {
	make_token || return
	SCEP_URL=http://127.0.0.1:9/scep
	write_conf
	status_json || return
	assert_eq null "$(jget 'd["certificate"]')" "certificate"
	assert_eq null "$(jget 'd["key"]')" "key"
	assert_eq 0 "$(jget 'd["keys"]')" "keys"
	assert_eq not-enrolled "$(jget 'd["renewal"]["state"]')" "renewal.state"
	assert_eq null "$(jget 'd["renewal"]["due"]')" "renewal.due"
	assert_eq null "$(jget 'd["last_attempt"]')" "last_attempt"
	assert_eq null "$(jget 'd["pending"]')" "pending"
	assert_eq "$TOKEN_LABEL" "$(jget 'd["token"]["label"]')" "token.label"
	assert_eq "pkcs11:token=$TOKEN_LABEL" "$(jget 'd["token"]["uri"]')" "token.uri"
	assert_eq "$CONF" "$(jget 'd["config"]')" "config"
	assert_eq null "$(jget 'd["error"]')" "error"
	assert_exit 0 p11e status || return
	assert_contains "$OUT" "state:       not enrolled"
	assert_not_contains "$OUT" "last attempt:"
	assert_exit 64 p11e status --yaml
	assert_exit 64 p11e status --json extra
}

test_status_json_after_enroll() {
	setup_enroll || return
	assert_exit 0 p11e enroll || return
	status_json || return
	local id serial subject nb na
	id=$(token_objects | grep '^privkey|' | cut -d'|' -f2)
	assert_eq 1 "$([ -n "$id" ] && echo 1)" "the key has a CKA_ID" || return
	assert_eq "$id" "$(jget 'd["key"]["id"]')" "key.id (CKA_ID from pkcs11-tool)"
	p11tool --read-object --type cert --id "$id" -o token-cert.der >/dev/null 2>&1
	assert_file token-cert.der || return
	serial=$(openssl x509 -inform DER -in token-cert.der -noout -serial | sed 's/^serial=//')
	subject=$(openssl x509 -inform DER -in token-cert.der -noout -subject \
		-nameopt RFC2253 | sed 's/^subject=//')
	nb=$(openssl x509 -inform DER -in token-cert.der -noout -startdate -dateopt iso_8601 |
		sed 's/^notBefore=//')
	na=$(openssl x509 -inform DER -in token-cert.der -noout -enddate -dateopt iso_8601 |
		sed 's/^notAfter=//')
	assert_eq "$serial" "$(jget 'd["certificate"]["serial"]')" "certificate.serial"
	assert_eq "$subject" "$(jget 'd["certificate"]["subject"]')" "certificate.subject"
	assert_eq "$DN" "$(jget 'd["certificate"]["subject"]')" "certificate.subject = [subject] dn"
	assert_eq "$(iso_date "$nb")" "$(jget 'd["certificate"]["not_before"]')" "certificate.not_before"
	assert_eq "$(iso_date "$na")" "$(jget 'd["certificate"]["not_after"]')" "certificate.not_after"
	assert_eq true "$(jget 'd["certificate"]["valid"]')" "certificate.valid"
	assert_eq 1 "$(jget 'd["keys"]')" "keys"
	case "$(jget 'd["key"]["uri"]')" in
	pkcs11:*"token=$TOKEN_LABEL"*type=private*) _pass "key.uri names the token and the private key" ;;
	*) fail "key.uri is '$(jget 'd["key"]["uri"]')'" ;;
	esac
	# The text output says the same.
	assert_eq not-due "$(jget 'd["renewal"]["state"]')" "renewal.state"
	assert_match "$OUT" '"due":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z"'
	assert_eq "20% of the lifetime left" "$(jget 'd["renewal"]["why"]')" "renewal.why"
	# The enrollment is the last attempt.
	assert_eq enroll "$(jget 'd["last_attempt"]["command"]')" "last_attempt.command"
	assert_eq ok "$(jget 'd["last_attempt"]["result"]')" "last_attempt.result"
	assert_eq 0 "$(jget 'd["last_attempt"]["exit_code"]')" "last_attempt.exit_code"
	assert_eq 0 "$(jget 'd["last_attempt"]["failures"]')" "last_attempt.failures"
	assert_eq "" "$(jget 'd["last_attempt"]["message"]')" "last_attempt.message"
	assert_eq null "$(jget 'd["last_attempt"]["next_at"]')" "last_attempt.next_at"
	assert_eq null "$(jget 'd["pending"]')" "pending"
	assert_eq 600 "$(stat -c %a "$(record_file)")" "mode of the record"
	check_no_secrets
	assert_exit 0 p11e status || return
	assert_match "$OUT" "^serial:[[:space:]]+$serial\$"
	assert_match "$OUT" '^last attempt: [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8}Z enroll ok$'
	# A second enroll has nothing to do: no attempt, the record stays.
	cp "$(record_file)" record-before.txt
	sleep 1
	assert_exit 0 p11e enroll || return
	if cmp -s record-before.txt "$(record_file)"; then
		_pass "an enroll with nothing to do leaves the record alone"
	else
		fail "an enroll with nothing to do rewrote the record"
	fi
}

# The server is down: each renew is a failed attempt (69), counted; a renew that is not
# due contacts nobody and is no attempt; the next successful one resets the count.
test_status_failed_renew() {
	make_token || return
	start_scepserver "$T/srv" -allowrenew 0 || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	write_conf
	assert_exit 0 p11e enroll || return
	stop_pid "$SCEP_PIDFILE"
	assert_exit 69 p11e renew --force || return
	status_json || return
	assert_eq renew "$(jget 'd["last_attempt"]["command"]')" "last_attempt.command"
	assert_eq error "$(jget 'd["last_attempt"]["result"]')" "last_attempt.result"
	assert_eq 69 "$(jget 'd["last_attempt"]["exit_code"]')" "last_attempt.exit_code"
	assert_eq 1 "$(jget 'd["last_attempt"]["failures"]')" "last_attempt.failures"
	assert_eq "server unreachable or HTTP error" "$(jget 'd["last_attempt"]["error"]')" \
		"last_attempt.error"
	# The message is the error line renew printed, without the prefix.
	local msg
	msg=$(jget 'd["last_attempt"]["message"]')
	assert_eq 1 "$([ -n "$msg" ] && echo 1)" "last_attempt.message is set ('$msg')"
	case "$msg" in *127.0.0.1:"$SCEP_PORT"*) _pass "the message names the server" ;;
	*) fail "the message '$msg' does not name 127.0.0.1:$SCEP_PORT" ;; esac
	p11e renew --force
	grep '^p11enroll: error: ' "$ERR" | tail -n1 | sed 's/^p11enroll: error: //' >last-error.txt
	status_json || return
	assert_eq 2 "$(jget 'd["last_attempt"]["failures"]')" "failures after a second failure"
	assert_eq "$(cat last-error.txt)" "$(jget 'd["last_attempt"]["message"]')" \
		"message = the last error line of the run"
	assert_eq enrolled "$([ "$(jget 'd["certificate"]["valid"]')" = true ] && echo enrolled)" \
		"the certificate is still valid"
	check_no_secrets
	assert_exit 0 p11e status || return
	assert_match "$OUT" '^last attempt: [0-9-]{10} [0-9:]{8}Z renew server unreachable or HTTP error, exit 69 \(.*127\.0\.0\.1.*\)$'
	assert_match "$OUT" '^failures:    2 in a row$'
	# Not due: nobody contacted, not an attempt.
	assert_exit 0 p11e renew || return
	status_json || return
	assert_eq 2 "$(jget 'd["last_attempt"]["failures"]')" "failures after a renew that was not due"
	# The server is back: success resets the count.
	SCEP_LISTEN_PORT=$SCEP_PORT start_scepserver "$T/srv" -allowrenew 0 || return
	assert_exit 0 p11e renew --force || return
	status_json || return
	assert_eq ok "$(jget 'd["last_attempt"]["result"]')" "result after the server came back"
	assert_eq 0 "$(jget 'd["last_attempt"]["failures"]')" "failures after success"
	assert_eq "" "$(jget 'd["last_attempt"]["message"]')" "message after success"
}

test_status_pending() {
	make_token || return
	start_responder "$T/resp" pending || return
	write_conf
	assert_exit 75 p11e enroll || return
	local txn=$STATE_DIR/pending-p11enroll.txn txid key_id
	assert_file "$txn" || return
	txid=$(sed -n 's/^transaction_id=//p' "$txn")
	key_id=$(sed -n 's/^key_id=//p' "$txn")
	status_json || return
	assert_eq pending "$(jget 'd["renewal"]["state"]')" "renewal.state"
	assert_eq null "$(jget 'd["certificate"]')" "certificate"
	assert_eq "$txid" "$(jget 'd["pending"]["transaction_id"]')" "pending.transaction_id"
	assert_eq false "$(jget 'd["pending"]["renewal"]')" "pending.renewal"
	assert_eq 0 "$(jget 'd["pending"]["polls"]')" "pending.polls"
	assert_match "$OUT" '"created":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z"'
	assert_eq "$key_id" "$(jget 'd["key"]["id"]')" "key.id = the pending request's key"
	assert_eq "$(token_objects | grep '^privkey|' | cut -d'|' -f2)" "$key_id" "the key on the token"
	assert_eq pending "$(jget 'd["last_attempt"]["result"]')" "last_attempt.result"
	assert_eq 75 "$(jget 'd["last_attempt"]["exit_code"]')" "last_attempt.exit_code"
	assert_eq 0 "$(jget 'd["last_attempt"]["failures"]')" "PENDING is not a failure"
	check_no_secrets
	assert_exit 0 p11e status || return
	assert_match "$OUT" "^pending:     enrollment request, transactionID $txid\$"
	assert_match "$OUT" '^last attempt: .* enroll request pending at the CA, exit 75'
}

# The token is gone: exit 74 as before, and --json still says what state_dir knows.
test_status_token_missing() {
	setup_enroll || return
	assert_exit 0 p11e enroll || return
	TOKEN_URI="pkcs11:token=no-such-token"
	write_conf
	assert_exit 74 p11e status --json || return
	assert_eq null "$(jget 'd["token"]')" "token"
	assert_eq null "$(jget 'd["certificate"]')" "certificate"
	assert_eq enroll "$(jget 'd["last_attempt"]["command"]')" "last_attempt.command"
	case "$(jget 'd["error"]')" in *no-such-token*) _pass "error names the token" ;;
	*) fail "error is '$(jget 'd["error"]')'" ;; esac
	assert_exit 74 p11e status || return
	assert_match "$OUT" '^last attempt: .* enroll ok$'
}

# A damaged record is reported, ignored, and replaced by the next attempt.
test_status_damaged_record() {
	setup_enroll || return
	assert_exit 0 p11e enroll || return
	printf 'at=soon\n' >"$(record_file)"
	status_json || return
	assert_eq null "$(jget 'd["last_attempt"]')" "last_attempt of a damaged record"
	assert_contains "$ERR" "$(record_file) is damaged"
	stop_pid "$SCEP_PIDFILE"
	assert_exit 69 p11e renew --force || return
	status_json || return
	assert_eq 1 "$(jget 'd["last_attempt"]["failures"]')" "failures after a damaged record"
}

run_tests
