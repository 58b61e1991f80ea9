import net from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 that delays every chunk by `ms` each way, keeping order (`tc netem` is not
 * available here). A side's end or close reaches the other side `ms` later too, so a disconnect travels.
 */
export async function delayProxy(
  target: number,
  ms: number,
): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    const pipe = (from: net.Socket, to: net.Socket): void => {
      from.on('data', (chunk) => setTimeout(() => to.destroyed || to.write(chunk), ms));
      from.on('end', () => setTimeout(() => to.destroyed || to.end(), ms));
      from.on('close', () => setTimeout(() => to.destroy(), ms));
    };
    pipe(client, upstream);
    pipe(upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
