#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-metrics.sh: monitoring. `status --metrics` and the agent's [agent] metrics_file in the
# Prometheus text format, checked by promtool (Debian package prometheus) and against what
# the token, cert_file and state_dir hold: after an enrollment, while the server is down
# (failures counted, file rewritten after each attempt), while the CA holds a request
# (pending), after a failing hook, at the agent's start, and a file that cannot be written.
. "$(dirname "$0")/lib.sh"

PROMTOOL=${PROMTOOL:-/usr/bin/promtool}

# promtool_ok FILE: promtool's linter accepts the file (and the format parses).
promtool_ok() {
	if [ ! -x "$PROMTOOL" ]; then
		fail "$PROMTOOL is missing (package prometheus: tests/install-deps.sh test)"
		return 1
	fi
	"$PROMTOOL" check metrics <"$1" >promtool.out 2>&1
	assert_eq 0 $? "promtool check metrics $1 (its words: $(tr '\n' ' ' <promtool.out))"
}

# metric FILE NAME: the value of NAME{profile="p11enroll"} in FILE, or "absent".
metric() {
	awk -v n="$2" '$1 == n "{profile=\"p11enroll\"}" { print $2; found = 1 }
		END { if (!found) print "absent" }' "$1"
}

# epoch FIELD: the certificate's notBefore/notAfter (startdate/enddate) in cert_file, seconds.
epoch() {
	date -d "$(openssl x509 -in "$CERT_FILE" -noout "-$1" | cut -d= -f2)" +%s
}

# wait_file_changes FILE OLD_SUM [SECONDS]: until FILE's checksum differs from OLD_SUM.
wait_file_changes() {
	local i
	for ((i = 0; i < ${3:-30} * 10; i++)); do
		[ -e "$1" ] && [ "$(md5sum <"$1")" != "$2" ] && return 0
		sleep 0.1
	done
	fail "$1 did not change within ${3:-30} s"
	return 1
}

test_status_metrics_after_an_enrollment() {
	setup_enroll || return
	assert_exit 0 p11e enroll || return
	assert_exit 0 p11e status --metrics || return
	cp "$OUT" m.prom
	promtool_ok m.prom || return
	local nb na due serial
	nb=$(epoch startdate) na=$(epoch enddate)
	serial=$(openssl x509 -in "$CERT_FILE" -noout -serial | sed 's/^serial=//' | tr 'a-f' 'A-F')
	assert_eq "$nb" "$(metric m.prom p11enroll_certificate_not_before_seconds)" "notBefore"
	assert_eq "$na" "$(metric m.prom p11enroll_certificate_not_after_seconds)" "notAfter"
	due=$(metric m.prom p11enroll_renewal_due_seconds)
	assert_eq 1 "$([ "$due" -gt "$nb" ] && [ "$due" -lt "$na" ] && echo 1)" \
		"renewal due ($due) between notBefore ($nb) and notAfter ($na)"
	assert_eq 0 "$(metric m.prom p11enroll_last_attempt_exit_code)" "last attempt's exit code"
	assert_eq 0 "$(metric m.prom p11enroll_consecutive_failures)" "failures"
	assert_eq 0 "$(metric m.prom p11enroll_pending)" "pending"
	assert_eq absent "$(metric m.prom p11enroll_pending_since_seconds)" "pending since"
	assert_eq 0 "$(metric m.prom p11enroll_hook_failures)" "hook failures"
	# `enroll` plans nothing: only the agent has a next attempt
	assert_eq absent "$(metric m.prom p11enroll_next_attempt_seconds)" "next attempt"
	assert_contains m.prom "p11enroll_certificate_info{profile=\"p11enroll\",subject=\"CN=host.example.com,O=Example\",serial=\"$serial\",token_uri=\"pkcs11:token=$TOKEN_LABEL\"} 1"
	local at
	at=$(metric m.prom p11enroll_last_attempt_seconds)
	assert_eq 1 "$(((at - $(date +%s)) ** 2 < 3600 ? 1 : 0))" "last attempt ($at) just now"
}

test_run_writes_the_metrics_file_as_status_prints_it() {
	setup_enroll || return
	mkdir -p "$T/textfile"
	agent_conf "metrics_file = $T/textfile/p11enroll.prom"
	start_daemon
	wait_log 'next: renewal due' 30 || return
	local f=$T/textfile/p11enroll.prom
	assert_file "$f" || return
	promtool_ok "$f" || return
	assert_eq 644 "$(stat -c %a "$f")" "mode of the metrics file (node_exporter reads it)"
	assert_eq "$(epoch enddate)" "$(metric "$f" p11enroll_certificate_not_after_seconds)" "notAfter"
	# the agent's plan: the next attempt is the renewal moment
	assert_eq "$(metric "$f" p11enroll_renewal_due_seconds)" \
		"$(metric "$f" p11enroll_next_attempt_seconds)" "next attempt = renewal due"
	assert_exit 0 p11e status --metrics || return
	assert_eq "" "$(diff "$OUT" "$f")" "status --metrics and the agent's file"
	assert_eq "" "$(find "$T/textfile" -name '*.tmp*')" "temporaries left in the textfile dir"
	stop_daemon
}

test_run_metrics_while_the_server_is_down() {
	make_token || return
	SCEP_PORT=$(free_port)
	SCEP_URL=http://127.0.0.1:$SCEP_PORT/scep CA_FP=- SCEP_TIMEOUT=3
	SCEP_CHALLENGE=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
	write_conf
	mkdir -p "$T/textfile"
	local f=$T/textfile/p11enroll.prom sum
	agent_conf "retry_min = 1s" "retry_max = 2s" "metrics_file = $f"
	start_daemon
	wait_log 'attempt failed \(server unreachable.*\); retry 1 in' 30 || return
	wait_file_changes "$f" "" || return
	promtool_ok "$f" || return
	assert_eq absent "$(metric "$f" p11enroll_certificate_not_after_seconds)" "no certificate yet"
	assert_not_contains "$f" "p11enroll_certificate_info{"
	wait_log 'attempt failed \(server unreachable.*\); retry 3 in' 30 || return
	# each attempt rewrites the file: the count it shows follows the attempts
	sum=$(md5sum <"$f")
	wait_file_changes "$f" "$sum" || return
	local n
	n=$(metric "$f" p11enroll_consecutive_failures)
	assert_eq 1 "$([ "$n" -ge 3 ] && echo 1)" "consecutive failures ($n) after three attempts"
	assert_eq 69 "$(metric "$f" p11enroll_last_attempt_exit_code)" "exit code of a network failure"
	promtool_ok "$f" || return
	stop_daemon
}

test_metrics_of_a_pending_request() {
	make_token || return
	start_responder "$T/resp" pending || return
	write_conf
	local before
	before=$(date +%s)
	assert_exit 75 p11e enroll || return
	assert_exit 0 p11e status --metrics || return
	cp "$OUT" m.prom
	promtool_ok m.prom || return
	assert_eq 1 "$(metric m.prom p11enroll_pending)" "pending"
	local since
	since=$(metric m.prom p11enroll_pending_since_seconds)
	assert_eq 1 "$([ "$since" -ge "$before" ] && [ "$since" -le "$(date +%s)" ] && echo 1)" \
		"pending since ($since) the enrollment ($before)"
	assert_eq 75 "$(metric m.prom p11enroll_last_attempt_exit_code)" "exit code of PENDING"
	assert_eq 0 "$(metric m.prom p11enroll_consecutive_failures)" \
		"PENDING is not a failure (its polls are counted in the transaction)"
}

test_metrics_of_a_failing_hook() {
	setup_enroll || return
	printf '#!/bin/sh\necho "the consumer is not there" >&2\nexit 3\n' >"$T/after.sh"
	chmod 0755 "$T/after.sh"
	HOOK_AFTER=$T/after.sh write_conf
	p11e enroll
	assert_exit 0 p11e status --metrics || return
	cp "$OUT" m.prom
	promtool_ok m.prom || return
	assert_eq 1 "$(metric m.prom p11enroll_hook_failures)" "hook failures"
	assert_eq 1 "$(metric m.prom p11enroll_hooks_owed)" "hooks owed"
	assert_eq "$(epoch enddate)" "$(metric m.prom p11enroll_certificate_not_after_seconds)" \
		"the certificate stays (a hook does not undo the enrollment)"
}

# At its start the agent reads each token and writes the file, also when its first
# attempt waits: a restart during a backoff keeps the backoff, and the certificate's
# series are there at once.
test_run_writes_metrics_at_start_during_a_backoff() {
	setup_enroll || return
	assert_exit 0 p11e enroll || return
	# a failed attempt with its retry planned in 50 minutes
	local now rec
	now=$(date +%s)
	rec=$STATE_DIR/last-p11enroll.txt
	sed -i -e "s/^err=.*/err=-5/" -e "s/^failures=.*/failures=4/" \
		-e "s/^next_at=.*/next_at=$((now + 3000))/" "$rec"
	grep -q '^next_at=' "$rec" || echo "next_at=$((now + 3000))" >>"$rec"
	mkdir -p "$T/textfile"
	local f=$T/textfile/p11enroll.prom
	agent_conf "retry_max = 1h" "metrics_file = $f"
	start_daemon
	wait_log 'running 1 profile' 10 || return
	wait_file_changes "$f" "" 20 || return
	promtool_ok "$f" || return
	assert_eq "$(epoch enddate)" "$(metric "$f" p11enroll_certificate_not_after_seconds)" "notAfter"
	assert_eq 4 "$(metric "$f" p11enroll_consecutive_failures)" "failures of the record"
	assert_eq $((now + 3000)) "$(metric "$f" p11enroll_next_attempt_seconds)" "the retry kept"
	assert_not_contains "$T/daemon.log" "now: "
	stop_daemon
}

test_run_keeps_its_schedule_when_the_metrics_file_cannot_be_written() {
	setup_enroll || return
	agent_conf "metrics_file = $T/no-such-dir/p11enroll.prom"
	start_daemon
	wait_log 'next: renewal due' 30 || return
	assert_contains "$T/daemon.log" "no-such-dir/p11enroll.prom"
	assert_file "$CERT_FILE" || return
	kill -0 "$DAEMON_PID" || fail "the agent stopped"
	stop_daemon
}

test_status_metrics_usage() {
	setup_enroll || return
	assert_exit 64 p11e status --metrics --json || return
	assert_contains "$ERR" "choose one"
}

run_tests
