import type { DecodeOptions } from '../decode.js';
import type { ResolvedWrite } from '../options.js';
import type { Engine } from '../runner.js';
import type { Signals } from '../signals.js';

/** What one call runs with: the engine, its resolved options, and signals (null when off). */
export interface OpContext {
  engine: Engine;
  op: ResolvedWrite;
  signals: Signals | null;
  decode: DecodeOptions;
}
