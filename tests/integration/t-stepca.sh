#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-stepca.sh: enrollment against a second real SCEP server, smallstep step-ca 0.19
# (built from Debian's Go source by tests/stepca/build.sh), on SoftHSM tokens.
# step-ca is what two-tier PKIs look like in the field: GetCACert returns the issuing
# CA alone (keyCertSign+cRLSign, no RA usages; the root only with includeRoot), that CA
# signs the replies and decrypts the requests, the root must come from [trust] root_file.
# It issues EC certificates, refuses a RenewalReq without the challenge, and encodes its
# AES-GCM replies wrongly (encryptionAlgorithmIdentifier 3/4).
# Each test starts its own step-ca (start_stepca in lib.sh) on free loopback ports.
. "$(dirname "$0")/lib.sh"

ISSUER_EXPECT="CN=p11enroll step-ca test intermediate"

# trust_conf KEY VALUE: adds "KEY = VALUE" to the [trust] section of $CONF.
trust_conf() {
	sed -i "/^\[trust\]\$/a $1 = $2" "$CONF"
}

# stepca_setup FP [start_stepca options...]: token, step-ca, configuration with
#   ca_fingerprint = FP: "root" or "int" for that CA's fingerprint, else FP itself.
stepca_setup() {
	local fp=$1
	shift
	make_token || return
	start_stepca "$T/ca" "$@" || return
	case "$fp" in
	root) CA_FP=$ROOT_FP ;;
	int) CA_FP=$INT_FP ;;
	*) CA_FP=$fp ;;
	esac
	write_conf
}

# pkioperations: PKIOperation requests step-ca has logged so far.
pkioperations() {
	grep -c 'path="/scep/scep?operation=PKIOperation"' "$STEPCA_LOG"
}

# check_key_type: the certificate holds a key of type $KEY_TYPE.
check_key_type() {
	openssl x509 -in "$CERT_FILE" -noout -text >cert.txt 2>&1
	case "$KEY_TYPE" in
	rsa:2048)
		assert_contains cert.txt "rsaEncryption"
		assert_contains cert.txt "Public-Key: (2048 bit)"
		;;
	ec:P-256) assert_contains cert.txt "NIST CURVE: P-256" ;;
	ec:P-384) assert_contains cert.txt "NIST CURVE: P-384" ;;
	*) fail "check_key_type: unknown KEY_TYPE $KEY_TYPE" ;;
	esac
}

# ---------------------------------------------------------------- the harness itself

# step-ca starts, listens on 127.0.0.1 only, keeps its secrets in 0600 files, answers
# GetCACaps/GetCACert as expected, issues to the Debian scepclient and says why it
# refuses a wrong challenge; stop_pid stops it. Independent of p11enroll.
test_harness_stepca_serves_scepclient() {
	start_stepca "$T/ca" || return
	local pid
	pid=$(cat "$SCEP_PIDFILE")
	ss -Hltnp >listen.txt 2>&1
	grep -F "pid=$pid," listen.txt >mine.txt
	assert_eq 2 "$(wc -l <mine.txt)" "listening sockets of step-ca (https, http)"
	assert_eq 0 "$(awk '{print $4}' mine.txt | grep -vc '^127\.0\.0\.1:')" \
		"sockets of step-ca not bound to 127.0.0.1"
	assert_contains mine.txt "127.0.0.1:$SCEP_PORT "
	assert_eq 600 "$(stat -c %a "$STEPCA_DIR/pki/password")" "mode of the key password file"
	assert_eq 600 "$(stat -c %a "$STEPCA_DIR/ca.json")" "mode of ca.json (holds the challenge)"
	assert_not_contains "/proc/$pid/cmdline" "$SCEP_CHALLENGE"
	assert_not_contains "$STEPCA_LOG" "$SCEP_CHALLENGE"

	curl -fsS "$SCEP_URL?operation=GetCACaps" >caps.txt
	assert_contains caps.txt POSTPKIOperation
	assert_contains caps.txt SHA-256
	assert_contains caps.txt AES
	# includeRoot false: one DER certificate, the intermediate.
	curl -fsS -D cacert.hdr "$SCEP_URL?operation=GetCACert" -o cacert.der
	assert_contains cacert.hdr "application/x-x509-ca-cert"
	openssl x509 -inform DER -in cacert.der -outform PEM -out cacert.pem 2>&1
	if cmp -s cacert.pem "$STEPCA_INT_PEM"; then
		_pass "GetCACert is the intermediate"
	else
		fail "GetCACert did not return the intermediate"
	fi

	mkdir good bad
	(cd good && scepclient -server-url "$SCEP_URL" -challenge "$SCEP_CHALLENGE" \
		-private-key key.pem -certificate cert.pem -cn harness.example.com) >good.log 2>&1
	assert_eq 0 $? "scepclient exit status"
	openssl verify -CAfile "$STEPCA_ROOT_PEM" -untrusted "$STEPCA_INT_PEM" good/cert.pem \
		>verify.txt 2>&1
	assert_contains verify.txt "good/cert.pem: OK"
	(cd bad && scepclient -server-url "$SCEP_URL" -challenge wrong-challenge \
		-private-key key.pem -certificate cert.pem -cn other.example.com) >bad.log 2>&1
	assert_eq 1 $? "scepclient exit status with a wrong challenge"
	assert_contains bad.log "failInfo: badRequest"
	assert_contains "$STEPCA_LOG" 'error="wrong password provided"'
	assert_no_file bad/cert.pem

	stop_pid "$SCEP_PIDFILE"
	if kill -0 "$pid" 2>/dev/null; then fail "step-ca $pid still running after stop_pid"; fi
	if curl -fsS --max-time 2 -o /dev/null "$SCEP_URL?operation=GetCACaps" 2>/dev/null; then
		fail "something still answers on $SCEP_URL"
	fi
}

# includeRoot true: GetCACert is a degenerate PKCS#7 with the intermediate and the root.
test_harness_stepca_include_root() {
	start_stepca "$T/ca" --include-root --cipher 2 || return
	curl -fsS -D cacert.hdr "$SCEP_URL?operation=GetCACert" -o cacert.p7
	assert_contains cacert.hdr "application/x-x509-ca-ra-cert"
	openssl pkcs7 -inform DER -in cacert.p7 -print_certs -out certs.pem 2>&1
	assert_eq 2 "$(grep -c 'BEGIN CERTIFICATE' certs.pem)" "certificates in GetCACert"
	grep '^subject=' certs.pem >subjects.txt
	assert_contains subjects.txt "CN = p11enroll step-ca test intermediate"
	assert_contains subjects.txt "CN = p11enroll step-ca test root"
	assert_eq 1 "$(grep -c '"encryptionAlgorithmIdentifier": 2' "$STEPCA_DIR/ca.json")" \
		"encryptionAlgorithmIdentifier in ca.json"
}

# ---------------------------------------------------------------- two tiers, the root

# The field's case: GetCACert has no root and none is configured. p11enroll cannot
# anchor the chain, says to set [trust] root_file and exits 78 before it touches the
# token (whichever CA the fingerprint names); with root_file it enrolls.
test_two_tier_needs_root_file_78() {
	KEY_TYPE=rsa:2048
	stepca_setup int || return
	local fp before
	before=$(pkioperations)
	for fp in "$INT_FP" "$ROOT_FP"; do
		CA_FP=$fp write_conf
		assert_exit 78 p11e enroll
		assert_contains "$ERR" "root_file"
		assert_eq 0 "$(count_objects privkey)" "private keys after the refusal (ca_fingerprint $fp)"
		assert_eq 0 "$(count_objects pubkey)" "public keys after the refusal"
		assert_eq 0 "$(count_objects cert)" "certificates after the refusal"
		assert_no_file "$CERT_FILE"
	done
	assert_eq "$before" "$(pkioperations)" "PKIOperations sent without a root"
	trust_conf root_file "$STEPCA_ROOT_PEM"
	assert_exit 0 p11e enroll || return
	check_enrollment
	check_second_enroll
}

# includeRoot true: the root comes with GetCACert, pinned by its fingerprint. The
# request must be encrypted to the intermediate (the only CA step-ca decrypts with; to
# the root it answers 500 "... no enveloped recipient ...").
test_include_root_enrolls() {
	KEY_TYPE=rsa:2048
	stepca_setup root --include-root || return
	assert_exit 0 p11e enroll || return
	check_enrollment
	assert_not_contains "$STEPCA_LOG" "no enveloped recipient"
}

# [trust] fetch_aia = no (the default) is accepted and changes nothing here.
test_fetch_aia_no_accepted() {
	stepca_setup int || return
	trust_conf root_file "$STEPCA_ROOT_PEM"
	trust_conf fetch_aia no
	assert_exit 0 p11e enroll || return
	check_enrollment
}

# ---------------------------------------------------------------- fingerprints

# ca_fingerprint may name the root or the issuing CA, with either server setting.
fingerprint_case() {
	local which=$1
	shift
	stepca_setup "$which" "$@" || return
	case " $* " in *" --include-root "*) ;; *) trust_conf root_file "$STEPCA_ROOT_PEM" ;; esac
	assert_exit 0 p11e enroll || return
	check_enrollment
}
test_fingerprint_root_root_file() { fingerprint_case root; }
test_fingerprint_root_include_root() { fingerprint_case root --include-root; }
test_fingerprint_intermediate_root_file() { fingerprint_case int; }
test_fingerprint_intermediate_include_root() { fingerprint_case int --include-root; }

# A fingerprint of neither: refused (76, like against scepserver), nothing generated.
test_fingerprint_wrong_76() {
	local other
	other=sha256:$(printf 'AB:%.0s' $(seq 31))AB
	stepca_setup "$other" --include-root || return
	assert_exit 76 p11e enroll
	assert_contains_i "$ERR" fingerprint
	assert_eq 0 "$(count_objects privkey)" "private keys"
	assert_no_file "$CERT_FILE"
}

# ---------------------------------------------------------------- refusals

# Wrong challenge: step-ca answers a signed CertRep FAILURE, failInfo badRequest with
# failInfoText (OID 1.3.6.1.5.5.7.24, a PrintableString) "wrong password provided".
test_wrong_challenge_77() {
	KEY_TYPE=rsa:2048
	make_token || return
	start_stepca "$T/ca" --include-root || return
	CA_FP=$ROOT_FP
	SCEP_CHALLENGE=not-$SCEP_CHALLENGE write_conf
	assert_exit 77 p11e enroll
	assert_contains "$ERR" "wrong password provided"
	assert_contains "$STEPCA_LOG" 'error="wrong password provided"'
	assert_eq 0 "$(count_objects cert)" "certificates on the token"
	assert_eq 0 "$(count_objects privkey)" "private keys (this run's key taken back)"
	assert_no_file "$CERT_FILE"
}

# encryptionAlgorithmIdentifier 3 (AES-128-GCM): step-ca issues the certificate but its
# pkcs7 library writes GCM parameters no one can read. p11enroll cannot decrypt the
# reply: 76, and it says the CA may have issued a certificate it could not read.
test_cipher3_gcm_76() {
	KEY_TYPE=rsa:2048
	stepca_setup root --include-root --cipher 3 || return
	assert_exit 76 p11e enroll
	assert_contains "$ERR" "may have issued"
	assert_match "$STEPCA_LOG" 'operation=PKIOperation.*status=200'
	assert_eq 0 "$(count_objects cert)" "certificates on the token"
	assert_no_file "$CERT_FILE"
}

# ---------------------------------------------------------------- the matrix

# matrix_case INCLUDE_ROOT(yes|no) CIPHER KEY_TYPE: one enrollment, fully checked.
# Without includeRoot the root comes from root_file and the pin is the intermediate's;
# with it, the pin is the root's and there is no root_file.
matrix_case() {
	local opts=(--cipher "$2")
	KEY_TYPE=$3
	if [ "$1" = yes ]; then
		stepca_setup root --include-root "${opts[@]}" || return
	else
		stepca_setup int "${opts[@]}" || return
		trust_conf root_file "$STEPCA_ROOT_PEM"
	fi
	assert_exit 0 p11e enroll || return
	check_enrollment
	check_key_type
	assert_contains "$STEPCA_DIR/ca.json" "\"encryptionAlgorithmIdentifier\": $2,"
}
# Every value of each axis twice: includeRoot no/yes x cipher 0 (DES-CBC), 1 (AES-128-CBC),
# 2 (AES-256-CBC) x key rsa:2048, ec:P-256, ec:P-384.
test_matrix_noroot_des_rsa2048() { matrix_case no 0 rsa:2048; }
test_matrix_root_des_p256() { matrix_case yes 0 ec:P-256; }
test_matrix_noroot_aes128_p384() { matrix_case no 1 ec:P-384; }
test_matrix_root_aes128_rsa2048() { matrix_case yes 1 rsa:2048; }
test_matrix_noroot_aes256_p256() { matrix_case no 2 ec:P-256; }
test_matrix_root_aes256_p384() { matrix_case yes 2 ec:P-384; }

# ---------------------------------------------------------------- renewal

# renew_case KEY_TYPE [start_stepca options]: enroll, then `renew --force`. step-ca
# checks the challenge on every request: an RSA RenewalReq without it is refused
# ("wrong password provided") and p11enroll asks again with the static challenge; an EC
# renewal is a new PKCSReq with the challenge. Afterwards: a new serial, one key pair,
# the certificate verifies.
renew_case() {
	KEY_TYPE=$1
	shift
	case " $* " in
	*" --include-root "*) stepca_setup root "$@" || return ;;
	*)
		stepca_setup int "$@" || return
		trust_conf root_file "$STEPCA_ROOT_PEM"
		;;
	esac
	assert_exit 0 p11e enroll || return
	local old_serial old_id pubkeys refusals
	old_serial=$(openssl x509 -in "$CERT_FILE" -noout -serial)
	old_id=$(token_objects | grep '^privkey|' | cut -d'|' -f2)
	pubkeys=$(count_objects pubkey)
	refusals=$(grep -c 'error="wrong password provided"' "$STEPCA_LOG")
	assert_exit 0 p11e -v renew --force || return
	check_enrollment
	assert_eq 1 "$([ "$old_serial" != "$(openssl x509 -in "$CERT_FILE" -noout -serial)" ] && echo 1)" \
		"a new serial (old $old_serial)"
	assert_eq "$pubkeys" "$(count_objects pubkey)" "public keys after renew (as after enroll)"
	assert_eq 1 "$(count_objects privkey)" "private keys after renew"
	check_key_type
	case "$KEY_TYPE" in
	rsa:*)
		assert_eq $((refusals + 1)) "$(grep -c 'error="wrong password provided"' "$STEPCA_LOG")" \
			"RenewalReq without challenge refused once"
		assert_contains "$ERR" "asking again with the configured challenge"
		;;
	*)
		assert_eq "$refusals" "$(grep -c 'error="wrong password provided"' "$STEPCA_LOG")" \
			"refusals for an EC renewal (a PKCSReq with the challenge)"
		;;
	esac
	local new_id
	new_id=$(token_objects | grep '^privkey|' | cut -d'|' -f2)
	if [ "$new_id" != "$old_id" ]; then
		_pass "new key ID $new_id"
	else
		echo "  note: renewed with the same key ID $old_id" >&2
	fi
}
test_renew_force_rsa() { renew_case rsa:2048; }
test_renew_force_ec_p256() { renew_case ec:P-256 --include-root --cipher 1; }

# ---------------------------------------------------------------- using the key

# tls_client_case KEY_TYPE: after an enrollment, the token key and the certificate
# authenticate a TLS client: curl with OpenSSL's pkcs11 engine (libengine-pkcs11-openssl
# 0.4.12, loaded by lib.sh's engine_conf) against `openssl s_server -Verify 1 -CApath
# $TRUST_DIR -www`, which must report the client's certificate verified. The PIN is never
# in argv: the key URI names engine_conf's PIN file with pin-source=file:PATH (RFC 7512).
tls_client_case() {
	KEY_TYPE=$1
	local key_uri port i j pid
	stepca_setup int || return
	trust_conf root_file "$STEPCA_ROOT_PEM"
	assert_exit 0 p11e enroll || return
	key_uri=$(out_value key)
	assert_match "$OUT" '^key:[[:space:]]+pkcs11:' || return

	make_tls_server "$T/tls" || return
	engine_conf "$T" || return
	for ((i = 0; i < 3; i++)); do
		port=$(free_port)
		# exec, not lib.sh's openssl function: a function run with & is a subshell of its
		# own, and $! would be that subshell's PID, not the server's (stop_pid would stop
		# the subshell and leave s_server running).
		(SSL_CERT_FILE=/dev/null SSL_CERT_DIR=/nonexistent exec openssl s_server \
			-accept "127.0.0.1:$port" -Verify 1 -CApath "$TRUST_DIR" \
			-cert "$T/tls/server.pem" -key "$T/tls/server.key" -www) \
			>s_server.log 2>&1 </dev/null &
		pid=$!
		echo "$pid" >s_server.pid
		register_pidfile "$T/s_server.pid"
		for ((j = 0; j < 100; j++)); do
			if ! kill -0 "$pid" 2>/dev/null || grep -q '^ACCEPT' s_server.log; then break; fi
			sleep 0.05
		done
		grep -q '^ACCEPT' s_server.log && break
		stop_pid "$T/s_server.pid"
	done
	assert_contains s_server.log ACCEPT || return

	OPENSSL_CONF=$ENGINE_CNF curl -sS --max-time 30 --cacert "$T/tls/ca.pem" \
		--engine pkcs11 --key-type ENG --key "$key_uri?pin-source=file:$ENGINE_PIN" \
		--cert "$CERT_FILE" "https://127.0.0.1:$port/" >page.html 2>curl.err
	assert_eq 0 $? "curl exit status$([ -s curl.err ] && printf ' (%s)' "$(tail -n1 curl.err)")"
	cat curl.err >&2
	# s_server -www's page: the client certificate it received and its verification
	# result; its log: the chain it checked, each depth followed by "verify return:1".
	assert_contains page.html "Client certificate"
	assert_contains page.html "Subject: O=Example, CN=host.example.com"
	assert_contains page.html "Issuer: O=p11enroll test, CN=p11enroll step-ca test intermediate"
	assert_contains page.html "Verify return code: 0 (ok)"
	awk '/^depth=0 / { getline v; print $0 " -> " v }' s_server.log >depth0.txt
	assert_contains depth0.txt "depth=0 O = Example, CN = host.example.com -> verify return:1"
	assert_not_contains s_server.log "verify error"
}
test_tls_client_curl_engine_rsa() { tls_client_case rsa:2048; }
test_tls_client_curl_engine_ec() { tls_client_case ec:P-256; }

run_tests
