import type { DbClient, DbPool } from './db.js';

const noop = () => {};

/**
 * Borrow a client for fn. An error listener is attached for the duration (a backend dying
 * between queries must not crash the process). If fn fails the client is destroyed rather than
 * returned: after a failed COPY or a lost connection its protocol state cannot be trusted.
 */
export async function withClient<T>(
  pool: DbPool,
  fn: (client: DbClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  client.on('error', noop);
  try {
    const out = await fn(client);
    client.removeListener('error', noop);
    client.release();
    return out;
  } catch (err) {
    // The listener stays: a destroyed connection can still report its end (a backend killed
    // mid-query sends FATAL, then the socket closes), and an error event with no listener
    // would crash the process.
    client.release(err instanceof Error ? err : new Error(String(err)));
    throw err;
  }
}

/**
 * BEGIN, fn, COMMIT on one client; ROLLBACK is implied by destroying the client on failure.
 * A failure while COMMIT is in flight leaves the outcome in doubt: callers that retry must make
 * the replay a no-op (the chunk ledger does).
 */
export async function withTransaction<T>(
  pool: DbPool,
  fn: (client: DbClient) => Promise<T>,
  options: { idleTimeoutMs?: number } = {},
): Promise<T> {
  const idle = options.idleTimeoutMs ?? 0;
  // With idleTimeoutMs, the server ends a transaction left idle that long: if this process
  // vanishes without closing its socket (a partition), the chunk's ledger claim is released
  // instead of blocking every replay of the chunk until TCP gives up. One round trip either way.
  const begin =
    idle > 0
      ? `BEGIN; SET LOCAL idle_in_transaction_session_timeout = ${Math.ceil(idle)}`
      : 'BEGIN';
  return withClient(pool, async (client) => {
    await client.query({ text: begin });
    const out = await fn(client);
    const done = (await client.query({ text: 'COMMIT' })) as { command?: string };
    // COMMIT of a transaction that already failed answers ROLLBACK instead of an error.
    if (done.command !== undefined && done.command !== 'COMMIT') {
      throw new Error(`transaction was rolled back (COMMIT answered ${done.command})`);
    }
    return out;
  });
}
