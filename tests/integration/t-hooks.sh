#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-hooks.sh: [hooks] against the real scepserver: `after` told of an enrollment with exactly
# the documented environment (and no secret), a renewal's `after` then `before_remove`
# while both pairs are on the token, a failing hook that keeps the old pair until it is
# fixed and run again (by `renew`, and by the agent with its backoff), a hook that hangs
# (killed with its process group within timeout + grace), a hook that prints 10 MB, the
# station's per-card hooks beside its progress pipe, a station card whose hook failed
# (enrolled, marked, exit 69, run again), and a command line refused at load.
. "$(dirname "$0")/lib.sh"

# hook_script NAME BODY: an executable $T/NAME (#!/bin/sh) running BODY.
hook_script() {
	printf '#!/bin/sh\n%s\n' "$2" >"$T/$1"
	chmod 0755 "$T/$1"
}

# A hook that logs "NAME EVENT SERIAL OLD_SERIAL CERTS" to $T/hooks.log (CERTS: the
# certificates on the token as pkcs11-tool sees them, without login, at that moment) and
# exits with the number in $T/NAME.rc (0 when absent), its stderr saying so first.
logging_hook() {
	local name=$1
	hook_script "$name.sh" "n=\$(SOFTHSM2_CONF=$SOFTHSM2_CONF pkcs11-tool --module $MODULE \\
	--token-label $TOKEN_LABEL --list-objects --type cert 2>/dev/null | grep -c '^Certificate Object')
echo \"$name \$P11ENROLL_EVENT \$P11ENROLL_SERIAL \$P11ENROLL_OLD_SERIAL \$n\" >>$T/hooks.log
rc=\$(cat $T/$name.rc 2>/dev/null || echo 0)
if [ \"\$rc\" != 0 ]; then
	echo \"$name: first line of trouble\" >&2
	echo \"$name: second line\" >&2
	echo \"$name: third line on stdout\"
fi
exit \$rc"
}

# hooks_setup: token, scepserver (-allowrenew 0), logging hooks after and before_remove,
# a first enrollment. Sets OLD_SERIAL (hex, as p11enroll shows serials) and OLD_ID.
hooks_setup() {
	make_token || return
	start_scepserver "$T/srv" -allowrenew 0 || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	logging_hook after || return
	logging_hook before_remove || return
	HOOK_AFTER=$T/after.sh HOOK_BEFORE_REMOVE=$T/before_remove.sh write_conf
	assert_exit 0 p11e enroll || return
	OLD_SERIAL=$(file_serial)
	OLD_ID=$(token_objects | grep '^privkey|' | cut -d'|' -f2)
}

# file_serial: the serial of cert_file, upper-case hex without "serial=".
file_serial() {
	openssl x509 -in "$CERT_FILE" -noout -serial | sed 's/^serial=//' | tr 'a-f' 'A-F'
}

# status_json EXPR: a Python expression over the document `status --json` printed (d).
status_json() {
	p11e status --json >/dev/null
	/usr/bin/python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
v = eval(sys.argv[2])
print(*v) if isinstance(v, tuple) else print(v)' \
		"$OUT" "$1"
}

# gone PID: the process has ended (or is a zombie nobody reaped yet), within a second.
gone() {
	local i
	for ((i = 0; i < 10; i++)); do
		[ ! -e "/proc/$1/stat" ] || [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" = Z ] &&
			return 0
		sleep 0.1
	done
	return 1
}

test_enroll_runs_after_with_exactly_its_environment() {
	make_token || return
	start_scepserver "$T/srv" || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	# The environment as execve gave it (/proc/PID/environ: no shell variable added), the
	# arguments, and stdin.
	hook_script env.sh "tr '\\000' '\\n' </proc/\$\$/environ >$T/env.txt
printf '%s|' \"\$@\" >$T/args.txt
readlink /proc/\$\$/fd/0 >$T/stdin.txt
echo this goes to the capture pipe, not to the stdout of p11enroll"
	HOOK_AFTER="$T/env.sh one \"two words\" \"\"" write_conf
	assert_exit 0 p11e enroll || return
	check_enrollment
	assert_file "$T/env.txt" || return
	local key_uri cert_uri serial not_after
	key_uri=$(out_value key)
	cert_uri=$(out_value certificate)
	serial=$(file_serial)
	not_after=$(date -u -d "$(openssl x509 -in "$CERT_FILE" -noout -enddate | cut -d= -f2)" \
		+%Y-%m-%dT%H:%M:%SZ)
	sort "$T/env.txt" >env-sorted.txt
	cat >env-want.txt <<EOF
LANG=C
P11ENROLL_CERT_FILE=$CERT_FILE
P11ENROLL_CERT_URI=$cert_uri
P11ENROLL_EVENT=enrolled
P11ENROLL_KEY_URI=$key_uri
P11ENROLL_NOT_AFTER=$not_after
P11ENROLL_OLD_SERIAL=
P11ENROLL_PROFILE=p11enroll
P11ENROLL_SERIAL=$serial
P11ENROLL_SUBJECT=CN=host.example.com,O=Example
P11ENROLL_TRUST_DIR=$TRUST_DIR
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EOF
	if diff -u env-want.txt env-sorted.txt >env-diff.txt; then
		_pass "the hook's environment is exactly the documented one"
	else
		cat env-diff.txt >&2
		fail "the hook's environment differs from the documented one (env-diff.txt)"
	fi
	assert_not_contains "$T/env.txt" "$PIN"
	assert_not_contains "$T/env.txt" "$SCEP_CHALLENGE"
	assert_eq "one|two words||" "$(cat "$T/args.txt")" "the hook's arguments"
	assert_eq /dev/null "$(cat "$T/stdin.txt")" "the hook's stdin"
	assert_not_contains "$OUT" "capture pipe"
	assert_contains "$ERR" "running hook after ($T/env.sh) for event enrolled"
	assert_contains "$ERR" "hook after: exit status 0"
	# status shows it; nothing is owed.
	assert_exit 0 p11e status || return
	assert_match "$OUT" '^hooks:[[:space:]]+hook after ran .*, event enrolled:'
	assert_not_contains "$OUT" "hooks owed"
	assert_eq "ok 0 [] ['after']" "$(status_json 'd["hooks"]["result"], d["hooks"]["exit_code"], d["hooks"]["owed"], d["hooks"]["configured"]')" \
		"status --json: hooks"
	# A second enroll has nothing to do: no hook runs.
	rm -f "$T/env.txt"
	assert_exit 0 p11e enroll || return
	assert_no_file "$T/env.txt"
}

test_renew_runs_after_then_before_remove_with_both_pairs_there() {
	hooks_setup || return
	assert_eq "after enrolled $OLD_SERIAL  1" "$(cat "$T/hooks.log")" "the enrollment's hook" || return
	: >"$T/hooks.log"
	assert_exit 0 p11e renew --force || return
	local new
	new=$(file_serial)
	assert_eq 1 "$([ "$new" != "$OLD_SERIAL" ] && echo 1)" "a new serial ($new)"
	# In order, told of the new and the old serial, while both certificates are there.
	printf 'after renewed %s %s 2\nbefore_remove renewed %s %s 2\n' "$new" "$OLD_SERIAL" \
		"$new" "$OLD_SERIAL" >want.log
	assert_eq "$(cat want.log)" "$(cat "$T/hooks.log")" "hooks.log"
	# Then the old pair went: one key (a new one) and its certificate, which is cert_file's.
	assert_eq 1 "$(count_objects privkey)" "private keys after the renewal"
	assert_eq 1 "$(count_objects cert)" "certificates after the renewal"
	local id
	id=$(token_objects | grep '^privkey|' | cut -d'|' -f2)
	assert_eq 1 "$([ "$id" != "$OLD_ID" ] && echo 1)" "a new key ($id)"
	p11tool --read-object --type cert --id "$id" -o token.der >/dev/null 2>&1
	assert_eq "$new" "$(openssl x509 -inform DER -in token.der -noout -serial | sed 's/^serial=//')" \
		"serial on the token"
	assert_eq "ok [] None" "$(status_json 'd["hooks"]["result"], d["hooks"]["owed"], d["hooks"]["owed_event"]')" \
		"status --json: hooks"
}

test_failing_hook_keeps_the_old_pair_until_it_succeeds() {
	hooks_setup || return
	echo 3 >"$T/after.rc"
	: >"$T/hooks.log"
	# The certificate is in place: exit 0, but the hook's failure is said with its lines.
	assert_exit 0 p11e renew --force || return
	local new
	new=$(file_serial)
	assert_eq 1 "$([ "$new" != "$OLD_SERIAL" ] && echo 1)" "cert_file holds the new serial ($new)"
	assert_contains "$ERR" "hook after ($T/after.sh) failed for event renewed: exit status 3"
	assert_contains "$ERR" "hook after: | after: first line of trouble"
	assert_contains "$ERR" "hook after: | after: second line"
	assert_contains "$ERR" "the old certificate and key stay on token '$TOKEN_LABEL'"
	assert_eq "after renewed $new $OLD_SERIAL 2" "$(cat "$T/hooks.log")" "before_remove did not run"
	assert_eq 2 "$(count_objects privkey)" "private keys while the hook is owed"
	assert_eq 2 "$(count_objects cert)" "certificates while the hook is owed"
	# status says so, text and JSON.
	assert_exit 0 p11e status || return
	assert_match "$OUT" '^hooks:[[:space:]]+hook after FAILED .*, event renewed:'
	assert_contains "$OUT" "exit status 3: after: first line of trouble"
	assert_match "$OUT" "^hooks owed:[[:space:]]+after, before_remove, for certificate $new \\(event renewed\\)"
	assert_eq "failed 3 ['after', 'before_remove'] renewed $new $OLD_SERIAL 1" \
		"$(status_json 'd["hooks"]["result"], d["hooks"]["exit_code"], d["hooks"]["owed"], d["hooks"]["owed_event"], d["hooks"]["owed_serial"], d["hooks"]["old_serial"], d["hooks"]["failures"]')" \
		"status --json: hooks"
	assert_eq True "$(status_json '"first line of trouble" in d["hooks"]["message"] and d["hooks"]["message"].startswith("exit status 3")')" \
		"status --json: hooks.message"
	# Not due, still failing: it runs again, the pairs stay.
	assert_exit 0 p11e renew || return
	assert_eq 2 "$(grep -c '^after renewed' "$T/hooks.log")" "after ran again"
	assert_eq 2 "$(count_objects privkey)" "private keys while the hook still fails"
	assert_eq 2 "$(status_json 'd["hooks"]["failures"]')" "failures in a row"
	# Fixed: the next renew (not due) runs after, then before_remove, then removes the old pair.
	rm -f "$T/after.rc"
	: >"$T/hooks.log"
	assert_exit 0 p11e renew || return
	assert_match "$OUT" '^renewal:[[:space:]]+not due'
	printf 'after renewed %s %s 2\nbefore_remove renewed %s %s 2\n' "$new" "$OLD_SERIAL" \
		"$new" "$OLD_SERIAL" >want.log
	assert_eq "$(cat want.log)" "$(cat "$T/hooks.log")" "hooks.log after the fix"
	assert_eq 1 "$(count_objects privkey)" "private keys once the hooks ran"
	assert_eq 1 "$(count_objects cert)" "certificates once the hooks ran"
	assert_eq 1 "$([ "$(token_objects | grep '^privkey|' | cut -d'|' -f2)" != "$OLD_ID" ] && echo 1)" \
		"the new key stayed"
	assert_eq "ok [] 0" "$(status_json 'd["hooks"]["result"], d["hooks"]["owed"], d["hooks"]["failures"]')" \
		"status --json: hooks after the fix"
	# Nothing owed: a further renew runs no hook.
	: >"$T/hooks.log"
	assert_exit 0 p11e renew || return
	assert_eq "" "$(cat "$T/hooks.log")" "hooks.log when nothing is owed"
}

test_failing_before_remove_is_run_again_alone() {
	hooks_setup || return
	echo 1 >"$T/before_remove.rc"
	: >"$T/hooks.log"
	assert_exit 0 p11e renew --force || return
	assert_eq 2 "$(grep -c . "$T/hooks.log")" "after and before_remove ran"
	assert_eq 2 "$(count_objects cert)" "certificates while before_remove is owed"
	assert_eq "['before_remove']" "$(status_json 'd["hooks"]["owed"]')" "owed"
	rm -f "$T/before_remove.rc"
	: >"$T/hooks.log"
	# enroll finds the valid certificate and settles: the owed hook only, then the old pair.
	assert_exit 0 p11e enroll || return
	assert_match "$T/hooks.log" '^before_remove renewed '
	assert_eq 1 "$(grep -c . "$T/hooks.log")" "only before_remove ran again"
	assert_eq 1 "$(count_objects cert)" "certificates once it ran"
}

# Killed (SIGKILL, the fault module) right after the new certificate is stored: the hooks
# were owed before the store, so the next run (not due) runs them and only then removes
# the old pair.
test_killed_after_store_runs_the_hooks_next_time() {
	if [ -z "${P11E_FAULT_MODULE:-}" ] || [ ! -f "$P11E_FAULT_MODULE" ]; then
		fail "P11E_FAULT_MODULE is not set to the fault module (make integration sets it)"
		return 1
	fi
	make_token || return
	start_scepserver "$T/srv" -allowrenew 0 || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	logging_hook after || return
	logging_hook before_remove || return
	MODULE=$P11E_FAULT_MODULE HOOK_AFTER=$T/after.sh HOOK_BEFORE_REMOVE=$T/before_remove.sh \
		write_conf
	assert_exit 0 p11e enroll || return
	local old new
	old=$(file_serial)
	: >"$T/hooks.log"
	sleep 1.1 # the renewed certificate gets a later notAfter than the first
	FAULT_KILL_AT=C_CreateObject+after FAULT_LOG=$T/kill.log p11e renew --force
	assert_eq 137 "$RC" "exit status of the killed run (SIGKILL)"
	assert_contains "$T/kill.log" "KILLED"
	assert_eq "" "$(cat "$T/hooks.log")" "no hook ran before the kill"
	assert_eq 2 "$(count_objects cert)" "certificates after the kill"
	assert_match "$STATE_DIR/hook-p11enroll.txt" '^owed=after,before_remove$'
	assert_exit 0 p11e renew || return
	assert_match "$OUT" '^renewal:[[:space:]]+not due'
	new=$(file_serial)
	assert_eq 1 "$([ "$new" != "$old" ] && echo 1)" "cert_file holds the new certificate ($new)"
	printf 'after renewed %s %s 2\nbefore_remove renewed %s %s 2\n' "$new" "$old" "$new" \
		"$old" >want.log
	assert_eq "$(cat want.log)" "$(cat "$T/hooks.log")" "hooks.log after the next run"
	assert_eq 1 "$(count_objects privkey)" "private keys once the hooks ran"
	assert_eq 1 "$(count_objects cert)" "certificates once the hooks ran"
}

test_hook_that_hangs_is_killed_with_its_group() {
	make_token || return
	start_scepserver "$T/srv" || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	# It ignores SIGTERM, and so does the child it leaves in its group: SIGKILL after the grace.
	hook_script hang.sh "trap '' TERM
echo \$\$ >$T/hook.pid
sleep 1000 &
echo \$! >$T/child.pid
echo hanging
sleep 1000
sleep 1000"
	register_pidfile "$T/hook.pid"
	register_pidfile "$T/child.pid"
	HOOK_AFTER=$T/hang.sh HOOK_TIMEOUT=2s write_conf
	local t0 t1
	t0=$(date +%s%N)
	assert_exit 0 p11e enroll || return
	t1=$(date +%s%N)
	check_enrollment
	local ms=$(((t1 - t0) / 1000000))
	# not before the timeout (2 s) and the grace (5 s): SIGTERM was ignored, SIGKILL followed.
	# That it did not hang: the group is gone (below), and enroll's own limit did not hit.
	assert_eq 1 "$([ "$ms" -ge 7000 ] && echo 1)" "enroll took ${ms} ms (hook timeout 2 s + grace 5 s)"
	assert_contains "$ERR" "failed for event enrolled: still running after 2 s: its process group was killed"
	assert_contains "$ERR" "hook after: | hanging"
	local pid
	for pid in "$(cat "$T/hook.pid")" "$(cat "$T/child.pid")"; do
		if gone "$pid"; then _pass "process $pid of the hook's group is gone"; else fail "process $pid of the hook's group still runs"; fi
	done
	assert_eq "timeout None ['after']" "$(status_json 'd["hooks"]["result"], d["hooks"]["exit_code"], d["hooks"]["owed"]')" \
		"status --json: hooks"
}

test_chatty_hook_is_bounded_and_never_blocks() {
	make_token || return
	start_scepserver "$T/srv" || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	hook_script chatty.sh "i=0
while [ \$i -lt 30 ]; do echo \"line \$i\"; i=\$((i + 1)); done
head -c 10485760 /dev/zero | tr '\\000' x
echo
exit 5"
	HOOK_AFTER=$T/chatty.sh HOOK_TIMEOUT=60s write_conf
	assert_exit 0 p11e enroll || return
	# It exited (status 5), not killed at its 60 s limit: reading 10 MB never blocked it.
	assert_contains "$ERR" "failed for event enrolled: exit status 5"
	assert_contains "$ERR" "hook after: | line 0"
	assert_contains "$ERR" "hook after: | line 19"
	assert_not_contains "$ERR" "hook after: | line 20"
	assert_match "$ERR" 'hook after: \([0-9]+ more bytes of output not kept\)'
	assert_eq 1 "$([ "$(wc -c <"$ERR")" -lt 20000 ] && echo 1)" "stderr stays small ($(wc -c <"$ERR") bytes)"
	assert_eq True "$(status_json 'len(d["hooks"]["message"]) < 4400 and d["hooks"]["message"].startswith("exit status 5: line 0")')" \
		"status --json: a bounded message"
}

test_command_refused_at_load() {
	make_token || return
	SCEP_URL=http://127.0.0.1:9/scep CA_FP=- HOOK_AFTER=reload-vpn write_conf
	assert_exit 78 p11e enroll || return
	assert_contains "$ERR" "$CONF:$(conf_line "$CONF" '^after = '): [hooks] after: the program 'reload-vpn' is not an absolute path"
	HOOK_AFTER='/usr/bin/true "unclosed' write_conf
	assert_exit 78 p11e status || return
	assert_contains "$ERR" "[hooks] after: word 2 of the command has no closing '\"'"
	HOOK_AFTER=/usr/bin/true HOOK_TIMEOUT=3h write_conf
	assert_exit 78 p11e status || return
	assert_contains "$ERR" "[hooks] timeout: '3h' is not a duration from 1s to 1h"
	assert_eq 0 "$(count_objects privkey)" "private keys"
}

# hook-test: both hooks once with the current certificate's values and event "test",
# whatever the other did; nothing recorded, the token unchanged; 69 when one failed.
test_hook_test_runs_both_with_the_current_certificate() {
	hooks_setup || return
	local before rec
	before=$(token_objects | sort)
	rec=$(cat "$STATE_DIR/hook-p11enroll.txt" 2>/dev/null)
	: >"$T/hooks.log"
	assert_exit 0 p11e hook-test || return
	assert_eq "after test $OLD_SERIAL  1
before_remove test $OLD_SERIAL  1" "$(cat "$T/hooks.log")" "the hooks' log (name, event, serial, old serial, certificates)"
	echo 3 >"$T/after.rc"
	: >"$T/hooks.log"
	assert_exit 69 p11e hook-test || return
	cat "$OUT" "$ERR" >"$T/hook-test.txt"
	assert_contains "$T/hook-test.txt" "after: first line of trouble"
	assert_eq 2 "$(grep -c ' test ' "$T/hooks.log")" "hooks run, the second after the first failed"
	assert_eq "$before" "$(token_objects | sort)" "objects on the token after hook-test"
	assert_eq "$rec" "$(cat "$STATE_DIR/hook-p11enroll.txt" 2>/dev/null)" "the hook record after hook-test"
	HOOK_AFTER= HOOK_BEFORE_REMOVE= write_conf
	assert_exit 78 p11e hook-test
}

# ------------------------------------------------------------------ the agent

test_agent_runs_an_owed_hook_again_with_its_backoff() {
	hooks_setup || return
	echo 3 >"$T/after.rc"
	assert_exit 0 p11e renew --force || return
	local new
	new=$(file_serial)
	printf 'retry_min = 2s\nretry_max = 4s\n' >>"$CONF"
	: >"$T/hooks.log"
	start_daemon
	# It acts on the owed hook at once, fails, and backs off (never spins).
	wait_log 'now: the hooks owed for the current certificate' 20 || return
	wait_log 'retry 2 in [0-9]+s' 30 || return
	local runs
	runs=$(grep -c '^after renewed' "$T/hooks.log")
	assert_eq 1 "$([ "$runs" -ge 2 ] && [ "$runs" -le 4 ] && echo 1)" "after ran $runs times before 'retry 2'"
	assert_eq 2 "$(count_objects cert)" "certificates while the hook is owed"
	assert_not_contains "$T/daemon.log" "next: renewal due"
	# Fixed: the next attempt runs after and before_remove, then the old pair goes, and
	# the agent sleeps until the renewal is due.
	rm -f "$T/after.rc"
	wait_log 'hook before_remove: exit status 0' 30 || return
	wait_log 'next: renewal due' 20 || return
	assert_match "$T/hooks.log" "^before_remove renewed $new $OLD_SERIAL 2\$"
	assert_eq 1 "$(count_objects privkey)" "private keys once the hooks ran"
	assert_eq 1 "$(count_objects cert)" "certificates once the hooks ran"
	runs=$(grep -c . "$T/hooks.log")
	sleep 3
	assert_eq "$runs" "$(grep -c . "$T/hooks.log")" "no hook runs once nothing is owed"
	kill -TERM "$DAEMON_PID"
	wait "$DAEMON_PID"
	assert_eq 0 "$?" "the agent's exit status after SIGTERM"
	rm -f "$T/daemon.pid"
}

test_agent_enrollment_with_a_failing_hook_keeps_its_schedule() {
	make_token || return
	start_scepserver "$T/srv" || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	logging_hook after || return
	echo 2 >"$T/after.rc"
	HOOK_AFTER=$T/after.sh write_conf
	printf 'retry_min = 1s\nretry_max = 2s\n' >>"$CONF"
	start_daemon
	wait_log 'enrolled: certificate stored' 30 || return
	wait_log 'retry 1 in [0-9]+s' 20 || return
	assert_eq "1 1" "$(count_objects privkey) $(count_objects cert)" "one enrollment, kept"
	rm -f "$T/after.rc"
	wait_log 'next: renewal due' 20 || return
	assert_eq 1 "$(grep -c 'enrolled: certificate stored' "$T/daemon.log")" "enrollments"
	assert_match "$T/hooks.log" '^after enrolled [0-9A-F]+  1$'
	kill -TERM "$DAEMON_PID"
	wait "$DAEMON_PID"
	rm -f "$T/daemon.pid"
}

# ------------------------------------------------------------------ the station

test_station_runs_after_per_card_beside_its_progress_pipe() {
	make_token card-01 || return
	make_token card-02 || return
	start_scepserver "$T/srv" || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	# Lines that look like the children's progress lines, on its stdout and stderr.
	hook_script card.sh "echo \"\$P11ENROLL_EVENT \$P11ENROLL_KEY_URI\" >>$T/cards.log
echo 'state failed'
echo 'error this must not reach the station' >&2"
	TOKEN_URI='pkcs11:manufacturer=SoftHSM%20project' CERT_FILE=- \
		DN='CN=card-{token.serial},O=Example' SAN_DNS='{token.serial}.cards.example.com' \
		HOOK_AFTER=$T/card.sh write_conf
	assert_exit 0 p11e provision --jobs 1 --report "$T/report.jsonl" || return
	assert_eq 2 "$(grep -c '"result":"enrolled"' "$T/report.jsonl")" "cards enrolled"
	assert_not_contains "$T/report.jsonl" "must not reach"
	assert_not_contains "$OUT" "must not reach"
	assert_eq 2 "$(grep -c '^enrolled pkcs11:' "$T/cards.log")" "hooks run, one per card"
	# Each hook was told of its card's key: the URIs the report names.
	local uri
	for uri in $(/usr/bin/python3 -c 'import json, sys
for l in open(sys.argv[1]): print(json.loads(l)["key_uri"])' "$T/report.jsonl"); do
		assert_contains "$T/cards.log" "enrolled $uri"
	done
}

# report_card LABEL EXPR: a Python expression over the last report line of LABEL (r).
report_card() {
	/usr/bin/python3 -c 'import json, sys
r = [json.loads(l) for l in open(sys.argv[1]) if json.loads(l)["label"] == sys.argv[2]][-1]
v = eval(sys.argv[3])
print(*v) if isinstance(v, tuple) else print(v)' "$T/report.jsonl" "$1" "$2"
}

# A card whose `after` hook fails is enrolled all the same (its certificate is on it), but
# the station says the hook failed: in its log line, its summary row, its report line
# (error, and the hook as `status --json` names it) and the exit status (69). The next run
# skips the card and runs the owed hook again; once it succeeds, all is well (exit 0) and
# it is not run again.
test_station_marks_a_card_whose_hook_failed() {
	make_token card-01 || return
	make_token card-02 || return
	start_scepserver "$T/srv" || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	echo 3 >"$T/card-01.rc"
	hook_script card.sh "echo \"\$P11ENROLL_EVENT \$P11ENROLL_KEY_URI\" >>$T/cards.log
case \$P11ENROLL_KEY_URI in
*token=card-01*)
	if [ -e $T/card-01.rc ]; then
		echo 'cannot register card-01' >&2
		exit \$(cat $T/card-01.rc)
	fi ;;
esac
exit 0"
	TOKEN_URI='pkcs11:manufacturer=SoftHSM%20project' CERT_FILE=- \
		DN='CN=card-{token.serial},O=Example' HOOK_AFTER=$T/card.sh write_conf
	assert_exit 69 p11e provision --jobs 1 --report "$T/report.jsonl" || return
	assert_eq 2 "$(grep -c '^enrolled pkcs11:' "$T/cards.log")" "hooks run, one per card"
	# Both cards hold their certificate.
	local label
	for label in card-01 card-02; do
		TOKEN_LABEL=$label
		assert_eq "1 1" "$(count_objects privkey) $(count_objects cert)" "$label: key and certificate"
	done
	local serial1 cert1
	serial1=$(report_card card-01 'r["serial"]')
	cert1=$(report_card card-01 'r["certificate_serial"]')
	# The report: enrolled, with the hook's failure; the other card without one.
	assert_eq "enrolled|hook after failed: exit status 3" \
		"$(report_card card-01 'r["result"] + "|" + r["error"]')" "card-01: result and error"
	assert_eq "{'name': 'after', 'event': 'enrolled', 'result': 'failed', 'exit_code': 3, 'signal': None, 'message': 'exit status 3: cannot register card-01'}" \
		"$(report_card card-01 'r["hook"]')" "card-01: the hook in the report"
	assert_eq "enrolled None None" "$(report_card card-02 'r["result"], r["error"], r["hook"]')" \
		"card-02: result, error, hook"
	# The log line and the summary.
	assert_contains "$ERR" "token 'card-01' (serial $serial1): done, but hook after failed: exit status 3 (the certificate is on the card)"
	assert_match "$OUT" "^$serial1 +card-01 +enrolled +$cert1, .*; hook after failed: exit status 3\$"
	assert_contains "$OUT" "2 tokens: 2 enrolled, 0 skipped, 0 pending, 0 failed; a hook failed on 1 (certificate in place)"
	assert_match "$OUT" "^[^ ]+ +card-02 +enrolled +[0-9A-F]+, [^;]+\$"

	# Again, the hook still failing: the card is skipped, its hook run again and failed.
	assert_exit 69 p11e provision --jobs 1 --report "$T/report.jsonl" || return
	assert_eq 2 "$(grep -c 'token=card-01' "$T/cards.log")" "card-01's hook runs"
	assert_eq 1 "$(grep -c 'token=card-02' "$T/cards.log")" "card-02's hook runs"
	assert_eq "skipped|hook after failed: exit status 3|$cert1" \
		"$(report_card card-01 'r["result"] + "|" + r["error"] + "|" + r["certificate_serial"]')" \
		"card-01 skipped: result, error, certificate"
	assert_contains "$OUT" "2 tokens: 0 enrolled, 2 skipped, 0 pending, 0 failed; a hook failed on 1"

	# Fixed: the owed hook succeeds, the run is clean, and it is owed no more.
	rm -f "$T/card-01.rc"
	assert_exit 0 p11e provision --jobs 1 --report "$T/report.jsonl" || return
	assert_eq 3 "$(grep -c 'token=card-01' "$T/cards.log")" "card-01's hook runs"
	assert_eq "skipped None None" "$(report_card card-01 'r["result"], r["error"], r["hook"]')" \
		"card-01 after the fix: result, error, hook"
	assert_contains "$OUT" "2 tokens: 0 enrolled, 2 skipped, 0 pending, 0 failed"
	assert_not_contains "$OUT" "hook"
	assert_exit 0 p11e provision --jobs 1 || return
	assert_eq 3 "$(grep -c 'token=card-01' "$T/cards.log")" "card-01's hook runs once paid"
}

run_tests
