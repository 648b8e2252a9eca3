/**
 * Reconnect delays: exponential growth, capped, with jitter so that thousands of clients cut off
 * by the same server restart do not all come back in the same millisecond.
 */

export interface ReconnectOptions {
  /** Delay before the first retry, in ms. Default 500. */
  initialDelayMs?: number;
  /** Upper bound of any delay, in ms. Default 10 000. */
  maxDelayMs?: number;
  /** Growth per failed attempt. Default 2. */
  factor?: number;
  /**
   * Share of each delay that is randomised, 0..1: a delay `d` becomes uniform in
   * `[d * (1 - jitter), d]`. Default 0.5.
   */
  jitter?: number;
  /** Failed attempts in a row after which the client gives up. Default: never gives up. */
  maxAttempts?: number;
}

export type BackoffPolicy = Required<ReconnectOptions>;

export const DEFAULT_BACKOFF: BackoffPolicy = {
  initialDelayMs: 500,
  maxDelayMs: 10_000,
  factor: 2,
  jitter: 0.5,
  maxAttempts: Number.POSITIVE_INFINITY,
};

/** Fills in defaults and rejects settings that would spin (zero factor) or never retry. */
export function backoffPolicy(options: ReconnectOptions = {}): BackoffPolicy {
  const policy = { ...DEFAULT_BACKOFF, ...options };
  if (!(policy.initialDelayMs >= 0) || !(policy.maxDelayMs >= policy.initialDelayMs)) {
    throw new RangeError('reconnect: need 0 <= initialDelayMs <= maxDelayMs');
  }
  if (!(policy.factor >= 1)) throw new RangeError('reconnect.factor must be >= 1');
  if (!(policy.jitter >= 0 && policy.jitter <= 1)) throw new RangeError('reconnect.jitter must be in [0, 1]');
  if (!(policy.maxAttempts >= 1)) throw new RangeError('reconnect.maxAttempts must be >= 1');
  return policy;
}

/** Delay before retry number `attempt` (0-based), never above `maxDelayMs`. */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const base = Math.min(policy.maxDelayMs, policy.initialDelayMs * policy.factor ** attempt);
  return base * (1 - policy.jitter * random());
}
