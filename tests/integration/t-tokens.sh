#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119,SC2120  # T is set per test by run_tests; variables feed lib.sh functions; optional arguments
# t-tokens.sh: `p11enroll tokens`: discovery of modules, slots, tokens and the TPM, without
# a configuration file. SoftHSM tokens from softhsm-setup/softhsm-token.sh; a TPM from
# softhsm-setup/tpm-start.sh (swtpm + private D-Bus + tpm2-abrmd + tpm2-pkcs11 store in $T).
. "$(dirname "$0")/lib.sh"

TPM_MODULE=/usr/lib/x86_64-linux-gnu/libtpm2_pkcs11.so.1

# json_get EXPR: evaluates the Python expression EXPR on the last run's stdout parsed as
# JSON (bound to d) and prints the result.
json_get() {
	python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
v = eval(sys.argv[2])
print(v if not isinstance(v, bool) else str(v).lower())' "$OUT" "$1"
}

# no_tpm_env: no TCTI configured, and tpm2-tss's default tabrmd cannot reach a system bus.
no_tpm_env() {
	unset TPM2_PKCS11_TCTI TPM2TOOLS_TCTI TSS2_TCTI DBUS_SESSION_BUS_ADDRESS
	export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$T/no-such-bus
	export TPM2_PKCS11_STORE=$T/tpm2-store
	mkdir -p "$TPM2_PKCS11_STORE"
}

# token_serial LABEL: the serial pkcs11-tool reports for the SoftHSM token LABEL.
token_serial() {
	pkcs11-tool --module "$MODULE" -L 2>/dev/null | awk -v l="$1" '
		/token label/ { sub(/^[^:]*:[[:space:]]*/, ""); sub(/[[:space:]]+$/, ""); lab = $0 }
		/serial num/ { sub(/^[^:]*:[[:space:]]*/, ""); sub(/[[:space:]]+$/, ""); if (lab == l) print }'
}

# start_silent_bus SOCKET: a unix socket that accepts connections and never answers (a
# D-Bus that hangs). Registered for the test's trap.
start_silent_bus() {
	python3 -c 'import os, socket, sys, time
p = sys.argv[1]
s = socket.socket(socket.AF_UNIX)
s.bind(p)
s.listen(16)
held = []
while True:
    held.append(s.accept())' "$1" >/dev/null 2>&1 </dev/null &
	echo $! >"$T/silent.pid"
	register_pidfile "$T/silent.pid"
	local i
	for ((i = 0; i < 50; i++)); do
		[ -S "$1" ] && return 0
		sleep 0.1
	done
	fail "the silent bus did not start"
}

test_softhsm_module_lists_tokens_and_uri_selects() {
	no_tpm_env
	make_token p11e-first || return
	make_token p11e-second || return
	local serial uri
	serial=$(token_serial p11e-first)
	[ -n "$serial" ] || {
		fail "pkcs11-tool shows no serial for p11e-first"
		return
	}
	# No -c, and the default configuration file does not exist: not needed.
	assert_exit 0 p11e_raw tokens --module "$MODULE" || return
	assert_contains "$OUT" "module: $MODULE"
	assert_match "$OUT" '^    token: +p11e-first$'
	assert_match "$OUT" '^    token: +p11e-second$'
	assert_match "$OUT" "^    serial: +$serial\$"
	assert_match "$OUT" '^    flags: +initialised, login required'
	# SoftHSM's free slot: an uninitialised token.
	assert_match "$OUT" '^    token: +not initialised$'
	assert_contains "$OUT" "RSA key generation"
	assert_contains "$OUT" "EC key generation"
	assert_contains "$OUT" "ECDSA"
	assert_match "$OUT" '^    enrollment: +possible; \[key\] type rsa:2048, rsa:3072, rsa:4096, ec:P-256, ec:P-384$'
	assert_match "$OUT" '^      uri = pkcs11:token=p11e-first;manufacturer=SoftHSM%20project;serial=[0-9a-f]+;model=SoftHSM%20v2$'
	assert_match "$OUT" "^      module = $MODULE\$"
	assert_contains "$OUT" "TPM: "
	# The URI selects that token (and not the other one): `status` accepts it.
	uri=$(awk '/token: *p11e-first$/ { f = 1 } f && /^      uri = / { print $3; exit }' "$OUT")
	assert_eq "pkcs11:token=p11e-first;manufacturer=SoftHSM%20project;serial=$serial;model=SoftHSM%20v2" \
		"$uri" "the uri printed for p11e-first"
	SCEP_URL=http://127.0.0.1:9/scep CA_FP=- TOKEN_URI=$uri write_conf
	assert_exit 0 p11e status || return
	assert_match "$OUT" "^token: +'p11e-first' \(.*serial $serial\)"
	# -c naming a file that does not exist does not matter either.
	assert_exit 0 p11e_raw -c "$T/no-such.conf" tokens --module "$MODULE"
}

test_json_matches_human() {
	no_tpm_env
	make_token p11e-json || return
	local serial uri
	serial=$(token_serial p11e-json)
	assert_exit 0 p11e_raw tokens --module "$MODULE" || return
	uri=$(awk '/^      uri = / { print $3; exit }' "$OUT")
	assert_exit 0 p11e_raw tokens --module "$MODULE" --json || return
	if python3 -m json.tool "$OUT" >"$T/pretty.json" 2>"$T/json.err"; then
		_pass "--json output parses (python3 -m json.tool)"
	else
		fail "--json output is not JSON: $(head -n1 "$T/json.err")"
		return
	fi
	assert_eq "--module" "$(json_get 'd["source"]')" "source"
	assert_eq "$MODULE" "$(json_get 'd["modules"][0]["path"]')" "module path"
	assert_eq "None" "$(json_get 'd["modules"][0]["error"]')" "module error"
	assert_eq "p11e-json" \
		"$(json_get '[s["token"]["label"] for s in d["modules"][0]["slots"] if s["token"] and s["token"]["initialized"]][0]')" \
		"label of the initialised token"
	assert_eq "$serial" \
		"$(json_get '[s["token"]["serial"] for s in d["modules"][0]["slots"] if s["token"] and s["token"]["initialized"]][0]')" \
		"serial"
	assert_eq "$uri" \
		"$(json_get '[s["token"]["uri"] for s in d["modules"][0]["slots"] if s["token"] and s["token"]["initialized"]][0]')" \
		"uri (same as the human output)"
	assert_eq 1 "$(json_get 'len([s for s in d["modules"][0]["slots"] if s["token"] and not s["token"]["initialized"]])')" \
		"uninitialised tokens"
	assert_eq "true" "$(json_get 'd["modules"][0]["slots"][0]["token"]["mechanisms"]["rsa_pkcs_key_pair_gen"]["max_key_size"] >= 4096')" \
		"RSA keygen max size reported"
	assert_eq "false" "$(json_get 'd["modules"][0]["tpm_backed"]')" "SoftHSM is not TPM-backed"
	assert_eq "false" "$(json_get 'd["tpm"]["present"]')" "TPM present"
}

test_module_missing_or_not_pkcs11_78() {
	no_tpm_env
	assert_exit 78 p11e_raw tokens --module "$T/no-such-module.so"
	assert_contains "$ERR" "$T/no-such-module.so"
	assert_exit 78 p11e_raw tokens --module "$T/no-such-module.so" --json
	assert_contains "$ERR" "$T/no-such-module.so"
	if python3 -m json.tool "$OUT" >/dev/null 2>&1; then
		_pass "the JSON document is still printed"
	else
		fail "no JSON document on stdout with a missing module"
	fi
	local lib
	lib=$(find /usr/lib /lib -maxdepth 2 -name 'libz.so.1' 2>/dev/null | head -n1)
	[ -n "$lib" ] || lib=$(find /usr/lib /lib -maxdepth 2 -name 'libm.so.6' 2>/dev/null | head -n1)
	assert_exit 78 p11e_raw tokens --module "$lib"
	assert_contains "$ERR" "not a PKCS#11 module"
	# The options reach tokens as the command table's one parser read them: long names
	# abbreviated, values after '='.
	assert_exit 78 p11e_raw tokens --js --mod="$T/no-such-module.so" --time=5s
	assert_eq "--module" "$(json_get 'd["source"]')" "source, options abbreviated"
	assert_eq "$T/no-such-module.so" "$(json_get 'd["modules"][0]["path"]')" \
		"module path, options abbreviated"
}

test_registered_modules_without_module_option() {
	no_tpm_env
	# SoftHSM (if p11-kit registers it) then sees this throw-away token, not the system's.
	make_token p11e-kit || return
	local n i path
	assert_exit 0 p11e_raw tokens || return
	assert_match "$OUT" '^TPM: '
	if ! grep -q '^module: ' "$OUT"; then
		assert_contains "$OUT" "no PKCS#11 module is registered with p11-kit"
	fi
	assert_exit 0 p11e_raw tokens --json || return
	if python3 -m json.tool "$OUT" >/dev/null 2>&1; then
		_pass "--json output parses"
	else
		fail "--json output is not JSON"
	fi
	assert_eq "p11-kit" "$(json_get 'd["source"]')" "source"
	n=$(json_get 'len(d["modules"])')
	echo "  p11-kit registers $n module(s)" >&2
	for ((i = 0; i < n; i++)); do
		path=$(json_get "d[\"modules\"][$i][\"path\"]")
		case "$path" in
		/*) if [ -e "$path" ]; then _pass "registered module $path exists"; else fail "no file $path"; fi ;;
		*) fail "registered module path '$path' is not absolute" ;;
		esac
		assert_eq "true" "$(json_get "bool(d[\"modules\"][$i][\"p11kit_name\"])")" "p11-kit name of $path"
	done
	# Whatever p11-kit registers: a SoftHSM among them shows the token of this test.
	if [ "$(json_get 'any(m["library"] and m["library"]["manufacturer"] == "SoftHSM" for m in d["modules"])')" = true ]; then
		assert_eq "true" \
			"$(json_get 'any(s["token"] and s["token"]["label"] == "p11e-kit" for m in d["modules"] for s in m["slots"])')" \
			"the registered SoftHSM lists token p11e-kit"
	fi
}

test_tpm_swtpm_present_and_token_tpm_backed() {
	make_tpm_token p11e-tpm || return
	local uri
	assert_exit 0 p11e_raw tokens --module "$TPM_MODULE" || return
	assert_match "$OUT" '^TPM: present, through TCTI tabrmd:bus_type=session \(from TPM2_PKCS11_TCTI\)$'
	assert_match "$OUT" '^  manufacturer: IBM$'
	assert_match "$OUT" '^  vendor: +SW   TPM'
	assert_match "$OUT" '^  firmware: +[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$'
	assert_match "$OUT" '^  spec: +TPM 2\.0, level [0-9]+, revision [0-9]+\.[0-9]+'
	assert_match "$OUT" '^  library: .*TPM-backed'
	assert_match "$OUT" '^    token: +p11e-tpm \(TPM-backed\)$'
	# tpm2-pkcs11 always has one more, uninitialised, token.
	assert_match "$OUT" '^    token: +not initialised \(TPM-backed\)$'
	assert_match "$OUT" '^    enrollment: +possible; \[key\] type rsa:2048'
	uri=$(awk '/^      uri = / { print $3; exit }' "$OUT")
	assert_eq "pkcs11:token=p11e-tpm;manufacturer=IBM;serial=0000000000000000;model=SW%20%20%20TPM" \
		"$uri" "uri of the TPM token"
	SCEP_URL=http://127.0.0.1:9/scep CA_FP=- TOKEN_URI=$uri write_conf
	assert_exit 0 p11e status
	assert_match "$OUT" "^token: +'p11e-tpm'"

	assert_exit 0 p11e_raw tokens --module "$TPM_MODULE" --json || return
	assert_eq "true" "$(json_get 'd["tpm"]["present"]')" "tpm.present"
	assert_eq "IBM" "$(json_get 'd["tpm"]["manufacturer"]')" "tpm.manufacturer"
	assert_eq "tabrmd:bus_type=session" "$(json_get 'd["tpm"]["tcti"]')" "tpm.tcti"
	assert_eq "TPM2_PKCS11_TCTI" "$(json_get 'd["tpm"]["tcti_source"]')" "tpm.tcti_source"
	assert_eq "true" "$(json_get 'd["tpm"]["software_tpm"]')" "tpm.software_tpm"
	assert_eq "true" "$(json_get 'd["modules"][0]["tpm_backed"]')" "module tpm_backed"
	assert_eq "true" \
		"$(json_get '[s["token"]["tpm_backed"] for s in d["modules"][0]["slots"] if s["token"] and s["token"]["label"] == "p11e-tpm"][0]')" \
		"token tpm_backed"

	# The modules p11-kit registers, with the TPM up. p11-kit loads every module to list
	# them (OpenSC's connects to D-Bus): that must not break the TPM probe or tpm2-pkcs11.
	assert_exit 0 p11e_raw tokens --timeout 10s --json || return
	assert_eq "true" "$(json_get 'd["tpm"]["present"]')" "tpm.present (p11-kit's modules listed)"
	if [ "$(json_get 'any(m["tpm_backed"] or "tpm2_pkcs11" in m["path"] for m in d["modules"])')" = true ]; then
		assert_eq "None" "$(json_get '[m["error"] for m in d["modules"] if "tpm2_pkcs11" in m["path"]][0]')" \
			"error of the registered tpm2-pkcs11"
		assert_eq "true" \
			"$(json_get 'any(s["token"] and s["token"]["label"] == "p11e-tpm" and s["token"]["tpm_backed"] for m in d["modules"] for s in m["slots"])')" \
			"the registered tpm2-pkcs11 lists p11e-tpm, TPM-backed"
	fi
}

test_tpm_tcti_from_tpm2tools_variable() {
	make_tpm_token p11e-tpm || return
	unset TPM2_PKCS11_TCTI
	make_token || return
	assert_exit 0 p11e_raw tokens --module /usr/lib/softhsm/libsofthsm2.so --json || return
	assert_eq "true" "$(json_get 'd["tpm"]["present"]')" "tpm.present"
	assert_eq "TPM2TOOLS_TCTI" "$(json_get 'd["tpm"]["tcti_source"]')" "tpm.tcti_source"
}

test_no_tpm_says_so_exit_0() {
	no_tpm_env
	make_token || return
	# A configured TCTI that reaches nothing: the same answer on any machine.
	TPM2_PKCS11_TCTI=device:$T/no-tpm assert_exit 0 p11e_raw tokens --module "$MODULE" || return
	assert_match "$OUT" '^TPM: not usable$'
	assert_contains "$OUT" "no TPM reachable through TCTI 'device:$T/no-tpm' (from TPM2_PKCS11_TCTI): $T/no-tpm does not exist"
	# Nothing configured: tpm2-tss's defaults, each named.
	if [ -e /dev/tpmrm0 ] || [ -e /dev/tpm0 ]; then
		echo "  this machine has a TPM device: the default-probe half does not apply" >&2
		return
	fi
	assert_exit 0 p11e_raw tokens --module "$MODULE" || return
	assert_match "$OUT" '^TPM: none found$'
	assert_contains "$OUT" "no TCTI configured (TPM2_PKCS11_TCTI, TPM2TOOLS_TCTI and TSS2_TCTI are unset)"
	assert_contains "$OUT" "/dev/tpmrm0 does not exist"
	assert_contains "$OUT" "/dev/tpm0 does not exist"
	assert_contains "$OUT" "no tpm2-abrmd on the system D-Bus"
	assert_exit 0 p11e_raw tokens --module "$MODULE" --json || return
	assert_eq "false" "$(json_get 'd["tpm"]["present"]')" "tpm.present"
	assert_eq "true" "$(json_get '"/dev/tpmrm0 does not exist" in d["tpm"]["problem"]')" "tpm.problem names /dev/tpmrm0"
	# tpm2-pkcs11 without a TPM: reported, with the reason, and still exit 0 without --module
	# is covered by test_registered_modules_without_module_option; named explicitly: 74.
	assert_exit 74 p11e_raw tokens --module "$TPM_MODULE"
	assert_contains "$ERR" "C_Initialize of PKCS#11 module $TPM_MODULE failed"
	assert_contains "$ERR" "tpm2-pkcs11 needs a TPM, and none was found"
}

test_hanging_tcti_is_time_boxed() {
	no_tpm_env
	make_token || return
	start_silent_bus "$T/silent-bus" || return
	export DBUS_SESSION_BUS_ADDRESS=unix:path=$T/silent-bus TPM2_PKCS11_TCTI=tabrmd:bus_type=session
	# Time-boxed: the report comes (and says the TPM gave no answer within the 2 s), the
	# module's tokens with it; a hang would end in p11e_raw's own limit instead.
	assert_exit 0 p11e_raw tokens --timeout 2s --module "$MODULE" || return
	assert_match "$OUT" '^TPM: not usable$'
	assert_contains "$OUT" "no TPM reachable through TCTI 'tabrmd:bus_type=session' (from TPM2_PKCS11_TCTI): no answer within 2 s"
	assert_match "$OUT" '^    token: +p11e-test$'
	# tpm2-pkcs11 hangs on the same bus: stopped, and exit 74 since it was named.
	assert_exit 74 p11e_raw tokens --timeout 2s --module "$TPM_MODULE"
	assert_contains "$ERR" "did not answer within 2 s"
	# tpm2-tss's defaults with tabrmd hanging on the system bus: each TCTI has its own time
	# box, so the ones after it are still tried and named.
	if [ ! -e /dev/tpmrm0 ] && [ ! -e /dev/tpm0 ]; then
		(
			unset TPM2_PKCS11_TCTI DBUS_SESSION_BUS_ADDRESS
			export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$T/silent-bus
			assert_exit 0 p11e_raw tokens --timeout 2s --module "$MODULE"
			assert_match "$OUT" '^TPM: none found$'
			assert_contains "$OUT" "tabrmd: no answer within 2 s"
			assert_contains "$OUT" "/dev/tpmrm0 does not exist"
		)
	fi
	# The stopped children are gone too (a forked child has its parent's command line).
	assert_eq "" "$(pgrep -f "^$P11ENROLL tokens --timeout 2s" || true)" "leftover p11enroll processes"
}

test_usage_errors_64() {
	assert_exit 64 p11e_raw tokens --no-such-option
	assert_contains "$ERR" "unknown option '--no-such-option' for tokens"
	assert_contains "$ERR" "usage: p11enroll [-v|-q] tokens [--module PATH] [--json]"
	assert_exit 64 p11e_raw tokens extra
	assert_contains "$ERR" "unexpected argument 'extra' for tokens"
	assert_exit 64 p11e_raw tokens --timeout never
	assert_contains "$ERR" "--timeout 'never' is not a duration from 1s to 1h"
	assert_exit 64 p11e_raw tokens --timeout 2h
	assert_contains "$ERR" "--timeout '2h' is not a duration from 1s to 1h"
	assert_exit 64 p11e_raw tokens --module ""
	assert_contains "$ERR" "--module needs a PATH, not an empty string"
	assert_exit 64 p11e_raw tokens --module
	assert_contains "$ERR" "--module needs its argument, PATH"
	assert_exit 0 p11e_raw --help
	assert_contains "$OUT" "tokens"
	assert_contains "$OUT" "--module PATH"
}

run_tests
