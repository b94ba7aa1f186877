#!/usr/bin/env bash
# File-watching triggers: hotrun vs PM2 (watch: true) vs nodemon, on the same small app
# (bench/watch/app.js, 1 instance) and the same tree (8 kept folders + 20,000 folders under
# node_modules), one runner after the other. Prints one table with the three side by side:
#
#   reaction        file write -> the runner's "reload/restart now" line, debounce subtracted
#                   (watch_delay = nodemon --delay = WATCH_DELAY, 100 ms); median and p90
#                   over WRITES writes, each its own reload
#   new process     file write -> start of the replacing app process, debounce subtracted
#   setup           command -> watching (hotrun: its `watching for changes (N folders)`
#                   line; PM2/nodemon: chokidar's 'ready' in their process), with PM2's
#                   defaults and with `ignore_watch: ['logs']` (PM2 then walks node_modules)
#   idle CPU        utime+stime of the runner's process over IDLE_SECONDS, in clock ticks
#
# bench/watch/driver.js has the details of each measurement. About 2.5 minutes on 2 cores.
#
#   bash bench/watch.sh
#
# Needs node and npm. Builds hotrun (`cargo build --release`) unless HOTRUN names a binary;
# installs pm2@7 into bench/pm2/ and nodemon into bench/nodemon/ from the npm registry when
# missing. PM2 runs with PM2_HOME=bench/out/watch/pm2home, never ~/.pm2. Everything started
# is stopped on exit (trap), also on Ctrl-C or an error.
#
# Knobs (environment): HOTRUN, WRITES (20), WATCH_DELAY (100 ms), IDLE_SECONDS (10),
# SETUP_RUNS (3), IGNORE_RUNS (1: runs of the ignore_watch setup), SPACING_MS (800 ms of calm before each write), NODE_MODULES_DIRS (20000),
# RUNNERS (hotrun,pm2,nodemon).
# Output: the table on stdout; details in bench/out/watch/ (results.json, hotrun.log,
# pm2-daemon.log, nodemon.log: every line with its arrival time; chokidar-ready.jsonl).

set -uo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
OUT=$BENCH/out/watch
TREE=$OUT/tree
PM2_BIN=$BENCH/pm2/node_modules/.bin/pm2
NODEMON_BIN=$BENCH/nodemon/node_modules/.bin/nodemon
export PM2_HOME=$OUT/pm2home

log() { printf '[watch %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
cmd_has() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q -- "$2"; }

# ---------------------------------------------------------------- clean-up (always) ----
DRIVER=""
# The pids of what the driver starts, outside bench/out (bench/compare.sh removes bench/out
# when it starts).
PIDS=$(mktemp /tmp/hotrun-watch-bench-pids.XXXXXX)
cleanup() {
  trap - EXIT INT TERM
  if alive "$DRIVER"; then
    kill -TERM "$DRIVER" 2>/dev/null
    for _ in $(seq 100); do alive "$DRIVER" || break; sleep 0.1; done
    alive "$DRIVER" && kill -KILL "$DRIVER" 2>/dev/null
  fi
  # What the driver started and may have left if it died: only processes still running
  # the expected program are touched.
  if [ -f "$PIDS" ]; then
    while read -r kind pid; do
      case $kind in
      hotrun)
        if alive "$pid" && cmd_has "$pid" hotrun; then
          kill -TERM "$pid" 2>/dev/null
          for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
          alive "$pid" && kill -KILL "$pid" 2>/dev/null
        fi ;;
      nodemon-group)
        if alive "${pid#-}" && cmd_has "${pid#-}" nodemon; then
          kill -TERM -- "$pid" 2>/dev/null; sleep 1; kill -KILL -- "$pid" 2>/dev/null
        fi ;;
      pm2-god)
        if alive "$pid" && cmd_has "$pid" "$PM2_HOME"; then
          log "stopping PM2 (PM2_HOME=$PM2_HOME)"
          if [ -f "$PM2_HOME/pm2.pid" ]; then timeout 30 "$PM2_BIN" kill >/dev/null 2>&1; else kill -TERM "$pid"; fi
          for _ in $(seq 80); do alive "$pid" || break; sleep 0.1; done
          alive "$pid" && kill -KILL "$pid" 2>/dev/null
        fi ;;
      esac
    done <"$PIDS"
    rm -f "$PIDS"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------- prerequisites ----
command -v node >/dev/null || die "node is needed"
command -v npm >/dev/null || die "npm is needed to install PM2 and nodemon"

if [ -z "${HOTRUN:-}" ]; then
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
  HOTRUN=$ROOT/target/release/hotrun
fi
[ -x "$HOTRUN" ] || die "no hotrun binary at $HOTRUN"

pm2v=$(node -p "require('$BENCH/pm2/node_modules/pm2/package.json').version" 2>/dev/null || true)
if [ "${pm2v%%.*}" != 7 ]; then
  log "installing pm2@7 into bench/pm2/"
  npm install --prefix "$BENCH/pm2" --no-audit --no-fund --loglevel=error pm2@7 >/dev/null || die "npm install pm2@7 failed"
  pm2v=$(node -p "require('$BENCH/pm2/node_modules/pm2/package.json').version")
fi
if [ ! -x "$NODEMON_BIN" ]; then
  log "installing nodemon into bench/nodemon/"
  npm install --prefix "$BENCH/nodemon" --no-audit --no-fund --loglevel=error nodemon >/dev/null || die "npm install nodemon failed"
fi
nodemonv=$(node -p "require('$BENCH/nodemon/node_modules/nodemon/package.json').version")

mkdir -p "$OUT"
# A PM2 daemon left by an interrupted earlier run (same private PM2_HOME) goes first.
god=$(cat "$PM2_HOME/pm2.pid" 2>/dev/null)
if alive "$god" && cmd_has "$god" "$PM2_HOME"; then timeout 30 "$PM2_BIN" kill >/dev/null 2>&1; fi

LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
node "$BENCH/watch/make-tree.js" "$TREE" "${NODE_MODULES_DIRS:-20000}" >&2 || die "cannot make the tree"

log "hotrun $("$HOTRUN" --version 2>/dev/null | head -1), pm2 $pm2v, nodemon $nodemonv, node $(node --version), $(nproc) CPUs"
HOTRUN=$HOTRUN PM2_BIN=$PM2_BIN NODEMON_BIN=$NODEMON_BIN OUT=$OUT TREE=$TREE PIDS=$PIDS \
  CLK_TCK=$(getconf CLK_TCK) timeout 600 node "$BENCH/watch/driver.js" &
DRIVER=$!
wait "$DRIVER"
rc=$?
DRIVER=""
[ $rc = 0 ] || die "the measurements failed (exit $rc); see bench/out/watch/"
echo "(hotrun $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)$(cd "$ROOT" && [ -n "$(git status --porcelain -- src 2>/dev/null)" ] && echo '+local changes'), PM2 $pm2v, nodemon $nodemonv, node $(node --version), $(nproc) CPUs, load average $LOAD_BEFORE before / $(cut -d' ' -f1 /proc/loadavg) after, $(date -u +%Y-%m-%dT%H:%MZ))"
