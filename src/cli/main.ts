#!/usr/bin/env node
import { BulkError, fileOrInternalError } from '../core/errors.js';
import { redact } from '../core/logger.js';
import { EXIT, USAGE } from './args.js';

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'worker':
        // Each command loads only what it uses (a load need not load Express).
        return await (await import('./worker.js')).runWorker(rest);
      case 'dashboard':
        return await (await import('./dashboard.js')).runDashboard(rest);
      case 'demo':
        return await (await import('./demo.js')).runDemo(rest);
      case 'status':
        return await (await import('./status.js')).runStatus(rest);
      case 'load':
        return await (await import('./load.js')).runLoad(rest);
      case 'export':
        return await (await import('./export.js')).runExport(rest);
      case 'migrate':
        return await (await import('./migrate.js')).runMigrate(rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return cmd === undefined ? EXIT.usage : EXIT.ok;
      default:
        process.stderr.write(`unknown command ${JSON.stringify(cmd)}\n\n${USAGE}`);
        return EXIT.usage;
    }
  } catch (err) {
    if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`${(err as Error).message}\n(see bulkmodel ${cmd} --help)\n`);
      return EXIT.usage;
    }
    // A file the command could not open (a load's input, an export's directory).
    const file = fileOrInternalError(err);
    if (file?.code === 'FILE_ERROR') {
      process.stderr.write(`error FILE_ERROR: ${redact(file.message)}\n`);
      return EXIT.failed;
    }
    if (err instanceof BulkError) {
      process.stderr.write(`error ${err.code}: ${redact(err.message)}\n`);
      if (err.code === 'CONNECTION_FAILED') return EXIT.unreachable;
      if (err.code === 'INVALID_OPTION' || err.code === 'UNKNOWN_OPERATION') return EXIT.usage;
      return EXIT.failed;
    }
    process.stderr.write(`error: ${redact(String((err as Error)?.stack ?? err))}\n`);
    return EXIT.failed;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    // The worker and dashboard commands keep running until a signal; every other command ends here.
    if (code !== -1) process.exit(code);
  },
  (err) => {
    process.stderr.write(`${redact(String(err?.stack ?? err))}\n`);
    process.exit(EXIT.failed);
  },
);
