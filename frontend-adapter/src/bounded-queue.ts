/** A FIFO with a fixed capacity that makes room by evicting its oldest item. */
export class BoundedQueue<T> {
  readonly #items: T[] = [];
  readonly #capacity: number;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 0) {
      throw new RangeError(`queue capacity must be a non-negative integer, got ${capacity}`);
    }
    this.#capacity = capacity;
  }

  get size(): number {
    return this.#items.length;
  }

  /**
   * Appends `item`; returns the items evicted to stay within capacity (the oldest first, or
   * `item` itself when the capacity is 0).
   */
  push(item: T): T[] {
    this.#items.push(item);
    const excess = this.#items.length - this.#capacity;
    return excess > 0 ? this.#items.splice(0, excess) : [];
  }

  shift(): T | undefined {
    return this.#items.shift();
  }

  /** Empties the queue, returning everything it held in order. */
  drain(): T[] {
    return this.#items.splice(0);
  }
}
