import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Queue } from 'bullmq';
import type { Router } from 'express';
import { summarizeJobData, summarizeReturnValue } from './summary.js';

/**
 * bull-board for bulkmodel's queue, to mount at `basePath`: operations and their chunk jobs show
 * as flow trees; job data and return values as summaries. Read-only unless actions are allowed
 * (then retries too; which actions pass is decided by `boardActions` in front of it).
 */
export function boardRouter(
  queues: readonly Queue[],
  basePath: string,
  allowActions: boolean,
): Router {
  const adapters = queues.map((queue) => {
    const adapter = new BullMQAdapter(queue, {
      readOnlyMode: !allowActions,
      allowRetries: allowActions,
      description: 'bulkmodel operations (parent jobs) and their chunks',
    });
    adapter.setFormatter('data', summarizeJobData);
    adapter.setFormatter('returnValue', summarizeReturnValue);
    return adapter;
  });
  const server = new ExpressAdapter();
  server.setBasePath(basePath);
  createBullBoard({
    queues: adapters,
    serverAdapter: server,
    options: {
      uiConfig: {
        boardTitle: 'bulkmodel',
        miscLinks: [{ text: 'Operations', url: '/' }],
      },
    },
  });
  const router = server.getRouter() as Router & { disable?: (setting: string) => unknown };
  // bull-board serves from an Express app of its own, which would announce itself.
  router.disable?.('x-powered-by');
  return router;
}
