#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-consumers.sh: what uses the certificate takes the renewed one, and the old one is
# refused. Two consumers of the tests' own, both reloaded on SIGHUP by the `after` hook:
#   - tests/doubles/tls_consumer.py, a long-lived TLS client (a VPN or mTLS agent): an
#     `openssl s_client` that signs with the token key through OpenSSL's pkcs11 engine
#     (key URI as p11enroll prints it, PIN by pin-source=file:) and presents cert_file,
#     connected again with the key and certificate the hook hands it;
#   - tests/doubles/pinning_server.py, the server it talks to: mutual TLS, client
#     certificates verified against p11enroll's trust dir (-CApath), and one serial pinned,
#     read again on SIGHUP from the file the hook writes.
# `before_remove`, while both pairs are on the token, presents each of them to the server.
# The consumer is a client because scepserver issues clientAuth certificates only: as a
# server's certificate, `openssl s_client` refuses one (verify error 26, unsuitable
# certificate purpose).
. "$(dirname "$0")/lib.sh"

CONSUMER=$SRCDIR/tests/doubles/tls_consumer.py
PINNING=$SRCDIR/tests/doubles/pinning_server.py

# wait_line FILE ERE [SECONDS]: waits until a line of FILE matches ERE (default 30 s);
# records a failure, with FILE, when none does.
wait_line() {
	local file=$1 re=$2 secs=${3:-30} i
	for ((i = 0; i < secs * 10; i++)); do
		grep -qE -- "$re" "$file" 2>/dev/null && {
			_pass "${file##*/} matches /$re/"
			return 0
		}
		sleep 0.1
	done
	fail "no line of ${file##*/} matches /$re/ within $secs s"
	sed "s/^/  ${file##*/}: /" "$file" >&2 2>/dev/null
	return 1
}

# start_pinning_server: pinning_server.py on a free 127.0.0.1 port with the certificate
#   of make_tls_server ($T/tls), client certificates from $TRUST_DIR, the serial pinned in
#   $T/pin; pid in $T/pinning.pid (the hook reads it), port in $T/pinning.port, state in
#   $T/pinning.state, log $T/pinning.log. Not in $(...).
start_pinning_server() {
	start_double pinning_server.py "$T" pinning -- \
		/usr/bin/python3 "$PINNING" --cert "$T/tls/server.pem" --key "$T/tls/server.key" \
		--capath "$TRUST_DIR" --pin-file "$T/pin" --port 0 --ready-file "$T/pinning.port" \
		--state-file "$T/pinning.state" || {
		fail "pinning_server.py did not start"
		return 1
	}
}

# start_consumer: tls_consumer.py kept running against the pinning server, configured by
#   $T/consumer.conf (the hook writes it); pid in $T/consumer.pid (the hook reads it),
#   state in $T/consumer.state, log $T/consumer.log. Not in $(...).
start_consumer() {
	/usr/bin/python3 "$CONSUMER" --connect "$(cat "$T/pinning.port")" --cafile "$T/tls/ca.pem" \
		--config "$T/consumer.conf" --pin-file "$ENGINE_PIN" --openssl-conf "$ENGINE_CNF" \
		--state-file "$T/consumer.state" >>"$T/consumer.log" 2>&1 </dev/null &
	echo "$!" >"$T/consumer.pid"
	register_pidfile "$T/consumer.pid"
}

# consumer_state KEY: the value of KEY in the consumer's state file.
consumer_state() {
	sed -n "s/^$1=//p" "$T/consumer.state" 2>/dev/null
}

# The hooks (without a shell's help: clean environment, PATH of the system directories).
# after: logs what it was told, hands the new key URI and certificate to the consumer and
# the serial to the pinning server, then reloads each and waits (40 s at most) until it
# uses them: first the server (or it would refuse the consumer's new serial), then the
# consumer. Before the consumers run (the first enrollment) it only writes their files.
write_after_hook() {
	cat >"$T/after.sh" <<EOF
#!/bin/sh
echo "after \$P11ENROLL_EVENT \$P11ENROLL_SERIAL \$P11ENROLL_OLD_SERIAL" >>$T/hooks.log
wait_line() {
	i=0
	until grep -qE "\$2" "\$1"; do
		i=\$((i + 1))
		if [ \$i -gt 400 ]; then
			echo "no line matching /\$2/ in \$1 within 40 s:" >&2
			cat "\$1" >&2
			return 1
		fi
		sleep 0.1
	done
}
printf 'key=%s\ncert=%s\n' "\$P11ENROLL_KEY_URI" "\$P11ENROLL_CERT_FILE" >$T/consumer.conf.new &&
	mv $T/consumer.conf.new $T/consumer.conf || exit 1
printf '%s\n' "\$P11ENROLL_SERIAL" >$T/pin.new && mv $T/pin.new $T/pin || exit 1
[ -s $T/pinning.pid ] || exit 0
kill -HUP "\$(cat $T/pinning.pid)" || exit 1
wait_line $T/pinning.state " pinned \$P11ENROLL_SERIAL\\\$" || exit 1
kill -HUP "\$(cat $T/consumer.pid)" || exit 1
wait_line $T/consumer.state "^reply=accepted serial \$P11ENROLL_SERIAL\\\$" || exit 1
echo "consumers reloaded for \$P11ENROLL_SERIAL"
EOF
	chmod 0755 "$T/after.sh"
}

# before_remove: presents each pair to the pinning server, once, while both are on the
# token: the old one (key URI and certificate saved by the test before the renewal) and
# the new one (as the hook is told). Each reply and exit status in $T/present-*.txt.
# SoftHSM finds the test's token store by SOFTHSM2_CONF, which the hook's clean
# environment does not have (a real token needs no such thing): the hook sets it.
write_before_remove_hook() {
	cat >"$T/before_remove.sh" <<EOF
#!/bin/sh
echo "before_remove \$P11ENROLL_EVENT \$P11ENROLL_SERIAL \$P11ENROLL_OLD_SERIAL" >>$T/hooks.log
export SOFTHSM2_CONF=$SOFTHSM2_CONF
present() {
	/usr/bin/python3 $CONSUMER --once --connect "\$(cat $T/pinning.port)" --cafile $T/tls/ca.pem \\
		--pin-file $ENGINE_PIN --openssl-conf $ENGINE_CNF --key "\$1" --cert "\$2"
	echo "exit \$?"
}
present "\$(cat $T/old.key)" $T/old-cert.pem >$T/present-old.txt 2>$T/present-old.err
present "\$P11ENROLL_KEY_URI" "\$P11ENROLL_CERT_FILE" >$T/present-new.txt 2>$T/present-new.err
EOF
	chmod 0755 "$T/before_remove.sh"
}

# A renewal with new_key = yes: the consumer presents serial A before it and, reloaded by
# `after`, serial B after it (B is what the hook was told, what the token and cert_file
# hold); the pinning server, reloaded first, cuts A's connection, refuses the old pair
# that `before_remove` presents and accepts the new one; both chains verify against the
# trust dir. Once the old pair is gone from the token the consumer connects again with
# what it was handed.
test_renewal_reloads_the_consumer_and_the_pin_refuses_the_old_serial() {
	make_token || return
	start_scepserver "$T/srv" -allowrenew 0 || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	make_tls_server "$T/tls" || return
	engine_conf "$T" || return
	write_after_hook
	write_before_remove_hook
	HOOK_AFTER=$T/after.sh HOOK_BEFORE_REMOVE=$T/before_remove.sh write_conf
	printf '\n[renewal]\nnew_key = yes\n' >>"$CONF"

	assert_exit 0 p11e enroll || return
	check_enrollment
	local old old_key old_id
	old=$(cert_serial "$CERT_FILE")
	old_key=$(out_value key)
	old_id=$(token_objects | grep '^privkey|' | cut -d'|' -f2)
	assert_eq "after enrolled $old " "$(cat "$T/hooks.log")" "the enrollment's hook" || return
	start_pinning_server || return
	start_consumer
	# The consumer presents serial A, and the server accepts it from the trust dir's CA.
	wait_line "$T/consumer.state" "^reply=accepted serial $old\$" || return
	assert_eq "1 $old_key $CERT_FILE" \
		"$(consumer_state generation) $(consumer_state key) $(consumer_state cert)" \
		"the consumer's first connection (generation, key, certificate)"
	assert_contains "$T/pinning.log" "accepted serial $old (O=Example,CN=host.example.com)"
	local pid1
	pid1=$(consumer_state pid)
	# The PIN reaches s_client by its file only.
	assert_contains "/proc/$pid1/cmdline" "pin-source=file:$ENGINE_PIN"
	assert_not_contains "/proc/$pid1/cmdline" "$PIN"

	printf '%s\n' "$old_key" >"$T/old.key"
	cp "$CERT_FILE" "$T/old-cert.pem"
	: >"$T/hooks.log"
	assert_exit 0 p11e renew --force || return
	check_enrollment
	local new new_key new_id
	new=$(cert_serial "$CERT_FILE")
	new_key=$(out_value key)
	new_id=$(token_objects | grep '^privkey|' | cut -d'|' -f2)
	assert_eq 1 "$([ "$new" != "$old" ] && echo 1)" "a new serial ($old -> $new)"
	assert_eq 1 "$([ "$new_id" != "$old_id" ] && echo 1)" "a new key ($old_id -> $new_id)"
	assert_eq "$(printf 'after renewed %s %s\nbefore_remove renewed %s %s' "$new" "$old" "$new" "$old")" \
		"$(cat "$T/hooks.log")" "the hooks, in order, with P11ENROLL_SERIAL and P11ENROLL_OLD_SERIAL"
	assert_contains "$ERR" "hook after: exit status 0"
	assert_contains "$ERR" "hook before_remove: exit status 0"
	p11tool --read-object --type cert --id "$new_id" -o token.der >/dev/null 2>&1
	assert_eq "$new" "$(openssl x509 -inform DER -in token.der -noout -serial | sed 's/^serial=//')" \
		"the serial on the token"

	# The consumer now presents B with the new key, from a new s_client; the first is gone.
	assert_eq "2 accepted serial $new $new_key $CERT_FILE" \
		"$(consumer_state generation) $(consumer_state reply) $(consumer_state key) $(consumer_state cert)" \
		"the consumer after the hook (generation, reply, key, certificate)"
	assert_eq 1 "$([ ! -e "/proc/$pid1" ] && echo 1)" "the first s_client ($pid1) has ended"
	# before_remove, both pairs on the token: the old serial refused, the new accepted.
	assert_eq "$(printf 'refused serial %s: pinned %s\nexit 1' "$old" "$new")" \
		"$(cat "$T/present-old.txt")" "the old pair presented by before_remove"
	assert_eq "$(printf 'accepted serial %s\nexit 0' "$new")" "$(cat "$T/present-new.txt")" \
		"the new pair presented by before_remove"
	# The server's decisions, in order: A accepted; the pin taken, A's connection cut,
	# before the consumer came back with B; then before_remove's old and new pair.
	local who="(O=Example,CN=host.example.com)"
	printf '%s\n' "generation 1: pinned $old" "accepted serial $old $who" \
		"generation 2: pinned $new" "dropped serial $old: pinned $new" \
		"accepted serial $new $who" "refused serial $old $who: pinned $new" \
		"accepted serial $new $who" >pinning-want.txt
	sed -n '/^pinning_server: \(listening\|closed\)/d; s/^pinning_server: //p' "$T/pinning.log" \
		>pinning-got.txt
	if diff -u pinning-want.txt pinning-got.txt >&2; then
		_pass "the pinning server's decisions, in order"
	else
		fail "the pinning server's decisions differ (pinning-want.txt, pinning-got.txt)"
	fi

	# The old pair is gone (check_enrollment: one key, one certificate); reloaded again,
	# the consumer connects with what the hook handed it.
	kill -HUP "$(cat "$T/consumer.pid")"
	wait_line "$T/consumer.state" "^generation=3\$" || return
	wait_line "$T/consumer.state" "^reply=accepted serial $new\$" || return
	assert_eq "" "$(consumer_state closed)" "the consumer's third connection stays open"
	assert_not_contains "$T/consumer.log" "verify error"
	assert_not_contains "$T/consumer.log" "$PIN"
}

run_tests
