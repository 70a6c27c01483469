#!/bin/bash
# A build against an older one at 64 connections, interleaved (ABBA) round by round: an
# empty quickstart host, and a host with 1,000,000 counted clients under renewals of its
# own clients. Each build serves data made by its own quickstart (older builds may not
# read a newer configuration); the million clients are written into both by NEW's
# `host seed-clients` with the same seed (NEW must be a `bench-seed` build). Every run
# starts on a fresh copy of its data directory. Loopback only; every load run stops by
# itself after DURATION seconds (default 10).
#   before-after.sh NEW OLD DIR ROUNDS
set -eu
NEW=$1; OLD=$2; D=$3; N=$4; T=${DURATION:-10}
key() { python3 -c "import json;print(json.load(open('$1'))['setup_keys']['demo-os-workstation'])"; }
if [ ! -d "$D/new" ]; then
  mkdir -p "$D"
  for v in new old; do
    bin=$NEW; [ $v = old ] && bin=$OLD
    "$bin" --json quickstart --data "$D/$v" --listen 127.0.0.1:7688 > "$D/$v.out" &
    sleep 4; kill -INT $!; wait $! || true
    cp -a "$D/$v" "$D/${v}1m"; cp "$D/$v.out" "$D/${v}1m.out"
    "$NEW" --json host seed-clients --data "$D/${v}1m/host" --count 1000000 > "$D/seed-$v.json"
  done
fi
seeded() { python3 -c "import json;print(json.load(open('$D/seed-$1.json'))['bench_seed'])"; }
run() { # name bin data bench-args...
  local name=$1 bin=$2 data=$3; shift 3
  rm -rf "$D/run"; cp -a "$D/$data" "$D/run"; sync
  "$bin" host serve --data "$D/run/host" --listen 127.0.0.1:7688 > "$D/serve.log" 2>&1 &
  local pid=$!
  until curl -s -o /dev/null http://127.0.0.1:7688/healthz; do sleep 0.1; done
  local c0; c0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  "$NEW" --json bench --url http://127.0.0.1:7688 --setup-key "$(key "$D/$data.out")" \
    --vendor "$D/run/vendor.pub" --duration "$T" --concurrency 64 "$@" > "$D/bench.json"
  local c1; c1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  kill -INT $pid; wait $pid || true
  python3 - "$name" "$D/bench.json" $((c1 - c0)) <<'PY'
import json, sys
name, path, ticks = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = json.load(open(path)); l = d["latency"]; n = max(d["requests"], 1)
print("%-8s %6.0f/s  p50 %4.1f  p99 %5.1f ms  host %5.1f us/req  verify failures %s" % (
    name, d["requests_per_sec"], l["p50_us"]/1e3, l["p99_us"]/1e3, ticks*1e6/100/n, d.get("verify_failures")))
PY
}
for i in $(seq "$N"); do
  echo "round $i"
  if [ $((i % 2)) -eq 1 ]; then
    run new "$NEW" new; run old "$OLD" old
    run new-1m "$NEW" new1m --clients 1000000 --seed "$(seeded new)"
    run old-1m "$OLD" old1m --clients 1000000 --seed "$(seeded old)"
  else
    run old "$OLD" old; run new "$NEW" new
    run old-1m "$OLD" old1m --clients 1000000 --seed "$(seeded old)"
    run new-1m "$NEW" new1m --clients 1000000 --seed "$(seeded new)"
  fi
done
