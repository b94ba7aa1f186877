// hotrun's preload module, loaded into every Node process of an instance through
// NODE_OPTIONS=--require. It changes nothing for the app's code:
// - `server.listen(port)` uses the listening socket hotrun owns, so every instance of
//   the app accepts on one port: an inherited fd when hotrun bound the port before the
//   start (HOTRUN_LISTEN_FDS), else a socket handed over the IPC channel;
// - once the server listens, hotrun is told (readiness without wait_ready);
// - a process without an IPC channel (a grandchild under `npm start`) still gets a
//   `process.send` that delivers 'ready' to hotrun, through its control socket;
// - the shared sockets reach grandchildren: Node does not pass fds beyond stdio to the
//   processes it spawns, so child_process spawns made here pass them on, at the same
//   numbers, where the spawn leaves those numbers free.
'use strict';
(function hotrunPreload() {
  const net = require('net');
  if (net.Server.prototype.listen.__hotrun) return;

  const origListen = net.Server.prototype.listen;
  const token = process.env.HOTRUN_TOKEN;
  const control = process.env.HOTRUN_CONTROL;
  let inherited = [];
  try {
    inherited = JSON.parse(process.env.HOTRUN_LISTEN_FDS || '[]');
  } catch (_) {
    inherited = [];
  }
  const hasIpc = typeof process.send === 'function';

  function report(event, extra) {
    if (hasIpc && process.connected) {
      process.send(Object.assign({ hotrun: event }, extra));
      return;
    }
    if (!control || !token) return;
    const sock = net.connect(control);
    sock.on('error', () => {});
    sock.end(JSON.stringify(Object.assign({ cmd: 'instance', token, event }, extra)) + '\n');
    sock.unref();
  }

  if (!hasIpc && token) {
    process.send = function send(msg, ...rest) {
      if (msg === 'ready') report('ready', {});
      const cb = rest.find((a) => typeof a === 'function');
      if (cb) process.nextTick(cb, null);
      return true;
    };
  }

  // The same canonical host hotrun uses: null = every address.
  function canonHost(host) {
    if (host === undefined || host === null || host === '' || host === '::') return null;
    if (host === 'localhost') return '127.0.0.1';
    return String(host);
  }

  // listen(port[, host][, backlog][, cb]) or listen({port, host}[, cb]) with a fixed port.
  function wanted(args) {
    const a0 = args[0];
    let port;
    let host;
    if (typeof a0 === 'number' || (typeof a0 === 'string' && /^\d+$/.test(a0))) {
      port = Number(a0);
      if (typeof args[1] === 'string') host = args[1];
    } else if (
      a0 && typeof a0 === 'object' && a0.port !== undefined && a0.fd === undefined &&
      a0.path === undefined && a0.handle === undefined && a0._handle === undefined
    ) {
      port = Number(a0.port);
      host = a0.host;
    } else {
      return null;
    }
    if (!Number.isInteger(port) || port <= 0 || port > 65535) return null;
    const last = args[args.length - 1];
    return { port, host: canonHost(host), cb: typeof last === 'function' ? last : undefined };
  }

  let seq = 0;
  const pending = new Map();
  function onReply(msg, handle) {
    if (!msg || typeof msg !== 'object' || msg.hotrun !== 'listen-reply') return;
    const p = pending.get(msg.seq);
    if (!p) return;
    pending.delete(msg.seq);
    if (pending.size === 0) process.removeListener('message', onReply);
    if (handle) {
      origListen.call(p.server, handle, p.cb);
    } else {
      const err = new Error(msg.error || 'hotrun could not bind the port');
      err.code = msg.code || 'EADDRINUSE';
      p.server.emit('error', err);
    }
  }

  function listen(...args) {
    const want = wanted(args);
    if (!want) return origListen.apply(this, args);
    const server = this;
    const hit = inherited.find((e) => e.port === want.port && e.host === want.host);
    if (!hit && !(hasIpc && process.connected)) return origListen.apply(this, args);
    server.once('listening', () => report('listening', { port: want.port }));
    if (hit) return origListen.call(server, { fd: hit.fd }, want.cb);
    const id = ++seq;
    pending.set(id, { server, cb: want.cb });
    if (pending.size === 1) process.on('message', onReply);
    process.send({ hotrun: 'listen', seq: id, port: want.port, host: want.host });
    return server;
  }
  listen.__hotrun = true;
  net.Server.prototype.listen = listen;

  const passOn = inherited.map((e) => e.fd).filter((fd) => Number.isInteger(fd) && fd > 2);
  if (passOn.length > 0) {
    const { ChildProcess } = require('child_process');
    const origSpawn = ChildProcess.prototype.spawn;
    ChildProcess.prototype.spawn = function spawn(options) {
      if (!options || typeof options !== 'object') return origSpawn.call(this, options);
      let stdio = options.stdio === undefined || options.stdio === null ? 'pipe' : options.stdio;
      if (typeof stdio === 'string') stdio = [stdio, stdio, stdio];
      else if (Array.isArray(stdio)) stdio = stdio.slice();
      else return origSpawn.call(this, options);
      for (const fd of passOn) {
        if (stdio.length < fd) continue; // a gap would need filling; leave this spawn as it is
        if (stdio[fd] === undefined || stdio[fd] === null) stdio[fd] = fd;
      }
      return origSpawn.call(this, Object.assign({}, options, { stdio }));
    };
  }
})();
