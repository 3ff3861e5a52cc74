import type { Readable, Writable } from 'node:stream';

/**
 * The subset of node-postgres that the core needs: a pool that hands out clients, and clients
 * that run queries and COPY streams. Any pg.Pool satisfies it.
 */
export interface QueryConfig {
  text: string;
  values?: unknown[];
  /** Per-query type parsers (pg's CustomTypesConfig). */
  types?: { getTypeParser: (oid: number, format?: string) => (value: string) => unknown };
  rowMode?: 'array';
}

export interface QueryResultLike {
  rows: unknown[];
  rowCount: number | null;
}

export interface Queryable {
  query(config: QueryConfig): Promise<QueryResultLike>;
}

/** A pg-copy-streams submittable: what client.query returns for a COPY. */
export interface CopySubmittable {
  submit(connection: unknown): void;
}

export interface DbClient extends Queryable {
  query(config: QueryConfig): Promise<QueryResultLike>;
  query<T extends CopySubmittable & (Readable | Writable)>(copy: T): T;
  /** Pass an error (or true) to destroy the connection instead of returning it to the pool. */
  release(destroy?: Error | boolean): void;
  on(event: 'error', listener: (err: Error) => void): unknown;
  removeListener(event: 'error', listener: (err: Error) => void): unknown;
  processID?: number;
}

export interface DbPool extends Queryable {
  connect(): Promise<DbClient>;
  end(): Promise<void>;
  on(event: 'error', listener: (err: Error, client: unknown) => void): unknown;
  /** pg.Pool emits 'connect' with each new client, before handing it out. */
  on(event: 'connect', listener: (client: DbClient) => void): unknown;
  removeListener(event: 'error', listener: (err: Error, client: unknown) => void): unknown;
  readonly totalCount?: number;
  readonly idleCount?: number;
}
