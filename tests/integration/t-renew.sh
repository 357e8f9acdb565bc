#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-renew.sh: `p11enroll renew` against the real scepserver (-allowrenew 0: it otherwise
# refuses a second certificate for a DN long before the first one expires).
. "$(dirname "$0")/lib.sh"

# renew_setup [renewal lines...]: token, scepserver, configuration with a [renewal]
# section made of the arguments, and a first enrollment.
renew_setup() {
	make_token || return
	start_scepserver "$T/srv" -allowrenew 0 || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	write_conf
	if [ $# -gt 0 ]; then
		printf '\n[renewal]\n' >>"$CONF"
		printf '%s\n' "$@" >>"$CONF"
	fi
	assert_exit 0 p11e enroll || return
	OLD_SERIAL=$(openssl x509 -in "$CERT_FILE" -noout -serial)
	OLD_ID=$(token_objects | grep '^privkey|' | cut -d'|' -f2)
	assert_eq 1 "$([ -n "$OLD_ID" ] && echo 1)" "the enrolled key has an ID" || return
}

test_renew_not_due() {
	renew_setup || return
	local before
	before=$(scep_ops PKIOperation)
	assert_exit 0 p11e renew || return
	assert_match "$OUT" '^renewal:[[:space:]]+not due; due [0-9]{4}-[0-9]{2}-[0-9]{2} .*\(20% of the lifetime left\)'
	assert_eq "$before" "$(scep_ops PKIOperation)" "PKIOperations after a renew that is not due"
	assert_eq "$OLD_SERIAL" "$(openssl x509 -in "$CERT_FILE" -noout -serial)" "serial"
	assert_exit 0 p11e status || return
	assert_match "$OUT" '^renewal:[[:space:]]+due [0-9]{4}-.*\(20% of the lifetime left\)'
}

test_renew_not_enrolled_74() {
	make_token || return
	start_scepserver "$T/srv" -allowrenew 0 || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	write_conf
	assert_exit 74 p11e renew --force || return
	assert_contains "$ERR" "run \`p11enroll enroll\` first"
	assert_eq 0 "$(scep_ops PKIOperation)" "PKIOperations"
	assert_eq 0 "$(count_objects privkey)" "private keys"
}

# check_renewed: exactly one key and one certificate, the certificate for that key,
# a new serial, cert_file updated and verifying.
check_renewed() {
	check_enrollment
	assert_eq 1 "$([ "$OLD_SERIAL" != "$(openssl x509 -in "$CERT_FILE" -noout -serial)" ] && echo 1)" \
		"a new serial (old $OLD_SERIAL)"
	NEW_ID=$(token_objects | grep '^privkey|' | cut -d'|' -f2)
}

test_renew_force_new_key() {
	renew_setup || return
	local before
	before=$(scep_ops PKIOperation)
	assert_exit 0 p11e -v renew --force || return
	# scepserver offers Renewal: a RenewalReq signed with the current certificate. The
	# reply is encrypted to the signer, so decrypting it proves the old certificate and
	# key were used. scepserver checks the challenge on every request: the first
	# RenewalReq (without challenge, RFC 8894 2.4) is refused, the second carries it.
	assert_contains "$ERR" "RenewalReq transactionID"
	assert_contains "$ERR" "signing the request with the current certificate and its key"
	assert_contains "$ERR" "asking again with the configured challenge"
	assert_contains "$T/srv/scepserver.log" "invalid challenge"
	check_renewed
	assert_eq 1 "$([ "$NEW_ID" != "$OLD_ID" ] && echo 1)" "new key ID ($NEW_ID) differs from the old ($OLD_ID)"
	assert_eq $((before + 2)) "$(scep_ops PKIOperation)" "PKIOperations after renew --force"
	# enroll and status see the renewed certificate.
	check_second_enroll
	assert_exit 0 p11e status || return
	assert_contains "$OUT" "state:       enrolled, certificate valid"
}

test_renew_same_key() {
	renew_setup "new_key = no" || return
	assert_exit 0 p11e renew --force || return
	check_renewed
	assert_eq "$OLD_ID" "$NEW_ID" "key ID with new_key = no"
}

test_renew_keep_old() {
	renew_setup "keep_old = yes" || return
	local newserial
	sleep 1.1 # a later notAfter than the first certificate's
	assert_exit 0 p11e renew --force || return
	newserial=$(out_value serial)
	assert_eq 2 "$(count_objects privkey)" "private keys with keep_old = yes"
	assert_eq 2 "$(count_objects cert)" "certificates with keep_old = yes"
	verify_capath "$TRUST_DIR" "$CERT_FILE"
	assert_exit 0 p11e status || return
	assert_match "$OUT" "^current:[[:space:]]+serial $newserial "
	assert_exit 0 p11e enroll || return
	assert_contains_i "$ERR" "already"
	assert_eq "$newserial" "$(out_value serial)" "serial enroll reports"
	assert_eq 2 "$(count_objects privkey)" "private keys after enroll"
}

# check_untouched: the enrolled key and certificate are as before, nothing else is left.
check_untouched() {
	assert_eq 1 "$(count_objects privkey)" "private keys after a failed renewal"
	assert_eq 1 "$(count_objects cert)" "certificates after a failed renewal"
	assert_eq "$OLD_ID" "$(token_objects | grep '^privkey|' | cut -d'|' -f2)" "key ID"
	assert_eq "$OLD_SERIAL" "$(openssl x509 -in "$CERT_FILE" -noout -serial)" "cert_file serial"
	assert_exit 0 p11e status || return
	assert_contains "$OUT" "state:       enrolled, certificate valid"
	assert_exit 0 p11e enroll || return
	assert_contains_i "$ERR" "already"
}

test_renew_server_gone() {
	renew_setup || return
	stop_pid "$SCEP_PIDFILE"
	assert_exit 69 p11e renew --force || return
	check_untouched
}

test_renew_wrong_fingerprint() {
	renew_setup || return
	sed -i "s/^ca_fingerprint = .*/ca_fingerprint = sha256:$(printf '00%.0s' $(seq 32))/" "$CONF"
	assert_exit 76 p11e renew --force || return
	check_untouched
}

# A CA that refuses after the new key is generated: the new key is taken back.
test_renew_rejected() {
	renew_setup || return
	printf '#!/bin/sh\nexit 1\n' >refuse.sh
	chmod 0755 refuse.sh
	stop_pid "$SCEP_PIDFILE"
	SCEP_LISTEN_PORT=$SCEP_PORT start_scepserver "$T/srv" -allowrenew 0 \
		-csrverifierexec "$T/refuse.sh" || return
	assert_exit 77 p11e renew --force || return
	check_untouched
}

test_renew_interval_due() {
	renew_setup "interval = 1s" "jitter = 0%" || return
	sleep 2
	assert_exit 0 p11e status || return
	assert_match "$OUT" '^renewal:[[:space:]]+due now \(1s after issuance\)'
	assert_exit 0 p11e renew || return
	check_renewed
}

test_renew_before_expiry_over_lifetime() {
	renew_setup "before_expiry = 3000d" || return
	assert_exit 0 p11e renew || return
	check_renewed
}

# The project's responder (tests/doubles/scep_responder.py) serves a renewal signed with a
# certificate of its CA without challenge, as RFC 8894 2.4 has it.
# responder_renew_setup MODE: enroll against a normal responder, then restart it (same CA)
# in MODE and point the configuration at it.
responder_renew_setup() {
	ISSUER_EXPECT="O=p11enroll tests"
	make_token || return
	start_responder "$T/resp" normal || return
	write_conf
	assert_exit 0 p11e enroll || return
	OLD_SERIAL=$(openssl x509 -in "$CERT_FILE" -noout -serial)
	OLD_ID=$(token_objects | grep '^privkey|' | cut -d'|' -f2)
	stop_pid "$T/resp/responder.pid"
	start_responder "$T/resp" "$1" || return
	write_conf
}

test_renew_rfc_no_challenge() {
	responder_renew_setup normal || return
	assert_exit 0 p11e -v renew --force || return
	assert_contains "$ERR" "RenewalReq transactionID"
	assert_not_contains "$ERR" "asking again with the configured challenge"
	assert_match "$T/resp/responder.log" 'RenewalReq.*(SUCCESS|issued)'
	check_renewed
}

# No Renewal in GetCACaps: a PKCSReq (19), still signed with the current certificate.
test_renew_pkcsreq_without_renewal_cap() {
	responder_renew_setup getonly || return
	assert_exit 0 p11e -v renew --force || return
	assert_contains "$ERR" "PKCSReq (no Renewal in caps)"
	assert_match "$T/resp/responder.log" 'PKCSReq'
	assert_not_contains "$T/resp/responder.log" 'RenewalReq'
	check_renewed
}

# PENDING: 75, the current key and certificate stay in use, the new key and the
# transaction are kept (enroll leaves them alone), and the next `renew`, due or not,
# polls it (CertPoll signed with the current certificate) and completes.
test_renew_pending() {
	responder_renew_setup pending || return
	assert_exit 75 p11e renew --force || return
	assert_contains "$ERR" "PENDING"
	assert_eq 2 "$(count_objects privkey)" "private keys while PENDING (old + new)"
	assert_eq 1 "$(count_objects cert)" "certificates while PENDING"
	assert_eq "$OLD_SERIAL" "$(openssl x509 -in "$CERT_FILE" -noout -serial)" "cert_file serial"
	assert_file "$STATE_DIR/pending-p11enroll.txn" || return
	assert_contains "$STATE_DIR/pending-p11enroll.txn" "renewal=1"
	assert_exit 0 p11e status || return
	assert_contains "$OUT" "state:       enrolled, certificate valid"
	assert_exit 0 p11e enroll || return
	assert_contains_i "$ERR" "already"
	assert_file "$STATE_DIR/pending-p11enroll.txn" || return
	assert_exit 0 p11e -v renew || return
	assert_contains "$ERR" "polling pending renewal"
	assert_match "$T/resp/responder.log" 'CertPoll'
	assert_no_file "$STATE_DIR/pending-p11enroll.txn"
	check_renewed
	assert_eq 1 "$([ "$NEW_ID" != "$OLD_ID" ] && echo 1)" "new key ID"
}

# The CA refuses the polled renewal: 77, the pending key is taken back, the old stays.
test_renew_pending_then_refused() {
	responder_renew_setup pending-fail || return
	assert_exit 75 p11e renew --force || return
	assert_exit 77 p11e renew || return
	assert_no_file "$STATE_DIR/pending-p11enroll.txn"
	check_untouched
}


# EC profiles. An EC key cannot receive SCEP's reply (RSA key transport to the signer's
# certificate), so it cannot sign a RenewalReq: the renewal is a new PKCSReq signed by a
# transient RSA key, with the configured challenge, and for a new EC key. Against the
# project's responder (the Debian scepserver cannot issue EC certificates, t-enroll.sh).

# check_ec_cert: cert_file holds a certificate for an EC P-256 key.
check_ec_cert() {
	openssl x509 -in "$CERT_FILE" -noout -text >cert.txt
	assert_contains cert.txt "id-ecPublicKey"
	assert_contains cert.txt "NIST CURVE: P-256"
}

test_renew_ec_new_key() {
	KEY_TYPE=ec:P-256
	responder_renew_setup normal || return
	assert_exit 0 p11e -v renew --force || return
	assert_contains "$ERR" "sending a new PKCSReq signed with a transient RSA key, with the challenge"
	assert_not_contains "$ERR" "RenewalReq"
	assert_match "$T/resp/responder.log" 'PKCSReq: SUCCESS'
	assert_not_contains "$T/resp/responder.log" 'RenewalReq'
	# check_enrollment: one key (sensitive, never extractable), its certificate under its
	# CKA_ID carrying its public key, cert_file verifying against the trust dir.
	check_renewed
	check_ec_cert
	assert_eq 1 "$([ "$NEW_ID" != "$OLD_ID" ] && echo 1)" "new key ID ($NEW_ID) differs from the old ($OLD_ID)"
	check_second_enroll
	assert_exit 0 p11e status || return
	assert_contains "$OUT" "state:       enrolled, certificate valid"
}

test_renew_ec_same_key() {
	KEY_TYPE=ec:P-256
	responder_renew_setup normal || return
	printf '\n[renewal]\nnew_key = no\n' >>"$CONF"
	assert_exit 0 p11e renew --force || return
	check_renewed
	check_ec_cert
	assert_eq "$OLD_ID" "$NEW_ID" "key ID with new_key = no"
}

# The CA refuses: 77, the old key and certificate stay, the new key is taken back.
test_renew_ec_rejected() {
	KEY_TYPE=ec:P-256
	responder_renew_setup reject || return
	assert_exit 77 p11e renew --force || return
	assert_match "$T/resp/responder.log" 'FAILURE badRequest \(PKCSReq: rejected'
	check_untouched
}

# The challenge is what authenticates an EC renewal: a wrong one is refused (77) and
# nothing changes; none at all is said before the CA sees the request.
test_renew_ec_wrong_challenge() {
	KEY_TYPE=ec:P-256
	responder_renew_setup normal || return
	printf 'not-the-challenge\n' >"$CHALLENGE_FILE"
	assert_exit 77 p11e renew --force || return
	assert_match "$T/resp/responder.log" 'FAILURE badRequest \(PKCSReq: challengePassword mismatch'
	check_untouched
	sed -i '/^challenge_file = /d' "$CONF"
	assert_exit 77 p11e renew --force || return
	assert_contains "$ERR" "none is configured"
	assert_match "$T/resp/responder.log" 'FAILURE badRequest \(PKCSReq: challengePassword missing'
	check_untouched
}

# PENDING: 75 and both keys kept; the next renew polls with a CertPoll (also carried by a
# transient RSA key) and completes.
test_renew_ec_pending() {
	KEY_TYPE=ec:P-256
	responder_renew_setup pending || return
	assert_exit 75 p11e renew --force || return
	assert_eq 2 "$(count_objects privkey)" "private keys while PENDING (old + new)"
	assert_contains "$STATE_DIR/pending-p11enroll.txn" "renewal=1"
	assert_exit 0 p11e -v renew || return
	assert_contains "$ERR" "sending a CertPoll signed with a transient RSA key"
	assert_match "$T/resp/responder.log" 'CertPoll: SUCCESS'
	assert_no_file "$STATE_DIR/pending-p11enroll.txn"
	check_renewed
	check_ec_cert
	assert_eq 1 "$([ "$NEW_ID" != "$OLD_ID" ] && echo 1)" "new key ID"
}


# An EC profile with an NDES challenge page: the renewal fetches a one-time challenge, as
# enroll does before the key is made, and its CSR carries it. Only the real scepserver
# checks NDES challenges here (through its -csrverifierexec hook, each once), and it cannot
# issue EC certificates: the run ends refused (77) after the server consumed the
# challenge, and nothing changes. A refused login to the page costs no key.
test_renew_ec_ndes_one_time_challenge() {
	KEY_TYPE=ec:P-256
	responder_renew_setup normal || return
	start_ndes "$T/ndes" || return
	SCEP_ONE_TIME=1 start_scepserver "$T/srv" -csrverifierexec "$NDES_VERIFY" || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	printf 'not-the-password\n' >"$T/wrong.pass"
	chmod 600 "$T/wrong.pass"
	CHALLENGE_FILE=- CHALLENGE_URL=$NDES_URL CHALLENGE_USER=enroll@example.com
	CHALLENGE_PW_FILE=$T/wrong.pass CHALLENGE_INSECURE_HTTP=yes
	write_conf
	assert_exit 77 p11e renew --force || return
	assert_contains "$ERR" "401"
	assert_not_contains "$ERR" "generating a"
	check_untouched
	CHALLENGE_PW_FILE=$NDES_PW_FILE
	write_conf
	assert_exit 77 p11e renew --force || return
	assert_eq 1 "$(awk '/obtained a one-time challenge/ { c = NR } /generating a/ { k = NR }
		END { print (c && k && c < k) ? 1 : 0 }' "$ERR")" "challenge obtained, then the key generated"
	assert_eq 1 "$(wc -l <"$NDES_DIR/state/used")" "challenges the SCEP server consumed"
	assert_not_contains "$ERR" "$(head -n1 "$NDES_DIR/state/challenges")"
	check_untouched
}

run_tests
