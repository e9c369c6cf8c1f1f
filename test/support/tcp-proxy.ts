import net from 'node:net';

/**
 * A loopback TCP proxy a test can cut: the service reaches the database through it, and
 * `cut()` drops every connection and refuses new ones, like a database that went away.
 */
export class TcpProxy {
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  async start(port = 0): Promise<number> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.targetPort, this.targetHost);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => s.destroy());
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as net.AddressInfo).port;
    return this.port;
  }

  async cut(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/**
 * A proxy in front of the MariaDB server a test database lives on, and `url` (a database URL on
 * that server) rewritten to go through it: the service reaches the database through the proxy,
 * and the test cuts it to make the database go away.
 */
export async function proxyFor(url: string): Promise<{ proxy: TcpProxy; via(url: string): string }> {
  const target = new URL(url);
  const proxy = new TcpProxy(target.hostname, Number(target.port || 3306));
  await proxy.start();
  return {
    proxy,
    via(other: string) {
      const u = new URL(other);
      u.host = `127.0.0.1:${proxy.port}`;
      return u.toString();
    },
  };
}
