#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-config.sh: configuration mistakes give exit 78 with FILE:LINE and nothing is generated.
. "$(dirname "$0")/lib.sh"

# config_refused [LINE|any]: enroll exits 78 and no key is made; the message names
# CONF:LINE (LINE given), CONF:<some line> (any) or nothing in particular (no argument).
config_refused() {
	assert_exit 78 p11e enroll
	case "${1:-}" in
	'') ;;
	any)
		ASSERTS=$((ASSERTS + 1))
		if awk -v p="$CONF:" '{ i = index($0, p); if (i && substr($0, i + length(p)) ~ /^[0-9]/) f = 1 }
			END { exit !f }' "$ERR"; then
			_pass "stderr names $CONF:<line>"
		else
			fail "stderr does not name $CONF:<line>$(_last_err)"
		fi
		;;
	*) assert_contains "$ERR" "$CONF:$1" ;;
	esac
	assert_eq 0 "$(count_objects privkey)" "private keys on the token"
	assert_no_file "$CERT_FILE"
}

test_unknown_key() {
	setup_enroll || return
	sed -i '/^\[key\]$/a frobnicate = yes' "$CONF"
	config_refused "$(conf_line "$CONF" '^frobnicate')"
	assert_contains "$ERR" frobnicate
}

test_bad_key_type() {
	KEY_TYPE=rsa:1234
	setup_enroll || return
	config_refused "$(conf_line "$CONF" '^type = ')"
	assert_contains "$ERR" "rsa:1234"
}

test_unknown_curve() {
	KEY_TYPE=ec:P-7
	setup_enroll || return
	config_refused "$(conf_line "$CONF" '^type = ')"
}

test_missing_url() {
	setup_enroll || return
	sed -i '/^url = /d' "$CONF"
	config_refused any
	assert_contains_i "$ERR" url
}

test_bad_fingerprint_syntax() {
	CA_FP=sha256:12:34
	setup_enroll || return
	config_refused "$(conf_line "$CONF" '^ca_fingerprint = ')"
}

test_pin_file_0644_refused() {
	setup_enroll || return
	chmod 0644 "$PIN_FILE"
	config_refused
	assert_contains "$ERR" "$PIN_FILE"
}

test_challenge_file_0644_refused() {
	setup_enroll || return
	chmod 0644 "$CHALLENGE_FILE"
	config_refused
	assert_contains "$ERR" "$CHALLENGE_FILE"
}

# An inline challenge is a secret in the configuration: refused if others can read it.
test_inline_challenge_in_readable_config_refused() {
	setup_enroll || return
	sed -i "s|^challenge_file = .*|challenge = $SCEP_CHALLENGE|" "$CONF"
	chmod 0644 "$CONF"
	config_refused
	assert_not_contains "$ERR" "$SCEP_CHALLENGE"
	# The same file, private, works.
	chmod 0600 "$CONF"
	assert_exit 0 p11e enroll
}

run_tests
