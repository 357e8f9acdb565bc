#!/bin/bash
# layers.sh: the include graph of agent/ and the layer rules (../shared/STYLE.md items 1, 4
# and 13; issue 12 "No include circles"). No arguments; run from anywhere.
#
# A module Y of agent/ is agent/Y.c with its header: agent/Y.h, or include/Y.h when that is
# where Y's header lives; a header of agent/ without a .c (data only) is a module too. Module
# A depends on module B when A's .c or header includes B's header (an include moved into a
# header still counts). A module whose functions another module's header declares is
# invisible here: one header per module (STYLE 4) is what makes the graph whole. Checked:
#   1. no include cycle between modules: A -> B -> A, and longer ones (A -> B -> C -> A);
#   2. nothing under tokens/ includes a header that lives only in agent/;
#   3. nothing outside tokens/ includes the PKCS#11 header (<p11-kit/pkcs11.h>, "pkcs11.h")
#      or a header private to tokens/ (tokens/*.h that include/ does not have), except the
#      files in ALLOWED below, which are today's honest exceptions.
# Exit 0 with a one-line summary; 1 listing every violation; 2 when it cannot run.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
if [ ! -d agent ] || [ ! -d tokens ] || [ ! -d include ]; then
	echo "layers.sh: agent/, tokens/ or include/ missing in $PWD" >&2
	exit 2
fi

# file<TAB>why: files outside tokens/ allowed to include the PKCS#11 header or tokens/'
# private headers. Nothing in agent/ or include/ is.
ALLOWED="tests/fault/fault_pkcs11.c	the tests' own PKCS#11 module, wrapping SoftHSM
tests/unit/test_pkcs11.c	white-box test of tokens/
tests/fuzz/fuzz_tokserve.c	fuzz target of the token process's requests (tokens/tokserve.c)"

# "file:line:name" for each #include in the files given after $1, the opening delimiters
# to match ('<"': all; '"': the tree's own headers), the name without them.
includes() {
	local d=$1
	shift
	[ $# -gt 0 ] || return 0
	grep -HnE "^[[:space:]]*#[[:space:]]*include[[:space:]]*[$d][^\">]*[\">]" "$@" /dev/null |
		sed -E 's/^([^:]*:[0-9]+):[^<"]*[<"]([^">]*)[">].*/\1:\2/'
}

# Sources outside tokens/, build trees and .git.
others() {
	find . \( -name .git -o -path './build*' -o -path ./tokens \) -prune -o \
		-type f \( -name '*.c' -o -name '*.h' \) -print | sed 's|^\./||' | LC_ALL=C sort
}

shopt -s nullglob
agent_c=(agent/*.c)
agent_h=(agent/*.h)
tok_h=(tokens/*.h)
tok_files=(tokens/*.c tokens/*.h)

# ---- 1. include cycles between agent/ modules ----
# Modules: agent/*.c and agent/*.h by name; their files: agent/Y.c, agent/Y.h, include/Y.h.
mods=$(for f in "${agent_c[@]}" "${agent_h[@]}"; do
	b=${f##*/}
	echo "${b%.*}"
done | LC_ALL=C sort -u)
mod_files=()
for m in $mods; do
	for f in "agent/$m.c" "agent/$m.h" "include/$m.h"; do
		[ -e "$f" ] && mod_files+=("$f")
	done
done

cycles=$(includes '"' "${mod_files[@]}" | awk -v mods="$mods" '
function owner(f, b) { # module of a file of mod_files
	b = f
	sub(/^.*\//, "", b)
	sub(/\.[ch]$/, "", b)
	return b
}
function header_mod(h, b) { # module whose header h is ("x.h" or "dir/x.h"), or ""
	if (h ~ /\//)
		return ""
	b = h
	if (sub(/\.h$/, "", b) != 1 || !(b in idx))
		return ""
	return b
}
# Shortest path v => u (BFS, adjacency order) into sp[1..]; returns its number of nodes.
function shortest(v, u, q, qh, qt, par, x, k, y, m, i) {
	split("", par)
	qh = qt = 1
	q[1] = v
	par[v] = -1
	while (qh <= qt && !(u in par)) {
		x = q[qh++]
		for (k = 1; k <= nadj[x]; k++) {
			y = adj[x, k]
			if (!(y in par)) {
				par[y] = x
				q[++qt] = y
			}
		}
	}
	m = 0
	for (x = u; x != -1; x = par[x])
		rev[++m] = x
	for (i = 1; i <= m; i++)
		sp[i] = rev[m + 1 - i]
	return m
}
BEGIN {
	n = split(mods, name, /[ \n]+/)
	for (i = 1; i <= n; i++)
		idx[name[i]] = i
}
{
	# file:line:header
	f = $0
	sub(/:.*/, "", f)
	rest = substr($0, length(f) + 2)
	ln = rest
	sub(/:.*/, "", ln)
	h = substr(rest, length(ln) + 2)
	a = owner(f)
	b = header_mod(h)
	if (b == "" || b == a || !(a in idx))
		next
	ai = idx[a]
	bi = idx[b]
	if ((ai, bi) in ev)
		next
	ev[ai, bi] = f ":" ln " includes \"" h "\""
	adj[ai, ++nadj[ai]] = bi
	reach[ai, bi] = 1
	nedges++
}
END {
	for (k = 1; k <= n; k++)
		for (i = 1; i <= n; i++)
			if (reach[i, k])
				for (j = 1; j <= n; j++)
					if (reach[k, j])
						reach[i, j] = 1
	# For each edge u -> v inside a cycle, the shortest cycle through it: every include
	# that takes part in a cycle is shown, each cycle once.
	for (u = 1; u <= n; u++)
		for (k = 1; k <= nadj[u]; k++) {
			v = adj[u, k]
			if (!reach[v, u])
				continue
			m = shortest(v, u)
			low = 1
			for (i = 1; i <= m; i++)
				if (sp[i] < sp[low])
					low = i
			key = ""
			for (i = 0; i < m; i++)
				key = key " " sp[(low - 1 + i) % m + 1]
			if (key in seen)
				continue
			seen[key] = 1
			clen[++nc] = m
			cnode[nc] = key
		}
	for (len = 1; len <= n; len++)
		for (c = 1; c <= nc; c++) {
			if (clen[c] != len)
				continue
			m = split(cnode[c], cy, " ")
			line = ""
			for (i = 1; i <= m; i++)
				line = line name[cy[i]] " -> "
			print "cycle\t" line name[cy[1]]
			for (i = 1; i <= m; i++)
				print "edge\t" ev[cy[i], cy[i % m + 1]]
		}
	print "stats\t" n "\t" nedges + 0 "\t" nc + 0
}')
read -r _ nmods nedges ncycles <<<"$(grep '^stats' <<<"$cycles")"
[ -n "${nmods:-}" ] || {
	echo "layers.sh: the include graph could not be built" >&2
	exit 2
}

# ---- 2. tokens/ includes no header that lives only in agent/ ----
tok_bad=$(includes '<"' "${tok_files[@]}" | while IFS=: read -r f ln h; do
	b=${h##*/}
	if [[ $h == *agent/* ]] ||
		{ [ -e "agent/$b" ] && [ ! -e "include/$b" ] && [ ! -e "tokens/$b" ]; }; then
		echo "$f:$ln includes \"$h\", a header of agent/ (move what tokens/ needs to include/)"
	fi
done)

# ---- 3. the PKCS#11 header and tokens/' private headers stay in tokens/ ----
private=" "
for f in "${tok_h[@]}"; do
	b=${f##*/}
	[ -e "include/$b" ] || private="$private$b "
done
found=()
p11_bad=
while IFS=: read -r f ln h; do
	b=${h##*/}
	if [ "$b" = pkcs11.h ]; then
		what="the PKCS#11 header"
	elif [[ $private == *" $b "* ]]; then
		what="tokens/' private header"
	else
		continue
	fi
	why=$(awk -F'\t' -v f="$f" '$1 == f { print $2 }' <<<"$ALLOWED")
	if [ -n "$why" ]; then
		found+=("$f:$ln <$h>, $why")
	else
		p11_bad+="$f:$ln includes <$h>, $what: only tokens/ may (STYLE 13)"$'\n'
	fi
done < <(mapfile -t files < <(others) && includes '<"' "${files[@]}")
p11_bad=${p11_bad%$'\n'}

# ---- report ----
status=0
if [ "$ncycles" -gt 0 ]; then
	status=1
	echo "layers: include cycles between agent/ modules (issue 12; one-way dependencies only):"
	while IFS=$'\t' read -r kind text; do
		case $kind in
		cycle) echo "  $text" ;;
		edge) echo "      $text" ;;
		esac
	done <<<"$cycles"
fi
if [ -n "$tok_bad" ]; then
	status=1
	echo "layers: tokens/ includes headers of agent/:"
	printf '  %s\n' "${tok_bad//$'\n'/$'\n'  }"
fi
if [ -n "$p11_bad" ]; then
	status=1
	echo "layers: PKCS#11 outside tokens/:"
	printf '  %s\n' "${p11_bad//$'\n'/$'\n'  }"
fi
allowed="none"
if [ ${#found[@]} -gt 0 ]; then
	allowed=$(printf '%s; ' "${found[@]}")
	allowed=${allowed%; }
fi
if [ $status -ne 0 ]; then
	echo "layers: FAILED: $ncycles include cycle(s), $(grep -c . <<<"$tok_bad") include(s) of" \
		"agent/ headers in tokens/, $(grep -c . <<<"$p11_bad") of PKCS#11 or tokens/' private" \
		"headers outside tokens/ (allowed: $allowed)"
	exit 1
fi
echo "layers: ok: $nmods agent/ modules, $nedges dependencies, no include cycle; no agent/" \
	"header in tokens/; PKCS#11 or tokens/' private headers outside tokens/: only $allowed"
