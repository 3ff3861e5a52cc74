import { setFlagsFromString } from 'node:v8';
import { defaultOf } from '../core/settings.js';

/**
 * A worker's (or a load's) heap holds a few jobs' rows at a time and much short-lived garbage. V8 lets the
 * heap grow up to 4x the live data between full collections (more on a machine with memory to
 * spare): a 2-million-row drain peaked anywhere from 276 to 427 MB of RSS. Growing at most to
 * twice the live data keeps it at 205-235 MB at the same speed (docs/PERFORMANCE.md). V8 reads
 * this flag at each collection, so setting it at startup works; a --heap-growing-percent given
 * to node itself is left alone unless --heap-growth is given too.
 */
export function setHeapGrowth(percent: number | undefined): number | 'node flag' {
  // (NODE_OPTIONS cannot carry V8 flags like this one: only node's own command line.)
  if (percent === undefined && process.execArgv.some((a) => /heap[-_]growing[-_]percent/.test(a)))
    return 'node flag';
  const p = percent ?? defaultOf('heapGrowth');
  setFlagsFromString(`--heap-growing-percent=${p}`);
  return p;
}
