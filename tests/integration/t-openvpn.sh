#!/bin/bash
# shellcheck source-path=SCRIPTDIR disable=SC2031,SC2034,SC2119  # T is set per test by run_tests; variables feed lib.sh functions
# t-openvpn.sh: a consumer of what p11enroll enrolled, OpenVPN 2.6 (Debian's openvpn, with
# pkcs11-helper): a client whose pkcs11-providers is the token's module and whose pkcs11-id,
# as `openvpn --show-pkcs11-ids` prints it, names the enrolled key connects to a server that
# trusts p11enroll's trust dir, and a ping goes through the tunnel.
#
# Each test has two network namespaces of its own, each held by a sleeping process
# (`unshare -n`) whose pidfile is registered: VPN, where the server listens on 127.0.0.1
# UDP 1194 and the client runs, and PEER, where the client's tun device is moved once the
# tunnel is up, so that the ping from PEER to the server's tunnel address (and back from
# VPN) can only go through the tunnel: in one namespace both tunnel addresses would be
# local and the kernel would answer the ping over lo. When the test's trap has stopped
# the processes, the kernel removes the namespaces and the tun devices with them.
#
# The PIN reaches OpenVPN the way a GUI gives it: OpenVPN asks on its management interface
# (a Unix socket in a 0700 directory; --management-query-passwords) with
# ">PASSWORD:Need 'LABEL token' password", and a small client of the test's own answers
# `password "LABEL token" "PIN"` with the PIN read from the 0600 PIN file: it is never in
# an argv, an environment or a log.
. "$(dirname "$0")/lib.sh"

OVPN_NET=10.99.0 # the tunnel's /24; the server is .1, the first client gets .2

# ---------------------------------------------------------------- helpers

# new_netns VAR: a network namespace of the test's own, held by `unshare -n sleep`, its
#   pidfile registered (stopping it lets the kernel remove the namespace once nothing else
#   is in it), its loopback up. Sets VAR to the holder's PID; in_ns VAR runs in it.
new_netns() {
	local var=$1 pid i file=$T/netns-$1.pid
	unshare -n sleep 3600 </dev/null >/dev/null 2>&1 &
	pid=$!
	echo "$pid" >"$file"
	register_pidfile "$file"
	for ((i = 0; i < 100; i++)); do
		[ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$(readlink /proc/self/ns/net)" ] || break
		sleep 0.02
	done
	if ! kill -0 "$pid" 2>/dev/null ||
		[ "$(readlink "/proc/$pid/ns/net")" = "$(readlink /proc/self/ns/net)" ]; then
		fail "unshare -n did not make a network namespace"
		return 1
	fi
	nsenter --net="/proc/$pid/ns/net" ip link set lo up || {
		fail "cannot bring up lo in the namespace of $pid"
		return 1
	}
	printf -v "$var" '%s' "$pid"
	readlink "/proc/$pid/ns/net" >>"$T/netns.txt"
}

# in_ns PID CMD...: CMD in the network namespace of PID. (A process started in the
#   background calls nsenter itself, which execs it: $! is then its PID, not a subshell's.)
in_ns() {
	local pid=$1
	shift
	nsenter --net="/proc/$pid/ns/net" "$@"
}

# running PIDFILE: its process is there and not a zombie (an exited child not yet reaped).
running() {
	local pid state
	read -r pid <"$1" 2>/dev/null || return 1
	read -r _ _ state _ <"/proc/$pid/stat" 2>/dev/null || return 1
	[ "$state" != Z ]
}

# await FILE ERE SECONDS PIDFILE...: waits until a line of FILE matches ERE; fails (with
#   the file's end) after SECONDS or as soon as the process of one of the PIDFILEs is gone.
await() {
	local file=$1 re=$2 secs=$3 end=$((SECONDS + $3)) f
	shift 3
	while [ "$SECONDS" -le "$end" ]; do
		grep -qE -- "$re" "$file" 2>/dev/null && return 0
		for f in "$@"; do
			if ! running "$f"; then
				grep -qE -- "$re" "$file" 2>/dev/null && return 0
				fail "${f##*/}: the process ended before ${file##*/} matched /$re/"
				tail -n 15 "$file" | sed 's/^/  | /' >&2
				return 1
			fi
		done
		sleep 0.05
	done
	fail "${file##*/} did not match /$re/ within $secs s"
	tail -n 15 "$file" | sed 's/^/  | /' >&2
	return 1
}

# server_pki: a throw-away CA and the server's certificate (CN vpn.example.com, serverAuth)
#   in $T/spki: ca.pem, srv.pem, srv.key. P-256: quick to make.
server_pki() {
	SPKI=$T/spki
	mkdir -p "$SPKI" && chmod 0700 "$SPKI" || return 1
	printf 'basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n' \
		>"$SPKI/srv.ext"
	(
		cd "$SPKI" &&
			openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
				-days 2 -subj "/CN=t-openvpn server CA" -out ca.pem &&
			openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key \
				-subj "/CN=vpn.example.com" -out srv.csr &&
			openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -set_serial 7 -days 2 \
				-extfile srv.ext -out srv.pem
	) >"$SPKI/openssl.log" 2>&1 || {
		cat "$SPKI/openssl.log" >&2
		fail "openssl could not make the server's PKI"
		return 1
	}
}

# start_ovpn_server TRUST-OPTION...: the OpenVPN server in namespace VPN (new_netns VPN
#   first), on 127.0.0.1 UDP 1194, tunnel $OVPN_NET.0/24 on tun-s, trusting what the options
#   name (--ca FILE or --capath DIR) and asking for a client certificate with clientAuth.
#   Its --tls-verify script logs each certificate it sees (depth, SHA-256, serial, subject)
#   to $T/server-verify.log. Log: $T/server.log. Waits until it is up.
start_ovpn_server() {
	server_pki || return 1
	cat >"$T/tls-verify.sh" <<SH
#!/bin/sh
eval "d=\\\$tls_digest_sha256_\$1 s=\\\$tls_serial_hex_\$1"
echo "depth=\$1 sha256=\$d serial=\$s subject=\$2" >>$T/server-verify.log
SH
	chmod 0755 "$T/tls-verify.sh"
	: >"$T/server-verify.log"
	nsenter --net="/proc/$VPN/ns/net" openvpn --server "$OVPN_NET.0" 255.255.255.0 --topology subnet --dev tun-s \
		--proto udp --local 127.0.0.1 --port 1194 "$@" --cert "$SPKI/srv.pem" --key "$SPKI/srv.key" \
		--dh none --remote-cert-tls client --disable-dco --verb 3 \
		--script-security 2 --tls-verify "$T/tls-verify.sh" \
		>"$T/server.log" 2>&1 </dev/null &
	echo $! >"$T/server.pid"
	register_pidfile "$T/server.pid"
	await "$T/server.log" 'Initialization Sequence Completed' 10 "$T/server.pid" || return 1
	is_openvpn "$T/server.pid"
}

# is_openvpn PIDFILE: the PID is OpenVPN's own (what stop_pid will stop), not a shell's.
is_openvpn() {
	assert_eq openvpn "$(cat "/proc/$(cat "$1")/comm" 2>/dev/null)" "program of ${1##*/}"
}

# start_ovpn_client ID: the OpenVPN client in namespace VPN, to 127.0.0.1:1194, the key
#   and certificate those of pkcs11-id ID on $MODULE, the server checked against the
#   throw-away CA (name vpn.example.com, serverAuth). It does not configure its tun device
#   (tun-c): tunnel_up moves it to namespace PEER first. The PIN is asked for on its
#   management socket and answered by start_pin_answerer. Log: $T/client.log.
start_ovpn_client() {
	local id=$1
	mkdir -p "$T/mgmt" && chmod 0700 "$T/mgmt" || return 1
	nsenter --net="/proc/$VPN/ns/net" openvpn --client --dev tun-c --proto udp --remote 127.0.0.1 1194 --nobind \
		--ca "$SPKI/ca.pem" --remote-cert-tls server --verify-x509-name vpn.example.com name \
		--pkcs11-providers "$MODULE" --pkcs11-id "$id" \
		--management "$T/mgmt/sock" unix --management-query-passwords \
		--ifconfig-noexec --route-noexec --disable-dco --verb 3 \
		>"$T/client.log" 2>&1 </dev/null &
	echo $! >"$T/client.pid"
	register_pidfile "$T/client.pid"
	start_pin_answerer
}

# start_pin_answerer: connects to the client's management socket and answers each
#   ">PASSWORD:Need 'NAME' password" with the PIN read from $PIN_FILE, quoted and escaped
#   as the management notes ask. Logs what OpenVPN said, and the names it answered (never
#   the PIN), to $T/mgmt.log.
start_pin_answerer() {
	/usr/bin/python3 - "$T/mgmt/sock" "$PIN_FILE" "$T/mgmt.log" >"$T/mgmt.err" 2>&1 <<'PY' &
import re, socket, sys, time
sock_path, pin_file, log_path = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX)
deadline = time.monotonic() + 20
while True:
    try:
        s.connect(sock_path)
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("no management socket at " + sock_path)
        time.sleep(0.05)
def quote(v):
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
with open(log_path, "a", buffering=1) as log:
    for raw in s.makefile("rb"):
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        log.write(line + "\n")
        m = re.match(r">PASSWORD:Need '(.*)' password$", line)
        if m:
            with open(pin_file) as f:
                pin = f.readline().rstrip("\n")
            s.sendall(("password %s %s\n" % (quote(m.group(1)), quote(pin))).encode())
            log.write("(answered '%s')\n" % m.group(1))
PY
	echo $! >"$T/answerer.pid"
	register_pidfile "$T/answerer.pid"
}

# pkcs11_id_for SERIAL: the "Serialized id" that `openvpn --show-pkcs11-ids $MODULE` prints
#   for the certificate with serial SERIAL (hex, any case, no leading zeros needed); the
#   listing is kept in $T/show-ids.txt. Fails unless exactly one certificate has it.
pkcs11_id_for() {
	local want n
	want=$(printf '%s' "$1" | tr 'a-f' 'A-F' | sed 's/^0*//')
	openvpn --show-pkcs11-ids "$MODULE" >"$T/show-ids.txt" 2>&1 || {
		fail "openvpn --show-pkcs11-ids failed: $(tail -n1 "$T/show-ids.txt")"
		return 1
	}
	awk -v want="$want" '
		/^ *Serial:/ { s = toupper($2); sub(/^0+/, "", s) }
		/^ *Serialized id:/ { sub(/^ *Serialized id:[ \t]*/, ""); if (s == want) print; s = "" }
	' "$T/show-ids.txt" >"$T/ids.txt"
	n=$(wc -l <"$T/ids.txt")
	assert_eq 1 "$n" "certificates with serial $want in --show-pkcs11-ids" || return 1
	cat "$T/ids.txt"
}

# enrolled_pkcs11_id: pkcs11_id_for the serial of $CERT_FILE.
enrolled_pkcs11_id() {
	pkcs11_id_for "$(openssl x509 -in "$CERT_FILE" -noout -serial | sed 's/^serial=//')"
}

# check_pkcs11_id ID: ID names the enrolled key: its last field is the private key's CKA_ID
#   and its others are the token's manufacturer, model, serial and label, as OpenVPN
#   escapes them.
check_pkcs11_id() {
	local id=$1 key_id
	key_id=$(token_objects | awk -F'|' '$1 == "privkey" && $3 == "'"$KEY_LABEL"'" { print $2 }')
	assert_eq 1 "$(printf '%s\n' "$key_id" | grep -c .)" "private keys labelled $KEY_LABEL" || return 1
	assert_eq "$(printf '%s' "$key_id" | tr 'a-f' 'A-F')" "${id##*/}" "CKA_ID in the pkcs11-id"
	assert_eq "${TOKEN_LABEL//-/\\x2D}" "$(printf '%s' "$id" | cut -d/ -f4)" "token label in the pkcs11-id"
	assert_eq "SoftHSM\\x20project/SoftHSM\\x20v2" "$(printf '%s' "$id" | cut -d/ -f1-2)" \
		"manufacturer/model in the pkcs11-id"
}

# tunnel_up: after the client's "Initialization Sequence Completed", moves tun-c to
#   namespace PEER (new_netns PEER first) and gives it the address the server pushed.
tunnel_up() {
	local addr
	addr=$(sed -n "s/.*PUSH_REPLY.*,ifconfig \\($OVPN_NET\\.[0-9]*\\) 255\\.255\\.255\\.0.*/\\1/p" \
		"$T/client.log" | head -n1)
	assert_eq 1 "$([ -n "$addr" ] && echo 1)" "a tunnel address pushed to the client" || return 1
	if ! { in_ns "$VPN" ip link set tun-c netns "$PEER" &&
		in_ns "$PEER" ip addr add "$addr/24" dev tun-c &&
		in_ns "$PEER" ip link set tun-c up; }; then
		fail "cannot move tun-c to the peer namespace and set $addr on it"
		return 1
	fi
	CLIENT_ADDR=$addr
}

# cert_sha256 PEM: the SHA-256 fingerprint as OpenVPN prints it (AB:CD:..., upper case).
cert_sha256() {
	openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/^.*=//' | tr 'a-f' 'A-F'
}

# check_connected: what a user checks once the client is up: the server verified the
#   enrolled certificate at depth 0 (its CN, fingerprint and serial), both ends completed
#   their initialisation, pings go through the tunnel both ways, and the PIN is in no log.
check_connected() {
	local fp serial
	await "$T/client.log" 'Initialization Sequence Completed' 20 "$T/client.pid" || return 1
	is_openvpn "$T/client.pid"
	assert_contains "$T/mgmt.log" ">PASSWORD:Need '$TOKEN_LABEL token' password"
	assert_contains "$T/mgmt.log" "SUCCESS: '$TOKEN_LABEL token' password entered"
	assert_match "$T/server.log" "VERIFY OK: depth=0, (.*, )?CN=host\\.example\\.com\$"
	assert_match "$T/server.log" "\\[host\\.example\\.com\\] Peer Connection Initiated with \\[AF_INET\\]127\\.0\\.0\\.1:"
	fp=$(cert_sha256 "$CERT_FILE")
	serial=$(openssl x509 -in "$CERT_FILE" -noout -serial | sed 's/^serial=//' | tr 'A-F' 'a-f')
	grep '^depth=0 ' "$T/server-verify.log" >verify0.txt
	assert_eq 1 "$(grep -c . verify0.txt)" "client certificates the server verified"
	assert_contains verify0.txt "sha256=$(printf '%s' "$fp" | tr 'A-F' 'a-f')"
	assert_eq "$(norm_hex "$serial" | sed 's/^0*//')" \
		"$(sed -n 's/.* serial=\([^ ]*\) .*/\1/p' verify0.txt | tr -d ':' | tr 'A-F' 'a-f' | sed 's/^0*//')" \
		"serial of the certificate the server verified"
	tunnel_up || return 1
	in_ns "$PEER" ip -o link show >peer-links.txt
	assert_eq "lo tun-c" "$(awk -F': ' '{ print $2 }' peer-links.txt | sort | tr '\n' ' ' | sed 's/ $//')" \
		"interfaces of the peer namespace"
	in_ns "$PEER" ping -c 3 -i 0.2 -W 3 "$OVPN_NET.1" >ping-server.txt 2>&1
	assert_contains ping-server.txt "3 packets transmitted, 3 received"
	in_ns "$VPN" ping -c 3 -i 0.2 -W 3 "$CLIENT_ADDR" >ping-client.txt 2>&1
	assert_contains ping-client.txt "3 packets transmitted, 3 received"
	local f
	for f in "$T/client.log" "$T/server.log" "$T/mgmt.log" "$T/mgmt.err"; do
		assert_not_contains "$f" "$PIN"
	done
	assert_not_contains "/proc/$(cat "$T/client.pid")/cmdline" "$PIN"
	assert_not_contains "/proc/$(cat "$T/client.pid")/environ" "$PIN"
}

# check_netns_gone: stops every process of the test, then no process is left in the
#   test's namespaces, so that the kernel removes them (and their tun devices). Each is held
#   open by a descriptor of this shell while it looks: a freed namespace's inode number is
#   soon given to another (a test running beside this one), and must not be mistaken for it.
check_netns_gone() {
	local pid fds=() fd ns ino left
	while read -r pid; do
		exec {fd}<"/proc/$pid/ns/net" && fds+=("$fd")
	done < <(cat "$T"/netns-*.pid 2>/dev/null)
	stop_all
	for fd in "${fds[@]}"; do
		ns=$(readlink "/proc/$BASHPID/fd/$fd")
		ino=${ns#net:[}
		ino=${ino%]}
		left=$(find /proc/[0-9]*/ns/net -maxdepth 0 -lname "net:?$ino?" 2>/dev/null | cut -d/ -f3 | tr '\n' ' ')
		assert_eq "" "$left" "processes left in the test's namespace $ns"
		exec {fd}<&-
	done
	assert_eq "$(grep -c . "$T/netns.txt")" "${#fds[@]}" "namespaces of the test looked at"
}

# decoy_on_token: a second key and certificate on the token (label decoy, CKA_ID 0d0d,
#   self-signed CN decoy.example.com, clientAuth): --show-pkcs11-ids then lists two
#   certificates, and only the enrolled one's id may be taken.
decoy_on_token() {
	if ! { openssl req -x509 -newkey rsa:2048 -nodes -keyout decoy.key -days 2 -subj "/CN=decoy.example.com" \
		-addext "extendedKeyUsage = clientAuth" -out decoy.pem >decoy.log 2>&1 &&
		openssl pkey -in decoy.key -outform DER -out decoy.key.der 2>>decoy.log &&
		openssl x509 -in decoy.pem -outform DER -out decoy.der 2>>decoy.log &&
		p11tool --write-object decoy.key.der --type privkey --id 0d0d --label decoy >>decoy.log 2>&1 &&
		p11tool --write-object decoy.der --type cert --id 0d0d --label decoy >>decoy.log 2>&1; }; then
		cat decoy.log >&2
		fail "cannot put the decoy key and certificate on the token"
		return 1
	fi
	rm -f decoy.key decoy.key.der
}

# ---------------------------------------------------------------- tests

# RSA-2048 from the real scepserver: the server trusts the CA certificate p11enroll wrote
# to the trust dir (--ca), the client takes the enrolled key by its pkcs11-id beside a
# decoy on the same token, the tunnel comes up and carries pings, and afterwards the
# namespaces are gone.
test_rsa_client_connects_with_enrolled_key() {
	KEY_TYPE=rsa:2048
	setup_enroll || return
	assert_exit 0 p11e enroll || return
	decoy_on_token || return
	local id
	id=$(enrolled_pkcs11_id) || return
	assert_eq 2 "$(grep -c 'Serialized id:' "$T/show-ids.txt")" "certificates --show-pkcs11-ids lists"
	check_pkcs11_id "$id" || return
	new_netns VPN || return
	new_netns PEER || return
	start_ovpn_server --ca "$TRUST_DIR/ca.crt" || return
	start_ovpn_client "$id"
	check_connected
	assert_match "$T/server.log" "peer certificate: 2048 bits? RSA"
	check_netns_gone
}

# EC P-256 from step-ca (two tiers: the client's certificate is issued by the
# intermediate): the server trusts p11enroll's trust dir as a hashed directory
# (--capath), where the intermediate and the root are.
test_ec_p256_client_connects_with_enrolled_key() {
	KEY_TYPE=ec:P-256
	make_token || return
	start_stepca "$T/ca" || return
	CA_FP=$INT_FP
	write_conf
	sed -i "/^\[trust\]\$/a root_file = $STEPCA_ROOT_PEM" "$CONF"
	assert_exit 0 p11e enroll || return
	local id
	id=$(enrolled_pkcs11_id) || return
	check_pkcs11_id "$id" || return
	new_netns VPN || return
	new_netns PEER || return
	start_ovpn_server --capath "$TRUST_DIR" || return
	start_ovpn_client "$id"
	check_connected
	assert_match "$T/server.log" "VERIFY OK: depth=1, .*CN=p11enroll step-ca test intermediate"
	assert_match "$T/server.log" "VERIFY OK: depth=2, .*CN=p11enroll step-ca test root"
	assert_match "$T/server.log" "peer certificate: 256 bits? EC"
	check_netns_gone
}

# After a renewal with new_key = yes (the default) the certificate has a new CKA_ID, and so
# a new pkcs11-id (p11enroll.conf(5), [renewal]; conf/hooks/openvpn-sighup): the old one is
# gone from --show-pkcs11-ids, the new one connects with the new certificate.
test_renewal_changes_the_pkcs11_id() {
	make_token || return
	start_scepserver "$T/srv" -allowrenew 0 || return
	CA_FP=sha256:$(ca_fingerprint "$SCEP_CA_PEM")
	write_conf
	assert_exit 0 p11e enroll || return
	local old_id id
	old_id=$(enrolled_pkcs11_id) || return
	assert_exit 0 p11e renew --force || return
	id=$(enrolled_pkcs11_id) || return
	check_pkcs11_id "$id" || return
	assert_eq 1 "$([ "$id" != "$old_id" ] && echo 1)" "a new pkcs11-id after the renewal ($old_id, then $id)"
	assert_not_contains "$T/show-ids.txt" "$old_id"
	new_netns VPN || return
	new_netns PEER || return
	start_ovpn_server --ca "$TRUST_DIR/ca.crt" || return
	start_ovpn_client "$id"
	check_connected
	check_netns_gone
}

# The test can fail for the right reason: a server that trusts another CA (its own) refuses
# the enrolled certificate (the client presents it: the PIN is asked for and answered); the
# client never completes. No tunnel, so no PEER namespace.
test_server_with_another_ca_refuses() {
	setup_enroll || return
	assert_exit 0 p11e enroll || return
	local id
	id=$(enrolled_pkcs11_id) || return
	new_netns VPN || return
	start_ovpn_server --ca "$T/spki/ca.pem" || return
	start_ovpn_client "$id"
	await "$T/server.log" 'VERIFY ERROR: depth=0, error=unable to get local issuer certificate: .*CN=host\.example\.com' \
		20 "$T/server.pid" || return
	await "$T/server.log" 'TLS Error: TLS handshake failed' 20 "$T/server.pid"
	assert_contains "$T/mgmt.log" "SUCCESS: '$TOKEN_LABEL token' password entered"
	assert_not_contains "$T/server.log" "Peer Connection Initiated"
	assert_not_contains "$T/client.log" "Initialization Sequence Completed"
	assert_eq 0 "$(grep -c '^depth=0 ' "$T/server-verify.log")" \
		"client certificates the server's --tls-verify was shown"
	check_netns_gone
}

# A pkcs11-id that names no certificate on the token (the enrolled one's with another
# CKA_ID): the client cannot load a certificate and gives up before it connects.
test_wrong_pkcs11_id_fails() {
	setup_enroll || return
	assert_exit 0 p11e enroll || return
	local id
	id=$(enrolled_pkcs11_id) || return
	new_netns VPN || return
	start_ovpn_server --ca "$TRUST_DIR/ca.crt" || return
	start_ovpn_client "${id%/*}/0D0D"
	await "$T/client.log" 'Exiting due to fatal error' 20 || return
	local i
	for ((i = 0; i < 50; i++)); do running "$T/client.pid" || break; sleep 0.1; done
	assert_eq 1 "$(running "$T/client.pid" || echo 1)" "the client has exited"
	assert_match "$T/client.log" "Cannot load certificate"
	assert_not_contains "$T/server.log" "Peer Connection Initiated"
	check_netns_gone
}

run_tests
