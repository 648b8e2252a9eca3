/** Awaiting reactive state (Pinia stores) without polling: a synchronous Vue watcher. */
import { watch } from 'vue';

import { WAIT_MS } from './clients.js';
import { withTimeout } from './gateway.js';

/** Resolves with the first truthy value of `getter`, re-evaluated on every reactive change. */
export function until<T>(getter: () => T, what: string, ms = WAIT_MS): Promise<NonNullable<T>> {
  const current = getter();
  if (current) return Promise.resolve(current as NonNullable<T>);
  let stop = (): void => undefined;
  const seen = new Promise<NonNullable<T>>((resolve) => {
    stop = watch(getter, (value) => value && resolve(value as NonNullable<T>), { flush: 'sync', deep: true });
  });
  return withTimeout(seen, ms, what).finally(() => stop());
}
