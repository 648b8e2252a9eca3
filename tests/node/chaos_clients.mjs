// The Socket.IO half of tests/test_chaos.py: stock socket.io-client sockets with their built-in
// reconnection and connection-state recovery (pid/offset in auth, socket.recovered), one per
// entry of CHAOS_CLIENTS ([{url, token, room}]). Prints READY once every socket joined its room;
// on the line REPORT from stdin prints one JSON line: the room_message ids each socket received
// (in order, repeats kept), and how many reconnects did and did not recover.
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';

// socket.io-client is a dependency of the client package (frontend-adapter/)
const require = createRequire(new URL('../../frontend-adapter/package.json', import.meta.url));
const { io } = require('socket.io-client');

const clients = JSON.parse(process.env.CHAOS_CLIENTS);
const received = clients.map(() => []);
const stats = { reconnects: 0, recovered: 0, recovered_false: 0, rejoined: 0 };
let joined = 0;

clients.forEach(({ url, token, room }, index) => {
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
      stats.reconnects += 1;
      if (socket.recovered) {
        stats.recovered += 1;
        return;
      }
      stats.recovered_false += 1;
      console.error(`client ${index}: reconnect not recovered`);
    }
    const first = !connectedBefore;
    connectedBefore = true;
    socket.emit('join_room', room, (ack) => {
      if (!ack || !ack.ok) console.error(`client ${index}: join refused ${JSON.stringify(ack)}`);
      if (first && ++joined === clients.length) console.log('READY');
      else if (!first) stats.rejoined += 1;
    });
  });
  socket.on('room_message', (envelope) => received[index].push(envelope.id));
});

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'REPORT') {
    // exit only once the (large) line is written: a pipe takes 64 KiB at a time
    process.stdout.write(`${JSON.stringify({ received, ...stats })}\n`, () => process.exit(0));
  }
});
