#!/bin/bash
# Activations/s over TLS as a ratio to plain HTTP at 64 connections: one build, one
# quickstart host (fresh copy per run), plain and TLS runs interleaved ABBA. Loopback only;
# every load run stops by itself after T seconds. The TLS runs pin the host's self-signed
# certificate by the fingerprint in serving.json (HTTP/1.1 over TLS 1.3, as `volact bench`
# speaks it).
#   tls64.sh BIN DIR ROUNDS        (DURATION=10 by default)
set -eu
BIN=$1; D=$2; N=$3; T=${DURATION:-10}
key() { python3 -c "import json;print(json.load(open('$1'))['setup_keys']['demo-os-workstation'])"; }
if [ ! -d "$D/base" ]; then
  mkdir -p "$D"
  "$BIN" --json quickstart --data "$D/base" --listen 127.0.0.1:7688 > "$D/base.out" &
  sleep 4; kill -INT $!; wait $! || true
fi
run() { # plain|tls
  local name=$1
  rm -rf "$D/run"; cp -a "$D/base" "$D/run"; sync
  "$BIN" host serve --data "$D/run/host" --listen 127.0.0.1:7688 > "$D/serve.log" 2>&1 &
  local pid=$!
  until curl -s -o /dev/null http://127.0.0.1:7688/healthz; do sleep 0.1; done
  local url=http://127.0.0.1:7688 pin=()
  if [ "$name" = tls ]; then
    url=$(python3 -c "import json;print(json.load(open('$D/run/host/serving.json'))['tls_url'])")
    pin=(--tls-fingerprint "$(python3 -c "import json;print(json.load(open('$D/run/host/serving.json'))['tls_fingerprint'])")")
  fi
  local c0; c0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  "$BIN" --json bench --url "$url" "${pin[@]}" --setup-key "$(key "$D/base.out")" \
    --vendor "$D/run/vendor.pub" --duration "$T" --concurrency 64 > "$D/bench-$name.json"
  local c1; c1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  kill -INT $pid; wait $pid || true
  python3 - "$name" "$D/bench-$name.json" $((c1 - c0)) <<'PY'
import json, sys
name, path, ticks = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = json.load(open(path)); l = d["latency"]; n = max(d["requests"], 1)
print("%-6s %6.0f/s  p50 %4.1f  p99 %5.1f ms  host %5.1f us/req  results %s  verify failures %s" % (
    name, d["requests_per_sec"], l["p50_us"]/1e3, l["p99_us"]/1e3, ticks*1e6/100/n, d["results"], d.get("verify_failures")))
PY
}
for i in $(seq "$N"); do
  echo "round $i"
  if [ $((i % 2)) -eq 1 ]; then run plain; run tls; else run tls; run plain; fi
done
