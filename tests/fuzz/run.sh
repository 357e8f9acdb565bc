#!/bin/bash
# run.sh: runs libFuzzer targets side by side and sums them up (`make fuzz`, `make fuzz-check`).
#   tests/fuzz/run.sh DIR SECONDS JOBS TARGET...
# DIR holds bin/TARGET (built by make), seeds/TARGET/ (copied from tests/data and
# tests/fuzz/seeds by make), and gets corpus/TARGET/ (kept between runs: each run goes on from
# the last), crashes/ (libFuzzer's crash-, leak-, timeout- and oom- files), log/TARGET.log, and
# totals.txt (one line per target and run: date target seconds runs cov ft). Each target runs
# SECONDS seconds (-max_total_time); JOBS at a time. Prints one line per target: runs, seconds
# of this run, the total seconds of all runs recorded in totals.txt, and libFuzzer's final
# coverage (cov: edges, ft: features). Exits 1 when any target found a crash, a leak, a timeout
# or undefined behaviour (its log's last lines and the reproducer's path are shown).
set -uo pipefail

if [ $# -lt 4 ]; then
	echo "usage: $0 DIR SECONDS JOBS TARGET..." >&2
	exit 2
fi
dir=$1 secs=$2 jobs=$3
shift 3
mkdir -p "$dir/corpus" "$dir/crashes" "$dir/log" || exit 2

one() {
	local t=$1
	mkdir -p "$dir/corpus/$t"
	# -timeout: one input that runs 25 s is a hang; -rss_limit_mb: 2 GiB is an OOM
	ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1} \
		UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
		"$dir/bin/$t" -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$dir/crashes/$t-" \
		"$dir/corpus/$t" "$dir/seeds/$t" >"$dir/log/$t.log" 2>&1
	echo $? >"$dir/log/$t.rc"
}

pids=()
trap 'kill "${pids[@]}" 2>/dev/null; exit 130' INT TERM
running=0
for t in "$@"; do
	if [ "$running" -ge "$jobs" ]; then
		wait -n
		running=$((running - 1))
	fi
	one "$t" &
	pids+=($!)
	running=$((running + 1))
done
wait

rc=0
printf '%-10s %10s %8s %10s %7s %8s  %s\n' target runs seconds total-s cov ft result
for t in "$@"; do
	log=$dir/log/$t.log
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
	# the last status line: "#N  DONE|pulse|NEW|...  cov: C ft: F ..."
	last=$(grep -E '^#[0-9]+.*cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
	cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
	ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
	result=ok
	if [ "$(cat "$dir/log/$t.rc" 2>/dev/null)" != 0 ]; then
		result="FAILED (exit $(cat "$dir/log/$t.rc" 2>/dev/null); log $log)"
		rc=1
	fi
	[ -n "$took" ] || took=$secs
	echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $t ${took} ${runs:-0} ${cov:-0} ${ft:-0}" >>"$dir/totals.txt"
	total=$(awk -v t="$t" '$2 == t { s += $3 } END { print s + 0 }' "$dir/totals.txt")
	printf '%-10s %10s %8s %10s %7s %8s  %s\n' "${t#fuzz_}" "${runs:-?}" "$took" "$total" \
		"${cov:-?}" "${ft:-?}" "$result"
done
for t in "$@"; do
	if [ "$(cat "$dir/log/$t.rc" 2>/dev/null)" != 0 ]; then
		echo "== $t: last lines of $dir/log/$t.log"
		grep -E 'ERROR|SUMMARY|runtime error|Test unit written|artifact_prefix|^    #[0-9]' \
			"$dir/log/$t.log" | tail -25
	fi
done
exit $rc
