#!/bin/bash
# Records one case (see ../README.md) from the nix-daemon of a Debian
# chroot (or of the host), as root:
#
#   capture.sh CHROOT|host MODE CACHE PUBKEY PATH > CASE.jsonl
#
# CACHE: a binary cache directory (compression=none) holding PATH, signed by
# the key PUBKEY names (for MODE untrusted, use a cache signed by another
# key; MODE addnar: AddToStoreNar of CACHE's NAR). MODE: refused,
# refusedwarm, reset, resetall, stall, 503, 503all, 404, 404nar, hash,
# untrusted, addnar. Needs the capture binary (go build .) next to it.
set -eu
ROOT=$1 MODE=$2 CACHE=$3 PUBKEY=$4 P=$5
[ "$ROOT" = host ] && ROOT=
BIN=$(dirname "$0")/capture
W=/tmp/capture-$$
mkdir -p "$ROOT$W/xdg"
"$BIN" -serve -mode "$MODE" -dir "$CACHE" > "$ROOT$W/addr" & SRV=$!
for i in $(seq 50); do [ -s "$ROOT$W/addr" ] && break; sleep 0.1; done
ADDR=$(cat "$ROOT$W/addr")
if [ "$MODE" = refused ]; then kill $SRV; wait $SRV 2>/dev/null || true; fi
EXTRA=
[ "$MODE" = stall ] && EXTRA="--option stalled-download-timeout 3 --option download-attempts 2"
CMD="env XDG_CACHE_HOME=$W/xdg NIX_DAEMON_SOCKET_PATH=$W/sock nix-daemon --store $W/store \
  --option substituters http://$ADDR --option trusted-public-keys '$PUBKEY' \
  --option narinfo-cache-negative-ttl 0 --option build-users-group '' $EXTRA"
if [ -z "$ROOT" ]; then bash -c "$CMD" 2>"$W/daemon.log" & else chroot "$ROOT" bash -c "$CMD" 2>"$ROOT$W/daemon.log" & fi
D=$!
for i in $(seq 100); do [ -S "$ROOT$W/sock" ] && break; sleep 0.1; done
if [ "$MODE" = refusedwarm ]; then
	# The daemon reads nix-cache-info and the narinfo (and keeps them in its
	# disk cache) while the cache is up; then the cache goes down.
	"$BIN" -mode warmup -socket "$ROOT$W/sock" -path "$P" > /dev/null
	kill $SRV; wait $SRV 2>/dev/null || true
fi
timeout 150 "$BIN" -mode "$MODE" -dir "$CACHE" -socket "$ROOT$W/sock" -path "$P"
kill $D; kill $SRV 2>/dev/null || true; wait 2>/dev/null || true
rm -rf "$ROOT$W"
