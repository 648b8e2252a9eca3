// The Socket.IO half of tests/test_chaos.py, one client per entry of CHAOS_CLIENTS
// ([{kind, url, token, room}]), of three kinds:
//   sio      a stock socket.io-client socket with its built-in reconnection and connection-state
//            recovery (pid/offset in auth, socket.recovered);
//   client   the project's RealtimeClient (frontend-adapter/dist, which must be built): its own
//            reconnect loop, its `recovery` event, and its drop of envelope ids already handed over;
//   gws      the project's GatewayWebSocket (the WebSocket interface over RealtimeClient), fed the
//            /ws URL an application written for plain WebSocket would give it, and left on the
//            default transports (long-polling, upgraded to WebSocket), as such an application is.
// What a `client`/`gws` receives is counted as the application sees it: after the adapter's dedup.
// The two adapter kinds also talk (one room_message a second each, through the adapter's offline
// queue while disconnected); an acknowledged one is accepted.
//
// Lines on stdout: READY once every client joined its room. Lines on stdin: `TALK <seconds>` starts
// the talking; `SETTLE` waits until every message sent is acknowledged or refused, then prints
// SETTLED; `REPORT` prints one JSON line (received ids per client, in order, repeats kept; the
// accepted ids; reconnect counts) and exits.
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';

// socket.io-client is a dependency of the client package (frontend-adapter/)
const adapterDir = new URL('../../frontend-adapter/', import.meta.url);
const require = createRequire(new URL('package.json', adapterDir));
const { io } = require('socket.io-client');
const { GatewayWebSocket, RealtimeClient } = await import(new URL('dist/index.js', adapterDir).href);

const RECONNECT = { initialDelayMs: 200, maxDelayMs: 1000, jitter: 0.3 };
const clients = JSON.parse(process.env.CHAOS_CLIENTS);
const received = clients.map(() => []);
const accepted = {}; // message id -> room
const stats = { reconnects: 0, recovered: 0, recovered_false: 0, rejoined: 0, refused: 0, by_kind: {} };
const inFlight = new Set();
const talkers = [];
let joined = 0;

function onJoined(index) {
  if (++joined === clients.length) console.log('READY');
}

function onReconnect(index, recovered) {
  stats.reconnects += 1;
  const kind = (stats.by_kind[clients[index].kind] ??= { reconnects: 0, recovered_false: 0 });
  kind.reconnects += 1;
  if (!recovered) kind.recovered_false += 1;
  if (recovered) stats.recovered += 1;
  else {
    stats.recovered_false += 1;
    console.error(`client ${index}: reconnect not recovered`);
  }
}

function refuse(reason) {
  stats.refused += 1;
  console.error(`message refused: ${reason}`);
}

/** Records the outcome of one sent message: accepted when acknowledged ok. */
function track(room, acknowledged) {
  const settled = acknowledged.then(
    (ack) => {
      if (ack && ack.ok && ack.message_id) accepted[ack.message_id] = room;
      else refuse(JSON.stringify(ack));
    },
    (error) => refuse(String(error)),
  );
  inFlight.add(settled);
  settled.finally(() => inFlight.delete(settled));
}

function stockSocket({ url, token, room }, index) {
  const socket = io(url, {
    transports: ['websocket'],
    auth: { token },
    reconnectionDelay: 200,
    reconnectionDelayMax: 1000,
    randomizationFactor: 0.3,
  });
  let connectedBefore = false;
  socket.on('connect', () => {
    if (connectedBefore) {
      onReconnect(index, socket.recovered);
      if (socket.recovered) return;
    }
    const first = !connectedBefore;
    connectedBefore = true;
    socket.emit('join_room', room, (ack) => {
      if (!ack || !ack.ok) console.error(`client ${index}: join refused ${JSON.stringify(ack)}`);
      if (first) onJoined(index);
      else stats.rejoined += 1;
    });
  });
  socket.on('room_message', (envelope) => received[index].push(envelope.id));
}

function realtimeClient({ url, token, room }, index) {
  const client = new RealtimeClient({ url, token, transports: ['websocket'], reconnect: RECONNECT });
  client.on('room_message', (envelope) => received[index].push(envelope.id));
  client.on('recovery', ({ recovered }) => onReconnect(index, recovered));
  client.connect().then(() => client.joinRoom(room)).then(
    () => onJoined(index),
    (error) => console.error(`client ${index}: ${error}`),
  );
  talkers.push(() => track(room, client.sendToRoom(room, 'rc')));
}

function gatewayWebSocket({ url, token, room }, index) {
  const wsUrl = `${url.replace(/^http/, 'ws')}/ws?token=${encodeURIComponent(token)}`;
  const socket = new GatewayWebSocket(wsUrl, undefined, { reconnect: RECONNECT });
  const pending = new Map(); // frame id -> resolve
  let frames = 0;
  const send = (frame) =>
    new Promise((resolve) => {
      const id = `${index}-${++frames}`;
      pending.set(id, resolve);
      socket.send(JSON.stringify({ ...frame, id }));
    });
  socket.onmessage = (event) => {
    const envelope = JSON.parse(String(event.data));
    if (envelope.type === 'room_message') received[index].push(envelope.id);
    else if (envelope.type === 'ack') {
      pending.get(envelope.content.id)?.(envelope.content);
      pending.delete(envelope.content.id);
    }
  };
  socket.addEventListener('recovery', (event) => onReconnect(index, event.recovered));
  socket.onclose = (event) => console.error(`client ${index}: closed ${event.code} ${event.reason}`);
  socket.onopen = () =>
    send({ type: 'join_room', content: room }).then((ack) => {
      if (!ack.ok) console.error(`client ${index}: join refused ${JSON.stringify(ack)}`);
      onJoined(index);
    });
  talkers.push(() => track(room, send({ type: 'room_message', content: { room, text: 'gws' } })));
}

const KINDS = { sio: stockSocket, client: realtimeClient, gws: gatewayWebSocket };
clients.forEach((entry, index) => KINDS[entry.kind](entry, index));

function talk(seconds) {
  const stop = Date.now() + seconds * 1000;
  talkers.forEach((say, index) => {
    // spread over the second so that the sends do not come in one burst
    const tick = () => {
      if (Date.now() >= stop) return;
      say();
      setTimeout(tick, 1000);
    };
    setTimeout(tick, (1000 * index) / talkers.length);
  });
}

createInterface({ input: process.stdin }).on('line', async (line) => {
  const [command, argument] = line.trim().split(' ');
  if (command === 'TALK') talk(Number(argument));
  else if (command === 'SETTLE') {
    while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
    console.log('SETTLED');
  } else if (command === 'REPORT') {
    // exit only once the (large) line is written: a pipe takes 64 KiB at a time
    process.stdout.write(`${JSON.stringify({ received, accepted, ...stats })}\n`, () => process.exit(0));
  }
});
