// Helpers for bench/compare.sh: JSON checks on `hotrun status --json` and `pm2 jlist`,
// medians, and the final table. No dependencies beyond Node itself.
//
//   node bench/lib.js hotrun-ready N   < status.json   exit 0 when N instances are online
//   node bench/lib.js pm2-ready NAME N < jlist.json    exit 0 when N instances are online
//   node bench/lib.js hotrun-pid       < status.json   the runner's pid
//   node bench/lib.js hotrun-pids      < status.json   the instance pids, one a line
//   node bench/lib.js hotrun-reloads   < status.json   the app's reload count
//   node bench/lib.js pm2-pids NAME    < jlist.json    the instance pids, one a line
//   node bench/lib.js pm2-restarts NAME < jlist.json   restart_time of every instance, comma-separated
//   node bench/lib.js median X...                      the median
//   node bench/lib.js report RESULTS_FILE MARKDOWN_OUT print the table; write it as markdown
'use strict';
const fs = require('fs');

function stdinJson() {
  const text = fs.readFileSync(0, 'utf8');
  try {
    return JSON.parse(text);
  } catch (_) {
    // pm2 may print a banner line before the JSON: take from the first bracket on.
    const i = text.search(/^[\[{]/m);
    if (i < 0) throw new Error('no JSON on stdin');
    return JSON.parse(text.slice(i));
  }
}

function median(xs) {
  const s = xs.map(Number).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function pm2Apps(list, name) {
  return list.filter((p) => p.name === name && typeof p.pm_id === 'number');
}

const [cmd, ...args] = process.argv.slice(2);
try {
  switch (cmd) {
    case 'hotrun-ready': {
      const n = Number(args[0]);
      const st = stdinJson();
      const app = st.apps && st.apps[0];
      const ok = app && !app.reloading && app.instances.length === n &&
        app.instances.every((i) => i.state === 'online' && i.pid);
      process.exit(ok ? 0 : 1);
      break;
    }
    case 'hotrun-pid': {
      console.log(stdinJson().pid);
      break;
    }
    case 'hotrun-pids': {
      const st = stdinJson();
      for (const i of st.apps[0].instances) if (i.pid) console.log(i.pid);
      break;
    }
    case 'hotrun-reloads': {
      console.log(stdinJson().apps[0].reloads);
      break;
    }
    case 'pm2-ready': {
      const [name, n] = [args[0], Number(args[1])];
      const procs = pm2Apps(stdinJson(), name);
      const ok = procs.length === n && procs.every((p) => p.pm2_env.status === 'online' && p.pid > 0);
      process.exit(ok ? 0 : 1);
      break;
    }
    case 'pm2-pids': {
      for (const p of pm2Apps(stdinJson(), args[0])) console.log(p.pid);
      break;
    }
    case 'pm2-restarts': {
      console.log(pm2Apps(stdinJson(), args[0]).map((p) => p.pm2_env.restart_time).join(','));
      break;
    }
    case 'median': {
      console.log(median(args));
      break;
    }
    case 'report': {
      report(args[0], args[1]);
      break;
    }
    default:
      console.error(`lib.js: unknown command ${cmd}`);
      process.exit(2);
  }
} catch (e) {
  console.error(`lib.js ${cmd}: ${e.message}`);
  process.exit(1);
}

// RESULTS_FILE holds KEY=VALUE lines written by compare.sh.
function report(file, mdOut) {
  const r = {};
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = line.match(/^([A-Za-z0-9_]+)=(.*)$/);
    if (m) r[m[1]] = m[2];
  }
  const num = (k) => (r[k] === undefined || r[k] === '' ? NaN : Number(r[k]));
  const fmtInt = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a');
  const fmtMB = (kb) => (Number.isFinite(kb) ? (kb / 1024).toFixed(1) + ' MB' : 'n/a');
  const fmtRatio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? (a / b).toFixed(2) + 'x' : 'n/a');
  const verdict = (ok) => (ok === null ? '' : ok ? 'met' : 'MISSED');

  const rows = [];
  // 1. failed requests during reloads
  {
    const hf = num('hotrun_reload_failed'), pf = num('pm2_reload_failed');
    const ht = num('hotrun_reload_total'), pt = num('pm2_reload_total');
    let ratio = fmtRatio(hf, pf);
    if (hf === 0 && pf === 0) ratio = 'n/a (both 0)';
    else if (pf === 0) ratio = 'n/a (PM2 0)';
    rows.push([
      `failed requests during ${r.reloads} reloads under load (new connection each)`,
      `${fmtInt(hf)} of ${fmtInt(ht)}`,
      `${fmtInt(pf)} of ${fmtInt(pt)}`,
      ratio,
      'hotrun: 0',
      verdict(Number.isFinite(hf) ? hf === 0 : false),
    ]);
  }
  {
    const h = num('hotrun_reload_total') / num('hotrun_reload_wrk_s'), p = num('pm2_reload_total') / num('pm2_reload_wrk_s');
    rows.push(['requests/s served while reloading (same run, for reference)', fmtInt(h), fmtInt(p), fmtRatio(h, p), '', '']);
  }
  // 2, 3. throughput
  for (const [key, label, target] of [
    // The bars of the balanced-sockets work (no regression): >= 1.6x and <= 0.5x.
    ['close', 'requests/s, new connection per request', 1.6],
    ['keepalive', 'requests/s, keep-alive', 0.95],
  ]) {
    const h = num(`hotrun_rps_${key}`), p = num(`pm2_rps_${key}`);
    rows.push([
      label,
      fmtInt(h),
      fmtInt(p),
      fmtRatio(h, p),
      `>= ${target.toFixed(2)}x PM2`,
      verdict(Number.isFinite(h / p) ? h / p >= target : false),
    ]);
  }
  // 4. reload wall time
  {
    const h = num('hotrun_reload_ms'), p = num('pm2_reload_ms');
    rows.push([
      `wall time of one rolling reload of 3 instances (median of ${r.timed_reloads})`,
      `${fmtInt(h)} ms`,
      `${fmtInt(p)} ms`,
      fmtRatio(h, p),
      '<= 0.50x PM2',
      verdict(Number.isFinite(h / p) ? h / p <= 0.5 : false),
    ]);
  }
  // 5. runner RSS
  {
    const h = num('hotrun_runner_rss_kb'), p = num('pm2_god_rss_kb');
    rows.push([
      'runner RSS at the end (hotrun runner / PM2 God daemon)',
      fmtMB(h),
      fmtMB(p),
      fmtRatio(h, p),
      'hotrun < 10 MB',
      verdict(Number.isFinite(h) ? h < 10 * 1024 : false),
    ]);
    const g = num('hotrun_guard_rss_kb');
    rows.push([
      'hotrun guard process RSS (`hotrun __guard`; PM2 has none)',
      fmtMB(g),
      '-',
      '',
      '',
      '',
    ]);
    const hs = num('hotrun_runner_rss_start_kb'), ps = num('pm2_god_rss_start_kb');
    rows.push(['runner RSS just after start (for reference)', fmtMB(hs), fmtMB(ps), fmtRatio(hs, ps), '', '']);
    const his = num('hotrun_instances_rss_start_kb'), pis = num('pm2_instances_rss_start_kb');
    rows.push(['the 3 app instances RSS, summed, just after start (for reference)', fmtMB(his), fmtMB(pis), fmtRatio(his, pis), '', '']);
    const hi = num('hotrun_instances_rss_kb'), pi = num('pm2_instances_rss_kb');
    rows.push(['the 3 app instances RSS, summed, at the end (for reference)', fmtMB(hi), fmtMB(pi), fmtRatio(hi, pi), '', '']);
  }

  const header = ['metric', 'hotrun', `PM2 ${r.pm2_version || ''}`.trim(), 'hotrun/PM2', 'target', ''];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => String(row[i]).length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows) console.log(line(row));

  const md = [];
  md.push('| ' + header.map((h, i) => (i === 5 ? 'result' : h)).join(' | ') + ' |');
  md.push('|' + header.map((_, i) => (i === 0 ? '---' : '---:')).join('|') + '|');
  for (const row of rows) md.push('| ' + row.map((c) => (c === '' ? '' : String(c))).join(' | ') + ' |');
  if (mdOut) fs.writeFileSync(mdOut, md.join('\n') + '\n');
}
