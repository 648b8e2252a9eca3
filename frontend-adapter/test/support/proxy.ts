/**
 * A TCP proxy in front of a gateway, to break a client's connection the way a network does:
 * `cut()` destroys every connection through it at once and, until `unblock()`, closes new ones
 * as soon as they arrive (the client keeps retrying), so what is sent meanwhile is missed.
 */
import { once } from 'node:events';
import { createConnection, createServer, type Socket } from 'node:net';

export class TcpProxy {
  url = '';
  #blocked = false;
  readonly #sockets = new Set<Socket>();
  readonly #server = createServer((client) => this.#accept(client));

  constructor(readonly targetPort: number) {}

  static async start(targetPort: number): Promise<TcpProxy> {
    const proxy = new TcpProxy(targetPort);
    proxy.#server.listen(0, '127.0.0.1');
    await once(proxy.#server, 'listening');
    const address = proxy.#server.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    proxy.url = `http://127.0.0.1:${address.port}`;
    return proxy;
  }

  #accept(client: Socket): void {
    if (this.#blocked) {
      client.destroy();
      return;
    }
    const upstream = createConnection(this.targetPort, '127.0.0.1');
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      this.#sockets.add(from);
      from.on('data', (chunk) => to.write(chunk));
      from.on('close', () => {
        this.#sockets.delete(from);
        to.destroy();
      });
      from.on('error', () => to.destroy());
    }
  }

  /** Breaks every connection through the proxy and refuses new ones until `unblock()`. */
  cut(): void {
    this.#blocked = true;
    for (const socket of this.#sockets) socket.destroy();
  }

  unblock(): void {
    this.#blocked = false;
  }

  async close(): Promise<void> {
    this.cut();
    const closed = once(this.#server, 'close');
    this.#server.close();
    await closed;
  }
}
