#!/bin/bash
# tpm-start.sh DIR [LABEL] [PIN] [SO_PIN]
#
# A throw-away TPM 2.0 token for tests: a software TPM (swtpm), a private D-Bus session
# bus, the TPM resource manager tpm2-abrmd on that bus, and a tpm2-pkcs11 store in
# DIR/store holding one token labelled LABEL (default p11e-tpm). Prints on stdout the
# environment that makes /usr/lib/x86_64-linux-gnu/libtpm2_pkcs11.so.1 use it:
#   eval "$(softhsm-setup/tpm-start.sh /tmp/tpm)"
# Everything else goes to stderr; the daemons log to DIR/*.log.
#
#   DIR/tpm      swtpm's state          DIR/bus     the session bus socket
#   DIR/store    the tpm2-pkcs11 store  DIR/port    swtpm's port (control: port+1)
#   DIR/pin, DIR/so-pin   the PINs (0600; reused when present, else random)
#   DIR/swtpm.pid, DIR/dbus.pid, DIR/abrmd.pid   what softhsm-setup/tpm-stop.sh DIR stops
#
# swtpm listens on 127.0.0.1 only, on ports chosen at run time. Run again on the same DIR
# after tpm-stop.sh: the TPM state and the token are reused. On any failure, what this
# run started is stopped again.
#
# tpm2_ptool takes the PINs only on its command line, so they are briefly visible in the
# process list while the token is created: fine for test tokens, never for one that matters.
set -euo pipefail

MODULE=/usr/lib/x86_64-linux-gnu/libtpm2_pkcs11.so.1
TCTI=tabrmd:bus_type=session
me=${0##*/}
here=$(cd "$(dirname "$0")" && pwd)

die() {
	echo "$me: $*" >&2
	exit 1
}
usage() {
	echo "usage: $me DIR [LABEL] [PIN] [SO_PIN]" >&2
	exit 64
}
if [ $# -lt 1 ] || [ $# -gt 4 ] || [ -z "$1" ]; then usage; fi
dir=$1
label=${2:-p11e-tpm}
if [ -z "$label" ] || [ ${#label} -gt 32 ]; then die "LABEL must have 1 to 32 characters"; fi

for cmd in swtpm dbus-daemon tpm2-abrmd tpm2_getcap tpm2_ptool python3 timeout; do
	command -v "$cmd" >/dev/null ||
		die "$cmd not found (apt-get install swtpm swtpm-tools dbus tpm2-abrmd tpm2-tools libtpm2-pkcs11-tools)"
done
[ -e "$MODULE" ] || die "$MODULE not found (apt-get install libtpm2-pkcs11-1)"
ls /usr/lib/*/libtss2-tcti-tabrmd.so.0 >/dev/null 2>&1 ||
	die "the tabrmd TCTI is missing (apt-get install libtss2-tcti-tabrmd0)"

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
chmod 0700 "$dir"
# A unix socket path has at most 107 bytes.
[ ${#dir} -le 100 ] || die "DIR '$dir' is too long for a D-Bus socket path (max 100 characters)"

for f in swtpm dbus abrmd; do
	if [ -s "$dir/$f.pid" ] && kill -0 "$(head -n1 "$dir/$f.pid")" 2>/dev/null; then
		die "$dir/$f.pid names a running process: already started? (stop it: $here/tpm-stop.sh $dir)"
	fi
	rm -f "$dir/$f.pid"
done

# On failure: stop whatever was started, show the log of what failed.
started=0
failed_log=
cleanup() {
	local rc=$?
	if [ $rc -ne 0 ] && [ $started = 1 ]; then
		if [ -n "$failed_log" ] && [ -s "$failed_log" ]; then
			echo "$me: last lines of $failed_log:" >&2
			tail -n 15 "$failed_log" | sed 's/^/  /' >&2
		fi
		"$here/tpm-stop.sh" "$dir" >&2 || true
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

random_pin() { od -An -N8 -tx1 /dev/urandom | tr -d ' \n'; }
write_secret() {
	(umask 077 && printf '%s\n' "$2" >"$1.tmp" && mv -f "$1.tmp" "$1")
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# pid_alive PIDFILE: the process in PIDFILE exists and is not a zombie.
pid_alive() {
	local pid state
	pid=$(head -n1 "$1" 2>/dev/null) || return 1
	case "$pid" in '' | *[!0-9]*) return 1 ;; esac
	kill -0 "$pid" 2>/dev/null || return 1
	state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
	[ "$state" != Z ]
}

# port_pair: prints a port P such that P and P+1 were both free on 127.0.0.1.
port_pair() {
	python3 -c 'import socket
for _ in range(50):
    a = socket.socket()
    a.bind(("127.0.0.1", 0))
    p = a.getsockname()[1]
    if p >= 65535:
        a.close()
        continue
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 1))
    except OSError:
        a.close()
        b.close()
        continue
    a.close()
    b.close()
    print(p)
    break
else:
    raise SystemExit("no two consecutive free ports found")'
}

# tcp_open PORT: something accepts connections on 127.0.0.1:PORT.
tcp_open() {
	# shellcheck disable=SC2016  # $1 is the inner shell's
	timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

t_start=$(now_ms)
mkdir -p "$dir/tpm"
chmod 0700 "$dir/tpm"

# ---- swtpm: TCP on 127.0.0.1, command port P, control port P+1 (the swtpm TCTI's layout).
port=
for ((try = 1; try <= 5; try++)); do
	p=$(port_pair) || die "could not find free ports on 127.0.0.1"
	started=1
	failed_log=$dir/swtpm.log
	if swtpm socket --tpm2 \
		--server "type=tcp,port=$p,bindaddr=127.0.0.1" \
		--ctrl "type=tcp,port=$((p + 1)),bindaddr=127.0.0.1" \
		--tpmstate "dir=$dir/tpm" --flags not-need-init,startup-clear \
		--pid "file=$dir/swtpm.pid" --log "file=$dir/swtpm.log" \
		--daemon </dev/null >>"$dir/swtpm.log" 2>&1; then
		ok=0
		for ((i = 0; i < 100; i++)); do # 10 s
			if [ -s "$dir/swtpm.pid" ] && pid_alive "$dir/swtpm.pid" && tcp_open "$p"; then
				ok=1
				break
			fi
			[ -s "$dir/swtpm.pid" ] && ! pid_alive "$dir/swtpm.pid" && break
			sleep 0.1
		done
		if [ $ok = 1 ]; then
			port=$p
			break
		fi
		"$here/tpm-stop.sh" "$dir" >/dev/null 2>&1 || true
	fi
	# Lost a race for the ports? Then try others; any other failure is final.
	grep -qi 'address already in use' "$dir/swtpm.log" 2>/dev/null ||
		die "swtpm did not start on 127.0.0.1:$p within 10 s"
	echo "$me: ports $p/$((p + 1)) were taken meanwhile; trying others" >&2
	: >"$dir/swtpm.log"
done
[ -n "$port" ] || die "swtpm could not get free ports in 5 tries"
echo "$port" >"$dir/port"

# ---- a private D-Bus session bus.
failed_log=$dir/dbus.log
rm -f "$dir/bus"
timeout 10 dbus-daemon --session --address="unix:path=$dir/bus" --fork --print-pid \
	>"$dir/dbus.pid" 2>"$dir/dbus.log" </dev/null ||
	die "dbus-daemon did not start (exit $?)"
pid=$(head -n1 "$dir/dbus.pid")
case "$pid" in '' | *[!0-9]*) die "dbus-daemon printed no PID" ;; esac
for ((i = 0; i < 100; i++)); do # 10 s
	[ -S "$dir/bus" ] && break
	pid_alive "$dir/dbus.pid" || die "dbus-daemon exited"
	sleep 0.1
done
[ -S "$dir/bus" ] || die "dbus-daemon did not create $dir/bus within 10 s"

export DBUS_SESSION_BUS_ADDRESS=unix:path=$dir/bus
export TPM2TOOLS_TCTI=$TCTI TPM2_PKCS11_TCTI=$TCTI TPM2_PKCS11_STORE=$dir/store

# ---- tpm2-abrmd: does not daemonize; it is ready when a TPM command goes through it.
failed_log=$dir/abrmd.log
tpm2-abrmd --session --allow-root --flush-all --tcti="swtpm:host=127.0.0.1,port=$port" \
	>"$dir/abrmd.log" 2>&1 </dev/null &
echo $! >"$dir/abrmd.pid"
ready=0
for ((i = 0; i < 100; i++)); do # 10 s (plus at most 5 s for one tpm2_getcap)
	pid_alive "$dir/abrmd.pid" || die "tpm2-abrmd exited"
	if timeout 5 tpm2_getcap properties-fixed >/dev/null 2>>"$dir/getcap.log"; then
		ready=1
		break
	fi
	sleep 0.1
done
[ $ready = 1 ] || die "tpm2-abrmd did not answer on $DBUS_SESSION_BUS_ADDRESS within 10 s"
t_daemons=$(now_ms)

# ---- the tpm2-pkcs11 store and the token.
failed_log=$dir/ptool.log
if [ $# -ge 3 ]; then
	pin=$3
elif [ -s "$dir/pin" ]; then
	pin=$(head -n1 "$dir/pin")
else
	pin=$(random_pin)
fi
if [ $# -ge 4 ]; then
	so_pin=$4
elif [ -s "$dir/so-pin" ]; then
	so_pin=$(head -n1 "$dir/so-pin")
else
	so_pin=$(random_pin)
fi
if [ -z "$pin" ] || [ -z "$so_pin" ]; then die "PINs must not be empty"; fi

mkdir -p "$dir/store"
chmod 0700 "$dir/store"
ptool() {
	timeout 60 tpm2_ptool "$@" --path="$dir/store" >>"$dir/ptool.log" 2>&1 ||
		die "tpm2_ptool $1 failed or took over 60 s"
}
: >"$dir/ptool.log"
if [ ! -e "$dir/store/tpm2_pkcs11.sqlite3" ]; then
	ptool init
fi
# The primary key tpm2_ptool init created ("id: N").
timeout 60 tpm2_ptool listprimaries --path="$dir/store" >"$dir/primaries.txt" 2>>"$dir/ptool.log" ||
	die "tpm2_ptool listprimaries failed"
primary=$(sed -n 's/^[- ]*id:[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$dir/primaries.txt" | head -n1)
[ -n "$primary" ] || die "no primary key in $dir/store (tpm2_ptool listprimaries printed nothing usable)"
timeout 60 tpm2_ptool listtokens --pid="$primary" --path="$dir/store" >"$dir/tokens.txt" \
	2>>"$dir/ptool.log" || die "tpm2_ptool listtokens failed"
if awk -v l="$label" '{ sub(/^[[:space:]-]*/, "") }
	$1 == "label:" { sub(/^label:[[:space:]]*/, ""); sub(/[[:space:]]+$/, ""); if ($0 == l) f = 1 }
	END { exit !f }' "$dir/tokens.txt"; then
	[ -s "$dir/pin" ] || die "token '$label' exists in $dir/store but $dir/pin is missing"
	echo "$me: reusing token '$label' in $dir/store" >&2
else
	write_secret "$dir/pin" "$pin"
	write_secret "$dir/so-pin" "$so_pin"
	ptool addtoken --pid="$primary" --sopin="$so_pin" --userpin="$pin" --label="$label"
fi
t_end=$(now_ms)
echo "$me: swtpm on 127.0.0.1:$port, daemons ready in $((t_daemons - t_start)) ms," \
	"token '$label' ready in $((t_end - t_start)) ms" >&2

q() { printf '%q' "$1"; }
cat <<ENV
export DBUS_SESSION_BUS_ADDRESS=$(q "$DBUS_SESSION_BUS_ADDRESS")
export TPM2_PKCS11_TCTI=$(q "$TCTI")
export TPM2TOOLS_TCTI=$(q "$TCTI")
export TPM2_PKCS11_STORE=$(q "$dir/store")
export P11E_TPM_MODULE=$(q "$MODULE")
export P11E_TPM_LABEL=$(q "$label")
export P11E_TPM_PIN_FILE=$(q "$dir/pin")
ENV
