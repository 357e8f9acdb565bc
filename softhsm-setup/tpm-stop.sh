#!/bin/bash
# tpm-stop.sh DIR
#
# Stops what softhsm-setup/tpm-start.sh DIR started, and nothing else: the processes
# named in DIR/abrmd.pid, DIR/dbus.pid and DIR/swtpm.pid, in that order. Each gets
# SIGTERM, up to 5 s to exit, then SIGKILL. A PID whose process is not the expected
# program (a stale file, the PID reused since) is left alone. The pid files are removed;
# the TPM state and the token store stay (rm -rf DIR to remove them).
# Exits 0 when nothing of DIR's is left running, 1 otherwise.
set -uo pipefail

me=${0##*/}
if [ $# -ne 1 ] || [ -z "$1" ]; then
	echo "usage: $me DIR" >&2
	exit 64
fi
dir=$1
[ -d "$dir" ] || {
	echo "$me: no directory $dir" >&2
	exit 1
}

# gone PID: the process has exited (a zombie counts as exited).
gone() {
	local state
	kill -0 "$1" 2>/dev/null || return 0
	state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
	[ "$state" = Z ]
}

# stop NAME COMM: stops the process in DIR/NAME.pid if it is COMM.
rc=0
stop() {
	local file=$dir/$1.pid comm=$2 pid actual i
	[ -e "$file" ] || return 0
	pid=$(head -n1 "$file" 2>/dev/null)
	case "$pid" in
	'' | *[!0-9]*)
		echo "$me: $file holds no PID; removed" >&2
		rm -f "$file"
		return 0
		;;
	esac
	if gone "$pid"; then
		rm -f "$file"
		return 0
	fi
	actual=$(cat "/proc/$pid/comm" 2>/dev/null)
	if [ "$actual" != "$comm" ]; then
		echo "$me: PID $pid from $file is '$actual', not $comm: left alone (stale pid file removed)" >&2
		rm -f "$file"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		gone "$pid" && break
		sleep 0.1
	done
	if ! gone "$pid"; then
		echo "$me: $comm (PID $pid) ignored SIGTERM for 5 s; sending SIGKILL" >&2
		kill -KILL "$pid" 2>/dev/null
		for ((i = 0; i < 20; i++)); do
			gone "$pid" && break
			sleep 0.1
		done
	fi
	if gone "$pid"; then
		rm -f "$file"
	else
		echo "$me: $comm (PID $pid) is still running after SIGKILL" >&2
		rc=1
	fi
}

stop abrmd tpm2-abrmd
stop dbus dbus-daemon
stop swtpm swtpm
exit $rc
