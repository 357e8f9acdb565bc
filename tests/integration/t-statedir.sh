#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-statedir.sh: state_dir and the trust dir as OpenSSH's StrictModes judges a home
# directory. A directory (or a parent) another user can write or that another user owns
# is refused with 78 naming the path, owner and mode, before the token or the CA is
# touched; a state file planted there (a ca.pin, a symlink to one, a pending transaction)
# is never believed.
. "$(dirname "$0")/lib.sh"

# refused WHAT: the run exited 78 before the token or the CA was touched, naming WHAT.
refused() {
	assert_contains "$ERR" "$1"
	assert_eq 0 "$(count_objects privkey)" "private keys on the token"
	assert_no_file "$CERT_FILE"
	assert_not_contains "$SRV_LOG" "PKIOperation"
}

setup() {
	setup_enroll || return
	SRV_LOG=$T/srv/scepserver.log
}

# An existing state_dir that others can write (0777) is refused, as is a parent that
# others can write without the sticky bit; a root-owned sticky parent (/tmp) is fine.
test_world_writable_state_dir_78() {
	setup || return
	mkdir -p "$STATE_DIR" && chmod 0777 "$STATE_DIR"
	assert_exit 78 p11e enroll
	refused "refusing [agent] state_dir $STATE_DIR: owned by root, mode 0777"
	chmod 0700 "$STATE_DIR"
	mkdir -p "$T/shared" && chmod 0777 "$T/shared"
	STATE_DIR=$T/shared/state TRUST_DIR=$T/trust write_conf
	assert_exit 78 p11e enroll
	refused "refusing parent directory $T/shared: owned by root, mode 0777"
	chmod 1777 "$T/shared"
	assert_exit 0 p11e enroll || return
	check_enrollment
}

test_group_writable_trust_dir_78() {
	setup || return
	mkdir -p "$TRUST_DIR" && chmod 0775 "$TRUST_DIR"
	assert_exit 78 p11e enroll
	refused "refusing [trust] dir $TRUST_DIR"
	assert_exit 78 p11e check
	assert_exit 78 p11e status
	assert_contains "$ERR" "refusing [trust] dir $TRUST_DIR"
}

test_state_dir_of_another_user_78() {
	setup || return
	mkdir -p "$STATE_DIR" && chown 65534:65534 "$STATE_DIR"
	assert_exit 78 p11e enroll
	refused "refusing [agent] state_dir $STATE_DIR: owned by nobody"
}

# A local user plants a pin of their own CA: as a symlink to a file of theirs, or as a
# file they own (in a state_dir that they could write before it was fixed). Neither
# makes their CA count as pinned, and the real CA is not trusted by accident either.
test_planted_pin_refused() {
	make_token || return
	start_scepserver "$T/srv" || return
	SRV_LOG=$T/srv/scepserver.log
	CA_FP=- write_conf
	mkdir -p "$STATE_DIR" && chmod 0700 "$STATE_DIR"
	echo "sha256:$(ca_fingerprint "$SCEP_CA_PEM")" >"$T/elsewhere.pin"
	ln -s "$T/elsewhere.pin" "$STATE_DIR/ca.pin"
	assert_exit 78 p11e enroll
	refused "refusing state file $STATE_DIR/ca.pin: it is a symbolic link"
	rm "$STATE_DIR/ca.pin"
	cp "$T/elsewhere.pin" "$STATE_DIR/ca.pin"
	chown 65534:65534 "$STATE_DIR/ca.pin"
	assert_exit 78 p11e enroll
	refused "refusing state file $STATE_DIR/ca.pin: owned by nobody"
	chown 0:0 "$STATE_DIR/ca.pin" && chmod 0666 "$STATE_DIR/ca.pin"
	assert_exit 78 p11e enroll
	refused "mode 0666"
	chmod 0644 "$STATE_DIR/ca.pin"
	assert_exit 0 p11e enroll || return
	check_enrollment
}

# A pending transaction planted as a symlink is not polled.
test_planted_pending_refused() {
	setup || return
	mkdir -p "$STATE_DIR" && chmod 0700 "$STATE_DIR"
	printf 'txid=%s\nkey_id=00\n' "$(printf 'A%.0s' $(seq 64))" >"$T/elsewhere.txn"
	ln -s "$T/elsewhere.txn" "$STATE_DIR/pending-p11enroll.txn"
	assert_exit 78 p11e enroll
	refused "refusing state file $STATE_DIR/pending-p11enroll.txn: it is a symbolic link"
}

run_tests
