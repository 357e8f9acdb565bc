#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-keys.sh: which keys p11enroll certifies, reuses and removes (issue 11). Only a key it
# generated on the token (CKA_LOCAL, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE) and that
# this profile recorded (state_dir/keys-<label>.txt) is certified, reused or removed; any
# other key under the profile's label stops enroll and renew with 74, naming it, and
# nothing on the token changes. Two profiles with one key label on one token are refused
# when loaded together (78). Checked as a user would: pkcs11-tool on the token, the files,
# exit codes and messages.
. "$(dirname "$0")/lib.sh"

# import_key ID [LABEL]: a key pair made by openssl, outside the token, written to it with
# pkcs11-tool under LABEL (default p11enroll) and CKA_ID ID (hex): CKA_LOCAL false, not
# always sensitive, not never extractable, as an imported key is.
import_key() {
	local id=$1 label=${2:-p11enroll}
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "imported-$id.pem" \
		2>/dev/null &&
		openssl pkey -in "imported-$id.pem" -pubout -out "imported-$id.pub" || return
	if ! p11tool --write-object "imported-$id.pem" --type privkey --label "$label" --id "$id" \
		>/dev/null 2>&1 ||
		! p11tool --write-object "imported-$id.pub" --type pubkey --label "$label" --id "$id" \
			>/dev/null 2>&1; then
		fail "pkcs11-tool could not import a key"
		return 1
	fi
	token_objects | grep -q "^privkey|$id|$label|sensitive$" || {
		fail "the imported key is not on the token as expected: $(token_objects | tr '\n' ' ')"
		return 1
	}
}

# delete_key ID: the key pair (and certificates) with CKA_ID ID, removed with pkcs11-tool.
delete_key() {
	local type
	for type in cert privkey pubkey; do
		while token_objects | grep -q "^$type|$1|"; do
			p11tool --delete-object --type "$type" --id "$1" >/dev/null 2>&1 || return
		done
	done
}

# killed_enroll SPEC: `enroll` through the fault module, killed (SIGKILL) at SPEC
# (FAULT_KILL_AT of tests/fault/fault_pkcs11.c).
killed_enroll() {
	export FAULT_KILL_AT=$1 FAULT_LOG=$T/kill.log
	p11e enroll
	unset FAULT_KILL_AT FAULT_LOG
	assert_eq 137 "$RC" "exit status of the killed enroll (SIGKILL)" || return
	assert_match "$T/kill.log" 'KILLED$'
}

# keys_setup: token, scepserver (-allowrenew 0: it otherwise refuses a second certificate
# for a DN, see t-renew.sh), configuration.
keys_setup() {
	make_token || return
	start_scepserver "$T/srv" -allowrenew 0 || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	write_conf
}

# recorded [STATE]: the CKA_IDs the record in STATE (default $STATE_DIR) holds, one a line.
recorded() {
	sed -n 's/^key=//p' "${1:-$STATE_DIR}/keys-p11enroll.txt" 2>/dev/null
}

# key_id: the CKA_ID of the (one) private key labelled p11enroll.
key_id() {
	token_objects | awk -F'|' '$1 == "privkey" && $3 == "p11enroll" { print $2 }'
}

# check_unchanged FILE: the token's objects are exactly those listed in FILE (token_objects).
check_unchanged() {
	token_objects >now.txt
	if cmp -s "$1" now.txt; then
		_pass "the token's objects are as before"
	else
		fail "the token's objects changed: before $(tr '\n' ' ' <"$1"), now $(tr '\n' ' ' <now.txt)"
	fi
}

# ------------------------------------------------------------ keys not from the token

# A key imported under the profile's label (someone had its private part) is not certified:
# 74 naming it and what disqualifies it, before the CA sees a request, token untouched.
test_imported_key_not_certified() {
	setup_enroll || return
	import_key 0102a0 || return
	token_objects >before.txt
	assert_exit 74 p11e enroll || return
	assert_contains "$ERR" "key 'p11enroll' (CKA_ID 0102a0) on token '$TOKEN_LABEL' did not come from the token (CKA_LOCAL is false, CKA_ALWAYS_SENSITIVE is false, CKA_NEVER_EXTRACTABLE is false)"
	assert_contains "$ERR" "nothing on the token was changed"
	check_unchanged before.txt
	assert_eq 0 "$(scep_ops PKIOperation)" "PKIOperations"
	assert_no_file "$CERT_FILE"
	# And it stays so: the next run says the same.
	assert_exit 74 p11e enroll || return
	check_unchanged before.txt
}

# An imported key beside an enrolled pair: renew (and enroll, already enrolled) refuse it
# rather than certify it as "a key left without certificate"; the enrolled pair stays.
test_imported_key_refused_at_renewal() {
	keys_setup || return
	assert_exit 0 p11e enroll || return
	local old_id serial
	old_id=$(key_id)
	serial=$(openssl x509 -in "$CERT_FILE" -noout -serial)
	import_key 0102a1 || return
	token_objects >before.txt
	local ops
	ops=$(scep_ops PKIOperation)
	assert_exit 74 p11e renew --force || return
	assert_contains "$ERR" "key 'p11enroll' (CKA_ID 0102a1) on token '$TOKEN_LABEL' did not come from the token (CKA_LOCAL is false"
	check_unchanged before.txt
	assert_eq "$ops" "$(scep_ops PKIOperation)" "PKIOperations after the refused renewal"
	assert_exit 74 p11e enroll || return
	assert_contains "$ERR" "(CKA_ID 0102a1)"
	check_unchanged before.txt
	assert_eq "$serial" "$(openssl x509 -in "$CERT_FILE" -noout -serial)" "cert_file serial"
	# Gone again, the profile goes on with its own pair.
	delete_key 0102a1 || return
	assert_exit 0 p11e renew --force || return
	assert_eq 1 "$(count_objects privkey)" "private keys after the renewal"
	assert_eq 1 "$([ "$(key_id)" != "$old_id" ] && echo 1)" "a new key after the renewal"
}

# A pending request names its key: another key under that CKA_ID is not polled with,
# whether imported or generated on the token by someone else.
test_pending_names_its_key() {
	ISSUER_EXPECT="O=p11enroll tests"
	make_token || return
	start_responder "$T/resp" pending || return
	write_conf
	assert_exit 75 p11e enroll || return
	local id
	id=$(key_id)
	assert_contains "$STATE_DIR/pending-p11enroll.txn" "key_id=$id"
	delete_key "$id" || return
	import_key "$id" || return
	token_objects >before.txt
	assert_exit 74 p11e enroll || return
	assert_contains "$ERR" "key 'p11enroll' (CKA_ID $id) on token '$TOKEN_LABEL' did not come from the token (CKA_LOCAL is false"
	check_unchanged before.txt
	assert_not_contains "$T/resp/responder.log" "CertPoll"
	delete_key "$id" || return
	p11tool --keypairgen --key-type rsa:2048 --label p11enroll --id "$id" --usage-sign \
		--usage-decrypt >/dev/null 2>&1 || {
		fail "pkcs11-tool --keypairgen failed"
		return 1
	}
	token_objects >before.txt
	assert_exit 74 p11e enroll || return
	assert_contains "$ERR" "key 'p11enroll' (CKA_ID $id) on token '$TOKEN_LABEL' has the CKA_ID of pending transaction"
	assert_contains "$ERR" "but not the public key of its request"
	check_unchanged before.txt
	assert_not_contains "$T/resp/responder.log" "CertPoll"
	assert_file "$STATE_DIR/pending-p11enroll.txn"
}

# ------------------------------------------------------------ two profiles, one label

# two_profiles: a token, scepserver, and profiles A ($T/a.conf, state-a) and B ($T/b.conf,
# state-b) with the same token, module and key label; A enrolled. Sets A_ID, A_SERIAL.
two_profiles() {
	make_token || return
	start_scepserver "$T/srv" -allowrenew 0 || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	STATE_DIR=$T/state-a CERT_FILE=$T/a.pem write_conf "$T/a.conf"
	STATE_DIR=$T/state-b CERT_FILE=$T/b.pem write_conf "$T/b.conf"
	CONF=$T/a.conf assert_exit 0 p11e enroll || return
	A_ID=$(key_id)
	A_SERIAL=$(openssl x509 -in "$T/a.pem" -noout -serial)
	assert_eq "$A_ID" "$(recorded "$T/state-a")" "profile A's record"
	return 0 # the tests go on: what they check does not depend on the record's form
}

# check_a_intact: A's key and certificate are on the token as A enrolled them.
check_a_intact() {
	assert_eq "$A_ID" "$(key_id)" "profile A's key on the token"
	assert_eq 1 "$(count_objects cert)" "certificates on the token"
	CONF=$T/a.conf assert_exit 0 p11e status || return
	assert_contains "$OUT" "state:       enrolled, certificate valid"
	assert_eq "$A_SERIAL" "$(openssl x509 -in "$T/a.pem" -noout -serial)" "profile A's cert_file"
}

# Run by hand (no agent to compare them), B finds A's key on the token: not its own, so
# it refuses (74, naming it and the likely cause) instead of taking A's certificate for
# its own or renewing and then removing A's pair.
test_second_profile_same_label_refused() {
	two_profiles || return
	token_objects >before.txt
	local ops
	ops=$(scep_ops PKIOperation)
	CONF=$T/b.conf assert_exit 74 p11e enroll || return
	assert_contains "$ERR" "key 'p11enroll' (CKA_ID $A_ID) on token '$TOKEN_LABEL' is not one this profile generated (its CKA_ID is not in $T/state-b/keys-p11enroll.txt): likely another profile uses key label 'p11enroll' on this token with another state_dir; give each profile its own [key] label"
	assert_not_contains "$OUT" "certificate:"
	CONF=$T/b.conf assert_exit 74 p11e renew --force || return
	assert_contains "$ERR" "is not one this profile generated"
	check_unchanged before.txt
	assert_eq "$ops" "$(scep_ops PKIOperation)" "PKIOperations by profile B"
	assert_eq "" "$(recorded "$T/state-b")" "profile B's record"
	assert_no_file "$T/b.pem"
	check_a_intact
	# A renews (its old pair goes); B still refuses, now naming A's new key.
	sleep 1.1
	CONF=$T/a.conf assert_exit 0 p11e renew --force || return
	A_ID=$(key_id)
	A_SERIAL=$(openssl x509 -in "$T/a.pem" -noout -serial)
	assert_eq "$A_ID" "$(recorded "$T/state-a")" "profile A's record after its renewal"
	CONF=$T/b.conf assert_exit 74 p11e renew --force || return
	assert_contains "$ERR" "(CKA_ID $A_ID)"
	check_a_intact
}

# The agent, given only B, sees it on the token too: it logs the refusal (and retries
# later) and never touches A's pair.
test_agent_sees_other_profile_on_token() {
	two_profiles || return
	token_objects >before.txt
	"$P11ENROLL" -c "$T/b.conf" run >agent.out 2>agent.log </dev/null &
	echo $! >"$T/agent.pid"
	register_pidfile "$T/agent.pid"
	local i
	for ((i = 0; i < 300; i++)); do
		grep -q 'is not one this profile generated' agent.log && break
		kill -0 "$(cat "$T/agent.pid")" 2>/dev/null || break
		sleep 0.1
	done
	stop_pid "$T/agent.pid"
	sed 's/^/  agent: /' agent.log >&2
	assert_contains agent.log "key 'p11enroll' (CKA_ID $A_ID) on token '$TOKEN_LABEL' is not one this profile generated"
	check_unchanged before.txt
	check_a_intact
}

# Loaded together (the agent with several profiles, status of several), two profiles with
# one key label on one token are refused: 78 naming both files, whatever their state_dirs,
# however their URIs name the token and whichever path reaches the module.
test_agent_refuses_two_profiles_one_label() {
	two_profiles || return
	P11E_CMD_TIMEOUT=20 p11e_raw -c "$T/a.conf" -c "$T/b.conf" run
	assert_eq 78 "$RC" "exit status of run with both profiles"
	assert_contains "$ERR" "$T/a.conf and $T/b.conf: both use key label 'p11enroll' on what may be one token"
	assert_contains "$ERR" "give each profile its own [key] label"
	assert_exit 78 p11e_raw -c "$T/a.conf" -c "$T/b.conf" status || return
	# The same token by serial, the module through a symbolic link.
	local serial
	serial=$(pkcs11-tool --module "$MODULE" -L 2>/dev/null |
		awk -v l="$TOKEN_LABEL" '/token label/ { f = ($NF == l) } f && /serial num/ { print $NF; exit }')
	assert_eq 1 "$([ -n "$serial" ] && echo 1)" "the token's serial ($serial)" || return
	ln -s "$MODULE" "$T/module-link.so"
	STATE_DIR=$T/state-c CERT_FILE=$T/c.pem TOKEN_URI="pkcs11:serial=$serial" \
		MODULE=$T/module-link.so write_conf "$T/c.conf"
	assert_exit 78 p11e_raw -c "$T/a.conf" -c "$T/c.conf" status || return
	assert_contains "$ERR" "$T/a.conf and $T/c.conf: both use key label 'p11enroll'"
	# Another label, or another token: accepted.
	STATE_DIR=$T/state-d CERT_FILE=$T/d.pem KEY_LABEL=other write_conf "$T/d.conf"
	STATE_DIR=$T/state-e CERT_FILE=$T/e.pem TOKEN_URI="pkcs11:token=another" \
		write_conf "$T/e.conf"
	assert_exit 0 p11e_raw -c "$T/a.conf" -c "$T/d.conf" status || return
	p11e_raw -c "$T/a.conf" -c "$T/e.conf" status
	assert_not_contains "$ERR" "both use key label"
	check_a_intact
}

# ------------------------------------------------------------ the record and migration

# The record names the key before the key is used: a kill right after the key pair is made
# leaves a key whose CKA_ID is recorded; the next run reuses it (neither garbage nor adopted
# blindly) and the record ends with exactly its final CKA_ID.
test_key_recorded_before_use() {
	fault_setup || return
	killed_enroll C_GenerateKeyPair+after || return
	local tmp_id
	tmp_id=$(key_id)
	assert_eq 1 "$(count_objects privkey)" "private keys after the kill"
	assert_eq "$tmp_id" "$(recorded)" "the record names the new key's CKA_ID"
	assert_exit 0 p11e -v enroll || return
	assert_contains "$ERR" "reusing key 'p11enroll'"
	check_enrollment
	assert_eq "$(key_id)" "$(recorded)" "the record after the next run"
	assert_eq 1 "$([ "$(key_id)" != "$tmp_id" ] && echo 1)" "the key has its final CKA_ID"
}

# A kill between the two CKA_IDs (the private key has the final one, the public key not
# yet): the next run reuses the pair; no half of it is left behind.
test_kill_between_the_two_ids() {
	fault_setup || return
	killed_enroll C_SetAttributeValue+after || return
	assert_exit 0 p11e -v enroll || return
	assert_contains "$ERR" "reusing key 'p11enroll'"
	check_enrollment
	assert_eq 1 "$(count_objects pubkey)" "public keys"
	assert_eq "$(key_id)" "$(recorded)" "the record"
}

# An earlier version's installation (a key and certificate, state_dir without a record):
# the first run records the pair and keeps the certificate; the next renewal replaces it.
test_migration_keeps_working_certificate() {
	keys_setup || return
	assert_exit 0 p11e enroll || return
	local id serial
	id=$(key_id)
	serial=$(openssl x509 -in "$CERT_FILE" -noout -serial)
	rm -f "$STATE_DIR/keys-p11enroll.txt" # as an earlier version leaves state_dir
	token_objects >before.txt
	assert_exit 0 p11e enroll || return
	assert_contains_i "$ERR" "already"
	assert_contains "$ERR" "recorded key 'p11enroll' (CKA_ID $id) on token '$TOKEN_LABEL' as this profile's"
	assert_eq "$id" "$(recorded)" "the record after the first run"
	check_unchanged before.txt
	assert_eq "$serial" "$(openssl x509 -in "$CERT_FILE" -noout -serial)" "cert_file serial"
	# Then it renews as before, and the record follows.
	sleep 1.1
	assert_exit 0 p11e renew --force || return
	check_enrollment
	assert_eq "$(key_id)" "$(recorded)" "the record after the renewal"
}

# The same with an imported key under the label: nothing is recorded, the run stops (74,
# naming it), the working pair stays; once it is removed, the migration goes through.
test_migration_refuses_foreign_key() {
	keys_setup || return
	assert_exit 0 p11e enroll || return
	local id
	id=$(key_id)
	rm -f "$STATE_DIR/keys-p11enroll.txt"
	import_key 0102a2 || return
	token_objects >before.txt
	assert_exit 74 p11e renew --force || return
	assert_contains "$ERR" "key 'p11enroll' (CKA_ID 0102a2) on token '$TOKEN_LABEL' did not come from the token"
	assert_no_file "$STATE_DIR/keys-p11enroll.txt"
	check_unchanged before.txt
	delete_key 0102a2 || return
	assert_exit 0 p11e enroll || return
	assert_eq "$id" "$(recorded)" "the record"
}

# A profile whose state_dir was lost has no history: its own key is refused like another
# profile's (a new profile must not take over keys it did not make). The message says how
# to record it; once recorded, the profile goes on.
test_lost_state_dir_record_by_hand() {
	setup_enroll || return
	assert_exit 0 p11e enroll || return
	local id
	id=$(key_id)
	rm -rf "$STATE_DIR" "$CERT_FILE"
	assert_exit 74 p11e enroll || return
	assert_contains "$ERR" "(CKA_ID $id) on token '$TOKEN_LABEL' is not one this profile generated"
	assert_contains "$ERR" "add the line 'key=$id' to $STATE_DIR/keys-p11enroll.txt"
	echo "key=$id" >>"$STATE_DIR/keys-p11enroll.txt"
	assert_exit 0 p11e enroll || return
	assert_contains_i "$ERR" "already"
	assert_file "$CERT_FILE"
}

# SoftHSM's own RSA generator here, not the tests' pool of keys (lib.sh, run_tests).
P11E_REAL_KEYGEN=1
run_tests
