#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-smartcard.sh: smartcards through OpenSC, as far as Debian can emulate them: a private
# pcscd with vsmartcard's virtual reader (vpcd) and card (vicc), tests/smartcard/.
# No virtual card in Debian 12 can generate keys through OpenSC, so these are the
# error paths a smartcard user meets first, each with its exit code and a message that
# says what is wrong:
#   reader without a card   74 "no token matches pkcs11:... (... reader 'X' is empty ...)"
#   card OpenSC does not know  74, with OpenSC's reason (CKR_TOKEN_NOT_RECOGNIZED)
#   module not there        78, naming the path
# The token is opened before any network use: the SCEP URL is a dead port (a run that
# got as far as the network would exit 69, not 74).
# A real card: t-realcard.sh.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/smartcard/smartcard.sh
. "$SRCDIR/tests/smartcard/smartcard.sh"

MODULE=$SC_OPENSC_MODULE

# setup_card_conf: configuration for the OpenSC module and token "p11e-card" (which no
# reader holds), a dummy PIN file, a dead SCEP URL.
setup_card_conf() {
	TOKEN_LABEL=p11e-card
	PIN_FILE=$T/pin
	(umask 077 && echo 123456 >"$PIN_FILE")
	SCEP_URL=http://127.0.0.1:$(free_port)/scep SCEP_CHALLENGE=x CA_FP=- SCEP_TIMEOUT=5
	write_conf
}

# start_pcsc: the private pcscd with two empty vpcd readers (tests/smartcard/smartcard.sh).
start_pcsc() {
	local missing
	missing=$(sc_missing)
	if [ -n "$missing" ]; then
		fail "missing for the smartcard tests: $(echo "$missing" | paste -sd, -) (tests/install-deps.sh test)"
		return 1
	fi
	sc_start_pcscd "$T/pcsc"
}

# pcscd_clients: how many PC/SC contexts our pcscd has served (its log).
pcscd_clients() {
	grep -c 'ESTABLISH_CONTEXT for client' "$SC_DIR/pcscd.log"
}

# check_no_token_74 CMD: `p11enroll CMD` exits 74, naming the URI, having asked our
# pcscd, with nothing written.
check_no_token_74() {
	local before
	before=$(pcscd_clients)
	assert_exit 74 p11e "$1"
	assert_contains "$ERR" "no token matches pkcs11:token=p11e-card"
	assert_eq 1 "$([ "$(pcscd_clients)" -gt "$before" ] && echo 1)" \
		"the private pcscd served p11enroll (PCSCLITE_CSOCK_NAME)"
	assert_no_file "$CERT_FILE"
	assert_no_file "$TRUST_DIR"
}

test_empty_reader_enroll_74() {
	setup_card_conf || return
	start_pcsc || return
	pkcs11-tool --module "$MODULE" -L >slots.txt 2>&1
	assert_contains slots.txt "$SC_READER0"
	assert_contains slots.txt "(empty)"
	check_no_token_74 enroll
	assert_contains "$ERR" "reader '$SC_READER0' is empty"
	assert_contains "$ERR" "reader '$SC_READER1' is empty"
}

test_empty_reader_status_74() {
	setup_card_conf || return
	start_pcsc || return
	check_no_token_74 status
	assert_contains "$ERR" "reader '$SC_READER0' is empty"
}

test_unrecognised_card_74_says_why() {
	setup_card_conf || return
	start_pcsc || return
	sc_insert_card 0 || return
	pkcs11-tool --module "$MODULE" -L >slots.txt 2>&1
	assert_contains slots.txt "token not recognized"
	check_no_token_74 enroll
	# OpenSC's word for it, and where: the reader that holds the card.
	assert_contains "$ERR" "CKR_TOKEN_NOT_RECOGNIZED"
	assert_contains "$ERR" "'$SC_READER0'"
	assert_not_contains "$ERR" "reader '$SC_READER0' is empty"
	assert_contains "$ERR" "reader '$SC_READER1' is empty"
	check_no_token_74 status
	assert_contains "$ERR" "CKR_TOKEN_NOT_RECOGNIZED"
	# The card taken out: the reader is empty again.
	sc_remove_card 0 || return
	check_no_token_74 enroll
	assert_contains "$ERR" "reader '$SC_READER0' is empty"
}

test_module_missing_78() {
	setup_card_conf || return
	MODULE=/nonexistent/opensc-pkcs11.so write_conf
	assert_exit 78 p11e enroll
	assert_contains "$ERR" "/nonexistent/opensc-pkcs11.so"
	assert_exit 78 p11e status
	assert_contains "$ERR" "/nonexistent/opensc-pkcs11.so"
	assert_no_file "$TRUST_DIR"
}

run_tests
