#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-daemon.sh: `p11enroll run`, the agent, against the real scepserver (and the responder
# double where a case needs it): enrolls, sleeps until due, renews, retries with backoff,
# honours Retry-After, parks on a refused PIN, reloads on SIGHUP, stops on SIGTERM, makes no
# wake-ups while idle.
. "$(dirname "$0")/lib.sh"

# The agent on a faked clock, where a test waits only for the agent's own timers:
# libfaketime (package faketime) preloaded makes its clock run FAKE_RATE times faster
# than the real one. libfaketime 0.9.10 fakes time() and converts the agent's absolute
# CLOCK_REALTIME timerfd deadline, and poll timeouts, to the real clock (checked: a
# deadline 10 s ahead on its clock fires after 1 s at x10), so the agent wakes when its
# own clock says so. CLOCK_MONOTONIC stays real (libcurl measures its timeouts with it),
# and so do file times. The servers stay on the real clock, so a test that measures on
# the server's side (Retry-After) cannot use it: the attempt's own real time would count
# FAKE_RATE times. Production code knows nothing of this.
FAKETIME_LIB=${FAKETIME_LIB:-/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1}
FAKE_RATE=10
DAEMON_ENV=()

# faked_clock: the next start_daemon runs the agent FAKE_RATE times faster. Records a
# failure if libfaketime is missing (tests/install-deps.sh test installs it).
faked_clock() {
	local asan preload=$FAKETIME_LIB${LD_PRELOAD:+:$LD_PRELOAD}
	if [ ! -e "$FAKETIME_LIB" ]; then
		fail "$FAKETIME_LIB is missing (package libfaketime: tests/install-deps.sh test)"
		return 1
	fi
	# An ASan build wants its runtime first among the preloaded libraries.
	asan=$(ldd "$P11ENROLL" 2>/dev/null | awk '$1 ~ /^libasan\.so/ { print $3; exit }')
	[ -z "$asan" ] || preload=$asan:$preload
	DAEMON_ENV=(LD_PRELOAD="$preload" FAKETIME="+0 x$FAKE_RATE" FAKETIME_DONT_FAKE_MONOTONIC=1
		NO_FAKE_STAT=1)
}

# wait_asleep: waits (up to 10 s) until the agent sleeps in poll(2) with no child left,
# the state its idle checks start from (the log line "next: ..." comes a few steps before).
wait_asleep() {
	local i
	for ((i = 0; i < 200; i++)); do
		[ "$(awk '{ print $3 }' "/proc/$DAEMON_PID/stat" 2>/dev/null)" = S ] &&
			[ "$(cut -d' ' -f1 "/proc/$DAEMON_PID/syscall" 2>/dev/null)" = "$SYS_POLL" ] &&
			[ -z "$(pgrep -P "$DAEMON_PID")" ] && return 0
		sleep 0.05
	done
	fail "the agent was not asleep in poll(2) within 10 s (syscall: $(cat "/proc/$DAEMON_PID/syscall" 2>&1))"
	return 1
}
SYS_POLL=7 # x86_64; glibc's poll() is this system call there

# renewal_conf [renewal lines...]: appends a [renewal] section to $CONF.
renewal_conf() {
	printf '\n[renewal]\n' >>"$CONF"
	printf '%s\n' "$@" >>"$CONF"
}

# pair_count: "KEYS CERTS" of the test token.
pair_count() {
	echo "$(count_objects privkey) $(count_objects cert)"
}

test_run_enrolls_then_renews_when_due() {
	make_token || return
	start_scepserver "$T/srv" -allowrenew 0 || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	write_conf
	# scepserver backdates notBefore: the interval is what makes the next renewal due
	# 8 s after the agent's first enrollment.
	assert_exit 0 p11e enroll || return
	local nb now first second
	nb=$(date -d "$(openssl x509 -in "$CERT_FILE" -noout -startdate | cut -d= -f2)" +%s)
	now=$(date +%s)
	assert_exit 0 p11e renew --force || return # the agent starts from a fresh pair
	first=$(openssl x509 -in "$CERT_FILE" -noout -serial)
	renewal_conf "interval = $((now - nb + 8))s" "jitter = 0%"
	start_daemon
	wait_log 'next: renewal due' 20 || return
	assert_not_contains "$T/daemon.log" "starting"
	assert_eq "1 1" "$(pair_count)" "keys and certificates before the renewal"
	wait_log 'renewed: new certificate stored' 40 || return
	wait_log 'next: renewal due' 20 2 || return
	second=$(openssl x509 -in "$CERT_FILE" -noout -serial)
	assert_eq 1 "$([ "$first" != "$second" ] && echo 1)" "a new serial after the renewal ($first)"
	assert_eq "1 1" "$(pair_count)" "keys and certificates after the renewal"
	verify_capath "$TRUST_DIR" "$CERT_FILE"
	stop_daemon
}

test_run_enrolls_a_fresh_token_and_reports_it() {
	setup_enroll || return
	start_daemon
	wait_log 'next: renewal due' 30 || return
	OUT=$T/daemon.out
	check_enrollment
	assert_eq 600 "$(stat -c %a "$STATE_DIR/lock-p11enroll")" "mode of the profile's lock file"
	assert_exit 0 p11e status || return
	assert_match "$OUT" '^renewal:[[:space:]]+due [0-9]{4}-'
	stop_daemon
}

test_run_retries_until_the_server_is_up() {
	make_token || return
	SCEP_PORT=$(free_port)
	SCEP_URL=http://127.0.0.1:$SCEP_PORT/scep CA_FP=- SCEP_TIMEOUT=3
	SCEP_CHALLENGE=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
	write_conf
	agent_conf "retry_min = 1s" "retry_max = 2s"
	start_daemon
	wait_log 'attempt failed \(server unreachable.*\); retry 2 in [0-9]+s' 30 || return
	assert_eq "0 0" "$(pair_count)" "keys and certificates while the server is down"
	SCEP_LISTEN_PORT=$SCEP_PORT start_scepserver "$T/srv" || return
	wait_log 'next: renewal due' 30 || return
	assert_eq "1 1" "$(pair_count)" "keys and certificates once the server is up"
	stop_daemon
}

test_run_honours_retry_after() {
	make_token || return
	start_responder "$T/resp" busy || return
	write_conf
	agent_conf "retry_min = 1s" "retry_max = 1s"
	start_daemon
	wait_log 'next: renewal due' 40 || return
	assert_contains "$T/daemon.log" "retry 1 in 5s (as the server asked)"
	assert_contains "$T/daemon.log" "retry 2 in 5s (as the server asked)"
	# The responder's clock: each request came at least Retry-After after the 503. (On the
	# real clock: the faked one would multiply the attempt's own real time, which comes
	# on top of the wait, and an agent that ignored Retry-After would pass.)
	local times gaps
	times=$(sed -n 's/.*PKIOperation -> 503 Retry-After 4 at \([0-9.]*\).*/\1/p; s/.*PKIOperation served at \([0-9.]*\).*/\1/p' \
		"$T/resp/responder.log")
	gaps=$(echo "$times" | awk 'NR > 1 { printf "%s%.1f", sep, $1 - prev; sep = " " } { prev = $1 }')
	assert_eq 3 "$(echo "$times" | grep -c .)" "PKIOperations seen by the responder" || return
	awk -v g="$gaps" 'BEGIN { n = split(g, a, " "); for (i = 1; i <= n; i++) if (a[i] < 4) exit 1 }' ||
		fail "a request came sooner than Retry-After (gaps: $gaps s)"
	_pass "gaps between requests: $gaps s"
	stop_daemon
}

test_run_wrong_pin_parks_the_profile() {
	[ -n "${P11E_FAULT_MODULE:-}" ] || {
		fail "P11E_FAULT_MODULE is not set (make integration sets it)"
		return
	}
	setup_enroll || return
	local good_pin=$PIN
	MODULE=$P11E_FAULT_MODULE
	write_conf
	agent_conf "retry_min = 1s" "retry_max = 1s"
	(umask 077 && echo 999999 >"$T/wrong.pin")
	sed -i "s|^pin_file = .*|pin_file = $T/wrong.pin|" "$CONF"
	export FAULT_LOG=$T/fault.log
	start_daemon
	wait_log 'no further attempt until the configuration is reloaded' 30 || return
	# No timer left (the agent says so when it disarms it), asleep: no retry can come,
	# where one would come after retry_min (1 s) if the profile were not parked.
	wait_log 'nothing scheduled \(every profile is parked\)' 10 || return
	wait_asleep || return
	assert_eq 1 "$(awk '$1 == "C_Login"' "$FAULT_LOG" | grep -c .)" "C_Login calls" || return
	assert_eq "0 0" "$(pair_count)" "keys and certificates after the refused PIN"
	assert_not_contains "$T/daemon.log" "999999"
	# A restart with the same PIN file spends no further attempt. (pair_count's
	# pkcs11-tool logs in through the fault module too: count from here.)
	local logins
	logins=$(awk '$1 == "C_Login"' "$FAULT_LOG" | grep -c .)
	stop_daemon
	start_daemon
	wait_log 'has not changed since; no attempt until the configuration is reloaded' 10 || return
	wait_log 'nothing scheduled \(every profile is parked\)' 10 || return
	wait_asleep || return
	assert_eq "$logins" "$(awk '$1 == "C_Login"' "$FAULT_LOG" | grep -c .)" \
		"C_Login calls, before and after a restart"
	# Fixed, then reloaded: the agent goes on.
	sed -i "s|^pin_file = .*|pin_file = $PIN_FILE|" "$CONF"
	PIN=$good_pin
	kill -HUP "$DAEMON_PID"
	wait_log 'configuration reloaded' 10 || return
	wait_log 'next: renewal due' 30 || return
	assert_eq "1 1" "$(pair_count)" "keys and certificates after the reload"
	stop_daemon
}

test_run_sighup_keeps_the_old_configuration_when_the_new_one_is_bad() {
	setup_enroll || return
	start_daemon
	wait_log 'next: renewal due' 30 || return
	cp "$CONF" "$T/good.conf"
	echo "bogus_key = 1" >>"$CONF"
	kill -HUP "$DAEMON_PID"
	wait_log 'configuration not reloaded' 10 || return
	assert_contains "$T/daemon.log" "bogus_key"
	kill -0 "$DAEMON_PID" || fail "the agent exited on a bad configuration"
	cp "$T/good.conf" "$CONF"
	kill -HUP "$DAEMON_PID"
	wait_log 'configuration reloaded: 1 profile' 10 || return
	wait_log 'next: renewal due' 20 2 || return
	assert_eq "1 1" "$(pair_count)" "keys and certificates (nothing enrolled twice)"
	stop_daemon
}

test_run_two_profiles_from_a_directory() {
	make_token || return
	start_scepserver "$T/srv" || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	mkdir -p "$T/conf.d"
	KEY_LABEL=wifi DN=CN=wifi.example.com,O=Example STATE_DIR=$T/state-wifi \
		CERT_FILE=$T/wifi.pem write_conf "$T/conf.d/wifi.conf"
	KEY_LABEL=vpn DN=CN=vpn.example.com,O=Example STATE_DIR=$T/state-vpn \
		CERT_FILE=$T/vpn.pem write_conf "$T/conf.d/vpn.conf"
	echo "not a profile" >"$T/conf.d/README"
	start_daemon -c "$T/conf.d"
	wait_log 'next: renewal due' 60 2 || return
	assert_contains "$T/daemon.log" "running 2 profiles"
	assert_contains "$T/daemon.log" "p11enroll[wifi]: next: renewal due"
	assert_contains "$T/daemon.log" "p11enroll[vpn]: next: renewal due"
	assert_contains "$T/daemon.log" "p11enroll[vpn]: enrolled: certificate stored"
	assert_eq "2 2" "$(pair_count)" "keys and certificates for two profiles"
	# status over the same directory: a section per profile, or one JSON array.
	assert_exit 0 p11e_raw -c "$T/conf.d" status || return
	assert_match "$OUT" "^== vpn \\($T/conf.d/vpn.conf\\)"
	assert_match "$OUT" "^== wifi \\($T/conf.d/wifi.conf\\)"
	assert_exit 0 p11e_raw -c "$T/conf.d" status --json || return
	assert_eq "vpn.example.com wifi.example.com" \
		"$(python3 -c 'import json, sys
print(" ".join(p["certificate"]["subject"].split(",")[0][3:] for p in json.load(open(sys.argv[1]))))' "$OUT")" \
		"the profiles' subjects in status --json"
	openssl x509 -in "$T/wifi.pem" -noout -subject >wifi.txt && assert_contains wifi.txt "wifi.example.com"
	openssl x509 -in "$T/vpn.pem" -noout -subject >vpn.txt && assert_contains vpn.txt "vpn.example.com"
	stop_daemon
	# One state_dir and one label for two profiles: refused at start.
	KEY_LABEL=wifi DN=CN=x.example.com STATE_DIR=$T/state-wifi write_conf "$T/dup.conf"
	assert_exit 78 p11e_raw -c "$T/conf.d/wifi.conf" -c "$T/dup.conf" run
	assert_contains "$ERR" "both use key label 'wifi'"
}

test_run_sigterm_lets_the_attempt_in_progress_finish() {
	make_token || return
	start_responder "$T/resp" slow || return
	SCEP_TIMEOUT=4 write_conf
	start_daemon
	# The reply is trickling in (one byte a second) when the agent is told to stop.
	local i
	for ((i = 0; i < 300; i++)); do
		grep -q 'PKIOperation' "$T/resp/responder.log" 2>/dev/null && break
		sleep 0.1
	done
	assert_contains "$T/resp/responder.log" "PKIOperation" || return
	assert_eq 1 "$(pgrep -P "$DAEMON_PID" | grep -c .)" "attempts (children) running at SIGTERM"
	kill -TERM "$DAEMON_PID"
	wait_log 'signal TERM: stopping' 5 || return
	kill -0 "$DAEMON_PID" 2>/dev/null && _pass "the agent waits for the attempt in progress"
	stop_daemon
	# The attempt ran to its end (the reply timed out) and took its key back.
	assert_contains "$T/daemon.log" "timed out after 4 s"
	assert_contains "$T/daemon.log" "removed the key this attempt generated"
	assert_eq "0 0" "$(pair_count)" "keys and certificates after the interrupted attempt"
}

test_one_run_per_profile_at_a_time() {
	setup_enroll || return
	agent_conf "retry_min = 1s" "retry_max = 1s"
	mkdir -p "$STATE_DIR"
	# Another run (here: flock(1)) holds the profile's lock.
	flock --no-fork -x "$STATE_DIR/lock-p11enroll" sleep 60 </dev/null >/dev/null 2>&1 &
	echo $! >"$T/holder.pid"
	register_pidfile "$T/holder.pid"
	local i
	for ((i = 0; i < 50; i++)); do
		flock -n "$STATE_DIR/lock-p11enroll" true 2>/dev/null || break
		sleep 0.1
	done
	assert_exit 75 p11e enroll || return
	assert_contains "$ERR" "another p11enroll run is working on key 'p11enroll'"
	assert_eq "0 0" "$(pair_count)" "keys and certificates while another run holds the profile"
	assert_no_file "$STATE_DIR/last-p11enroll.txt"
	start_daemon
	wait_log 'attempt failed \(another run is working on this profile\); retry 2' 20 || return
	stop_pid "$T/holder.pid"
	wait_log 'next: renewal due' 30 || return
	assert_eq "1 1" "$(pair_count)" "keys and certificates once the lock is free"
	stop_daemon
}

test_run_looks_for_the_next_ca_before_the_ca_expires() {
	make_token || return
	# A CA of its own (not the run's cached one) that expires in 20 days: its
	# rollover window (the last 30 days, or 20% of its life) has begun.
	mkdir -p "$T/resp/pki"
	P11E_CA_CACHE=$T/ca-cache start_responder "$T/resp" normal --ca-days 20 || return
	write_conf
	assert_exit 0 p11e enroll || return
	assert_no_file "$TRUST_DIR/ca-next.crt"
	# The server now offers a successor (GetNextCACert); the last look is forgotten.
	stop_pid "$SCEP_PIDFILE"
	rm -f "$STATE_DIR/ca-next.looked"
	P11E_CA_CACHE=$T/ca-cache start_responder "$T/resp" rollover --ca-days 20 || return
	sed -i "s|^url = .*|url = $SCEP_URL|" "$CONF"
	start_daemon
	wait_log 'now: look for the CA.s successor' 20 || return
	wait_log 'next: renewal due' 20 || return
	assert_file "$TRUST_DIR/ca-next.crt" || return
	assert_eq "$(openssl x509 -in "$T/resp/pki/next-ca.pem" -noout -fingerprint -sha256)" \
		"$(openssl x509 -in "$TRUST_DIR/ca-next.crt" -noout -fingerprint -sha256)" \
		"the successor in the trust dir is the server's next CA"
	assert_eq "1 1" "$(pair_count)" "keys and certificates (the look changes nothing on the token)"
	assert_not_contains "$T/daemon.log" "not recorded"
	assert_exit 0 p11e status --json || return
	assert_eq ca-check "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["last_attempt"]["command"])' "$OUT")" \
		"the last attempt shown by status --json"
	stop_daemon
}

# Idle for P11E_IDLE_SECONDS (default 60) of the agent's time, on the faked clock: 6 s
# of real time, in which every timer the agent or a library in it could arm (poll,
# timerfd, nanosleep, all faked) for less than a minute of its time would fire. A
# sleeping process is not scheduled, so the load of other tests does not count here.
test_run_idle_makes_no_wakeups() {
	setup_enroll || return
	local secs=${P11E_IDLE_SECONDS:-60} a b rss
	faked_clock || return
	start_daemon
	wait_log 'next: renewal due' 30 || return
	wait_asleep || return
	sample() {
		awk '/^(voluntary|nonvoluntary)_ctxt_switches/ { s = s $2 " " } END { printf "%s", s }' \
			"/proc/$DAEMON_PID/status"
		awk '{ print "cpu " $14 + $15 }' "/proc/$DAEMON_PID/stat"
	}
	a=$(sample)
	sleep "$(awk -v s="$secs" -v r=$FAKE_RATE 'BEGIN { print s / r }')"
	b=$(sample)
	assert_eq "$a" "$b" "context switches and CPU ticks of the idle agent over $secs s of its time"
	assert_eq "" "$(pgrep -P "$DAEMON_PID")" "children of the idle agent"
	rss=$(awk '/^VmRSS/ { print $2 " " $3 }' "/proc/$DAEMON_PID/status")
	echo "idle agent over $secs s of its time: switches+cpu '$a' -> '$b'; VmRSS $rss" | tee -a "$T/../idle-rss.txt" >&2
	stop_daemon
}

test_placeholders_are_for_provision_only() {
	make_token || return
	SCEP_URL=http://127.0.0.1:9/scep DN='CN=card-{token.serial},O=Example' write_conf
	assert_exit 78 p11e enroll || return
	assert_contains "$ERR" "[subject] dn holds {placeholders}, which only \`provision\` expands"
	assert_exit 78 p11e renew --force
	assert_exit 78 p11e run
	assert_contains "$ERR" "write the values out for \`run\`"
	assert_eq "0 0" "$(pair_count)" "keys and certificates"
}

test_run_usage() {
	T=$T p11e_raw -c /nonexistent.conf run extra
	assert_eq 64 "$RC" "exit status of run with an argument"
	p11e_raw -c a.conf -c b.conf enroll
	assert_eq 64 "$RC" "exit status of enroll with two -c"
	assert_contains "$ERR" "several -c options are for \`run\` and \`status\` only"
	p11e_raw -c /nonexistent.conf run
	assert_eq 74 "$RC" "exit status of run without its configuration file"
	# When stderr is the journal's stream (JOURNAL_STREAM names its device:inode, as
	# systemd sets it) each line carries its syslog priority; elsewhere it does not.
	: >journal.err
	JOURNAL_STREAM=$(stat -c '%d:%i' journal.err) "$P11ENROLL" -c /nonexistent.conf run \
		2>>journal.err </dev/null
	assert_match journal.err '^<3>p11enroll: error: .*/nonexistent.conf'
	JOURNAL_STREAM=1:1 p11e_raw -c /nonexistent.conf run
	assert_match "$ERR" '^p11enroll: error: '

	assert_contains "$ERR" "/nonexistent.conf"
}

run_tests
