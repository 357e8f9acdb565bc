#!/bin/bash
# softhsm-token.sh DIR LABEL [PIN] [SO_PIN]
#
# Creates a private SoftHSM2 token store in DIR (DIR/softhsm2.conf, DIR/tokens)
# and initialises a token labelled LABEL in the first free slot. Prints
#   export SOFTHSM2_CONF=DIR/softhsm2.conf
# on stdout (use: eval "$(softhsm-token.sh DIR LABEL)"); everything else goes to stderr.
#
# The user PIN is written to DIR/pin and the SO PIN to DIR/so-pin (both mode 0600).
# Without PIN/SO_PIN, an existing DIR/pin / DIR/so-pin is reused (so several tokens in
# one DIR share one PIN file), else a random one is generated.
#
# Note: softhsm2-util only accepts the PINs as command-line arguments, so they are
# briefly visible in the process list while it runs. That is unavoidable and fine for
# the throw-away test tokens this script is for; never use it for a token that matters.
set -euo pipefail

usage() {
	echo "usage: $0 DIR LABEL [PIN] [SO_PIN]" >&2
	exit 64
}
if [ $# -lt 2 ] || [ $# -gt 4 ]; then usage; fi
dir=$1
label=$2
[ -n "$label" ] || usage

command -v softhsm2-util >/dev/null || {
	echo "$0: softhsm2-util not found (apt-get install softhsm2)" >&2
	exit 69
}

# Everything made here is the user's alone: the store, its configuration, the PIN files
# (mode 0600 from the start, no window where one is readable).
umask 077
mkdir -p "$dir/tokens"
cd "$dir"
dir=$PWD
chmod 0700 "$dir" "$dir/tokens"

# The test suite makes hundreds of tokens a run (a fork costs several ms on some
# machines): this script forks as little as it can.

# random_pin VAR: 16 hex digits from the kernel's random source (bash's SRANDOM: getrandom).
random_pin() {
	if [ -n "${SRANDOM:-}" ]; then
		printf -v "$1" '%08x%08x' "$SRANDOM" "$SRANDOM"
	else # bash before 5.1
		local hex
		hex=$(od -An -N8 -tx1 /dev/urandom)
		printf -v "$1" '%s' "${hex//[[:space:]]/}"
	fi
}

# write_secret FILE VALUE: a new FILE is created (O_EXCL: noclobber) and written; an
# existing one is replaced by a rename, never rewritten in place.
write_secret() {
	if [ ! -e "$1" ] && { set -C && printf '%s\n' "$2" >"$1"; } 2>/dev/null; then
		set +C
		return 0
	fi
	set +C
	printf '%s\n' "$2" >"$1.tmp" && mv -f "$1.tmp" "$1"
}

if [ $# -ge 3 ]; then
	pin=$3
elif [ -s "$dir/pin" ]; then
	IFS= read -r pin <"$dir/pin" || [ -n "$pin" ]
else
	random_pin pin
fi
if [ $# -ge 4 ]; then
	so_pin=$4
elif [ -s "$dir/so-pin" ]; then
	IFS= read -r so_pin <"$dir/so-pin" || [ -n "$so_pin" ]
else
	random_pin so_pin
fi
if [ ${#pin} -lt 4 ] || [ ${#so_pin} -lt 4 ]; then
	echo "$0: PINs must have at least 4 characters (SoftHSM's minimum)" >&2
	exit 64
fi

conf=$dir/softhsm2.conf
if [ ! -e "$conf" ]; then
	printf '%s\n' "# SoftHSM2 token store created by softhsm-token.sh" \
		"directories.tokendir = $dir/tokens" "objectstore.backend = file" "log.level = ERROR" >"$conf"
fi
export SOFTHSM2_CONF=$conf

token_exists() {
	softhsm2-util --show-slots 2>/dev/null | awk -v l="$1" '
		$1 == "Label:" { sub(/^[[:space:]]*Label:[[:space:]]*/, ""); sub(/[[:space:]]+$/, ""); if ($0 == l) f = 1 }
		END { exit !f }'
}
# A store without a token (a new one) needs no look (softhsm2-util loads SoftHSM).
shopt -s nullglob
existing=("$dir/tokens"/*)
shopt -u nullglob
if [ ${#existing[@]} -gt 0 ] && token_exists "$label"; then
	echo "$0: a token labelled '$label' already exists in $dir" >&2
	exit 1
fi

write_secret "$dir/pin" "$pin"
write_secret "$dir/so-pin" "$so_pin"

softhsm2-util --init-token --free --label "$label" --so-pin "$so_pin" --pin "$pin" >&2

printf 'export SOFTHSM2_CONF=%q\n' "$conf"
