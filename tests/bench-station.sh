#!/bin/bash
# bench-station.sh BINARY: `make bench`, the provisioning station. TOKENS (default 100)
# SoftHSM tokens in one token directory, enrolled by one `provision --jobs J` for J in JOBS
# (default "1 2 4 8"): RSA-2048 against scepserver, EC P-256 against the project's SCEP
# responder double (scepserver cannot sign an ECDSA-signed CSR). Each server's ceiling at
# the same parallelism: J Debian scepclient processes with pre-made RSA-2048 keys, TOKENS
# requests in all, against the same server in the same run (RSA: taken before and after the
# station's runs, each run on a fresh scepserver depot: below). Each series twice: keys
# generated on the tokens by provision (what a station does), and keys made beforehand on
# each token with pkcs11-tool (provision then reuses the key a profile left without
# certificate): like scepclient's pre-made keys, so that the share measures the agent, not
# SoftHSM's key generation. Peak RSS: the largest of provision and its children (GNU
# time), with 20 and with TOKENS tokens. SERIES (default "rsa ec") picks the series to run.
# Figures, not assertions; the table also goes to build/bench-station.md.
set -uo pipefail

[ $# -ge 1 ] || {
	echo "usage: $0 BINARY" >&2
	exit 64
}
BIN=$1
case "$BIN" in /*) ;; *) BIN=$PWD/$BIN ;; esac
TOKENS=${TOKENS:-100}
JOBS=${JOBS:-1 2 4 8}
SERIES=${SERIES:-rsa ec}
OUT_MD=${BENCH_OUT:-$(dirname "$BIN")/bench-station.md}

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/integration/lib.sh"

T=$(mktemp -d /tmp/p11enroll-station.XXXXXX)
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

now() { date +%s.%N; }

# retire PATH...: moves what a measurement left out of the way, into $T/retired (removed
# with $T at the end), instead of deleting it before the next. This machine's ext4 has no
# journal, and there a new file skips every inode freed in the last seconds to minutes
# (ext4's recently_deleted(), one inode-table lookup each): deleting the previous run's 100
# tokens right before a run made each file a card creates cost about 1 ms of CPU, 20% of
# the station's client CPU at --jobs 1 (perf). A station does not delete a thousand files
# before it enrolls; scepclient's ceiling runs are treated alike.
retire() {
	local p d
	mkdir -p "$T/retired" || return 1
	for p in "$@"; do
		[ -e "$p" ] || continue
		d=$(mktemp -d "$T/retired/XXXXXX") && mv "$p" "$d/" || return 1
	done
}

# cards N: a fresh token directory $T/hsm with N tokens (not measured).
cards() {
	local i
	retire "$T/hsm" "$T/hsm.env" "$T/state" "$T/trust" || return 1
	for ((i = 1; i <= $1; i++)); do
		make_token "$(printf 'card-%03d' "$i")" || return 1
	done
}

# premade KEYTYPE: a key pair labelled p11enroll on every token of $T/hsm, generated on the
# token, under the CKA_ID p11enroll gives its keys (the SHA-1 of the RSAPublicKey DER, or
# of the EC point), and recorded as the station profile's own in that card's key record
# (state_dir/tokens/SERIAL/keys-p11enroll.txt): what a crashed earlier run of this
# station would leave (not measured). Under another CKA_ID, each card would first move
# its key to that one (keyrec_fix_id: two C_SetAttributeValue and a record rewritten),
# which such a run does not leave to do.
premade() {
	local label serial pin spec=$1 dir id ty
	pin=$(head -n1 "$T/hsm/pin")
	case $spec in rsa:2048) spec=rsa:2048 ;; ec:P-256) spec=EC:prime256v1 ;; esac
	softhsm2-util --show-slots 2>/dev/null |
		awk '$1 == "Serial" && $2 == "number:" { s = $3 } $1 == "Label:" && $2 != "" { print $2, s }' |
		while read -r label serial; do
			if ! pkcs11-tool --module "$MODULE" --token-label "$label" --login --pin "$pin" \
				--keypairgen --key-type "$spec" --label p11enroll --id 01 \
				--usage-sign --usage-decrypt >/dev/null 2>&1 ||
				! pkcs11-tool --module "$MODULE" --token-label "$label" --read-object \
					--type pubkey --id 01 -o "$T/premade-pub.der" >/dev/null 2>&1; then
				echo "$label" >>"$T/premade.failed"
				continue
			fi
			case $spec in
			rsa:*) openssl rsa -pubin -inform DER -in "$T/premade-pub.der" \
				-RSAPublicKey_out -outform DER 2>/dev/null ;;
			*) openssl pkey -pubin -inform DER -in "$T/premade-pub.der" -outform DER |
				tail -c 65 ;; # P-256: the uncompressed point ends the SPKI
			esac | openssl sha1 -binary >"$T/premade-id.bin"
			id=$(od -An -tx1 "$T/premade-id.bin" | tr -d ' \n')
			[ ${#id} -eq 40 ] || {
				echo "$label" >>"$T/premade.failed"
				continue
			}
			for ty in privkey pubkey; do
				pkcs11-tool --module "$MODULE" --token-label "$label" --login --pin "$pin" \
					--set-id "$id" --id 01 --type "$ty" >/dev/null 2>&1 ||
					echo "$label" >>"$T/premade.failed"
			done
			dir=$T/state/tokens/$serial
			mkdir -p "$dir" && chmod 0700 "$T/state" "$T/state/tokens" "$dir" &&
				(umask 077 && printf 'key=%s\n' "$id" >"$dir/keys-p11enroll.txt") ||
				echo "$label" >>"$T/premade.failed"
		done
	[ ! -s "$T/premade.failed" ]
}

# race_count: scepserver's refusals so far from its depot race (lib.sh's SCEP_DEPOT_RACE,
# README's known failures; 0 without a scepserver).
SRV_LOG=
race_count() {
	if [ -n "$SRV_LOG" ]; then
		grep -cE "failed to sign CSR.*($SCEP_DEPOT_RACE)" "$SRV_LOG" || true
	else
		echo 0
	fi
}

# server_cpu_ms: the CPU time (user + system) the SCEP server has used so far, in ms.
server_cpu_ms() {
	local pid
	pid=$(cat "$SCEP_PIDFILE" 2>/dev/null) || {
		echo 0
		return
	}
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) * 1000 / hz }' \
		"/proc/$pid/stat" 2>/dev/null || echo 0
}

# children_cpu_ms FILE: the CPU time of this shell's waited-for children, in ms, from
# bash's `times` written to FILE by this shell itself (in $(...) it would be a subshell's).
children_cpu_ms() {
	sed -n 2p "$1" | awk '{ for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } }
		END { printf "%.0f\n", t * 1000 }'
}

# station KEYTYPE N J [premade]: enrolls N fresh tokens with provision --jobs J; prints
# "enrolled_per_s peak_rss_kib failed cpu_ms server_cpu_ms" ("fail" when it did not run),
# the CPU times per enrollment: provision's with its children's, the server's. A card the
# server refused (scepserver's serial race, see README) counts as not enrolled.
station() {
	local t0 t1 rss cpu s0 s1
	cards "$2" || return 1
	if [ -n "${4:-}" ] && ! premade "$1"; then
		echo "bench-station: pkcs11-tool could not make the keys" >&2
		echo fail
		return 0
	fi
	TOKEN_URI='pkcs11:manufacturer=SoftHSM%20project' CERT_FILE=- KEY_TYPE=$1 \
		DN='CN=card-{token.serial},O=Example' SAN_DNS=- write_conf "$T/station.conf"
	local races0
	races0=$(race_count)
	s0=$(server_cpu_ms)
	t0=$(now)
	/usr/bin/time -f '%M %U %S' -o "$T/rss" "$BIN" -c "$T/station.conf" -q provision --jobs "$3" \
		>"$T/station.out" 2>"$T/station.err"
	local rc=$?
	t1=$(now)
	s1=$(server_cpu_ms)
	read -r rss cpu < <(tail -n1 "$T/rss" | awk '{ print $1, ($2 + $3) * 1000 }')
	local ok failed
	ok=$(sed -n "s/^$2 tokens: \([0-9]*\) enrolled.*/\1/p" "$T/station.out")
	if [ -z "$ok" ]; then
		echo "bench-station: provision $1 --jobs $3 (exit $rc):" >&2
		tail -n 5 "$T/station.out" "$T/station.err" >&2
		echo fail
		return 0
	fi
	failed=$(($2 - ok))
	# Whose failure: scepserver's depot race (README, known failures) refuses a request with
	# badRequest and logs "failed to sign CSR" with one of two texts; the refusals the
	# server's log shows for this run are the server's, the rest of the failures ours.
	local server ours
	server=$(($(race_count) - races0))
	ours=$((failed - server))
	if [ $ours -gt 0 ]; then
		grep 'failed' "$T/station.err" | head -n 3 >&2
		# The cards' own lines (provision's stderr), whole, for the one that failed.
		local kept=${OUT_MD%.md}-station-$1-$3-${4:-provision}.err
		cp "$T/station.err" "$kept" && echo "bench-station: provision's log kept in $kept" >&2
		# What the server said of refusals that are not its known race (to tell whose):
		# scepserver logs every refusal of a request it could read as "failed to sign CSR"
		# with the reason; the whole log is kept beside the table.
		if [ -n "$SRV_LOG" ]; then
			grep 'failed to sign CSR' "$SRV_LOG" |
				grep -vE "$SCEP_DEPOT_RACE" |
				tail -n 5 | sed 's/^/bench-station: server log: /' >&2
			cp "$SRV_LOG" "${OUT_MD%.md}-scepserver-$1-$3.log" &&
				echo "bench-station: server log kept in ${OUT_MD%.md}-scepserver-$1-$3.log" >&2
		fi
	fi
	echo "$2 $failed $server $ours" >>"$T/failures"
	/usr/bin/python3 -c "print(f'{$ok / ($t1 - $t0):.2f} $rss $failed {$cpu / max($ok, 1):.1f} {($s1 - $s0) / max($ok, 1):.1f}')"
}

# ceiling J N: N scepclient requests, J at a time, each with a copy of one pre-made key;
# prints "issued_per_s failed cpu_ms server_cpu_ms" (per request: scepclient's, with the
# copies and the shells around it, and the server's).
ceiling() {
	local j=$1 n=$2 t0 t1 w i fails=0 c0 c1 s0 s1
	retire "$T/sc" && mkdir -p "$T/sc" || return 1
	times >"$T/times0"
	s0=$(server_cpu_ms)
	t0=$(now)
	for ((w = 0; w < j; w++)); do
		(
			for ((i = w; i < n; i += j)); do
				mkdir "$T/sc/$i" && cp "$T/client.key" "$T/sc/$i/key.pem" || exit 1
				(cd "$T/sc/$i" && scepclient -private-key key.pem -certificate cert.pem \
					-server-url "$SCEP_URL" -challenge "$SCEP_CHALLENGE" \
					-cn "sc-$RANDOM-$i" >out.txt 2>&1) || echo "$i" >>"$T/sc/failed"
			done
		) &
	done
	wait
	t1=$(now)
	s1=$(server_cpu_ms)
	times >"$T/times1"
	c0=$(children_cpu_ms "$T/times0")
	c1=$(children_cpu_ms "$T/times1")
	[ -s "$T/sc/failed" ] && fails=$(wc -l <"$T/sc/failed")
	if [ "$fails" -gt 0 ]; then
		echo "bench-station: $fails of $n scepclient requests failed, e.g.:" >&2
		tail -n 1 "$T/sc/$(head -n1 "$T/sc/failed")/out.txt" >&2
	fi
	/usr/bin/python3 -c "print(f'{($n - $fails) / ($t1 - $t0):.2f} $fails {($c1 - $c0) / max($n - $fails, 1):.1f} {($s1 - $s0) / max($n - $fails, 1):.1f}')"
}

openssl genrsa -traditional -out "$T/client.key" 2048 2>/dev/null || exit 1
rows=()

series() { case " $SERIES " in *" $1 "*) return 0 ;; esac; return 1; }

# RSA-2048 against scepserver (-allowrenew 0: scepclient's subjects may repeat). Every
# measurement (each ceiling, each station run) gets a scepserver of its own on a fresh
# copy of the run's cached CA depot (the same CA), so that none depends on the ones before
# it. (A growing depot was suspected, since scepserver rewrites index.txt at every request;
# measured, it is not a cost: 600 scepclient requests on one depot, PKIOperation took 30.7 ms
# on average over the first 100 and 26.1 ms over the last 100.) The ceiling is taken before
# and after the two station runs of a --jobs, and their mean is the one the shares use (both
# in the log): this machine's speed drifts between runs.
nsrv=0
fresh_scepserver() {
	[ -z "${SCEP_PIDFILE:-}" ] || stop_pid "$SCEP_PIDFILE"
	nsrv=$((nsrv + 1))
	start_scepserver "$T/srv-$nsrv" -allowrenew 0 || return 1
	SRV_LOG=$T/srv-$nsrv/scepserver.log
}
# mean A B: the mean of two figures ("?" if either is not a number).
mean() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 == a && b + 0 == b) printf "%.2f\n", (a + b) / 2; else print "?" }'; }
if series rsa; then
fresh_scepserver || exit 1
# shellcheck disable=SC2034  # read by write_conf
CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
for j in $JOBS; do
	read -r ceil1 cfailed1 ccpu1 csrv1 < <(ceiling "$j" "$TOKENS")
	runs=()
	for keys in token premade; do
		fresh_scepserver || exit 1
		read -r rate rss failed cpu srv < <(station rsa:2048 "$TOKENS" "$j" "${keys#token}")
		runs+=("$keys $rate ${rss:-?} ${failed:-?} ${cpu:-?} ${srv:-?}")
	done
	fresh_scepserver || exit 1
	read -r ceil2 cfailed2 ccpu2 csrv2 < <(ceiling "$j" "$TOKENS")
	ceil=$(mean "$ceil1" "$ceil2") ccpu=$(mean "$ccpu1" "$ccpu2") csrv=$(mean "$csrv1" "$csrv2")
	cfailed=$((${cfailed1:-0} + ${cfailed2:-0}))
	echo "rsa:2048, jobs $j: scepclient ceiling ${ceil1:-?}/s before the station's runs, ${ceil2:-?}/s after" >&2
	for r in "${runs[@]}"; do
		read -r keys rate rss failed cpu srv <<<"$r"
		rows+=("rsa:2048 scepserver $keys $j $rate $ceil $rss $failed $cfailed $cpu $ccpu $srv $csrv")
		echo "rsa:2048 ($keys keys), jobs $j: ${rate} enrollments/s (scepclient ceiling ${ceil}/s), peak RSS $rss KiB" >&2
	done
done
fresh_scepserver || exit 1
read -r _ rss20 _ _ _ < <(station rsa:2048 20 4)
stop_all
SRV_LOG=
fi

# EC P-256 against the responder double.
if series ec; then
SCEP_CHALLENGE=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
# Its keys from the doubles' pool (tests/doubles/keypool.py), under a counter of this run.
export P11E_KEYPOOL_STATE=${P11E_KEYPOOL_STATE:-$T/keypool.count}
start_responder "$T/resp" normal || exit 1
for j in $JOBS; do
	read -r ceil cfailed ccpu csrv < <(ceiling "$j" "$TOKENS")
	for keys in token premade; do
		read -r rate rss failed cpu srv < <(station ec:P-256 "$TOKENS" "$j" "${keys#token}")
		rows+=("ec:P-256 responder $keys $j $rate $ceil $rss ${failed:-?} ${cfailed:-?} ${cpu:-?} ${ccpu:-?} ${srv:-?} ${csrv:-?}")
		echo "ec:P-256 ($keys keys), jobs $j: ${rate} enrollments/s (scepclient ceiling ${ceil}/s), peak RSS ${rss:-?} KiB" >&2
	done
done
stop_all
fi

/usr/bin/python3 - "$TOKENS" "${rss20:-0}" "${rows[@]}" >"$OUT_MD" <<'PY'
import sys
tokens, rss20, rows = sys.argv[1], sys.argv[2], sys.argv[3:]
print(f"Provisioning station: {tokens} SoftHSM tokens per run, one `provision --jobs J`; ceiling: "
      f"J scepclient processes, {tokens} requests, same server. RSA: every run on a fresh "
      f"scepserver depot, the ceiling the mean of one run before the station's and one after.\n")
print("| key | server | keys | jobs | p11enroll enrollments/s | scepclient ceiling /s | share "
      "| peak RSS MiB | refused by the server (p11enroll / scepclient, RSA: its two runs) "
      "| client CPU ms per enrollment (p11enroll / scepclient) "
      "| server CPU ms per enrollment (p11enroll's / scepclient's) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    key, srv, keys, j, rate, ceil, rss, f1, f2, cpu, ccpu, scpu, sccpu = (r.split() + ["?"] * 13)[:13]
    keys = "made by provision" if keys == "token" else "pre-made on the token"
    try:
        share = f"{100 * float(rate) / float(ceil):.0f}%"
    except ValueError:
        share = "n/a"
    try:
        mib = f"{int(rss) / 1024:.1f}"
    except ValueError:
        mib = "?"
    print(f"| {key} | {srv} | {keys} | {j} | {rate} | {ceil} | {share} | {mib} | {f1} / {f2} "
          f"| {cpu} / {ccpu} | {scpu} / {sccpu} |")
try:
    if int(rss20) > 0:
        print(f"\nPeak RSS with 20 tokens (rsa:2048, jobs 4): {int(rss20) / 1024:.1f} MiB.")
except ValueError:
    pass
PY
# Every card of the run: how many failed, and whose failure it was.
awk '{ n += $1; f += $2; s += $3; o += $4 }
	END { printf "\nStation enrollments in this run: %d; failed %d: %d refused by scepserver'"'"'s depot race, %d not the server'"'"'s.\n", n, f, s, o }' \
	"$T/failures" >>"$OUT_MD"
cat "$OUT_MD"
