/** The pure parts, without a gateway: backoff, the bounded queue, frames, envelopes, errors. */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { backoffDelay, backoffPolicy, DEFAULT_BACKOFF } from '../src/backoff.js';
import { BoundedQueue } from '../src/bounded-queue.js';
import { toEnvelope } from '../src/envelope.js';
import { errorContent, ServerError, TimeoutError, QueueOverflowError } from '../src/errors.js';
import { parseFrame } from '../src/frames.js';
import { RecentIds } from '../src/recent-ids.js';
import { RealtimeClient } from '../src/index.js';

test('backoff grows exponentially, is capped, and jitter only shortens it', () => {
  const policy = backoffPolicy({ initialDelayMs: 100, maxDelayMs: 1_000, factor: 2, jitter: 0.5 });
  const withoutJitter = [0, 1, 2, 3, 4, 10].map((attempt) => backoffDelay(attempt, policy, () => 0));
  assert.deepEqual(withoutJitter, [100, 200, 400, 800, 1_000, 1_000]);
  assert.equal(backoffDelay(3, policy, () => 1), 400, 'full jitter halves it at most');
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const delay = backoffDelay(attempt, policy);
    assert.ok(delay >= 50 && delay <= 1_000, `attempt ${attempt}: ${delay}`);
  }
  assert.equal(backoffDelay(1_000, DEFAULT_BACKOFF, () => 0), DEFAULT_BACKOFF.maxDelayMs, 'no overflow');
});

test('backoff settings that would spin or never retry are refused', () => {
  assert.throws(() => backoffPolicy({ factor: 0.5 }), RangeError);
  assert.throws(() => backoffPolicy({ jitter: 2 }), RangeError);
  assert.throws(() => backoffPolicy({ initialDelayMs: 500, maxDelayMs: 100 }), RangeError);
  assert.throws(() => backoffPolicy({ maxAttempts: 0 }), RangeError);
  assert.throws(() => new RealtimeClient({ url: 'http://x', token: 't', reconnect: { jitter: -1 } }), RangeError);
});

test('the bounded queue evicts the oldest items first', () => {
  const queue = new BoundedQueue<number>(2);
  assert.deepEqual(queue.push(1), []);
  assert.deepEqual(queue.push(2), []);
  assert.deepEqual(queue.push(3), [1]);
  assert.equal(queue.size, 2);
  assert.equal(queue.shift(), 2);
  assert.deepEqual(queue.drain(), [3]);
  assert.deepEqual(new BoundedQueue<number>(0).push(9), [9], 'capacity 0 queues nothing');
  assert.throws(() => new BoundedQueue(-1), RangeError);
});

test('frames are parsed like the gateway /ws endpoint does, refusals as 400', () => {
  assert.deepEqual(parseFrame('{"type":"ping"}'), { type: 'ping' });
  for (const bad of ['nope', '[1]', '{"content":1}', '{"type":""}']) {
    assert.throws(() => parseFrame(bad), (error: unknown) => error instanceof ServerError && error.code === 400);
  }
});

test('a bare event payload is wrapped into an envelope; a full envelope passes through', () => {
  const envelope = { type: 'x', content: 1, timestamp: 1, id: 'a' };
  assert.equal(toEnvelope('x', envelope), envelope);
  const wrapped = toEnvelope('custom', { some: 'payload' });
  assert.equal(wrapped.type, 'custom');
  assert.deepEqual(wrapped.content, { some: 'payload' });
  assert.match(wrapped.id, /^local-/);
});

test('local errors get HTTP-like codes in error envelopes', () => {
  assert.deepEqual(errorContent(new ServerError('nope', 403)), { code: 403, message: 'nope' });
  assert.equal(errorContent(new TimeoutError()).code, 408);
  assert.equal(errorContent(new QueueOverflowError()).code, 503);
});

test('RecentIds says first time once per id and forgets the oldest beyond its capacity', () => {
  const seen = new RecentIds(3);
  assert.deepEqual(['a', 'b', 'a', 'c'].map((id) => seen.firstTime(id)), [true, true, false, true]);
  assert.equal(seen.firstTime('d'), true); // 'a' is forgotten now
  assert.deepEqual(['b', 'c', 'd', 'a'].map((id) => seen.firstTime(id)), [false, false, false, true]);
  assert.throws(() => new RecentIds(0), RangeError);
});
