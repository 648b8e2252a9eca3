/**
 * GatewayWebSocket: the browser WebSocket interface on top of RealtimeClient, so code written
 * for the gateway's plain-WebSocket endpoint moves to Socket.IO (long-polling fallback,
 * reconnect, room re-join, offline queue) by changing only its constructor.
 *
 * The one deliberate difference from a raw WebSocket: a connection drop the client recovers
 * from is invisible. The object stays OPEN, `send()` queues while offline, and `close` fires
 * once, when the connection ends for good (`close()`, a refused token, or reconnecting given
 * up). Code like the seed store, which reconnects by constructing a new socket in `onclose`,
 * would otherwise open a second connection next to the one the client is already restoring.
 * The gateway resumes the session on reconnect (rooms restored, missed messages replayed, no
 * message delivered twice); a `recovery` event (a {@link GatewayRecoveryEvent}) says whether it
 * could, so an application can reload what it missed when it could not.
 */
import { RealtimeClient, type RealtimeClientOptions } from './client.js';
import { localEnvelope, type Envelope } from './envelope.js';
import { errorContent, RealtimeError, ServerError } from './errors.js';
import { parseFrame, sendFrame, type ClientFrame } from './frames.js';

/** Client options; `url` and `token` default to what the WebSocket URL says. */
export type GatewayWebSocketOptions = Omit<RealtimeClientOptions, 'url' | 'token'> & {
  /** Gateway base URL. Default: the WebSocket URL's origin with ws(s) mapped to http(s). */
  url?: string;
  /** Token. Default: the WebSocket URL's `?token=` query parameter. */
  token?: string;
};

/** Close code when the gateway refused the token (RFC 6455 "policy violation"). */
export const CLOSE_AUTH_REFUSED = 1008;
/** Close code when reconnecting was given up (what a browser reports for a lost connection). */
export const CLOSE_ABNORMAL = 1006;

/** The close event; its own class because Node has no global CloseEvent. */
export class GatewayCloseEvent extends Event {
  readonly code: number;
  readonly reason: string;
  readonly wasClean: boolean;

  constructor(code: number, reason: string, wasClean: boolean) {
    super('close');
    this.code = code;
    this.reason = reason;
    this.wasClean = wasClean;
  }
}

/** Dispatched after every reconnect: `recovered` false means messages sent meanwhile are missing. */
export class GatewayRecoveryEvent extends Event {
  readonly recovered: boolean;

  constructor(recovered: boolean) {
    super('recovery');
    this.recovered = recovered;
  }
}

type Handler<E extends Event> = ((this: WebSocket, event: E) => unknown) | null;
type HandlerType = 'open' | 'message' | 'close' | 'error';

/**
 * `implements WebSocket` keeps it assignable wherever code declared a WebSocket, e.g. the
 * seed store's `ref<WebSocket | null>`, so swapping the constructor also type-checks.
 */
export class GatewayWebSocket extends EventTarget implements WebSocket {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  readonly CONNECTING = 0 as const;
  readonly OPEN = 1 as const;
  readonly CLOSING = 2 as const;
  readonly CLOSED = 3 as const;

  /**
   * A subclass whose constructor applies `options`, so call sites keep the plain
   * `new X(url)` form: `const GatewayWebSocket = Base.configure({url: gatewayUrl})`.
   */
  static configure(options: GatewayWebSocketOptions): typeof GatewayWebSocket {
    return class ConfiguredGatewayWebSocket extends GatewayWebSocket {
      constructor(url: string | URL, protocols?: string | string[]) {
        super(url, protocols, options);
      }
    };
  }

  readonly url: string;
  /** Socket.IO has no subprotocols or extensions; kept for interface compatibility. */
  readonly protocol = '';
  readonly extensions = '';
  binaryType: BinaryType = 'blob';
  /** Queued data is counted by `client.queued` (requests, not bytes); this stays 0. */
  readonly bufferedAmount = 0;
  /** The underlying client, for rooms, state and typed helpers. */
  readonly client: RealtimeClient;

  #readyState = GatewayWebSocket.CONNECTING;
  /** Envelopes that arrived before `open` (e.g. `welcome`), delivered right after it. */
  #early: Envelope[] = [];
  readonly #handlers = new Map<HandlerType, { handler: Handler<never>; listener: (event: Event) => void }>();
  readonly #unsubscribe: Array<() => void>;

  /** `_protocols` is accepted for signature compatibility; Socket.IO has no subprotocols. */
  constructor(url: string | URL, _protocols?: string | string[], options: GatewayWebSocketOptions = {}) {
    super();
    const target = new URL(String(url), globalThis.location?.href);
    this.url = target.href;
    const { url: gatewayUrl, token, ...clientOptions } = options;
    const resolvedToken = token ?? target.searchParams.get('token');
    this.client = new RealtimeClient({
      ...clientOptions,
      url: gatewayUrl ?? `${target.protocol.replace(/^ws/, 'http')}//${target.host}`,
      ...(resolvedToken !== null ? { token: resolvedToken } : {}),
    });
    this.#unsubscribe = [
      this.client.on('state', (state) => {
        if (state === 'connected') this.#open();
        else if (state === 'disconnected') this.#finish(CLOSE_ABNORMAL, 'connection to the gateway lost', true);
      }),
      this.client.on('auth_error', (error) => this.#finish(CLOSE_AUTH_REFUSED, error.message, true)),
      this.client.on('envelope', (envelope) => this.#deliver(envelope)),
      this.client.on('recovery', ({ recovered }) => this.dispatchEvent(new GatewayRecoveryEvent(recovered))),
    ];
    // Failures are reported through the close/error events, as a WebSocket does.
    this.client.connect().catch(() => undefined);
  }

  get readyState(): number {
    return this.#readyState;
  }

  /** Makes `Object.prototype.toString` say "[object WebSocket]": Vue's ref() then leaves it unproxied. */
  get [Symbol.toStringTag](): string {
    return 'WebSocket';
  }

  get onopen(): Handler<Event> {
    return this.#getHandler('open');
  }
  set onopen(handler: Handler<Event>) {
    this.#setHandler('open', handler);
  }
  get onmessage(): Handler<MessageEvent> {
    return this.#getHandler('message');
  }
  set onmessage(handler: Handler<MessageEvent>) {
    this.#setHandler('message', handler);
  }
  get onclose(): Handler<CloseEvent> {
    return this.#getHandler('close');
  }
  set onclose(handler: Handler<CloseEvent>) {
    this.#setHandler('close', handler);
  }
  get onerror(): Handler<Event> {
    return this.#getHandler('error');
  }
  set onerror(handler: Handler<Event>) {
    this.#setHandler('error', handler);
  }

  /**
   * Sends one JSON frame `{type, content}` (the /ws protocol). A frame with an `id` is answered
   * by an `ack` message `{id, ok, ...}`; a failure without an id arrives as an `error` message,
   * and so does binary data, which the gateway's JSON protocol has no place for.
   */
  send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void {
    if (this.#readyState === GatewayWebSocket.CONNECTING) {
      throw new DOMException("Failed to execute 'send' on 'WebSocket': Still in CONNECTING state.", 'InvalidStateError');
    }
    if (this.#readyState !== GatewayWebSocket.OPEN) return;
    let frame: ClientFrame;
    try {
      if (typeof data !== 'string') throw new ServerError('binary frames are not supported', 400);
      frame = parseFrame(data);
    } catch (error) {
      this.#reply({}, error);
      return;
    }
    sendFrame(this.client, frame).then(
      (ack) => this.#reply(frame, null, ack),
      (error: unknown) => this.#reply(frame, error),
    );
  }

  close(code = 1000, reason = ''): void {
    if (this.#readyState >= GatewayWebSocket.CLOSING) return;
    this.#readyState = GatewayWebSocket.CLOSING;
    this.#detach();
    this.client.disconnect();
    // A browser reports the close asynchronously, after the closing handshake.
    setTimeout(() => this.#finish(code, reason, false), 0);
  }

  #open(): void {
    if (this.#readyState !== GatewayWebSocket.CONNECTING) return;
    this.#readyState = GatewayWebSocket.OPEN;
    this.dispatchEvent(new Event('open'));
    for (const envelope of this.#early.splice(0)) this.#deliver(envelope);
  }

  #deliver(envelope: Envelope): void {
    if (this.#readyState === GatewayWebSocket.CONNECTING) this.#early.push(envelope);
    else if (this.#readyState === GatewayWebSocket.OPEN) {
      this.dispatchEvent(new MessageEvent('message', { data: JSON.stringify(envelope) }));
    }
  }

  /** Answers a sent frame the way the gateway's /ws endpoint would. */
  #reply(frame: Pick<ClientFrame, 'id'>, error: unknown, ack?: object): void {
    const failure = error instanceof RealtimeError ? errorContent(error) : { code: 500, message: String(error) };
    if (frame.id !== undefined) {
      this.#deliver(localEnvelope('ack', error === null ? { ...ack, id: frame.id } : { id: frame.id, ok: false, error: failure }));
    } else if (error !== null) {
      this.#deliver(localEnvelope('error', failure));
    }
  }

  #finish(code: number, reason: string, withError: boolean): void {
    if (this.#readyState === GatewayWebSocket.CLOSED) return;
    this.#readyState = GatewayWebSocket.CLOSED;
    this.#detach();
    if (withError) this.dispatchEvent(new Event('error'));
    this.dispatchEvent(new GatewayCloseEvent(code, reason, !withError));
  }

  #detach(): void {
    for (const unsubscribe of this.#unsubscribe.splice(0)) unsubscribe();
  }

  #getHandler<E extends Event>(type: HandlerType): Handler<E> {
    return (this.#handlers.get(type)?.handler ?? null) as Handler<E>;
  }

  /** `onX = fn` behaves as in the DOM: one listener slot per type, replaced on assignment. */
  #setHandler<E extends Event>(type: HandlerType, handler: Handler<E>): void {
    const previous = this.#handlers.get(type);
    if (previous) this.removeEventListener(type, previous.listener);
    this.#handlers.delete(type);
    if (typeof handler !== 'function') return;
    const listener = (event: Event): void => void handler.call(this, event as E);
    this.#handlers.set(type, { handler: handler as Handler<never>, listener });
    this.addEventListener(type, listener);
  }
}
