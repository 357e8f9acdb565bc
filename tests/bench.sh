#!/bin/bash
# bench.sh BINARY [RUNS]: `make bench`. Against one local scepserver (loopback, free port):
#   p11enroll enroll with a pre-generated SoftHSM RSA-2048 key (the key is reused: its
#   certificate is deleted from the token between runs, outside the measurement), versus
#   the Debian scepclient with a pre-generated RSA-2048 file key.
# Prints median wall, CPU (user+sys) and peak RSS of each, their ratios, and the time
# split inside p11enroll (from its -v timing line). Figures, not assertions: the exit
# status only says whether the runs worked. Writes the table to build/bench.md too.
set -uo pipefail

[ $# -ge 1 ] || {
	echo "usage: $0 BINARY [RUNS]" >&2
	exit 64
}
BIN=$1
case "$BIN" in /*) ;; *) BIN=$PWD/$BIN ;; esac
RUNS=${2:-${BENCH_RUNS:-15}}
[ "$RUNS" -ge 10 ] || RUNS=10
OUT_MD=${BENCH_OUT:-$(dirname "$BIN")/bench.md}

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/integration/lib.sh"

T=$(mktemp -d /tmp/p11enroll-bench.XXXXXX)
export T
P11E_RUN_DIR=$T
export P11E_RUN_DIR
# shellcheck disable=SC2317  # called by the trap
cleanup() {
	stop_all
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$T" || exit 1

make_token bench || exit 1
# -allowrenew 0: scepserver otherwise refuses a second certificate for the same subject.
start_scepserver "$T/srv" -allowrenew 0 || exit 1
CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
write_conf "$T/p11enroll.conf"

# One measured command: "wall_s user_s sys_s maxrss_kib" appended to FILE. Wall and CPU
# come from wait4() (microseconds; GNU time rounds to 10 ms). Peak RSS comes from GNU time
# as the command's parent: a child forked from python would inherit python's RSS into
# ru_maxrss, GNU time's own is ~1 MiB and not counted.
measure() {
	local file=$1
	shift
	/usr/bin/python3 - "$@" >"$T/time.out" 2>"$T/cmd.err" <<'PY' || {
import os, subprocess, sys, time
t = os.environ["T"]
out = open(t + "/cmd.out", "w")
t0 = time.perf_counter()
p = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", t + "/rss.out"] + sys.argv[1:],
                     stdout=out, stderr=sys.stderr)
_, status, ru = os.wait4(p.pid, 0)
wall = time.perf_counter() - t0
rss = open(t + "/rss.out").read().split()[-1]
print(f"{wall:.6f} {ru.ru_utime:.6f} {ru.ru_stime:.6f} {rss}")
sys.exit(os.waitstatus_to_exitcode(status))
PY
		cat "$T/cmd.out" >&2
		echo "bench: '$*' failed:" >&2
		cat "$T/cmd.err" >&2
		return 1
	}
	cat "$T/time.out" >>"$file"
}

# First enrollment generates the key; later runs reuse it once the cert is gone.
"$BIN" -c "$T/p11enroll.conf" -q enroll >/dev/null || exit 1
drop_cert() {
	p11tool --delete-object --type cert --label p11enroll >/dev/null 2>&1
}

: >p11e.txt
: >p11e-split.txt
: >p11e-netproc.txt
: >p11e-self.txt
: >p11e-tokproc.txt
for ((i = 0; i < RUNS; i++)); do
	drop_cert || exit 1
	measure p11e.txt "$BIN" -c "$T/p11enroll.conf" -v enroll || exit 1
	grep -o 'timing (ms):.*' "$T/cmd.err" >>p11e-split.txt
	# The network process's own peak (p11enroll waits for it: its CPU is in p11enroll's).
	sed -n 's/.*network process: .*peak RSS \([0-9]*\) KiB.*/\1/p' "$T/cmd.err" >>p11e-netproc.txt
	# p11enroll's own peak: GNU time's is the larger of it and the network process's
	# (wait4 gives a process's children's peak too).
	sed -n 's/.*peak RSS of this process: \([0-9]*\) KiB.*/\1/p' "$T/cmd.err" >>p11e-self.txt
	# The token process's (the module, its session): a fork of p11enroll, waited for too.
	sed -n 's/.*token process: peak RSS \([0-9]*\) KiB.*/\1/p' "$T/cmd.err" >>p11e-tokproc.txt
done

# scepclient keeps csr.pem/self.pem in its working directory: one directory per run,
# each with a copy of the same pre-generated key. (Its challenge goes on its command line:
# that is scepclient's interface, not p11enroll's.)
openssl genrsa -traditional -out client.key 2048 2>/dev/null
: >scepclient.txt
for ((i = 0; i < RUNS; i++)); do
	mkdir "sc-$i" && cp client.key "sc-$i/key.pem" || exit 1
	(cd "sc-$i" && measure ../scepclient.txt scepclient -private-key key.pem \
		-certificate cert.pem -server-url "$SCEP_URL" -challenge "$(cat "$T/challenge")" \
		-cn "bench-$i") || exit 1
done

# The token's own floor: pkcs11-tool loading the same SoftHSM module, logging in and
# making ONE RSA-2048 signature with the same key (p11enroll needs three and a decryption).
head -c 100 /dev/urandom >tbs.bin
KEY_ID=$(p11tool --list-objects --type privkey 2>/dev/null | sed -n 's/^  ID:[[:space:]]*//p' | head -n1)
: >floor.txt
for ((i = 0; i < RUNS; i++)); do
	measure floor.txt pkcs11-tool --module "$MODULE" --token-label "$TOKEN_LABEL" --login \
		--pin "$PIN" --sign -m SHA256-RSA-PKCS --id "$KEY_ID" -i tbs.bin -o sig.bin || exit 1
done

/usr/bin/python3 - "$RUNS" "$OUT_MD" <<'PY'
import re, statistics, sys
runs, out_md = int(sys.argv[1]), sys.argv[2]

def load(name):
    rows = [list(map(float, l.split())) for l in open(name) if l.strip()]
    return {
        "wall": statistics.median(r[0] * 1000 for r in rows),
        "cpu": statistics.median((r[1] + r[2]) * 1000 for r in rows),
        "rss": statistics.median(r[3] / 1024 for r in rows),
        "rss_max": max(r[3] / 1024 for r in rows),
    }

p, s, f = load("p11e.txt"), load("scepclient.txt"), load("floor.txt")
np_rss = [float(l) / 1024 for l in open("p11e-netproc.txt") if l.strip()]
np_med = statistics.median(np_rss) if np_rss else 0.0
self_rss = [float(l) / 1024 for l in open("p11e-self.txt") if l.strip()]
self_med = statistics.median(self_rss) if self_rss else 0.0
tp_rss = [float(l) / 1024 for l in open("p11e-tokproc.txt") if l.strip()]
tp_med = statistics.median(tp_rss) if tp_rss else 0.0
parts = {}
for line in open("p11e-split.txt"):
    for name, val in re.findall(r"([a-zA-Z+ ]+?) ([0-9.]+)(?:,|$)", line.split(":", 1)[1]):
        parts.setdefault(name.strip(), []).append(float(val))

lines = [
    f"Median of {runs} runs against one local scepserver (RSA-2048, key pre-generated):",
    "",
    "| client | wall ms | CPU ms (user+sys) | peak RSS MiB |",
    "| --- | --- | --- | --- |",
    f"| p11enroll, SoftHSM token key | {p['wall']:.1f} | {p['cpu']:.1f} | {p['rss']:.1f} (max {p['rss_max']:.1f}) |",
    f"| scepclient, file key | {s['wall']:.1f} | {s['cpu']:.1f} | {s['rss']:.1f} (max {s['rss_max']:.1f}) |",
    f"| ratio p11enroll / scepclient | {p['wall'] / s['wall']:.2f} | {p['cpu'] / s['cpu']:.2f} | {p['rss'] / s['rss']:.2f} |",
    f"| floor: pkcs11-tool, SoftHSM load + login + one RSA sign | {f['wall']:.1f} | {f['cpu']:.1f} | {f['rss']:.1f} (max {f['rss_max']:.1f}) |",
    "",
    f"p11enroll's peak RSS above is GNU time's, the largest of its own and its children's"
    f" (wait4 reports a waited-for child's peak too). Each on its own (medians of {len(self_rss)}):"
    f" p11enroll {self_med:.1f} MiB, its network process p11enroll-net (libcurl, TLS, the CertRep's"
    f" CMS) {np_med:.1f} MiB, its token process (a fork of p11enroll: the PKCS#11 module and its"
    f" session; pages shared with p11enroll counted in both) {tp_med:.1f} MiB; together"
    f" {self_med + np_med + tp_med:.1f} MiB. The CPU time of both processes is in p11enroll's"
    " (they are waited for).",
    "",
    "Time split inside p11enroll (median ms):",
    "",
    "| " + " | ".join(parts) + " |",
    "| " + " | ".join("---" for _ in parts) + " |",
    "| " + " | ".join(f"{statistics.median(v):.1f}" for v in parts.values()) + " |",
    "",
    "Goals (issue 12, same run): CPU ratio <= 1.2, peak RSS <= 12 MiB.",
]
text = "\n".join(lines)
print(text)
open(out_md, "w").write(text + "\n")
PY
