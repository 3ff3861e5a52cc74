import { describe, expect, it } from 'vitest';
import { keysOfLedger, ledgerKeys } from '../../src/core/ops/insertCommon.js';

/** The [row index, ...key] list that ledgerKeys stands for. */
function expected(rowIdx: number[], lits: string[], nk: number): (string | number)[][] {
  return rowIdx.map((r, i) => [r, ...lits.slice(i * nk, i * nk + nk)]);
}

describe('ledger keys of a COPY chunk', () => {
  it('keys drawn from a sequence are kept as runs of a few bytes', () => {
    const rowIdx = Array.from({ length: 5000 }, (_, i) => i);
    const lits = rowIdx.map((i) => String(1000 + i));
    const kept = ledgerKeys(rowIdx, lits, 1);
    expect(kept).toEqual({ runs: [[0, '1000', 5000]] });
    expect(keysOfLedger(kept)).toEqual(expected(rowIdx, lits, 1));
  });

  it('gaps in rows or keys start new runs; round trip is exact', () => {
    const rowIdx = [0, 1, 2, 5, 6, 7, 8];
    const lits = ['10', '11', '13', '14', '15', '-2', '-1'];
    const kept = ledgerKeys(rowIdx, lits, 1);
    expect(kept.runs).toEqual([
      [0, '10', 2],
      [2, '13', 1],
      [5, '14', 2],
      [7, '-2', 2],
    ]);
    expect(keysOfLedger(kept)).toEqual(expected(rowIdx, lits, 1));
  });

  it('keys that are not canonical integers are kept whole, as written', () => {
    for (const lits of [
      ['007', '008'],
      ['a', 'b'],
      ['9007199254740993', '9007199254740994'],
      ['1', '2.0'],
      ['-0', '1'],
    ]) {
      const kept = ledgerKeys([0, 1], lits, 1);
      expect(kept.runs).toBeUndefined();
      expect(keysOfLedger(kept)).toEqual(expected([0, 1], lits, 1));
    }
  });

  it('composite keys are kept whole', () => {
    const lits = ['1', 'a\tb', '2', 'c"d'];
    const kept = ledgerKeys([3, 4], lits, 2);
    expect(keysOfLedger(kept)).toEqual([
      [3, '1', 'a\tb'],
      [4, '2', 'c"d'],
    ]);
  });

  it('reads ledgers written before runs existed', () => {
    expect(keysOfLedger({ count: 1, keys: [[0, '5']] })).toEqual([[0, '5']]);
    expect(keysOfLedger({ count: 0 })).toEqual([]);
  });
});
