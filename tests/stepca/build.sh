#!/bin/bash
# build.sh OUTDIR: builds smallstep step-ca 0.19 for the integration tests into
# OUTDIR/step-ca, offline, from Debian's golang-github-smallstep-certificates-dev
# (/usr/share/gocode) and this directory's main.go. Go's build cache is kept outside the
# tree ($P11E_GOCACHE, default ${XDG_CACHE_HOME:-~/.cache}/p11enroll/gocache; OUTDIR/gocache
# when that cannot be made), so a clean clone (CI) or a change of main.go rebuilds in
# seconds, not minutes. The cache is Go's own, keyed by the content of every input, so it
# cannot hand back a build of other sources.
# Does nothing when OUTDIR/step-ca is newer than main.go. Exits 1 with a message naming
# the missing package when the Go toolchain or the source is not installed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 1 ] || {
	echo "usage: $0 OUTDIR" >&2
	exit 64
}
mkdir -p "$1"
out=$(cd "$1" && pwd)
gocode=/usr/share/gocode
pkg=github.com/smallstep/certificates

[ "$out/step-ca" -nt "$here/main.go" ] && exit 0

go=$(command -v go || true)
[ -n "$go" ] || [ ! -x /usr/lib/go/bin/go ] || go=/usr/lib/go/bin/go
if [ -z "$go" ]; then
	echo "$0: no Go toolchain: install golang-go (tests/install-deps.sh test)" >&2
	exit 1
fi
if [ ! -d "$gocode/src/$pkg/commands" ]; then
	echo "$0: no step-ca source in $gocode/src/$pkg:" \
		"install golang-github-smallstep-certificates-dev (tests/install-deps.sh test)" >&2
	exit 1
fi

# One build at a time per OUTDIR (two test files may start step-ca at once).
exec 9>"$out/.build.lock"
flock 9
[ "$out/step-ca" -nt "$here/main.go" ] && exit 0

# GOPATH mode (the Debian source is a GOPATH tree, not modules); the first GOPATH entry
# holds only our main package.
gocache=${P11E_GOCACHE:-${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}/p11enroll/gocache}
mkdir -p "$gocache" 2>/dev/null && [ -w "$gocache" ] || gocache=$out/gocache
gopath=$(mktemp -d "$out/.gopath.XXXXXX")
trap 'rm -rf "$gopath" "$out/.step-ca.new"' EXIT
mkdir -p "$gopath/src/p11enroll-stepca"
cp "$here/main.go" "$gopath/src/p11enroll-stepca/"
echo "$0: building step-ca into $out (about a minute the first time, seconds later)" >&2
(
	cd "$gopath/src/p11enroll-stepca"
	env GOPATH="$gopath:$gocode" GO111MODULE=off GOFLAGS= GOPROXY=off GOSUMDB=off \
		GOCACHE="$gocache" GOTMPDIR= \
		"$go" build -o "$out/.step-ca.new" .
) >"$out/build.log" 2>&1 || {
	echo "$0: go build of step-ca failed ($("$go" version 2>&1)); the end of $out/build.log:" >&2
	tail -n 20 "$out/build.log" >&2
	exit 1
}
mv -f "$out/.step-ca.new" "$out/step-ca"
