// The small app of bench/watch.sh, run unchanged by hotrun, PM2 and nodemon: an HTTP
// server on $PORT that appends one line to $START_LOG when it starts, with the moment its
// process started (performance.timeOrigin, ms since the epoch), so the benchmark can tell
// when a restart/reload put a new process in place. Closes gracefully on SIGINT/SIGTERM.
'use strict';
const fs = require('fs');
const http = require('http');

const started = performance.timeOrigin;
const port = Number(process.env.PORT || 18300);
const server = http.createServer((req, res) => res.end('ok\n'));

server.listen(port, () => {
  if (process.env.START_LOG) {
    const listening = performance.timeOrigin + performance.now();
    fs.appendFileSync(process.env.START_LOG, `${process.pid} ${started.toFixed(2)} ${listening.toFixed(2)}\n`);
  }
  console.log(`listening on ${port} (pid ${process.pid})`);
  if (process.send) process.send('ready');
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 500).unref();
  });
}
