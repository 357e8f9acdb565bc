# shellcheck shell=bash disable=SC2034,SC2119,SC2120  # make_token, write_conf: optional arguments; SCEP_* are read by the tests
# lib.sh: sourced by tests/integration/t-*.sh and tests/demo.sh.
#
# A test file defines functions named test_* and ends with `run_tests`. Each test runs in
# a subshell, in its own directory $T, with a trap that stops every process it started
# (also when it fails or is interrupted). Assertions do not abort the test: they record a
# failure, print a line to the test's log and return 1 (use `|| return` where the rest of
# the test would make no sense).
#
# Environment:
#   P11ENROLL      the binary under test (absolute path; set by run.sh)
#   P11E_RUN_DIR   per-run directory (test dirs, the cached CA depots); created if unset
#   P11E_RESULTS   file the runner collects "ok"/"FAIL"/"skip" lines from (optional)
#   P11E_TESTS     only run tests whose "file/name" matches this extended regex
#   P11E_CMD_TIMEOUT  seconds a single p11enroll run may take (default 120)

# Commands the tests run thousands of times (sleep in every wait loop, rm, mkdir, head,
# cut, dirname, basename) as bash's loadable builtins (Debian's bash-builtins, installed by
# tests/install-deps.sh test): a fork and exec costs 4 to 5 ms of CPU on a machine of the
# 2026-12-07 kind, and these were a fifth of the execs of an integration pass. Their
# options are the ones the tests use (rm -rf, mkdir -p -m, head -n, cut -d -f -c); where
# bash-builtins is missing, the commands are the usual ones. A process that must be the
# command itself (a `sleep` whose PID a test signals or looks for by name) is started by
# its path, /usr/bin/sleep.
for _b in sleep rm mkdir head cut dirname basename; do
	enable -f "/usr/lib/bash/$_b" "$_b" 2>/dev/null
done
unset _b
# The loadable mkdir's -p is not atomic: a directory that another process makes between
# its stat(2) and its mkdir(2) is an error (EEXIST), where coreutils' mkdir -p is content.
# Test files running side by side make the run's shared directories (the CA caches) that
# way, and one failed so. When the builtin fails, coreutils' mkdir decides.
if [ "$(type -t mkdir)" = builtin ] && [ -x /bin/mkdir ]; then
	mkdir() { builtin mkdir "$@" 2>/dev/null || /bin/mkdir "$@"; }
fi

P11E_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRCDIR=$(cd "$P11E_LIB_DIR/../.." && pwd)
export SRCDIR

MODULE=${MODULE:-/usr/lib/softhsm/libsofthsm2.so}
SPY_MODULE=${SPY_MODULE:-$(find /usr/lib -maxdepth 2 -name pkcs11-spy.so 2>/dev/null | head -n1)}
SPY_MODULE=${SPY_MODULE:-/usr/lib/x86_64-linux-gnu/pkcs11-spy.so}

# The fault module (P11E_FAULT_MODULE) says it is not SoftHSM, so that p11enroll stores a
# certificate through it as through a card's module or tpm2-pkcs11, with one
# C_CreateObject on the token: the faults and kills the tests put at C_CreateObject are
# the ones cards see. SoftHSM's own way (a session object copied onto the token,
# tokens/p11cert.c) is every other test's; t-crash's *_copied tests and t-faults'
# removed_at_cert_copy put kills and a removal into it with FAULT_LIB_MANUFACTURER= (empty:
# the real module's answer).
export FAULT_LIB_MANUFACTURER=${FAULT_LIB_MANUFACTURER-p11enroll fault module}

# openssl: the CLI without the system's trust store. OpenSSL 3.0's `x509` command loads
#   it every time (X509_STORE_set_default_paths: /etc/ssl/certs, about 140 certificates),
#   which made `openssl x509 -noout -subject` cost 33 ms of CPU instead of 5, and the
#   tests' openssl calls 12% of the CPU of `make check`'s integration passes. No test
#   trusts the system store: every verification names its CA (-CAfile, -CApath, -trusted).
openssl() { SSL_CERT_FILE=/dev/null SSL_CERT_DIR=/nonexistent command openssl "$@"; }

# ---------------------------------------------------------------- processes

# free_port: prints a TCP port that was free on every interface a moment ago. Files run
#   side by side (run.sh), so a port must not be free to take for two of them at once: the
#   ports come from outside the kernel's ephemeral range (where no server binding port 0
#   and no outgoing connection lands), from one of 16 ranges of 512 chosen by the job slot
#   (P11E_PORT_SLOT, set by run.sh), handed out in turn from a counter per range in
#   $P11E_PORTS_DIR (default /tmp/p11e-ports), shared by every run on the machine: `make
#   check` runs two passes at once, and their slot 0 must not both be given the same port
#   (seen: one pass's p11enroll reached the other pass's step-ca). A port picked as a dead
#   end ("nothing listens there") stays so while the file runs. In bash, with flock(1) and
#   one grep: it runs for nearly every test, and a Python start cost 45 ms of CPU here.
free_port() {
	local slot=${P11E_PORT_SLOT:-0} ports_dir=${P11E_PORTS_DIR:-/tmp/p11e-ports}
	local size=512 ranges=16 low high r base n i port hex fd=
	read -r low high </proc/sys/net/ipv4/ip_local_port_range
	r=$((slot % ranges))
	if ((low - 1024 >= size * ranges)); then
		base=$((low - size * ranges + size * r))
	elif ((65535 - high >= size * ranges)); then
		base=$((high + 1 + size * r))
	else
		echo "free_port: no room for $((size * ranges)) ports outside the ephemeral range $low-$high" >&2
		return 1
	fi
	n=$SRANDOM
	if [ -n "$ports_dir" ]; then
		{ mkdir -m 700 "$ports_dir" 2>/dev/null || [ -d "$ports_dir" ]; } &&
			exec {fd}<>"$ports_dir/range-$r" || return 1
		flock "$fd" || {
			exec {fd}>&-
			return 1
		}
		read -r n <&"$fd" || true
		case "$n" in '' | *[!0-9]*) n=0 ;; esac
	fi
	# Free: no TCP socket of any state (a listener, a connection, TIME_WAIT) has the port,
	# on IPv4 or IPv6 (what bind(2) on every address without SO_REUSEADDR would refuse). A
	# port that only a connection's far end uses is passed over too: there are 512.
	for ((i = 0; i < size; i++)); do
		port=$((base + (n + i) % size))
		printf -v hex ':%04X ' "$port"
		grep -qF -- "$hex" /proc/net/tcp /proc/net/tcp6 2>/dev/null && continue
		if [ -n "$fd" ]; then
			printf '%d\n' $((n + i + 1)) >"$ports_dir/range-$r"
			exec {fd}>&-
		fi
		echo "$port"
		return 0
	done
	[ -z "$fd" ] || exec {fd}>&-
	echo "free_port: no free port in $base-$((base + size - 1))" >&2
	return 1
}

# random_hex VAR WORDS: sets VAR to WORDS x 8 hex digits from the kernel's random source
#   (bash's SRANDOM, getrandom(2)), without a fork.
random_hex() {
	local i hex=''
	for ((i = 0; i < $2; i++)); do
		printf -v hex '%s%08x' "$hex" "$SRANDOM"
	done
	printf -v "$1" '%s' "$hex"
}

# register_pidfile FILE: stop_all (and the test trap) will stop the process in FILE.
P11E_PIDFILES=()
register_pidfile() {
	P11E_PIDFILES+=("$1")
}

# _pid_is_newer PID FILE: whether process PID started more than half a second after FILE
# was last written, so it cannot be the process FILE names: that one has ended and its
# PID was given to another (pid_max is 32768 here, and a check spawns far more processes
# than that). Compared on the boot clock, /proc's own: the file's age subtracted from
# the uptime against the process's start in clock ticks. False when unknown.
_pid_is_newer() {
	local stat fields up mtime now start_ms file_ms
	{ read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
	read -ra fields <<<"${stat##*) }" # from field 3 on; starttime is field 22
	read -r up _ </proc/uptime
	mtime=$(stat -c %.3Y "$2" 2>/dev/null) || return 1
	# In milliseconds since boot (integers: no awk): the process's start, and the file's
	# last write (the uptime less the file's age).
	start_ms=$((fields[19] * 1000 / P11E_CLK_TCK))
	now=${EPOCHREALTIME/[.,]/}
	file_ms=$((10#${up/./}0 - (now / 1000 - 10#${mtime/./})))
	[ "$start_ms" -gt $((file_ms + 500)) ]
}
P11E_CLK_TCK=$(getconf CLK_TCK)

# stop_pid FILE: stops the process whose PID is in FILE: SIGTERM, wait up to 5 s,
# then SIGKILL. Removes FILE. Quiet if it has already gone; a PID now used by a
# process that started after FILE was written is left alone (noted in the test's log).
stop_pid() {
	local file=$1 pid i state
	[ -s "$file" ] || return 0
	read -r pid <"$file"
	case "$pid" in '' | *[!0-9]*) pid= ;; esac
	if [ -n "$pid" ] && _pid_is_newer "$pid" "$file"; then
		echo "stop_pid: ${file#"$T"/} names PID $pid, now another process's (started after the file was written): not signalled"
		pid=
	fi
	rm -f "$file"
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		state=
		{ read -r state <"/proc/$pid/stat"; } 2>/dev/null
		state=${state##*) } # from field 3, the state, on
		if [ "${state%% *}" = Z ]; then
			wait "$pid" 2>/dev/null
			break
		fi
		[ $i -eq 50 ] && kill -KILL "$pid" 2>/dev/null
		sleep 0.1
	done
	wait "$pid" 2>/dev/null
	return 0
}

# stop_all: stops every registered process (newest first).
stop_all() {
	local i
	for ((i = ${#P11E_PIDFILES[@]} - 1; i >= 0; i--)); do
		stop_pid "${P11E_PIDFILES[$i]}"
	done
	P11E_PIDFILES=()
}

# ---------------------------------------------------------------- SCEP server

# http_ok PORT PATH: a GET of PATH on 127.0.0.1:PORT answers with status 200 within a
#   second; through bash's /dev/tcp, without a fork (the servers' readiness probes ran curl
#   every 0.1 s, 15 ms of CPU a start here). Loopback refuses a closed port at once.
http_ok() {
	local fd status=''
	exec {fd}<>"/dev/tcp/127.0.0.1/$1" || return 1
	printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$2" "$1" >&"$fd" &&
		IFS= read -r -t 1 status <&"$fd"
	exec {fd}>&-
	[[ $status == "HTTP/1."[01]" 200 "* ]]
} 2>/dev/null

# _ca_depot NAME DEST: puts a scepserver CA depot into DEST. `scepserver ca -init`
# generates a 4096-bit RSA key (0.4-3.7 s, median ~0.9 s measured), so depots are
# generated once per run in $P11E_RUN_DIR/ca-cache/NAME and copied. Each server gets a
# fresh copy: scepserver refuses a second certificate for a DN it already issued.
_ca_depot() {
	local name=$1 dest=$2 cache
	cache=${P11E_CA_CACHE:-$P11E_RUN_DIR/ca-cache}/$name
	_cache_make "$cache" depot/ca.pem _ca_depot_init "$name" || return 1
	rm -rf "$dest"
	cp -r "$cache/depot" "$dest" && chmod -R u+w "$dest"
}

# _ca_depot_init NAME: a new depot in ./depot (run in an empty directory).
_ca_depot_init() {
	if ! scepserver ca -init -depot depot -organization "p11enroll test CA $1" >init.log 2>&1; then
		echo "scepserver ca -init failed:" >&2
		cat init.log >&2
		return 1
	fi
}

# _cache_make DIR FILE CMD [ARGS...]: makes the cache directory DIR, unless it exists,
#   by running CMD in an empty directory beside it that is then renamed to DIR; DIR/FILE
#   is what shows that a cache is whole. Files running side by side (run.sh) share the
#   run's caches: the first to need one makes it under a lock (DIR.lock), the others
#   wait for it; a cache is never changed nor removed once it is there.
_cache_make() {
	local cache=$1 whole=$2 tmp
	shift 2
	[ ! -f "$cache/$whole" ] || return 0
	mkdir -p "${cache%/*}" || return 1
	(
		flock 9 || exit 1
		[ ! -f "$cache/$whole" ] || exit 0
		tmp=$(mktemp -d "${cache%/*}/.new.XXXXXX") || exit 1
		if ! (cd "$tmp" && "$@"); then
			rm -rf "$tmp"
			exit 1
		fi
		rm -rf "$cache" # not whole (made by hand, or cut short before this lock existed)
		mv -T "$tmp" "$cache"
	) 9>"$cache.lock"
}

# start_scepserver DIR [extra scepserver flags...]
#   Runs scepserver in the background with a CA depot in DIR/depot, on $SCEP_LISTEN_PORT if set
#   (else a free port), with challenge $SCEP_CHALLENGE (else a random one). The CA is the
#   cached depot named $SCEP_CA (default "main"; use another name for a different CA).
#   Sets SCEP_URL, SCEP_PORT, SCEP_CHALLENGE, SCEP_PIDFILE, SCEP_CA_PEM (not exported).
#   SCEP_SERIALIZE=1: scepserver behind start_serial_proxy, for tests that send it requests
#   at once (its depot's serial race, tests/README.md "Known failures that are not ours"):
#   SCEP_URL is then the proxy's; SCEP_PORT and SCEP_PIDFILE stay scepserver's own, the
#   proxy's are SCEP_PROXY_PORT and SCEP_PROXY_PIDFILE.
#   Must not be called in $(...): the server is a child of the calling shell.
#   scepserver binds every interface: only ever talk to it through 127.0.0.1.
start_scepserver() {
	local dir=$1 port pid tries i fixed_port=${SCEP_LISTEN_PORT:-}
	shift
	mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || return 1
	_ca_depot "${SCEP_CA:-main}" "$dir/depot" || return 1
	[ -n "${SCEP_CHALLENGE:-}" ] || random_hex SCEP_CHALLENGE 3
	# SCEP_ONE_TIME=1: no static challenge (an NDES double's verifier decides).
	local challenge=(-challenge "$SCEP_CHALLENGE")
	[ -z "${SCEP_ONE_TIME:-}" ] || challenge=()
	for ((tries = 0; tries < 3; tries++)); do
		port=${fixed_port:-$(free_port)}
		scepserver -depot "$dir/depot" -port "$port" \
			${SCEP_ONE_TIME:+-allowrenew 0} "${challenge[@]}" "$@" \
			>>"$dir/scepserver.log" 2>&1 </dev/null &
		pid=$!
		echo "$pid" >"$dir/scepserver.pid"
		register_pidfile "$dir/scepserver.pid"
		for ((i = 0; i < 100; i++)); do
			if ! kill -0 "$pid" 2>/dev/null; then
				wait "$pid" 2>/dev/null
				break
			fi
			if http_ok "$port" "/scep?operation=GetCACaps"; then
				# Not exported: the challenge must not reach p11enroll's environment.
				SCEP_URL=http://127.0.0.1:$port/scep SCEP_PORT=$port
				SCEP_PIDFILE=$dir/scepserver.pid SCEP_CA_PEM=$dir/depot/ca.pem
				[ "${SCEP_SERIALIZE:-}" = 1 ] || return 0
				start_serial_proxy "$dir" "$port" || return 1
				SCEP_URL=http://127.0.0.1:$SCEP_PROXY_PORT/scep
				return 0
			fi
			sleep 0.1
		done
		stop_pid "$dir/scepserver.pid"
		# Retry on another port only if the port was ours to choose (lost a race for it).
		[ -z "$fixed_port" ] || break
	done
	echo "scepserver did not answer GetCACaps on 127.0.0.1:$port within 10 s; its log:" >&2
	tail -n 20 "$dir/scepserver.log" >&2
	return 1
}

# start_double NAME DIR BASE -- COMMAND...: runs one of the tests' own servers (a Python
#   double) in the background, its output appended to DIR/BASE.log, its PID in DIR/BASE.pid
#   (registered: stopped by PID at the end of the test), and waits until it has written
#   the ready file that COMMAND was given (DIR/BASE.port: its port) or has died, for at
#   most 30 s. If it did not start: the end of its log on stderr, stopped, return 1.
start_double() {
	local name=$1 dir=$2 base=$3 i pid
	shift 4
	rm -f "$dir/$base.port"
	"$@" >>"$dir/$base.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$dir/$base.pid"
	register_pidfile "$dir/$base.pid"
	for ((i = 0; i < 600; i++)); do
		[ -s "$dir/$base.port" ] && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	echo "$name did not start; its log:" >&2
	tail -n 20 "$dir/$base.log" >&2
	stop_pid "$dir/$base.pid"
	return 1
}

# SCEP_DEPOT_RACE: an extended regex for the texts scepserver's file depot (scep 2.1.0,
#   depot/file/depot.go) logs after "failed to sign CSR" when two requests signed at the
#   same moment trip over its serial file, which writeSerial removes and creates again:
#   Serial() read it while it was empty ("could not convert  to serial number"), or its
#   stat found the file and the open did not ("open .../depot/serial: no such file or
#   directory"), or two requests created it at once ("open .../depot/serial: file exists").
#   tests/README.md, known failures.
SCEP_DEPOT_RACE='could not convert .*to serial number|depot/serial: (no such file or directory|file exists)'

# start_serial_proxy DIR PORT
#   Runs tests/doubles/serial_proxy.py on a free 127.0.0.1 port in front of
#   http://127.0.0.1:PORT: every request is forwarded, one at a time (the others wait at the
#   proxy), its log in DIR/serial-proxy.log (a line per request with the time it waited).
#   Sets SCEP_PROXY_PORT and SCEP_PROXY_PIDFILE. Not in $(...).
start_serial_proxy() {
	local dir=$1 backend=$2
	start_double serial_proxy.py "$dir" serial-proxy -- \
		/usr/bin/python3 "$SRCDIR/tests/doubles/serial_proxy.py" --port 0 --backend "$backend" \
		--ready-file "$dir/serial-proxy.port" || return 1
	SCEP_PROXY_PORT=$(cat "$dir/serial-proxy.port") SCEP_PROXY_PIDFILE=$dir/serial-proxy.pid
}

# scep_ops OP: how many OP requests (GetCACert, GetCACaps, PKIOperation...) the test's
#   scepserver in $T/srv has logged so far.
scep_ops() {
	grep -c "op=$1 " "$T/srv/scepserver.log" || true
}

# ca_fingerprint PEM: "AB:CD:..." SHA-256 over the DER certificate.
ca_fingerprint() {
	local fp
	fp=$(openssl x509 -in "$1" -noout -fingerprint -sha256) || return
	echo "${fp##*=}"
}

# start_responder DIR MODE [extra flags...]
#   Runs the project's SCEP responder double (tests/doubles/scep_responder.py: NDES-shaped,
#   separate RA signing/encryption certificates, PENDING and hostile modes; Python with
#   asn1crypto + cryptography, independent of p11enroll's C code) on a free 127.0.0.1
#   port, with challenge $SCEP_CHALLENGE (else a random one; "-": none, e.g. when the NDES
#   double issues them). Its CA and RA keys are generated once per run and copied. Sets SCEP_URL,
#   SCEP_PIDFILE, SCEP_CA_PEM and CA_FP (the CA's sha256 pin). Not in $(...).
start_responder() {
	local dir=$1 mode=$2 cache
	shift 2
	mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || return 1
	cache=${P11E_CA_CACHE:-$P11E_RUN_DIR/ca-cache}/responder
	[ ! -d "$cache" ] || [ -e "$dir/pki" ] || cp -r "$cache" "$dir/pki" || return 1
	[ -n "${SCEP_CHALLENGE:-}" ] || random_hex SCEP_CHALLENGE 3
	local challenge=(--challenge "$SCEP_CHALLENGE")
	[ "$SCEP_CHALLENGE" != - ] || challenge=()
	start_double "the SCEP responder" "$dir" responder -- \
		/usr/bin/python3 "$SRCDIR/tests/doubles/scep_responder.py" --port 0 --dir "$dir/pki" \
		--mode "$mode" "${challenge[@]}" --ready-file "$dir/responder.port" "$@" || return 1
	# Published whole by a rename; a file running beside this one may have been first.
	if [ ! -d "$cache" ]; then
		local tmp
		mkdir -p "${cache%/*}" && tmp=$(mktemp -d "$cache.new.XXXXXX") &&
			cp -r "$dir/pki/." "$tmp" && { mv -T "$tmp" "$cache" 2>/dev/null || rm -rf "$tmp"; }
	fi
	SCEP_URL=http://127.0.0.1:$(cat "$dir/responder.port")/scep
	SCEP_PIDFILE=$dir/responder.pid SCEP_CA_PEM=$dir/pki/ca.pem
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
}

# start_ndes DIR [ndes_admin.py flags...]
#   The MSCEP_ADMIN double (tests/doubles/ndes_admin.py: NTLM verified against the
#   password, UTF-16LE pages, one-time challenges in DIR/challenges) on a free 127.0.0.1
#   port, for the account EXAMPLE\enroll with a random password. Sets NDES_URL,
#   NDES_PW_FILE, NDES_DIR and NDES_VERIFY (a -csrverifierexec program for scepserver
#   that accepts each of those challenges once). Not in $(...).
start_ndes() {
	local dir=$1
	shift
	mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || return 1
	NDES_DIR=$dir NDES_PW_FILE=$dir/ndes.pass
	if [ -n "${NDES_PASSWORD:-}" ]; then
		(umask 077 && printf '%s' "$NDES_PASSWORD" >"$NDES_PW_FILE")
	else
		(umask 077 && od -An -N9 -tx1 /dev/urandom | tr -d ' \n' >"$NDES_PW_FILE")
	fi
	start_double ndes_admin.py "$dir" ndes -- \
		/usr/bin/python3 "$SRCDIR/tests/doubles/ndes_admin.py" --port 0 --dir "$dir/state" \
		--user 'EXAMPLE\enroll' --domain EXAMPLE --password-file "$NDES_PW_FILE" \
		--ready-file "$dir/ndes.port" "$@" || return 1
	NDES_URL=http://127.0.0.1:$(cat "$dir/ndes.port")/CertSrv/MSCEP_ADMIN/
	case " $* " in *" --https "*) NDES_URL=https://${NDES_URL#http://} ;; esac
	NDES_VERIFY=$(/usr/bin/python3 "$SRCDIR/tests/doubles/challenge_verifier.py" \
		--write-wrapper "$dir/state") || return 1
}

# ---------------------------------------------------------------- step-ca

# _stepca_bin: builds smallstep step-ca 0.19 from Debian's Go source if needed
#   (tests/stepca/build.sh; the binary cached in ${P11E_BUILD_DIR:-$SRCDIR/build}/stepca,
#   Go's build cache in ~/.cache/p11enroll: the first build on a machine takes about 35 s
#   wall and 60 s CPU, one in a fresh clone 3 s, later ones nothing) and sets STEPCA_BIN. On failure it
#   records a test failure: a missing step-ca is a failure, not a skip.
_stepca_bin() {
	local out=${P11E_BUILD_DIR:-$SRCDIR/build}/stepca
	mkdir -p "$out" || {
		fail "cannot create $out for step-ca"
		return 1
	}
	if ! "$SRCDIR/tests/stepca/build.sh" "$out" >"$T/stepca-build.log" 2>&1; then
		cat "$T/stepca-build.log" >&2
		fail "step-ca could not be built: $(grep -v '^ ' "$T/stepca-build.log" | tail -n1 | cut -c1-300)"
		return 1
	fi
	STEPCA_BIN=$out/step-ca
}

# _stepca_make_pki DIR: a two-tier PKI made with the openssl CLI in DIR: root.pem (RSA,
#   self-signed) and int.pem/int.key (RSA, CA:TRUE pathlen 0, keyCertSign+cRLSign only,
#   the key encrypted with the password in DIR/password, 0600). step-ca needs no root key.
_stepca_make_pki() {
	local dir=$1
	(umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$dir/password") || return 1
	cat >"$dir/openssl.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
[root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[int]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
CNF
	(
		umask 077
		cd "$dir" &&
			openssl req -x509 -newkey rsa:2048 -nodes -keyout root.key -days 3650 -sha256 \
				-subj "/O=p11enroll test/CN=p11enroll step-ca test root" \
				-config openssl.cnf -extensions root -out root.pem &&
			openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -aes-256-cbc \
				-pass file:password -out int.key &&
			openssl req -new -key int.key -passin file:password -config openssl.cnf \
				-subj "/O=p11enroll test/CN=p11enroll step-ca test intermediate" -out int.csr &&
			openssl x509 -req -in int.csr -CA root.pem -CAkey root.key -set_serial 0x1001 \
				-days 3650 -sha256 -extfile openssl.cnf -extensions int -out int.pem &&
			chmod 0644 root.pem int.pem
	)
}

# _stepca_pki DEST: copies the run's step-ca PKI (made once per run in
#   $P11E_CA_CACHE/stepca, like _ca_depot) into DEST: root.pem, int.pem, int.key, password.
_stepca_pki() {
	local dest=$1 cache
	cache=${P11E_CA_CACHE:-$P11E_RUN_DIR/ca-cache}/stepca
	if ! _cache_make "$cache" int.pem _stepca_pki_init; then
		fail "could not make the step-ca test PKI with openssl"
		return 1
	fi
	rm -rf "$dest"
	(umask 077 && mkdir -p "$dest") &&
		cp -p "$cache/root.pem" "$cache/int.pem" "$cache/int.key" "$cache/password" "$dest/"
}

# _stepca_pki_init: _stepca_make_pki in the current directory, its output shown on failure.
_stepca_pki_init() {
	_stepca_make_pki . >pki.log 2>&1 || {
		cat pki.log >&2
		return 1
	}
}

# _json_str TEXT: TEXT as a JSON string (quotes and backslashes escaped).
_json_str() {
	local s=${1//\\/\\\\}
	printf '"%s"' "${s//\"/\\\"}"
}

# start_stepca DIR [--include-root] [--cipher N]
#   Runs smallstep step-ca 0.19 in the background with one SCEP provisioner "scep":
#   challenge $SCEP_CHALLENGE (else a random one), includeRoot false (step-ca's default;
#   --include-root: true, GetCACert then returns the intermediate and the root),
#   minimumPublicKeyLength 2048, encryptionAlgorithmIdentifier N for its replies (0
#   DES-CBC, the default; 1 AES-128-CBC; 2 AES-256-CBC; 3/4 AES-GCM), certificates valid
#   24 h (EC keys need no setting: step-ca's key validator accepts them).
#   The two-tier PKI (RSA root, RSA intermediate that signs and decrypts) is made once
#   per run and copied to DIR/pki; DIR/ca.json (it holds the challenge) and the key's
#   password file are 0600; the password is passed by file. It listens on 127.0.0.1
#   only: https on one free port (unused by the tests), plain http on another (SCEP).
#   Sets (not exported): SCEP_URL (http://127.0.0.1:PORT/scep/scep), SCEP_PORT,
#   SCEP_CHALLENGE, SCEP_PIDFILE, STEPCA_DIR, STEPCA_LOG, STEPCA_ROOT_PEM, STEPCA_INT_PEM,
#   ROOT_FP and INT_FP ("sha256:AB:CD:..."). Registers the pidfile: the test's trap
#   stops it. Must not be called in $(...). Records a failure (and returns 1) if step-ca
#   cannot be built or does not start.
start_stepca() {
	local dir=$1 include_root=false cipher=0 hport iport pid tries i
	shift
	while [ $# -gt 0 ]; do
		case "$1" in
		--include-root) include_root=true ;;
		--cipher)
			cipher=${2:-}
			shift
			;;
		*)
			fail "start_stepca: unknown option '$1'"
			return 1
			;;
		esac
		shift
	done
	case "$cipher" in '' | *[!0-9]*)
		fail "start_stepca: --cipher wants a number, got '$cipher'"
		return 1
		;;
	esac
	mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || return 1
	_stepca_bin || return 1
	_stepca_pki "$dir/pki" || return 1
	[ -n "${SCEP_CHALLENGE:-}" ] || random_hex SCEP_CHALLENGE 3
	for ((tries = 0; tries < 3; tries++)); do
		hport=$(free_port)
		iport=$(free_port)
		[ "$hport" != "$iport" ] || continue
		(
			umask 077
			cat >"$dir/ca.json" <<JSON
{
	"root": $(_json_str "$dir/pki/root.pem"),
	"crt": $(_json_str "$dir/pki/int.pem"),
	"key": $(_json_str "$dir/pki/int.key"),
	"address": "127.0.0.1:$hport",
	"insecureAddress": "127.0.0.1:$iport",
	"dnsNames": ["127.0.0.1", "localhost"],
	"logger": {"format": "text"},
	"db": null,
	"authority": {
		"provisioners": [{
			"type": "SCEP",
			"name": "scep",
			"challenge": $(_json_str "$SCEP_CHALLENGE"),
			"includeRoot": $include_root,
			"minimumPublicKeyLength": 2048,
			"encryptionAlgorithmIdentifier": $cipher,
			"claims": {"defaultTLSCertDuration": "24h"}
		}]
	}
}
JSON
		) || return 1
		# STEPPATH: its config directory, which it creates, stays in DIR (not ~/.step).
		STEPPATH=$dir/steppath "$STEPCA_BIN" --password-file "$dir/pki/password" \
			"$dir/ca.json" >>"$dir/step-ca.log" 2>&1 </dev/null &
		pid=$!
		echo "$pid" >"$dir/step-ca.pid"
		register_pidfile "$dir/step-ca.pid"
		for ((i = 0; i < 100; i++)); do
			if ! kill -0 "$pid" 2>/dev/null; then
				wait "$pid" 2>/dev/null
				break
			fi
			if http_ok "$iport" "/scep/scep?operation=GetCACaps"; then
				# Not exported: the challenge must not reach p11enroll's environment.
				SCEP_URL=http://127.0.0.1:$iport/scep/scep SCEP_PORT=$iport
				SCEP_PIDFILE=$dir/step-ca.pid STEPCA_DIR=$dir STEPCA_LOG=$dir/step-ca.log
				STEPCA_ROOT_PEM=$dir/pki/root.pem STEPCA_INT_PEM=$dir/pki/int.pem
				ROOT_FP=sha256:$(ca_fingerprint "$STEPCA_ROOT_PEM")
				INT_FP=sha256:$(ca_fingerprint "$STEPCA_INT_PEM")
				return 0
			fi
			sleep 0.1
		done
		stop_pid "$dir/step-ca.pid"
		# "address already in use": lost the race for a port; try others.
		grep -q 'address already in use' "$dir/step-ca.log" || break
	done
	tail -n 20 "$dir/step-ca.log" >&2
	fail "step-ca did not answer GetCACaps on 127.0.0.1:$iport within 10 s: $(grep -v '^time=' \
		"$dir/step-ca.log" | tail -n1 | cut -c1-300)"
	return 1
}

# ---------------------------------------------------------------- token

# make_tpm_token [LABEL]: a TPM token (default label p11e-tpm) in $T/tpm (or $TPM_DIR):
#   softhsm-setup/tpm-start.sh's swtpm, private D-Bus bus and tpm2-abrmd, stopped by PID by
#   the test's trap. Exports the environment tpm2-pkcs11 needs (DBUS_SESSION_BUS_ADDRESS,
#   TPM2_PKCS11_TCTI, TPM2_PKCS11_STORE...); sets TOKEN_LABEL, PIN_FILE, PIN and MODULE, so
#   that p11tool, count_objects, token_objects and write_conf use the TPM token
#   (pkcs11-tool selects it by label).
#   The TPM's state, the tpm2-pkcs11 store with the token and its PINs are a copy of a TPM
#   made once per run and label ($P11E_CA_CACHE/tpm-LABEL), which tpm-start.sh reuses: a
#   test no longer pays for tpm2_ptool init and addtoken. Every test's TPM is then the same
#   one (seeds, primary key, token, PINs), each with its own swtpm, bus and tpm2-abrmd.
make_tpm_token() {
	local dir=${TPM_DIR:-$T/tpm} cache t0
	TOKEN_LABEL=${1:-p11e-tpm}
	cache=${P11E_CA_CACHE:-$P11E_RUN_DIR/ca-cache}/tpm-$TOKEN_LABEL
	_cache_make "$cache" store/tpm2_pkcs11.sqlite3 _tpm_template "$TOKEN_LABEL" || {
		fail "could not make the run's TPM for token '$TOKEN_LABEL' (softhsm-setup/tpm-start.sh)"
		return 1
	}
	mkdir -p "$dir" && cp -a "$cache/." "$dir/" || return
	# Registered before they exist, one by one (stop_pid is quiet about a missing file),
	# so that even an interrupted start is cleaned up. stop_all goes newest first:
	# tpm2-abrmd, then the bus, then swtpm, the order of tpm-stop.sh.
	register_pidfile "$dir/swtpm.pid"
	register_pidfile "$dir/dbus.pid"
	register_pidfile "$dir/abrmd.pid"
	t0=$(date +%s%N)
	"$SRCDIR/softhsm-setup/tpm-start.sh" "$dir" "$TOKEN_LABEL" >"$dir.env" 2>"$dir.log" || {
		cat "$dir.log" >&2
		fail "softhsm-setup/tpm-start.sh failed"
		return 1
	}
	echo "  tpm-start.sh: $((($(date +%s%N) - t0) / 1000000)) ms" >&2
	# shellcheck disable=SC1090
	. "$dir.env"
	MODULE=$P11E_TPM_MODULE
	PIN_FILE=$P11E_TPM_PIN_FILE
	PIN=$(head -n1 "$PIN_FILE")
}

# _tpm_template LABEL: a TPM with the token LABEL, made and stopped again, in ./ (run in an
#   empty directory by _cache_make): ./tpm, ./store, ./pin, ./so-pin.
_tpm_template() {
	local rc=0
	"$SRCDIR/softhsm-setup/tpm-start.sh" "$PWD/t" "$1" >/dev/null 2>start.log || rc=1
	"$SRCDIR/softhsm-setup/tpm-stop.sh" "$PWD/t" >/dev/null 2>>start.log || rc=1
	if [ $rc != 0 ]; then
		cat start.log >&2
		return 1
	fi
	mv t/tpm t/store t/pin t/so-pin . && rm -rf t start.log
}

# make_token [LABEL]: a fresh SoftHSM token in $T/hsm (softhsm-setup/softhsm-token.sh).
#   Exports SOFTHSM2_CONF; sets TOKEN_LABEL, PIN_FILE, PIN (a throw-away test PIN).
make_token() {
	local dir=${HSM_DIR:-$T/hsm}
	TOKEN_LABEL=${1:-p11e-test}
	"$SRCDIR/softhsm-setup/softhsm-token.sh" "$dir" "$TOKEN_LABEL" >"$dir.env" 2>"$dir.log" || {
		cat "$dir.log" >&2
		return 1
	}
	# shellcheck disable=SC1090
	. "$dir.env"
	PIN_FILE=$dir/pin
	IFS= read -r PIN <"$PIN_FILE"
}

# p11tool ARGS...: pkcs11-tool logged in to the test token.
p11tool() {
	pkcs11-tool --module "$MODULE" --token-label "$TOKEN_LABEL" --login --pin "$PIN" "$@"
}

# token_spki ID FILE [PEM|DER]: the public key of the test token's key ID as a
#   SubjectPublicKeyInfo in FILE (DER unless told; pkcs11-tool's export in FILE.pub).
#   Returns 2 when pkcs11-tool cannot export it (0.23 cannot export a P-384 key), else
#   openssl's status (its errors on stderr). A certificate's key compares with it as PEM:
#   `openssl x509 -pubkey` writes the same PEM for the same key.
token_spki() {
	p11tool --read-object --type pubkey --id "$1" -o "$2.pub" >/dev/null 2>&1 || return 2
	openssl pkey -pubin -inform DER -in "$2.pub" -outform "${3:-DER}" -out "$2"
}

# count_objects TYPE: number of privkey|pubkey|cert objects on the test token.
count_objects() {
	local line n=0
	while IFS= read -r line; do
		case "$line" in "Private Key Object"* | "Public Key Object"* | "Certificate Object"*) n=$((n + 1)) ;; esac
	done < <(p11tool --list-objects --type "$1" 2>/dev/null)
	echo "$n"
}

# parse_objects: `pkcs11-tool -O` output on stdin -> one line per object:
# "TYPE|ID|LABEL|ACCESS" with TYPE privkey, pubkey or cert (ID in lower-case hex).
parse_objects() {
	local line type='' id='' label='' access=''
	while IFS= read -r line || [ -n "$line" ]; do
		case "$line" in
		"  label:"*) label=${line#  label:} label=${label#"${label%%[! ]*}"} ;;
		"  ID:"*) id=${line#  ID:} id=${id#"${id%%[! ]*}"} ;;
		"  Access:"*) access=${line#  Access:} access=${access#"${access%%[! ]*}"} ;;
		[!\ ]*) # an object's first line, or another line that ends the one before
			[ -z "$type" ] || printf '%s|%s|%s|%s\n' "$type" "${id,,}" "$label" "$access"
			type='' id='' label='' access=''
			case "$line" in
			"Private Key Object"*) type=privkey ;;
			"Public Key Object"*) type=pubkey ;;
			"Certificate Object"*) type=cert ;;
			esac
			;;
		esac
	done
	[ -z "$type" ] || printf '%s|%s|%s|%s\n' "$type" "${id,,}" "$label" "$access"
}

# read_objects FILE: reads parse_objects' lines in FILE into OBJ_KEYS and OBJ_CERTS (how
#   many private keys and certificates) and OBJ_KEY_ID, OBJ_KEY_LABEL, OBJ_KEY_ACCESS,
#   OBJ_CERT_ID (the last of each), in bash.
read_objects() {
	local type id label access
	OBJ_KEYS=0 OBJ_CERTS=0 OBJ_KEY_ID='' OBJ_KEY_LABEL='' OBJ_KEY_ACCESS='' OBJ_CERT_ID=''
	while IFS='|' read -r type id label access; do
		case "$type" in
		privkey) OBJ_KEYS=$((OBJ_KEYS + 1)) OBJ_KEY_ID=$id OBJ_KEY_LABEL=$label OBJ_KEY_ACCESS=$access ;;
		cert) OBJ_CERTS=$((OBJ_CERTS + 1)) OBJ_CERT_ID=$id ;;
		esac
	done <"$1"
}

# token_objects: parse_objects of the test token.
token_objects() {
	p11tool --list-objects 2>/dev/null | parse_objects
}

# ---------------------------------------------------------------- TLS with the token key

# make_tls_server DIR: a throw-away CA (DIR/ca.pem) and a server certificate for IP
#   127.0.0.1 (DIR/server.pem, DIR/server.key; P-256, quick to make), for servers the
#   tests' TLS clients talk to. Records a failure (openssl's output in DIR/setup.log)
#   when it cannot.
make_tls_server() {
	local dir=$1
	mkdir -p "$dir" || return 1
	if ! {
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-keyout "$dir/ca.key" -out "$dir/ca.pem" -days 2 -subj "/CN=throw-away TLS test CA" \
			-addext "basicConstraints=critical,CA:TRUE" \
			-addext "keyUsage=critical,keyCertSign" &&
			openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
				-keyout "$dir/server.key" -out "$dir/server.csr" -subj "/CN=127.0.0.1" &&
			printf 'subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n' >"$dir/ext.cnf" &&
			openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
				-set_serial 2 -days 2 -extfile "$dir/ext.cnf" -out "$dir/server.pem"
	} >"$dir/setup.log" 2>&1; then
		fail "could not make the TLS server's certificate: $(tail -n1 "$dir/setup.log")"
		return 1
	fi
}

# engine_conf DIR: what a TLS program needs to sign with the token key through OpenSSL's
#   pkcs11 engine (libengine-pkcs11-openssl): DIR/engine.cnf, an OPENSSL_CONF that loads
#   it with MODULE_PATH=$MODULE, and DIR/engine.pin, the PIN for the key URI's
#   pin-source=file: (RFC 7512; never in argv), 0600 and without a newline (libp11 takes
#   the file's first line with its newline, and the login fails). Sets ENGINE_CNF and
#   ENGINE_PIN. Records a failure when the engine is not installed.
engine_conf() {
	local dir=$1 engine=/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so
	[ -e "$engine" ] || engine=$(find /usr/lib -path '*engines-3/pkcs11.so' 2>/dev/null | head -n1)
	if [ -z "$engine" ] || [ ! -e "$engine" ]; then
		fail "OpenSSL's pkcs11 engine is missing: install libengine-pkcs11-openssl"
		return 1
	fi
	ENGINE_CNF=$dir/engine.cnf ENGINE_PIN=$dir/engine.pin
	cat >"$ENGINE_CNF" <<EOF
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = $engine
MODULE_PATH = $MODULE
init = 0
EOF
	(umask 077 && printf '%s' "$PIN" >"$ENGINE_PIN")
}

# cert_serial PEM: the certificate's serial as p11enroll shows it (upper-case hex).
cert_serial() {
	openssl x509 -in "$1" -noout -serial | sed 's/^serial=//' | tr 'a-f' 'A-F'
}

# ---------------------------------------------------------------- configuration

# write_conf [FILE]: writes a p11enroll configuration (default $T/p11enroll.conf, mode
# 0600) from these variables and sets CONF to it:
#   SCEP_URL (required), SCEP_CHALLENGE -> CHALLENGE_FILE (default $T/challenge, 0600),
#   CA_FP (optional), SCEP_TIMEOUT (optional), TOKEN_URI (default pkcs11:token=$TOKEN_LABEL),
#   MODULE, PIN_FILE, KEY_TYPE (rsa:2048), KEY_LABEL (p11enroll), DN, SAN_DNS,
#   TRUST_DIR ($T/trust), STATE_DIR ($T/state), CERT_FILE ($T/cert.pem).
#   NDES: CHALLENGE_URL, CHALLENGE_USER, CHALLENGE_PW_FILE, CHALLENGE_CHARS, CHALLENGE_LENGTH,
#   CHALLENGE_INSECURE_HTTP (yes for the plain-http NDES double); USE_PROXY, PROXY, CA_FILE.
#   [hooks] (a section before [agent], only when one of them is set): HOOK_AFTER,
#   HOOK_BEFORE_REMOVE (command lines as written in the file), HOOK_TIMEOUT.
# Set a variable to "-" to leave its line out.
write_conf() {
	CONF=${1:-$T/p11enroll.conf}
	: "${CHALLENGE_FILE:=$T/challenge}"
	: "${TOKEN_URI:=pkcs11:token=$TOKEN_LABEL}"
	: "${KEY_TYPE:=rsa:2048}" "${KEY_LABEL:=p11enroll}"
	: "${DN:=CN=host.example.com,O=Example}" "${SAN_DNS:=host.example.com, alt.example.com}"
	: "${TRUST_DIR:=$T/trust}" "${STATE_DIR:=$T/state}" "${CERT_FILE:=$T/cert.pem}"
	if [ "$CHALLENGE_FILE" != - ] && [ -n "${SCEP_CHALLENGE:-}" ]; then
		(umask 077 && printf '%s\n' "$SCEP_CHALLENGE" >"$CHALLENGE_FILE")
	fi
	_line() { [ -z "$2" ] || [ "$2" = - ] || printf '%s = %s\n' "$1" "$2"; }
	(
		umask 077
		{
			echo "# p11enroll test configuration"
			echo "[scep]"
			_line url "${SCEP_URL:-}"
			_line challenge_file "$CHALLENGE_FILE"
			_line ca_fingerprint "${CA_FP:-}"
			_line timeout "${SCEP_TIMEOUT:-}"
			_line challenge_url "${CHALLENGE_URL:-}"
			_line challenge_user "${CHALLENGE_USER:-}"
			_line challenge_password_file "${CHALLENGE_PW_FILE:-}"
			_line challenge_chars "${CHALLENGE_CHARS:-}"
			_line challenge_length "${CHALLENGE_LENGTH:-}"
			_line challenge_insecure_http "${CHALLENGE_INSECURE_HTTP:-}"
			_line use_proxy "${USE_PROXY:-}"
			_line proxy "${PROXY:-}"
			_line ca_file "${CA_FILE:-}"
			echo
			echo "[token]"
			_line uri "$TOKEN_URI"
			_line module "$MODULE"
			_line pin_file "${PIN_FILE:-}"
			echo
			echo "[key]"
			_line type "$KEY_TYPE"
			_line label "$KEY_LABEL"
			echo
			echo "[subject]"
			_line dn "$DN"
			_line san_dns "$SAN_DNS"
			echo
			echo "[trust]"
			_line dir "$TRUST_DIR"
			echo
			if [ -n "${HOOK_AFTER:-}${HOOK_BEFORE_REMOVE:-}${HOOK_TIMEOUT:-}" ]; then
				echo "[hooks]"
				_line after "${HOOK_AFTER:-}"
				_line before_remove "${HOOK_BEFORE_REMOVE:-}"
				_line timeout "${HOOK_TIMEOUT:-}"
				echo
			fi
			echo "[agent]"
			_line state_dir "$STATE_DIR"
			_line cert_file "$CERT_FILE"
		} >"$CONF"
	)
}

# setup_enroll: token + scepserver + configuration, the usual start of a test.
#   CA_FP defaults to the server CA's correct "sha256:..." fingerprint; set CA_FP=- for none.
setup_enroll() {
	make_token || return
	start_scepserver "$T/srv" || return
	if [ -z "${CA_FP:-}" ]; then
		CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	fi
	write_conf
}

# fault_setup: token, scepserver, a configuration through the tests' fault module
#   (P11E_FAULT_MODULE, tests/fault/fault_pkcs11.c; missing: a failure, make integration
#   builds it).
fault_setup() {
	local fault=${P11E_FAULT_MODULE:-}
	if [ -z "$fault" ] || [ ! -f "$fault" ]; then
		fail "fault module '$fault' missing (P11E_FAULT_MODULE); make integration builds it"
		return 1
	fi
	make_token || return
	start_scepserver "$T/srv" || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	MODULE=$fault write_conf
}

# norm_hex TEXT: lower-case hex digits only ("AB:CD" -> "abcd").
norm_hex() {
	printf '%s' "$1" | tr -d ': \n' | tr 'A-F' 'a-f'
}

# conf_line FILE REGEX: number of the first line matching REGEX.
conf_line() {
	grep -nE "$2" "$1" | head -n1 | cut -d: -f1
}

# ---------------------------------------------------------------- running p11enroll

# p11e ARGS...: runs "$P11ENROLL" -c "$CONF" ARGS... with a time limit. Sets RC and OUT/ERR
# (files holding its stdout/stderr; each run gets new ones, kept in $T).
# p11e_raw ARGS...: the same without -c.
P11E_RUNS=0
p11e_raw() {
	P11E_RUNS=$((P11E_RUNS + 1))
	OUT=$T/run$P11E_RUNS.out
	ERR=$T/run$P11E_RUNS.err
	echo "+ p11enroll $*" >&2
	timeout -k 5 "${P11E_CMD_TIMEOUT:-120}" "$P11ENROLL" "$@" >"$OUT" 2>"$ERR" </dev/null
	RC=$?
	[ $RC -ne 124 ] || echo "(killed after ${P11E_CMD_TIMEOUT:-120} s)" >>"$ERR"
	_prefix_lines '  stdout: ' <"$OUT" >&2
	_prefix_lines '  stderr: ' <"$ERR" >&2
	echo "  exit $RC" >&2
	return $RC
}
p11e() {
	p11e_raw -c "$CONF" "$@"
}

# _prefix_lines PREFIX: stdin's lines, each after PREFIX (also a last line without a
# newline), in bash: this runs for every p11enroll run.
_prefix_lines() {
	local line
	while IFS= read -r line || [ -n "$line" ]; do
		printf '%s%s\n' "$1" "$line"
	done
}

# out_value KEY: the value of the first "KEY: value" line in the last run's stdout.
out_value() {
	local line
	while IFS= read -r line || [ -n "$line" ]; do
		if [ "${line%%:*}" = "$1" ]; then
			line=${line#*:}
			printf '%s\n' "${line#"${line%%[![:space:]]*}"}"
			return 0
		fi
	done <"$OUT"
}

# ---------------------------------------------------------------- the agent

# start_daemon [p11enroll options before `run`...]: the agent in the background (default
# -c $CONF), stdout in $T/daemon.out, stderr in $T/daemon.log; sets DAEMON_PID. After
# faked_clock (t-daemon.sh: DAEMON_ENV), on the faked clock.
start_daemon() {
	local args=("$@")
	[ ${#args[@]} -gt 0 ] || args=(-c "$CONF")
	env ${DAEMON_ENV[@]+"${DAEMON_ENV[@]}"} "$P11ENROLL" "${args[@]}" run >"$T/daemon.out" 2>"$T/daemon.log" \
		</dev/null &
	DAEMON_PID=$!
	echo "$DAEMON_PID" >"$T/daemon.pid"
	register_pidfile "$T/daemon.pid"
}

# wait_log REGEX [SECONDS] [COUNT]: waits until COUNT (default 1) lines of the agent's log
# match REGEX; fails (showing the log) after SECONDS (default 30) or when the agent died.
wait_log() {
	local re=$1 secs=${2:-30} count=${3:-1} i
	for ((i = 0; i < secs * 10; i++)); do
		[ "$(_count_lines "$T/daemon.log" "$re")" -ge "$count" ] && return 0
		kill -0 "$DAEMON_PID" 2>/dev/null || break
		sleep 0.1
	done
	fail "no $count line(s) matching /$re/ in the agent's log within $secs s$(kill -0 "$DAEMON_PID" 2>/dev/null || echo ' (the agent exited)')"
	sed 's/^/  daemon: /' "$T/daemon.log" >&2
	return 1
}

# stop_daemon: SIGTERM; asserts a clean exit 0 within 10 s and no child left behind.
stop_daemon() {
	local i rc children
	children=$(pgrep -P "$DAEMON_PID" | tr '\n' ' ')
	kill -TERM "$DAEMON_PID" || return
	for ((i = 0; i < 100; i++)); do
		kill -0 "$DAEMON_PID" 2>/dev/null || break
		sleep 0.1
	done
	wait "$DAEMON_PID"
	rc=$?
	rm -f "$T/daemon.pid"
	assert_eq 0 "$rc" "the agent's exit status after SIGTERM"
	assert_contains "$T/daemon.log" "stopped"
	for i in $children; do
		kill -0 "$i" 2>/dev/null && fail "child $i of the agent still runs"
	done
	return 0
}

# agent_conf LINE...: appends lines to the [agent] section (the last section of write_conf).
agent_conf() {
	printf '%s\n' "$@" >>"$CONF"
}

# ---------------------------------------------------------------- what a user checks

# verify_capath DIR CERT: `openssl verify -CApath DIR CERT` accepts CERT, with the system's
#   openssl and with each older build in $P11E_OPENSSL_BINS (colon-separated wrappers from
#   tests/old-openssl.sh, set by `make integration`): OpenSSL before 3.0.22 stops its hash
#   lookup at the first missing or unloadable entry, so a trust dir can work on one and not
#   on another. Only the system's trust store is left out (-no-CAfile -no-CAstore).
verify_capath() {
	local dir=$1 cert=$2 bin bins
	IFS=: read -r -a bins <<<"openssl:${P11E_OPENSSL_BINS:-}"
	for bin in "${bins[@]}"; do
		[ -n "$bin" ] || continue
		"$bin" verify -no-CAfile -no-CAstore -CApath "$dir" "$cert" >verify.txt 2>&1
		assert_contains verify.txt "$cert: OK" || echo "  (with $bin: $("$bin" version))" >&2
	done
}

# check_enrollment: everything a successful `enroll` must have produced.
check_enrollment() {
	local priv_id priv_label priv_access key_uri cert_uri n

	# What p11enroll says.
	key_uri=$(out_value key)
	cert_uri=$(out_value certificate)
	assert_match "$OUT" '^key:[[:space:]]+pkcs11:.*type=private'
	assert_match "$OUT" '^certificate:[[:space:]]+pkcs11:.*type=cert'
	assert_match "$OUT" '^subject:[[:space:]]+.*CN=host\.example\.com'
	assert_match "$OUT" '^serial:[[:space:]]+[[:xdigit:]:x]+'
	assert_match "$OUT" '^not after:[[:space:]]+.+'
	case "$key_uri" in *"token=$TOKEN_LABEL"*) ;; *) fail "key URI '$key_uri' does not name token=$TOKEN_LABEL" ;; esac
	case "$cert_uri" in *"token=$TOKEN_LABEL"*) ;; *) fail "certificate URI '$cert_uri' does not name token=$TOKEN_LABEL" ;; esac

	# The token: exactly one private key, sensitive and never extractable, and a
	# certificate with the same CKA_ID.
	p11tool -O >objects-full.txt 2>objects-full.err
	parse_objects <objects-full.txt >objects.txt
	read_objects objects.txt
	assert_eq 1 "$OBJ_KEYS" "private keys on the token" || return
	assert_eq 1 "$OBJ_CERTS" "certificates on the token" || return
	priv_id=$OBJ_KEY_ID priv_label=$OBJ_KEY_LABEL priv_access=$OBJ_KEY_ACCESS
	assert_eq 1 "${priv_id:+1}" "the private key has a CKA_ID" || return
	assert_eq "$KEY_LABEL" "$priv_label" "private key label"
	case "$priv_access" in
	*"sensitive, always sensitive, never extractable"*) _pass "key access: $priv_access" ;;
	*) fail "private key access is '$priv_access', expected sensitive, always sensitive, never extractable" ;;
	esac
	assert_eq "$priv_id" "$OBJ_CERT_ID" "certificate CKA_ID"
	case "$key_uri" in
	*id=*)
		n=
		if [[ $key_uri =~ .*[\;:]id=([^\;?]*) ]]; then
			n=${BASH_REMATCH[1]//%/} n=${n,,}
		fi
		assert_eq "$priv_id" "$n" "id= in the key URI"
		;;
	esac

	# The certificate's public key is the token key's public key.
	p11tool --read-object --type cert --id "$priv_id" -o token-cert.der >/dev/null 2>&1
	assert_file token-cert.der || return
	# Both as PEM (one call each; the same DER gives the same PEM).
	openssl x509 -inform DER -in token-cert.der -noout -pubkey -out cert-spki.pem 2>>openssl.err
	token_spki "$priv_id" key-spki.pem PEM 2>>openssl.err
	if [ $? -ne 2 ]; then
		if cmp -s key-spki.pem cert-spki.pem && [ -s key-spki.pem ]; then
			_pass "certificate public key == token public key"
		else
			fail "the certificate's public key differs from the token key's public key"
		fi
	else
		# pkcs11-tool 0.23 cannot export P-384 public keys: compare the token's
		# CKA_EC_POINT (a DER OCTET STRING) with the end of the certificate's SPKI.
		local point spki
		point=$(awk -v id="$priv_id" '/^Public Key Object/ { inpub = 1; pt = "" }
			/^(Private Key|Certificate) Object/ { inpub = 0 }
			inpub && /EC_POINT:/ { pt = $2 }
			inpub && /ID:/ && tolower($2) == id { print pt; exit }' objects-full.txt)
		point=${point:4}
		openssl pkey -pubin -in cert-spki.pem -outform DER -out cert-spki.der 2>>openssl.err
		spki=$(od -An -tx1 -v cert-spki.der | tr -d ' \n')
		if [ -n "$point" ] && [ "${spki: -${#point}}" = "$point" ]; then
			_pass "certificate public key == token CKA_EC_POINT"
		else
			fail "the certificate's public key differs from the token key's EC point"
		fi
	fi

	# The certificate file is the token's certificate and verifies against the trust dir.
	assert_file "$CERT_FILE" || return
	openssl x509 -in "$CERT_FILE" -outform DER -out file-cert.der 2>>openssl.err
	if cmp -s file-cert.der token-cert.der; then
		_pass "cert_file == certificate on the token"
	else
		fail "cert_file differs from the certificate on the token"
	fi
	verify_capath "$TRUST_DIR" "$CERT_FILE"
	openssl x509 -in "$CERT_FILE" -noout -subject -nameopt RFC2253 >subject.txt
	assert_contains subject.txt "CN=host.example.com"
	assert_contains subject.txt "O=Example"
	openssl x509 -in "$CERT_FILE" -noout -ext subjectAltName >san.txt 2>&1
	assert_contains san.txt "DNS:host.example.com"
	assert_contains san.txt "DNS:alt.example.com"
	openssl x509 -in "$CERT_FILE" -noout -issuer -nameopt RFC2253 >issuer.txt
	assert_contains issuer.txt "${ISSUER_EXPECT:-O=p11enroll test CA main}"
}

# check_second_enroll: `enroll` again is a no-op that says so.
check_second_enroll() {
	local first_key
	first_key=$(out_value key)
	assert_exit 0 p11e enroll || return
	assert_eq 1 "$(count_objects privkey)" "private keys after a second enroll"
	assert_eq 1 "$(count_objects cert)" "certificates after a second enroll"
	cat "$OUT" "$ERR" >second.txt
	# It says so ("already enrolled" / "already holds a valid certificate").
	assert_contains_i second.txt "already"
	assert_eq "$first_key" "$(out_value key)" "key URI on the second run"
}

# check_ec_until_the_ca: scepserver refused an EC request (see t-enroll.sh): the CSR it
# received is right, and nothing is left on the token.
check_ec_until_the_ca() {
	local csrs
	assert_eq 77 "$RC" "exit status when the CA refuses"
	assert_eq 0 "$(count_objects cert)" "certificates on the token"
	assert_no_file "$CERT_FILE"
	assert_eq 0 "$(count_objects privkey)" "private keys (this run's key taken back)"
	csrs=("$T"/csr.*.der)
	local csr=${csrs[0]}
	assert_file "$csr" || return
	openssl req -inform DER -in "$csr" -noout -verify >csr-verify.txt 2>&1
	assert_match csr-verify.txt 'verify OK'
	openssl req -inform DER -in "$csr" -noout -text -nameopt RFC2253 >csr.txt 2>&1
	assert_contains csr.txt "Subject: CN=host.example.com,O=Example" # RFC 4514 order
	assert_contains csr.txt "DNS:host.example.com"
	assert_contains csr.txt "DNS:alt.example.com"
	assert_contains csr.txt "ecdsa-with-SHA256"
	assert_contains csr.txt "NIST CURVE: P-256"
}

# ---------------------------------------------------------------- assertions

ASSERTS=0
FAILS=0

# fail MSG: records a failure of the current test.
fail() {
	FAILS=$((FAILS + 1))
	echo "ASSERTION FAILED: $*" >&2
	if [ -n "${T:-}" ]; then
		echo "$*" >>"$T/.failures"
	fi
	return 1
}

_pass() {
	ASSERTS=$((ASSERTS + 1))
	echo "  pass: $*" >&2
}

# _last_err: the first error-looking line of the last p11enroll stderr, for messages.
# What an error line looks like, in a program's stderr or a server's log.
_ERROR_LINE_RE='error|fail|cannot|refus|denied|timed out'

# The line of the last run's stderr that says what went wrong: its last error line, else
# its last line (a station's last line is often another card's "done").
_last_err() {
	local line
	[ -n "${ERR:-}" ] && [ -s "$ERR" ] || return 0
	line=$(grep -v '^(killed' "$ERR" | grep -Ei "$_ERROR_LINE_RE" | tail -n1)
	[ -n "$line" ] || line=$(grep -v '^(killed' "$ERR" | tail -n1)
	printf ' (stderr: %s)' "$(printf '%s' "$line" | cut -c1-300)"
}

# _failure_context DIR: after a failed test, what its programs and servers said went
# wrong (at most 5 lines of each stderr file and server log), for a CI log that
# outlives the test directory.
_failure_context() {
	local f lines
	for f in "$1"/*.err "$1"/*.log "$1"/*/*.log "$1"/*/*/*.log; do
		[ -s "$f" ] || continue
		lines=$(grep -Ei "$_ERROR_LINE_RE|traceback| -> [45][0-9][0-9]" "$f" |
			tail -n5 | cut -c1-300)
		[ -z "$lines" ] || printf '%s\n' "$lines" | sed "s|^|    ${f#"$1"/}: |"
	done
}

# assert_eq EXPECTED ACTUAL [WHAT]
assert_eq() {
	ASSERTS=$((ASSERTS + 1))
	if [ "$1" = "$2" ]; then
		_pass "${3:-value} = '$1'"
	else
		fail "${3:-value}: expected '$1', got '$2'"
	fi
}

# assert_le ACTUAL MAX [WHAT]: ACTUAL (a whole number) is at most MAX.
assert_le() {
	ASSERTS=$((ASSERTS + 1))
	if [ "$1" -le "$2" ] 2>/dev/null; then
		_pass "${3:-value} = $1 <= $2"
	else
		fail "${3:-value}: expected at most $2, got '$1'"
	fi
}

# assert_exit CODE CMD...: runs CMD and checks its exit status.
assert_exit() {
	local want=$1 rc
	shift
	ERR=
	"$@"
	rc=$?
	ASSERTS=$((ASSERTS + 1))
	if [ "$rc" = "$want" ]; then
		_pass "exit $rc from: $*"
	elif [ "$rc" = 124 ]; then
		fail "'$*' timed out (expected exit $want)"
	else
		fail "'$*' exited $rc, expected $want$(_last_err)"
	fi
}

# _has_line FILE (fixed TEXT | regex ERE): whether a line of FILE contains TEXT or matches
#   ERE, answered in bash (no fork) for a text file of at most 400 lines, by grep
#   otherwise. Only a yes is taken from bash: a no is asked of grep again (a line cut at a
#   NUL byte, or a regex bash's matcher reads otherwise, cannot make an assertion fail).
#   The assertions run it some 15,000 times a `make check`, at 4 to 5 ms a grep here.
_has_line() {
	local file=$1 how=$2 what=$3 line lines
	if [ -f "$file" ] && [ -r "$file" ]; then
		mapfile -t -n 401 lines <"$file" 2>/dev/null
		if [ ${#lines[@]} -le 400 ]; then
			for line in "${lines[@]}"; do
				if [ "$how" = fixed ]; then
					[[ $line == *"$what"* ]] && return 0
				else
					[[ $line =~ $what ]] && return 0
				fi
			done
		fi
	fi
	if [ "$how" = fixed ]; then grep -qF -- "$what" "$file" 2>/dev/null; else grep -qE -- "$what" "$file" 2>/dev/null; fi
}

# _count_lines FILE ERE: how many lines of FILE match ERE (grep -cE), counted in bash for a
#   text file of at most 400 lines (wait_log asks ten times a second).
_count_lines() {
	local line lines n=0
	mapfile -t -n 401 lines <"$1" 2>/dev/null || {
		echo 0
		return
	}
	if [ ${#lines[@]} -gt 400 ]; then
		grep -cE -- "$2" "$1"
		return
	fi
	for line in "${lines[@]}"; do
		[[ $line =~ $2 ]] && n=$((n + 1))
	done
	echo "$n"
}

# assert_contains FILE TEXT: FILE contains TEXT (a fixed string).
assert_contains() {
	ASSERTS=$((ASSERTS + 1))
	if _has_line "$1" fixed "$2"; then
		_pass "${1##*/} contains '$2'"
	else
		fail "${1##*/} does not contain '$2'$( [ -e "$1" ] || echo ' (no such file)')"
	fi
}

# assert_contains_i FILE TEXT: the same, ignoring case.
assert_contains_i() {
	ASSERTS=$((ASSERTS + 1))
	if grep -qiF -- "$2" "$1" 2>/dev/null; then
		_pass "${1##*/} contains '$2' (any case)"
	else
		fail "${1##*/} does not contain '$2' (any case)"
	fi
}

# assert_match FILE ERE: some line of FILE matches the extended regex.
assert_match() {
	ASSERTS=$((ASSERTS + 1))
	if _has_line "$1" regex "$2"; then
		_pass "${1##*/} matches /$2/"
	else
		fail "${1##*/} has no line matching /$2/"
	fi
}

# assert_not_contains FILE TEXT
assert_not_contains() {
	ASSERTS=$((ASSERTS + 1))
	if grep -qF -- "$2" "$1" 2>/dev/null; then
		fail "${1##*/} contains '$2' but must not"
	else
		_pass "${1##*/} does not contain '$2'"
	fi
}

# assert_file / assert_no_file PATH
assert_file() {
	ASSERTS=$((ASSERTS + 1))
	if [ -s "$1" ]; then _pass "$1 exists"; else fail "$1 missing or empty"; fi
}
assert_no_file() {
	ASSERTS=$((ASSERTS + 1))
	if [ -e "$1" ]; then fail "$1 exists but must not"; else _pass "$1 absent"; fi
}

# skip REASON: ends the current test as skipped (only for a real impossibility).
skip() {
	echo "$*" >"$T/.skip"
	echo 0 >"$T/.done"
	exit 0
}

# ---------------------------------------------------------------- runner

_report() {
	# _report ok|FAIL|skip NAME [REASON]
	local line
	if [ -n "${3:-}" ]; then line="$1 $2: $3"; else line="$1 $2"; fi
	echo "$line"
	[ -z "${P11E_RESULTS:-}" ] || echo "$line" >>"$P11E_RESULTS"
}

# _leftovers DIR: "PID command line" of every process whose working directory is DIR or
#   below it, or whose command line names a path in DIR: what a test started and did not
#   stop. One find and one grep over /proc, not a fork per process (a fork costs about 2 ms
#   on a machine of this kind). The pattern comes from a file outside DIR, so that grep's
#   own command line does not name DIR; a zombie has neither a working directory nor a
#   command line, so a process that has ended is never listed.
_leftovers() {
	local dir=$1 pat pid cmd
	pat=$P11E_RUN_DIR/.leftover-pattern.$BASHPID
	printf '%s/\n' "$dir" >"$pat" || return 0
	local -A seen=()
	local path args
	while read -r path; do
		pid=${path#/proc/} pid=${pid%%/*}
		[ -z "${seen[$pid]:-}" ] || continue
		seen[$pid]=1
		args=()
		mapfile -t -d '' args <"/proc/$pid/cmdline" 2>/dev/null || continue
		cmd="${args[*]}"
		[ -n "$cmd" ] && printf '%s %s\n' "$pid" "$cmd"
	done < <(
		find /proc/[0-9]*/cwd -maxdepth 0 \( -lname "$dir" -o -lname "$dir/*" \) 2>/dev/null
		grep -lsFf "$pat" /proc/[0-9]*/cmdline 2>/dev/null
	)
	rm -f "$pat"
}

# _stop_leftovers DIR: _leftovers, each sent SIGTERM, then SIGKILL if still there after
#   2 s; prints them.
_stop_leftovers() {
	local left pid i
	left=$(_leftovers "$1")
	[ -n "$left" ] || return 0
	printf '%s\n' "$left"
	for pid in $(printf '%s\n' "$left" | cut -d' ' -f1); do kill -TERM "$pid" 2>/dev/null; done
	for ((i = 0; i < 20; i++)); do
		[ -n "$(_leftovers "$1")" ] || return 0
		sleep 0.1
	done
	for pid in $(_leftovers "$1" | cut -d' ' -f1); do kill -KILL "$pid" 2>/dev/null; done
}

_run_one() {
	local fn=$1 file=$2 name dir rc reason left t0=$EPOCHREALTIME
	name=$file/${fn#test_}
	dir=$P11E_RUN_DIR/$file/${fn#test_}
	rm -rf "$dir"
	mkdir -p "$dir"
	(
		T=$dir
		cd "$T" || exit 1
		export P11E_RSA_POOL_STATE=$T/.rsa-pool.count
		# shellcheck disable=SC2317
		_test_exit() {
			local rc=$?
			trap - EXIT INT TERM
			stop_all
			echo "$ASSERTS $FAILS" >"$T/.counts"
			exit "$rc"
		}
		trap _test_exit EXIT
		trap 'fail "interrupted"; exit 130' INT TERM
		"$fn"
		echo "$?" >"$T/.done"
	) >"$dir/log" 2>&1 </dev/null
	rc=$?
	# Every process a test starts is stopped by the test (by its PID), also when it fails:
	# one still running in or on the test's directory is a leak. It is stopped here, and the
	# test fails with it.
	left=$(_stop_leftovers "$dir")
	if [ -n "$left" ]; then
		printf 'left running after the test (now stopped):\n%s\n' "$left" | cut -c1-300 >>"$dir/log"
		printf '%s\n' "$left" | cut -c1-200 | sed 's/^/processes left running after the test (now stopped): /' >>"$dir/.failures"
	fi
	# For run.sh's list of the slowest tests.
	local us=$((${EPOCHREALTIME/[.,]/} - ${t0/[.,]/} + 50000)) done_rc=
	printf '%d.%d %s\n' $((us / 1000000)) $((us / 100000 % 10)) "$name" >>"$P11E_RUN_DIR/test-times"
	[ ! -e "$dir/.done" ] || read -r done_rc <"$dir/.done"
	if [ -s "$dir/.failures" ]; then
		reason=$(head -n1 "$dir/.failures")
		local n
		n=$(wc -l <"$dir/.failures")
		[ "$n" -le 1 ] || reason="$reason (+$((n - 1)) more)"
	elif [ ! -e "$dir/.done" ]; then
		reason="test aborted with exit status $rc (log: $dir/log)"
	elif [ "$done_rc" != 0 ]; then
		# A step that failed without an assertion (`start_... || return`) fails the test too.
		reason="test returned status $done_rc without a failed assertion (a setup step failed? log: $dir/log)"
	fi
	if [ -n "${reason:-}" ]; then
		_report FAIL "$name" "$reason"
		sed 's/^/    /' "$dir/.failures" 2>/dev/null | tail -n +2
		_failure_context "$dir"
		echo "    log: $dir/log"
		return 1
	elif [ -s "$dir/.skip" ]; then
		_report skip "$name" "$(head -n1 "$dir/.skip")"
	else
		_report ok "$name"
	fi
	return 0
}

# run_tests: runs every test_* function of the calling file (in name order).
run_tests() {
	local file fn own_dir=0 failed=0 passed=0
	file=$(basename "$0" .sh)
	if [ -z "${P11E_RUN_DIR:-}" ]; then
		P11E_RUN_DIR=$(mktemp -d /tmp/p11e-test.XXXXXX)
		export P11E_RUN_DIR
		own_dir=1
	fi
	export P11E_CA_CACHE=${P11E_CA_CACHE:-$P11E_RUN_DIR/ca-cache}
	# The doubles' pre-made RSA keys (tests/doubles/keypool.py): one counter beside the
	# cached CAs, so that no key a double draws is one of theirs or another double's.
	export P11E_KEYPOOL_STATE=${P11E_KEYPOOL_STATE:-$P11E_CA_CACHE/keypool.count}
	# SoftHSM's RSA-2048 key pairs get primes made beforehand (tests/fault/keypool_rsa.c,
	# tests/fault/softhsm-rsa-pool.pem; a counter per test keeps a test's keys distinct):
	# generating them took about a seventh of a pass's CPU. A file that sets
	# P11E_REAL_KEYGEN=1 before run_tests keeps SoftHSM's own generator.
	if [ -n "${P11E_RSA_SHIM:-}" ] && [ "${P11E_REAL_KEYGEN:-0}" != 1 ]; then
		if [ ! -f "$P11E_RSA_SHIM" ]; then
			echo "P11E_RSA_SHIM names no file ('$P11E_RSA_SHIM'); run the tests with make integration" >&2
			exit 2
		fi
		export LD_PRELOAD=$P11E_RSA_SHIM${LD_PRELOAD:+:$LD_PRELOAD}
		export P11E_RSA_POOL=$SRCDIR/tests/fault/softhsm-rsa-pool.pem
		# The shim is not sanitized and comes before a sanitized p11enroll's runtime; it
		# defines none of the functions the runtime intercepts.
		export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
	fi
	# python3 is Debian's /usr/bin/python3, the one tests/install-deps.sh installs modules
	# for (and the doubles' #!), also where a version manager's shim comes first in PATH:
	# pyenv's costs about 0.5 s of CPU a call, which made up half of t-tokens.sh's CPU.
	if [ -x /usr/bin/python3 ] && [ "$(command -v python3)" != /usr/bin/python3 ]; then
		mkdir -p "$P11E_RUN_DIR/bin" &&
			{ [ -e "$P11E_RUN_DIR/bin/python3" ] || ln -s /usr/bin/python3 "$P11E_RUN_DIR/bin/python3" 2>/dev/null; }
		export PATH=$P11E_RUN_DIR/bin:$PATH
	fi
	if [ -z "${P11ENROLL:-}" ] || [ ! -x "$P11ENROLL" ]; then
		echo "P11ENROLL is not set to an executable (got '${P11ENROLL:-}')" >&2
		exit 2
	fi
	for fn in $(declare -F | awk '{print $3}' | grep '^test_'); do
		if [ -n "${P11E_TESTS:-}" ] && ! [[ $file/${fn#test_} =~ $P11E_TESTS ]]; then
			continue
		fi
		if _run_one "$fn" "$file"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
	done
	if [ $own_dir = 1 ]; then
		echo "$passed passed, $failed failed"
		if [ $failed = 0 ]; then rm -rf "$P11E_RUN_DIR"; else echo "test dirs kept in $P11E_RUN_DIR" >&2; fi
	fi
	[ $failed = 0 ]
}
