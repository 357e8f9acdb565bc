#!/bin/bash
# Secrets in the memory of a running p11enroll: what a core dump would hold. The process
# is caught waiting for a PENDING request (enroll --wait), after the NDES challenge page
# and the PKCSReq: the NDES password, the PIN and every copy of the challenge that
# p11enroll, libcurl or OpenSSL made must be gone from what a dump contains (gcore, and
# /proc/PID/mem read the way the kernel dumps: every mapping but those marked "dd"),
# while what it still holds sits in locked ("lo"), dump-excluded ("dd") memory; its core
# limit is 0. And URLs written with user:password@ never reach a log line or output.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

# write_ndes_conf: write_conf with [scep] challenge_insecure_http = yes (the NDES double
# speaks plain http), also while lib.sh's write_conf does not write that key.
write_ndes_conf() {
	CHALLENGE_INSECURE_HTTP=yes write_conf "$@" || return
	grep -q '^challenge_insecure_http' "$CONF" ||
		sed -i 's/^challenge_url = .*/&\nchallenge_insecure_http = yes/' "$CONF"
}

# The scanner: python3 scan.py PID SECRETS_FILE [CORE]. SECRETS_FILE holds "name value"
# lines. For each secret (as UTF-8 and as UTF-16LE) it prints where it is found:
#   "dump NAME ENC" in what a core dump holds (CORE if given, else the mappings of
#   /proc/PID/maps without the "dd" flag), "excluded NAME ENC" in a mapping marked "dd".
# Also "arena" for each mapping that is locked and excluded from dumps, and "vmlck KB".
write_scanner() {
	cat >"$T/scan.py" <<'EOF'
import re, sys
pid, secrets_file = int(sys.argv[1]), sys.argv[2]
core = sys.argv[3] if len(sys.argv) > 3 else None
secrets = []
W = 12  # an allocator's free() overwrites a chunk's first bytes: look for any 12 characters
for line in open(secrets_file, encoding="utf-8"):
    name, value = line.rstrip("\n").split(" ", 1)
    n = min(W, len(value))
    for enc in ("utf-8", "utf-16-le"):
        parts = [value[i:i + n].encode(enc) for i in range(len(value) - n + 1)]
        secrets.append((name, enc.replace("-", ""), parts))
maps, cur = [], None
for line in open("/proc/%d/smaps" % pid):
    m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
    if m:
        cur = {"lo": int(m.group(1), 16), "hi": int(m.group(2), 16), "perm": m.group(3),
               "name": m.group(4), "flags": []}
        maps.append(cur)
    elif line.startswith("VmFlags:") and cur is not None:
        cur["flags"] = line.split()[1:]
    elif line.startswith("Rss:") and cur is not None:
        cur["rss"] = int(line.split()[1])
PAGE = 4096


def held(pagemap, lo, hi):
    """The runs [a, b) of pages of lo-hi that are in memory or swapped (/proc/PID/pagemap
    bits 63 and 62): a page never touched holds nothing, and a sanitizer's mappings are
    mostly such pages (reading them all took 20 s of CPU under ASan)."""
    pagemap.seek(lo // PAGE * 8)
    raw = pagemap.read((hi - lo) // PAGE * 8)
    runs, start = [], None
    for i in range(len(raw) // 8):
        there = raw[i * 8 + 7] & 0xC0
        if there and start is None:
            start = lo + i * PAGE
        elif not there and start is not None:
            runs.append((start, lo + i * PAGE))
            start = None
    if start is not None:
        runs.append((start, hi))
    return runs


found = set()
with open("/proc/%d/mem" % pid, "rb", buffering=0) as mem, \
        open("/proc/%d/pagemap" % pid, "rb", buffering=0) as pagemap:
    for mp in maps:
        # Nothing resident: nothing to find (and reading would only fault in pages);
        # over 256 MiB: a sanitizer's shadow memory, which dumps leave out.
        if (not mp["perm"].startswith("r") or mp["name"] in ("[vvar]", "[vsyscall]")
                or mp.get("rss", 1) == 0 or mp["hi"] - mp["lo"] > 256 << 20):
            continue
        dd = "dd" in mp["flags"]
        if dd and "lo" in mp["flags"] and not mp["name"]:
            print("arena %x-%x" % (mp["lo"], mp["hi"]))
        for a, b in held(pagemap, mp["lo"], mp["hi"]):
            try:
                mem.seek(a)
                data = mem.read(b - a)
            except OSError:
                continue
            # A secret across two runs would sit on a page that is not in memory.
            for name, enc, parts in secrets:
                if any(s in data for s in parts):
                    found.add(("excluded" if dd else "dump", name, enc))
if core is not None:
    found = {f for f in found if f[0] != "dump"}
    data = open(core, "rb").read()
    for name, enc, parts in secrets:
        if any(s in data for s in parts):
            found.add(("dump", name, enc))
for f in sorted(found):
    print(" ".join(f))
for line in open("/proc/%d/status" % pid):
    if line.startswith("VmLck:"):
        print("vmlck %s" % line.split()[1])
EOF
}

# A pending enrollment with an NDES one-time challenge, caught while it waits to poll.
test_dump_after_ndes_exchange_holds_no_secret() {
	local pid i ch asan
	make_token || return
	# Long secrets: a freed chunk keeps all but its first bytes.
	NDES_PASSWORD=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
	start_ndes "$T/ndes" --length 40 || return
	SCEP_CHALLENGE=- start_responder "$T/resp" pending-forever || return
	CHALLENGE_FILE=- CHALLENGE_URL=$NDES_URL CHALLENGE_USER='EXAMPLE\enroll'
	CHALLENGE_PW_FILE=$NDES_PW_FILE write_ndes_conf
	write_scanner
	"$P11ENROLL" -c "$CONF" enroll --max-wait 2m >"$T/enroll.out" 2>"$T/enroll.err" </dev/null &
	pid=$!
	echo "$pid" >"$T/enroll.pid"
	register_pidfile "$T/enroll.pid"
	for ((i = 0; i < 600; i++)); do
		grep -q "polling again" "$T/enroll.err" && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	cat "$T/enroll.err" >&2
	assert_contains "$T/enroll.err" "polling again" || return
	ch=$(head -n1 "$NDES_DIR/state/challenges")
	{
		echo "ndes-password $(cat "$NDES_PW_FILE")"
		echo "challenge $ch"
		echo "pin $PIN"
		echo "canary $CONF" # no secret: the configuration's path, which it keeps
	} >"$T/secrets"
	kill -0 "$pid" 2>/dev/null || {
		fail "p11enroll (pid $pid) is gone before its memory could be looked at"
		return
	}
	# gcore too, where gdb is installed (not under AddressSanitizer: its terabytes of
	# shadow memory would be read into the machine's RAM).
	case "$(ldd "$P11ENROLL" 2>/dev/null)" in
	*libasan*) asan=1 ;;
	*) asan=0 ;;
	esac
	if command -v gcore >/dev/null && [ "$asan" = 0 ]; then
		gcore -o "$T/core" "$pid" >"$T/gcore.log" 2>&1 || cat "$T/gcore.log" >&2
		assert_file "$T/core.$pid"
		python3 "$T/scan.py" "$pid" "$T/secrets" "$T/core.$pid" >"$T/scan-gcore.txt" ||
			fail "the memory scan failed"
		cat "$T/scan-gcore.txt" >&2
		assert_contains "$T/scan-gcore.txt" "dump canary utf8" # the scan sees the heap
		grep '^dump' "$T/scan-gcore.txt" | grep -v ' canary ' >"$T/leaks-gcore.txt"
		assert_eq 0 "$(wc -l <"$T/leaks-gcore.txt")" "secrets in the gcore dump"
		rm -f "$T/core.$pid"
	fi
	cp "/proc/$pid/smaps" "$T/smaps.txt" 2>/dev/null # for the record
	python3 "$T/scan.py" "$pid" "$T/secrets" >"$T/scan.txt" || fail "the memory scan failed"
	cat "$T/scan.txt" >&2
	assert_contains "$T/scan.txt" "dump canary utf8"
	grep '^dump' "$T/scan.txt" | grep -v ' canary ' >"$T/leaks.txt"
	assert_eq 0 "$(wc -l <"$T/leaks.txt")" "secrets in what a dump holds"
	# Whatever it still holds (now: the challenge, for the PENDING request) is in
	# locked memory that dumps leave out.
	assert_match "$T/scan.txt" '^arena '
	assert_match "$T/scan.txt" '^vmlck [1-9]'
	assert_match "/proc/$pid/limits" '^Max core file size +0 +0 '
	network_process_checks "$pid"
	stop_pid "$T/enroll.pid"
}

# network_process_checks PID: the network process of the p11enroll PID (netproc.c,
# p11enroll-net), which fetched the NDES page and sent the PKCSReq: another user than root,
# no new privileges, a seccomp filter, the PKCS#11 module nowhere in its memory map nor in
# PID's (it is in the token process's), libcurl only in its map (not in PID's), and no
# secret in what a dump of it holds.
network_process_checks() {
	local pid=$1 np
	np=$(pgrep -P "$pid" -x p11enroll-net | head -n1)
	if [ -z "$np" ]; then
		fail "no network process under p11enroll (pid $pid): $(pgrep -a -P "$pid")"
		return 1
	fi
	assert_match "/proc/$np/status" '^Uid:[[:space:]]+65534[[:space:]]+65534[[:space:]]+65534'
	assert_match "/proc/$np/status" '^NoNewPrivs:[[:space:]]+1$'
	assert_match "/proc/$np/status" '^Seccomp:[[:space:]]+2$'
	assert_not_contains "/proc/$pid/maps" "$(basename "$MODULE")"
	assert_not_contains "/proc/$np/maps" "$(basename "$MODULE")"
	assert_contains "/proc/$np/maps" "libcurl"
	assert_not_contains "/proc/$pid/maps" "libcurl"
	{
		grep -v '^canary ' "$T/secrets"
		echo "canary p11enroll-net" # its argv: the scan sees its memory
	} >"$T/secrets-np"
	scan_holds_none "$np" np "secrets in what a dump of the network process holds"
	token_process_checks "$pid"
}

# scan_holds_none PID NAME WHAT: scan.py of PID for the secrets in $T/secrets-NAME sees its
# memory (the canary) and finds none of the others in what a dump of it holds.
scan_holds_none() {
	local pid=$1 name=$2 what=$3
	python3 "$T/scan.py" "$pid" "$T/secrets-$name" >"$T/scan-$name.txt" ||
		fail "the memory scan failed"
	cat "$T/scan-$name.txt" >&2
	assert_contains "$T/scan-$name.txt" "dump canary utf8"
	grep '^dump' "$T/scan-$name.txt" | grep -v ' canary ' >"$T/leaks-$name.txt"
	assert_eq 0 "$(wc -l <"$T/leaks-$name.txt")" "$what"
}

# token_process_checks PID: p11enroll's token process holds the module, and no network:
# no libcurl, none of the network's secrets (it was started before they were read).
token_process_checks() {
	local pid=$1 tp
	tp=$(pgrep -P "$pid" -x p11enroll | head -n1)
	if [ -z "$tp" ]; then
		fail "no token process under p11enroll (pid $pid): $(pgrep -a -P "$pid")"
		return 1
	fi
	assert_contains "/proc/$tp/maps" "$(basename "$MODULE")"
	assert_not_contains "/proc/$tp/maps" "libcurl"
	{
		grep -v -e '^canary ' -e '^pin ' "$T/secrets"
		echo "canary $CONF" # inherited from p11enroll: the scan sees its memory
	} >"$T/secrets-tp"
	scan_holds_none "$tp" tp "network secrets in the token process's memory"
}

# with_userinfo URL USER PASSWORD: URL with USER:PASSWORD@ after its scheme.
with_userinfo() {
	printf '%s://%s:%s@%s' "${1%%://*}" "$2" "$3" "${1#*://}"
}

# no_url_password FILE...: none of the URL passwords of these tests is in FILE.
no_url_password() {
	local f
	for f in "$@"; do
		assert_not_contains "$f" "ScepUrlPw"
		assert_not_contains "$f" "NdesUrlPw"
		assert_not_contains "$f" "ProxyUrlPw"
	done
}

# URLs are written with user:password@ (a proxy's, a gateway's): no log line, message or
# output of enroll and check shows the password, whether things work or fail.
test_credentials_in_urls_stay_out_of_logs() {
	local scep_url dead
	make_token || return
	start_ndes "$T/ndes" || return
	SCEP_ONE_TIME=1 start_scepserver "$T/srv" -csrverifierexec "$NDES_VERIFY" || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	scep_url=$SCEP_URL
	SCEP_URL=$(with_userinfo "$scep_url" scepuser ScepUrlPw)
	CHALLENGE_FILE=- CHALLENGE_URL=$(with_userinfo "$NDES_URL" ndesuser NdesUrlPw)
	CHALLENGE_USER='EXAMPLE\enroll' CHALLENGE_PW_FILE=$NDES_PW_FILE
	write_ndes_conf
	assert_exit 0 p11e -v enroll || return
	assert_contains "$ERR" "obtained a one-time challenge from $NDES_URL"
	no_url_password "$ERR" "$OUT"
	assert_exit 0 p11e check || return
	assert_contains "$OUT" "server:        $scep_url"
	no_url_password "$ERR" "$OUT"
	assert_exit 0 p11e check --json || return
	no_url_password "$ERR" "$OUT"
	# Failures: GetCACert answered 404, an unreachable proxy, a rejected URL.
	SCEP_URL=$(with_userinfo "${scep_url%/scep}/nope" scepuser ScepUrlPw) write_ndes_conf
	assert_exit 69 p11e check || return
	assert_contains "$ERR" "GetCACert from ${scep_url%/scep}/nope failed: HTTP 404"
	no_url_password "$ERR" "$OUT"
	dead=http://127.0.0.1:$(free_port)
	PROXY=$(with_userinfo "$dead" proxyuser ProxyUrlPw) write_ndes_conf
	assert_exit 69 p11e check || return
	assert_contains "$OUT" "proxy:         $dead"
	no_url_password "$ERR" "$OUT"
	SCEP_URL=$(with_userinfo "ftp://${scep_url#http://}" scepuser ScepUrlPw) write_ndes_conf
	assert_exit 78 p11e enroll || return
	assert_contains "$ERR" "is not an http:// or https:// URL"
	no_url_password "$ERR" "$OUT"
	PROXY=$(with_userinfo "ftp://proxy.example.com:3128" proxyuser ProxyUrlPw) write_ndes_conf
	assert_exit 78 p11e enroll || return
	assert_contains "$ERR" "'ftp://proxy.example.com:3128' is not a proxy URL"
	no_url_password "$ERR" "$OUT"
}

run_tests
