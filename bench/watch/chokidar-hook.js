// Loaded with NODE_OPTIONS=--require into PM2's daemon and into nodemon by bench/watch.sh
// (never into hotrun, which is not Node). It changes nothing in what they do: it wraps
// chokidar.watch() so that, when the watcher emits 'ready' (its initial walk is done and
// every watch is placed), one JSON line is appended to $CHOKIDAR_READY_LOG:
//   {"pid", "t_watch": when watch() was called, "t_ready": when 'ready' came (ms since
//    the epoch), "dirs": folders chokidar watches}
// Processes that never require chokidar (PM2's CLI, the app) are not affected.
'use strict';
const Module = require('module');
const fs = require('fs');

const out = process.env.CHOKIDAR_READY_LOG;
const now = () => performance.timeOrigin + performance.now();
const load = Module._load;

Module._load = function (request, parent, isMain) {
  const m = load.apply(this, arguments);
  if (out && request === 'chokidar' && m && typeof m.watch === 'function' && !m.__benchHooked) {
    const watch = m.watch;
    m.watch = function () {
      const tWatch = now();
      const w = watch.apply(this, arguments);
      w.once('ready', () => {
        const tReady = now();
        let dirs = -1;
        try { dirs = Object.keys(w.getWatched()).length; } catch (_) {}
        fs.appendFileSync(out, JSON.stringify({ pid: process.pid, t_watch: tWatch, t_ready: tReady, dirs }) + '\n');
      });
      return w;
    };
    m.__benchHooked = true;
  }
  return m;
};
