#!/bin/bash
# old-openssl.sh CACHE_DIR [VERSION...]: older Debian OpenSSL builds side by side with the
# installed one, to run e.g. `openssl verify -CApath` of several versions on one trust dir.
#   VERSION  a Debian version of the openssl package (3.0.20-1~deb12u2) or just the
#            upstream part (3.0.20) when `apt-cache madison openssl` offers exactly one.
#            Default: every version apt offers that is older than the installed openssl.
# Each version is fetched with `apt-get download` (libssl3 + openssl, so the Debian archive
# must be reachable and `apt-get update` done) and extracted once into
# CACHE_DIR/<version>/, next to an executable wrapper CACHE_DIR/<version>/openssl that runs
# that binary with its own libcrypto/libssl (LD_LIBRARY_PATH), providers (OPENSSL_MODULES),
# engines (OPENSSL_ENGINES) and an empty config (OPENSSL_CONF), so nothing of the system's
# OpenSSL is loaded. Prints the wrapper paths, one per line, in argument order.
# Idempotent; safe to run concurrently (each run extracts into a temporary directory and
# renames it into place; the first rename wins). Works as root or as any user.
set -euo pipefail

PROG=${0##*/}

usage() {
	echo "usage: $PROG CACHE_DIR [VERSION...]" >&2
	exit 64
}

die() {
	echo "$PROG: $*" >&2
	exit 1
}

# Versions of the openssl package apt can download, newest first.
offered() {
	apt-cache madison openssl 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}' | sort -u |
		sort -r -V
}

offered_text() {
	local o
	o=$(apt-cache madison openssl 2>/dev/null || true)
	printf '%s\n' "${o:-  (apt-cache madison openssl offers nothing: run apt-get update?)}"
}

# Debian version -> upstream version: 3.0.20-1~deb12u2 -> 3.0.20
upstream() {
	local v=${1#*:}
	printf '%s\n' "${v%-*}"
}

resolve() {
	local want=$1 v match=()
	case "$want" in
	*-*)
		printf '%s\n' "$want"
		return
		;;
	esac
	while read -r v; do
		[ -n "$v" ] || continue
		[ "$(upstream "$v")" = "$want" ] && match+=("$v")
	done < <(offered)
	[ ${#match[@]} -eq 1 ] && {
		printf '%s\n' "${match[0]}"
		return
	}
	if [ ${#match[@]} -eq 0 ]; then
		printf '%s: no openssl %s to download; apt offers:\n%s\n' "$PROG" "$want" \
			"$(offered_text)" >&2
	else
		printf '%s: openssl %s is ambiguous (%s); give the Debian version\n' "$PROG" "$want" \
			"${match[*]}" >&2
	fi
	return 1
}

# Writes the wrapper for VERSION and its config into DIR (an extracted tree).
write_wrapper() {
	local dir=$1 v=$2 lib rel
	lib=$(find "$dir/usr/lib" -name libcrypto.so.3 -print -quit)
	[ -n "$lib" ] || die "no libcrypto.so.3 in the extracted packages ($dir)"
	rel=${lib%/libcrypto.so.3}
	rel=${rel#"$dir"/}
	cat >"$dir/openssl.cnf" <<'EOF'
# Written by tests/old-openssl.sh: loads no providers or engines (only the built-in
# default provider), unlike the system's /usr/lib/ssl/openssl.cnf.
[req]
distinguished_name = req_distinguished_name
[req_distinguished_name]
EOF
	cat >"$dir/openssl" <<EOF
#!/bin/sh
# Runs openssl $v as extracted here by tests/old-openssl.sh.
d=\$(cd "\$(dirname "\$0")" && pwd) || exit 1
LD_LIBRARY_PATH=\$d/$rel \\
OPENSSL_MODULES=\$d/$rel/ossl-modules \\
OPENSSL_ENGINES=\$d/$rel/engines-3 \\
OPENSSL_CONF=\$d/openssl.cnf \\
	exec "\$d/usr/bin/openssl" "\$@"
EOF
	chmod 0755 "$dir/openssl"
}

# The wrapper must run the requested version's binary against its own library.
check_wrapper() {
	local wrapper=$1 want out
	want=$(upstream "$2")
	out=$("$wrapper" version 2>&1) || die "$wrapper does not run: $out"
	case "$out" in
	"OpenSSL $want "*"(Library: OpenSSL $want "*) ;;
	*) die "$wrapper reports '$out', expected $want for both binary and library" ;;
	esac
}

fetch() {
	local v=$1 dest=$CACHE/$1 tmp log deb
	if [ -x "$dest/openssl" ]; then
		check_wrapper "$dest/openssl" "$v"
		return
	fi
	[ ! -e "$dest" ] || die "$dest exists but has no openssl wrapper; remove it"
	tmp=$(mktemp -d "$CACHE/.tmp.$v.XXXXXX")
	TMPS+=("$tmp")
	log=$tmp/apt.log
	# apt's _apt sandbox user cannot write into a 0700 mktemp directory: download
	# unsandboxed (as root apt would warn and do so anyway; as a user it makes no difference).
	if ! (cd "$tmp" && apt-get -q -o APT::Sandbox::User=root download \
		"libssl3=$v" "openssl=$v") >"$log" 2>&1; then
		sed 's/^/  /' "$log" >&2
		printf '%s: cannot download openssl %s; apt offers:\n%s\n' "$PROG" "$v" \
			"$(offered_text)" >&2
		return 1
	fi
	mkdir "$tmp/tree"
	for deb in "$tmp"/libssl3_*.deb "$tmp"/openssl_*.deb; do
		[ -f "$deb" ] || die "apt-get download left no $(basename "$deb") in $tmp"
		dpkg-deb -x "$deb" "$tmp/tree"
	done
	write_wrapper "$tmp/tree" "$v"
	check_wrapper "$tmp/tree/openssl" "$v"
	# rename(2) onto an existing non-empty directory fails: a concurrent run got there first.
	if ! mv -T "$tmp/tree" "$dest" 2>/dev/null; then
		[ -x "$dest/openssl" ] || die "cannot move the extracted tree to $dest"
	fi
	rm -rf "$tmp"
}

[ $# -ge 1 ] || usage
CACHE=$1
shift
for tool in apt-get apt-cache dpkg-deb dpkg-query; do
	command -v "$tool" >/dev/null || die "needs $tool (Debian)"
done
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

TMPS=()
cleanup() {
	[ ${#TMPS[@]} -eq 0 ] || rm -rf "${TMPS[@]}"
}
trap cleanup EXIT

if [ $# -eq 0 ]; then
	installed=$(dpkg-query -W -f='${Version}' openssl 2>/dev/null || true)
	[ -n "$installed" ] || installed=$(dpkg-query -W -f='${Version}' libssl3 2>/dev/null || true)
	[ -n "$installed" ] || die "neither openssl nor libssl3 is installed: give VERSIONs"
	while read -r v; do
		[ -n "$v" ] || continue
		dpkg --compare-versions "$v" lt "$installed" && set -- "$@" "$v"
	done < <(offered)
	[ $# -gt 0 ] || {
		printf '%s: apt offers no openssl older than the installed %s:\n%s\n' "$PROG" \
			"$installed" "$(offered_text)" >&2
		exit 1
	}
fi

versions=()
for want in "$@"; do
	versions+=("$(resolve "$want")")
done
for v in "${versions[@]}"; do
	fetch "$v"
	printf '%s\n' "$CACHE/$v/openssl"
done
