#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-faults.sh: a token that misbehaves. p11enroll loads tests/fault/fault_pkcs11.c
# ($P11E_FAULT_MODULE, built by make), a PKCS#11 module of our own in front of SoftHSM that
# reports PIN counter flags, logs every call and pulls the token out at a chosen call (its
# FAULT_* variables are documented at the top of fault_pkcs11.c). What is left on the token
# is read through SoftHSM directly: lib.sh's MODULE stays SoftHSM, only p11enroll's
# configuration names the fault module.
. "$(dirname "$0")/lib.sh"

MODULE=/usr/lib/softhsm/libsofthsm2.so
FAULT_MODULE=${P11E_FAULT_MODULE:-}

# fault_setup [scepserver flags...]: token, scepserver and a configuration whose module is
# the fault module. A missing fault module is a failure: `make integration` builds it.
fault_setup() {
	if [ -z "$FAULT_MODULE" ] || [ ! -f "$FAULT_MODULE" ]; then
		fail "P11E_FAULT_MODULE is unset or not a file ('$FAULT_MODULE'); run the tests with make integration"
		return 1
	fi
	make_token || return
	start_scepserver "$T/srv" "$@" || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	MODULE=$FAULT_MODULE write_conf
}

# calls LOG NAME: how many calls of NAME the fault module logged in LOG.
calls() {
	awk -v n="$2" '$1 == n { c++ } END { print c + 0 }' "$1" 2>/dev/null
}

# assert_no_crash: the last run ended by itself (no signal) and no sanitizer spoke.
assert_no_crash() {
	assert_eq 1 "$([ "$RC" -lt 128 ] && echo 1)" "exit status $RC below 128 (no crash)"
	assert_not_contains "$ERR" "Sanitizer"
	assert_not_contains "$ERR" "runtime error:"
}

# assert_stderr_i ERE: a line of the last run's stderr matches ERE, ignoring case.
assert_stderr_i() {
	ASSERTS=$((ASSERTS + 1))
	if grep -qiE -- "$1" "$ERR"; then
		_pass "stderr matches /$1/i"
	else
		fail "stderr has no line matching /$1/i$(_last_err)"
	fi
}

# The double first, through pkcs11-tool rather than p11enroll: it passes SoftHSM through,
# logs calls, reports the PIN flags, pulls the token out, and refuses a mistyped setting.
test_fault_module_checks_itself() {
	fault_setup || return
	local tool=(pkcs11-tool --module "$FAULT_MODULE")
	FAULT_LOG=$T/tool.log "${tool[@]}" -L >list.txt 2>&1
	assert_contains list.txt "token label        : $TOKEN_LABEL"
	assert_eq 1 "$(calls "$T/tool.log" C_Initialize)" "C_Initialize calls logged"
	assert_eq 0 "$(grep -cvE '^C_[A-Za-z]+ [A-Z0-9_x]+( injected)?$' "$T/tool.log")" "malformed log lines"
	FAULT_PIN_FLAGS=count_low,final_try,locked "${tool[@]}" -T >flags.txt 2>&1
	assert_contains flags.txt "user PIN count low"
	assert_contains flags.txt "final user PIN try"
	assert_contains flags.txt "user PIN locked"
	FAULT_REMOVE_AT=C_GetSlotInfo "${tool[@]}" -L >removed.txt 2>&1
	assert_contains removed.txt "CKR_DEVICE_REMOVED"
	assert_contains removed.txt "(empty)"
	assert_not_contains removed.txt "token label"
	FAULT_RV_AT=C_Login:CKR_PIN_LOCKED "${tool[@]}" --login --pin "$PIN" -O >rv.txt 2>&1
	assert_contains rv.txt "CKR_PIN_LOCKED"
	FAULT_REMOVE_AT=C_Nonesuch "${tool[@]}" -L >bad.txt 2>&1
	assert_contains bad.txt "FAULT_REMOVE_AT=C_Nonesuch: unknown PKCS#11 function"
}

# ---------------------------------------------------------------- PIN counters

test_final_try_74_no_login_then_allowed() {
	fault_setup || return
	FAULT_PIN_FLAGS=final_try FAULT_LOG=$T/refused.log assert_exit 74 p11e enroll
	assert_file "$T/refused.log" || return
	assert_eq 0 "$(calls "$T/refused.log" C_Login)" "C_Login calls at the final try"
	assert_stderr_i "one PIN attempt (is )?left"
	assert_contains "$ERR" "--allow-final-pin-try"
	assert_contains "$ERR" "'$TOKEN_LABEL'"
	assert_eq 0 "$(count_objects privkey)" "private keys on the token"
	assert_no_file "$CERT_FILE"
	FAULT_PIN_FLAGS=final_try FAULT_LOG=$T/allowed.log assert_exit 0 p11e enroll --allow-final-pin-try || return
	assert_eq 1 "$(calls "$T/allowed.log" C_Login)" "C_Login calls with --allow-final-pin-try"
	check_enrollment
}

test_locked_74_no_login_even_when_allowed() {
	fault_setup || return
	FAULT_PIN_FLAGS=locked FAULT_LOG=$T/locked.log assert_exit 74 p11e enroll
	assert_eq 0 "$(calls "$T/locked.log" C_Login)" "C_Login calls with a locked PIN"
	assert_stderr_i "locked"
	assert_stderr_i "security officer"
	FAULT_PIN_FLAGS=locked,final_try FAULT_LOG=$T/allowed.log \
		assert_exit 74 p11e enroll --allow-final-pin-try
	assert_eq 0 "$(calls "$T/allowed.log" C_Login)" "C_Login calls with a locked PIN and --allow-final-pin-try"
	assert_stderr_i "locked"
	assert_eq 0 "$(count_objects privkey)" "private keys on the token"
	assert_no_file "$CERT_FILE"
}

test_count_low_warns_and_enrolls() {
	fault_setup || return
	FAULT_PIN_FLAGS=count_low FAULT_LOG=$T/low.log assert_exit 0 p11e enroll || return
	assert_eq 1 "$(calls "$T/low.log" C_Login)" "C_Login calls"
	assert_stderr_i "warning: .*PIN"
	check_enrollment
}

test_wrong_pin_74_one_login() {
	fault_setup || return
	local wrong
	wrong=wrong-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
	(umask 077 && echo "$wrong" >"$T/wrong-pin")
	PIN_FILE=$T/wrong-pin MODULE=$FAULT_MODULE write_conf "$T/wrong.conf"
	CONF=$T/wrong.conf FAULT_LOG=$T/wrong.log assert_exit 74 p11e enroll
	assert_eq 1 "$(calls "$T/wrong.log" C_Login)" "C_Login calls with a wrong PIN"
	assert_stderr_i "wrong PIN"
	assert_not_contains "$ERR" "$wrong"
	assert_not_contains "$OUT" "$wrong"
	assert_not_contains "$T/wrong.log" "$wrong"
	# A token that counts failures: the message says how close the PIN is to locking.
	CONF=$T/wrong.conf FAULT_PIN_FLAGS=count_low FAULT_LOG=$T/low.log assert_exit 74 p11e enroll
	assert_eq 1 "$(calls "$T/low.log" C_Login)" "C_Login calls with a wrong PIN and few attempts left"
	assert_stderr_i "few attempts"
	assert_not_contains "$ERR" "$wrong"
	assert_eq 0 "$(count_objects privkey)" "private keys on the token"
	assert_no_file "$CERT_FILE"
}

# ---------------------------------------------------------------- the token pulled out

# removed_at SPEC OP: the token disappears at the call SPEC (FAULT_REMOVE_AT) of an
# enrollment. p11enroll exits 74 saying which token, which operation (ERE OP) and that the
# token is gone, without crashing and without a certificate file; then, the token back, the
# same command completes with exactly one key and one certificate.
# The CA may already have issued a certificate for the interrupted request (removal at
# C_Decrypt and later), and the next run asks again with the same key: scepserver's
# default (-allowrenew 14) refuses a second certificate for a subject, so this server
# re-issues, as a CA must for a client that never received its certificate.
removed_at() {
	local spec=$1 op=$2
	fault_setup -allowrenew 0 || return
	FAULT_REMOVE_AT=$spec FAULT_LOG=$T/removed.log p11e enroll
	assert_no_crash
	assert_eq 1 "$(grep -c ' CKR_DEVICE_REMOVED injected$' "$T/removed.log")" \
		"the token was pulled out at $spec" || return
	assert_eq 74 "$RC" "exit status when the token is pulled out at $spec"
	assert_stderr_i "error: .*($op)"
	assert_stderr_i "token '$TOKEN_LABEL'.*(removed|not present)"
	assert_no_file "$CERT_FILE"
	# It cannot take back what it made on a token that is gone: it must not say it did.
	if [ "$(count_objects privkey)" -gt 0 ]; then
		assert_not_contains "$ERR" "the token is as it was"
	fi
	assert_exit 0 p11e enroll || return
	check_enrollment
	assert_eq 1 "$(count_objects cert)" "certificates on the token after the second run"
}

test_removed_at_first_search() { removed_at C_FindObjectsInit 'search'; }
test_removed_at_login() { removed_at C_Login 'C_Login|log ?in'; }
test_removed_at_keygen() { removed_at C_GenerateKeyPair 'C_GenerateKeyPair|generat'; }
# The key is left with its temporary CKA_ID: the run that reuses it gives it the real one
# (SHA-1 of the subjectPublicKey, the RFC 5280 key identifier).
test_removed_at_set_key_id() {
	local want
	removed_at C_SetAttributeValue 'C_SetAttributeValue|CKA_ID' || return
	want=$(/usr/bin/python3 -c 'import sys
from cryptography import x509
c = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
print(x509.SubjectKeyIdentifier.from_public_key(c.public_key()).digest.hex())' "$CERT_FILE")
	assert_eq "$want" "$(token_objects | grep '^privkey|' | cut -d'|' -f2)" \
		"CKA_ID of the reused key (SHA-1 of its public key)"
}
test_removed_at_csr_sign_init() { removed_at C_SignInit 'sign'; }
test_removed_at_csr_sign() { removed_at C_Sign 'sign'; }
test_removed_at_certrep_decrypt() { removed_at C_Decrypt 'decrypt'; }
test_removed_at_cert_store() { removed_at C_CreateObject 'C_CreateObject|stor'; }
# SoftHSM's way (the fault module answering C_GetInfo as SoftHSM does): the session
# object is made, the token is gone at its copy.
test_removed_at_cert_copy() { FAULT_LIB_MANUFACTURER='' removed_at C_CopyObject 'C_CopyObject|stor'; }
test_removed_at_cert_read_back() { removed_at C_GetAttributeValue@C_CreateObject 'read'; }
test_removed_at_cert_search() { removed_at C_FindObjectsInit@C_CreateObject 'search|read'; }

# The codes a token gone away returns all read as that, at login and at key generation
# (where a failure could otherwise be blamed on the key type).
test_gone_codes_read_as_removed() {
	fault_setup || return
	local rv
	for rv in CKR_DEVICE_REMOVED CKR_TOKEN_NOT_PRESENT CKR_SESSION_HANDLE_INVALID CKR_DEVICE_ERROR; do
		FAULT_RV_AT=C_Login:$rv assert_exit 74 p11e enroll
		assert_no_crash
		assert_stderr_i "C_Login on token '$TOKEN_LABEL' failed: $rv \(the token was removed or stopped responding\)"
	done
	FAULT_RV_AT=C_GenerateKeyPair:CKR_DEVICE_ERROR FAULT_REMOVED_RV=CKR_DEVICE_ERROR \
		FAULT_REMOVE_AT=C_GetMechanismInfo assert_exit 74 p11e enroll
	assert_no_crash
	assert_stderr_i "C_GenerateKeyPair .* on token '$TOKEN_LABEL' failed: CKR_DEVICE_ERROR \(the token was removed or stopped responding\)"
	assert_not_contains "$ERR" "check [key] type"
	assert_eq 0 "$(count_objects privkey)" "private keys on the token"
	assert_exit 0 p11e enroll || return
	check_enrollment
}

run_tests
