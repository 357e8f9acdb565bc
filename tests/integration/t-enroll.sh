#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-enroll.sh: successful enrollments, checked the way a user would check them:
# with pkcs11-tool on the token, openssl on the files, and p11enroll's own output.
. "$(dirname "$0")/lib.sh"

test_enroll_rsa2048() {
	KEY_TYPE=rsa:2048
	setup_enroll || return
	assert_exit 0 p11e enroll || return
	check_enrollment
	openssl x509 -in "$CERT_FILE" -noout -text >cert.txt
	assert_contains cert.txt "Public-Key: (2048 bit)"
	assert_contains cert.txt "rsaEncryption"
	check_second_enroll
}

# The Debian scepserver (micromdm scep 2.1.0) signs every certificate with the signature
# algorithm of the CSR (depot/signer.go copies CSR.SignatureAlgorithm), so its RSA CA
# cannot issue a certificate for an EC key: "x509: requested SignatureAlgorithm does not
# match private key type", answered as FAILURE/badRequest. EC enrollment end to end is
# tested against the project's responder (t-responder.sh); here the test checks that
# everything up to the CA is right (the CSR the CA received, which a -csrverifierexec
# hook saves) and that the refusal is reported cleanly: 77, nothing stored, this run's
# key taken back.
test_ec_p256_against_scepserver() {
	KEY_TYPE=ec:P-256
	make_token || return
	printf '#!/bin/sh\ncat >"%s/csr.$$.der"\n' "$T" >save-csr.sh
	chmod 0755 save-csr.sh
	start_scepserver "$T/srv" -csrverifierexec "$T/save-csr.sh" || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	write_conf
	p11e enroll
	if [ "$RC" = 0 ]; then
		# A scepserver that can sign for EC keys: then it must all be right.
		check_enrollment
		return
	fi
	assert_contains "$T/srv/scepserver.log" "requested SignatureAlgorithm does not match private key type"
	assert_contains "$ERR" "the CA rejected the request"
	check_ec_until_the_ca
}

test_status_after_enroll() {
	setup_enroll || return
	assert_exit 0 p11e enroll || return
	local key serial notafter year
	key=$(out_value key)
	serial=$(out_value serial)
	notafter=$(out_value 'not after')
	assert_exit 0 p11e status || return
	assert_match "$OUT" '^subject:[[:space:]]+.*CN=host\.example\.com'
	assert_eq "$key" "$(out_value key)" "key URI in status"
	assert_eq "$serial" "$(out_value serial)" "serial in status"
	assert_eq "$notafter" "$(out_value 'not after')" "not after in status"
	# The serial and the expiry are the certificate's.
	serial=$(openssl x509 -in "$CERT_FILE" -noout -serial | sed 's/^serial=//')
	local printed
	printed=$(out_value serial)
	printed=${printed#0x}
	if [ "$(norm_hex "$printed" | sed 's/^0*//')" = "$(norm_hex "$serial" | sed 's/^0*//')" ] ||
		{ [[ $printed =~ ^[0-9]+$ ]] && [ "$printed" = "$((16#$serial))" ]; }; then
		_pass "status serial $printed == certificate serial $serial"
	else
		fail "status prints serial '$printed', the certificate's is $serial"
	fi
	year=$(openssl x509 -in "$CERT_FILE" -noout -enddate | awk '{print $4}')
	assert_match "$OUT" "^not after:[[:space:]]+.*$year"
}

# Secrets are read from files (0600), so they are in no command line and no environment:
# strace records the argv and the environment of every program p11enroll (or a child)
# executes, exactly, however short-lived (sampling /proc could miss a quick run); then
# search everything it wrote. The PIN and the challenge are random and long, so any hit is
# a leak.
test_secrets_not_in_argv_env_or_files() {
	setup_enroll || return
	# LeakSanitizer cannot run under ptrace (a sanitizer build would exit 1 at its end): the
	# leak check is off for this one traced run; every other run of the suite keeps it.
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
		strace -f -qq -v -s 65536 -e trace=execve -o execve.txt \
		"$P11ENROLL" -v -c "$CONF" enroll >run.out 2>run.err </dev/null
	assert_eq 0 "$?" "exit status of enroll under strace" || { cat run.err >&2; return; }
	cat run.out run.err >&2
	assert_match execve.txt "execve\\(\"$P11ENROLL\", \\[.*\\], \\[.*\\]\\) = 0"
	assert_not_contains execve.txt "$PIN"
	assert_not_contains execve.txt "$SCEP_CHALLENGE"
	# Whatever it printed or wrote.
	local f
	for f in run.out run.err "$CERT_FILE"; do
		assert_not_contains "$f" "$PIN"
		assert_not_contains "$f" "$SCEP_CHALLENGE"
	done
	if grep -rlF -e "$PIN" -e "$SCEP_CHALLENGE" "$STATE_DIR" "$TRUST_DIR" >leaked-files.txt 2>/dev/null; then
		fail "secret found in: $(tr '\n' ' ' <leaked-files.txt)"
	else
		_pass "no secret in $STATE_DIR or $TRUST_DIR"
	fi
}

# SoftHSM's own RSA generator here, not the tests' pool of keys (lib.sh, run_tests).
P11E_REAL_KEYGEN=1
run_tests
