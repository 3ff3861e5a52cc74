import { BulkError } from '../core/errors.js';
import { redact } from '../core/logger.js';
import { DEFAULT_QUEUE_SCHEMA, QUEUE_SCHEMA_VERSION } from '../queue/pgSchema.js';
import { flag, optionsHelp, parse, str } from './args.js';
import { checkQueue, prepareQueueStore, queueTarget } from './services.js';

const USAGE = `bulkmodel migrate — create or upgrade the queue schema of the Postgres backend

Usage: bulkmodel migrate [--queue-database URL] [--queue-schema NAME] [--check]

The Postgres backend keeps its queues in one schema of the queue database: BullMQ's tables
(its own versioned migrations) and bulkmodel's beside them (operation records, progress,
events; versioned too). Workers, producers and the dashboard never change that schema by
themselves: run this once per release (or give one process --migrate / migrate: true).
It is safe to run again and from several places at once (an advisory lock serializes it).

Options:
${optionsHelp('migrate')}

Exit codes: 0 the schema is current, 1 --check found it missing or old, 2 bad usage,
3 Postgres unreachable.

Examples:
  bulkmodel migrate
  bulkmodel migrate --queue-database postgres://ops@queue-db/queues --queue-schema jobs
  bulkmodel migrate --check
`;

export async function runMigrate(argv: string[]): Promise<number> {
  const p = parse({ usage: USAGE, command: 'migrate' }, argv);
  if (!p) return 0;
  if (p.positionals.length > 0)
    throw new BulkError('INVALID_OPTION', `migrate takes no arguments, got ${p.positionals[0]}`);
  // Only the Postgres backend has a schema: --backend (and BULKMODEL_BACKEND) may be left out.
  if (str(p, 'backend') === undefined) p.values.backend = 'postgres';
  const target = queueTarget(p, str(p, 'database'));
  if (target.backend !== 'postgres')
    throw new BulkError(
      'INVALID_OPTION',
      'migrate is for --backend postgres (Redis has no schema)',
    );
  await checkQueue(target);
  const schema = target.queueSchema ?? DEFAULT_QUEUE_SCHEMA;
  const where = `schema ${schema} of ${redact(target.queueDatabase)}`;
  if (flag(p, 'check')) {
    try {
      await prepareQueueStore(target, false);
    } catch (err) {
      if (err instanceof BulkError && err.code === 'QUEUE_SCHEMA') {
        process.stdout.write(`${err.message}\n`);
        return 1;
      }
      throw err;
    }
    process.stdout.write(`${where}: current (bulkmodel version ${QUEUE_SCHEMA_VERSION})\n`);
    return 0;
  }
  await prepareQueueStore(target, true);
  process.stdout.write(`${where}: current (bulkmodel version ${QUEUE_SCHEMA_VERSION})\n`);
  return 0;
}
