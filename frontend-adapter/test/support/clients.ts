/** Helpers to await what a RealtimeClient reports, each bounded by a timeout. */
import {
  RealtimeClient,
  type ClientEvents,
  type ConnectionState,
  type Envelope,
  type RealtimeClientOptions,
} from '../../src/index.js';
import { mintToken, withTimeout } from './gateway.js';

export const WAIT_MS = 8_000;

/** The next `type` event whose value satisfies `predicate`. Subscribe before acting. */
export function nextEvent<K extends keyof ClientEvents>(
  client: RealtimeClient,
  type: K,
  predicate: (value: ClientEvents[K]) => boolean = () => true,
  ms = WAIT_MS,
): Promise<ClientEvents[K]> {
  let unsubscribe = (): void => undefined;
  const seen = new Promise<ClientEvents[K]>((resolve) => {
    unsubscribe = client.on(type, (value: ClientEvents[K]) => {
      if (predicate(value)) resolve(value);
    });
  });
  return withTimeout(seen, ms, `${String(type)} event`).finally(unsubscribe);
}

/** Resolves once the client is in `state` (at once if it already is). */
export async function reachState(client: RealtimeClient, state: ConnectionState, ms = WAIT_MS): Promise<void> {
  if (client.state !== state) await nextEvent(client, 'state', (value) => value === state, ms);
}

/** Collects the envelopes of one type a client receives, so tests can wait for the n-th. */
export class Inbox {
  readonly envelopes: Envelope[] = [];
  #waiters: Array<() => void> = [];

  constructor(client: RealtimeClient, type: string) {
    client.on(type, (envelope: Envelope) => {
      this.envelopes.push(envelope);
      for (const wake of this.#waiters.splice(0)) wake();
    });
  }

  /** Waits until at least `count` envelopes arrived; returns all of them. */
  async waitFor(count: number, ms = WAIT_MS): Promise<Envelope[]> {
    const enough = async (): Promise<Envelope[]> => {
      while (this.envelopes.length < count) await new Promise<void>((wake) => this.#waiters.push(wake));
      return this.envelopes;
    };
    return withTimeout(enough(), ms, `${count} envelopes (have ${this.envelopes.length})`);
  }

  texts(): unknown[] {
    return this.envelopes.map((envelope) => (envelope.content as { text?: unknown }).text);
  }
}

/** Creates clients for one test file and disconnects them all afterwards. */
export class ClientPool {
  readonly #clients: RealtimeClient[] = [];

  constructor(readonly url: string) {}

  /** A client for `userId` (token minted unless the options bring their own), not yet connected. */
  create(userId: string, options: Partial<RealtimeClientOptions> = {}): RealtimeClient {
    const token = options.getToken ? {} : { token: options.token ?? mintToken(userId) };
    const client = new RealtimeClient({
      url: this.url,
      transports: ['websocket'],
      reconnect: { initialDelayMs: 50, maxDelayMs: 300 },
      ackTimeoutMs: 3_000,
      ...options,
      ...token,
    });
    this.#clients.push(client);
    return client;
  }

  async connected(userId: string, options: Partial<RealtimeClientOptions> = {}): Promise<RealtimeClient> {
    const client = this.create(userId, options);
    await withTimeout(client.connect(), WAIT_MS, `${userId} to connect`);
    return client;
  }

  closeAll(): void {
    for (const client of this.#clients.splice(0)) client.disconnect();
  }
}
