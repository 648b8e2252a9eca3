/**
 * socket.io-client's own transports against the gateway's Engine.IO layer: the default
 * (long-polling, then the upgrade to WebSocket) and long-polling only, with rooms, acks and a
 * broadcast stream that must arrive complete and in order (across the upgrade, for the default).
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';

import { RealtimeClient } from '../src/index.js';
import { ClientPool, Inbox, WAIT_MS } from './support/clients.js';
import { Gateway, mintToken, withTimeout } from './support/gateway.js';

const COUNT = 150;
let gateway: Gateway;
let pool: ClientPool;

const opened: RealtimeClient[] = [];

before(async () => {
  gateway = await Gateway.start({ RATE_LIMIT: '1000', RATE_BURST: '1000' });
  pool = new ClientPool(gateway.url);
});
afterEach(() => {
  pool.closeAll();
  for (const client of opened.splice(0)) client.disconnect();
});
after(() => gateway.stop());

/** A client with socket.io-client's default transports unless `polling` (not the pool's websocket). */
async function receiverFor(user: string, polling: boolean): Promise<RealtimeClient> {
  const transports = polling ? { transports: ['polling' as const] } : {};
  const client = new RealtimeClient({ url: gateway.url, token: mintToken(user), ...transports });
  opened.push(client);
  await withTimeout(client.connect(), WAIT_MS, `${user} to connect`);
  return client;
}

const variants: Array<[string, boolean]> = [
  ['default transports (polling, then websocket)', false],
  ['polling only', true],
];

describe('socket.io-client transports', () => {
  for (const [name, polling] of variants) {
    test(`${name}: rooms, acks and an ordered stream both ways`, async () => {
      const room = `transports-${polling ? 'polling' : 'default'}`;
      const receiver = await receiverFor(`${room}-receiver`, polling);
      const sender = await pool.connected(`${room}-sender`); // WebSocket
      assert.deepEqual(await receiver.joinRoom(room), { ok: true, room });
      await sender.joinRoom(room);
      const received = new Inbox(receiver, 'room_message');
      const echoed = new Inbox(sender, 'room_message');
      for (let i = 0; i < COUNT; i += 1) {
        await sender.sendToRoom(room, String(i));
        if (i % 25 === 0) assert.equal(typeof (await receiver.ping()), 'number'); // acks mid-stream
      }
      await received.waitFor(COUNT);
      assert.deepEqual(received.texts(), Array.from({ length: COUNT }, (_, i) => String(i)));
      for (let i = 0; i < 20; i += 1) await receiver.sendToRoom(room, `r${i}`);
      await echoed.waitFor(COUNT + 20);
      assert.deepEqual(echoed.texts().slice(COUNT), Array.from({ length: 20 }, (_, i) => `r${i}`));
    });
  }
});
