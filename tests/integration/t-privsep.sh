#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-privsep.sh: the network process (agent/netproc.c, p11enroll-net). The tests' own build
# ($P11E_TESTHOOKS, never installed: p11enroll, which starts the p11enroll-net beside it,
# built with the hooks) makes it try, once confined, what a network process
# taken over by a hostile server would: read the PIN file, write into state_dir, load the
# PKCS#11 module, run a program, connect anywhere. Each is refused or kills it; the enrollment stops with
# exit 70 and a message naming the network process, and the token and state_dir are as
# they were. The process itself (its user, filter, memory map and memory) is checked in
# t-secrets.sh, during a real exchange.
. "$(dirname "$0")/lib.sh"

# escape_case TRY EXPECT: an enrollment with P11E_TEST_NETPROC_TRY=TRY (@PORT@ in it: the
# SCEP server's port) exits 70, its log
# matches EXPECT, nothing changed on the token, and state_dir holds only the records of a
# failed attempt (keys-, last-, lock-: as after a server that cannot be reached), no
# pending request, nothing planted; the trust dir was not written.
escape_case() {
	local try=$1 expect=$2 before after
	if [ ! -x "${P11E_TESTHOOKS:-}" ]; then
		fail "P11E_TESTHOOKS does not name the tests' build of p11enroll (make integration sets it)"
		return 1
	fi
	setup_enroll || return
	try=${try//@PORT@/$SCEP_PORT}
	mkdir -p "$STATE_DIR" && chmod 0700 "$STATE_DIR"
	before=$(token_objects | sort)
	P11E_TEST_NETPROC_TRY=$try "$P11E_TESTHOOKS" -c "$CONF" enroll >run.out 2>run.err </dev/null
	assert_eq 70 "$?" "exit status when the network process tries $try"
	cat run.err >&2
	assert_match run.err "$expect"
	assert_not_contains run.err "SUCCEEDED"
	after=$(token_objects | sort)
	assert_eq "$before" "$after" "the token's objects after the attempt"
	assert_eq "keys-p11enroll.txt last-p11enroll.txt lock-p11enroll" \
		"$(ls "$STATE_DIR" | sort | tr '\n' ' ' | sed 's/ $//')" "state_dir after the attempt"
	assert_no_file "$TRUST_DIR"
	# and the plain program still enrolls
	assert_exit 0 p11e enroll
}

test_network_process_cannot_read_the_pin_file() {
	PIN_FILE=$T/pin
	(umask 077 && printf '%s\n' "$PIN" >"$PIN_FILE")
	escape_case "open:$T/pin" "network process: test escape open:.* refused: Permission denied"
}

test_network_process_cannot_write_into_state_dir() {
	escape_case "write:$T/state/planted" \
		"network process: test escape write:.* refused: Permission denied"
	assert_no_file "$T/state/planted"
}

# The Landlock ABI of this kernel (0: none), asked of the kernel itself with Python's
# ctypes (landlock_create_ruleset with LANDLOCK_CREATE_RULESET_VERSION), not by p11enroll.
landlock_abi() {
	/usr/bin/python3 -c '
import ctypes, platform
nr = {"x86_64": 444, "aarch64": 444}.get(platform.machine())
v = ctypes.CDLL(None, use_errno=True).syscall(nr, None, ctypes.c_size_t(0), ctypes.c_uint32(1)) if nr else -1
print(v if v > 0 else 0)'
}

# Loading the module: under Landlock its file cannot even be opened (EACCES); without
# Landlock the open succeeds and the executable mapping kills the process.
test_network_process_cannot_load_the_pkcs11_module() {
	if [ "$(landlock_abi)" -gt 0 ]; then
		escape_case "dlopen:$MODULE" \
			"network process: test escape dlopen:.* refused: .*Permission denied"
	else
		escape_case "dlopen:$MODULE" \
			"network process was killed by signal 31 \(Bad system call\): it made a system call its confinement forbids"
	fi
}

# Executable memory, however it is asked for: the filter kills.
test_network_process_cannot_map_executable_memory() {
	escape_case "mmap-exec" \
		"network process was killed by signal 31 \(Bad system call\): it made a system call its confinement forbids"
}

# A file its user could read (0644 in directories open to all, as a PIN file of a user
# who runs p11enroll as himself is open to that user's network process): Landlock keeps
# the network process to the resolver's and TLS's configuration, the CA store and time
# zones. The user nobody can read the file (checked with setpriv), the network process
# cannot.
test_network_process_reads_only_what_it_needs() {
	local abi pub
	abi=$(landlock_abi)
	if [ "$abi" -eq 0 ]; then
		skip "this kernel has no Landlock (landlock_create_ruleset answers no ABI)"
		return
	fi
	pub=$(mktemp -d /tmp/p11e-public.XXXXXX) || return
	chmod 0755 "$pub" && printf 'not for the network process\n' >"$pub/readable" &&
		chmod 0644 "$pub/readable" || { rm -rf "$pub"; return 1; }
	assert_eq "not for the network process" \
		"$(setpriv --reuid=nobody --regid=nogroup --clear-groups cat "$pub/readable" 2>&1)" \
		"the file as the user nobody reads it"
	escape_case "open:$pub/readable" \
		"network process: test escape open:$pub/readable refused: Permission denied"
	rm -rf "$pub"
	# and what it needs stays readable: check (GetCACaps, GetCACert) says how it was
	# confined
	assert_exit 0 p11e -v check || return
	assert_match "$ERR" "network process: [0-9]+ requests?, peak RSS [0-9]+ KiB, CPU [0-9]+\.[0-9] ms, [0-9]+ page faults; files it could read bounded by Landlock ABI $abi$"
}

# Connections: the network process opens no socket of its own, not even to its own
# server (socket() fails); p11enroll resolves the request's names and connects for it
# (agent/netproc_connect.h).
test_network_process_cannot_open_a_connection_of_its_own() {
	escape_case "connect:127.0.0.1:@PORT@" \
		"network process: test escape connect:127\.0\.0\.1:[0-9]+ refused: Permission denied"
}

# A connection to a second address asked of p11enroll (here another port of the same
# host, where a server listens): refused before any connection is made, and the network
# process is stopped.
test_network_process_gets_no_connection_to_a_second_address() {
	local port i
	port=$(free_port)
	/usr/bin/python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(4)
open(sys.argv[2], "w").write("ready\n")
s.settimeout(60)
try:
    c, _ = s.accept(); open(sys.argv[2], "a").write("accepted\n")
except socket.timeout:
    pass' "$port" "$T/listener.log" </dev/null &
	echo $! >"$T/listener.pid"
	register_pidfile "$T/listener.pid"
	for ((i = 0; i < 100; i++)); do
		[ -s "$T/listener.log" ] && break
		sleep 0.05
	done
	assert_file "$T/listener.log" || return
	escape_case "ask:127.0.0.1:$port" \
		"error: the network process asked for a connection to 127\.0\.0\.1 port $port, where this request does not go \(its server, its proxy\); refused"
	assert_contains run.err "stopped the network process: it asked for a connection p11enroll does not make for it"
	assert_not_contains "$T/listener.log" "accepted"
}

test_network_process_cannot_run_a_program() {
	escape_case "exec:/bin/sh" \
		"network process was killed by signal 31 \(Bad system call\)"
}

# A server named, not numbered: libcurl's resolver thread, /etc/hosts and nsswitch.conf
# read, ::1 tried (nothing listens there) before 127.0.0.1, all within the filter.
test_network_process_resolves_a_name() {
	make_token || return
	start_scepserver "$T/srv" || return
	SCEP_URL=${SCEP_URL/127.0.0.1/localhost}
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	write_conf
	assert_exit 0 p11e -v enroll || return
	assert_contains "$ERR" "network process"
	check_enrollment
}

# The server's CMS is parsed in the network process (netproc_parse.h): the CertRep (its
# signature verified there; p11enroll gets back the fields and checks them again), the
# GetCACert bundle, the CertRep's envelope (p11enroll gets back its cipher, IV, encrypted
# key and content, and decrypts them) and the bundle in the decrypted envelope (p11enroll
# gets back the certificates' DER).
test_server_cms_is_parsed_in_the_network_process() {
	setup_enroll || return
	assert_exit 0 p11e -v enroll || return
	assert_contains "$ERR" "network process: GetCACert bundle taken apart, 1 certificate"
	assert_contains "$ERR" "network process: CertRep parsed, signature and transaction verified"
	# scepserver encrypts with single DES, to the request's self-signed certificate.
	assert_match "$ERR" "network process: CertRep's envelope taken apart: DES-CBC, its key encrypted to the request's certificate, [1-9][0-9]* bytes of content$"
	# The envelope is decrypted here with the token's key; the bundle inside goes back there.
	# The token key did exactly what the exchange needed of it (tok_key_evp's budget): the
	# CSR, the self-signed certificate, the pkiMessage, the envelope's key.
	assert_contains "$ERR" "private key 'p11enroll': 3 of 3 signatures and 1 of 1 decryptions used"
	assert_match "$ERR" "network process: CertRep's certificate bundle taken apart, [1-9][0-9]* certificates?$"
	# Each of the three processes says what it used itself (make bench's split by process).
	local used="peak RSS [1-9][0-9]* KiB, CPU [0-9]+\.[0-9] ms, [1-9][0-9]* page faults"
	assert_match "$ERR" "^p11enroll: this process: $used$"
	assert_match "$ERR" "^p11enroll: token process: $used$"
	assert_match "$ERR" "^p11enroll: network process: 3 requests, $used; "
	check_enrollment
}

# p11enroll-net started by hand, without the socket its parent gives it, says so; and
# p11enroll has no such mode of its own.
test_network_process_is_not_a_command() {
	local net
	net=$(dirname "$P11ENROLL")/p11enroll-net
	"$net" >run.out 2>run.err 3>&-
	assert_eq 64 "$?" "exit status of p11enroll-net by hand"
	assert_contains run.err "started by p11enroll itself"
	"$P11ENROLL" --network-process >run.out 2>run.err 3>&-
	assert_eq 64 "$?" "exit status of p11enroll --network-process"
}

# p11enroll starts the p11enroll-net beside it; without one there, the one in the libexec
# directory it was built for, and a missing one is exit 70 naming that path.
test_network_process_program_is_found_beside_then_in_libexec() {
	make_token || return
	start_scepserver "$T/srv" || return
	write_conf
	mkdir -p "$T/alone" "$T/pair"
	cp "$P11ENROLL" "$T/alone/p11enroll"
	cp "$P11ENROLL" "$(dirname "$P11ENROLL")/p11enroll-net" "$T/pair/"
	"$T/alone/p11enroll" -c "$CONF" enroll >run.out 2>run.err </dev/null
	assert_eq 70 "$?" "exit status without p11enroll-net"
	cat run.err >&2
	assert_match run.err "cannot start the network process \(/.*libexec/p11enroll/p11enroll-net\): No such file or directory"
	assert_eq 0 "$(token_objects | grep -c '^cert|')" "certificates on the token"
	local P11ENROLL=$T/pair/p11enroll
	assert_exit 0 p11e enroll || return
	check_enrollment
}

# p11enroll itself does not load libcurl: a process that never parses a server's bytes
# over TLS has no TLS client in it. Its network process has it. Both link libseccomp: the
# network process's filter, and the token process's (a fork of p11enroll).
test_main_program_does_not_link_libcurl() {
	local net
	net=$(dirname "$P11ENROLL")/p11enroll-net
	ldd "$P11ENROLL" >ldd.main || fail "ldd $P11ENROLL"
	ldd "$net" >ldd.net || fail "ldd $net"
	assert_not_contains ldd.main "libcurl"
	assert_contains ldd.main "libseccomp"
	assert_contains ldd.net "libcurl"
	assert_contains ldd.net "libseccomp"
}

# The token process (tokens/tokserve.c): p11enroll forks it before the module is loaded,
# and it is the only process that maps the module. A module that crashes in the middle of
# the exchange (FAULT_CRASH_AT in the tests' fault module: SIGSEGV in the process that
# loaded it) ends only that process: the run stops with exit 74 naming how it ended, no
# pending request, no certificate on the token; the next run enrolls with the key the
# first one generated (one key pair, one certificate).
test_token_process_crash_stops_the_run_cleanly() {
	fault_setup || return
	# (a sanitized build: the SIGSEGV ends the process, rather than AddressSanitizer's report)
	FAULT_CRASH_AT=C_Sign ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}handle_segv=0 \
		"$P11ENROLL" -c "$CONF" enroll >run.out 2>run.err </dev/null
	assert_eq 74 "$?" "exit status when the module crashes"
	cat run.err >&2
	assert_match run.err "error: the token process of token 'p11e-test' \(pid [0-9]+\) ended in the middle of a request \(killed by signal 11: the PKCS#11 module crashed\?\)"
	assert_eq 0 "$(token_objects | grep -c '^cert|')" "certificates on the token after the crash"
	assert_eq 1 "$(token_objects | grep -c '^privkey|')" "private keys after the crash"
	assert_eq 0 "$(find "$STATE_DIR" -name '*pending*' | wc -l)" "pending files after the crash"
	# what `status` shows of the attempt: the crash, not what failed because of it
	assert_match "$STATE_DIR/last-p11enroll.txt" '^message=the token process of token .* \(killed by signal 11: the PKCS#11 module crashed\?\)$'
	assert_match "$STATE_DIR/last-p11enroll.txt" '^err=-10$'
	assert_exit 0 p11e enroll || return
	assert_contains "$ERR" "reusing key 'p11enroll' left without certificate by an earlier attempt"
	assert_eq 1 "$(token_objects | grep -c '^privkey|')" "private keys after the next run"
	assert_eq 1 "$(token_objects | grep -c '^cert|')" "certificates after the next run"
	check_enrollment
}

# The token process's confinement (tokens/tokconfine.c): a module taken over (the fault
# module's FAULT_TRY, at its first C_Login) that runs a program is killed (SIGSYS): the run
# stops with 74 naming it, nothing stored; one that opens a TCP connection, here to the
# SCEP server itself, is refused (EACCES) and the enrollment goes on.
test_token_process_cannot_run_a_program_or_reach_the_network() {
	fault_setup || return
	FAULT_TRY_AT=C_Login FAULT_TRY=exec:/bin/true FAULT_LOG=$T/fault.log \
		"$P11ENROLL" -c "$CONF" enroll >run.out 2>run.err </dev/null
	assert_eq 74 "$?" "exit status when the module runs a program"
	cat run.err >&2
	assert_match run.err "error: the token process of token 'p11e-test' \(pid [0-9]+\) ended in the middle of a request \(killed by signal 31 \(Bad system call: forbidden in the token process\)\)"
	assert_not_contains "$T/fault.log" "C_Login"
	assert_eq 0 "$(token_objects | grep -c '^cert|')" "certificates after the attempt"
	FAULT_TRY_AT=C_Login FAULT_TRY=connect:127.0.0.1:$SCEP_PORT FAULT_LOG=$T/fault.log \
		assert_exit 0 p11e enroll || return
	assert_contains "$T/fault.log" "TRY connect:127.0.0.1:$SCEP_PORT refused: Permission denied"
	assert_not_contains "$T/fault.log" "SUCCEEDED"
	check_enrollment
}

run_tests
