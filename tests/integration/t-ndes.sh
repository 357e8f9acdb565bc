#!/bin/bash
# Microsoft NDES, without Windows: one-time challenges from the MSCEP_ADMIN double
# (tests/doubles/ndes_admin.py: NTLM verified against the account's password, pages in
# UTF-16LE without BOM), enforced by the real scepserver through its -csrverifierexec
# hook (tests/doubles/challenge_verifier.py: each challenge once), or by the SCEP
# responder double where NDES's RA shape matters.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

# setup_ndes [ndes_admin flags...]: token, NDES challenge page, scepserver that accepts
# only the page's challenges (once), and a configuration using them. The double speaks
# plain http unless --https: then challenge_insecure_http = yes (CHALLENGE_INSECURE_HTTP
# overrides; "-" leaves the line out).
setup_ndes() {
	make_token || return
	start_ndes "$T/ndes" "$@" || return
	SCEP_ONE_TIME=1 start_scepserver "$T/srv" -csrverifierexec "$NDES_VERIFY" || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	CHALLENGE_FILE=- CHALLENGE_URL=${CHALLENGE_URL:-$NDES_URL}
	CHALLENGE_USER=${CHALLENGE_USER:-enroll@example.com} CHALLENGE_PW_FILE=$NDES_PW_FILE
	case "$CHALLENGE_URL" in
	http:*) CHALLENGE_INSECURE_HTTP=${CHALLENGE_INSECURE_HTTP:-yes} ;;
	esac
	write_conf
}

# requests_to_ndes: how many requests the NDES double has logged.
requests_to_ndes() {
	grep -cE '^ndes_admin: conn [0-9]+: GET ' "$NDES_DIR/ndes.log" 2>/dev/null || true
}

used_challenges() {
	wc -l <"$NDES_DIR/state/used" 2>/dev/null || echo 0
}

test_ntlm_user_at_domain_one_time_challenge() {
	CHALLENGE_CHARS=hex CHALLENGE_LENGTH=16
	setup_ndes || return
	assert_exit 0 p11e -v enroll || return
	check_enrollment
	assert_contains "$ERR" "obtained a one-time challenge"
	# the page is read in the network process (netproc_parse.h), not beside the token
	assert_contains "$ERR" "network process: NDES page read, a challenge"
	assert_eq 1 "$(used_challenges | tr -d ' ')" "challenges the SCEP server consumed"
	# Neither the NDES password nor the challenge reaches the output.
	assert_not_contains "$ERR" "$(cat "$NDES_PW_FILE")"
	assert_not_contains "$OUT" "$(cat "$NDES_PW_FILE")"
	assert_not_contains "$ERR" "$(head -n1 "$NDES_DIR/state/challenges")"
}

test_ntlm_domain_backslash_user() {
	CHALLENGE_USER='EXAMPLE\enroll'
	setup_ndes || return
	assert_exit 0 p11e enroll || return
	check_enrollment
}

# Windows hashes the UTF-16 of the password's characters; libcurl's NTLM reads bytes as
# Latin-1, so p11enroll re-encodes a UTF-8 password (the file is UTF-8).
test_ntlm_non_ascii_password() {
	NDES_PASSWORD='été-Passwort-ß'
	setup_ndes || return
	assert_exit 0 p11e enroll || return
	check_enrollment
}

test_negotiate_and_ntlm_offered() {
	setup_ndes --auth negotiate || return
	assert_exit 0 p11e enroll || return
	check_enrollment
}

test_wrong_ndes_password_77_names_user_only() {
	setup_ndes || return
	printf 'not-the-password\n' >"$T/wrong.pass"
	chmod 600 "$T/wrong.pass"
	CHALLENGE_PW_FILE=$T/wrong.pass write_conf
	assert_exit 77 p11e enroll || return
	assert_contains "$ERR" "enroll@example.com"
	assert_contains "$ERR" "401"
	assert_not_contains "$ERR" "not-the-password"
	assert_eq 0 "$(count_objects privkey)" "private keys generated"
}

test_password_cache_full_75() {
	setup_ndes --mode cache-full || return
	assert_exit 75 p11e enroll || return
	assert_contains_i "$ERR" "password cache is full"
	assert_eq 0 "$(count_objects privkey)" "private keys generated"
}

test_no_permission_77() {
	setup_ndes --mode no-permission || return
	assert_exit 77 p11e enroll || return
	assert_contains "$ERR" "sufficient permission"
	assert_contains "$ERR" "enroll@example.com"
}

test_challenge_shape_mismatch_76() {
	CHALLENGE_CHARS=hex CHALLENGE_LENGTH=16
	setup_ndes --length 32 || return
	assert_exit 76 p11e enroll || return
	assert_contains "$ERR" "16"
	assert_contains "$ERR" "32"
	assert_eq 0 "$(count_objects privkey)" "private keys generated"
}

test_used_or_unknown_challenge_refused_by_scepserver() {
	setup_ndes || return
	assert_exit 0 p11e enroll || return
	# The same challenge again, as a static one, for another key: the server refuses it.
	local used
	used=$(head -n1 "$NDES_DIR/state/used")
	(umask 077 && printf '%s\n' "$used" >"$T/used.challenge")
	CHALLENGE_URL= CHALLENGE_USER= CHALLENGE_PW_FILE= CHALLENGE_FILE=$T/used.challenge \
		KEY_LABEL=second CERT_FILE=$T/second.pem DN=CN=second.example.com write_conf
	assert_exit 77 p11e enroll || return
	assert_no_file "$T/second.pem"
	(umask 077 && printf 'DEADBEEFDEADBEEF\n' >"$T/unknown.challenge")
	CHALLENGE_URL= CHALLENGE_USER= CHALLENGE_PW_FILE= CHALLENGE_FILE=$T/unknown.challenge \
		KEY_LABEL=second CERT_FILE=$T/second.pem DN=CN=second.example.com write_conf
	assert_exit 77 p11e enroll || return
	assert_no_file "$T/second.pem"
}

# Basic only over https, with [scep] ca_file as the trust anchor for the page.
test_basic_over_https_with_ca_file() {
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/tls.key" -out "$T/tls.pem" \
		-days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null
	CA_FILE=$T/tls.pem
	setup_ndes --auth basic --https "$T/tls.pem" "$T/tls.key" || return
	assert_exit 0 p11e enroll || return
	check_enrollment
}

test_https_untrusted_server_refused() {
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/tls.key" -out "$T/tls.pem" \
		-days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null
	setup_ndes --auth basic --https "$T/tls.pem" "$T/tls.key" || return
	assert_exit 69 p11e enroll || return
	assert_contains_i "$ERR" "certificate"
	assert_eq 0 "$(count_objects privkey)" "private keys generated"
}

test_redirect_to_another_host_refused() {
	setup_ndes --redirect-to "http://localhost:9/CertSrv/MSCEP_ADMIN/" || return
	assert_exit 69 p11e enroll || return
	assert_contains "$ERR" "localhost"
	assert_eq 0 "$(count_objects privkey)" "private keys generated"
}

test_use_proxy_no_ignores_environment_proxy() {
	setup_ndes || return
	# A proxy that does not exist: used, it fails; bypassed, the enrollment works.
	local dead
	dead=http://127.0.0.1:$(free_port)
	http_proxy=$dead HTTP_PROXY=$dead https_proxy=$dead no_proxy= NO_PROXY= \
		assert_exit 69 p11e enroll || return
	USE_PROXY=no write_conf
	http_proxy=$dead HTTP_PROXY=$dead https_proxy=$dead no_proxy= NO_PROXY= \
		assert_exit 0 p11e enroll || return
	check_enrollment
}

# [scep] proxy: the challenge page and every SCEP request go through it, even with
# no_proxy in the environment naming the servers (the explicit setting wins).
test_explicit_proxy_is_used() {
	local i
	setup_ndes || return
	/usr/bin/python3 "$SRCDIR/tests/doubles/http_proxy.py" --ready-file "$T/proxy.port" \
		2>"$T/proxy.log" </dev/null &
	echo $! >"$T/proxy.pid"
	register_pidfile "$T/proxy.pid"
	for ((i = 0; i < 100; i++)); do
		[ -s "$T/proxy.port" ] && break
		sleep 0.05
	done
	PROXY=http://127.0.0.1:$(cat "$T/proxy.port") write_conf
	assert_exit 0 p11e enroll || return
	check_enrollment
	assert_match "$T/proxy.log" 'GET http://127.0.0.1:[0-9]+/CertSrv/MSCEP_ADMIN/ -> 200'
	assert_match "$T/proxy.log" 'GET http://127.0.0.1:[0-9]+/scep\?operation=GetCACert'
	assert_match "$T/proxy.log" 'POST http://127.0.0.1:[0-9]+/scep\?operation=PKIOperation -> 200'
}

# NTLM over plain http can be cracked offline or relayed: refused at load (78, naming
# the file:line of challenge_url), before the password file is read or anything is sent.
test_ntlm_over_http_refused_78_without_consent() {
	local line
	CHALLENGE_INSECURE_HTTP=-
	setup_ndes || return
	line=$(conf_line "$CONF" '^challenge_url =')
	assert_exit 78 p11e enroll || return
	assert_contains "$ERR" "$CONF:$line: [scep] challenge_url: $NDES_URL is plain http: the NTLM login to the challenge page could be captured and cracked offline or relayed; use https, or accept that risk with challenge_insecure_http = yes"
	assert_eq 0 "$(requests_to_ndes)" "requests to the challenge page"
	assert_eq 0 "$(count_objects privkey)" "private keys generated"
	assert_exit 78 p11e check --challenge || return
	assert_contains "$ERR" "is plain http"
	CHALLENGE_INSECURE_HTTP=no write_conf
	assert_exit 78 p11e enroll || return
	assert_eq 0 "$(requests_to_ndes)" "requests to the challenge page"
}

# challenge_insecure_http = yes: accepted, with a warning on every run that logs in.
test_ntlm_over_http_with_consent_warns_each_run() {
	local warning
	setup_ndes || return
	warning="warning: the NDES challenge page $NDES_URL is plain http: the NTLM login to it can be captured and cracked offline or relayed ([scep] challenge_insecure_http = yes accepts that); use https"
	assert_exit 0 p11e enroll || return
	check_enrollment
	assert_contains "$ERR" "$warning"
	[ "$(requests_to_ndes)" -gt 0 ] || fail "no request to the challenge page counted"
	assert_exit 0 p11e check --challenge || return
	assert_contains "$ERR" "$warning"
	# A run that does not log in has nothing to warn about.
	assert_exit 0 p11e check || return
	assert_not_contains "$ERR" "plain http"
}

test_check_reports_challenge_page() {
	setup_ndes || return
	assert_exit 0 p11e check || return
	assert_contains "$OUT" "asks for authentication"
	assert_contains "$OUT" "MD5:"
	assert_eq 0 "$(wc -l <"$NDES_DIR/state/challenges" 2>/dev/null || echo 0)" \
		"challenges spent by check"
	assert_exit 0 p11e check --challenge || return
	assert_contains "$OUT" "obtained a challenge of 16 characters"
	assert_eq 1 "$(wc -l <"$NDES_DIR/state/challenges" | tr -d ' ')" \
		"challenges spent by check --challenge"
}

run_tests
