/**
 * RealtimeClient: a socket.io-client connection to the gateway that survives the real world.
 *
 * What it adds to a bare `io()` socket, and why:
 * - its own reconnect loop (socket.io-client's is switched off) so that one backoff policy
 *   covers every way a connection ends: a transport failure, a server that is down, and a
 *   server-side disconnect, which socket.io-client would never retry on its own;
 * - a fresh token from `getToken()` before every attempt, so an expired token is replaced
 *   instead of failing forever, and a 401 refusal stops the loop instead of hammering the server;
 * - the rooms the application joined are joined again after every reconnect, before the state
 *   turns `connected` and before anything queued is sent;
 * - requests made while not connected wait in a bounded queue and are sent, one at a time and in
 *   order, once connected (socket.io-client's own buffer is unbounded and silent about loss);
 * - every reconnect resumes the session (socket.io-client's connection-state recovery: the
 *   gateway replays what was missed and restores the rooms); the `recovery` event says whether
 *   it worked, and an envelope id the application already had is never handed to it again.
 */
import { io, type Socket } from 'socket.io-client';

import { backoffDelay, backoffPolicy, type BackoffPolicy, type ReconnectOptions } from './backoff.js';
import { BoundedQueue } from './bounded-queue.js';
import { RecentIds } from './recent-ids.js';
import { isRecord, toEnvelope, type AckOk, type ChatContent, type Envelope, type EnvelopeType } from './envelope.js';
import {
  AuthError,
  ClientClosedError,
  DisconnectedError,
  QueueOverflowError,
  RealtimeError,
  ServerError,
  TimeoutError,
} from './errors.js';
import { TypedEmitter } from './typed-emitter.js';

export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'disconnected';

export interface RealtimeClientOptions {
  /** Gateway base URL, e.g. `https://rt.example.com` (the Socket.IO path is added). */
  url: string;
  /** A fixed token. Prefer `getToken` for tokens that expire. */
  token?: string;
  /** Called before every connection attempt; return a currently valid token. */
  getToken?: () => string | Promise<string>;
  /** Socket.IO endpoint path. Default `/socket.io/`. */
  path?: string;
  /** Engine.IO transports, in the order to try. Default: polling, upgraded to websocket. */
  transports?: Array<'polling' | 'websocket' | 'webtransport'>;
  /** How long a request waits for the gateway's acknowledgement once sent. Default 10 000 ms. */
  ackTimeoutMs?: number;
  reconnect?: ReconnectOptions;
  /** Requests kept while not connected; when full the oldest is dropped. Default 100. */
  queueSize?: number;
  /** Envelope ids remembered to drop repeats (a replayed copy of one already handed over). Default 1000. */
  dedupSize?: number;
}

/** How a reconnect went: `recovered` is false when the gateway could not resume the session
 * (too long away, gateway restarted): what was sent meanwhile is missing (read `history`). */
export interface RecoveryReport {
  recovered: boolean;
}

/** A request as it waits in the offline queue (and as reported by `queue_drop`). */
export interface QueuedRequest {
  readonly event: string;
  readonly content: unknown;
}

/** Events of the client itself, next to one event per envelope type. */
export interface LifecycleEvents {
  state: ConnectionState;
  /** Every envelope received, whatever its type. */
  envelope: Envelope;
  /** The set of rooms to (re-)join changed. */
  rooms: readonly string[];
  /** The offline queue was full; this request was dropped (its promise rejected). */
  queue_drop: QueuedRequest;
  /** The gateway refused the token; the client is now `disconnected`. */
  auth_error: AuthError;
  /** A connection attempt failed; it is retried unless `reconnect.maxAttempts` is reached. */
  connect_error: Error;
  /** After every reconnect (not the first connect): whether the session was resumed. */
  recovery: RecoveryReport;
}

export type ClientEvents = LifecycleEvents & { [K in EnvelopeType]: Envelope<K> };

const LIFECYCLE_EVENTS: ReadonlySet<string> = new Set<keyof LifecycleEvents>([
  'state',
  'envelope',
  'rooms',
  'queue_drop',
  'auth_error',
  'connect_error',
  'recovery',
]);

interface PendingRequest extends QueuedRequest {
  resolve(result: Acknowledged): void;
  reject(error: RealtimeError): void;
}

interface Acknowledged {
  ack: AckOk;
  /** Time from sending to the acknowledgement, in ms (queue time excluded). */
  rttMs: number;
}

interface ConnectWaiter {
  resolve(): void;
  reject(error: RealtimeError): void;
}

export class RealtimeClient {
  readonly #options: RealtimeClientOptions;
  readonly #policy: BackoffPolicy;
  readonly #ackTimeoutMs: number;
  readonly #events = new TypedEmitter<Record<string, unknown>>();
  readonly #queue: BoundedQueue<PendingRequest>;
  readonly #rooms = new Set<string>();
  /** Users whose `user_status` this client watches (re-watched after every reconnect). */
  readonly #watched = new Set<string>();
  #watchingEveryone = false;
  #socket: Socket | null = null;
  #state: ConnectionState = 'disconnected';
  /** Bumped by connect()/close: async work of an older session (token fetch, timer) is void. */
  #session = 0;
  /** Bumped whenever a connection opens or ends: a rejoin or flush of an older link stops. */
  #link = 0;
  #failedAttempts = 0;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #flushing = false;
  #waiters: ConnectWaiter[] = [];
  readonly #seen: RecentIds;
  /** Whether this socket has connected before: its next connect is a reconnect. */
  #everConnected = false;
  #recovered: boolean | null = null;

  constructor(options: RealtimeClientOptions) {
    if (!options.url) throw new TypeError('RealtimeClient: url is required');
    if (options.token === undefined && options.getToken === undefined) {
      throw new TypeError('RealtimeClient: pass token or getToken');
    }
    this.#options = options;
    this.#policy = backoffPolicy(options.reconnect);
    this.#ackTimeoutMs = options.ackTimeoutMs ?? 10_000;
    this.#queue = new BoundedQueue(options.queueSize ?? 100);
    this.#seen = new RecentIds(options.dedupSize ?? 1000);
  }

  /** Whether the last reconnect resumed the session; null until the first reconnect. */
  get recovered(): boolean | null {
    return this.#recovered;
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** Rooms joined through this client; they are joined again after every reconnect. */
  get rooms(): readonly string[] {
    return [...this.#rooms];
  }

  /** Requests waiting for a connection. */
  get queued(): number {
    return this.#queue.size;
  }

  on<K extends keyof ClientEvents>(type: K, listener: (value: ClientEvents[K]) => void): () => void;
  on(type: string, listener: (envelope: Envelope) => void): () => void;
  on(type: string, listener: (value: never) => void): () => void {
    return this.#events.on(type, listener as (value: unknown) => void);
  }

  off<K extends keyof ClientEvents>(type: K, listener: (value: ClientEvents[K]) => void): void;
  off(type: string, listener: (envelope: Envelope) => void): void;
  off(type: string, listener: (value: never) => void): void {
    this.#events.off(type, listener as (value: unknown) => void);
  }

  /**
   * Starts connecting (no-op if already connecting or connected). Resolves once connected and
   * the rooms are re-joined; rejects with {@link AuthError} on a 401, with
   * {@link DisconnectedError} when `reconnect.maxAttempts` is exhausted, or with
   * {@link ClientClosedError} if `disconnect()` comes first. Until then it keeps retrying.
   */
  connect(): Promise<void> {
    if (this.#state === 'connected') return Promise.resolve();
    const ready = new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }));
    if (this.#state === 'disconnected') {
      this.#session += 1;
      this.#failedAttempts = 0;
      this.#socket = this.#createSocket();
      this.#everConnected = false;
      this.#setState('connecting');
      void this.#attempt(this.#session);
    }
    return ready;
  }

  /**
   * Closes the connection for good: pending connects and queued requests reject with
   * {@link ClientClosedError}, and the rooms and presence watches are forgotten (a later
   * `connect()` starts clean).
   */
  disconnect(): void {
    this.#close(new ClientClosedError());
    this.#watched.clear();
    this.#watchingEveryone = false;
    if (this.#rooms.size > 0) {
      this.#rooms.clear();
      this.#events.emit('rooms', this.rooms);
    }
  }

  /** Joins `room`; from then on it is re-joined after every reconnect. */
  async joinRoom(room: string): Promise<AckOk> {
    const { ack } = await this.#submit('join_room', room);
    if (!this.#rooms.has(room)) {
      this.#rooms.add(room);
      this.#events.emit('rooms', this.rooms);
    }
    return ack;
  }

  /** Leaves `room`; it is forgotten at once, so a reconnect meanwhile does not re-join it. */
  async leaveRoom(room: string): Promise<AckOk> {
    if (this.#rooms.delete(room)) this.#events.emit('rooms', this.rooms);
    return (await this.#submit('leave_room', room)).ack;
  }

  /** Sends a `room_message`: a string becomes `{text}`; `room` is set for you. */
  async sendToRoom(room: string, message: string | ChatContent): Promise<AckOk> {
    return (await this.#submit('room_message', { ...asContent(message), room })).ack;
  }

  /** Sends a `user_message` to every connection of `userId`. */
  async sendToUser(userId: string, message: string | ChatContent): Promise<AckOk> {
    return (await this.#submit('user_message', { ...asContent(message), to: userId })).ack;
  }

  /** Round trip to the gateway and back, in ms (measured from sending, not from queueing). */
  async ping(content: unknown = null): Promise<number> {
    return (await this.#submit('ping', content)).rttMs;
  }

  /** Which of `userIds` are online anywhere in the cluster (the gateway's `presence` event). */
  async presence(userIds: readonly string[]): Promise<Record<string, 'online' | 'offline'>> {
    const { users } = (await this.#submit('presence', userIds)).ack;
    return isRecord(users) ? (users as Record<string, 'online' | 'offline'>) : {};
  }

  /**
   * A room's last messages (at most `limit`, 100 by default and at most), oldest first, each
   * with its `offset`; `before` an offset to page back. Members only; `user:<own id>` returns
   * what was sent to this user. For what was missed when a reconnect did not recover.
   */
  async history(room: string, options: { limit?: number; before?: string } = {}): Promise<Envelope[]> {
    const { messages } = (await this.#submit('history', { room, ...options })).ack;
    if (!Array.isArray(messages)) return [];
    return messages.filter(isRecord).map((message) => toEnvelope(String(message['type']), message));
  }

  /**
   * Receive `user_status` envelopes for `userIds` (`'*'`: every user) from now on, also after a
   * reconnect; resolves to their current status (`{}` for `'*'`). Needed with a gateway started
   * with `--presence-announce watchers`; harmless with `all`, where each change still arrives once.
   */
  async watchPresence(userIds: readonly string[] | '*'): Promise<Record<string, 'online' | 'offline'>> {
    const { ack } = await this.#submit('watch_presence', userIds === '*' ? '*' : [...userIds]);
    if (userIds === '*') this.#watchingEveryone = true;
    else for (const id of userIds) this.#watched.add(id);
    const users = ack['users'];
    return isRecord(users) ? (users as Record<string, 'online' | 'offline'>) : {};
  }

  /** Stops watching `userIds` (`'*'`: stops watching everyone; single users stay watched). */
  async unwatchPresence(userIds: readonly string[] | '*'): Promise<AckOk> {
    if (userIds === '*') this.#watchingEveryone = false;
    else for (const id of userIds) this.#watched.delete(id);
    return (await this.#submit('unwatch_presence', userIds === '*' ? '*' : [...userIds])).ack;
  }

  /**
   * Any other client event, with the same ack, queueing and error handling as the helpers.
   * Room membership changes must go through joinRoom/leaveRoom to be re-joined on reconnect.
   */
  async request(event: string, content: unknown): Promise<AckOk> {
    return (await this.#submit(event, content)).ack;
  }

  #createSocket(): Socket {
    const { url, path, transports } = this.#options;
    const socket = io(url, {
      path: path ?? '/socket.io/',
      ...(transports ? { transports } : {}),
      autoConnect: false,
      reconnection: false,
      // One connection per client: never share a multiplexed Manager with another client.
      forceNew: true,
    });
    socket.on('connect', () => void this.#onConnect(socket.recovered));
    socket.on('connect_error', (error) => this.#onConnectError(error));
    socket.on('disconnect', () => this.#onDisconnect());
    socket.onAny((event: string, payload: unknown) => this.#onEvent(event, payload));
    return socket;
  }

  async #attempt(session: number): Promise<void> {
    let token: string;
    try {
      token = this.#options.getToken ? await this.#options.getToken() : (this.#options.token ?? '');
    } catch (error) {
      if (session !== this.#session) return;
      const failure = new Error(`getToken failed: ${error instanceof Error ? error.message : String(error)}`);
      this.#events.emit('connect_error', failure);
      this.#retry(failure);
      return;
    }
    if (session !== this.#session || !this.#socket) return;
    this.#socket.auth = { token };
    this.#socket.connect();
  }

  #onConnectError(error: Error & { data?: unknown }): void {
    const data = error.data;
    if (isRecord(data) && data['code'] === 401) {
      const authError = new AuthError(typeof data['message'] === 'string' ? data['message'] : error.message, 401);
      this.#events.emit('auth_error', authError);
      this.#close(authError);
      return;
    }
    this.#events.emit('connect_error', error);
    this.#retry(error);
  }

  /** Schedules the next attempt after a failure, or gives up after `maxAttempts`. */
  #retry(cause: Error): void {
    this.#failedAttempts += 1;
    if (this.#failedAttempts >= this.#policy.maxAttempts) {
      this.#close(new DisconnectedError(`gave up after ${this.#failedAttempts} attempts: ${cause.message}`));
      return;
    }
    const session = this.#session;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      void this.#attempt(session);
    }, backoffDelay(this.#failedAttempts - 1, this.#policy));
  }

  async #onConnect(recovered: boolean): Promise<void> {
    this.#failedAttempts = 0;
    const link = ++this.#link;
    const reconnect = this.#everConnected;
    this.#everConnected = true;
    if (reconnect) {
      this.#recovered = recovered;
      this.#events.emit('recovery', { recovered });
    }
    // a resumed session has its rooms back already; a new one joins them again
    if (!recovered) await this.#rejoinRooms(link);
    if (link !== this.#link) return;
    await this.#rewatch(); // watches are not part of a recovered session
    if (link !== this.#link) return;
    this.#setState('connected');
    for (const waiter of this.#waiters.splice(0)) waiter.resolve();
    await this.#flush(link);
  }

  #onDisconnect(): void {
    this.#link += 1;
    this.#flushing = false;
    // The engine can also close before the first connect completes: that is still `connecting`.
    this.#setState(this.#state === 'connecting' ? 'connecting' : 'reconnecting');
    // Whatever the reason (transport lost, server restart, server-side kick), try again: a
    // kick for a bad or revoked token ends in a 401 on the next attempt, which stops the loop.
    this.#retry(new DisconnectedError());
  }

  #onEvent(event: string, payload: unknown): void {
    const envelope = toEnvelope(event, payload);
    if (!this.#seen.firstTime(envelope.id)) return;
    this.#events.emit('envelope', envelope);
    if (!LIFECYCLE_EVENTS.has(envelope.type)) this.#events.emit(envelope.type, envelope);
  }

  /**
   * Re-joins every remembered room in parallel. A room the gateway now refuses is forgotten;
   * one lost to a timeout or a new disconnect is kept for the next reconnect.
   */
  async #rejoinRooms(link: number): Promise<void> {
    const results = await Promise.allSettled([...this.#rooms].map((room) => this.#transmit('join_room', room)));
    if (link !== this.#link) return;
    const refused = [...this.#rooms].filter((_, index) => {
      const result = results[index];
      return result?.status === 'rejected' && result.reason instanceof ServerError;
    });
    for (const room of refused) this.#rooms.delete(room);
    if (refused.length > 0) this.#events.emit('rooms', this.rooms);
  }

  /** Watches again what was watched (at most 1000 ids per request, the gateway's limit). */
  async #rewatch(): Promise<void> {
    const ids = [...this.#watched];
    const batches: unknown[] = this.#watchingEveryone ? ['*'] : [];
    for (let i = 0; i < ids.length; i += 1000) batches.push(ids.slice(i, i + 1000));
    await Promise.allSettled(batches.map((batch) => this.#transmit('watch_presence', batch)));
  }

  /**
   * Sends the queue one request at a time, each after the previous one's ack: the gateway may
   * handle concurrent events out of order, and a queued join must land before the room
   * message behind it. Requests made meanwhile go to the back of the queue.
   */
  async #flush(link: number): Promise<void> {
    this.#flushing = true;
    try {
      while (link === this.#link) {
        const request = this.#queue.shift();
        if (!request) break;
        await this.#transmit(request.event, request.content).then(request.resolve, request.reject);
      }
    } finally {
      if (link === this.#link) this.#flushing = false;
    }
  }

  #submit(event: string, content: unknown): Promise<Acknowledged> {
    return new Promise((resolve, reject) => {
      const request: PendingRequest = { event, content, resolve, reject };
      if (this.#state === 'connected' && !this.#flushing && this.#queue.size === 0) {
        this.#transmit(event, content).then(resolve, reject);
        return;
      }
      for (const dropped of this.#queue.push(request)) {
        dropped.reject(new QueueOverflowError());
        this.#events.emit('queue_drop', { event: dropped.event, content: dropped.content });
      }
    });
  }

  /** Emits one event on the live socket and settles with its acknowledgement. */
  #transmit(event: string, content: unknown): Promise<Acknowledged> {
    const socket = this.#socket;
    if (!socket) return Promise.reject(new ClientClosedError());
    return new Promise((resolve, reject) => {
      const sentAt = performance.now();
      socket.timeout(this.#ackTimeoutMs).emit(event, content, (error: Error | null, reply: unknown) => {
        if (error) {
          // socket.io-client reports a lost connection and a timeout alike; tell them apart.
          reject(socket.connected ? new TimeoutError() : new DisconnectedError());
          return;
        }
        const outcome = parseAck(reply);
        if (outcome instanceof ServerError) reject(outcome);
        else resolve({ ack: outcome, rttMs: performance.now() - sentAt });
      });
    });
  }

  /** Ends the session: no more retries; waiters and queued requests reject with `reason`. */
  #close(reason: RealtimeError): void {
    this.#session += 1;
    this.#link += 1;
    this.#flushing = false;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    const socket = this.#socket;
    this.#socket = null;
    if (socket) {
      socket.off();
      socket.offAny();
      socket.disconnect();
    }
    for (const request of this.#queue.drain()) request.reject(reason);
    for (const waiter of this.#waiters.splice(0)) waiter.reject(reason);
    this.#setState('disconnected');
  }

  #setState(state: ConnectionState): void {
    if (state === this.#state) return;
    this.#state = state;
    this.#events.emit('state', state);
  }
}

function asContent(message: string | ChatContent): ChatContent {
  return typeof message === 'string' ? { text: message } : message;
}

/** `{ok: false, error: {code, message}}` becomes a ServerError; anything else is success. */
function parseAck(reply: unknown): AckOk | ServerError {
  if (isRecord(reply) && reply['ok'] === false) {
    const error = isRecord(reply['error']) ? reply['error'] : {};
    const code = typeof error['code'] === 'number' ? error['code'] : 500;
    const message = typeof error['message'] === 'string' ? error['message'] : 'request refused';
    return new ServerError(message, code);
  }
  return { ...(isRecord(reply) ? reply : {}), ok: true };
}
