#!/usr/bin/env bash
# Installs the real peers the interop tests talk to, from Debian's packages, when they are
# missing and we are root. Without root it only says what is missing: the tests then fail
# (under CI=true) or skip (on a developer's machine) with the peer's name.
set -euo pipefail

# command -> Debian package
declare -A PEERS=(
  [sipp]=sip-tester
  [kamailio]=kamailio
  [rtpengine]=rtpengine-daemon
  [tshark]=tshark
  [sipsak]=sipsak
  [baresip]=baresip
  [chromium]=chromium
)
missing=()
for cmd in "${!PEERS[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${PEERS[$cmd]}")
done
# The TLS module ships apart from kamailio itself.
if ! ls /usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so /usr/lib/*/kamailio/modules/tls.so >/dev/null 2>&1; then
  missing+=(kamailio-tls-modules)
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "peers: all present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "peers: missing ${missing[*]} (not root, so not installing; interop tests needing them will say so)" >&2
  exit 0
fi
echo "peers: installing ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "peers: installed"
