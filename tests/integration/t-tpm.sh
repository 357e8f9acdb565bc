#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119,SC2120  # T is set per test by run_tests; variables feed lib.sh functions; optional arguments
# t-tpm.sh: enrollment with a TPM 2.0 token through tpm2-pkcs11, on a software TPM
# (softhsm-setup/tpm-start.sh: swtpm + a private D-Bus bus + tpm2-abrmd + a tpm2-pkcs11
# store, all in $T/tpm and stopped by PID by the test's trap; the TPM's state and the
# store are a copy of one made once per run: lib.sh's make_tpm_token).
. "$(dirname "$0")/lib.sh"

TPM_MODULE=/usr/lib/x86_64-linux-gnu/libtpm2_pkcs11.so.1

# tpm2-pkcs11 1.9.0 leaks 66 bytes at each C_SignInit with an EC key: in
# ssl_util_attrs_to_evp (get_EC_evp_pubkey, src/lib/ssl_util.c, OpenSSL 3 branch) the
# d2i'd CKA_EC_POINT is released with OPENSSL_free instead of ASN1_OCTET_STRING_free,
# so its data stays allocated. Under ASan that fails every EC run, although the leak is
# the module's. Since p11enroll unloads the module before LeakSanitizer looks, the frames
# cannot be named and a suppression would not match: for an ASan build of p11enroll,
# P11ENROLL becomes a wrapper that preloads the module (the ASan runtime first, as ASan
# requires), so the module stays mapped and exactly that function can be suppressed.
# Leak checking of p11enroll's own code stays on. Only EC tests use it (the slow
# unwinder it needs makes each run 5-8 times slower).
wrap_p11enroll_for_lsan() {
	local asan
	asan=$(ldd "$P11ENROLL" 2>/dev/null | awk '$1 ~ /^libasan\.so/ { print $3; exit }')
	[ -n "$asan" ] || return 0
	printf 'leak:ssl_util_attrs_to_evp\n' >"$T/lsan-tpm2-pkcs11.supp"
	{
		echo '#!/bin/bash'
		printf 'preload=%q supp=%q exe=%q\n' "$asan:$TPM_MODULE" "$T/lsan-tpm2-pkcs11.supp" "$P11ENROLL"
		# libcrypto has no frame pointers: only the slow unwinder reaches the module.
		cat <<'EOF'
export LD_PRELOAD=$preload${LD_PRELOAD:+:$LD_PRELOAD}
export LSAN_OPTIONS=${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$supp:print_suppressions=0
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0
exec "$exe" "$@"
EOF
	} >"$T/p11enroll-lsan"
	chmod 0755 "$T/p11enroll-lsan"
	P11ENROLL=$T/p11enroll-lsan
	echo "  ASan build: running p11enroll through $P11ENROLL" >&2
}

# priv_attrs ID: "CKA_NAME VALUE" lines, the attributes of the private key with CKA_ID ID
# (hex) exactly as the module returns them, read through pkcs11-spy while pkcs11-tool
# lists the key (pkcs11-tool's Access line leaves out what is false).
priv_attrs() {
	rm -f "$T/spy-attrs.log"
	PKCS11SPY=$MODULE PKCS11SPY_OUTPUT=$T/spy-attrs.log \
		pkcs11-tool --module "$SPY_MODULE" --token-label "$TOKEN_LABEL" --login --pin "$PIN" \
		--list-objects --type privkey --id "$1" >/dev/null 2>&1
	awk '/^\[out\]/ { out = 1; next }
		/^\[in\]/ || /^[0-9]+: / { out = 0 }
		out && $1 ~ /^CKA_/ && NF == 2 { print $1, $2 }' "$T/spy-attrs.log"
}

# check_tpm_enrollment: check_enrollment (lib.sh), plus the protection attributes of the
# private key read one by one, and URIs that name the TPM.
check_tpm_enrollment() {
	local id a want got
	check_enrollment
	id=$(grep '^privkey|' objects.txt | head -n1 | cut -d'|' -f2)
	[ -n "$id" ] || return
	priv_attrs "$id" >priv-attrs.txt
	for a in CKA_EXTRACTABLE=False CKA_NEVER_EXTRACTABLE=True CKA_ALWAYS_SENSITIVE=True \
		CKA_SENSITIVE=True CKA_LOCAL=True CKA_SIGN=True; do
		want=${a#*=}
		got=$(awk -v a="${a%%=*}" '$1 == a { print $2; exit }' priv-attrs.txt)
		assert_eq "$want" "${got:-(not reported)}" "${a%%=*} of the private key"
	done
	assert_match "$OUT" '^key:[[:space:]]+pkcs11:token=[^;]+;manufacturer=IBM;.*model=SW%20%20%20TPM;.*type=private'
	assert_match "$OUT" '^certificate:[[:space:]]+pkcs11:token=[^;]+;manufacturer=IBM;.*model=SW%20%20%20TPM;.*type=cert'
}

# setup_tpm_scepserver [scepserver flags...]: TPM token + scepserver + configuration.
setup_tpm_scepserver() {
	make_tpm_token || return
	start_scepserver "$T/srv" "$@" || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	write_conf
}

# keygen_ms: the key generation time the last `p11enroll -v` run reported.
keygen_ms() {
	sed -n 's/.*generated .* key pair on token .* in \([0-9]*\) ms.*/\1/p' "$ERR" | head -n1
}

# (a) RSA-2048 end to end against the real scepserver.
test_rsa2048_scepserver() {
	KEY_TYPE=rsa:2048
	setup_tpm_scepserver || return
	assert_exit 0 p11e -v enroll || return
	echo "  RSA-2048 keygen on swtpm: $(keygen_ms) ms; $(grep 'timing (ms)' "$ERR")" >&2
	check_tpm_enrollment
	openssl x509 -in "$CERT_FILE" -noout -text >cert.txt
	assert_contains cert.txt "Public-Key: (2048 bit)"
	assert_contains cert.txt "rsaEncryption"
	check_second_enroll
	assert_eq 1 "$(count_objects pubkey)" "public keys after a second enroll"
}

# setup_tpm_ec_responder: TPM token, the project's responder, an EC P-256 profile, and
# `p11enroll -v enroll` run (its exit status checked).
setup_tpm_ec_responder() {
	KEY_TYPE=ec:P-256
	ISSUER_EXPECT="O=p11enroll tests"
	make_tpm_token || return
	wrap_p11enroll_for_lsan
	start_responder "$T/resp" normal || return
	write_conf
	assert_exit 0 p11e -v enroll
}

# (b) EC P-256 end to end against the project's responder (the Debian scepserver cannot
# issue certificates for EC keys, see t-enroll.sh).
test_ec_p256_responder() {
	setup_tpm_ec_responder || return
	echo "  EC P-256 keygen on swtpm: $(keygen_ms) ms; $(grep 'timing (ms)' "$ERR")" >&2
	check_tpm_enrollment
	openssl x509 -in "$CERT_FILE" -noout -text >cert.txt
	assert_contains cert.txt "id-ecPublicKey"
	assert_contains cert.txt "NIST CURVE: P-256"
	check_second_enroll
}

# A station whose module is tpm2-pkcs11: its token processes serve at most 8 cards each
# (tpm2-pkcs11 keeps TPM objects loaded until C_Finalize; through tpm2-abrmd the 15th key
# generation of one initialisation fails, tokens/README.md), where SoftHSM's serve 64.
test_station_tpm_token_process_bound() {
	make_tpm_token || return
	start_scepserver "$T/srv" || return
	CERT_FILE=- write_conf
	p11e -v provision --jobs 1 --report "$T/report.jsonl"
	assert_eq 0 "$RC" "exit status" || return
	assert_match "$OUT" '^1 token: 1 enrolled, 0 skipped, 0 pending, 0 failed'
	assert_contains "$ERR" "slot 1: this token process serves at most 8 cards (tpm2-pkcs11)"
	assert_eq 1 "$(count_objects cert)" "certificates on the TPM token"
}

# A refused request takes back the key it generated, with tpm2-pkcs11's C_DestroyObject:
# scepserver refuses EC requests (t-enroll.sh), which makes a natural refusal.
test_refused_request_key_taken_back() {
	KEY_TYPE=ec:P-256
	make_tpm_token || return
	wrap_p11enroll_for_lsan
	printf '#!/bin/sh\ncat >"%s/csr.$$.der"\n' "$T" >save-csr.sh
	chmod 0755 save-csr.sh
	start_scepserver "$T/srv" -csrverifierexec "$T/save-csr.sh" || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	write_conf
	p11e enroll
	check_ec_until_the_ca
	assert_eq 0 "$(count_objects pubkey)" "public keys (this run's key taken back)"
}

# (c) 20 profiles enrolled one after the other against ONE swtpm + tpm2-abrmd and one
# scepserver. tpm2-pkcs11 keeps TPM objects loaded for each generated key until
# C_Finalize, and through tpm2-abrmd the 15th key generation in one C_Initialize lifetime
# fails (measured: 14 succeed): 20 in a row succeed only if nothing piles up from one run
# to the next. (tpm2-abrmd also flushes a client's objects when its connection closes, so
# that p11enroll calls C_Finalize itself is checked by test_finalize_once_per_run.)
# RSA-2048, the slow case on a TPM, against the real CA; each run's time goes to the log.
test_twenty_enrollments() {
	local i t0 ms total=0 min=999999 max=0 keygen n_ok=0
	KEY_TYPE=rsa:2048
	make_tpm_token || return
	start_scepserver "$T/srv" || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	: >timings.txt
	for ((i = 1; i <= 20; i++)); do
		KEY_LABEL=k$i DN="CN=host-$i,O=Example" SAN_DNS="host-$i.example.com" \
			CERT_FILE=$T/cert-$i.pem write_conf "$T/p$i.conf"
		t0=$(date +%s%N)
		p11e_raw -c "$T/p$i.conf" -v enroll
		ms=$((($(date +%s%N) - t0) / 1000000))
		keygen=$(keygen_ms)
		echo "k$i exit=$RC run_ms=$ms keygen_ms=${keygen:-?}" >>timings.txt
		if [ "$RC" != 0 ]; then
			fail "enrollment $i of 20 (label k$i) exited $RC$(_last_err)"
			continue
		fi
		n_ok=$((n_ok + 1))
		total=$((total + ms))
		[ $ms -ge $min ] || min=$ms
		[ $ms -le $max ] || max=$ms
	done
	assert_eq 20 "$n_ok" "successful enrollments"
	if [ "$n_ok" -gt 0 ]; then
		echo "  $n_ok enrollments: ${total} ms in all; per run min $min, mean $((total / n_ok)), max $max ms" >&2
	fi
	sed 's/^/  /' timings.txt >&2
	assert_eq 20 "$(count_objects privkey)" "private keys on the token"
	assert_eq 20 "$(count_objects pubkey)" "public keys on the token"
	assert_eq 20 "$(count_objects cert)" "certificates on the token"
	# Each profile's certificate: its own CN, on the token under its own key's CKA_ID.
	token_objects >objects.txt
	for ((i = 1; i <= 20; i++)); do
		openssl verify -CApath "$T/trust" "$T/cert-$i.pem" >"verify-$i.txt" 2>&1
		assert_contains "verify-$i.txt" "$T/cert-$i.pem: OK"
		openssl x509 -in "$T/cert-$i.pem" -noout -subject -nameopt RFC2253 >"subject-$i.txt" 2>&1
		assert_contains "subject-$i.txt" "CN=host-$i"
		assert_eq 1 "$(grep -c "^privkey|[0-9a-f]*|k$i|" objects.txt)" "private keys labelled k$i"
		assert_eq "$(grep "^privkey|[0-9a-f]*|k$i|" objects.txt | cut -d'|' -f2)" \
			"$(grep "^cert|[0-9a-f]*|k$i|" objects.txt | cut -d'|' -f2)" "CKA_ID of k$i's certificate"
	done
	# The first profile, 19 runs later, is still recognised: a no-op.
	assert_exit 0 p11e_raw -c "$T/p1.conf" enroll || return
	cat "$OUT" "$ERR" >again.txt
	assert_contains_i again.txt "already"
	assert_eq 20 "$(count_objects privkey)" "private keys after enrolling k1 again"
}

# (d) tpm2-pkcs11 lists an uninitialised slot next to the token: the URI selects by
# label, so the enrollment works; the same profile pointed at the other slot does not.
test_extra_uninitialised_slot() {
	local uninit
	setup_tpm_scepserver || return
	pkcs11-tool --module "$MODULE" -L >slots.txt 2>&1
	assert_eq 2 "$(grep -c '^Slot [0-9]' slots.txt)" "slots listed by tpm2-pkcs11"
	assert_contains slots.txt "token state:   uninitialized"
	assert_match slots.txt "^Slot [0-9]+ \(0x[0-9a-f]+\): $TOKEN_LABEL"
	# Its slot-id: "Slot 1 (0x2): " followed by "token state:   uninitialized".
	uninit=$(awk '/^Slot [0-9]/ { id = $3; gsub(/[():]/, "", id) }
		/token state:[[:space:]]*uninitialized/ { print id; exit }' slots.txt)
	case "$uninit" in 0x[0-9a-f]*) uninit=$((uninit)) ;; *) uninit= ;; esac
	assert_exit 0 p11e enroll || return
	check_tpm_enrollment
	if [ -z "$uninit" ]; then
		fail "no uninitialised slot in pkcs11-tool -L"
		return
	fi
	TOKEN_URI="pkcs11:slot-id=$uninit" KEY_LABEL=other CERT_FILE=$T/other.pem \
		STATE_DIR=$T/state-other write_conf "$T/other.conf"
	assert_exit 74 p11e_raw -c "$T/other.conf" enroll
	assert_contains "$ERR" "uninitialised token in slot $uninit"
	assert_contains "$ERR" "check [token] uri"
	assert_no_file "$T/other.pem"
	assert_eq 1 "$(count_objects privkey)" "private keys on the TPM token"
}

# spy_calls_returning FUNC RESULT: how many FUNC calls in $T/spy.log returned RESULT.
spy_calls_returning() {
	awk -v f="$1" -v want="$2" '/^[0-9]+: C_/ { fn = $2 }
		/^Returned:/ { sub(/^Returned:[[:space:]]*/, ""); if (fn == f && $0 == want) n++; fn = "" }
		END { print n + 0 }' "$T/spy.log"
}

# One C_Initialize and one C_Finalize per run, seen through pkcs11-spy: what makes
# tpm2-pkcs11 release the TPM objects it holds for each generated key.
test_finalize_once_per_run() {
	setup_tpm_scepserver || return
	MODULE=$SPY_MODULE write_conf "$T/spy.conf"
	# pkcs11-spy's own allocations are never freed: no leak check for this run. (Not
	# with wrap_p11enroll_for_lsan: a preloaded tpm2-pkcs11 takes the spy's C_* symbols.)
	PKCS11SPY=$TPM_MODULE PKCS11SPY_OUTPUT=$T/spy.log \
		ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
		assert_exit 0 p11e_raw -c "$T/spy.conf" enroll || return
	assert_file "$T/spy.log" || return
	# One client of the module: exactly one C_Initialize, and it initialized.
	assert_eq 1 "$(grep -cE '^[0-9]+: C_Initialize$' "$T/spy.log")" "C_Initialize calls"
	assert_eq 1 "$(spy_calls_returning C_Initialize '0 CKR_OK')" "C_Initialize calls that initialized"
	assert_eq 1 "$(grep -cE '^[0-9]+: C_GenerateKeyPair$' "$T/spy.log")" "C_GenerateKeyPair calls"
	assert_eq 1 "$(grep -cE '^[0-9]+: C_Finalize$' "$T/spy.log")" "C_Finalize calls"
	assert_eq C_Finalize "$(grep -E '^[0-9]+: C_' "$T/spy.log" | tail -n1 | sed 's/^[0-9]*: //')" \
		"last PKCS#11 call"
	assert_eq "0 CKR_OK" "$(sed -n 's/^Returned:[[:space:]]*//p' "$T/spy.log" | tail -n1)" \
		"what C_Finalize returned"
}

# Renewal on the TPM (RSA-2048, the real scepserver with -allowrenew 0): the RenewalReq is
# signed and the reply decrypted with the current key through tpm2-pkcs11, the new
# certificate goes on the TPM token under the new key's CKA_ID, and the old pair goes.

# renew_tpm_setup [NEW_KEY]: TPM token, scepserver, configuration ([renewal] new_key =
# NEW_KEY when given), a first enrollment checked; sets OLD_SERIAL, OLD_ID.
renew_tpm_setup() {
	KEY_TYPE=rsa:2048
	setup_tpm_scepserver -allowrenew 0 || return
	[ -z "${1:-}" ] || printf '\n[renewal]\nnew_key = %s\n' "$1" >>"$CONF"
	assert_exit 0 p11e enroll || return
	check_tpm_enrollment
	OLD_ID=$(grep '^privkey|' objects.txt | cut -d'|' -f2)
	OLD_SERIAL=$(openssl x509 -in "$CERT_FILE" -noout -serial)
}

# renew_tpm_once: `renew --force` (-v), then what a user checks: one key pair (never
# extractable, check_tpm_enrollment) and its certificate, verifying, with a new serial.
# Sets NEW_ID and RUN_MS; moves OLD_SERIAL on.
renew_tpm_once() {
	local t0 serial
	t0=$(date +%s%N)
	assert_exit 0 p11e -v renew --force || return
	RUN_MS=$((($(date +%s%N) - t0) / 1000000))
	assert_contains "$ERR" "RenewalReq transactionID"
	assert_contains "$ERR" "signing the request with the current certificate and its key"
	check_tpm_enrollment
	assert_eq 1 "$(count_objects pubkey)" "public keys on the TPM token"
	serial=$(openssl x509 -in "$CERT_FILE" -noout -serial)
	assert_eq 1 "$([ "$serial" != "$OLD_SERIAL" ] && echo 1)" "a new serial (old $OLD_SERIAL)"
	OLD_SERIAL=$serial
	NEW_ID=$(grep '^privkey|' objects.txt | cut -d'|' -f2)
}

# Three renewals in a row, each with a new key: nothing piles up on the TPM token. Each
# run's time goes to the log (the median is reported; never asserted).
test_renew_tpm_new_key() {
	local i prev ms=()
	renew_tpm_setup || return
	prev=$OLD_ID
	for i in 1 2 3; do
		renew_tpm_once || return
		assert_eq 1 "$([ "$NEW_ID" != "$prev" ] && [ -n "$NEW_ID" ] && echo 1)" \
			"renewal $i: a new key ID ($NEW_ID, before $prev)"
		echo "  renewal $i on swtpm: ${RUN_MS} ms (keygen $(keygen_ms) ms)" >&2
		ms+=("$RUN_MS")
		prev=$NEW_ID
	done
	echo "  renew --force on swtpm, new RSA-2048 key: median $(printf '%s\n' "${ms[@]}" |
		sort -n | sed -n 2p) ms of ${ms[*]}" >&2
	check_second_enroll
}

test_renew_tpm_same_key() {
	local ms=()
	renew_tpm_setup no || return
	renew_tpm_once || return
	assert_eq "$OLD_ID" "$NEW_ID" "key ID with new_key = no"
	assert_not_contains "$ERR" "generating a"
	ms+=("$RUN_MS")
	renew_tpm_once || return
	assert_eq "$OLD_ID" "$NEW_ID" "key ID after a second renewal with new_key = no"
	ms+=("$RUN_MS")
	echo "  renew --force on swtpm, same key: ${ms[*]} ms" >&2
}

# EC P-256 on the TPM, against the project's responder: the renewal is a new PKCSReq
# carried by a transient RSA key with the challenge (t-renew.sh), for a new TPM key.
test_renew_tpm_ec_responder() {
	local t0 old_id new_id
	setup_tpm_ec_responder || return
	old_id=$(token_objects | grep '^privkey|' | cut -d'|' -f2)
	t0=$(date +%s%N)
	assert_exit 0 p11e -v renew --force || return
	echo "  EC renew --force on swtpm: $((($(date +%s%N) - t0) / 1000000)) ms" >&2
	assert_contains "$ERR" "sending a new PKCSReq signed with a transient RSA key, with the challenge"
	assert_match "$T/resp/responder.log" 'PKCSReq: SUCCESS'
	check_tpm_enrollment
	assert_eq 1 "$(count_objects pubkey)" "public keys on the TPM token"
	new_id=$(grep '^privkey|' objects.txt | cut -d'|' -f2)
	assert_eq 1 "$([ "$new_id" != "$old_id" ] && [ -n "$new_id" ] && echo 1)" \
		"a new key ID ($new_id, before $old_id)"
	openssl x509 -in "$CERT_FILE" -noout -text >cert.txt
	assert_contains cert.txt "NIST CURVE: P-256"
}

run_tests
