// The app of bench/surge.sh, in the seed's style: an HTTP server on $PORT that says which
// instance answered and, READY_DELAY ms after it listens (300 by default, to make the
// ready gate visible), tells its runner it is ready (process.send('ready'), wait_ready).
// Closes gracefully on SIGINT: stops accepting, finishes what is in flight, exits.
'use strict';
const http = require('http');

const port = Number(process.env.PORT || 18310);
const delay = Number(process.env.READY_DELAY || 300);
const body = `ok ${process.env.NODE_APP_INSTANCE || '-'} ${process.pid}\n`;

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});

server.listen(port, () => {
  setTimeout(() => {
    if (process.send) process.send('ready');
  }, delay);
});

process.on('SIGINT', () => {
  server.close(() => process.exit(0));
});
