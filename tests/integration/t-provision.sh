#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-provision.sh: `p11enroll provision`, the provisioning station: many SoftHSM tokens in
# one token directory enrolled at once against the real scepserver, per-token subjects,
# the JSON-lines report, the PIN map, and --watch with tokens that appear while it runs.
# What a card reports is not trusted: serials that are no names, a card showing another
# card's serial, blank cards and the SO PIN (the fault module's FAULT_TOKEN_INFO makes
# SoftHSM tokens report other serials, labels and models).
. "$(dirname "$0")/lib.sh"

# make_cards N: tokens card-01..card-N in $T/hsm (one PIN for all, in $T/hsm/pin).
# Sets LABELS and SERIALS (same order).
make_cards() {
	local i
	LABELS=() SERIALS=()
	for ((i = 1; i <= $1; i++)); do
		make_token "$(printf 'card-%02d' "$i")" || return
	done
	card_serials
}

# card_serials: LABELS and SERIALS of every token in $T/hsm, from softhsm2-util.
card_serials() {
	local label serial
	LABELS=() SERIALS=()
	while read -r label serial; do
		LABELS+=("$label")
		SERIALS+=("$serial")
	done < <(softhsm2-util --show-slots 2>/dev/null | awk '
		$1 == "Serial" && $2 == "number:" { serial = $3 }
		$1 == "Label:" { label = $2 }
		$1 == "Model:" && label != "" { print label, serial; label = "" }')
}

# station_conf: the station's configuration: a partial URI (the manufacturer only) and
# per-token subject templates. Server and CA fingerprint from start_scepserver.
station_conf() {
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	TOKEN_URI='pkcs11:manufacturer=SoftHSM%20project' CERT_FILE=- KEY_TYPE=${KEY_TYPE:-rsa:2048} \
		DN='CN=card-{token.serial},OU={token.label},O=Example' \
		SAN_DNS='{token.serial}.cards.example.com' write_conf
}

# report_count RESULT: report lines with "result":"RESULT".
report_count() {
	grep -c "\"result\":\"$1\"" "$T/report.jsonl" 2>/dev/null || true
}

# card_cert LABEL: one key and one certificate with its CKA_ID on the token, the
# certificate (then in LABEL.pem) verifies against the server's CA.
card_cert() {
	local label=$1 id
	TOKEN_LABEL=$label
	token_objects >"objects-$label.txt"
	read_objects "objects-$label.txt"
	assert_eq 1 "$OBJ_KEYS" "$label: private keys" || return
	assert_eq 1 "$OBJ_CERTS" "$label: certificates" || return
	id=$OBJ_KEY_ID
	assert_eq "$id" "$OBJ_CERT_ID" "$label: certificate CKA_ID"
	p11tool --read-object --type cert --id "$id" -o "$label.der" >/dev/null 2>&1
	openssl x509 -inform DER -in "$label.der" -out "$label.pem" 2>>openssl.err
	openssl verify -CAfile "$SCEP_CA_PEM" "$label.pem" >"verify-$label.txt" 2>&1
	assert_contains "verify-$label.txt" "$label.pem: OK"
}

# check_card LABEL SERIAL: card_cert, and the certificate carries the templated names.
check_card() {
	local label=$1 serial=$2
	card_cert "$label" || return
	openssl x509 -in "$label.pem" -noout -subject -nameopt RFC2253 -ext subjectAltName \
		>"names-$label.txt" 2>&1
	assert_contains "names-$label.txt" "CN=card-$serial,OU=$label,O=Example"
	assert_contains "names-$label.txt" "DNS:$serial.cards.example.com"
	assert_contains "$T/report.jsonl" "\"serial\":\"$serial\",\"label\":\"$label\",\"result\":\"enrolled\""
}

# scepserver's file depot can fail a request when two are signed at the same moment
# (lib.sh's SCEP_DEPOT_RACE; tests/README.md, known failures). The tests that run several
# cards at once start it with SCEP_SERIALIZE=1: behind lib.sh's serializing proxy, which
# hands it one request at a time while the cards still run at once (they queue at the
# proxy). A refusal from that race is then a broken setup, asserted 0 (server_races_none),
# never accommodated.
server_serial_races() {
	grep -cE "$SCEP_DEPOT_RACE" "$T/srv/scepserver.log" || true
}

# server_races_none: scepserver refused nothing to its serial race, and the proxy really
# stood in front of it (it forwarded at least one request).
server_races_none() {
	assert_eq 0 "$(server_serial_races)" "requests scepserver refused to its depot race (behind the serializing proxy)"
	assert_match "$T/srv/serial-proxy.log" 'POST /scep\?operation=PKIOperation[^ ]* -> 200'
}

test_twenty_tokens_jobs_4() {
	local i op before=()
	make_cards 20 || return
	assert_eq 20 "${#SERIALS[@]}" "tokens created" || return
	SCEP_SERIALIZE=1 start_scepserver "$T/srv" || return
	station_conf
	for op in GetCACert GetCACaps PKIOperation; do before+=("$(scep_ops $op)"); done
	p11e provision --jobs 4 --report "$T/report.jsonl"
	server_races_none
	assert_eq 0 "$RC" "exit status" || return
	# The station asks the CA's certificates and capabilities once; its cards use its answer.
	assert_eq 1 "$(($(scep_ops GetCACert) - before[0]))" "GetCACert requests for 20 cards"
	assert_eq 1 "$(($(scep_ops GetCACaps) - before[1]))" "GetCACaps requests for 20 cards"
	assert_eq 20 "$(($(scep_ops PKIOperation) - before[2]))" "PKIOperation requests for 20 cards"
	assert_eq 20 "$(grep -c '"result":"enrolled"' "$T/report.jsonl")" "cards enrolled in the report"
	assert_match "$OUT" '^20 tokens: 20 enrolled, 0 skipped, 0 pending, 0 failed'
	for ((i = 0; i < 20; i++)); do
		check_card "${LABELS[$i]}" "${SERIALS[$i]}"
	done
	# Each line is a JSON object with the fields the station promises.
	/usr/bin/python3 - "$T/report.jsonl" >report-check.txt 2>&1 <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    assert set(r) >= {"serial", "label", "result", "certificate_serial", "not_after", "key_uri", "error"}, r
    if r["result"] == "enrolled":
        assert r["certificate_serial"] and r["not_after"] and r["key_uri"].startswith("pkcs11:"), r
        assert "serial=" + r["serial"] in r["key_uri"] and r["error"] is None, r
print("report ok")
PY
	assert_contains report-check.txt "report ok"

	# The second run touches nothing: all 20 skipped, still one key and one certificate each.
	: >"$T/report.jsonl"
	assert_exit 0 p11e provision --jobs 4 --report "$T/report.jsonl"
	assert_eq 20 "$(report_count skipped)" "report lines 'skipped' on the second run"
	assert_match "$OUT" '^20 tokens: 0 enrolled, 20 skipped, 0 pending, 0 failed'
	for i in 0 7 19; do
		TOKEN_LABEL=${LABELS[$i]}
		assert_eq 1 "$(count_objects privkey)" "${LABELS[$i]}: private keys after the second run"
		assert_eq 1 "$(count_objects cert)" "${LABELS[$i]}: certificates after the second run"
	done
}

# A wrong PIN on two cards: those two fail after exactly one C_Login each and keep
# nothing of this run; the 18 others are enrolled; exit 74.
test_wrong_pin_on_two() {
	local i pin bad1 bad2
	make_cards 20 || return
	SCEP_SERIALIZE=1 start_scepserver "$T/srv" || return
	MODULE=$P11E_FAULT_MODULE station_conf
	pin=$(head -n1 "$T/hsm/pin")
	bad1=${SERIALS[3]} bad2=${SERIALS[16]}
	(
		umask 077
		echo "# serial = PIN"
		for ((i = 0; i < 20; i++)); do
			case ${SERIALS[$i]} in
			"$bad1" | "$bad2") echo "${SERIALS[$i]} = 0000wrong" ;;
			*) echo "${SERIALS[$i]} = $pin" ;;
			esac
		done
	) >"$T/pins"
	sed -i -e '/^pin_file/d' -e "/^\[token\]/a pin_map_file = $T/pins" "$CONF"

	# A PIN map others can read is refused before any token is touched.
	chmod 644 "$T/pins"
	export FAULT_LOG=$T/fault.log
	assert_exit 78 p11e provision --jobs 4
	assert_contains "$ERR" "is readable by others (mode 0644)"
	assert_eq 0 "$(awk '$1 == "C_Login"' "$FAULT_LOG" 2>/dev/null | wc -l)" "C_Login calls with a readable PIN map"
	chmod 600 "$T/pins"

	p11e provision --jobs 4 --report "$T/report.jsonl"
	server_races_none
	assert_eq 74 "$RC" "exit status with two wrong PINs"
	assert_eq 18 "$(report_count enrolled)" "report lines 'enrolled'"
	assert_eq 2 "$(report_count failed)" "report lines 'failed'"
	for i in "$bad1" "$bad2"; do
		assert_match "$T/report.jsonl" "\"serial\":\"$i\".*\"result\":\"failed\".*\"error\":\"wrong PIN"
	done
	assert_eq 20 "$(awk '$1 == "C_Login"' "$FAULT_LOG" | wc -l)" "C_Login calls (one per card)"
	assert_eq 2 "$(awk '$1 == "C_Login" && $2 == "CKR_PIN_INCORRECT"' "$FAULT_LOG" | wc -l)" \
		"C_Login calls refused (one per wrong PIN)"
	# the module loaded by the listing and by at most jobs + 1 token processes (16 cards
	# each), not once per card; each load finalised
	assert_le "$(awk '$1 == "C_Initialize"' "$FAULT_LOG" | wc -l)" 7 "C_Initialize calls for 20 cards"
	assert_eq "$(awk '$1 == "C_Initialize"' "$FAULT_LOG" | wc -l)" \
		"$(awk '$1 == "C_Finalize"' "$FAULT_LOG" | wc -l)" "C_Finalize calls"
	assert_not_contains "$ERR" "0000wrong"
	assert_not_contains "$OUT" "0000wrong"
	assert_not_contains "$T/report.jsonl" "0000wrong"
	assert_not_contains "$ERR" "$pin"
	PIN=$pin
	for ((i = 0; i < 20; i++)); do
		TOKEN_LABEL=${LABELS[$i]}
		case ${SERIALS[$i]} in
		"$bad1" | "$bad2")
			assert_eq 0 "$(count_objects privkey)" "${LABELS[$i]} (wrong PIN): private keys"
			assert_eq 0 "$(count_objects cert)" "${LABELS[$i]} (wrong PIN): certificates"
			;;
		*)
			assert_eq 1 "$(count_objects cert)" "${LABELS[$i]}: certificates"
			;;
		esac
	done
}

# --watch: tokens that appear in the token directory while it runs are enrolled (SoftHSM
# has no slot events: the slot list is read again, with a fresh C_Initialize, every
# second); SIGINT ends it with exit 0 once the cards in flight are done. The station makes
# no PKCS#11 call itself and never maps the module: its listings run in token processes too.
test_watch_new_tokens() {
	local pid i rc
	make_cards 1 || return
	# The two tokens added may be enrolled at once (up to 8 with --watch): serialized.
	SCEP_SERIALIZE=1 start_scepserver "$T/srv" || return
	# through the fault module, which names the process of each PKCS#11 call
	MODULE=$P11E_FAULT_MODULE station_conf
	FAULT_PIDS=$T/pids "$P11ENROLL" -c "$CONF" provision --watch --report "$T/report.jsonl" \
		>"$T/watch.out" 2>"$T/watch.err" </dev/null &
	pid=$!
	echo "$pid" >"$T/watch.pid"
	register_pidfile "$T/watch.pid"
	for ((i = 0; i < 300; i++)); do
		[ "$(report_count enrolled)" -ge 1 ] && break
		sleep 0.1
	done
	assert_eq 1 "$(report_count enrolled)" "cards enrolled before any was added" || return
	make_token card-02 && make_token card-03 || return
	for ((i = 0; i < 300; i++)); do
		[ "$(report_count enrolled)" -ge 3 ] && break
		sleep 0.1
	done
	assert_eq 3 "$(report_count enrolled)" "cards enrolled after two were added"
	# the station lists the slots every second and has enrolled three cards, each in a
	# process of its own: no PKCS#11 call was the station's, and it maps no module
	assert_eq 0 "$(awk -v p="$pid" '$1 == p' "$T/pids" | wc -l)" "PKCS#11 calls by the station itself"
	assert_match "$T/pids" ' C_GetSlotList$'
	assert_match "$T/pids" ' C_Login$'
	assert_not_contains "/proc/$pid/maps" "fault-pkcs11"
	assert_not_contains "/proc/$pid/maps" "libsofthsm2"
	# a terminal's Ctrl-C reaches every process of the station: its network processes
	# ignore it, as the cards' processes do, so that the cards in flight finish
	local net mask nets=0
	for net in $(pgrep -P "$pid" -x p11enroll-net); do
		mask=$(awk '$1 == "SigIgn:" { print $2 }' "/proc/$net/status")
		assert_eq 2 "$((0x$mask & 2))" "SIGINT ignored by the station's network process $net"
		nets=$((nets + 1))
	done
	assert_eq yes "$([ "$nets" -ge 1 ] && echo yes)" "the station's network processes found"
	kill -INT "$pid"
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	wait "$pid"
	rc=$?
	rm -f "$T/watch.pid"
	sed 's/^/  watch stdout: /' "$T/watch.out" >&2
	sed 's/^/  watch stderr: /' "$T/watch.err" >&2
	assert_eq 0 "$rc" "exit status of --watch after SIGINT"
	assert_match "$T/watch.out" '^3 tokens: 3 enrolled, 0 skipped, 0 pending, 0 failed'
	server_races_none
	card_serials
	for ((i = 0; i < 3; i++)); do
		check_card "${LABELS[$i]}" "${SERIALS[$i]}"
	done
}

# init_conf [URI]: station_conf for blank tokens: [token] init = yes with the SO PIN, a
# template label, and a uri naming the make (manufacturer and model), through the fault
# module (FAULT_LOG counts the calls).
init_conf() {
	TOKEN_URI=${1:-'pkcs11:manufacturer=SoftHSM%20project;model=SoftHSM%20v2'}
	MODULE=$P11E_FAULT_MODULE station_conf
	sed -i -e "s|^uri = .*|uri = $TOKEN_URI|" \
		-e "/^\[token\]/a init = yes\nso_pin_file = $T/hsm/so-pin\ninit_label = new-{date}" "$CONF"
	export FAULT_LOG=$T/fault.log
}

# calls NAME: the calls of NAME in the fault module's log.
calls() {
	awk -v n="$1" '$1 == n' "$FAULT_LOG" 2>/dev/null | wc -l
}

# [token] init = yes hands the SO PIN to a card that says it is blank: only with --init
# on the command line, and only to cards of the make the uri names. Without --init the
# blank token is listed, left alone (no C_InitToken, the SO PIN file not even read) and
# the run says --init is needed. Then with --init it is initialised with a generated user
# PIN, which only the report (created 0600) holds, and enrolled.
test_init_blank_token() {
	local pin so_pin newpin
	make_cards 1 || return
	start_scepserver "$T/srv" || return
	init_conf
	pin=$(head -n1 "$T/hsm/pin") so_pin=$(head -n1 "$T/hsm/so-pin")
	assert_exit 64 p11e provision --watch --init
	assert_contains "$ERR" "init = yes is not supported with --watch"

	# Without --init: left alone, and the SO PIN is not needed.
	sed -i "s|^so_pin_file = .*|so_pin_file = $T/no-such-so-pin|" "$CONF"
	assert_exit 0 p11e provision --report "$T/report.jsonl"
	assert_match "$ERR" "blank token in slot [0-9]+ left alone: initialising it needs --init"
	assert_match "$OUT" '^2 tokens: 1 enrolled, 1 skipped, 0 pending, 0 failed'
	assert_match "$OUT" 'skipped +blank token left alone: initialising it needs --init'
	assert_eq 0 "$(calls C_InitToken)" "C_InitToken calls without --init"
	assert_eq 1 "$(report_count enrolled)" "cards enrolled without --init"
	assert_match "$T/report.jsonl" '"result":"skipped".*"error":"blank token left alone: initialising it needs --init"'
	card_serials
	assert_eq 1 "${#SERIALS[@]}" "initialised tokens after a run without --init"
	sed -i "s|^so_pin_file = .*|so_pin_file = $T/hsm/so-pin|" "$CONF"

	# --init, but the blank card says it is of another model than the uri names: untouched.
	FAULT_TOKEN_INFO='blank:model=Other%20Card' p11e provision --init
	assert_eq 0 "$RC" "exit status with a blank card of another model"
	assert_match "$OUT" '^1 token: 0 enrolled, 1 skipped, 0 pending, 0 failed'
	assert_eq 0 "$(calls C_InitToken)" "C_InitToken calls for a card of another model"

	: >"$T/report.jsonl"
	assert_exit 0 p11e provision --init --report "$T/report.jsonl"
	assert_eq 1 "$(calls C_InitToken)" "C_InitToken calls with --init"
	assert_eq 600 "$(stat -c %a "$T/report.jsonl")" "mode of a report that holds PINs"
	assert_eq 1 "$(report_count enrolled)" "cards enrolled with --init (the blank one)"
	assert_eq 1 "$(report_count skipped)" "cards skipped with --init (card-01)"
	assert_eq 1 "$(grep -c '"pin":' "$T/report.jsonl")" "report lines with a PIN"
	newpin=$(sed -n 's/.*"label":"new-[0-9-]*".*"pin":"\([0-9]*\)".*/\1/p' "$T/report.jsonl")
	assert_eq 8 "${#newpin}" "length of the generated PIN" || return
	for f in "$OUT" "$ERR"; do
		assert_not_contains "$f" "$newpin"
		assert_not_contains "$f" "$so_pin"
		assert_not_contains "$f" "$pin"
	done
	card_serials
	assert_eq 2 "${#SERIALS[@]}" "initialised tokens" || return
	# softhsm2-util lists them in slot order (SoftHSM derives slot ids from serials).
	local new=0 old=1
	case ${LABELS[0]} in new-*) ;; *) new=1 old=0 ;; esac
	assert_match "$T/report.jsonl" "\"serial\":\"${SERIALS[$new]}\",\"label\":\"${LABELS[$new]}\".*\"pin\":\"$newpin\""
	# The generated PIN is the new token's user PIN, and the token holds its key and certificate.
	PIN=$newpin check_card "${LABELS[$new]}" "${SERIALS[$new]}"
	PIN=$pin card_cert "${LABELS[$old]}"
	# The new card's identity is recorded in its own directory.
	assert_contains "$T/state/tokens/${SERIALS[$new]}/token-identity.txt" "label=${LABELS[$new]}"
	# card-01 was not initialised again: its PIN is still the old one.
	assert_eq card-01 "${LABELS[$old]}" "the other token"
	assert_eq 0 "$(grep -c "\"serial\":\"${SERIALS[$old]}\".*\"pin\"" "$T/report.jsonl")" "a PIN for card-01"

	# --init needs init = yes in the file: both must say so.
	sed -i '/^init = yes/d' "$CONF"
	assert_exit 64 p11e provision --init
	assert_contains "$ERR" "--init: $CONF does not set [token] init = yes"
}

# init = yes with a uri that names no make (here: every token of the module) would give the
# SO PIN to any card that says it is blank: the configuration is refused (78, naming the
# file) before any token is touched.
test_init_needs_make_in_uri() {
	make_cards 1 || return
	start_scepserver "$T/srv" || return
	init_conf 'pkcs11:'
	assert_exit 78 p11e provision --init
	assert_contains "$ERR" "$CONF: [token] init = yes needs a uri that names the cards' manufacturer and/or model"
	assert_eq 0 "$(calls C_InitToken)" "C_InitToken calls"
	assert_eq 0 "$(calls C_Login)" "C_Login calls"
	card_serials
	assert_eq 1 "${#SERIALS[@]}" "initialised tokens"
	# A label alone does not name a make either.
	sed -i 's|^uri = .*|uri = pkcs11:token=card-01|' "$CONF"
	assert_exit 78 p11e provision
	assert_contains "$ERR" "init = yes needs a uri that names the cards' manufacturer and/or model"
}

# A card that shows the serial of a card this station has seen before, but another label
# (or model), is refused before it gets that serial's PIN from the PIN map: no C_Login, no
# key, exit 74, the reason in the summary and the report. The card first seen with that
# serial goes on as before; the record is in its directory from the first run on.
test_known_serial_other_card() {
	local pin s1 s2
	make_cards 1 || return
	start_scepserver "$T/srv" || return
	MODULE=$P11E_FAULT_MODULE station_conf
	pin=$(head -n1 "$T/hsm/pin") s1=${SERIALS[0]}
	(umask 077 && echo "$s1 = $pin" >"$T/pins")
	sed -i -e '/^pin_file/d' -e "/^\[token\]/a pin_map_file = $T/pins" "$CONF"
	assert_exit 0 p11e provision
	assert_file "$T/state/tokens/$s1/token-identity.txt"
	assert_contains "$T/state/tokens/$s1/token-identity.txt" "serial=$s1"
	assert_contains "$T/state/tokens/$s1/token-identity.txt" "label=card-01"
	assert_contains "$T/state/tokens/$s1/token-identity.txt" "model=SoftHSM%20v2"

	# card-02 (no certificate yet) says it is card-01's serial.
	make_token card-02 || return
	card_serials
	s2=${SERIALS[1]}
	[ "$s2" != "$s1" ] || s2=${SERIALS[0]}
	echo "$s2 = $pin" >>"$T/pins"
	export FAULT_LOG=$T/fault.log FAULT_TOKEN_INFO="label=card-02:serial=$s1"
	p11e provision --jobs 1 --report "$T/report.jsonl"
	assert_eq 74 "$RC" "exit status with a card that shows another card's serial"
	assert_eq 0 "$(awk '$1 == "C_Login"' "$FAULT_LOG" | wc -l)" "C_Login calls"
	assert_match "$OUT" '^2 tokens: 0 enrolled, 1 skipped, 0 pending, 1 failed'
	assert_contains "$ERR" "serial '$s1': label 'card-02' differs from 'card-01', recorded when this station first saw that serial: a different card? Refused, no PIN given"
	assert_match "$T/report.jsonl" "\"serial\":\"$s1\",\"label\":\"card-02\",\"result\":\"failed\".*\"error\":\"serial '$s1': label 'card-02' differs"
	TOKEN_LABEL=card-02 PIN=$pin
	assert_eq 0 "$(count_objects privkey)" "card-02: private keys"
	assert_eq 0 "$(count_objects cert)" "card-02: certificates"
	assert_contains "$T/state/tokens/$s1/token-identity.txt" "label=card-01"

	# card-01 itself, now reporting another model: refused as well; card-02 under its own
	# serial is a first contact and is enrolled.
	: >"$FAULT_LOG"
	FAULT_TOKEN_INFO='label=card-01:model=Other' p11e provision --jobs 1
	assert_eq 74 "$RC" "exit status with a card that reports another model"
	assert_contains "$ERR" "serial '$s1': model 'Other' differs from 'SoftHSM v2'"
	assert_match "$OUT" '^2 tokens: 1 enrolled, 0 skipped, 0 pending, 1 failed'
	assert_eq 1 "$(awk '$1 == "C_Login"' "$FAULT_LOG" | wc -l)" "C_Login calls (card-02 only)"
	TOKEN_LABEL=card-01
	assert_eq 1 "$(count_objects cert)" "card-01: certificates"
	unset FAULT_TOKEN_INFO
	assert_exit 0 p11e provision
	assert_match "$OUT" '^2 tokens: 0 enrolled, 2 skipped, 0 pending, 0 failed'
}

# Serials are the card's word: "..", ".", "ABC/../x", "/", bytes that are no text, 16
# bytes none of which may stand in a name, and "A/B" beside "A_B" (which the old
# flattening gave one directory) each get a directory of their own under state_dir/tokens;
# no card's state lands in state_dir itself or in tokens/. Each card gets its certificate,
# and the second run skips them all.
test_serials_that_are_not_names() {
	local i rules='' dots want got
	make_cards 8 || return
	start_scepserver "$T/srv" || return
	dots=%2E%2E%2E%2E%2E%2E%2E%2E%2E%2E%2E%2E%2E%2E%2E%2E
	local -a fake=(%2E%2E %2E ABC%2F%2E%2E%2Fx %2F %01%FF%7F%C3%28 "$dots" A%2FB A_B)
	for ((i = 0; i < 8; i++)); do
		rules+="label=${LABELS[$i]}:serial=${fake[$i]};"
	done
	export FAULT_TOKEN_INFO=$rules
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	MODULE=$P11E_FAULT_MODULE TOKEN_URI='pkcs11:manufacturer=SoftHSM%20project' CERT_FILE=- \
		DN='CN={token.label},O=Example' SAN_DNS='{token.label}.cards.example.com' write_conf
	p11e provision --jobs 1 --report "$T/report.jsonl"
	assert_eq 0 "$RC" "exit status"
	assert_match "$OUT" '^8 tokens: 8 enrolled, 0 skipped, 0 pending, 0 failed'
	want=$(printf 'tokens/%s/lock-p11enroll\n' "${fake[@]}" | sort)
	got=$(cd "$T/state" && find . -name 'lock-*' | sed 's|^\./||' | sort)
	assert_eq "$want" "$got" "lock files: one per card, each in its own directory"
	assert_eq "$(printf '%s\n' "${fake[@]}" | sort)" "$(cd "$T/state/tokens" && find . -mindepth 1 -maxdepth 1 | sed 's|^\./||' | sort)" \
		"directories under state_dir/tokens"
	assert_contains "$T/state/tokens/%2E%2E/token-identity.txt" "serial=.."
	assert_contains "$T/state/tokens/ABC%2F%2E%2E%2Fx/token-identity.txt" "serial=ABC/../x"
	assert_contains "$T/state/tokens/%01%FF%7F%C3%28/token-identity.txt" "serial=%01%FF%7F%C3("
	assert_contains "$T/state/tokens/A%2FB/token-identity.txt" "label=${LABELS[6]}"
	assert_contains "$T/state/tokens/A_B/token-identity.txt" "label=${LABELS[7]}"
	for ((i = 0; i < 8; i++)); do
		card_cert "${LABELS[$i]}"
	done
	assert_exit 0 p11e provision --jobs 4
	assert_match "$OUT" '^8 tokens: 0 enrolled, 8 skipped, 0 pending, 0 failed'
}

# A label or serial is printed as it may be on a terminal: a card whose label holds escape
# sequences cannot move the cursor, retitle the window or clear the screen of the station,
# in the log lines, the summary or (-v) the card's own log.
test_label_with_terminal_escapes() {
	local esc=$'\x1b' bel=$'\x07'
	make_cards 1 || return
	start_scepserver "$T/srv" || return
	export FAULT_TOKEN_INFO='label=card-01:label=evil%1B%5B2J%1B%5D0%3Bpwn%07'
	MODULE=$P11E_FAULT_MODULE station_conf
	sed -i 's|^dn = .*|dn = CN=card-{token.serial},O=Example|' "$CONF"
	assert_exit 0 p11e -v provision
	assert_not_contains "$ERR" "$esc"
	assert_not_contains "$ERR" "$bel"
	assert_not_contains "$OUT" "$esc"
	assert_contains "$ERR" "token 'evil\\x1B[2J\\x1B]0;pwn\\x07' (serial ${SERIALS[0]}): done"
	assert_contains "$OUT" 'evil\x1B[2J\x1B]0;pwn\x07'
}

# PENDING: each card keeps its key and its transaction in state_dir/tokens/SERIAL, is
# reported as pending (exit 75), and the next run polls it to the certificate.
test_pending_then_polled() {
	local i id
	make_cards 3 || return
	SCEP_CHALLENGE=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
	start_responder "$T/resp" pending || return
	KEY_TYPE=ec:P-256 station_conf
	assert_exit 75 p11e provision --report "$T/report.jsonl"
	assert_eq 3 "$(report_count pending)" "report lines 'pending'"
	assert_match "$OUT" '^3 tokens: 0 enrolled, 0 skipped, 3 pending, 0 failed'
	for ((i = 0; i < 3; i++)); do
		TOKEN_LABEL=${LABELS[$i]}
		assert_eq 1 "$(count_objects privkey)" "${LABELS[$i]}: the pending request's key stays"
		assert_eq 0 "$(count_objects cert)" "${LABELS[$i]}: certificates while pending"
		assert_file "$T/state/tokens/${SERIALS[$i]}/pending-p11enroll.txn"
		token_objects >"pending-${LABELS[$i]}.txt"
	done
	: >"$T/report.jsonl"
	assert_exit 0 p11e provision --report "$T/report.jsonl"
	assert_eq 3 "$(report_count enrolled)" "report lines 'enrolled' after polling"
	for ((i = 0; i < 3; i++)); do
		TOKEN_LABEL=${LABELS[$i]}
		token_objects >objects.txt
		id=$(grep '^privkey|' "pending-${LABELS[$i]}.txt" | cut -d'|' -f2)
		assert_eq 1 "$(grep -c '^privkey|' objects.txt)" "${LABELS[$i]}: private keys after polling"
		assert_eq "$id" "$(grep '^cert|' objects.txt | cut -d'|' -f2)" \
			"${LABELS[$i]}: the certificate is for the pending request's key"
		assert_no_file "$T/state/tokens/${SERIALS[$i]}/pending-p11enroll.txn"
	done
}

# The station's token processes: one loads the module (C_Initialize) and serves up to 16
# cards in turn, each card a session of its own; the station's own process never loads it.
# A module that crashes in the middle of a card's exchange (FAULT_CRASH_AT: SIGSEGV in the
# token process serving it) fails that card only, with a message naming the token process,
# and the station says how it ended; the next card gets a new token process and enrolls.
# Then every C_Initialize but the crashed one's has its C_Finalize, and the next run enrolls
# the failed card with the key the first one made.
test_token_process_crash_fails_one_card() {
	local failed i
	make_cards 3 || return
	start_scepserver "$T/srv" || return
	MODULE=$P11E_FAULT_MODULE station_conf
	export FAULT_LOG=$T/fault.log
	# the 5th C_Sign of the first token process: its second card's exchange (a
	# sanitized build: the SIGSEGV ends the process, rather than AddressSanitizer's report).
	# Its sessions' sockets close 1 s before it dies: the kernel may release them before
	# its control socket, and the card then knows it is ending before the station can.
	FAULT_CRASH_AT=C_Sign:5 FAULT_CRASH_LATE=1000 \
		ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}handle_segv=0 \
		p11e -v provision --jobs 1 --report "$T/report.jsonl"
	assert_eq 74 "$RC" "exit status with one card's token process crashed"
	assert_eq 2 "$(report_count enrolled)" "report lines 'enrolled'"
	assert_eq 1 "$(report_count failed)" "report lines 'failed'"
	assert_match "$T/report.jsonl" '"result":"failed".*"error":"the station.s token process serving token .card-0[1-3]. ended in the middle of a request"'
	assert_match "$ERR" "the station's token process [0-9]+ killed by signal 11: the PKCS#11 module crashed\? \(a card's session ended with it\)"
	# the listing's process, the crashed one, the one after it; every one but the crashed
	# one finalised
	assert_eq 3 "$(awk '$1 == "C_Initialize"' "$FAULT_LOG" | wc -l)" "C_Initialize calls for 3 cards"
	assert_eq 2 "$(awk '$1 == "C_Finalize"' "$FAULT_LOG" | wc -l)" "C_Finalize calls"
	assert_eq 3 "$(awk '$1 == "C_OpenSession"' "$FAULT_LOG" | wc -l)" "sessions (one per card)"
	# the station waited for the crashed one, which the card said had ended in its session,
	# before it gave the next card a slot: no card needed a token process of its own
	assert_not_contains "$ERR" "token process of its own"
	failed=$(sed -n 's/.*"label":"\([^"]*\)","result":"failed".*/\1/p' "$T/report.jsonl")
	TOKEN_LABEL=$failed
	assert_eq 0 "$(count_objects cert)" "$failed: certificates after the crash"
	assert_eq 1 "$(count_objects privkey)" "$failed: the key made before the crash"
	token_objects >"crashed-$failed.txt"
	: >"$T/report.jsonl"
	assert_exit 0 p11e provision --jobs 1 --report "$T/report.jsonl"
	assert_match "$OUT" '^3 tokens: 1 enrolled, 2 skipped, 0 pending, 0 failed'
	assert_match "$T/report.jsonl" "\"label\":\"$failed\",\"result\":\"enrolled\""
	for ((i = 0; i < 3; i++)); do
		card_cert "${LABELS[$i]}"
	done
	TOKEN_LABEL=$failed
	assert_eq "$(grep '^privkey|' "crashed-$failed.txt")" "$(token_objects | grep '^privkey|')" \
		"$failed: enrolled with the key the crashed run made"
}

# A slot's network process serves its cards in turn. A card's process that dies while its
# request is in the network process (the tests' build: P11E_TEST_CARD_DIES kills the first
# card's process right after its first request went out: its PKIOperation, since the cards
# take the CA's certificates and capabilities from the station) leaves an answer no one
# read: the station stops that network process, and the next card gets a new one and
# enrolls (given the old one, it would read the dead card's answer as its own). The server
# issued the dead card's certificate, which no one stored: -allowrenew 0 lets the next run
# ask it for one again.
test_card_killed_in_a_request_leaves_the_next_card_whole() {
	local i
	make_cards 3 || return
	start_scepserver "$T/srv" -allowrenew 0 || return
	station_conf
	P11E_TEST_CARD_DIES=$T/died:1 "$P11E_TESTHOOKS" -c "$CONF" provision --jobs 1 \
		--report "$T/report.jsonl" >run.out 2>run.err </dev/null
	assert_eq 70 "$?" "exit status with one card's process killed"
	cat run.err >&2
	assert_eq yes "$([ -e "$T/died" ] && echo yes)" "a card's process killed by the hook"
	assert_eq 2 "$(report_count enrolled)" "report lines 'enrolled'"
	assert_eq 1 "$(report_count failed)" "report lines 'failed'"
	assert_match "$T/report.jsonl" '"result":"failed".*"error":"the enrollment process was killed by signal 9"'
	: >"$T/report.jsonl"
	assert_exit 0 p11e provision --jobs 1 --report "$T/report.jsonl"
	assert_match "$OUT" '^3 tokens: 1 enrolled, 2 skipped, 0 pending, 0 failed'
	for ((i = 0; i < 3; i++)); do
		card_cert "${LABELS[$i]}"
	done
}

# A card another run holds (its lock in state_dir/tokens/SERIAL, as enroll takes it) is
# left alone: reported pending with the reason, exit 75; the next run enrolls it.
test_busy_card() {
	local busy
	make_cards 3 || return
	SCEP_SERIALIZE=1 start_scepserver "$T/srv" || return # two cards enrolled at once
	station_conf
	busy=${SERIALS[1]}
	mkdir -p "$T/state/tokens/$busy"
	OUT=$T/busy.out ERR=$T/busy.err
	flock "$T/state/tokens/$busy/lock-p11enroll" \
		"$P11ENROLL" -c "$CONF" provision --report "$T/report.jsonl" >"$OUT" 2>"$ERR"
	assert_eq 75 "$?" "exit status with a card locked by another run"
	assert_eq 2 "$(report_count enrolled)" "cards enrolled"
	server_races_none
	assert_match "$T/report.jsonl" "\"serial\":\"$busy\".*\"result\":\"pending\".*another p11enroll run is working"
	TOKEN_LABEL=${LABELS[1]}
	assert_eq 0 "$(count_objects privkey)" "keys on the locked card"
	: >"$T/report.jsonl"
	assert_exit 0 p11e provision --report "$T/report.jsonl"
	assert_match "$OUT" '^3 tokens: 1 enrolled, 2 skipped, 0 pending, 0 failed'
	check_card "${LABELS[1]}" "$busy"
}

# The report comes from the cards' progress lines, not from their log: with -q (errors
# only) it still holds each card's certificate serial, notAfter and key URI, and the
# reason of a failure. EC keys against the responder double: every card's exchange goes
# through the one transient RSA key provision makes for the run, and each certificate
# still verifies.
test_quiet_report_ec() {
	local i pin bad label cserial notafter
	make_cards 3 || return
	SCEP_CHALLENGE=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
	start_responder "$T/resp" normal || return
	KEY_TYPE=ec:P-256 station_conf
	pin=$(head -n1 "$T/hsm/pin") bad=${SERIALS[1]}
	for ((i = 0; i < 3; i++)); do
		if [ "${SERIALS[$i]}" = "$bad" ]; then
			echo "${SERIALS[$i]} = 0000wrong"
		else
			echo "${SERIALS[$i]} = $pin"
		fi
	done >"$T/pins"
	chmod 600 "$T/pins"
	sed -i -e '/^pin_file/d' -e "/^\[token\]/a pin_map_file = $T/pins" "$CONF"
	p11e -q provision --jobs 2 --report "$T/report.jsonl"
	assert_eq 74 "$RC" "exit status with one wrong PIN"
	assert_match "$OUT" '^3 tokens: 2 enrolled, 0 skipped, 0 pending, 1 failed'
	# -q: no line per change of state; the failure alone, with its reason.
	assert_not_contains "$ERR" "token '${LABELS[0]}'"
	assert_match "$ERR" "token '${LABELS[1]}' \\(serial $bad\\): failed: wrong PIN"
	assert_match "$T/report.jsonl" "\"serial\":\"$bad\".*\"result\":\"failed\",\"certificate_serial\":null,\"not_after\":null,\"key_uri\":null,\"error\":\"wrong PIN for token"
	for i in 0 1 2; do
		label=${LABELS[$i]} TOKEN_LABEL=${LABELS[$i]} PIN=$pin
		if [ "${SERIALS[$i]}" = "$bad" ]; then
			assert_eq 0 "$(count_objects privkey)" "$label (wrong PIN): private keys"
			continue
		fi
		card_cert "$label" || continue
		# The report's facts are those of the certificate on the token.
		openssl x509 -in "$label.pem" -noout -serial -enddate -dateopt iso_8601 \
			>"facts-$label.txt" 2>&1
		assert_match "facts-$label.txt" '^serial=[0-9A-F]+$'
		cserial=$(sed -n 's/^serial=//p' "facts-$label.txt")
		notafter=$(sed -n 's/^notAfter=//p' "facts-$label.txt")
		assert_match "$T/report.jsonl" "\"serial\":\"${SERIALS[$i]}\".*\"certificate_serial\":\"$cserial\",\"not_after\":\"$notafter\",\"key_uri\":\"pkcs11:[^\"]*serial=${SERIALS[$i]}[^\"]*type=private"
	done
	assert_not_contains "$T/report.jsonl" "0000wrong"
	assert_not_contains "$ERR" "0000wrong"
}

# A slot's token process serves many cards before it is replaced (SoftHSM's C_Initialize
# reads the whole token store each time): 17 cards, one at a time, one token process and
# one network process for all of them (and the station's own network process before them,
# for the CA's certificates).
test_seventeen_cards_one_token_process() {
	local i
	make_cards 17 || return
	SCEP_CHALLENGE=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
	start_responder "$T/resp" normal || return
	KEY_TYPE=ec:P-256 station_conf
	p11e -v provision --jobs 1 --report "$T/report.jsonl"
	assert_eq 0 "$RC" "exit status" || return
	assert_match "$OUT" '^17 tokens: 17 enrolled, 0 skipped, 0 pending, 0 failed'
	assert_eq 1 "$(grep -c "serves the station's cards" "$ERR")" "token processes for 17 cards"
	assert_eq 2 "$(grep -c 'network process [0-9]* started' "$ERR")" "network processes (the station's, the slot's)"
	for i in 0 16; do
		card_cert "${LABELS[$i]}"
	done
}

# On a terminal (script(1) gives it a pty): one line per card, redrawn in place, no log
# line per change of state, then the summary table.
test_terminal_progress_lines() {
	local i
	make_cards 3 || return
	start_scepserver "$T/srv" || return
	station_conf
	script -q -e -c "$(printf '%q ' "$P11ENROLL" -c "$CONF" provision --jobs 1)" /dev/null \
		</dev/null >"$T/tty.out" 2>&1
	assert_eq 0 "$?" "exit status on a terminal" || sed 's/^/  tty: /' "$T/tty.out" >&2
	assert_contains "$T/tty.out" $'\033[3A' # cursor up over the 3 card lines: a redraw
	for ((i = 0; i < 3; i++)); do
		assert_match "$T/tty.out" "${SERIALS[$i]} +${LABELS[$i]} +waiting"
		assert_match "$T/tty.out" "${SERIALS[$i]} +${LABELS[$i]} +done"
	done
	assert_contains "$T/tty.out" "3 tokens: 3 enrolled, 0 skipped, 0 pending, 0 failed"
	assert_not_contains "$T/tty.out" "(serial ${SERIALS[0]}):"
}

# A placeholder the station does not know is a configuration error with file:line.
test_unknown_placeholder() {
	make_token || return
	SCEP_URL=http://127.0.0.1:9/scep DN='CN={token.serail}' write_conf
	assert_exit 78 p11e provision
	assert_match "$ERR" "p11enroll.conf:[0-9]+: \\[subject\\] dn: unknown placeholder \\{token.serail\\}"
}

run_tests
