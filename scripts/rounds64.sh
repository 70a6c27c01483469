#!/bin/bash
# Interleaved rounds at 64 connections: this build and an older build, each on a fresh
# copy of an empty quickstart host, in alternating order (ABBA), plus the reference
# server. Loopback only; every load run stops by itself after T seconds.
#   rounds64.sh NEW OLD REF DIR ROUNDS
set -eu
NEW=$1; OLD=$2; REF=$3; D=$4; N=$5; T=${DURATION:-10}
key() { python3 -c "import json;print(json.load(open('$1'))['setup_keys']['demo-os-workstation'])"; }
if [ ! -d "$D/new" ]; then
  mkdir -p "$D"
  for v in new old; do
    bin=$NEW; [ $v = old ] && bin=$OLD
    "$bin" --json quickstart --data "$D/$v" --listen 127.0.0.1:7688 > "$D/$v.out" &
    sleep 4; kill -INT $!; wait $! || true
  done
fi
run() { # name bin data
  local name=$1 bin=$2 data=$3
  rm -rf "$D/run"; cp -a "$D/$data" "$D/run"; sync
  "$bin" host serve --data "$D/run/host" --listen 127.0.0.1:7688 > "$D/serve.log" 2>&1 &
  local pid=$!
  until curl -s -o /dev/null http://127.0.0.1:7688/healthz; do sleep 0.1; done
  local c0; c0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  "$NEW" --json bench --url http://127.0.0.1:7688 --setup-key "$(key "$D/$data.out")" \
    --vendor "$D/run/vendor.pub" --duration "$T" --concurrency 64 > "$D/bench.json"
  local c1; c1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  kill -INT $pid; wait $pid || true
  python3 - "$name" "$D/bench.json" $((c1 - c0)) <<'PY'
import json, sys
name, path, ticks = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = json.load(open(path)); l = d["latency"]; n = d["requests"]
print("%-6s %6.0f/s  p50 %4.1f  p99 %5.1f ms  host %5.1f us/req  verified %s failed %s" % (
    name, d["requests_per_sec"], l["p50_us"]/1e3, l["p99_us"]/1e3, ticks*1e6/100/n, d.get("verified"), d.get("verify_failures")))
PY
}
for i in $(seq "$N"); do
  echo "round $i"
  "$REF" 127.0.0.1:7699 2>/dev/null & rp=$!; sleep 0.5
  "$NEW" --json bench --url http://127.0.0.1:7699 --setup-key ANY --verify-sample 0 --duration "$T" --concurrency 64 > "$D/bench.json"
  kill $rp; wait $rp 2>/dev/null || true
  python3 -c "import json;d=json.load(open('$D/bench.json'));print('ref    %6.0f/s' % d['requests_per_sec'])"
  if [ $((i % 2)) -eq 1 ]; then run new "$NEW" new; run old "$OLD" old; else run old "$OLD" old; run new "$NEW" new; fi
done
