#!/bin/bash
# Instructions per verification under callgrind (docs/performance.md, "Method: instructions,
# not seconds"). Run `cargo xtask bench http` once first: it leaves the bench database
# (keyward_bench), its keys and its config in target/http-bench.
#
#   xtask/callgrind-verify.sh <keyward binary> <port> [REDIS_URL]
#
# Extra environment for the server (OTEL_*, say) goes in EXTRA="NAME=value …".
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$ROOT/target/http-bench
TOOL=$ROOT/target/release/keyward-bench
BIN=$1; PORT=$2; REDIS=${3:-}
DB=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/keyward_bench}
OUT=$(mktemp -d)
head -500 "$W/keys.txt" > "$OUT/keys.txt"
# shellcheck disable=SC2086 # EXTRA is a list of assignments.
env DATABASE_URL="$DB" KEYWARD_LOG=warn ${REDIS:+REDIS_URL=$REDIS} ${EXTRA:-} \
  valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.%p" \
  "$BIN" serve --config "$W/keyward.toml" --listen "127.0.0.1:$PORT" >/dev/null 2>"$OUT/valgrind.log" &
VPID=$!
for _ in $(seq 120); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 1; done
load() { "$TOOL" load --url "http://127.0.0.1:$PORT" --root-key "$W/root.key" --keys "$OUT/keys.txt" \
  --connections 8 --seconds 600 --passes "$1" >/dev/null; }
load 1                                   # every key once: the cache is warm
sleep 2
callgrind_control --zero "$VPID" >/dev/null
load 4                                   # 2,000 cache hits, within the cache's 15 s refresh
sleep 1.5                                # the usage flush of those records
callgrind_control --dump "$VPID" >/dev/null
sleep 1
kill "$VPID"; wait "$VPID" 2>/dev/null || true
IR=$(grep -m1 '^summary:\|^totals:' "$OUT"/cg.*.1 | awk '{print $2}')
echo "instructions per verification: $((IR / 2000)) ($OUT)"
