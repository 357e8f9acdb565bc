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

mkdir -p "$dir/tokens"
dir=$(cd "$dir" && pwd)
chmod 0700 "$dir" "$dir/tokens"

# The test suite makes hundreds of tokens a run: this script forks as little as it can.
random_pin() {
	local hex
	hex=$(od -An -N8 -tx1 /dev/urandom)
	printf '%s\n' "${hex//[[:space:]]/}"
}

# write_secret FILE VALUE: mode 0600 from the start (umask), no window where it is readable.
write_secret() {
	(umask 077 && printf '%s\n' "$2" >"$1.tmp" && mv -f "$1.tmp" "$1")
}

if [ $# -ge 3 ]; then
	pin=$3
elif [ -s "$dir/pin" ]; then
	IFS= read -r pin <"$dir/pin" || [ -n "$pin" ]
else
	pin=$(random_pin)
fi
if [ $# -ge 4 ]; then
	so_pin=$4
elif [ -s "$dir/so-pin" ]; then
	IFS= read -r so_pin <"$dir/so-pin" || [ -n "$so_pin" ]
else
	so_pin=$(random_pin)
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
