#!/bin/bash
# Interleaved rounds at 64 connections for docs/PERFORMANCE.md ("Several hosts on
# PostgreSQL"): per round, one host on SQLite, one host on PostgreSQL, and two hosts on one
# PostgreSQL database (two loads of PER_HOST connections at once, one per host), in an order that
# rotates each round. Every SQLite run starts on a fresh copy of the host, every PostgreSQL
# run on a fresh database. Loopback only; each load stops by itself after DURATION seconds.
#
#   scripts/pg-rounds.sh VOLACT DIR PGBASE setup     once: a quickstart vendor and two hosts
#   scripts/pg-rounds.sh VOLACT DIR PGBASE ROUNDS
#
# PGBASE is a PostgreSQL server's URL without a database, e.g. postgres://volact@127.0.0.1:5432,
# whose user may create databases (the script creates and drops `volact_rounds`).
set -eu
V=$1; D=$2; PG=$3; N=$4; T=${DURATION:-10}
# Connections of each of the two hosts' loads: 32 (the default) keeps the total at 64,
# as for one host; 64 drives each host as hard as the one host is driven.
PER_HOST=${PER_HOST:-32}
PSQL="psql -q -X -v ON_ERROR_STOP=1"
key() { python3 -c "import json;print(json.load(open('$D/q.out'))['setup_keys']['demo-os-workstation'])"; }
if [ "$N" = setup ]; then
  rm -rf "$D"; mkdir -p "$D"
  "$V" --json quickstart --data "$D/q" --listen 127.0.0.1:7688 > "$D/q.out" &
  sleep 3; kill -INT $!; wait $! || true
  # A second host activated with a host key of the same vendor.
  hk=$("$V" --json vendor host-key --dir "$D/q/vendor" --customer Bench --group demo-all | python3 -c "import json,sys;print(json.load(sys.stdin)['host_key'])")
  "$V" host init --data "$D/q/host2" > /dev/null
  "$V" host install-key --data "$D/q/host2" --vendor "$D/q/vendor.pub" "$hk" > /dev/null
  "$V" host activate --data "$D/q/host2" --request-out "$D/req.json" > /dev/null
  "$V" vendor activate-host --dir "$D/q/vendor" "$D/req.json" > "$D/resp.json"
  "$V" host activate --data "$D/q/host2" --response "$D/resp.json" > /dev/null
  exit 0
fi
fresh_db() {
  $PSQL "$PG/postgres" -c "DROP DATABASE IF EXISTS volact_rounds" -c "CREATE DATABASE volact_rounds"
}
serve() { # data port storage-url; sets PID
  "$V" host serve --data "$1" --listen "127.0.0.1:$2" --storage-url "$3" > "$D/serve-$2.log" 2>&1 &
  PID=$!
}
healthy() { until curl -s -o /dev/null "http://127.0.0.1:$1/healthz"; do sleep 0.1; done; }
bench() { # port connections out
  "$V" --json bench --url "http://127.0.0.1:$1" --setup-key "$(key)" --vendor "$D/run/vendor.pub" \
    --duration "$T" --concurrency "$2" > "$3"
}
report() { # name json...
  python3 - "$@" <<'PY'
import json, sys
name, paths = sys.argv[1], sys.argv[2:]
ds = [json.load(open(p)) for p in paths]
rate = sum(d["requests_per_sec"] for d in ds)
p50 = max(d["latency"]["p50_us"] for d in ds) / 1e3
p99 = max(d["latency"]["p99_us"] for d in ds) / 1e3
bad = sum(sum(n for code, n in d.get("results", {}).items() if code not in ("activated", "count-insufficient")) for d in ds)
print("%-8s %6.0f/s  p50 %4.1f  p99 %5.1f ms  other answers %d  verify failures %s" % (
    name, rate, p50, p99, bad, sum(d.get("verify_failures") or 0 for d in ds)))
PY
}
one() { # sqlite|pg
  rm -rf "$D/run"; cp -a "$D/q" "$D/run"; sync
  local url="sqlite://DATA/volact.db"
  if [ "$1" = pg ]; then fresh_db; url="$PG/volact_rounds"; fi
  serve "$D/run/host" 7688 "$url"; local pid=$PID; healthy 7688
  bench 7688 64 "$D/b1.json"
  kill -INT "$pid"; wait "$pid" || true
  report "$1" "$D/b1.json"
}
two() {
  rm -rf "$D/run"; cp -a "$D/q" "$D/run"; sync; fresh_db
  serve "$D/run/host" 7688 "$PG/volact_rounds"; local a=$PID; healthy 7688
  serve "$D/run/host2" 7698 "$PG/volact_rounds"; local b=$PID; healthy 7698
  bench 7688 "$PER_HOST" "$D/b1.json" & local x=$!
  bench 7698 "$PER_HOST" "$D/b2.json"; wait $x
  kill -INT "$a" "$b"; wait "$a" "$b" || true
  report "pg x2" "$D/b1.json" "$D/b2.json"
}
for i in $(seq "$N"); do
  echo "round $i"
  case $((i % 3)) in
    1) one sqlite; one pg; two ;;
    2) one pg; two; one sqlite ;;
    0) two; one sqlite; one pg ;;
  esac
done
