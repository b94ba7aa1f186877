// The benchmark app, run unchanged by hotrun and by PM2: a tiny HTTP server on $PORT that
// says it is ready once it listens (wait_ready) and closes gracefully on SIGINT.
// It logs nothing per request, so the runners' log handling is not what is measured.
'use strict';
const http = require('http');

const port = Number(process.env.PORT || 18080);
const body = `ok ${process.env.NODE_APP_INSTANCE || '-'}\n`;

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});

server.listen(port, () => {
  console.log(`listening on ${port} (pid ${process.pid})`);
  if (process.send) process.send('ready');
});

process.on('SIGINT', () => {
  // Stop accepting, let requests in flight finish (Node 19+ closes idle keep-alive
  // connections here), then exit. The runner's kill_timeout is the backstop.
  server.close(() => process.exit(0));
});
