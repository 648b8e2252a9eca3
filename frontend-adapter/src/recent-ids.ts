/**
 * The ids of the last `capacity` envelopes handed to the application, to drop a second copy.
 *
 * The gateway replays what a resumed connection missed; an envelope may then arrive twice (one
 * copy in flight when the connection broke and one replayed, or the same message sent again by
 * a back end that retried). Bounded: the oldest id is forgotten first, so memory stays flat.
 */
export class RecentIds {
  readonly #ids = new Set<string>();
  readonly #capacity: number;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`dedup capacity must be a positive integer, got ${capacity}`);
    }
    this.#capacity = capacity;
  }

  /** True the first time `id` is seen (and remembers it); false for a repeat. */
  firstTime(id: string): boolean {
    if (this.#ids.has(id)) return false;
    this.#ids.add(id);
    if (this.#ids.size > this.#capacity) {
      // a Set iterates in insertion order: the first value is the oldest
      this.#ids.delete(this.#ids.values().next().value as string);
    }
    return true;
  }
}
