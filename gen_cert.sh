#!/usr/bin/env bash
# Make a self-signed certificate for `python duoduel.py --https`:
# cert/cert.pem and cert/key.pem, valid for localhost, 127.0.0.1, ::1 and this
# machine's LAN addresses, so phones and other machines on the LAN can use it
# (after accepting the browser's warning once).
#
# Usage: ./gen_cert.sh [--force] [DIR]   (DIR defaults to cert/ beside this script)
set -euo pipefail

force=0
dir=""
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "gen_cert.sh: unknown option $arg (use --force to overwrite)" >&2; exit 2 ;;
    *) dir="$arg" ;;
  esac
done
dir="${dir:-$(cd "$(dirname "$0")" && pwd)/cert}"
cert="$dir/cert.pem"
key="$dir/key.pem"

command -v openssl >/dev/null || { echo "gen_cert.sh: openssl is missing: install it (apt-get install openssl)" >&2; exit 2; }
if [ "$force" = 0 ] && { [ -e "$cert" ] || [ -e "$key" ]; }; then
  echo "gen_cert.sh: $cert or $key exists already; keeping it (run with --force to make a new one)" >&2
  exit 0
fi

san="DNS:localhost,IP:127.0.0.1,IP:::1"
host=$(hostname 2>/dev/null || true)
[ -n "$host" ] && [ "$host" != localhost ] && san="$san,DNS:$host"
# The machine's own LAN addresses, so https://192.168.x.y:8443/ works from a phone.
for addr in $(hostname -I 2>/dev/null || true); do
  case "$addr" in
    127.*|::1|fe80:*) ;;
    *) san="$san,IP:$addr" ;;
  esac
done

mkdir -p "$dir"
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -days 825 -subj "/CN=duoduel" -addext "subjectAltName=$san" \
  -keyout "$key" -out "$cert" 2>/dev/null
chmod 644 "$cert"
echo "gen_cert.sh: wrote $cert and $key for $san"
