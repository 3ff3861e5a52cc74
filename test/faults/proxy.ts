import net from 'node:net';

/**
 * A TCP proxy between a client and Postgres that understands just enough of the frontend
 * protocol to see each message the client sends. Once armed, it forwards a simple-query COMMIT
 * and then cuts both connections before Postgres's reply can come back: the client cannot know
 * whether the transaction committed (it did: Postgres read the COMMIT before the FIN).
 */
export interface PgProxy {
  port: number;
  /** Cut the next `times` connections that send COMMIT, right after forwarding it. */
  armCommitCut(times?: number): void;
  /** COMMITs cut so far. */
  readonly cuts: number;
  /** Resolves when the next cut happens. */
  nextCut(): Promise<void>;
  /** Stop listening and drop every connection: clients get ECONNREFUSED. */
  down(): Promise<void>;
  /** Listen again on the same port. */
  up(): Promise<void>;
  /** Accept connections but never forward anything (a server that does not answer). */
  blackhole(on: boolean): void;
  close(): Promise<void>;
}

const COMMIT = /^\s*commit\s*;?\s*$/i;

export async function startProxy(target = { host: '127.0.0.1', port: 5432 }): Promise<PgProxy> {
  let armed = 0;
  let cuts = 0;
  let hole = false;
  let waiters: (() => void)[] = [];
  const sockets = new Set<net.Socket>();

  const onConnection = (client: net.Socket) => {
    sockets.add(client);
    client.setNoDelay(true);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    if (hole) return; // accept, read nothing, answer nothing
    const server = net.connect(target);
    server.setNoDelay(true);
    sockets.add(server);
    server.on('close', () => sockets.delete(server));
    server.on('error', () => client.destroy());
    client.on('close', () => server.destroy());
    server.on('close', () => client.destroy());
    server.pipe(client);

    let buf: Buffer = Buffer.alloc(0);
    let startup = true;
    let cut = false;
    client.on('data', (data: Buffer) => {
      if (cut) return;
      buf = buf.length ? Buffer.concat([buf, data]) : data;
      for (;;) {
        // Startup-phase messages carry no type byte: int32 length, then the body.
        const head = startup ? 0 : 1;
        if (buf.length < head + 4) break;
        const len = buf.readInt32BE(head);
        const total = head + len;
        if (buf.length < total) break;
        const msg = buf.subarray(0, total);
        buf = buf.subarray(total);
        if (startup) {
          const code = len >= 8 ? msg.readInt32BE(4) : 0;
          // SSLRequest and GSSENCRequest are followed by another startup message.
          if (code !== 80877103 && code !== 80877104) startup = false;
          server.write(msg);
          continue;
        }
        const type = String.fromCharCode(msg[0]!);
        if (type === 'Q' && armed > 0) {
          const text = msg.subarray(5, total - 1).toString('utf8');
          if (COMMIT.test(text)) {
            armed--;
            cut = true;
            cuts++;
            // COMMIT reaches Postgres, then FIN; the client side is cut at once, so the
            // reply (CommandComplete) is never delivered.
            server.unpipe(client);
            server.end(msg);
            client.destroy();
            server.on('end', () => server.destroy());
            const w = waiters;
            waiters = [];
            for (const f of w) f();
            return;
          }
        }
        server.write(msg);
      }
    });
  };

  let listener = net.createServer(onConnection);
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const port = (listener.address() as net.AddressInfo).port;

  const proxy: PgProxy = {
    port,
    armCommitCut(times = 1) {
      armed = times;
    },
    get cuts() {
      return cuts;
    },
    nextCut() {
      return new Promise((resolve) => waiters.push(resolve));
    },
    async down() {
      await new Promise<void>((resolve) => {
        listener.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
    },
    async up() {
      listener = net.createServer(onConnection);
      await new Promise<void>((resolve, reject) => {
        listener.once('error', reject);
        listener.listen(port, '127.0.0.1', () => resolve());
      });
    },
    blackhole(on) {
      hole = on;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => {
        if (!listener.listening) return resolve();
        listener.close(() => resolve());
      });
    },
  };
  return proxy;
}
