/**
 * Every promise of the client rejects with a subclass of {@link RealtimeError}, so callers can
 * branch on `instanceof` (or on `code`) instead of parsing messages.
 */

export type LocalErrorCode = 'timeout' | 'disconnected' | 'closed' | 'queue_overflow';

export class RealtimeError extends Error {
  /** The gateway's numeric code (HTTP-like: 400, 401, 403, 429...) or a local reason. */
  readonly code: number | LocalErrorCode;

  constructor(message: string, code: number | LocalErrorCode) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The gateway refused a request: its acknowledgement was `{ok: false, error: {code, message}}`. */
export class ServerError extends RealtimeError {
  declare readonly code: number;
}

/**
 * The gateway refused the connection because of the token (code 401). The client stops
 * reconnecting: retrying with the same credentials cannot succeed.
 */
export class AuthError extends ServerError {}

/** No acknowledgement arrived within `ackTimeoutMs`; the request may or may not have been handled. */
export class TimeoutError extends RealtimeError {
  constructor(message = 'no acknowledgement from the gateway in time') {
    super(message, 'timeout');
  }
}

/**
 * The connection dropped while a request was in flight (delivery unknown), or the client gave
 * up reconnecting after `reconnect.maxAttempts`.
 */
export class DisconnectedError extends RealtimeError {
  constructor(message = 'the connection to the gateway was lost') {
    super(message, 'disconnected');
  }
}

/** `disconnect()` was called while the request was still queued or the connect pending. */
export class ClientClosedError extends RealtimeError {
  constructor(message = 'the client was disconnected by the application') {
    super(message, 'closed');
  }
}

/** The offline queue was full and this, its oldest request, was dropped to make room. */
export class QueueOverflowError extends RealtimeError {
  constructor(message = 'dropped from the full offline queue') {
    super(message, 'queue_overflow');
  }
}

/**
 * The `{code, message}` an error envelope carries for `error`. Local reasons get HTTP-like
 * numbers so code written for the gateway's numeric codes can handle them too: 408 for a
 * timeout, 503 when the request could not be delivered (connection lost, closed, queue full).
 */
export function errorContent(error: RealtimeError): { code: number; message: string } {
  if (typeof error.code === 'number') return { code: error.code, message: error.message };
  return { code: error.code === 'timeout' ? 408 : 503, message: error.message };
}
