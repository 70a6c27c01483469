#!/bin/bash
# Interleaved HTTP measurements of docs/PERFORMANCE.md: per round, the reference server,
# the empty host, the empty host of an older build (optional), and the million-client
# host under three loads: the empty host's, renewals of its own million clients, and a
# million new clients. Every host run starts on a fresh copy of its data directory, so
# runs do not inherit each other's logs.
#
#   scripts/perf-rounds.sh VOLACT REFERENCE_HOST DIR ROUNDS [OLDER_VOLACT]
#
# DIR is made once by:  scripts/perf-rounds.sh VOLACT REFERENCE_HOST DIR setup
# Loopback only; each load run stops by itself after DURATION seconds (default 10).
#
# VOLACT must be built with the bench-only `bench-seed` feature, which gives it the
# `host seed-clients` command the setup uses (release builds do not have it: it writes
# counted clients straight into a store):
#   cargo build --release -p volact --features bench-seed
# The setup refuses a VOLACT without it. Loopback clients are exempt from the host's
# new-client rate limits by default, so the loads here are measured as before.
set -eu
V=$1; REF=$2; D=$3; N=$4; OLD=${5:-}; T=${DURATION:-10}
key() { python3 -c "import json;print(json.load(open('$1'))['setup_keys']['demo-os-workstation'])"; }
# The bench seed whose client ids are the seeded clients' (reported by seed-clients).
seeded() { python3 -c "import json;print(json.load(open('$D/seed.json'))['bench_seed'])"; }
if [ "$N" = setup ]; then
  if ! "$V" host seed-clients --help > /dev/null 2>&1; then
    echo "$V has no \`host seed-clients\`: build it with" \
      "\`cargo build --release -p volact --features bench-seed\`" >&2
    exit 2
  fi
  rm -rf "$D"; mkdir -p "$D"
  for h in empty:7688 h1m:7690; do
    "$V" --json quickstart --data "$D/${h%:*}" --listen "127.0.0.1:${h#*:}" > "$D/${h%:*}.out" &
    sleep 3; kill -INT $!; wait $! || true
  done
  "$V" --json host seed-clients --data "$D/h1m/host" --count 1000000 > "$D/seed.json"
  exit 0
fi
report() { # name json host-cpu-ticks-delta rss-kB
  python3 - "$@" <<'PY'
import json, sys
name, path, ticks, rss = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
d = json.load(open(path)); l = d["latency"]; n = d["requests"]
host = "host %5.1f us/req" % (ticks * 1e6 / 100 / n) if ticks >= 0 else ""
mem = "peak rss %3d MB" % (rss // 1024) if rss > 0 else ""
print("%-10s %6.0f/s  p50 %4.1f  p99 %5.1f  p99.9 %5.1f ms  %s  %s  verified %s, failed %s" % (
    name, d["requests_per_sec"], l["p50_us"] / 1e3, l["p99_us"] / 1e3, l["p999_us"] / 1e3,
    host, mem, d.get("verified"), d.get("verify_failures")))
PY
}
host_run() { # name volact data port bench-args...
  local name=$1 bin=$2 data=$3 port=$4; shift 4
  rm -rf "$D/run"; cp -a "$D/$data" "$D/run"; sync
  "$bin" host serve --data "$D/run/host" --listen "127.0.0.1:$port" > "$D/serve.log" 2>&1 &
  local pid=$!
  until curl -s -o /dev/null "http://127.0.0.1:$port/healthz"; do sleep 0.1; done
  local c0; c0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  "$bin" --json bench --url "http://127.0.0.1:$port" --setup-key "$(key "$D/$data.out")" \
    --vendor "$D/run/vendor.pub" --duration "$T" --concurrency 64 "$@" > "$D/bench.json"
  # An admin read applies what waits in the journal, so the CPU counted covers every
  # request's fold, not only the folds that happened to run within the load.
  curl -s -o /dev/null -H "Authorization: Bearer $(cat "$D/run/host/admin.token")" \
    "http://127.0.0.1:$port/v1/admin/events?limit=1"
  local c1 rss; c1=$(awk '{print $14+$15}' "/proc/$pid/stat"); rss=$(awk '/VmHWM/{print $2}' "/proc/$pid/status")
  kill -INT $pid; wait $pid || true
  report "$name" "$D/bench.json" $((c1 - c0)) "$rss"
}
for i in $(seq "$N"); do
  echo "round $i"
  "$REF" 127.0.0.1:7699 2>/dev/null & rp=$!; sleep 0.5
  "$V" --json bench --url http://127.0.0.1:7699 --setup-key ANY --verify-sample 0 --duration "$T" --concurrency 64 > "$D/bench.json"
  kill $rp; wait $rp 2>/dev/null || true
  report reference "$D/bench.json" -1 0
  host_run empty "$V" empty 7688
  [ -n "$OLD" ] && host_run empty-old "$OLD" empty 7688
  host_run 1m-same "$V" h1m 7690
  # The seeded ids, a million round-robin: every request renews a random inventory row.
  host_run 1m-renew "$V" h1m 7690 --clients 1000000 --seed "$(seeded)"
  # A million ids the host never saw: every request adds a client to the million.
  host_run 1m-new "$V" h1m 7690 --clients 1000000 --seed 1
done
