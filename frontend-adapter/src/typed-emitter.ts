/**
 * A minimal synchronous event emitter keyed by an event map. A listener that throws does not
 * stop the others or the caller (often socket.io-client's own dispatch): the error is rethrown
 * on a fresh microtask, where it surfaces like an error in a DOM event listener.
 */
export class TypedEmitter<Events extends object> {
  readonly #listeners = new Map<keyof Events, Set<(value: never) => void>>();

  on<K extends keyof Events>(type: K, listener: (value: Events[K]) => void): () => void {
    let set = this.#listeners.get(type);
    if (!set) {
      set = new Set();
      this.#listeners.set(type, set);
    }
    set.add(listener);
    return () => this.off(type, listener);
  }

  off<K extends keyof Events>(type: K, listener: (value: Events[K]) => void): void {
    this.#listeners.get(type)?.delete(listener);
  }

  emit<K extends keyof Events>(type: K, value: Events[K]): void {
    const set = this.#listeners.get(type);
    if (!set) return;
    for (const listener of [...set] as Array<(value: Events[K]) => void>) {
      try {
        listener(value);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}
