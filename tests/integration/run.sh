#!/bin/bash
# run.sh: runs every tests/integration/t-*.sh against $P11ENROLL (default build/p11enroll).
#   P11ENROLL=build/p11enroll tests/integration/run.sh [t-enroll.sh ...]
#   P11E_TESTS=REGEX   only tests whose "file/name" matches (e.g. 't-enroll/|config')
#   P11E_KEEP=1        keep the per-run directory even when everything passed
#   P11E_JOBS=N        test files run at once (default: CPUs + 2); 1 = one after another,
#                      each file's lines printed as its tests finish
#   P11E_TIMINGS=FILE  per-file durations of the last run: read to start the longest
#                      files first, rewritten at the end (`make integration` sets it);
#                      without it, tests/integration/times.txt (a run of make check, ASan)
# Prints "ok NAME" / "FAIL NAME: reason" / "skip NAME: reason" per test, grouped by file
# (a file's lines when it has finished), a per-file duration summary, and ends with the
# line "N passed, N failed". Exits 1 if anything failed. A missing component (binary,
# scepserver, SoftHSM, OpenSC...) is a failure, not a skip.
#
# Each test has its own directory ($P11E_RUN_DIR/FILE/TEST), token and servers, so files
# can run side by side. What they share is made safe for it in lib.sh: the per-run CA
# caches (made once under a lock, published by a rename) and free_port (each job slot,
# P11E_PORT_SLOT, takes ports from a range of its own, outside the ephemeral range). A
# file whose assertions cannot hold next to others says so with a line
# "# run.sh: alone (why)": such files run one at a time after the others (none today).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "$here/../.." && pwd)

P11ENROLL=${P11ENROLL:-$srcdir/build/p11enroll}
case "$P11ENROLL" in /*) ;; *) P11ENROLL=$PWD/$P11ENROLL ;; esac
export P11ENROLL

jobs=${P11E_JOBS:-$(($(nproc 2>/dev/null || echo 1) + 2))}
case "$jobs" in '' | *[!0-9]* | 0)
	echo "FAIL setup: P11E_JOBS must be a positive number, got '$jobs'"
	echo "0 passed, 1 failed"
	exit 1
	;;
esac

# Preconditions: everything the tests need must be there.
missing=()
[ -x "$P11ENROLL" ] || missing+=("p11enroll binary $P11ENROLL (run make)")
for cmd in scepserver softhsm2-util pkcs11-tool openssl curl python3 timeout awk od flock; do
	command -v "$cmd" >/dev/null || missing+=("command $cmd")
done
[ -e /usr/lib/softhsm/libsofthsm2.so ] || missing+=("/usr/lib/softhsm/libsofthsm2.so (softhsm2)")
ls /usr/lib/*/pkcs11-spy.so >/dev/null 2>&1 || missing+=("pkcs11-spy.so (opensc)")
if [ ${#missing[@]} -gt 0 ]; then
	for m in "${missing[@]}"; do
		echo "FAIL setup: missing $m"
	done
	echo "(install with: tests/install-deps.sh test)"
	echo "0 passed, ${#missing[@]} failed"
	exit 1
fi

P11E_RUN_DIR=$(mktemp -d /tmp/p11e-it.XXXXXX)
export P11E_RUN_DIR
out_dir=$P11E_RUN_DIR/.files
mkdir -p "$out_dir"

if [ $# -gt 0 ]; then
	files=()
	for f in "$@"; do
		case "$f" in */*) files+=("$f") ;; *) files+=("$here/$f") ;; esac
	done
else
	files=("$here"/t-*.sh)
fi

passed=0
failed=0
skipped=0
times=() # "SECONDS FILE" per finished file

# prev_time FILE: the file's duration in $P11E_TIMINGS, or a large number if unknown
# (an unknown file might be long: start it early).
# Without a last run (a fresh clone), the figures of tests/integration/times.txt.
prev_time() {
	local t= src=${P11E_TIMINGS:-}
	[ -n "$src" ] && [ -s "$src" ] || src=$here/times.txt
	[ ! -s "$src" ] || t=$(awk -v f="$1" '$2 == f { print $1; exit }' "$src")
	echo "${t:-100000}"
}

# Longest first (as timed last time), so that no long file starts at the end; files
# tagged "alone" after the others.
queue=()
alone=()
while read -r _ f; do
	if grep -q '^# run\.sh: alone' "$f" 2>/dev/null; then alone+=("$f"); else queue+=("$f"); fi
done < <(for f in "${files[@]}"; do
	echo "$(prev_time "$(basename "$f" .sh)") $f"
done | sort -k1,1nr -s)

# file_cmd FILE: sets cmd to the command that runs FILE and records its CPU time (its
# processes and those they waited for) in $out_dir/NAME.cpu, beside its wall time: with
# files side by side, CPU is what a small machine runs out of. No record without GNU time.
file_cmd() {
	cmd=(bash "$1")
	[ ! -x /usr/bin/time ] || cmd=(/usr/bin/time -f %U+%S -o "$out_dir/$(basename "$1" .sh).cpu" "${cmd[@]}")
}

declare -A job_file=() job_slot=() job_start=()
free_slots=()
for ((i = 0; i < jobs; i++)); do free_slots+=("$i"); done

# start_file FILE SLOT: runs FILE in the background in a session of its own (so that an
# interrupt can stop it and everything it started), output to $out_dir/NAME.out.
start_file() {
	local f=$1 slot=$2 name pid cmd
	name=$(basename "$f" .sh)
	: >"$out_dir/$name.results"
	file_cmd "$f"
	P11E_RESULTS=$out_dir/$name.results P11E_PORT_SLOT=$slot \
		setsid "${cmd[@]}" >"$out_dir/$name.out" 2>&1 </dev/null &
	pid=$!
	job_file[$pid]=$f
	job_slot[$pid]=$slot
	job_start[$pid]=$(date +%s)
}

# file_fail TEXT: a failure of a whole file, counted and listed with the tests'.
file_fail() {
	echo "FAIL $1"
	echo "FAIL $1" >>"$P11E_RUN_DIR/results"
	failed=$((failed + 1))
}

# finish_file FILE RC SECONDS: prints the file's lines, counts its results.
finish_file() {
	local f=$1 rc=$2 secs=$3 name res cpu
	name=$(basename "$f" .sh)
	res=$out_dir/$name.results
	[ "$jobs" -eq 1 ] || cat "$out_dir/$name.out"
	passed=$((passed + $(grep -c '^ok ' "$res")))
	failed=$((failed + $(grep -c '^FAIL ' "$res")))
	skipped=$((skipped + $(grep -c '^skip ' "$res")))
	cat "$res" >>"$P11E_RUN_DIR/results"
	# A file that crashed before reporting anything (syntax error...) is a failure.
	if [ "$rc" -ne 0 ] && [ ! -s "$res" ]; then
		file_fail "$name: test file exited with status $rc and reported nothing (output: $out_dir/$name.out)"
	fi
	cpu=$(tail -n1 "$out_dir/$name.cpu" 2>/dev/null | awk -F+ 'NF == 2 { printf "%.0f", $1 + $2 }')
	times+=("$secs ${cpu:--} $name")
}

# wait_one: waits for any running file to end and finishes it.
wait_one() {
	local pid rc
	wait -n -p pid
	rc=$?
	[ -n "${pid:-}" ] && [ -n "${job_file[$pid]:-}" ] || return 0
	finish_file "${job_file[$pid]}" "$rc" $(($(date +%s) - job_start[$pid]))
	free_slots+=("${job_slot[$pid]}")
	unset "job_file[$pid]" "job_slot[$pid]" "job_start[$pid]"
}

# An interrupt stops every running file's session: each test's trap stops its servers.
stop_running() {
	local pid
	for pid in "${!job_file[@]}"; do
		kill -TERM -- "-$pid" 2>/dev/null
	done
	wait
	echo "interrupted; test dirs kept in $P11E_RUN_DIR" >&2
	exit 130
}
trap stop_running INT TERM

# run_files MAX FILE...: runs the files, at most MAX at a time.
run_files() {
	local max=$1 f
	shift
	for f in "$@"; do
		if [ ! -e "$f" ]; then
			file_fail "$(basename "$f" .sh): no such test file"
			continue
		fi
		if [ "$max" -eq 1 ] && [ "$jobs" -eq 1 ]; then
			# The old way: in the foreground, lines as they come.
			local t0 rc cmd
			t0=$(date +%s)
			: >"$out_dir/$(basename "$f" .sh).results"
			file_cmd "$f"
			P11E_RESULTS=$out_dir/$(basename "$f" .sh).results P11E_PORT_SLOT=0 "${cmd[@]}"
			rc=$?
			finish_file "$f" "$rc" $(($(date +%s) - t0))
			continue
		fi
		while [ ${#job_file[@]} -ge "$max" ]; do wait_one; done
		start_file "$f" "${free_slots[0]}"
		free_slots=("${free_slots[@]:1}")
	done
	while [ ${#job_file[@]} -gt 0 ]; do wait_one; done
}

: >"$P11E_RUN_DIR/results"
start=$(date +%s)
run_files "$jobs" "${queue[@]}"
run_files 1 "${alone[@]}"
wall=$(($(date +%s) - start))

# Nothing ran at all (a P11E_TESTS that matches nothing, a runner fault): not a pass.
if [ $((passed + failed + skipped)) -eq 0 ]; then
	file_fail "run: no test ran${P11E_TESTS:+ (P11E_TESTS=$P11E_TESTS matches none?)}"
fi

# Where the time went: every file, longest first.
if [ ${#times[@]} -gt 0 ]; then
	echo "durations (wall s, CPU s; $jobs files at a time):"
	printf '%s\n' "${times[@]}" | sort -k1,1nr | awk '{ printf "  %5d %5s  %s\n", $1, $2, $3 }
		{ cpu += $2 } END { printf "  CPU %d s in all\n", cpu }'
	if [ -s "$P11E_RUN_DIR/test-times" ]; then
		echo "slowest tests (s):"
		sort -k1,1nr "$P11E_RUN_DIR/test-times" | head -n 10 | awk '{ printf "  %5.1f  %s\n", $1, $2 }'
	fi
	if [ -n "${P11E_TIMINGS:-}" ] && [ -z "${P11E_TESTS:-}" ]; then
		{
			printf '%s\n' "${times[@]}" | awk '{ print $1, $3 }'
			# Files not run this time keep their last figure.
			[ ! -s "$P11E_TIMINGS" ] ||
				awk 'NR == FNR { seen[$3] = 1; next } !($2 in seen)' \
					<(printf '%s\n' "${times[@]}") "$P11E_TIMINGS"
		} >"$P11E_TIMINGS.tmp" && mv "$P11E_TIMINGS.tmp" "$P11E_TIMINGS"
	fi
fi

# The failures again, together: in a parallel run they are far apart.
if [ "$failed" -gt 0 ] && [ "$jobs" -gt 1 ]; then
	echo "failed:"
	grep -h '^FAIL ' "$P11E_RUN_DIR/results" | sed 's/^/  /'
fi
echo "($wall s, $skipped skipped, p11enroll: $P11ENROLL)"
if [ "$failed" -eq 0 ] && [ "${P11E_KEEP:-0}" != 1 ]; then
	rm -rf "$P11E_RUN_DIR"
else
	echo "(test dirs kept in $P11E_RUN_DIR)"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
