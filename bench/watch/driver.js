// The measurements of bench/watch.sh (run it, not this file: it prepares the binaries, the
// tree and the clean-up). For each runner (hotrun, PM2 with watch: true, nodemon), one after
// the other, on the same app (app.js, 1 instance) and the same tree:
//
//   setup   from the command (spawn of `hotrun`, of `pm2 start` with the daemon already
//           up, of `nodemon`) to "watching": hotrun's line `watching for changes (N
//           folders)`; chokidar's 'ready' event in PM2's daemon / in nodemon (observed
//           through chokidar-hook.js). Also chokidar's walk alone (watch() -> ready), and
//           the inotify watches the runner holds (/proc/PID/fdinfo).
//   idle    utime+stime (clock ticks) of the runner's own process (hotrun's runner, PM2's
//           God daemon, nodemon) over IDLE_SECONDS of doing nothing, app running.
//   latency WRITES writes of src/data.js, each its own reload (SPACING_MS of calm before
//           each): (a) "reaction" = when the runner's line arrives (hotrun `web: 1 file
//           changed (...) -> reload` on stderr; PM2 `Change detected on path ...` in
//           PM2_HOME/pm2.log; nodemon `restarting due to changes...` on stdout), timestamped
//           on arrival by this process, minus the write time, minus the debounce delay for
//           the runners that print the line after it (hotrun, nodemon; PM2 prints its line
//           when it notices the change, then waits watch_delay); (b) "new process" = the
//           start time of the replacing app process (its performance.timeOrigin, written by
//           app.js) minus the write time minus the delay.
//
// Prints a table on stdout and writes OUT/results.json. Progress goes to stderr.
'use strict';
const { spawn, spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const E = process.env;
const HOTRUN = E.HOTRUN;
const PM2 = E.PM2_BIN;
const NODEMON = E.NODEMON_BIN;
const OUT = E.OUT;
const TREE = E.TREE;
const APP = path.join(__dirname, 'app.js');
const HOOK = path.join(__dirname, 'chokidar-hook.js');
const WRITES = Number(E.WRITES || 20);
const DELAY = Number(E.WATCH_DELAY || 100);
const IDLE_S = Number(E.IDLE_SECONDS || 10);
const SETUP_RUNS = Number(E.SETUP_RUNS || 3);
const IGNORE_RUNS = Number(E.IGNORE_RUNS || 1);
const SPACING = Number(E.SPACING_MS || 800);
const HZ = Number(E.CLK_TCK || 100);
const RUNNERS = (E.RUNNERS || 'hotrun,pm2,nodemon').split(',');
const PIDS = E.PIDS || path.join(OUT, 'pids'); // read by watch.sh's clean-up if this process dies
const PM2_HOME = path.join(OUT, 'pm2home');
const READY_LOG = path.join(OUT, 'chokidar-ready.jsonl');
const PORTS = { hotrun: 18301, pm2: 18302, nodemon: 18303 };

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (m) => process.stderr.write(`[watch ${new Date().toISOString().slice(11, 23)}] ${m}\n`);
const notePid = (pid, kind) => fs.appendFileSync(PIDS, `${kind} ${pid}\n`);

// ------------------------------------------------------------------ timestamped lines ----
class Lines {
  constructor(echoFile) {
    this.items = [];
    this.waiters = new Set();
    this.echo = echoFile ? fs.createWriteStream(echoFile, { flags: 'a' }) : null;
  }
  feed(stream) {
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => {
      const t = now();
      buf += chunk;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        this.push(t, buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
  }
  push(t, line) {
    this.items.push({ t, line });
    if (this.echo) this.echo.write(`${t.toFixed(1)} ${line}\n`);
    for (const w of [...this.waiters]) w();
  }
  count(re, after, before = Infinity) {
    return this.items.filter((x) => x.t >= after && x.t <= before && re.test(x.line)).length;
  }
  // The first line matching re that arrived at or after `after`; null after timeoutMs.
  wait(re, after, timeoutMs) {
    return new Promise((resolve) => {
      const check = () => {
        const hit = this.items.find((x) => x.t >= after && re.test(x.line));
        if (hit) {
          done();
          resolve(hit);
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        resolve(null);
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }
}

// Follows a growing file (PM2's pm2.log): lines are timestamped when read; reads happen on
// every inotify event of the folder (fs.watch) and every 50 ms at the latest.
function follow(file, lines) {
  let pos = 0;
  try {
    pos = fs.statSync(file).size;
  } catch (_) {}
  let partial = '';
  const read = () => {
    let fd;
    try {
      fd = fs.openSync(file, 'r');
    } catch (_) {
      return;
    }
    try {
      const size = fs.fstatSync(fd).size;
      if (size < pos) pos = 0;
      if (size > pos) {
        const b = Buffer.alloc(size - pos);
        fs.readSync(fd, b, 0, b.length, pos);
        pos = size;
        const t = now();
        partial += b.toString('utf8');
        let i;
        while ((i = partial.indexOf('\n')) >= 0) {
          lines.push(t, partial.slice(0, i));
          partial = partial.slice(i + 1);
        }
      }
    } finally {
      fs.closeSync(fd);
    }
  };
  const w = fs.watch(path.dirname(file), (ev, name) => {
    if (name === path.basename(file)) read();
  });
  const timer = setInterval(read, 50);
  return () => {
    w.close();
    clearInterval(timer);
  };
}

// ----------------------------------------------------------------------- /proc helpers ----
function ticks(pid) {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime (fields 14 and 15)
}
// VmRSS of a process, in kB (null once it is gone).
function rssKb(pid) {
  try {
    const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
    return m ? Number(m[1]) : null;
  } catch (_) {
    return null;
  }
}
function inotifyWatches(pid) {
  let n = 0;
  let fds = [];
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`);
  } catch (_) {
    return -1;
  }
  for (const fd of fds) {
    try {
      if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`) !== 'anon_inode:inotify') continue;
      const info = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
      n += info.split('\n').filter((l) => l.startsWith('inotify wd:')).length;
    } catch (_) {}
  }
  return n;
}
const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (_) {
    return false;
  }
};
async function waitGone(pid, ms) {
  const end = Date.now() + ms;
  while (alive(pid) && Date.now() < end) await sleep(20);
  return !alive(pid);
}

function readJsonLines(file) {
  try {
    return fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
  } catch (_) {
    return [];
  }
}
async function waitReady(after, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const hit = readJsonLines(READY_LOG).find((r) => r.t_watch >= after);
    if (hit) return hit;
    await sleep(10);
  }
  return null;
}
function starts(file) {
  try {
    return fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [pid, started, listening] = l.split(' ').map(Number);
        return { pid, started, listening };
      });
  } catch (_) {
    return [];
  }
}
async function waitStart(file, after, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const hit = starts(file).find((s) => s.started >= after);
    if (hit) return hit;
    await sleep(5);
  }
  return null;
}

// --------------------------------------------------------------------------- runners ----
function appEntry(name, port, startLog, extra) {
  return Object.assign(
    {
      name,
      script: APP,
      cwd: TREE,
      instances: 1,
      exec_mode: 'fork',
      watch: true,
      watch_delay: DELAY,
      kill_timeout: 3000,
      env: { PORT: String(port), START_LOG: startLog },
    },
    extra || {},
  );
}

function hotrunRunner() {
  const startLog = path.join(OUT, 'starts-hotrun.log');
  const cfg = (variant) => {
    const f = path.join(OUT, `hotrun${variant ? '-' + variant : ''}.config.json`);
    const app = appEntry('web', PORTS.hotrun, startLog, variant === 'ignore' ? { ignore_watch: ['logs'] } : {});
    delete app.env.PORT;
    app.port = PORTS.hotrun;
    fs.writeFileSync(f, JSON.stringify({ apps: [app] }, null, 2));
    return f;
  };
  let child = null;
  let lines = null;
  return {
    name: 'hotrun',
    startLog,
    reactRe: /web: \d+ files? changed \(.*\) -> reload/,
    lineAfterDelay: true,
    lines: () => lines,
    pid: () => child.pid,
    async start(variant) {
      lines = new Lines(path.join(OUT, 'hotrun.log'));
      const t0 = now();
      child = spawn(HOTRUN, ['--config', cfg(variant)], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: Object.assign({}, process.env, { NO_COLOR: '1' }),
      });
      notePid(child.pid, 'hotrun');
      lines.feed(child.stdout);
      lines.feed(child.stderr);
      const hit = await lines.wait(/watching for changes \((\d+) folders?\)/, 0, 30000);
      if (!hit) throw new Error('hotrun never said "watching for changes" (see out/watch/hotrun.log)');
      return {
        setup_ms: hit.t - t0,
        walk_ms: null,
        dirs: Number(hit.line.match(/\((\d+) folders?\)/)[1]),
        watches: inotifyWatches(child.pid),
      };
    },
    async stop() {
      if (!child || !alive(child.pid)) return;
      child.kill('SIGTERM');
      if (!(await waitGone(child.pid, 10000))) child.kill('SIGKILL');
      await waitGone(child.pid, 2000);
    },
  };
}

function pm2Runner() {
  const startLog = path.join(OUT, 'starts-pm2.log');
  const env = Object.assign({}, process.env, {
    PM2_HOME,
    NODE_OPTIONS: `--require ${HOOK}`,
    CHOKIDAR_READY_LOG: READY_LOG,
  });
  const cfg = (variant) => {
    const f = path.join(OUT, `pm2${variant ? '-' + variant : ''}.config.js`);
    const app = appEntry('web', PORTS.pm2, startLog, variant === 'ignore' ? { ignore_watch: ['logs'] } : {});
    app.env.NODE_OPTIONS = ''; // the hook is for the daemon, not the app
    fs.writeFileSync(f, `module.exports = ${JSON.stringify({ apps: [app] }, null, 2)};\n`);
    return f;
  };
  const pm2 = (args, timeout = 60000) =>
    spawnSync(PM2, args, { env, timeout, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const godPid = () => Number(fs.readFileSync(path.join(PM2_HOME, 'pm2.pid'), 'utf8').trim());
  const daemonUp = () => {
    try {
      return alive(godPid());
    } catch (_) {
      return false;
    }
  };
  let lines = null;
  let unfollow = null;
  let god = null; // remembered: PM2_HOME may vanish under us (bench/compare.sh removes bench/out)
  return {
    name: 'pm2',
    startLog,
    reactRe: /Change detected on path .* for app web - restarting/,
    lineAfterDelay: false,
    lines: () => lines,
    pid: godPid,
    async start(variant) {
      if (daemonUp()) pm2(['kill'], 30000);
      const ping = pm2(['ping']); // spawns the daemon: not part of the measured time
      if (ping.status !== 0) throw new Error(`pm2 ping failed: ${ping.stderr}`);
      god = godPid();
      notePid(god, 'pm2-god');
      lines = new Lines(path.join(OUT, 'pm2-daemon.log'));
      unfollow = follow(path.join(PM2_HOME, 'pm2.log'), lines);
      const t0 = now();
      const cli = spawn(PM2, ['start', cfg(variant)], { env, stdio: 'ignore' });
      const ready = await waitReady(t0, 90000);
      await new Promise((r) => (cli.exitCode !== null ? r() : cli.on('exit', r)));
      if (!ready) throw new Error('no chokidar ready from the PM2 daemon within 90 s');
      return {
        setup_ms: ready.t_ready - t0,
        walk_ms: ready.t_ready - ready.t_watch,
        dirs: ready.dirs,
        watches: inotifyWatches(godPid()),
      };
    },
    async stop() {
      if (unfollow) unfollow();
      unfollow = null;
      if (!god || !alive(god)) return;
      if (fs.existsSync(path.join(PM2_HOME, 'pm2.pid'))) pm2(['kill'], 30000);
      else process.kill(god, 'SIGTERM'); // PM2_HOME is gone: the daemon stops its apps on SIGTERM
      if (!(await waitGone(god, 8000))) process.kill(god, 'SIGKILL');
      god = null;
    },
  };
}

function nodemonRunner() {
  const startLog = path.join(OUT, 'starts-nodemon.log');
  let child = null;
  let lines = null;
  return {
    name: 'nodemon',
    startLog,
    reactRe: /restarting due to changes/,
    lineAfterDelay: true,
    lines: () => lines,
    pid: () => child.pid,
    async start() {
      lines = new Lines(path.join(OUT, 'nodemon.log'));
      const t0 = now();
      child = spawn(NODEMON, ['--delay', `${DELAY}ms`, APP], {
        cwd: TREE,
        detached: true, // own process group: the clean-up kills nodemon and the app at once
        stdio: ['ignore', 'pipe', 'pipe'],
        env: Object.assign({}, process.env, {
          PORT: String(PORTS.nodemon),
          START_LOG: startLog,
          NODE_OPTIONS: `--require ${HOOK}`,
          CHOKIDAR_READY_LOG: READY_LOG,
          FORCE_COLOR: '0',
        }),
      });
      notePid(-child.pid, 'nodemon-group');
      lines.feed(child.stdout);
      lines.feed(child.stderr);
      const ready = await waitReady(t0, 60000);
      if (!ready) throw new Error('no chokidar ready from nodemon within 60 s');
      return {
        setup_ms: ready.t_ready - t0,
        walk_ms: ready.t_ready - ready.t_watch,
        dirs: ready.dirs,
        watches: inotifyWatches(child.pid),
      };
    },
    async stop() {
      if (!child || !alive(child.pid)) return;
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch (_) {}
      if (!(await waitGone(child.pid, 5000))) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch (_) {}
      }
      await waitGone(child.pid, 2000);
    },
  };
}

// ------------------------------------------------------------------------ statistics ----
function pct(xs, p) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const median = (xs) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// ---------------------------------------------------------------------- measurements ----
async function measure(r) {
  const res = { runner: r.name };
  // Setup with ignore_watch set (PM2 then drops its defaults and walks node_modules).
  const ign = [];
  for (let i = 0; i < (r.name === 'nodemon' ? 0 : IGNORE_RUNS); i++) {
    const s = await r.start('ignore');
    log(`${r.name} (ignore_watch: ['logs']) setup ${i + 1}: ${s.setup_ms.toFixed(0)} ms, ${s.dirs} folders, ${s.watches} inotify watches`);
    ign.push(s);
    await r.stop();
  }
  if (ign.length) {
    res.ignore_setup_ms = median(ign.map((s) => s.setup_ms));
    res.ignore_walk_ms = ign[0].walk_ms === null ? null : median(ign.map((s) => s.walk_ms));
    res.ignore_watches = ign[ign.length - 1].watches;
    res.ignore_dirs = ign[ign.length - 1].dirs;
  }
  // Setup with the defaults; the last run stays up for the idle and latency measurements.
  const runs = [];
  for (let i = 0; i < SETUP_RUNS; i++) {
    fs.rmSync(r.startLog, { force: true });
    const s = await r.start();
    log(`${r.name} setup ${i + 1}: ${s.setup_ms.toFixed(1)} ms, ${s.dirs} folders, ${s.watches} inotify watches`);
    runs.push(s);
    if (i < SETUP_RUNS - 1) await r.stop();
  }
  res.setup_runs = runs.map((s) => s.setup_ms);
  res.setup_ms = median(res.setup_runs);
  res.walk_ms = runs[0].walk_ms === null ? null : median(runs.map((s) => s.walk_ms));
  res.dirs = runs[runs.length - 1].dirs;
  res.watches = runs[runs.length - 1].watches;

  const first = await waitStart(r.startLog, 0, 20000);
  if (!first) throw new Error(`${r.name}: the app never started`);
  // Idle: the app is up, nothing changes.
  await sleep(2000);
  const pid = r.pid();
  const t0 = ticks(pid);
  await sleep(IDLE_S * 1000);
  res.idle_ticks = ticks(pid) - t0;
  res.idle_pid = pid;
  res.rss_kb = rssKb(pid);
  log(`${r.name} idle ${IDLE_S} s: ${res.idle_ticks} ticks (pid ${pid})`);

  // Latency.
  const file = path.join(TREE, 'src', 'data.js');
  const lines = r.lines();
  const react = [];
  const newproc = [];
  let missed = 0;
  const tBegin = now();
  for (let i = 0; i < WRITES; i++) {
    await sleep(SPACING);
    const tw = now();
    fs.writeFileSync(file, `module.exports = ${i + 1}; // ${tw}\n`);
    const hit = await lines.wait(r.reactRe, tw, 5000);
    const st = await waitStart(r.startLog, tw, 10000);
    if (!hit || !st) {
      missed++;
      log(`${r.name} write ${i + 1}: ${hit ? '' : 'no reload line '}${st ? '' : 'no new process'} (within 5/10 s)`);
      continue;
    }
    react.push(hit.t - tw - (r.lineAfterDelay ? DELAY : 0));
    newproc.push(st.started - tw - DELAY);
  }
  await sleep(SPACING);
  res.reloads_seen = lines.count(r.reactRe, tBegin);
  res.starts_seen = starts(r.startLog).filter((s) => s.started >= tBegin).length;
  res.writes = WRITES;
  res.missed = missed;
  res.react = react;
  res.newproc = newproc;
  res.react_median = median(react);
  res.react_p90 = pct(react, 90);
  res.newproc_median = median(newproc);
  res.newproc_p90 = pct(newproc, 90);
  log(
    `${r.name} latency over ${react.length} writes: reaction median ${res.react_median.toFixed(1)} ms, p90 ${res.react_p90.toFixed(1)} ms; ` +
      `new process median ${res.newproc_median.toFixed(1)} ms, p90 ${res.newproc_p90.toFixed(1)} ms; ` +
      `${res.reloads_seen} reload lines, ${res.starts_seen} starts`,
  );
  await r.stop();
  return res;
}

function table(results) {
  const cols = results.map((r) => r.runner);
  const f = (v, d = 1) => (v === null || v === undefined || Number.isNaN(v) ? '-' : Number(v).toFixed(d));
  const rows = [
    ['reaction, median (ms)', (r) => f(r.react_median), '< 20'],
    ['reaction, p90 (ms)', (r) => f(r.react_p90), ''],
    ['new process started, median (ms)', (r) => f(r.newproc_median), ''],
    ['new process started, p90 (ms)', (r) => f(r.newproc_p90), ''],
    ['writes / reload lines / new processes', (r) => `${r.writes}/${r.reloads_seen}/${r.starts_seen}`, `${WRITES}/${WRITES}/${WRITES}`],
    [`setup: command -> watching (ms, median of ${SETUP_RUNS})`, (r) => f(r.setup_ms), '< 500, < PM2/10'],
    ['setup: chokidar walk only (ms)', (r) => f(r.walk_ms), ''],
    ['folders watched / inotify watches', (r) => `${r.dirs}/${r.watches}`, ''],
    [`setup with ignore_watch: ['logs'] (ms${IGNORE_RUNS > 1 ? ', median of ' + IGNORE_RUNS : ''})`, (r) => f(r.ignore_setup_ms), ''],
    ["  folders / inotify watches then", (r) => (r.ignore_dirs === undefined ? '-' : `${r.ignore_dirs}/${r.ignore_watches}`), ''],
    [`runner CPU idle ${IDLE_S} s (ticks of 1/${HZ} s)`, (r) => String(r.idle_ticks), '<= 1'],
    ['runner RSS, tree watched (MB)', (r) => (r.rss_kb == null ? '-' : (r.rss_kb / 1024).toFixed(1)), '< 10'],
  ];
  const w0 = Math.max(...rows.map((x) => x[0].length));
  const ws = cols.map((c, i) => Math.max(c.length, ...rows.map((x) => x[1](results[i]).length)));
  const line = (cells) => cells[0].padEnd(w0) + '  ' + cells.slice(1, -1).map((c, i) => c.padStart(ws[i])).join('  ') + '  ' + cells[cells.length - 1];
  const out = [line(['', ...cols, 'target (hotrun)'])];
  for (const [label, get, target] of rows) out.push(line([label, ...results.map(get), target]));
  return out.join('\n');
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  for (const f of ['hotrun.log', 'pm2-daemon.log', 'nodemon.log', READY_LOG]) fs.rmSync(path.resolve(OUT, f), { force: true });
  const make = { hotrun: hotrunRunner, pm2: pm2Runner, nodemon: nodemonRunner };
  const results = [];
  let current = null;
  const bail = async (code) => {
    if (current) await current.stop().catch(() => {});
    process.exit(code);
  };
  process.on('SIGINT', () => bail(130));
  process.on('SIGTERM', () => bail(143));
  try {
    for (const name of RUNNERS) {
      current = make[name]();
      log(`--- ${name}`);
      results.push(await measure(current));
      current = null;
    }
  } catch (e) {
    log(`ERROR: ${e.message}`);
    await bail(1);
  }
  fs.writeFileSync(
    path.join(OUT, 'results.json'),
    JSON.stringify({ date: new Date().toISOString(), delay_ms: DELAY, writes: WRITES, idle_s: IDLE_S, hz: HZ, results }, null, 2),
  );
  console.log(table(results));
}

main();
