// A bare WebSocket client transport (RFC 6455) over node:net, for the load generator only.
//
// Why not the `ws` package: against a fast server the generator receives 100k+ small frames a
// second on one core, and ws's per-message machinery (streams, events, buffer copies) made the
// generator the bottleneck. Here a frame is parsed in place and its payload handed over as a
// view into the socket's chunk. permessage-deflate is still offered (browsers offer it, and
// python-socketio's defaults accept it); compressed messages are inflated by ws's own
// PerMessageDeflate, pausing the parser meanwhile so order is kept.
//
// Shortcuts a load generator may take: Sec-WebSocket-Accept is not checked, and outgoing frames
// are masked with an all-zero key (a valid mask, so masking costs no copy of the payload).
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { PerMessageDeflate, extension } from 'ws';

const EMPTY = Buffer.alloc(0);

export class RawWebSocket {
  // onMessage(buf) gets each complete data message; onClose() runs once when the socket ends.
  constructor(onMessage, onClose) {
    this.onMessage = onMessage;
    this.onClose = onClose;
    this.sock = null;
    this.buf = EMPTY;
    this.inflater = null;
    this.paused = false;
    this.fragments = null;
    this.fragmentsCompressed = false;
    this.closed = false;
  }

  // Resolves once the server answered 101; rejects with "<path> answered HTTP <status>" else.
  // localAddress: the source address (127.0.0.2, ...: one address has ~28k ephemeral ports).
  open(urlString, { deflate = true, localAddress } = {}) {
    const url = new URL(urlString);
    const pmd = deflate ? new PerMessageDeflate({}) : null;
    const offer = pmd ? `Sec-WebSocket-Extensions: ${extension.format({
      'permessage-deflate': [pmd.offer()] })}\r\n` : '';
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: url.hostname, port: Number(url.port) || 80, ...(localAddress ? { localAddress } : {}) });
      this.sock = sock;
      sock.setNoDelay(true);
      let head = EMPTY;
      const onHandshake = (chunk) => {
        head = head.length ? Buffer.concat([head, chunk]) : chunk;
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        sock.off('data', onHandshake);
        const [statusLine, ...lines] = head.toString('latin1', 0, end).split('\r\n');
        const status = Number(statusLine.split(' ')[1]);
        if (status !== 101) {
          this.close();
          reject(new Error(`${url.pathname} answered HTTP ${status}`));
          return;
        }
        const ext = lines.find((l) => /^sec-websocket-extensions:/i.test(l));
        if (ext && pmd) {
          pmd.accept(extension.parse(ext.slice(ext.indexOf(':') + 1).trim())['permessage-deflate']);
          this.inflater = pmd;
        }
        sock.on('data', (c) => this.feed(c));
        resolve();
        this.feed(head.subarray(end + 4)); // frames that came with the response
      };
      sock.on('connect', () => sock.write(
        `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n`
        + 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n'
        + `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n${offer}\r\n`));
      sock.on('data', onHandshake);
      sock.on('error', (err) => { reject(err); this.close(); });
      sock.on('close', () => { reject(new Error('closed during handshake')); this.close(); });
    });
  }

  feed(chunk) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    this.parse();
  }

  parse() {
    const buf = this.buf;
    let off = 0;
    while (!this.paused && !this.closed && buf.length - off >= 2) {
      let len = buf[off + 1] & 0x7f; // frames from a server are never masked
      let header = 2;
      if (len === 126) {
        if (buf.length - off < 4) break;
        len = buf.readUInt16BE(off + 2);
        header = 4;
      } else if (len === 127) {
        if (buf.length - off < 10) break;
        len = Number(buf.readBigUInt64BE(off + 2));
        header = 10;
      }
      if (buf.length - off < header + len) break;
      const b0 = buf[off];
      const payload = buf.subarray(off + header, off + header + len);
      off += header + len;
      this.frame(b0, payload);
    }
    this.buf = off === buf.length ? EMPTY : buf.subarray(off);
  }

  frame(b0, payload) {
    const opcode = b0 & 0x0f;
    if (opcode >= 8) { // control frames: close, ping, pong
      if (opcode === 8) this.close();
      else if (opcode === 9) this.sendFrame(0x8a, payload);
      return;
    }
    if (opcode !== 0) this.fragmentsCompressed = (b0 & 0x40) !== 0; // first frame of a message
    if (!(b0 & 0x80)) { // more fragments follow
      (this.fragments ??= []).push(payload);
      return;
    }
    let message = payload;
    if (this.fragments) {
      message = Buffer.concat([...this.fragments, payload]);
      this.fragments = null;
    }
    if (!this.fragmentsCompressed) {
      this.onMessage(message);
      return;
    }
    this.paused = true;
    this.inflater.decompress(message, true, (err, data) => {
      if (this.closed) { this.inflater.cleanup(); return; } // deferred by close()
      if (err) { this.close(); return; }
      this.paused = false;
      this.onMessage(data);
      this.parse();
    });
  }

  send(text) {
    this.sendFrame(0x81, Buffer.from(text));
  }

  sendFrame(b0, payload) {
    if (this.closed) return;
    const len = payload.length;
    const header = len < 126 ? 6 : len < 65536 ? 8 : 14; // including the 4-byte mask key
    const frame = Buffer.allocUnsafe(header + len);
    frame[0] = b0;
    if (len < 126) {
      frame[1] = 0x80 | len;
    } else if (len < 65536) {
      frame[1] = 0x80 | 126;
      frame.writeUInt16BE(len, 2);
    } else {
      frame[1] = 0x80 | 127;
      frame.writeBigUInt64BE(BigInt(len), 2);
    }
    frame.writeUInt32BE(0, header - 4); // mask key 0: payload bytes go out unchanged
    payload.copy(frame, header);
    this.sock.write(frame);
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.sock?.destroy();
    // ws's inflater must not be cleaned up under a running decompress: its callback does it.
    if (!this.paused) this.inflater?.cleanup();
    this.onClose();
  }
}
