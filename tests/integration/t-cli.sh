#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-cli.sh: the command line: check, --help, --version, usage errors (exit 64).
. "$(dirname "$0")/lib.sh"

test_check_shows_fingerprint_and_caps() {
	CA_FP=-
	setup_enroll || return
	local fp
	fp=$(ca_fingerprint "$SCEP_CA_PEM")
	assert_exit 0 p11e check || return
	if tr -d ':' <"$OUT" | tr 'A-F' 'a-f' | grep -qF "$(norm_hex "$fp")"; then
		_pass "check prints the CA's SHA-256 fingerprint"
	else
		fail "check does not print the CA's SHA-256 fingerprint $fp"
	fi
	assert_contains_i "$OUT" POSTPKIOperation
	assert_contains_i "$OUT" SHA-256
	assert_contains_i "$OUT" AES
	# check talks to the CA only: nothing on the token.
	assert_eq 0 "$(count_objects privkey)" "private keys after check"
	# With the right fingerprint configured, check passes too; with a wrong one, 76.
	CA_FP=sha256:$fp write_conf
	assert_exit 0 p11e check
	CA_FP=sha256:$(printf '%064d' 0 | sed 's/../&:/g; s/:$//') write_conf
	assert_exit 76 p11e check
}

test_help_lists_exit_codes() {
	assert_exit 0 p11e_raw --help
	local code
	for code in 0 64 69 70 74 75 76 77 78; do
		assert_match "$OUT" "(^|[^0-9])$code([^0-9]|\$)"
	done
	assert_contains "$OUT" enroll
	assert_contains "$OUT" status
	assert_contains "$OUT" check
}

test_version() {
	local version
	version=$(sed -n 's/^VERSION := //p' "$SRCDIR/Makefile")
	assert_exit 0 p11e_raw --version
	assert_contains "$OUT" "${version:-0.}"
}

test_usage_errors_64() {
	make_token || return
	SCEP_URL=http://127.0.0.1:9/scep CA_FP=- write_conf
	assert_exit 64 p11e frobnicate
	assert_contains "$ERR" frobnicate
	assert_exit 64 p11e_raw -c "$CONF"
	assert_exit 64 p11e_raw --no-such-option
	assert_exit 64 p11e enroll --no-such-option
}

run_tests
