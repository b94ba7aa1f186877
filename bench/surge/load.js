// Continuous HTTP load for bench/surge.sh: CONCURRENCY loops, each sending GET / on a new
// connection per request (agent: false, Connection: close) one after the other, for at
// most MAX_SECONDS. A request fails when the connection errors (refused, reset...), the
// status is not 200, the body is cut, or no answer comes within TIMEOUT_MS.
//   node load.js URL [CONCURRENCY=4] [MAX_SECONDS=300] [TIMEOUT_MS=3000]
// On SIGUSR2 it prints one line `mark <ms since the epoch> <ok> <failed>`; on SIGTERM or
// SIGINT (or at MAX_SECONDS) `done <ms> <ok> <failed> <errors as JSON>` and exits.
'use strict';
const http = require('http');

const url = new URL(process.argv[2]);
const conc = Number(process.argv[3] || 4);
const maxS = Number(process.argv[4] || 300);
const timeoutMs = Number(process.argv[5] || 3000);

let ok = 0;
let failed = 0;
const errors = {};
let running = true;
const fail = (why) => {
  failed++;
  errors[why] = (errors[why] || 0) + 1;
};

function one(done) {
  let finished = false;
  const end = (why) => {
    if (finished) return;
    finished = true;
    if (why) fail(why);
    else ok++;
    done();
  };
  const req = http.get(
    { host: url.hostname, port: url.port, path: '/', agent: false, headers: { connection: 'close' } },
    (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => end(res.statusCode !== 200 ? `status ${res.statusCode}` : body.startsWith('ok ') ? null : 'bad body'));
      res.on('error', (e) => end(e.code || e.message));
      res.on('aborted', () => end('aborted'));
    },
  );
  req.setTimeout(timeoutMs, () => {
    req.destroy(new Error('timeout'));
  });
  req.on('error', (e) => end(e.code || e.message));
}

function loop() {
  if (!running) return;
  one(() => setImmediate(loop));
}

const finish = () => {
  if (!running) return;
  running = false;
  process.stdout.write(`done ${Date.now()} ${ok} ${failed} ${JSON.stringify(errors)}\n`, () => process.exit(0));
};
process.on('SIGUSR2', () => process.stdout.write(`mark ${Date.now()} ${ok} ${failed}\n`));
process.on('SIGTERM', finish);
process.on('SIGINT', finish);
setTimeout(finish, maxS * 1000);
for (let i = 0; i < conc; i++) loop();
