#!/usr/bin/env node
// Load generator entry point: runs one scenario and prints its results as one JSON line.
//
//   node bench/loadgen/main.mjs --scenario fanout --url http://127.0.0.1:9000 --clients 1000 \
//        --messages 200 --secret S [--pids 1234] [--client minimal|polling|stock] [--ws-share 0.5]
//
// Scenarios: fanout (also mixed with --ws-share, and cluster with several --url; --rate R: R messages/s,
// open loop, instead of --window), rooms (--clients N in rooms of --room-size, every client sending;
// --rate R msgs/s over all of them for --duration-ms, else saturation with --messages each),
// connect, ping, ack (join_room with an ack, closed loop), hold (one process of bench/scale.py).
// --pids names the server processes whose CPU share and memory are read from /proc.
// --users K spreads the connections over K user ids (default 0: one user per connection).
// --watch K: every connection watches K other users' presence (watch_presence).
import { parseArgs } from 'node:util';
import { SCENARIOS } from './scenarios.mjs';

const { values: a } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'fanout' },
    url: { type: 'string', multiple: true, default: ['http://127.0.0.1:8087'] },
    secret: { type: 'string', default: process.env.JWT_SECRET || 'bench-secret' },
    pids: { type: 'string', default: '' },
    client: { type: 'string', default: 'minimal' },
    clients: { type: 'string', default: '100' },
    users: { type: 'string', default: '0' },
    watch: { type: 'string', default: '0' },
    messages: { type: 'string', default: '100' },
    warmup: { type: 'string', default: '5' },
    window: { type: 'string', default: '16' },
    rate: { type: 'string', default: '0' },
    'room-size': { type: 'string', default: '10' },
    'ws-share': { type: 'string', default: '0' },
    concurrency: { type: 'string', default: '100' },
    'duration-ms': { type: 'string', default: '3000' },
    'settle-ms': { type: 'string', default: '1000' },
    'stall-ms': { type: 'string', default: '5000' },
    'timeout-ms': { type: 'string', default: '300000' },
    'no-deflate': { type: 'boolean', default: false },
    'local-address': { type: 'string' },
    'hold-from': { type: 'string', default: '0' },
    'hold-until': { type: 'string', default: '0' },
    'send-at': { type: 'string', default: '0' },
    sender: { type: 'boolean', default: false },
  },
});

const run = SCENARIOS[a.scenario];
if (!run) {
  console.error(`unknown scenario ${a.scenario}; one of ${Object.keys(SCENARIOS).join(', ')}`);
  process.exit(2);
}
const int = (k) => Number.parseInt(a[k], 10);
const opts = {
  urls: a.url.flatMap((u) => u.split(',')),
  secret: a.secret,
  pids: a.pids ? a.pids.split(',').map(Number) : [],
  client: a.client,
  clients: int('clients'),
  users: int('users'),
  watch: int('watch'),
  messages: int('messages'),
  warmup: int('warmup'),
  window: int('window'),
  rate: Number(a.rate),
  roomSize: int('room-size'),
  wsShare: Number(a['ws-share']),
  concurrency: int('concurrency'),
  durationMs: int('duration-ms'),
  settleMs: int('settle-ms'),
  stallMs: int('stall-ms'),
  // Browsers offer permessage-deflate, so by default we do too; the server decides.
  deflate: !a['no-deflate'],
  localAddress: a['local-address'],
  holdFrom: Number(a['hold-from']),
  holdUntil: Number(a['hold-until']),
  sendAt: Number(a['send-at']),
  sender: a.sender,
};

// Hard stop: whatever happens, this process ends by itself.
setTimeout(() => {
  console.log(JSON.stringify({ error: `timed out after ${a['timeout-ms']} ms` }));
  process.exit(3);
}, int('timeout-ms')).unref();

const result = await run(opts);
console.log(JSON.stringify({ scenario: a.scenario, ...result }));
process.exit(0);
