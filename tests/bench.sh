#!/bin/bash
# bench.sh BINARY [RUNS]: `make bench`. Against one local scepserver (loopback, free port):
#   p11enroll enroll with a pre-generated SoftHSM RSA-2048 key (the key is reused: its
#   certificate is deleted from the token between runs, outside the measurement), versus
#   the Debian scepclient with a pre-generated RSA-2048 file key.
# Prints median wall, CPU (user+sys), minor page faults and peak RSS of each, their ratios,
# the floors (SoftHSM alone through pkcs11-tool; the start of p11enroll and of p11enroll-net),
# p11enroll's figures split by process, its processes' memory while it waits on a server,
# and the time split inside it (from its -v lines). Figures, not assertions: the exit status
# only says whether the runs worked. Writes the table to build/bench.md too.
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

# One measured command: "wall_s user_s sys_s maxrss_kib minflt" appended to FILE. Wall,
# CPU and minor page faults come from wait4() (microseconds; GNU time rounds to 10 ms; the
# command's and the children it waited for). Its exit status must be $BENCH_RC (default 0).
# Peak RSS comes from GNU time as the command's parent: a child forked from python would
# inherit python's RSS into ru_maxrss, GNU time's own is ~1 MiB and not counted.
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
print(f"{wall:.6f} {ru.ru_utime:.6f} {ru.ru_stime:.6f} {rss} {ru.ru_minflt}")
rc = os.waitstatus_to_exitcode(status)
sys.exit(0 if rc == int(os.environ.get("BENCH_RC", "0")) else 1)
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
	# Each process's own figures, "RSS_KIB CPU_MS FAULTS" (-v: "peak RSS N KiB, CPU N.N ms,
	# N page faults"): the network process (its CPU is in p11enroll's: it is waited for),
	# p11enroll itself (GNU time's peak is the largest of it and its children: wait4 gives
	# a process's children's peak too), the token process (the module, its session: a
	# fork of p11enroll, waited for too).
	used='peak RSS \([0-9]*\) KiB, CPU \([0-9.]*\) ms, \([0-9]*\) page faults'
	sed -n "s/.*network process: .*$used.*/\\1 \\2 \\3/p" "$T/cmd.err" >>p11e-netproc.txt
	sed -n "s/.*: this process: $used.*/\\1 \\2 \\3/p" "$T/cmd.err" >>p11e-self.txt
	sed -n "s/.*token process: $used.*/\\1 \\2 \\3/p" "$T/cmd.err" >>p11e-tokproc.txt
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
openssl rand -out tbs.bin 100 # (lib.sh's loadable head knows -n only)
KEY_ID=$(p11tool --list-objects --type privkey 2>/dev/null | sed -n 's/^  ID:[[:space:]]*//p' | head -n1)
: >floor.txt
for ((i = 0; i < RUNS; i++)); do
	measure floor.txt pkcs11-tool --module "$MODULE" --token-label "$TOKEN_LABEL" --login \
		--pin "$PIN" --sign -m SHA256-RSA-PKCS --id "$KEY_ID" -i tbs.bin -o sig.bin || exit 1
done

# What starting each of p11enroll's two programs costs before any work: p11enroll
# (--version: libcrypto, libssl, libseccomp loaded, OpenSSL not set up) and p11enroll-net
# (exec, libcurl and its dependencies loaded, hardened, then it exits 64 without its socket).
: >start-main.txt
: >start-net.txt
for ((i = 0; i < RUNS; i++)); do
	measure start-main.txt "$BIN" --version || exit 1
	BENCH_RC=64 measure start-net.txt "$(dirname "$BIN")/p11enroll-net" || exit 1
done

# Memory while an enrollment waits on its server (the token open and logged in, the network
# process's first request sent to a listener of 127.0.0.1 that never answers; then the run
# is stopped with SIGTERM): each process's
# /proc/PID/smaps_rollup, "PROCESS RSS PSS PRIVATE" in KiB, 3 times. RSS counts the pages a
# process shares (libcrypto, libc, the pages the token process shares with p11enroll, its
# fork) in each one; PSS divides them among their users; private is each one's alone.
SILENT_PORT=$(free_port)
/usr/bin/python3 -c '
import os, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
open(sys.argv[2] + ".tmp", "w").write("%d\n" % os.getpid())
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
held = []
while True:
    held.append(s.accept()[0])
' "$SILENT_PORT" "$T/silent.pid" &
register_pidfile "$T/silent.pid"
sed "s|^url = .*|url = http://127.0.0.1:$SILENT_PORT/scep|" "$T/p11enroll.conf" >"$T/silent.conf"
: >mem.txt
mem_of() { # mem_of NAME PID: a line of mem.txt
	local rss='' pss='' priv=0 k v _
	while read -r k v _; do
		case "$k" in
		Rss:) rss=$v ;;
		Pss:) pss=$v ;;
		Private_Clean: | Private_Dirty:) priv=$((priv + v)) ;;
		esac
	done <"/proc/$2/smaps_rollup" || return 1
	echo "$1 $rss $pss $priv" >>mem.txt
}
drop_cert || exit 1 # (the killed runs below store nothing)
for ((i = 0; i < 3; i++)); do
	"$BIN" -c "$T/silent.conf" -q enroll >/dev/null 2>&1 &
	main=$!
	tokpid='' netpid=''
	for ((w = 0; w < 100; w++)); do
		sleep 0.1
		for c in $(pgrep -P "$main"); do
			comm=
			{ read -r comm <"/proc/$c/comm"; } 2>/dev/null
			case "$comm" in
			p11enroll-net) netpid=$c ;;
			p11enroll) tokpid=$c ;;
			esac
		done
		[ -n "$tokpid" ] && [ -n "$netpid" ] && break
	done
	sleep 0.5 # the token logged in, the first request sent (it takes a few ms)
	{ mem_of p11enroll "$main" && mem_of token "$tokpid" && mem_of network "$netpid"; } 2>/dev/null ||
		echo "bench: could not read the processes' smaps_rollup" >&2
	kill -TERM "$main" 2>/dev/null
	wait "$main" 2>/dev/null
done
stop_all

/usr/bin/python3 - "$RUNS" "$OUT_MD" <<'PY'
import re, statistics, sys
runs, out_md = int(sys.argv[1]), sys.argv[2]
med = statistics.median

def load(name):
    rows = [list(map(float, l.split())) for l in open(name) if l.strip()]
    return {
        "wall": med(r[0] * 1000 for r in rows),
        "cpu": med((r[1] + r[2]) * 1000 for r in rows),
        "rss": med(r[3] / 1024 for r in rows),
        "rss_max": max(r[3] / 1024 for r in rows),
        "flt": med(r[4] for r in rows),
    }

def own(name):
    """A process's own figures from p11enroll -v: medians of RSS MiB, CPU ms, faults."""
    rows = [list(map(float, l.split())) for l in open(name) if l.strip()]
    if not rows:
        return {"n": 0, "rss": 0.0, "cpu": 0.0, "flt": 0.0}
    return {"n": len(rows), "rss": med(r[0] / 1024 for r in rows),
            "cpu": med(r[1] for r in rows), "flt": med(r[2] for r in rows)}

p, s, f = load("p11e.txt"), load("scepclient.txt"), load("floor.txt")
sm, sn = load("start-main.txt"), load("start-net.txt")
me, tp, np_ = own("p11e-self.txt"), own("p11e-tokproc.txt"), own("p11e-netproc.txt")
parts = {}
for line in open("p11e-split.txt"):
    for name, val in re.findall(r"([a-zA-Z+ ]+?) ([0-9.]+)(?:,|$)", line.split(":", 1)[1]):
        parts.setdefault(name.strip(), []).append(float(val))

def row(label, m):
    return (f"| {label} | {m['wall']:.1f} | {m['cpu']:.1f} | {m['flt']:.0f} |"
            f" {m['rss']:.1f} (max {m['rss_max']:.1f}) |")

lines = [
    f"Median of {runs} runs against one local scepserver (RSA-2048, key pre-generated):",
    "",
    "| client | wall ms | CPU ms (user+sys) | minor page faults | peak RSS MiB |",
    "| --- | --- | --- | --- | --- |",
    row("p11enroll, SoftHSM token key", p),
    row("scepclient, file key", s),
    f"| ratio p11enroll / scepclient | {p['wall'] / s['wall']:.2f} | {p['cpu'] / s['cpu']:.2f} |"
    f" {p['flt'] / s['flt']:.2f} | {p['rss'] / s['rss']:.2f} |",
    row("floor: pkcs11-tool, SoftHSM load + login + one RSA sign", f),
    row("floor: p11enroll --version (its start)", sm),
    row("floor: p11enroll-net's start (exec, libcurl's libraries, exits at once)", sn),
    "",
    "p11enroll's CPU and faults above are its own and its two children's (wait4), its peak RSS"
    " GNU time's: the largest of its own and its children's. Each process on its own"
    f" (`-v`, getrusage of itself at its end; medians of {me['n']}):",
    "",
    "| process | CPU ms | minor page faults | peak RSS MiB |",
    "| --- | --- | --- | --- |",
    f"| p11enroll (configuration, CA, CSR and CMS, decryption, the store's order) | {me['cpu']:.1f} | {me['flt']:.0f} | {me['rss']:.1f} |",
    f"| token process (a fork of p11enroll: the PKCS#11 module, login, 3 signatures, 1 decryption, the certificate stored) | {tp['cpu']:.1f} | {tp['flt']:.0f} | {tp['rss']:.1f} |",
    f"| network process (p11enroll-net: libcurl, 3 requests, the server's CMS taken apart) | {np_['cpu']:.1f} | {np_['flt']:.0f} | {np_['rss']:.1f} |",
    f"| sum | {me['cpu'] + tp['cpu'] + np_['cpu']:.1f} | {me['flt'] + tp['flt'] + np_['flt']:.0f} | {me['rss'] + tp['rss'] + np_['rss']:.1f} |",
    "",
    "Pages shared by the processes count in each one's RSS. What the sum misses of p11enroll's"
    " whole CPU is the processes' ends after they measured themselves (exit, unmapping).",
    "",
]
mem = {}
for l in open("mem.txt"):
    name, rss, pss, priv = l.split()
    mem.setdefault(name, []).append((int(rss), int(pss), int(priv)))
if mem:
    lines += [
        "Memory while the enrollment waits on its server (token open, request sent; /proc/PID/"
        f"smaps_rollup, medians of {len(mem.get('p11enroll', []))}): RSS counts shared pages"
        " (libcrypto, libc, what the token process shares with p11enroll) in each process, PSS"
        " divides them among their users, private is a process's own.",
        "",
        "| process | RSS MiB | PSS MiB | private MiB |",
        "| --- | --- | --- | --- |",
    ]
    tot = [0.0, 0.0, 0.0]
    for name in ("p11enroll", "token", "network"):
        if name not in mem:
            continue
        v = [med(r[k] for r in mem[name]) / 1024 for k in range(3)]
        tot = [a + b for a, b in zip(tot, v)]
        lines.append(f"| {name} | {v[0]:.1f} | {v[1]:.1f} | {v[2]:.1f} |")
    lines += [f"| sum | {tot[0]:.1f} | {tot[1]:.1f} | {tot[2]:.1f} |", ""]
lines += [
    "Time split inside p11enroll (median ms):",
    "",
    "| " + " | ".join(parts) + " |",
    "| " + " | ".join("---" for _ in parts) + " |",
    "| " + " | ".join(f"{med(v):.1f}" for v in parts.values()) + " |",
    "",
    "Goals (issue 12, same run): CPU ratio <= 1.2, peak RSS <= 12 MiB.",
]
text = "\n".join(lines)
print(text)
open(out_md, "w").write(text + "\n")
PY
