#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-rollover.sh: CA rollover (RFC 8894 section 4.7, GetNextCACert) against the project's
# responder double (tests/doubles/scep_responder.py): the real scepserver neither
# advertises GetNextCACert nor implements it (it answers HTTP 500 "operation not
# implemented"). Modes: rollover (next CA signed by the current RA), rollover-stranger /
# rollover-forged (hostile), rolled (GetCACert serves the next CA, which issues).
# The next CA keeps the current CA's subject name, as a renewed CA does.
. "$(dirname "$0")/lib.sh"

ISSUER_EXPECT="O=p11enroll tests"

# serve MODE: (re)starts the responder on the same pki directory, writes the
# configuration for its new port. CA_FP=- (the default here): trust by pin.
serve() {
	local fp=${CONF_FP:--}
	stop_pid "$T/resp/responder.pid"
	start_responder "$T/resp" "$1" || return
	CA_FP=$fp
	write_conf
	OLD_CA=$T/resp/pki/ca.pem NEXT_CA=$T/resp/pki/next-ca.pem
}

# sha256_of PEM: "AB:CD:..." as p11enroll prints fingerprints.
sha256_of() {
	ca_fingerprint "$1"
}

# issued_by_next OUT: a certificate the next CA issues (made with its key by openssl).
issued_by_next() {
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/other.key" -subj "/CN=other" \
		-CA "$NEXT_CA" -CAkey "$T/resp/pki/next-ca.key" -days 30 -out "$1" 2>openssl.err
}

test_rollover_next_ca_trusted_then_pin_moves() {
	make_token || return
	serve rollover || return
	assert_exit 0 p11e -v enroll || return
	check_enrollment
	assert_contains "$ERR" "the CA announced its next CA (GetNextCACert, signed by the current one)"
	# Its CMS was checked in the network process, which sent back the certificates only.
	assert_contains "$ERR" "network process: GetNextCACert verified, signed by the current CA, 3 certificates"
	assert_contains "$ERR" "sha256:$(sha256_of "$NEXT_CA")"
	# The next CA is in the trust dir (with its hash link) and kept in state_dir.
	assert_file "$TRUST_DIR/ca-next.crt" || return
	assert_eq "$(sha256_of "$NEXT_CA")" "$(sha256_of "$TRUST_DIR/ca-next.crt")" "ca-next.crt"
	assert_eq "$(sha256_of "$NEXT_CA")" "$(sha256_of "$STATE_DIR/ca-next.pem")" "ca-next.pem"
	assert_eq 644 "$(stat -c %a "$STATE_DIR/ca-next.pem")" "ca-next.pem mode"
	assert_contains "$STATE_DIR/ca-next.pem" "# verified-by sha256:$(sha256_of "$OLD_CA")"
	assert_eq "sha256:$(sha256_of "$OLD_CA")" "$(cat "$STATE_DIR/ca.pin")" "pin before"
	# Relying software trusts what the next CA issues, before the rollover.
	issued_by_next next-issued.pem || return
	openssl verify -CAfile "$TRUST_DIR/ca.crt" next-issued.pem >verify-old-only.txt 2>&1
	assert_not_contains verify-old-only.txt "next-issued.pem: OK"
	openssl verify -CApath "$TRUST_DIR" next-issued.pem >verify-next.txt 2>&1
	assert_contains verify-next.txt "next-issued.pem: OK"
	cp "$CERT_FILE" old-cert.pem

	# The server rolls over: GetCACert now returns the next CA, which issues.
	serve rolled || return
	assert_exit 0 p11e renew --force || return
	assert_contains "$ERR" "CA rolled over to sha256:$(sha256_of "$NEXT_CA")"
	assert_eq "sha256:$(sha256_of "$NEXT_CA")" "$(cat "$STATE_DIR/ca.pin")" "pin after"
	openssl x509 -in "$CERT_FILE" -noout -issuer -nameopt RFC2253 >issuer.txt
	openssl verify -CAfile "$NEXT_CA" "$CERT_FILE" >verify-new.txt 2>&1
	assert_contains verify-new.txt "$CERT_FILE: OK"
	openssl verify -CApath "$TRUST_DIR" "$CERT_FILE" >verify-trust.txt 2>&1
	assert_contains verify-trust.txt "$CERT_FILE: OK"
	# The previous CA stays trusted (ca-prev) for what it issued until it expires.
	assert_eq "$(sha256_of "$OLD_CA")" "$(sha256_of "$TRUST_DIR/ca-prev.crt")" "ca-prev.crt"
	openssl verify -CApath "$TRUST_DIR" old-cert.pem >verify-oldcert.txt 2>&1
	assert_contains verify-oldcert.txt "old-cert.pem: OK"
	# Later runs trust the new CA through the moved pin, without warnings.
	assert_exit 0 p11e renew --force || return
	assert_not_contains "$ERR" "rolled over"
	assert_not_contains "$ERR" "warning"
	assert_exit 0 p11e check || return
	assert_contains "$OUT" "the chain holds the CA pinned on first contact"
}

test_rollover_fingerprint_names_old_ca() {
	make_token || return
	serve rollover || return
	CONF_FP=sha256:$(sha256_of "$OLD_CA")
	CA_FP=$CONF_FP
	write_conf
	assert_exit 0 p11e enroll || return
	assert_file "$TRUST_DIR/ca-next.crt" || return
	assert_no_file "$STATE_DIR/ca.pin"
	serve rolled || return
	assert_exit 0 p11e renew --force || return
	assert_contains "$ERR" "[scep] ca_fingerprint names the previous CA; update it to"
	assert_contains "$ERR" "ca_fingerprint = sha256:$(sha256_of "$NEXT_CA")"
	openssl verify -CAfile "$NEXT_CA" "$CERT_FILE" >verify-new.txt 2>&1
	assert_contains verify-new.txt "$CERT_FILE: OK"
	assert_no_file "$STATE_DIR/ca.pin"
	# Once updated, the warning goes.
	CONF_FP=sha256:$(sha256_of "$NEXT_CA")
	serve rolled || return
	assert_exit 0 p11e renew --force || return
	assert_not_contains "$ERR" "ca_fingerprint names the previous CA"
}

# check_nothing_next: no trace of a next CA anywhere.
check_nothing_next() {
	assert_no_file "$TRUST_DIR/ca-next.crt"
	assert_no_file "$STATE_DIR/ca-next.pem"
	issued_by_next next-issued.pem || return
	openssl verify -CApath "$TRUST_DIR" next-issued.pem >verify-next.txt 2>&1
	assert_not_contains verify-next.txt "next-issued.pem: OK"
}

test_rollover_hostile_next_ca_refused() {
	make_token || return
	# Signed by a stranger: the enrollment itself succeeds, with a warning.
	serve rollover-stranger || return
	assert_exit 0 p11e enroll || return
	check_enrollment
	assert_contains "$ERR" "GetNextCACert response is not signed by the current CA or its RA"
	assert_contains "$ERR" "ignoring the next CA that $SCEP_URL offers: it is not trusted"
	check_nothing_next
	# A forged signature, seen by `check` (which fetches what enroll fetches).
	serve rollover-forged || return
	assert_exit 0 p11e check || return
	assert_contains "$ERR" "GetNextCACert response is not signed by the current CA or its RA"
	check_nothing_next
	# The server then switches to that CA: still refused, as an unannounced change.
	serve rolled || return
	assert_exit 76 p11e renew --force || return
	assert_contains "$ERR" "does not hold the CA pinned on first contact"
	assert_eq "sha256:$(sha256_of "$OLD_CA")" "$(cat "$STATE_DIR/ca.pin")" "pin unchanged"
}

test_rollover_unannounced_change_76() {
	make_token || return
	# GetNextCACert not advertised (normal mode): no next CA is looked for.
	serve normal || return
	assert_exit 0 p11e -v enroll || return
	assert_contains "$ERR" "GetNextCACert not advertised"
	check_nothing_next
	serve rolled || return
	assert_exit 76 p11e renew --force || return
	assert_contains "$ERR" "does not hold the CA pinned on first contact"
	assert_eq "sha256:$(sha256_of "$OLD_CA")" "$(cat "$STATE_DIR/ca.pin")" "pin unchanged"
	# With [scep] ca_fingerprint naming the old CA: refused as well.
	CONF_FP=sha256:$(sha256_of "$OLD_CA")
	serve rolled || return
	assert_exit 76 p11e renew --force || return
	assert_contains "$ERR" "no certificate of the server's CA chain matches [scep] ca_fingerprint"
}

test_rollover_no_next_ca_is_quiet() {
	make_token || return
	# rolled mode advertises GetNextCACert and answers 404: no rollover in progress.
	serve rolled || return
	assert_exit 0 p11e -v enroll || return
	assert_contains "$ERR" "GetNextCACert: no next CA (HTTP 404"
	assert_not_contains "$ERR" "next CA that"
	assert_not_contains "$ERR" "GetNextCACert failed"
	assert_no_file "$TRUST_DIR/ca-next.crt"
	assert_file "$STATE_DIR/ca-next.looked"
	assert_contains "$T/resp/responder.log" "GetNextCACert -> 404"
}

run_tests
