// Three ways to be a room member, one interface:
//   await XClient.open(url, token, hooks, opts)  -> resolves once the server said "welcome"
//   c.emit(type, content)        fire and forget
//   c.request(type, content)     -> Promise of the server's ack ({ok: ...})
//   c.close()
// hooks.onMark(seq, tMicros) is called for every room_message whose text carries a bench mark
// (see mark() below); hooks.onEnvelope(env) for every other envelope the server sends.
//
// MinimalClient speaks Engine.IO v4 / Socket.IO v4 over `ws` directly: it is cheap enough that one
// Node process can hold thousands of connections and out-run a fast server. StockClient is the
// real socket.io-client, only for cross-checks. PlainWsClient talks to the gateway's /ws endpoint.
import WebSocket from 'ws';
import { io as ioStock } from 'socket.io-client';

const MARK = Buffer.from('@@');

// Our frames are small JSON we only scan: skip UTF-8 validation and the nextTick per message.
const wsOptions = (deflate) => ({
  perMessageDeflate: deflate, skipUTF8Validation: true, allowSynchronousEvents: true,
});

// The bench mark: "@@<seq>:<send time, µs>@@". Receivers find it by scanning the raw frame bytes,
// so the hot path never decodes or parses JSON (whatever spacing the server's encoder uses).
export const mark = (seq, tMicros) => `@@${seq}:${tMicros}@@`;

// Returns true and reports the mark if `buf` carries one.
function scanMark(buf, hooks) {
  let i = buf.indexOf(MARK);
  if (i < 0) return false;
  i += 2;
  let seq = 0;
  for (let c = buf[i]; c !== 58 /* : */; c = buf[++i]) seq = seq * 10 + (c - 48);
  let t = 0;
  for (let c = buf[++i]; c !== 64 /* @ */; c = buf[++i]) t = t * 10 + (c - 48);
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
  static open(baseUrl, token, hooks, { deflate = true, timeoutMs = 15000 } = {}) {
    const c = new MinimalClient(hooks);
    const url = wsUrl(baseUrl, '/socket.io/?EIO=4&transport=websocket');
    c.ws = new WebSocket(url, wsOptions(deflate));
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
      c.ws.on('message', (data) => c.onFrame(data, token));
      c.ws.on('error', (err) => c.onConnectStep?.(null, err));
      c.ws.on('close', () => {
        c.closed = true;
        c.acks.failAll(new Error('closed'));
        c.onConnectStep?.(null, new Error('closed during connect'));
      });
    });
  }

  constructor(hooks) {
    this.hooks = hooks;
    this.acks = new Acks();
    this.closed = false;
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
    if (!this.closed) this.ws.terminate();
    this.closed = true;
  }
}

export class PlainWsClient {
  static open(baseUrl, token, hooks, { deflate = true, timeoutMs = 15000 } = {}) {
    const c = new PlainWsClient(hooks);
    const url = wsUrl(baseUrl, `/ws?token=${encodeURIComponent(token)}`);
    c.ws = new WebSocket(url, wsOptions(deflate));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { c.close(); reject(new Error('connect timeout')); }, timeoutMs);
      c.ws.on('open', () => { clearTimeout(timer); resolve(c); });
      c.ws.on('unexpected-response', (_req, res) => {
        clearTimeout(timer);
        reject(new Error(`/ws answered HTTP ${res.statusCode}`));
      });
      c.ws.on('error', (err) => { clearTimeout(timer); reject(err); });
      c.ws.on('message', (data) => c.onFrame(data));
      c.ws.on('close', () => { c.closed = true; c.acks.failAll(new Error('closed')); });
    });
  }

  constructor(hooks) {
    this.hooks = hooks;
    this.acks = new Acks();
    this.closed = false;
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
    if (!this.closed) this.ws.terminate();
    this.closed = true;
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

export const CLIENTS = { minimal: MinimalClient, stock: StockClient, ws: PlainWsClient };
