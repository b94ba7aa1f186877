#!/usr/bin/env bash
# Rolling reload with max_surge: the wall time of `hotrun --config F reload` (it returns
# when the reload is done) on 8 instances, with max_surge 1 and with max_surge 4, under
# continuous HTTP load (a new connection per request), and the failed requests.
#
#   bash bench/surge.sh
#
# The app (bench/surge/app.js) is in the seed's style: 8 instances, cluster mode,
# wait_ready: true; it listens, then sends process.send('ready') READY_DELAY (300) ms
# later, so each replacement costs at least that. For each max_surge in SURGES, a fresh
# hotrun runs the app, the load (bench/surge/load.js, CONCURRENCY loops) runs throughout,
# and RELOADS reloads are timed one after the other (SETTLE seconds apart). A reload counts
# only if it exits 0 and all 8 pids changed. Under a minute on 2 cores.
#
# Needs node. Builds hotrun (`cargo build --release`) unless HOTRUN names a binary.
# Everything started is stopped on exit (trap), also on Ctrl-C or an error.
#
# Knobs (environment): HOTRUN, SURGES ("1 4"), RELOADS (3, median reported), INSTANCES (8),
# READY_DELAY (300 ms), CONCURRENCY (4 load loops), SETTLE (2 s), PORT (18310).
# Output: the table on stdout; details in bench/out/surge/ (hotrun-surge-N.log, load-N.txt,
# results.env).

set -uo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
OUT=$BENCH/out/surge
SURGES=${SURGES:-1 4}
RELOADS=${RELOADS:-3}
INSTANCES=${INSTANCES:-8}
READY_DELAY=${READY_DELAY:-300}
CONCURRENCY=${CONCURRENCY:-4}
SETTLE=${SETTLE:-2}
PORT=${PORT:-18310}
RESULTS=$OUT/results.env

log() { printf '[surge %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now_ms() { date +%s%3N; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
result() { echo "$1=$2" >>"$RESULTS"; }

# wait_until SECONDS COMMAND...: poll every 0.1 s until COMMAND succeeds; 1 on time-out.
wait_until() {
  local limit=$1 start
  shift
  start=$(now_ms)
  until "$@"; do
    (($(now_ms) - start > limit * 1000)) && return 1
    sleep 0.1
  done
}

# ---------------------------------------------------------------- clean-up (always) ----
HR_PID=""
LOAD_PID=""
stop_load() {
  if alive "$LOAD_PID"; then
    kill -TERM "$LOAD_PID" 2>/dev/null
    wait_until 5 eval '! alive "$LOAD_PID"' || kill -KILL "$LOAD_PID" 2>/dev/null
  fi
  LOAD_PID=""
}
stop_hotrun() {
  if alive "$HR_PID"; then
    kill -TERM "$HR_PID" 2>/dev/null
    wait_until 20 eval '! alive "$HR_PID"' || kill -KILL "$HR_PID" 2>/dev/null
  fi
  HR_PID=""
}
cleanup() {
  trap - EXIT INT TERM
  stop_load
  stop_hotrun
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------- prerequisites ----
command -v node >/dev/null || die "node is needed"
if [ -z "${HOTRUN:-}" ]; then
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
  HOTRUN=$ROOT/target/release/hotrun
fi
[ -x "$HOTRUN" ] || die "no hotrun binary at $HOTRUN"
mkdir -p "$OUT"
: >"$RESULTS"
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)

# status_pids CONFIG: the pids of the online instances, sorted, one line; empty if none.
status_pids() {
  "$HOTRUN" --config "$1" status --json 2>/dev/null | node -e '
    let s = ""; process.stdin.on("data", (c) => (s += c)).on("end", () => {
      try {
        const j = JSON.parse(s);
        const p = j.apps.flatMap((a) => a.instances).filter((i) => i.state === "online").map((i) => i.pid);
        console.log(p.sort((a, b) => a - b).join(" "));
      } catch (_) { console.log(""); }
    });'
}
online_count() { local p; p=$(status_pids "$1"); [ -z "$p" ] && echo 0 || wc -w <<<"$p"; }
all_online() { [ "$(online_count "$1")" = "$INSTANCES" ]; }

# mark FILE: ask the load client for its counters; prints "ok failed".
mark() {
  local mfile=$1 before
  before=$(grep -c '^mark ' "$mfile" 2>/dev/null)
  kill -USR2 "$LOAD_PID" 2>/dev/null || return 1
  wait_until 5 eval '[ "$(grep -c "^mark " "$mfile")" -gt "$before" ]' || return 1
  grep '^mark ' "$mfile" | tail -1 | awk '{print $3, $4}'
}

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print int((a[NR/2]+a[NR/2+1])/2)}'; }

declare -A ROW
log "hotrun $("$HOTRUN" --version 2>/dev/null | head -1), node $(node --version), $(nproc) CPUs; $INSTANCES instances, READY_DELAY $READY_DELAY ms, $CONCURRENCY load loops"
for S in $SURGES; do
  CFG=$OUT/surge-$S.config.json
  cat >"$CFG" <<EOF
{
  "apps": [{
    "name": "web",
    "script": "$BENCH/surge/app.js",
    "instances": $INSTANCES,
    "exec_mode": "cluster",
    "wait_ready": true,
    "listen_timeout": 10000,
    "kill_timeout": 5000,
    "max_surge": $S,
    "port": $PORT,
    "env": { "READY_DELAY": "$READY_DELAY" }
  }]
}
EOF
  HRLOG=$OUT/hotrun-surge-$S.log
  : >"$OUT/reload-$S.txt"
  LOADOUT=$OUT/load-$S.txt
  log "max_surge $S: starting hotrun ($INSTANCES instances)"
  NO_COLOR=1 "$HOTRUN" --config "$CFG" >"$HRLOG" 2>&1 &
  HR_PID=$!
  wait_until 60 all_online "$CFG" || die "the $INSTANCES instances are not all online within 60 s (see $HRLOG)"

  node "$BENCH/surge/load.js" "http://127.0.0.1:$PORT/" "$CONCURRENCY" 300 3000 >"$LOADOUT" &
  LOAD_PID=$!
  sleep 2
  times=""
  rel_ok=0
  rel_failed=0
  good=0
  for i in $(seq "$RELOADS"); do
    before=$(status_pids "$CFG")
    read -r ok0 f0 < <(mark "$LOADOUT") || die "the load client does not answer"
    t0=$(date +%s%N)
    timeout 120 "$HOTRUN" --config "$CFG" reload >>"$OUT/reload-$S.txt" 2>&1
    rc=$?
    t1=$(date +%s%N)
    read -r ok1 f1 < <(mark "$LOADOUT") || die "the load client does not answer"
    ms=$(((t1 - t0) / 1000000))
    after=$(status_pids "$CFG")
    left=$(comm -12 <(tr ' ' '\n' <<<"$before" | sort) <(tr ' ' '\n' <<<"$after" | sort) | grep -c . || true)
    n_after=$(wc -w <<<"$after")
    verdict=ok
    if [ "$rc" != 0 ] || [ "$n_after" != "$INSTANCES" ] || [ "$left" != 0 ]; then
      verdict="NOT OK (exit $rc, $n_after online, $left old pids left)"
    else
      good=$((good + 1))
      times="$times $ms"
    fi
    rel_ok=$((rel_ok + ok1 - ok0))
    rel_failed=$((rel_failed + f1 - f0))
    log "max_surge $S reload $i: ${ms} ms, $((ok1 - ok0)) requests ok, $((f1 - f0)) failed during it; $verdict"
    result "surge${S}_reload${i}_ms" "$ms"
    result "surge${S}_reload${i}_failed" "$((f1 - f0))"
    sleep "$SETTLE"
  done
  kill -TERM "$LOAD_PID" 2>/dev/null
  wait_until 5 eval 'grep -q "^done " "$LOADOUT"'
  stop_load
  read -r _ _ tot_ok tot_failed errs < <(grep '^done ' "$LOADOUT" | tail -1)
  stop_hotrun
  med=$(median <<<"$times")
  log "max_surge $S: reload median ${med:-?} ms (of$times), $rel_failed failed of $((rel_ok + rel_failed)) during reloads, $tot_failed of $((tot_ok + tot_failed)) in all $errs"
  result "surge${S}_reload_median_ms" "${med:-}"
  result "surge${S}_failed_during_reloads" "$rel_failed"
  result "surge${S}_requests_during_reloads" "$((rel_ok + rel_failed))"
  result "surge${S}_failed_total" "$tot_failed"
  result "surge${S}_requests_total" "$((tot_ok + tot_failed))"
  ROW[$S]=$(printf '%-10s %10s %-22s %8s/%-8s %8s/%-8s %s' "$S" "${med:-?}" "($(echo $times | tr ' ' ','))" \
    "$rel_failed" "$((rel_ok + rel_failed))" "$tot_failed" "$((tot_ok + tot_failed))" "$good/$RELOADS")
done

printf '%-10s %10s %-22s %17s %17s %s\n' max_surge "reload ms" "(each)" "failed/requests" "failed/requests" "good reloads"
printf '%-10s %10s %-22s %17s %17s\n' "" "median" "" "during reloads" "whole run"
for S in $SURGES; do echo "${ROW[$S]}"; done
echo "($INSTANCES instances, cluster, wait_ready, READY_DELAY $READY_DELAY ms, $CONCURRENCY load loops with a new connection per request; target: 0 failed)"
echo "(hotrun $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)$(cd "$ROOT" && [ -n "$(git status --porcelain -- src 2>/dev/null)" ] && echo '+local changes'), node $(node --version), $(nproc) CPUs, load average $LOAD_BEFORE before / $(cut -d' ' -f1 /proc/loadavg) after, $(date -u +%Y-%m-%dT%H:%MZ))"
