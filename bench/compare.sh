#!/usr/bin/env bash
# hotrun vs PM2 on the same app (bench/app/server.js, 3 instances, cluster mode,
# wait_ready), side by side in one run: both run at once, each on its own port, and the
# measurements alternate between them. Prints a table with both figures, the ratio
# hotrun/PM2 and the targets. Takes about 3 minutes on 2 cores.
#
#   bash bench/compare.sh
#
# What it needs and does by itself: builds hotrun (`cargo build --release`) unless HOTRUN
# names a binary; installs PM2 (pinned) into bench/pm2/ from the npm registry; installs
# wrk with apt-get if it is missing. PM2 runs with PM2_HOME=bench/out/compare/pm2home, never ~/.pm2.
# Everything started is stopped on exit (trap), also on Ctrl-C or an error.
#
# Knobs (environment): HOTRUN (a hotrun binary: then no build), HOTRUN_LABEL (what that
# binary is built from, for the output), PM2_VERSION (7.0.4), ROUNDS (5 throughput rounds,
# median reported), DURATION (5 s per round), WARMUP (2 s), THREADS (1 wrk thread), CONNS
# (32 connections), RELOADS (20 reloads under load), TIMED_RELOADS (5, median reported),
# QUIET_WAIT (60 s at most waiting for an idle machine before starting), PORT_BASE (18380:
# hotrun gets the first free port from there, PM2 the next).
#
# Output: the table on stdout; details in bench/out/compare/ (results.env, results.md, wrk outputs,
# hotrun.log, pm2home/logs). Then bench/balance.sh runs (the CPU-bound app under 16
# concurrent Node clients, side by side with PM2 too); BALANCE=0 skips it.

set -uo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
OUT=$BENCH/out/compare
LIB=$BENCH/lib.js
APP_SCRIPT=$BENCH/app/server.js
APP=bench

PM2_VERSION=${PM2_VERSION:-7.0.4}
INSTANCES=3
LISTEN_TIMEOUT=10000
KILL_TIMEOUT=5000
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-5}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-1}
CONNS=${CONNS:-32}
RELOADS=${RELOADS:-20}
TIMED_RELOADS=${TIMED_RELOADS:-5}
WRK_TIMEOUT=2s
PORT_BASE=${PORT_BASE:-18380}

# PM2 must never touch ~/.pm2: every pm2 call below sees this.
export PM2_HOME=$OUT/pm2home
PM2_BIN=$BENCH/pm2/node_modules/.bin/pm2
RESULTS=$OUT/results.env

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now_ms() { date +%s%3N; }
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

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo ""; }
# CPU time (user + system) a process used, in clock ticks; and over 10 s, in ms.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
idle_cpu_ms() {
  local t0
  t0=$(cpu_ticks "$1")
  sleep 10
  echo $((($(cpu_ticks "$1") - t0) * 1000 / $(getconf CLK_TCK)))
}
sum_rss_kb() {
  local total=0 pid kb
  for pid in "$@"; do
    kb=$(rss_kb "$pid")
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# How much CPU other work on the machine took while we measured: every process's
# utime+stime from /proc/PID/stat, before and after, less this script's process tree, PM2's
# daemon tree and kernel threads; in % of one core. (Processes that start and end within the
# window are missed, so this is a lower bound.) The machine has 2 cores: anything else
# running skews the figures, hence the WARNING in the report.
snap() { cat /proc/[0-9]*/stat 2>/dev/null; }
other_cpu() { # other_cpu SNAP_BEFORE SNAP_AFTER ELAPSED_MS
  awk -v ms="$3" -v hz="$(getconf CLK_TCK 2>/dev/null || echo 100)" -v roots="$$ ${PM2_GOD_PID:-}" '
    function parse(line,   i, f) {
      i = match(line, /\) [A-Za-z] /); split(substr(line, i + 2), f, " ")
      P = line + 0; PP = f[2]; T = f[12] + f[13]; K = P ":" f[20]
    }
    FNR == NR { parse($0); t0[K] = T; next }
    { parse($0); pp[P] = PP; t1[P] = T; key[P] = K }
    END {
      n = split(roots, r, " "); for (i = 1; i <= n; i++) ex[r[i]] = 1; ex[2] = 1
      do { c = 0; for (p in pp) if (!(p in ex) && (pp[p] in ex)) { ex[p] = 1; c = 1 } } while (c)
      s = 0; for (p in t1) if (!(p in ex)) s += t1[p] - ((key[p] in t0) ? t0[key[p]] : 0)
      printf "%.0f", (ms > 0) ? 100 * s / hz / (ms / 1000) : 0
    }' <(echo "$1") <(echo "$2")
}

# ---------------------------------------------------------------- clean-up (always) ----
WRK_PID=""
SCRAPER_PID=""
HR_PID=""
PM2_STARTED=""
cleanup() {
  trap - EXIT INT TERM
  if alive "$SCRAPER_PID"; then kill "$SCRAPER_PID" 2>/dev/null; fi
  if alive "$WRK_PID"; then kill -INT "$WRK_PID" 2>/dev/null; sleep 0.2; kill -KILL "$WRK_PID" 2>/dev/null; fi
  if alive "$HR_PID"; then
    log "stopping hotrun (pid $HR_PID)"
    kill -TERM "$HR_PID" 2>/dev/null
    wait_until 15 eval '! alive "$HR_PID"' || kill -KILL "$HR_PID" 2>/dev/null
  fi
  if [ -n "$PM2_STARTED" ]; then
    log "stopping PM2 (pm2 kill, PM2_HOME=$PM2_HOME)"
    local god
    god=$(cat "$PM2_HOME/pm2.pid" 2>/dev/null)
    timeout --foreground 30 "$PM2_BIN" kill >/dev/null 2>&1
    if alive "$god"; then kill -KILL "$god" 2>/dev/null; fi
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------- prerequisites ----
command -v node >/dev/null || die "node is needed (the app and PM2 run on it)"
command -v npm >/dev/null || die "npm is needed to install PM2"
if ! command -v wrk >/dev/null; then
  log "wrk is missing: installing it with apt-get"
  [ "$(id -u)" = 0 ] || die "wrk is missing and apt-get needs root: apt-get install -y wrk"
  if ! apt-cache policy wrk 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    apt-get update -qq >/dev/null || die "apt-get update failed"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null || die "apt-get install wrk failed"
fi

HOTRUN_GIVEN=${HOTRUN:-}
if [ -z "${HOTRUN:-}" ]; then
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
  HOTRUN=$ROOT/target/release/hotrun
fi
[ -x "$HOTRUN" ] || die "no hotrun binary at $HOTRUN"

have=$(node -p "require('$BENCH/pm2/node_modules/pm2/package.json').version" 2>/dev/null || true)
if [ "$have" != "$PM2_VERSION" ]; then
  log "installing pm2@$PM2_VERSION into bench/pm2/"
  npm install --prefix "$BENCH/pm2" --no-audit --no-fund --loglevel=error "pm2@$PM2_VERSION" >/dev/null ||
    die "npm install pm2@$PM2_VERSION failed"
fi
[ -x "$PM2_BIN" ] || die "no pm2 binary at $PM2_BIN"

# A PM2 daemon left by an interrupted earlier run of this script (same PM2_HOME) goes first.
if alive "$(cat "$PM2_HOME/pm2.pid" 2>/dev/null)"; then
  log "a PM2 daemon from an earlier run is alive in $PM2_HOME: pm2 kill"
  timeout --foreground 30 "$PM2_BIN" kill >/dev/null 2>&1
fi
rm -rf "$OUT"
mkdir -p "$OUT"
: >"$RESULTS"

# Free ports: the first free from PORT_BASE for hotrun, the next free for PM2.
port_free() { ! ss -Htln "( sport = :$1 )" 2>/dev/null | grep -q .; }
free_port() {
  local p
  for ((p = $1; p < $1 + 200; p++)); do
    port_free "$p" && { echo "$p"; return 0; }
  done
  return 1
}
HR_PORT=$(free_port "$PORT_BASE") || die "no free port from $PORT_BASE"
PM2_PORT=$(free_port $((HR_PORT + 1))) || die "no free port after $HR_PORT"

# The same ecosystem for both; only the port differs.
ecosystem() {
  cat <<EOF
module.exports = {
  apps: [{
    name: '$APP',
    script: '$APP_SCRIPT',
    instances: $INSTANCES,
    exec_mode: 'cluster',
    wait_ready: true,
    listen_timeout: $LISTEN_TIMEOUT,
    kill_timeout: $KILL_TIMEOUT,
    env: { NODE_ENV: 'production', PORT: $1 },
  }],
};
EOF
}
HR_CFG=$OUT/hotrun.config.js
PM2_CFG=$OUT/pm2.config.js
ecosystem "$HR_PORT" >"$HR_CFG"
ecosystem "$PM2_PORT" >"$PM2_CFG"

# Which hotrun: the work tree's commit (+changes when src/ differs from it), or the
# binary given in HOTRUN, labelled by HOTRUN_LABEL if set.
if [ -n "$HOTRUN_GIVEN" ]; then
  built_from=${HOTRUN_LABEL:-$HOTRUN}
else
  built_from="git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")"
  [ -n "$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] && built_from="$built_from+changes"
fi
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
{
  result date "$(date -u +%Y-%m-%dT%H:%MZ)"
  result machine "$(nproc) cores, ${cpu:-unknown cpu}, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r)"
  result hotrun_version "$("$HOTRUN" --version 2>/dev/null | awk '{print $NF}') ($built_from)"
  result pm2_version "$PM2_VERSION"
  result node_version "$(node --version)"
  result wrk_version "$(wrk --version 2>&1 | head -1 | awk '{print $2}')"
  result reloads "$RELOADS"
  result timed_reloads "$TIMED_RELOADS"
}
log "hotrun: $HOTRUN on port $HR_PORT; PM2 $PM2_VERSION on port $PM2_PORT; wrk -t$THREADS -c$CONNS, ${DURATION}s runs"

# ------------------------------------------------------------------------ the runners ----
# Both run at the same time (idle when not measured), so the throughput rounds and the timed
# reloads alternate hotrun / PM2 and whatever else the machine does hits both alike.
hr() { timeout --foreground 60 "$HOTRUN" --config "$HR_CFG" "$@"; }
hr_status() { hr status --json 2>/dev/null; }
hotrun_ready() { hr_status | node "$LIB" hotrun-ready "$INSTANCES" 2>/dev/null; }
pm2() { timeout --foreground 60 "$PM2_BIN" "$@"; }
pm2_jlist() { pm2 jlist 2>/dev/null; }
pm2_ready() { pm2_jlist | node "$LIB" pm2-ready "$APP" "$INSTANCES" 2>/dev/null; }

HR_RUNNER_PID=""
HR_GUARD_PID=""
PM2_GOD_PID=""

# start_hotrun [ARGS...]: extra arguments for the runner (the endpoint's phase: --http).
start_hotrun() {
  "$HOTRUN" --config "$HR_CFG" "$@" >"$OUT/hotrun.log" 2>&1 &
  HR_PID=$!
  wait_until 30 hotrun_ready || die "hotrun: instances not online within 30 s (see bench/out/compare/hotrun.log)"
  HR_RUNNER_PID=$(hr_status | node "$LIB" hotrun-pid)
  [ "$HR_RUNNER_PID" = "$HR_PID" ] || log "note: status pid $HR_RUNNER_PID != started pid $HR_PID"
  HR_GUARD_PID=$(pgrep -P "$HR_RUNNER_PID" -f -- '__guard' | head -1)
}
stop_hotrun() {
  hr stop >/dev/null 2>&1 || log "hotrun stop failed; SIGTERM"
  wait_until 20 eval '! alive "$HR_PID"' || { kill -TERM "$HR_PID" 2>/dev/null; wait_until 10 eval '! alive "$HR_PID"'; }
  alive "$HR_PID" && kill -KILL "$HR_PID" 2>/dev/null
  wait "$HR_PID" 2>/dev/null
  HR_PID=""
}
reload_hotrun() { hr reload >>"$OUT/hotrun-reload.log" 2>&1; }

start_pm2() {
  PM2_STARTED=1
  pm2 start "$PM2_CFG" >"$OUT/pm2-start.log" 2>&1 || die "pm2 start failed (see bench/out/compare/pm2-start.log)"
  wait_until 30 pm2_ready || die "PM2: instances not online within 30 s"
  PM2_GOD_PID=$(cat "$PM2_HOME/pm2.pid")
}
stop_pm2() {
  pm2 kill >/dev/null 2>&1 || log "pm2 kill failed"
  wait_until 10 eval '! alive "$PM2_GOD_PID"' || kill -KILL "$PM2_GOD_PID" 2>/dev/null
  PM2_STARTED=""
}
reload_pm2() { pm2 reload "$APP" >>"$OUT/pm2-reload.log" 2>&1; }

instance_pids() {
  if [ "$1" = hotrun ]; then hr_status | node "$LIB" hotrun-pids; else pm2_jlist | node "$LIB" pm2-pids "$APP"; fi
}
port_of() { if [ "$1" = hotrun ]; then echo "$HR_PORT"; else echo "$PM2_PORT"; fi; }

# ---------------------------------------------------------------------- measurements ----
# field LINE KEY: the value of KEY=... in a WRK_SUMMARY line.
field() { sed -n "s/.*[[:space:]]$2=\([0-9]*\).*/\1/p" <<<"$1"; }

# throughput MODE: requests/s with a new connection per request (close) or keep-alive,
# ROUNDS rounds of DURATION s, alternating hotrun / PM2, each after one WARMUP run; the
# median round is reported (the spread is in the details).
declare -A RPS ERRS P50 P99 OTHER
throughput() {
  local mode=$1 r sys port out line req dur hdr=() snap0 t0
  [ "$mode" = close ] && hdr=(-H 'Connection: close')
  for sys in hotrun pm2; do
    RPS[$sys]="" ERRS[$sys]=0 P50[$sys]="" P99[$sys]="" OTHER[$sys]=""
    timeout --foreground $((WARMUP + 20)) wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" "${hdr[@]}" "http://127.0.0.1:$(port_of $sys)/" >/dev/null 2>&1
  done
  for ((r = 1; r <= ROUNDS; r++)); do
    for sys in hotrun pm2; do
      port=$(port_of $sys)
      out=$OUT/$sys-wrk-$mode-$r.txt
      snap0=$(snap)
      t0=$(now_ms)
      timeout --foreground $((DURATION + 30)) wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout "$WRK_TIMEOUT" "${hdr[@]}" \
        -s "$BENCH/wrk-summary.lua" "http://127.0.0.1:$port/" >"$out" 2>&1
      OTHER[$sys]+=" $(other_cpu "$snap0" "$(snap)" $(($(now_ms) - t0)))"
      line=$(grep WRK_SUMMARY "$out") || die "$sys: wrk printed no summary (see $out)"
      req=$(field "$line" requests)
      dur=$(field "$line" duration_us)
      RPS[$sys]+=" $(awk -v r="$req" -v d="$dur" 'BEGIN {printf "%.0f", r / (d / 1e6)}')"
      ERRS[$sys]=$((ERRS[$sys] + $(field "$line" connect) + $(field "$line" read) + $(field "$line" write) + $(field "$line" status) + $(field "$line" timeout)))
      P50[$sys]+=" $(field "$line" p50_us)"
      P99[$sys]+=" $(field "$line" p99_us)"
    done
  done
  for sys in hotrun pm2; do
    # shellcheck disable=SC2086
    {
      result "${sys}_rps_$mode" "$(node "$LIB" median ${RPS[$sys]})"
      result "${sys}_rps_${mode}_rounds" "${RPS[$sys]# }"
      result "${sys}_rps_${mode}_errors" "${ERRS[$sys]}"
      result "${sys}_rps_${mode}_p50_us" "$(node "$LIB" median ${P50[$sys]})"
      result "${sys}_rps_${mode}_p99_us" "$(node "$LIB" median ${P99[$sys]})"
      result "${sys}_rps_${mode}_other_cpu" "${OTHER[$sys]# }"
    }
    log "$sys: $mode: requests/s per round:${RPS[$sys]}; errors ${ERRS[$sys]}; other work's CPU (% of a core):${OTHER[$sys]}"
  done
}

# timed_reloads: wall time of one rolling reload, TIMED_RELOADS times each, alternating.
timed_reloads() {
  local i sys t0 t1 snap0 p0
  declare -A samples failed
  snap0=$(snap)
  p0=$(now_ms)
  for ((i = 1; i <= TIMED_RELOADS; i++)); do
    for sys in hotrun pm2; do
      t0=$(now_ms)
      "reload_$sys" || failed[$sys]=$((${failed[$sys]:-0} + 1))
      t1=$(now_ms)
      samples[$sys]+=" $((t1 - t0))"
      wait_until 30 "${sys}_ready" || die "$sys: not all online 30 s after a reload"
      sleep 0.3
    done
  done
  result timed_reloads_other_cpu "$(other_cpu "$snap0" "$(snap)" $(($(now_ms) - p0)))"
  for sys in hotrun pm2; do
    # shellcheck disable=SC2086
    result "${sys}_reload_ms" "$(node "$LIB" median ${samples[$sys]})"
    result "${sys}_reload_samples_ms" "${samples[$sys]# }"
    result "${sys}_timed_reload_failures" "${failed[$sys]:-0}"
    log "$sys: reload wall times (ms):${samples[$sys]}"
  done
}

# reloads_under_load SYS [LABEL]: RELOADS rolling reloads back to back while wrk makes
# requests with a new connection each; every socket error, time-out or non-200 answer is a
# failure. Results are named LABEL (SYS by default).
reloads_under_load() {
  local sys=$1 label=${2:-$1} port i failed_cmds=0 t0 t1 out line req sock non200 snap0
  port=$(port_of "$sys")
  out=$OUT/${2:-$sys}-wrk-reloads.txt
  wrk -t"$THREADS" -c"$CONNS" -d600s --timeout "$WRK_TIMEOUT" -H 'Connection: close' \
    -s "$BENCH/wrk-count.lua" "http://127.0.0.1:$port/" >"$out" 2>&1 &
  WRK_PID=$!
  sleep 1
  snap0=$(snap)
  t0=$(now_ms)
  for ((i = 1; i <= RELOADS; i++)); do
    "reload_$sys" || failed_cmds=$((failed_cmds + 1))
  done
  t1=$(now_ms)
  result "${label}_reload_other_cpu" "$(other_cpu "$snap0" "$(snap)" $((t1 - t0)))"
  sleep 1
  kill -INT "$WRK_PID" 2>/dev/null
  wait_until 15 eval '! alive "$WRK_PID"' || kill -KILL "$WRK_PID" 2>/dev/null
  wait "$WRK_PID" 2>/dev/null
  WRK_PID=""
  line=$(grep WRK_SUMMARY "$out") || die "$sys: wrk printed no summary during reloads (see $out)"
  req=$(field "$line" requests)
  sock=$(($(field "$line" connect) + $(field "$line" read) + $(field "$line" write)))
  non200=$(field "$line" non200)
  result "${label}_reload_total" "$((req + sock))"
  result "${label}_reload_failed" "$((sock + $(field "$line" timeout) + non200))"
  result "${label}_reload_detail" "connect=$(field "$line" connect) read=$(field "$line" read) write=$(field "$line" write) timeout=$(field "$line" timeout) non200=$non200"
  result "${label}_reload_wrk_s" "$(awk -v d="$(field "$line" duration_us)" 'BEGIN {printf "%.2f", d / 1e6}')"
  result "${label}_reload_load_s" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", (b - a) / 1000}')"
  result "${label}_reload_cmd_failures" "$failed_cmds"
  log "$label: $RELOADS reloads in $(((t1 - t0) / 1000)) s under load: ${line#WRK_SUMMARY }"
}

memory() {
  local when=$1
  result "hotrun_runner_rss${when}_kb" "$(rss_kb "$HR_RUNNER_PID")"
  result "hotrun_guard_rss${when}_kb" "$(rss_kb "$HR_GUARD_PID")"
  result "pm2_god_rss${when}_kb" "$(rss_kb "$PM2_GOD_PID")"
  # shellcheck disable=SC2046
  {
    result "hotrun_instances_rss${when}_kb" "$(sum_rss_kb $(instance_pids hotrun))"
    result "pm2_instances_rss${when}_kb" "$(sum_rss_kb $(instance_pids pm2))"
  }
}

# The figures are only worth something on an otherwise idle machine: wait (up to
# QUIET_WAIT s) for a second in which the CPUs are less than 25% busy, and say so if none came.
cpu_busy_pct() {
  local a b
  a=($(awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6}' /proc/stat))
  sleep 1
  b=($(awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6}' /proc/stat))
  awk -v t=$((b[0] - a[0])) -v i=$((b[1] - a[1])) 'BEGIN {printf "%.0f", (t > 0) ? 100 * (t - i) / t : 0}'
}
QUIET_WAIT=${QUIET_WAIT:-60}
quiet_start=$(now_ms)
while busy=$(cpu_busy_pct) && ((busy >= 25)); do
  if (($(now_ms) - quiet_start > QUIET_WAIT * 1000)); then
    log "WARNING: the machine is still ${busy}% busy with other work after ${QUIET_WAIT} s; measuring anyway"
    break
  fi
  log "the machine is ${busy}% busy with other work; waiting for it to calm down"
done
result busy_before "$busy"

T0=$(now_ms)
result load_before "$(cut -d' ' -f1-3 /proc/loadavg)"
t=$(now_ms)
start_hotrun
log "hotrun: $INSTANCES instances online in $(($(now_ms) - t)) ms (runner pid $HR_RUNNER_PID, guard pid ${HR_GUARD_PID:-none})"
t=$(now_ms)
start_pm2
log "PM2: $INSTANCES instances online in $(($(now_ms) - t)) ms (God daemon pid $PM2_GOD_PID)"
memory _start
throughput close
throughput keepalive
timed_reloads
reloads_under_load hotrun
reloads_under_load pm2
memory ""
result hotrun_reload_count "$(hr_status | node "$LIB" hotrun-reloads)"
result pm2_reload_count "$(pm2_jlist | node "$LIB" pm2-restarts "$APP")"
stop_pm2

# The endpoint's cost (--http): hotrun again with it on; its runner's RSS; the reloads
# under load without a scrape, then with a scrape of /metrics every 100 ms.
stop_hotrun
HR_HTTP_PORT=$(free_port $((PM2_PORT + 1))) || die "no free port for the endpoint"
start_hotrun --http "127.0.0.1:$HR_HTTP_PORT"
result hotrun_http_rss_start_kb "$(rss_kb "$HR_RUNNER_PID")"
reloads_under_load hotrun http_quiet
scrapes=$OUT/scrapes.txt
: >"$scrapes"
(while :; do
  curl -s -o /dev/null -w '%{http_code}\n' --max-time 5 "http://127.0.0.1:$HR_HTTP_PORT/metrics" >>"$scrapes"
  sleep 0.1
done) &
SCRAPER_PID=$!
reloads_under_load hotrun http_scraped
kill "$SCRAPER_PID" 2>/dev/null
wait "$SCRAPER_PID" 2>/dev/null
result hotrun_http_rss_kb "$(rss_kb "$HR_RUNNER_PID")"
result http_scrapes_ok "$(grep -c '^200$' "$scrapes")"
result http_scrapes_failed "$(grep -vc '^200$' "$scrapes")"
result hotrun_idle_cpu_ms "$(idle_cpu_ms "$HR_RUNNER_PID")"
stop_hotrun

# The probes' cost: hotrun with a readiness and a liveness probe (GET / every 1 s) on
# each instance: its runner's RSS, its CPU over 10 s idle (against the same without
# probes, just above), and the reloads under load.
HR_CFG_PLAIN=$HR_CFG
HR_CFG=$OUT/hotrun-probed.config.js
ecosystem "$HR_PORT" | sed "s|^    kill_timeout: .*|&\n    readiness_probe: { http: '/', period: 1000 },\n    liveness_probe: { http: '/', period: 1000 },|" >"$HR_CFG"
grep -q liveness_probe "$HR_CFG" || die "the probed ecosystem file has no probe"
start_hotrun
result hotrun_probed_rss_start_kb "$(rss_kb "$HR_RUNNER_PID")"
result hotrun_probed_idle_cpu_ms "$(idle_cpu_ms "$HR_RUNNER_PID")"
reloads_under_load hotrun probed
result hotrun_probed_rss_kb "$(rss_kb "$HR_RUNNER_PID")"
stop_hotrun
HR_CFG=$HR_CFG_PLAIN
result wall_s "$((($(now_ms) - T0) / 1000))"

# --------------------------------------------------------------------------- report ----
get() { sed -n "s/^$1=//p" "$RESULTS" | tail -1; }
ms() { awk -v a="$1" 'BEGIN {printf "%.2f", a / 1000}'; }
echo
echo "hotrun vs PM2: the same app (bench/app/server.js), $INSTANCES instances, cluster mode, wait_ready,"
echo "listen_timeout ${LISTEN_TIMEOUT} ms, kill_timeout ${KILL_TIMEOUT} ms; wrk -t$THREADS -c$CONNS; throughput = median of"
echo "$ROUNDS rounds of ${DURATION} s (after ${WARMUP} s warm-up), hotrun and PM2 alternating"
echo "date $(get date); $(get machine); CPU busy with other work just before: $(get busy_before)%"
echo "hotrun $(get hotrun_version); PM2 $(get pm2_version); node $(get node_version); wrk $(get wrk_version)"
echo
node "$LIB" report "$RESULTS" "$OUT/results.md" || die "report failed"
# shellcheck disable=SC2046
max_other=$(printf '%s\n' 0 $(get hotrun_rps_close_other_cpu) $(get pm2_rps_close_other_cpu) \
  $(get hotrun_rps_keepalive_other_cpu) $(get pm2_rps_keepalive_other_cpu) $(get timed_reloads_other_cpu) \
  $(get hotrun_reload_other_cpu) $(get pm2_reload_other_cpu) | sort -n | tail -1)
result max_other_cpu "$max_other"
if ((max_other > 20)); then
  echo
  echo "WARNING: other work on this machine used up to ${max_other}% of a core while measuring (details below):"
  echo "these figures are disturbed; run again on an idle machine."
fi
echo
echo "details:"
for sys in hotrun pm2; do
  echo "  $sys: requests/s per round: new connection $(get ${sys}_rps_close_rounds); keep-alive $(get ${sys}_rps_keepalive_rounds)"
  echo "  $sys: latency p50/p99 (ms): new connection $(ms "$(get ${sys}_rps_close_p50_us)")/$(ms "$(get ${sys}_rps_close_p99_us)")," \
    "keep-alive $(ms "$(get ${sys}_rps_keepalive_p50_us)")/$(ms "$(get ${sys}_rps_keepalive_p99_us)");" \
    "errors in throughput runs: $(get ${sys}_rps_close_errors) / $(get ${sys}_rps_keepalive_errors)"
  echo "  $sys: reloads under load: $(get ${sys}_reload_detail); $(get ${sys}_reload_load_s) s for $RELOADS reloads;" \
    "reload commands failed: $(get ${sys}_reload_cmd_failures)"
  echo "  $sys: timed reloads (ms): $(get ${sys}_reload_samples_ms), failed: $(get ${sys}_timed_reload_failures);" \
    "reloads counted at the end: $(get ${sys}_reload_count) (expected $((TIMED_RELOADS + RELOADS)))"
done
echo "  other work's CPU while measuring (% of one core): throughput rounds, hotrun: new connection" \
  "$(get hotrun_rps_close_other_cpu); keep-alive $(get hotrun_rps_keepalive_other_cpu); PM2: new connection" \
  "$(get pm2_rps_close_other_cpu); keep-alive $(get pm2_rps_keepalive_other_cpu); timed reloads" \
  "$(get timed_reloads_other_cpu); reloads under load $(get hotrun_reload_other_cpu) / $(get pm2_reload_other_cpu)"
echo "  the endpoint (--http): runner RSS $(get hotrun_http_rss_start_kb) KB at start, $(get hotrun_http_rss_kb) KB after 40 reloads" \
  "(target < 12 MB); $RELOADS reloads under load without a scrape: $(get http_quiet_reload_total) requests," \
  "$(get http_quiet_reload_failed) failed, $(get http_quiet_reload_load_s) s; with a scrape of /metrics every 100 ms:" \
  "$(get http_scraped_reload_total) requests, $(get http_scraped_reload_failed) failed, $(get http_scraped_reload_load_s) s;" \
  "scrapes $(get http_scrapes_ok) ok, $(get http_scrapes_failed) failed"
echo "  probes (readiness + liveness, GET / every 1 s, $INSTANCES instances): runner RSS $(get hotrun_probed_rss_start_kb) KB at start," \
  "$(get hotrun_probed_rss_kb) KB after $RELOADS reloads (target < 10 MB); runner CPU over 10 s idle: $(get hotrun_probed_idle_cpu_ms) ms" \
  "(without probes: $(get hotrun_idle_cpu_ms) ms); $RELOADS reloads under load: $(get probed_reload_total) requests," \
  "$(get probed_reload_failed) failed, $(get probed_reload_load_s) s"
echo "  total bench time: $(get wall_s) s; raw figures in bench/out/compare/results.env, markdown table in bench/out/compare/results.md"

if [ "${BALANCE:-1}" != 0 ]; then
  cleanup
  echo
  HOTRUN=$HOTRUN PM2_VERSION=$PM2_VERSION bash "$BENCH/balance.sh"
fi
