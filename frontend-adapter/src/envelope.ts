/**
 * The gateway's message envelope: every server-to-client message, whatever its origin, is one
 * envelope, delivered as a Socket.IO event whose name equals `type`.
 */

/** `content` of a `welcome` envelope, sent once right after a connection is accepted. */
export interface WelcomeContent {
  sid: string;
  user_id: string;
  username: string;
  server_time: number;
  /** `socket.io` or `websocket` (the plain /ws endpoint). */
  transport?: string;
  /** Which gateway process serves the connection. */
  node?: string;
  /** The session id to resume with (the plain /ws endpoint's `?session=`); absent when recovery is off. */
  session?: string;
  /** True when this connection resumed an earlier one: rooms restored, missed messages replayed. */
  recovered?: boolean;
}

/** `content` of an `error` envelope and of a rejected acknowledgement. */
export interface ErrorContent {
  code: number;
  message: string;
}

export interface NotificationContent {
  title: string;
  body: string;
  icon?: string;
  link?: string;
}

export interface UserStatusContent {
  user_id: string;
  user_name: string;
  status: 'online' | 'offline';
}

/** Free-form chat content: the gateway forwards what the sender put there (usually `text`). */
export interface ChatContent {
  text?: string;
  [key: string]: unknown;
}

/** The content type of each envelope type the gateway documents. */
export interface EnvelopeContentMap {
  welcome: WelcomeContent;
  room_message: ChatContent;
  user_message: ChatContent;
  pong: unknown;
  error: ErrorContent;
  system: Record<string, unknown>;
  notification: NotificationContent;
  data_update: Record<string, unknown>;
  user_status: UserStatusContent;
  /** The answer to a `presence` request, also sent as an envelope. */
  presence: { users: Record<string, 'online' | 'offline'> };
}

export type EnvelopeType = keyof EnvelopeContentMap;

/**
 * One message from the gateway. `T` narrows `content` for the documented types; any other
 * string (types a back end invents) gives `content: unknown`.
 */
export interface Envelope<T extends string = string> {
  type: T;
  content: T extends EnvelopeType ? EnvelopeContentMap[T] : unknown;
  /** Unix time in seconds, set by the server. */
  timestamp: number;
  /** Unique per message: use it as a list key or to de-duplicate. */
  id: string;
  from?: string;
  from_name?: string;
  room?: string;
  to?: string;
  /** The position in the gateway's stream (history answers; plain /ws envelopes). Opaque. */
  offset?: string;
}

/** Union of the documented envelopes, so a `switch (envelope.type)` narrows `content`. */
export type KnownEnvelope = { [K in EnvelopeType]: Envelope<K> }[EnvelopeType];

/** A successful acknowledgement; the gateway may add fields (e.g. the room joined). */
export interface AckOk {
  ok: true;
  [key: string]: unknown;
}

let localSequence = 0;

/**
 * An envelope made on the client (e.g. the `ack` frames of the WebSocket shim). Its id is
 * prefixed `local-` so it can never collide with a server id; `crypto.randomUUID` is avoided
 * because browsers only offer it in secure contexts.
 */
export function localEnvelope<T extends string>(type: T, content: Envelope<T>['content']): Envelope<T> {
  localSequence += 1;
  return {
    type,
    content,
    timestamp: Math.floor(Date.now() / 1000),
    id: `local-${Date.now().toString(36)}-${localSequence}`,
  };
}

/**
 * Turns what a Socket.IO event carried into an envelope. The gateway always sends a whole
 * envelope, but events emitted by other back ends through the same server may carry a bare
 * payload; those are wrapped so listeners see one shape.
 */
export function toEnvelope(event: string, payload: unknown): Envelope {
  if (isRecord(payload) && typeof payload['type'] === 'string' && 'content' in payload) {
    return payload as unknown as Envelope;
  }
  return localEnvelope(event, payload);
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
