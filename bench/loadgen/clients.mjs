// Three ways to be a room member, one interface:
//   await XClient.open(url, token, hooks, opts)  -> resolves once the server said "welcome"
//   c.emit(type, content)        fire and forget
//   c.request(type, content)     -> Promise of the server's ack ({ok: ...})
//   c.close()
// hooks.onMark(seq, tMicros) is called for every room_message whose text carries a bench mark
// (see mark() below); hooks.onEnvelope(env) for every other envelope the server sends.
//
// MinimalClient speaks Engine.IO v4 / Socket.IO v4 itself over a bare WebSocket (wire.mjs): it is
// cheap enough that one Node process can hold thousands of connections and out-run a fast
// server. PollingClient is the same client on Engine.IO's HTTP long-polling transport (never
// upgrading). StockClient is the real socket.io-client, only for cross-checks. PlainWsClient
// talks to the gateway's plain-WebSocket endpoint /ws.
import http from 'node:http';
import { io as ioStock } from 'socket.io-client';
import { RawWebSocket } from './wire.mjs';

const MARK = Buffer.from('@@');

// The bench mark: "@@<seq>:<send time, µs>@@". Receivers find it by scanning the raw frame bytes,
// so the hot path never decodes or parses JSON (whatever spacing the server's encoder uses).
export const mark = (seq, tMicros) => `@@${seq}:${tMicros}@@`;

// Returns true and reports the mark if `buf` carries one (a mangled mark reports seq -1).
function scanMark(buf, hooks) {
  let i = buf.indexOf(MARK);
  if (i < 0) return false;
  const end = buf.length;
  let seq = 0;
  for (i += 2; i < end && buf[i] >= 48 && buf[i] <= 57; i++) seq = seq * 10 + (buf[i] - 48);
  if (buf[i] !== 58 /* : */) seq = -1;
  let t = 0;
  for (i++; i < end && buf[i] >= 48 && buf[i] <= 57; i++) t = t * 10 + (buf[i] - 48);
  hooks.onMark(seq, t);
  return true;
}

function wsUrl(base, path) {
  const u = new URL(path, base);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.toString();
}

// Settles a pending request when the matching ack arrives; rejects all on close.
class Acks {
  constructor() { this.next = 1; this.pending = new Map(); }
  add() {
    const id = this.next++;
    return [id, new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }))];
  }
  settle(id, value) {
    const p = this.pending.get(id);
    if (p) { this.pending.delete(id); p.resolve(value); }
  }
  failAll(err) {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

export class MinimalClient {
  static open(baseUrl, token, hooks, { deflate = true, timeoutMs = 15000, localAddress } = {}) {
    const c = new MinimalClient(hooks);
    c.ws = new RawWebSocket((buf) => c.onFrame(buf, token), () => c.onClose());
    const url = wsUrl(baseUrl, '/socket.io/?EIO=4&transport=websocket');
    return c.connectVia(() => c.ws.open(url, { deflate, localAddress }), timeoutMs);
  }

  // Resolves once both the CONNECT answer and "welcome" arrived, after `start` opened the transport.
  connectVia(start, timeoutMs) {
    const c = this;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { c.close(); reject(new Error('connect timeout')); }, timeoutMs);
      // Socket.IO's CONNECT ack and our "welcome" event may come in either order.
      let acked = false;
      let welcomed = false;
      c.onConnectStep = (step, err) => {
        if (err) { clearTimeout(timer); c.close(); reject(err); return; }
        if (step === 'connect') acked = true; else welcomed = true;
        if (acked && welcomed) { clearTimeout(timer); c.onConnectStep = null; resolve(c); }
      };
      start().catch((err) => c.onConnectStep?.(null, err));
    });
  }

  constructor(hooks) {
    this.hooks = hooks;
    this.acks = new Acks();
  }

  onClose() {
    this.acks.failAll(new Error('closed'));
    this.onConnectStep?.(null, new Error('closed during connect'));
  }

  onFrame(buf, token) {
    const kind = buf[0];
    if (kind === 52 /* '4' message */) {
      if (scanMark(buf, this.hooks)) return;
      this.onSocketIo(buf.toString('utf8', 1));
    } else if (kind === 50 /* '2' ping */) {
      this.ws.send('3');
    } else if (kind === 48 /* '0' open */) {
      this.ws.send(`40${JSON.stringify({ token })}`);
    }
  }

  onSocketIo(pkt) {
    const type = pkt[0];
    if (type === '2') { // EVENT [name, envelope]
      const body = pkt.indexOf('[');
      const [name, env] = JSON.parse(pkt.slice(body));
      if (name === 'welcome') this.onConnectStep?.('welcome');
      this.hooks.onEnvelope?.(env);
    } else if (type === '3') { // ACK <id>[result]
      const body = pkt.indexOf('[');
      this.acks.settle(Number(pkt.slice(1, body)), JSON.parse(pkt.slice(body))[0]);
    } else if (type === '0') {
      this.onConnectStep?.('connect');
    } else if (type === '4') {
      this.onConnectStep?.(null, new Error(`connect_error ${pkt.slice(1)}`));
    }
  }

  emit(type, content) {
    this.ws.send(`42${JSON.stringify([type, content])}`);
  }

  request(type, content) {
    const [id, p] = this.acks.add();
    this.ws.send(`42${id}${JSON.stringify([type, content])}`);
    return p;
  }

  close() {
    this.ws.close();
  }
}

// Keep-alive connections, as many as the clients need (each: one poll waiting, one send at most).
const pollAgent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

function httpRequest(url, method, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent: pollAgent, headers: { 'Content-Type': 'text/plain;charset=UTF-8' } },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
    req.on('error', reject);
    req.end(body);
  });
}

// The Engine.IO long-polling transport behind MinimalClient's `ws` interface (send, close): a
// GET loop feeding each packet of a payload to onFrame, POSTs one at a time (packets sent while
// one is in flight leave together in the next, as Engine.IO clients do).
class PollingTransport {
  constructor(onFrame, onClose) { Object.assign(this, { onFrame, onClose, queue: [], posting: false, closed: false }); }

  async open(baseUrl) {
    const base = new URL('/socket.io/?EIO=4&transport=polling', baseUrl).toString();
    const { status, body } = await httpRequest(base, 'GET');
    if (status !== 200) throw new Error(`handshake: HTTP ${status}`);
    this.url = `${base}&sid=${JSON.parse(body.toString('utf8', 1)).sid}`;
    this.onFrame(body);
    this.pollLoop();
  }

  async pollLoop() {
    while (!this.closed) {
      let res;
      try { res = await httpRequest(this.url, 'GET'); } catch { res = { status: 0 }; }
      if (res.status !== 200) { this.close(); return; }
      const payload = res.body;
      for (let start = 0; start < payload.length;) {
        let end = payload.indexOf(0x1e, start);
        if (end < 0) end = payload.length;
        const packet = payload.subarray(start, end);
        if (packet[0] === 49 /* '1' close */) { this.close(); return; }
        if (packet[0] !== 54 /* '6' noop */) this.onFrame(packet);
        start = end + 1;
      }
    }
  }

  send(text) {
    this.queue.push(text);
    if (!this.posting) this.flush();
  }

  async flush() {
    this.posting = true;
    while (this.queue.length && !this.closed) {
      const body = this.queue.join('\x1e');
      this.queue = [];
      try { await httpRequest(this.url, 'POST', body); } catch { this.close(); }
    }
    this.posting = false;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.onClose();
  }
}

export class PollingClient extends MinimalClient {
  static open(baseUrl, token, hooks, { timeoutMs = 15000 } = {}) {
    const c = new PollingClient(hooks);
    c.ws = new PollingTransport((buf) => c.onFrame(buf, token), () => c.onClose());
    return c.connectVia(() => c.ws.open(baseUrl), timeoutMs);
  }

  close() {
    if (!this.ws.closed && this.ws.url) this.ws.send('1');
    this.ws.closed = true;
  }
}

export class PlainWsClient {
  static open(baseUrl, token, hooks, { deflate = true, timeoutMs = 15000 } = {}) {
    const c = new PlainWsClient(hooks);
    c.ws = new RawWebSocket((buf) => c.onFrame(buf), () => c.acks.failAll(new Error('closed')));
    const url = wsUrl(baseUrl, `/ws?token=${encodeURIComponent(token)}`);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { c.close(); reject(new Error('connect timeout')); }, timeoutMs);
      c.ws.open(url, { deflate }).then(() => { clearTimeout(timer); resolve(c); },
        (err) => { clearTimeout(timer); reject(err); });
    });
  }

  constructor(hooks) {
    this.hooks = hooks;
    this.acks = new Acks();
  }

  onFrame(buf) {
    if (scanMark(buf, this.hooks)) return;
    const env = JSON.parse(buf);
    if (env.type === 'ack') this.acks.settle(env.content?.id, env.content);
    else this.hooks.onEnvelope?.(env);
  }

  emit(type, content) {
    this.ws.send(JSON.stringify({ type, content }));
  }

  request(type, content) {
    const [id, p] = this.acks.add();
    this.ws.send(JSON.stringify({ type, content, id }));
    return p;
  }

  close() {
    this.ws.close();
  }
}

export class StockClient {
  static open(baseUrl, token, hooks, { timeoutMs = 15000 } = {}) {
    const c = new StockClient();
    c.socket = ioStock(baseUrl, {
      transports: ['websocket'], auth: { token }, reconnection: false, forceNew: true,
      timeout: timeoutMs,
    });
    c.socket.on('room_message', (env) => {
      const m = /@@(\d+):(\d+)@@/.exec(env?.content?.text ?? '');
      if (m) hooks.onMark(Number(m[1]), Number(m[2]));
      else hooks.onEnvelope?.(env);
    });
    c.socket.onAny((name, env) => { if (name !== 'room_message') hooks.onEnvelope?.(env); });
    return new Promise((resolve, reject) => {
      c.socket.once('welcome', () => resolve(c));
      c.socket.once('connect_error', (err) => reject(err));
    });
  }

  emit(type, content) { this.socket.emit(type, content); }

  request(type, content) { return this.socket.timeout(15000).emitWithAck(type, content); }

  close() { this.socket.disconnect(); }
}

export const CLIENTS = { minimal: MinimalClient, polling: PollingClient, stock: StockClient, ws: PlainWsClient };
