#!/usr/bin/env bash
# hotrun vs PM2 on a CPU-bound app (fixtures/apps/cpu.js: 1 ms of CPU per request, port
# from HTTP_PORT only, as in the seed), 3 instances each, measured side by side in one run
# by an independent Node HTTP client (fixtures/load/client.js, 16 concurrent clients):
# throughput with a new connection per request and with keep-alive, the share of the
# busiest and the idlest instance, and failed and hung requests through RELOADS reloads
# under load. Prints a table with both figures and the ratio hotrun/PM2. A third column,
# "no runner", is the ceiling of the app on this machine: the same 3 instances started by
# hand, each on a port of its own, the client's 16 clients dealt over them exactly
# (6/5/5): no runner can spread better, and none is in its data path.
#
#   bash bench/balance.sh
#
# Knobs: HOTRUN (a hotrun binary: then no build), PM2_VERSION (7.0.4), ROUNDS (3 rounds
# per mode, median reported), DURATION (4000 ms per round), RELOADS (20), WORK_MS (1).
# Details go to bench/out/balance/. Everything started is stopped on exit.

set -uo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
OUT=$BENCH/out/balance
CLIENT=$ROOT/fixtures/load/client.js
APP_SCRIPT=$ROOT/fixtures/apps/cpu.js
PM2_VERSION=${PM2_VERSION:-7.0.4}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4000}
RELOADS=${RELOADS:-20}
WORK_MS=${WORK_MS:-1}
export PM2_HOME=$OUT/pm2home
PM2_BIN=$BENCH/pm2/node_modules/.bin/pm2

log() { printf '[balance %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

HR_PID=""
BARE_PIDS=()
cleanup() {
  trap - EXIT INT TERM
  [ -n "$HR_PID" ] && kill -TERM "$HR_PID" 2>/dev/null && wait "$HR_PID" 2>/dev/null
  [ ${#BARE_PIDS[@]} -gt 0 ] && kill -TERM "${BARE_PIDS[@]}" 2>/dev/null && wait "${BARE_PIDS[@]}" 2>/dev/null
  [ -x "$PM2_BIN" ] && timeout 30 "$PM2_BIN" kill >/dev/null 2>&1
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${HOTRUN:-}" ]; then
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
  HOTRUN=$ROOT/target/release/hotrun
fi
have=$(node -p "require('$BENCH/pm2/node_modules/pm2/package.json').version" 2>/dev/null || true)
if [ "$have" != "$PM2_VERSION" ]; then
  log "installing pm2@$PM2_VERSION into bench/pm2/"
  npm install --prefix "$BENCH/pm2" --no-audit --no-fund --loglevel=error "pm2@$PM2_VERSION" >/dev/null ||
    die "npm install pm2@$PM2_VERSION failed"
fi

rm -rf "$OUT" && mkdir -p "$OUT"
port_free() { ! ss -Htln "( sport = :$1 )" 2>/dev/null | grep -q .; }
HR_PORT=18480; while ! port_free $HR_PORT; do HR_PORT=$((HR_PORT + 1)); done
PM2_PORT=$((HR_PORT + 1)); while ! port_free $PM2_PORT; do PM2_PORT=$((PM2_PORT + 1)); done
BARE_PORTS=(); p=$((PM2_PORT + 1))
while [ ${#BARE_PORTS[@]} -lt 3 ]; do port_free $p && BARE_PORTS+=($p); p=$((p + 1)); done

ecosystem() {
  cat <<EOF
module.exports = { apps: [{ name: 'cpu', script: '$APP_SCRIPT', instances: 3,
  exec_mode: 'cluster', wait_ready: true, listen_timeout: 10000, kill_timeout: 5000,
  env: { NODE_ENV: 'production', HTTP_PORT: $1, WORK_MS: $WORK_MS } }] };
EOF
}
ecosystem $HR_PORT >"$OUT/hotrun.config.js"
ecosystem $PM2_PORT >"$OUT/pm2.config.js"

online() { # online hotrun|pm2: 3 instances online
  if [ "$1" = hotrun ]; then
    "$HOTRUN" --config "$OUT/hotrun.config.js" status 2>/dev/null | grep -c online | grep -qx 3
  else
    "$PM2_BIN" jlist 2>/dev/null | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const l=JSON.parse(s.slice(s.indexOf("[")));process.exit(l.filter(p=>p.pm2_env.status==="online").length===3?0:1)})'
  fi
}
wait_online() { for _ in $(seq 300); do online "$1" && return 0; sleep 0.1; done; die "$1: not online"; }

"$HOTRUN" --config "$OUT/hotrun.config.js" >"$OUT/hotrun.log" 2>&1 &
HR_PID=$!
"$PM2_BIN" start "$OUT/pm2.config.js" >"$OUT/pm2-start.log" 2>&1 || die "pm2 start failed"
for p in "${BARE_PORTS[@]}"; do
  HTTP_PORT=$p WORK_MS=$WORK_MS NODE_ENV=production node "$APP_SCRIPT" >>"$OUT/bare.log" 2>&1 &
  BARE_PIDS+=($!)
done
wait_online hotrun
wait_online pm2
for p in "${BARE_PORTS[@]}"; do
  for _ in $(seq 100); do ss -Htln "( sport = :$p )" | grep -q . && break; sleep 0.1; done
done
BARE=$(IFS=,; echo "${BARE_PORTS[*]}")
log "hotrun on $HR_PORT, PM2 $PM2_VERSION on $PM2_PORT, no runner on $BARE; $ROUNDS rounds of ${DURATION} ms per mode"

# load PORT ARGS...: one run of the client; prints its JSON report.
load() {
  local port=$1; shift
  local to=(--port "$port"); [ "$port" = bare ] && to=(--ports "$BARE")
  node "$CLIENT" "${to[@]}" --clients 16 "$@" | tail -1
}
# field JSON EXPR: a figure from a report (EXPR in terms of r).
field() { node -e "const r=JSON.parse(process.argv[1]);const v=Object.values(r.pids).sort((a,b)=>b-a);console.log($2)" "$1"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for mode in new keep; do
  args=(--duration "$DURATION"); [ $mode = keep ] && args+=(--keep-alive)
  for runner in hotrun pm2 bare; do : >"$OUT/$runner-$mode.jsonl"; done
  for _ in $(seq "$ROUNDS"); do
    for runner in hotrun pm2 bare; do
      port=$HR_PORT; [ $runner = pm2 ] && port=$PM2_PORT; [ $runner = bare ] && port=bare
      load $port "${args[@]}" >>"$OUT/$runner-$mode.jsonl"
    done
  done
done

# The instances without a runner are done: the reloads are hotrun's and PM2's alone.
kill -TERM "${BARE_PIDS[@]}" 2>/dev/null; wait "${BARE_PIDS[@]}" 2>/dev/null; BARE_PIDS=()

# reloads RUNNER: RELOADS reloads under 16 new-connection clients; the report.
reloads() {
  local port=$HR_PORT; [ "$1" = pm2 ] && port=$PM2_PORT
  mkfifo "$OUT/ctl-$1"
  node "$CLIENT" --port $port --clients 16 <"$OUT/ctl-$1" >"$OUT/$1-reloads.json" &
  local client=$!
  exec 3>"$OUT/ctl-$1"
  sleep 1
  local start; start=$(date +%s%3N)
  for _ in $(seq "$RELOADS"); do
    if [ "$1" = hotrun ]; then
      "$HOTRUN" --config "$OUT/hotrun.config.js" reload >>"$OUT/hotrun-reload.log" 2>&1
    else
      "$PM2_BIN" reload cpu >>"$OUT/pm2-reload.log" 2>&1
      wait_online pm2
    fi
  done
  echo "$(( $(date +%s%3N) - start ))" >"$OUT/$1-reloads.ms"
  echo stop >&3; exec 3>&-
  wait $client
  tail -1 "$OUT/$1-reloads.json"
}
HR_RELOADS=$(reloads hotrun)
PM2_RELOADS=$(reloads pm2)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "-" && b > 0) printf "%.2fx", a / b; else print "-" }'; }
row() { # row LABEL HOTRUN PM2 [NO_RUNNER]
  local bare=${4:--}
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$(ratio "$2" "$3")" "$bare" \
    "$(ratio "$2" "$bare")" "$(ratio "$3" "$bare")"
}
figure() { # figure RUNNER MODE EXPR: the median over the rounds
  while read -r r; do field "$r" "$3"; done <"$OUT/$1-$2.jsonl" | median
}
echo
echo "CPU-bound app (WORK_MS=$WORK_MS), 3 instances, 16 concurrent Node clients; medians of $ROUNDS rounds of $DURATION ms"
echo
echo "| figure | hotrun | PM2 $PM2_VERSION | hotrun/PM2 | no runner | hotrun/no runner | PM2/no runner |"
echo "|---|---|---|---|---|---|---|"
for mode in new keep; do
  name="new connection"; [ $mode = keep ] && name="keep-alive"
  for what in "requests/s|Math.round(r.ok/$DURATION*1000)" "busiest instance %|(100*v[0]/r.ok).toFixed(1)" \
    "idlest instance %|(100*(v.length<3?0:v[2])/r.ok).toFixed(1)" "failed + hung|r.failed+r.hung"; do
    expr=${what#*|}
    row "${what%%|*}, $name" "$(figure hotrun $mode "$expr")" "$(figure pm2 $mode "$expr")" "$(figure bare $mode "$expr")"
  done
done
HR_MS=$(cat "$OUT/hotrun-reloads.ms"); PM2_MS=$(cat "$OUT/pm2-reloads.ms")
row "time for $RELOADS reloads under load, s" "$(awk -v m="$HR_MS" 'BEGIN {printf "%.1f", m/1000}')" "$(awk -v m="$PM2_MS" 'BEGIN {printf "%.1f", m/1000}')"
row "requests/s while reloading (1 s before included)" "$(field "$HR_RELOADS" "Math.round(r.ok/($HR_MS+1000)*1000)")" "$(field "$PM2_RELOADS" "Math.round(r.ok/($PM2_MS+1000)*1000)")"
row "failed during $RELOADS reloads" "$(field "$HR_RELOADS" r.failed)" "$(field "$PM2_RELOADS" r.failed)"
row "hung during $RELOADS reloads" "$(field "$HR_RELOADS" r.hung)" "$(field "$PM2_RELOADS" r.hung)"
echo
echo "errors during reloads: hotrun $(field "$HR_RELOADS" 'JSON.stringify(r.errors)'), PM2 $(field "$PM2_RELOADS" 'JSON.stringify(r.errors)')"
