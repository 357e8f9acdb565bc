#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-realcard.sh: one real enrollment on a real card (or any token), opt-in:
#   P11ENROLL_TEST_MODULE    the PKCS#11 module (e.g. /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so)
#   P11ENROLL_TEST_TOKEN     the token's label (pkcs11-tool --module ... -T shows it)
#   P11ENROLL_TEST_PIN       its user PIN (passed to p11enroll in a 0600 file in the test
#                            dir, removed at the end; to pkcs11-tool as --pin env:..., never argv)
#   P11ENROLL_TEST_KEY_TYPE  rsa:2048 (default), rsa:3072, rsa:4096, ec:P-256, ec:P-384;
#                            most cards do ec:P-256
#   P11ENROLL_TEST_KEEP=1    leave the key and certificate on the card
# With none of the first three set the test is reported as skipped, saying what to set;
# with only some of them, it fails.
# RSA keys are enrolled with the real scepserver; EC keys with the project's responder
# double (the Debian scepserver cannot issue certificates for EC keys: t-enroll.sh).
# The key gets a label of its own (p11enroll-test-...); on success the test deletes
# what it enrolled (key pair and certificate, by their CKA_ID) unless
# P11ENROLL_TEST_KEEP=1. A card that refuses deletion keeps them: the log says which.
# The PIN is used by exactly one p11enroll run first; if that run fails, nothing else
# logs in (a wrong PIN costs one try, not several).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

# card_tool ARGS...: pkcs11-tool on the test card, logged in (PIN from the environment).
card_tool() {
	pkcs11-tool --module "$MODULE" --token-label "$TOKEN_LABEL" --login \
		--pin env:P11ENROLL_TEST_PIN "$@"
}

# card_objects: "TYPE|ID|LABEL|ACCESS" lines, as lib.sh's token_objects.
card_objects() {
	card_tool --list-objects 2>/dev/null | parse_objects
}

# remove_enrolled ID: deletes the test's certificate and key pair from the card.
remove_enrolled() {
	local id=$1 type left=
	if [ "${P11ENROLL_TEST_KEEP:-0}" = 1 ]; then
		echo "P11ENROLL_TEST_KEEP=1: key '$KEY_LABEL' and its certificate (id $id) stay on the card" >&2
		return 0
	fi
	for type in cert privkey pubkey; do
		card_objects | grep -q "^$type|$id|" || continue
		card_tool --delete-object --type "$type" --id "$id" >>cleanup.log 2>&1 ||
			left="$left $type"
	done
	if [ -n "$left" ]; then
		echo "note: the card refused to delete$left (id $id, label '$KEY_LABEL'): remove them yourself" >&2
	else
		echo "removed the test's certificate and key pair (id $id) from the card" >&2
	fi
}

enroll_on_card() {
	local key_uri priv_id priv_label priv_access
	if ! pkcs11-tool --module "$MODULE" -T >tokens.txt 2>&1; then
		fail "pkcs11-tool cannot list the tokens of $MODULE: $(tail -n1 tokens.txt)"
		return 1
	fi
	if ! awk -v l="$TOKEN_LABEL" 'match($0, /^[[:space:]]*token label[[:space:]]*:[[:space:]]*/) {
			v = substr($0, RLENGTH + 1); sub(/[[:space:]]+$/, "", v); if (v == l) f = 1 }
		END { exit !f }' tokens.txt; then
		fail "no token labelled '$TOKEN_LABEL' through $MODULE (pkcs11-tool -T: see tokens.txt)"
		return 1
	fi
	case "$KEY_TYPE" in
	ec:*)
		ISSUER_EXPECT="O=p11enroll tests"
		start_responder "$T/resp" normal || return
		;;
	*)
		ISSUER_EXPECT="O=p11enroll test CA main"
		start_scepserver "$T/srv" || return
		CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
		;;
	esac
	write_conf
	assert_exit 0 p11e enroll || return
	key_uri=$(out_value key)
	assert_match "$OUT" '^certificate:[[:space:]]+pkcs11:.*type=cert'

	# On the card: the key under our label, and a certificate with the key's CKA_ID.
	card_objects >objects.txt
	IFS='|' read -r _ priv_id priv_label priv_access < <(grep "^privkey|[^|]*|$KEY_LABEL|" objects.txt)
	if [ -z "$priv_id" ]; then
		fail "no private key labelled '$KEY_LABEL' with a CKA_ID on the card (objects.txt)"
		return 1
	fi
	ENROLLED_ID=$priv_id
	_pass "private key '$KEY_LABEL' id $priv_id ($priv_access)"
	assert_eq 1 "$(grep -c "^cert|$priv_id|" objects.txt)" "certificates on the card with the key's ID $priv_id"
	case "$priv_access" in
	*"never extractable"*) _pass "key access: $priv_access" ;;
	*) fail "private key access is '$priv_access', expected never extractable" ;;
	esac
	case "$key_uri" in
	*id=*)
		assert_eq "$priv_id" "$(printf '%s' "$key_uri" | sed -n 's/.*[;:]id=\([^;?]*\).*/\1/p' |
			tr -d '%' | tr 'A-F' 'a-f')" "id= in the key URI"
		;;
	esac

	# cert_file is the card's certificate, for the card's key, and verifies.
	card_tool --read-object --type cert --id "$priv_id" -o card-cert.der >/dev/null 2>&1
	assert_file card-cert.der || return
	openssl x509 -in "$CERT_FILE" -outform DER -out file-cert.der 2>>openssl.err
	if cmp -s file-cert.der card-cert.der; then
		_pass "cert_file == certificate on the card"
	else
		fail "cert_file differs from the certificate on the card"
	fi
	openssl x509 -inform DER -in card-cert.der -noout -pubkey 2>>openssl.err |
		openssl pkey -pubin -outform DER -out cert-spki.der 2>>openssl.err
	if card_tool --read-object --type pubkey --id "$priv_id" -o card-pub.der >/dev/null 2>&1 &&
		openssl pkey -pubin -inform DER -in card-pub.der -outform DER -out key-spki.der 2>>openssl.err; then
		if cmp -s key-spki.der cert-spki.der && [ -s key-spki.der ]; then
			_pass "certificate public key == the card's public key"
		else
			fail "the certificate's public key differs from the card's public key"
		fi
	else
		echo "note: the card's public key object cannot be read; key comparison left out" >&2
	fi
	verify_capath "$TRUST_DIR" "$CERT_FILE"
	openssl x509 -in "$CERT_FILE" -noout -subject -issuer -nameopt RFC2253 >names.txt
	assert_contains names.txt "CN=host.example.com"
	assert_contains names.txt "$ISSUER_EXPECT"

	# Again: a no-op that says so.
	assert_exit 0 p11e enroll
	assert_contains_i "$ERR" "already"
}

test_real_card_enrollment() {
	local v unset=()
	for v in P11ENROLL_TEST_MODULE P11ENROLL_TEST_TOKEN P11ENROLL_TEST_PIN; do
		[ -n "${!v:-}" ] || unset+=("$v")
	done
	if [ ${#unset[@]} = 3 ]; then
		skip "real-card test: set P11ENROLL_TEST_MODULE, P11ENROLL_TEST_TOKEN and P11ENROLL_TEST_PIN"
	elif [ ${#unset[@]} -gt 0 ]; then
		# Asked for, but incomplete: not a skip.
		fail "real-card test: ${unset[*]} not set (all of P11ENROLL_TEST_MODULE, P11ENROLL_TEST_TOKEN and P11ENROLL_TEST_PIN are needed)"
		return 1
	fi
	MODULE=$P11ENROLL_TEST_MODULE TOKEN_LABEL=$P11ENROLL_TEST_TOKEN
	KEY_TYPE=${P11ENROLL_TEST_KEY_TYPE:-rsa:2048}
	KEY_LABEL=p11enroll-test-$(date +%Y%m%d-%H%M%S)-$$
	PIN_FILE=$T/pin
	# The PIN file goes whatever happens (lib.sh's trap then runs as usual).
	# shellcheck disable=SC2154  # rc_ is assigned in the trap
	trap 'rc_=$?; rm -f -- "$PIN_FILE"; (exit $rc_); _test_exit' EXIT
	(umask 077 && printf '%s\n' "$P11ENROLL_TEST_PIN" >"$PIN_FILE")
	echo "card: token '$TOKEN_LABEL' through $MODULE, key $KEY_TYPE labelled '$KEY_LABEL'" >&2
	ENROLLED_ID=
	enroll_on_card
	[ -z "$ENROLLED_ID" ] || remove_enrolled "$ENROLLED_ID"
	rm -f -- "$PIN_FILE"
}

run_tests
