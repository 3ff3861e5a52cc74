import { spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { DATABASE_URL } from './helpers.js';
import { killAll, queueName, REDIS_URL, runCli, until } from './queueHelpers.js';

/** `bulkmodel worker` as users meet it: help, usage errors, services that do not answer. */
afterAll(killAll);

/** A port nothing listens on (the discard port on loopback). */
const DEAD_PORT = 9;

async function run(args: string[], env: Record<string, string> = {}) {
  const c = runCli(args, env);
  const { code } = await c.exited;
  return { code, out: c.output() };
}

describe('bulkmodel worker CLI', () => {
  it('--help prints the usage and exits 0', async () => {
    const r = await run(['worker', '--help']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('--tables');
    expect(r.out).toContain('SIGTERM');
  });

  it('without --tables exits 2 and says what is missing', async () => {
    const r = await run(['worker', '--database', DATABASE_URL, '--redis', REDIS_URL], {
      BULKMODEL_TABLES: '',
    });
    expect(r.code).toBe(2);
    expect(r.out).toContain('--tables');
  });

  it('--heap-growth takes a whole percent (0: V8 decides); anything else exits 2', async () => {
    for (const bad of ['-1', '1.5', 'lots', '1001']) {
      const r = await run(['worker', '--tables', 'x', '--heap-growth', bad]);
      expect(r.code).toBe(2);
      expect(r.out).toContain('--heap-growth');
    }
    const help = await run(['worker', '--help']);
    expect(help.out).toContain('--heap-growth <pct>');
    // The V8 flag it sets exists in this node (setFlagsFromString ignores unknown flags).
    const v8 = spawnSync(process.execPath, ['--v8-options'], { encoding: 'utf8' });
    expect(v8.stdout).toContain('--heap-growing-percent');
    expect(spawnSync(process.execPath, ['--heap-growing-percent=100', '-e', '0']).status).toBe(0);
  });

  it('sets the heap growth at startup, unless node was given --heap-growing-percent', async () => {
    const flag = ['--heap-growing-percent=20'];
    const cases: [string[], string[], string][] = [
      [[], [], '"heapGrowthPercent":100'],
      [['--heap-growth', '30'], [], '"heapGrowthPercent":30'],
      [[], flag, '"heapGrowthPercent":"node flag"'],
      [['--heap-growth', '0'], flag, '"heapGrowthPercent":0'],
    ];
    for (const [extra, nodeArgs, expected] of cases) {
      const c = runCli(
        [
          'worker',
          '--tables',
          'items',
          '--queue',
          queueName('heap'),
          '--database',
          DATABASE_URL,
          '--redis',
          REDIS_URL,
          ...extra,
        ],
        { LOG_LEVEL: 'debug' },
        nodeArgs,
      );
      let ended = false;
      void c.exited.then(() => {
        ended = true;
      });
      await until('the worker to start', () => {
        if (ended) throw new Error(`the worker exited; it printed:\n${c.output()}`);
        return c.output().includes('bulkmodel worker started');
      });
      expect(c.output()).toContain(expected);
      c.child.kill('SIGTERM');
      expect((await c.exited).code).toBe(0);
    }
  });

  it('an unknown flag exits 2', async () => {
    const r = await run(['worker', '--tables', 'x', '--bogus']);
    expect(r.code).toBe(2);
  });

  it('an unreachable Redis exits 3, naming Redis and how to start it', async () => {
    const r = await run([
      'worker',
      '--tables',
      'items',
      '--database',
      DATABASE_URL,
      '--redis',
      `redis://127.0.0.1:${DEAD_PORT}`,
    ]);
    expect(r.code).toBe(3);
    expect(r.out).toContain('Redis');
    expect(r.out).toContain(`127.0.0.1:${DEAD_PORT}`);
    expect(r.out).toMatch(/redis-server|docker compose/);
  });

  it('an unreachable Postgres exits 3, naming Postgres and how to start it, never the password', async () => {
    const r = await run([
      'worker',
      '--tables',
      'items',
      '--database',
      `postgres://postgres:s3cret-pw@127.0.0.1:${DEAD_PORT}/x`,
      '--redis',
      REDIS_URL,
    ]);
    expect(r.code).toBe(3);
    expect(r.out).toContain('Postgres');
    expect(r.out).toMatch(/pg_ctlcluster|docker compose/);
    expect(r.out).not.toContain('s3cret-pw');
  });
});
