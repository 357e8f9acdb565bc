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
	assert_contains "$ERR" "unknown option '--no-such-option'"
	assert_exit 64 p11e enroll --no-such-option
	assert_contains "$ERR" "unknown option '--no-such-option' for enroll"
	assert_contains "$ERR" "usage: p11enroll [-c FILE] [-v|-q] enroll"
	assert_exit 64 p11e enroll --max-wait
	assert_contains "$ERR" "--max-wait needs its argument, DURATION"
	assert_exit 64 p11e_raw -c
	assert_contains "$ERR" "-c needs its argument, FILE"
	assert_exit 64 p11e enroll --max-wait soon
	assert_contains "$ERR" "--max-wait 'soon' is not a duration"
	assert_exit 64 p11e provision --jobs 0
	assert_contains "$ERR" "--jobs '0' is not a number from 1 to"
	assert_exit 64 p11e check --json=yes
	assert_contains "$ERR" "--json takes no argument"
	assert_exit 64 p11e renew extra
	assert_contains "$ERR" "unexpected argument 'extra' for renew"
	assert_exit 64 p11e_raw help frobnicate
	assert_contains "$ERR" "unknown command 'frobnicate'"
	# Nothing was done: the usage errors come before the token is opened.
	assert_eq 0 "$(count_objects privkey)" "private keys after usage errors"
}

# The help is generated from the table the parser reads: every command --help names
# answers `CMD --help` and `help CMD` with its own usage, and every option listed under
# it, given a value of its kind before --help, is read without complaint; so is every
# global option.
test_help_names_what_is_parsed() {
	local help=$T/help.txt line cmd='' short opt arg seen='' nopts=0
	local -a val
	assert_exit 0 p11e_raw --help || return
	cp "$OUT" "$help"
	while IFS= read -r line; do
		case $line in
		Commands:*) cmd=- && continue ;;
		Options:*) cmd=global && continue ;;
		'') [ "$cmd" = global ] && break ;;
		esac
		[ -n "$cmd" ] || continue
		if [ "$cmd" != global ] && [[ $line =~ ^\ \ ([a-z]+)\  ]]; then
			cmd=${BASH_REMATCH[1]} seen="$seen $cmd"
			assert_exit 0 p11e_raw "$cmd" --help
			[ "$cmd" = help ] || assert_match "$OUT" "^usage: p11enroll .*\] $cmd( |\$)"
			assert_exit 0 p11e_raw help "$cmd"
			continue
		fi
		[[ $line =~ ^\ +(-[a-zA-Z],\ )?(--[a-z-]+)(\ ([A-Z]+))?\ \  ]] || continue
		short=${BASH_REMATCH[1]%, } opt=${BASH_REMATCH[2]} arg=${BASH_REMATCH[4]}
		case $arg in
		'') val=() ;;
		DURATION) val=(1h) ;;
		N) val=(1) ;;
		*) val=("$T/no-such-$arg") ;;
		esac
		nopts=$((nopts + 1))
		if [ "$cmd" = global ]; then
			assert_exit 0 p11e_raw "$opt" "${val[@]}" help
			[ -z "$short" ] || assert_exit 0 p11e_raw "$short" "${val[@]}" help
		else
			assert_exit 0 p11e_raw "$cmd" "$opt" "${val[@]}" --help
		fi
	done <"$help"
	assert_eq " check enroll provision renew run status tokens help" "$seen" "commands in --help"
	assert_eq 1 "$([ "$nopts" -ge 20 ] && echo 1)" "options in --help ($nopts) at least 20"
}

run_tests
