#!/bin/bash
# install-deps.sh MODE: install the Debian 12 packages p11enroll needs.
#   build  compiler, libraries, and what `make demo` runs (SoftHSM, scepserver, OpenSC)
#   test   all of that plus what `make check` needs (step-ca is built from Debian's Go
#          source by tests/stepca/build.sh: golang-go + golang-github-smallstep-certificates-dev)
# Does nothing when every package is already installed (no apt-get update), so a
# repeated `make check` stays quick. FORCE=1 always runs apt-get update + install (CI).
set -euo pipefail

BUILD_PKGS=(build-essential pkg-config libssl-dev libp11-kit-dev
	libcurl4-openssl-dev libtss2-dev libseccomp-dev softhsm2 scep opensc curl python3)
TEST_PKGS=(libcmocka-dev python3 python3-asn1crypto python3-cryptography time clang-format
	swtpm swtpm-tools tpm2-tools tpm2-abrmd libtpm2-pkcs11-1 libtpm2-pkcs11-tools
	libtss2-tcti-tabrmd0 dbus pcscd vsmartcard-vpcd vsmartcard-vpicc python3-pycryptodome strace
	procps util-linux gdb iproute2 golang-go golang-github-smallstep-certificates-dev
	libengine-pkcs11-openssl libfaketime prometheus openvpn iputils-ping clang libclang-rt-14-dev
	bash-builtins)

usage() {
	echo "usage: $0 build|test" >&2
	exit 64
}

[ $# -eq 1 ] || usage
case "$1" in
build) pkgs=("${BUILD_PKGS[@]}") ;;
test) pkgs=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}") ;;
*) usage ;;
esac

missing=()
for p in "${pkgs[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$status" = "install ok installed" ] || missing+=("$p")
done

if [ "${FORCE:-0}" != 1 ] && [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "${FORCE:-0}" = 1 ]; then
	missing=("${pkgs[@]}")
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "$0: these packages are missing: ${missing[*]}" >&2
	echo "$0: run as root, or: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
	exit 1
fi

echo "$0: installing: ${missing[*]}" >&2
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
