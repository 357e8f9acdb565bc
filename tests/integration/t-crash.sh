#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-crash.sh: `p11enroll renew --force` killed (SIGKILL) at every step of a renewal, then
# run again. After the kill, the token holds a complete, usable key and certificate (the
# old or the new pair), every file is complete (the old or the new content); the next run
# finishes or tidies up: one key and one certificate (two pairs with keep_old = yes), no
# pending file, no temporary file, cert_file equal to the token's certificate.
# The kills come from the tests' fault module (FAULT_KILL_AT in tests/fault/fault_pkcs11.c,
# at a PKCS#11 call) and an LD_PRELOAD shim (FAULT_IO_KILL in tests/fault/fault_io.c, at a
# write, fsync or rename of a file). The token is read through SoftHSM directly.
# Also: the state files' fsync discipline (strace) and a full file system (a 64 KiB tmpfs).
. "$(dirname "$0")/lib.sh"

MODULE=/usr/lib/softhsm/libsofthsm2.so
FAULT_MODULE=${P11E_FAULT_MODULE:-}
FAULT_IO=${P11E_FAULT_IO:-${FAULT_MODULE%/*}/fault-io.so}
# The shim comes after the sanitizer runtime in a sanitized p11enroll.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0

# fault_token: a token, and both fault modules (missing: a failure; make integration
# builds them).
fault_token() {
	local f
	for f in "$FAULT_MODULE" "$FAULT_IO"; do
		if [ -z "$f" ] || [ ! -f "$f" ]; then
			fail "fault module '$f' missing (P11E_FAULT_MODULE, P11E_FAULT_IO); run the tests with make integration"
			return 1
		fi
	done
	make_token
}

# crash_setup [renewal lines...]: token, scepserver (-allowrenew 0, see t-renew.sh), a
# configuration through the fault module with a [renewal] section made of the arguments,
# and a first enrollment; keeps copies of the enrolled files in $T/before.
crash_setup() {
	fault_token || return
	start_scepserver "$T/srv" -allowrenew 0 || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	MODULE=$FAULT_MODULE write_conf
	if [ $# -gt 0 ]; then
		printf '\n[renewal]\n' >>"$CONF"
		printf '%s\n' "$@" >>"$CONF"
	fi
	assert_exit 0 p11e enroll || return
	mkdir -p before
	cp "$CERT_FILE" before/cert.pem && cp -a "$TRUST_DIR" before/trust || return
	token_objects >objects-before.txt
	read_objects objects-before.txt
	OLD_ID=$OBJ_KEY_ID
	sleep 1.1 # the renewed certificate gets a later notAfter than the first
}

# killed_renew VAR=VALUE...: `renew --force` with the fault variables given, which must
# kill it at the point they name (the fault log says KILLED).
killed_renew() {
	local v
	for v in "$@"; do export "${v?}"; done
	FAULT_LOG=$T/kill.log FAULT_IO_LOG=$T/io.log LD_PRELOAD=$FAULT_IO${LD_PRELOAD:+:$LD_PRELOAD} p11e -v renew --force
	for v in "$@"; do unset "${v%%=*}"; done
	assert_eq 137 "$RC" "exit status of the killed run (SIGKILL)"
	cat "$T/kill.log" "$T/io.log" 2>/dev/null | grep KILLED >killed.txt
	assert_match killed.txt 'KILLED$' || return
}

# usable_pairs: prints the CKA_ID of every private key of the profile whose certificate
# (same CKA_ID) holds its public key, is valid now, chains to the CA, and whose key signs
# (verified with the certificate's public key).
usable_pairs() {
	local id
	echo "data signed on the token" >data.txt
	for id in $(token_objects | awk -F'|' -v l="$KEY_LABEL" '$1 == "privkey" && $3 == l { print $2 }'); do
		rm -f pair.der pair.pub pair.sig key-spki.pem key-spki.pem.pub
		p11tool --read-object --type cert --id "$id" -o pair.der >/dev/null 2>&1 || continue
		token_spki "$id" key-spki.pem PEM 2>/dev/null || continue
		openssl x509 -inform DER -in pair.der -noout -pubkey -out pair.pub 2>/dev/null || continue
		cmp -s pair.pub key-spki.pem || continue # the same key gives the same PEM
		openssl verify -CAfile "$SCEP_CA_PEM" pair.der >/dev/null 2>&1 || continue # chain + validity
		p11tool --sign --id "$id" -m SHA256-RSA-PKCS -i data.txt -o pair.sig >/dev/null 2>&1 || continue
		openssl dgst -sha256 -verify pair.pub -signature pair.sig data.txt >/dev/null 2>&1 || continue
		echo "$id"
	done
}

# token_cert_pems: every certificate on the token, as PEM, into token-certs/N.pem.
token_cert_pems() {
	local id i=0
	rm -rf token-certs && mkdir token-certs
	for id in $(token_objects | awk -F'|' '$1 == "cert" { print $2 }' | sort -u); do
		p11tool --read-object --type cert --id "$id" -o tc.der >/dev/null 2>&1 &&
			openssl x509 -inform DER -in tc.der -out "token-certs/$i.pem" 2>/dev/null
		i=$((i + 1))
	done
}

# same_cert A B: A and B hold the same certificate.
same_cert() {
	rm -f same-a.der same-b.der
	openssl x509 -in "$1" -outform DER -out same-a.der 2>/dev/null &&
		openssl x509 -in "$2" -outform DER -out same-b.der 2>/dev/null &&
		cmp -s same-a.der same-b.der
}

# check_after_kill: a usable pair on the token; cert_file and every trust-dir file complete,
# each the old or a new content.
check_after_kill() {
	local f name ok
	usable_pairs >usable.txt
	assert_eq 1 "$([ -s usable.txt ] && echo 1)" "a usable key+certificate pair on the token after the kill"
	openssl x509 -in "$CERT_FILE" -noout 2>/dev/null
	assert_eq 0 $? "cert_file parses completely after the kill" || return
	token_cert_pems
	ok=0
	same_cert "$CERT_FILE" before/cert.pem && ok=1
	for f in token-certs/*.pem; do same_cert "$CERT_FILE" "$f" && ok=1; done
	assert_eq 1 $ok "cert_file is the old certificate or one on the token"
	for f in "$TRUST_DIR"/*; do
		name=${f##*/}
		case "$name" in *.tmp.*) continue ;; esac # a temporary name: the next run removes it
		openssl x509 -in "$f" -noout 2>/dev/null
		assert_eq 0 $? "trust file $name parses completely after the kill"
		if [ -e "before/trust/$name" ]; then
			cmp -s "$f" "before/trust/$name"
			assert_eq 0 $? "trust file $name has its old content (same CA)"
		fi
	done
}

# no_temp_files: nothing with a temporary name in state_dir, the trust dir, cert_file's dir.
no_temp_files() {
	find "$STATE_DIR" "$TRUST_DIR" "${CERT_FILE%/*}" -maxdepth 1 -name '*.tmp*' 2>/dev/null >tmps.txt
	assert_eq "" "$(cat tmps.txt)" "temporary files left"
}

# check_tidy PAIRS: after the next run, PAIRS keys and certificates of the profile (no
# orphan key, no public key without its private key), the newest certificate in cert_file
# and verifying, no pending file, no temporary file.
check_tidy() {
	local pairs=$1
	assert_eq "$pairs" "$(count_objects privkey)" "private keys after the next run"
	assert_eq "$pairs" "$(count_objects pubkey)" "public keys after the next run"
	assert_eq "$pairs" "$(count_objects cert)" "certificates after the next run"
	usable_pairs >usable.txt
	assert_eq "$pairs" "$(wc -l <usable.txt)" "usable pairs after the next run"
	assert_no_file "$STATE_DIR/pending-p11enroll.txn"
	no_temp_files
	assert_exit 0 p11e status || return
	assert_contains "$OUT" "state:       enrolled, certificate valid"
	# status names the current certificate: cert_file must be it.
	local serial
	serial=$(sed -n 's/^current:[[:space:]]*serial \([^ ]*\).*/\1/p' "$OUT")
	[ -n "$serial" ] || serial=$(out_value serial)
	assert_eq "$serial" "$(openssl x509 -in "$CERT_FILE" -noout -serial | cut -d= -f2)" \
		"cert_file serial == the current certificate's"
	token_cert_pems
	local ok=0 f
	for f in token-certs/*.pem; do same_cert "$CERT_FILE" "$f" && ok=1; done
	assert_eq 1 $ok "cert_file equals a certificate on the token"
	verify_capath "$TRUST_DIR" "$CERT_FILE"
}

# crash_at FORCE PAIRS VAR=VALUE...: the whole scenario after crash_setup: the kill, the
# checks, the next `renew` (with --force when FORCE is "force": the first did not store its
# certificate), and check_tidy PAIRS.
crash_at() {
	local force=$1 pairs=$2
	shift 2
	killed_renew "$@" || return
	check_after_kill
	if [ "$force" = force ]; then
		assert_exit 0 p11e renew --force || return
	else
		assert_exit 0 p11e renew || return
	fi
	check_tidy "$pairs"
}

# The kill switches first, on their own: they kill where told, write half a buffer when
# told, and refuse a mistyped setting loudly.
test_kill_switches_check_themselves() {
	fault_token || return
	local tool=(pkcs11-tool --module "$FAULT_MODULE")
	FAULT_LOG=$T/tool.log FAULT_KILL_AT=C_GetSlotList:2 "${tool[@]}" -L >list.txt 2>&1
	assert_eq 137 $? "pkcs11-tool killed at the 2nd C_GetSlotList"
	assert_eq "C_GetSlotList KILLED" "$(tail -n1 tool.log)" "last line of the fault log"
	FAULT_LOG=$T/after.log FAULT_KILL_AT=C_GetSlotList+after "${tool[@]}" -L >list.txt 2>&1
	assert_eq 137 $? "pkcs11-tool killed after C_GetSlotList"
	assert_eq "C_GetSlotList CKR_OK KILLED" "$(tail -n1 after.log)" "last line of the fault log"
	FAULT_KILL_AT=C_GetSlotList+later "${tool[@]}" -L >bad.txt 2>&1
	assert_contains bad.txt "FAULT_KILL_AT=C_GetSlotList+later: expected NAME[:N][@AFTER][+after]"
	FAULT_IO_KILL="write:$T/half.txt:1:half" LD_PRELOAD=$FAULT_IO \
		/usr/bin/python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
os.write(fd, b"0123456789")' "$T/half.txt"
	assert_eq 137 $? "python killed in its write"
	assert_eq 01234 "$(cat half.txt)" "what the killed write left"
	FAULT_IO_KILL=write LD_PRELOAD=$FAULT_IO /bin/true 2>bad-io.txt
	assert_eq 70 $? "exit status on a mistyped FAULT_IO_KILL"
	assert_contains bad-io.txt "FAULT_IO_KILL=write: expected OP:GLOB"
}

# ---------------------------------------------------------------- token steps (new key)

test_kill_after_keygen() {
	crash_setup || return
	crash_at force 1 FAULT_KILL_AT=C_GenerateKeyPair+after
	assert_not_contains "$ERR" "generating a"
}

# The request is at the CA (scepserver issued it), the reply not yet decrypted.
test_kill_before_certrep_decrypt() {
	crash_setup || return
	crash_at force 1 FAULT_KILL_AT=C_Decrypt
}

test_kill_after_new_cert_stored() {
	crash_setup || return
	crash_at due 1 FAULT_KILL_AT=C_CreateObject+after
}

# The same kill, then the agent (`p11enroll run`) instead of `renew`: not due, it still
# tidies up at once, then sleeps until the renewal is due.
test_kill_after_new_cert_stored_then_agent() {
	crash_setup || return
	killed_renew FAULT_KILL_AT=C_CreateObject+after || return
	check_after_kill
	"$P11ENROLL" -c "$CONF" run >agent.out 2>agent.log </dev/null &
	echo $! >"$T/agent.pid"
	register_pidfile "$T/agent.pid"
	local i
	for ((i = 0; i < 300; i++)); do
		grep -q 'next: renewal due' agent.log && break
		kill -0 "$(cat "$T/agent.pid")" 2>/dev/null || break
		sleep 0.1
	done
	stop_pid "$T/agent.pid"
	sed 's/^/  agent: /' agent.log >&2
	assert_contains agent.log "next: renewal due"
	check_tidy 1
}

# The same kill, then `enroll` (a script that enrolls idempotently): already enrolled, it
# tidies up the same way.
test_kill_after_new_cert_stored_then_enroll() {
	crash_setup || return
	killed_renew FAULT_KILL_AT=C_CreateObject+after || return
	check_after_kill
	assert_exit 0 p11e enroll || return
	assert_contains_i "$ERR" "already"
	check_tidy 1
}

# The same steps through SoftHSM's own way of storing a certificate (the fault module
# answering C_GetInfo as SoftHSM does): a session object, then C_CopyObject onto the
# token. Killed after the session object was made, nothing new is on the token, and the
# next forced run enrolls again; killed after the copy, the new certificate is on the
# token, and the next run tidies up as after a plain store.
test_kill_before_new_cert_copied() {
	crash_setup || return
	crash_at force 1 FAULT_LIB_MANUFACTURER= FAULT_KILL_AT=C_CopyObject
	assert_contains killed.txt "C_CopyObject KILLED"
}

test_kill_after_new_cert_copied() {
	crash_setup || return
	crash_at due 1 FAULT_LIB_MANUFACTURER= FAULT_KILL_AT=C_CopyObject+after
	assert_contains killed.txt "C_CopyObject CKR_OK KILLED"
}

test_kill_before_old_cert_removed() {
	crash_setup || return
	crash_at due 1 FAULT_KILL_AT=C_DestroyObject
}

test_kill_after_first_destroy() {
	crash_setup || return
	crash_at due 1 FAULT_KILL_AT=C_DestroyObject+after
}

test_kill_after_second_destroy() {
	crash_setup || return
	crash_at due 1 FAULT_KILL_AT=C_DestroyObject:2+after
}

# ---------------------------------------------------------------- token steps, variants

test_kill_before_certrep_decrypt_same_key() {
	crash_setup "new_key = no" || return
	crash_at force 1 FAULT_KILL_AT=C_Decrypt
	assert_eq "$OLD_ID" "$(token_objects | grep '^privkey|' | cut -d'|' -f2)" "key ID with new_key = no"
}

test_kill_after_new_cert_stored_same_key() {
	crash_setup "new_key = no" || return
	crash_at due 1 FAULT_KILL_AT=C_CreateObject+after
	assert_eq "$OLD_ID" "$(token_objects | grep '^privkey|' | cut -d'|' -f2)" "key ID with new_key = no"
}

test_kill_after_new_cert_stored_keep_old() {
	crash_setup "keep_old = yes" || return
	crash_at due 2 FAULT_KILL_AT=C_CreateObject+after
}

# ---------------------------------------------------------------- file writes

# trust_as_text: the trust dir's ca.crt in another layout (`openssl x509 -text`, as an
# earlier tool may have left it), also in before/trust: a trust file p11enroll rewrites
# (one that already holds exactly its PEM stays untouched, so no write would happen).
trust_as_text() {
	openssl x509 -in "$TRUST_DIR/ca.crt" -text -out ca-text.pem &&
		cp ca-text.pem "$TRUST_DIR/ca.crt" && cp ca-text.pem before/trust/ca.crt
}

test_kill_mid_trust_write() {
	crash_setup || return
	trust_as_text || return
	crash_at force 1 "FAULT_IO_KILL=write:$TRUST_DIR/ca.crt.tmp.*:1:half"
}

test_kill_before_trust_rename() {
	crash_setup || return
	trust_as_text || return
	crash_at force 1 "FAULT_IO_KILL=rename:$TRUST_DIR/ca.crt"
}

test_kill_mid_cert_file_write() {
	crash_setup || return
	crash_at due 1 "FAULT_IO_KILL=write:$CERT_FILE.tmp.*:1:half"
}

test_kill_before_cert_file_fsync() {
	crash_setup || return
	crash_at due 1 "FAULT_IO_KILL=fsync:$CERT_FILE.tmp.*"
}

test_kill_before_cert_file_rename() {
	crash_setup || return
	crash_at due 1 "FAULT_IO_KILL=rename:$CERT_FILE"
}

test_kill_after_cert_file_rename() {
	crash_setup || return
	crash_at due 1 "FAULT_IO_KILL=rename:$CERT_FILE:1:after"
}

# ---------------------------------------------------------------- the pending file

# crash_setup_responder MODE: as crash_setup, against the project's responder, restarted
# (same CA) in MODE for the renewal.
crash_setup_responder() {
	fault_token || return
	start_responder "$T/resp" normal || return
	MODULE=$FAULT_MODULE write_conf
	assert_exit 0 p11e enroll || return
	mkdir -p before
	cp "$CERT_FILE" before/cert.pem && cp -a "$TRUST_DIR" before/trust || return
	stop_pid "$T/resp/responder.pid"
	start_responder "$T/resp" "$1" || return
	MODULE=$FAULT_MODULE write_conf
}

# The CA holds the request (PENDING); the kill comes half-way through writing the pending
# file. The next `renew --force` asks again with the key the killed run made, `renew`
# polls and completes.
test_kill_mid_pending_write() {
	crash_setup_responder pending || return
	killed_renew "FAULT_IO_KILL=write:$STATE_DIR/pending-p11enroll.txn.tmp.*:1:half" || return
	check_after_kill
	assert_no_file "$STATE_DIR/pending-p11enroll.txn"
	assert_eq 2 "$(count_objects privkey)" "private keys after the kill (old + the request's)"
	assert_exit 75 p11e -v renew --force || return
	assert_contains "$ERR" "reusing key"
	assert_exit 0 p11e renew || return
	check_tidy 1
}

# ---------------------------------------------------------------- the write discipline

# What the kernel saw (strace) for cert_file: a temporary file in the same directory,
# written, fsync'ed, closed, renamed over cert_file, then the directory fsync'ed.
test_cert_file_write_order() {
	command -v strace >/dev/null || {
		fail "strace is missing (tests/install-deps.sh test)"
		return 1
	}
	crash_setup || return
	# (LeakSanitizer cannot work under ptrace: a sanitized build leaves it out here.)
	ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=0 \
		strace -qq -e trace=openat,write,fsync,close,rename,renameat,renameat2 -o strace.txt \
		"$P11ENROLL" -c "$CONF" renew --force >renew.out 2>renew.err </dev/null
	assert_eq 0 $? "exit status of renew --force under strace" || return
	# The calls on cert_file's temporary file and directory, in order, with their fds.
	awk -v f="$CERT_FILE" -v d="$T" '
		function fdof(s) { sub(/.*= /, "", s); return s + 0 }
		index($0, "openat(") && index($0, "\"" f ".tmp.") && /O_CREAT/ { tfd = fdof($0); print "open-tmp"; next }
		tfd != "" && $0 ~ "^write\\(" tfd "," { if (!w) print "write-tmp"; w = 1; next }
		tfd != "" && $0 ~ "^fsync\\(" tfd "\\)" { print "fsync-tmp"; next }
		tfd != "" && $0 ~ "^close\\(" tfd "\\)" { print "close-tmp"; tfd = ""; next }
		/^rename/ && index($0, "\"" f "\"") && index($0, f ".tmp.") { print "rename"; ren = 1; next }
		ren && index($0, "openat(") && index($0, "\"" d "\"") && /O_DIRECTORY/ { dfd = fdof($0); next }
		dfd != "" && $0 ~ "^fsync\\(" dfd "\\)" { print "fsync-dir"; dfd = ""; ren = 0 }
		dfd != "" && $0 ~ "^close\\(" dfd "\\)" { dfd = "" }
	' strace.txt | tr '\n' ' ' >order.txt
	assert_eq "open-tmp write-tmp fsync-tmp close-tmp rename fsync-dir " "$(cat order.txt)" \
		"cert_file write order"
}

# ---------------------------------------------------------------- a full file system

# in_tmpfs DIR FILL SETUP CMD...: in a mount namespace of its own, DIR is a 64 KiB tmpfs;
# SETUP (shell code) runs in DIR, then (FILL=1) a file fills DIR to the last block, then
# p11enroll -c $CONF CMD... runs (RC, OUT, ERR as p11e). The tmpfs is 0700, as a state_dir must
# be (a 1777 one is refused). DIR's files (the filler removed)
# are copied to DIR.after (the previous DIR.after becomes DIR.before); the tmpfs goes with the namespace, also on failure. Needs root
# (as CI runs) or user namespaces; without either the test is skipped, saying why.
in_tmpfs() {
	local dir=$1 fill=$2 setup=$3 ns=(unshare -m)
	shift 3
	[ "$(id -u)" = 0 ] || ns=(unshare -Urm)
	mkdir -p "$dir"
	rm -rf "$dir.before"
	[ ! -d "$dir.after" ] || mv "$dir.after" "$dir.before"
	"${ns[@]}" mount -t tmpfs -o size=64k,mode=0700 p11e-full "$dir" 2>mount.err ||
		skip "cannot mount a tmpfs here ($(head -n1 mount.err)): needs root or user namespaces"
	P11E_RUNS=$((P11E_RUNS + 1))
	OUT=$T/run$P11E_RUNS.out
	ERR=$T/run$P11E_RUNS.err
	echo "+ p11enroll $* (in a 64 KiB tmpfs at $dir, full: $fill)" >&2
	# shellcheck disable=SC2016  # the script expands its own arguments
	"${ns[@]}" bash -c '
		dir=$1 fill=$2 setup=$3 out=$4 err=$5
		shift 5
		mount -t tmpfs -o size=64k,mode=0700 p11e-full "$dir" || exit 99
		(cd "$dir" && eval "$setup") || exit 98
		[ "$fill" = 0 ] || dd if=/dev/zero of="$dir/filler" bs=4k >/dev/null 2>&1
		timeout -k 5 120 "$@" >"$out" 2>"$err" </dev/null
		rc=$?
		rm -f "$dir/filler"
		cp -a "$dir" "$dir.after"
		exit $rc' _ "$dir" "$fill" "$setup" "$OUT" "$ERR" "$P11ENROLL" -c "$CONF" "$@"
	RC=$?
	sed 's/^/  stderr: /' "$ERR" >&2
	echo "  exit $RC" >&2
}

# assert_enospc FILE: the last run failed with 74 naming FILE and the full file system.
assert_enospc() {
	assert_eq 74 "$RC" "exit status on a full file system"
	assert_contains "$ERR" "$1"
	assert_contains "$ERR" "No space left on device"
	assert_not_contains "$ERR" "Sanitizer"
}

# cert_file on a full file system: 74 naming it, the old file intact, no temporary file;
# the old pair stays usable on the token. With room again, `renew` completes.
test_disk_full_cert_file() {
	crash_setup || return
	CERT_FILE=$T/full/cert.pem MODULE=$FAULT_MODULE write_conf
	in_tmpfs "$T/full" 1 "cp '$T/before/cert.pem' cert.pem" renew --force
	assert_enospc "$T/full/cert.pem"
	cmp -s "$T/full.after/cert.pem" before/cert.pem
	assert_eq 0 $? "cert_file unchanged after ENOSPC"
	assert_eq "cert.pem" "$(ls -A "$T/full.after")" "files in cert_file's directory"
	usable_pairs >usable.txt
	assert_contains usable.txt "$OLD_ID"
	in_tmpfs "$T/full" 0 "cp '$T/full.before/cert.pem' cert.pem" renew
	assert_eq 0 "$RC" "exit status of renew with room again"
	CERT_FILE=$T/full.after/cert.pem check_tidy 1
}

# The trust directory on a full file system: 74 naming the file, before anything
# happens on the token; the trust files intact.
test_disk_full_trust_dir() {
	crash_setup || return
	trust_as_text || return
	TRUST_DIR=$T/full MODULE=$FAULT_MODULE write_conf
	in_tmpfs "$T/full" 1 "cp -a '$T/before/trust/.' ." renew --force
	assert_enospc "$T/full/ca.crt"
	diff -r before/trust "$T/full.after" >trust.diff 2>&1
	assert_eq 0 $? "trust directory unchanged after ENOSPC ($(/usr/bin/head -c 200 trust.diff))"
	assert_eq 1 "$(count_objects privkey)" "private keys (token untouched)"
	assert_eq "$OLD_ID" "$(usable_pairs)" "the old pair, usable"
}

# The pending file (state_dir) on a full file system: a poll answered PENDING again cannot
# be recorded: 74 naming it, the previous pending file intact, the request's key kept.
test_disk_full_pending_file() {
	crash_setup_responder pending-forever || return
	STATE_DIR=$T/full MODULE=$FAULT_MODULE write_conf
	in_tmpfs "$T/full" 0 : renew --force
	assert_eq 75 "$RC" "exit status of the first renewal (PENDING)"
	assert_contains "$T/full.after/pending-p11enroll.txn" "polls=0"
	in_tmpfs "$T/full" 1 "cp -a '$T/full.before/.' ." renew
	assert_enospc "$T/full/pending-p11enroll.txn"
	assert_eq "" "$(find "$T/full.after" -name '*.tmp*')" "temporary files in state_dir"
	assert_contains "$T/full.after/pending-p11enroll.txn" "polls=0"
	assert_eq 2 "$(count_objects privkey)" "private keys (the old one and the request's)"
	assert_eq 1 "$(count_objects cert)" "certificates (the old one)"
	assert_eq 1 "$(usable_pairs | wc -l)" "usable pairs (the old one)"
}

run_tests
