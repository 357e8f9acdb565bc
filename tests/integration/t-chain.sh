#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-chain.sh: which certificates of GetCACert p11enroll trusts, against the project's
# responder double (tests/doubles/scep_responder.py): a stranger's "RA" certificate beside
# the genuine CA never receives the challenge and cannot sign a reply; a two-tier PKI
# without the root (NDES on AD CS) needs [trust] root_file, or fetch_aia; `check` shows
# the chain with its roles; stale trust files of ours go. step-ca's two-tier cases are in
# t-stepca.sh.
. "$(dirname "$0")/lib.sh"

ISSUER_EXPECT="O=p11enroll tests"

# trust_conf KEY VALUE: adds "KEY = VALUE" to the [trust] section of $CONF.
trust_conf() {
	sed -i "/^\[trust\]\$/a $1 = $2" "$CONF"
}

# fp PEM: "sha256:AB:CD:..." of a certificate file.
fp() {
	echo "sha256:$(ca_fingerprint "$1")"
}

# subjects DIR: the subjects of the certificate files in a trust dir, one per line.
subjects() {
	local f
	for f in "$1"/*.crt; do
		openssl x509 -in "$f" -noout -subject -nameopt RFC2253
	done
}

# nothing_left: the failed run left no key, certificate, cert_file or pending request.
nothing_left() {
	assert_eq 0 "$(count_objects privkey)" "private keys left on the token"
	assert_eq 0 "$(count_objects cert)" "certificates left on the token"
	assert_no_file "$CERT_FILE"
	assert_no_file "$STATE_DIR/pending-p11enroll.txn"
}

# ---------------------------------------------------------------- strangers

# GetCACert: the genuine CA (pinned) plus a stranger's self-signed "RA" certificate with
# keyEncipherment+digitalSignature. The request must go to the CA (the stranger cannot
# decrypt it, so never sees the challenge), its PENDING reply is refused (76), and nothing
# is stored, not even the stranger's certificate in the trust dir.
test_stranger_beside_single_ca() {
	make_token || return
	start_responder "$T/resp" stranger --single-ca || return
	write_conf
	assert_exit 76 p11e -v enroll
	assert_contains "$T/resp/responder.log" "stranger could not decrypt the request (encrypted to"
	assert_not_contains "$T/resp/responder.log" "stranger decrypted the request"
	assert_contains "$ERR" "neither the issuing CA nor its RA signing certificate"
	assert_contains "$ERR" "ignoring O=p11enroll tests,CN=scep_responder RA (stranger)"
	nothing_left
	subjects "$TRUST_DIR" >subjects.txt
	assert_not_contains subjects.txt "stranger"
}

# The same stranger beside an NDES-shaped CA with its RA pair: the request goes to the RA
# encryption certificate, the stranger's reply is refused.
test_stranger_beside_ndes_ra_pair() {
	make_token || return
	start_responder "$T/resp" stranger || return
	write_conf
	assert_exit 76 p11e enroll
	assert_contains "$T/resp/responder.log" \
		"stranger could not decrypt the request (encrypted to CN=scep_responder RA encryption"
	assert_not_contains "$T/resp/responder.log" "stranger decrypted the request"
	nothing_left
	subjects "$TRUST_DIR" >subjects.txt
	assert_not_contains subjects.txt "stranger"
	assert_contains subjects.txt "RA encryption"
}

# A stranger's certificate that an older p11enroll wrote as ra.crt (and ca-1.crt, its
# name for extra certificates) is removed, with its hash link, by the next run.
test_stale_trust_files_removed() {
	make_token || return
	start_responder "$T/resp" normal --single-ca || return
	write_conf
	mkdir -p "$TRUST_DIR"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout stranger.key -subj "/CN=old stranger RA" \
		-days 2 -out "$TRUST_DIR/ra.crt" 2>/dev/null || return
	cp "$TRUST_DIR/ra.crt" "$TRUST_DIR/ca-1.crt"
	ln -s ra.crt "$TRUST_DIR/$(openssl x509 -in "$TRUST_DIR/ra.crt" -noout -subject_hash).0"
	echo "someone else's" >"$TRUST_DIR/mine.crt"
	assert_exit 0 p11e enroll || return
	check_enrollment
	assert_no_file "$TRUST_DIR/ra.crt"
	assert_no_file "$TRUST_DIR/ca-1.crt"
	assert_file "$TRUST_DIR/mine.crt"
	subjects "$TRUST_DIR" >subjects.txt 2>/dev/null
	assert_not_contains subjects.txt "old stranger"
	find "$TRUST_DIR" -xtype l >dangling.txt
	assert_eq 0 "$(wc -l <dangling.txt)" "dangling links in the trust dir"
	assert_contains "$ERR" "removed $TRUST_DIR/ra.crt"
}

# ---------------------------------------------------------------- two tiers

# NDES on a two-tier AD CS: GetCACert has the RA pair and the issuing CA, never the root.
# Without a root p11enroll stops (78) before the token, naming root_file; with it, the
# trust dir holds the whole chain and verifies, also with older OpenSSL builds.
test_two_tier_without_root_needs_root_file() {
	make_token || return
	start_responder "$T/resp" normal --two-tier || return
	CA_FP=$(fp "$T/resp/pki/root.pem") write_conf
	assert_exit 78 p11e enroll
	assert_contains "$ERR" "root_file"
	assert_contains "$ERR" "CN=Responder Root CA"
	nothing_left
	assert_exit 78 p11e check
	assert_contains "$OUT" "the chain does NOT reach a root"
	assert_contains "$OUT" "root:          MISSING"
	trust_conf root_file "$T/resp/pki/root.pem"
	assert_exit 0 p11e enroll || return
	check_enrollment
	assert_file "$TRUST_DIR/root.crt"
	assert_file "$TRUST_DIR/ra-enc.crt"
	assert_file "$TRUST_DIR/ra-sign.crt"
	if cmp -s "$TRUST_DIR/root.crt" "$T/resp/pki/root.pem"; then
		_pass "root.crt is the configured root"
	else
		fail "root.crt is not the configured root"
	fi
	# ca_fingerprint may name the issuing CA instead of the root.
	CA_FP=$(fp "$T/resp/pki/issuing.pem") write_conf
	trust_conf root_file "$T/resp/pki/root.pem"
	assert_exit 0 p11e check
	assert_contains "$OUT" "trust:         the chain holds the certificate [scep] ca_fingerprint names"
}

# root_file alone anchors the chain (no ca_fingerprint, no pin: nothing is pinned); a
# root_file that holds another root is refused.
test_root_file_is_the_anchor() {
	make_token || return
	start_responder "$T/resp" normal --two-tier --include-root || return
	CA_FP=- write_conf
	openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -subj "/CN=Other Root" \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign,cRLSign \
		-days 2 -out other-root.pem 2>/dev/null || return
	trust_conf root_file "$T/other-root.pem"
	assert_exit 76 p11e enroll
	assert_contains "$ERR" "which is not in [trust] root_file"
	nothing_left
	CA_FP=- write_conf
	cat other-root.pem "$T/resp/pki/root.pem" >roots.pem
	trust_conf root_file "$T/roots.pem"
	assert_exit 0 p11e enroll || return
	check_enrollment
	assert_no_file "$STATE_DIR/ca.pin"
	assert_not_contains "$ERR" "trusting the CA met on first contact"
}

# fetch_aia = yes: the root comes from the issuing CA's caIssuers URL; a URL that serves
# garbage, or a root that did not sign the issuing CA, leaves the chain incomplete (78).
test_root_from_aia() {
	make_token || return
	start_responder "$T/resp" normal --two-tier || return
	CA_FP=$(fp "$T/resp/pki/root.pem") write_conf
	trust_conf fetch_aia yes
	assert_exit 0 p11e enroll || return
	assert_contains "$ERR" "completed the CA chain with the issuer from the AIA URL"
	assert_contains "$T/resp/responder.log" "GET /aia/root.der -> 200 root certificate"
	check_enrollment
	if cmp -s "$TRUST_DIR/root.crt" "$T/resp/pki/root.pem"; then
		_pass "root.crt came from the AIA URL"
	else
		fail "root.crt is not the responder's root"
	fi
}

test_aia_broken_or_wrong_root() {
	local how
	for how in --aia-broken --aia-wrong; do
		rm -rf "$T/hsm" "$STATE_DIR" "$TRUST_DIR" "$T/resp"
		make_token || return
		start_responder "$T/resp" normal --two-tier "$how" || return
		CA_FP=- write_conf
		trust_conf fetch_aia yes
		assert_exit 78 p11e enroll
		assert_contains "$ERR" "root_file"
		nothing_left
		assert_no_file "$STATE_DIR/ca.pin"
		stop_pid "$T/resp/responder.pid"
	done
}

# ---------------------------------------------------------------- check

# check shows every certificate with its role, fingerprints and which one receives the
# requests, as text and as JSON; the stranger is named as ignored.
test_check_shows_the_chain() {
	make_token || return
	start_responder "$T/resp" stranger --two-tier --include-root || return
	CA_FP=$(fp "$T/resp/pki/root.pem") write_conf
	assert_exit 0 p11e check || return
	assert_match "$OUT" '^root: +O=p11enroll tests,CN=Responder Root CA$'
	assert_match "$OUT" '^issuing CA: +O=p11enroll tests,CN=Responder Issuing CA$'
	assert_match "$OUT" '^RA encrypt: +O=p11enroll tests,CN=Responder RA encryption$'
	assert_match "$OUT" '^RA sign: +O=p11enroll tests,CN=Responder RA signing$'
	assert_match "$OUT" '^ignored: +O=p11enroll tests,CN=scep_responder RA \(stranger\)$'
	assert_contains "$OUT" "receives the requests (encrypted to it)"
	assert_contains "$OUT" "$(ca_fingerprint "$T/resp/pki/issuing.pem")"
	assert_exit 0 p11e check --json || return
	/usr/bin/python3 - "$OUT" "$(ca_fingerprint "$T/resp/pki/root.pem")" >json.txt 2>&1 <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
roles = [c["role"] for c in d["certificates"]]
assert roles == ["root", "issuing CA", "RA encrypt", "RA sign", "ignored"], roles
enc = [c for c in d["certificates"] if c["receives_requests"]]
assert [c["role"] for c in enc] == ["RA encrypt"], enc
assert d["certificates"][0]["sha256"] == sys.argv[2], d["certificates"][0]
assert d["chain_complete"] is True
assert d["trust"] == {"ok": True, "how": "fingerprint", "error": None}, d["trust"]
assert d["requests"]["method"] == "POST"
print("json ok")
EOF
	assert_contains json.txt "json ok"
}

run_tests
