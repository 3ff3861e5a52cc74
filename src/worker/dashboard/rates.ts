interface Sample {
  t: number;
  rows: number;
}

/**
 * Rows per second of running operations over a recent window, from the counts this dashboard
 * has seen (polls of the operation hashes). Before a window exists the caller falls back to the
 * average since the operation started.
 */
export class RateTracker {
  private readonly samples = new Map<string, Sample[]>();

  constructor(
    private readonly windowMs = 10_000,
    private readonly minSpanMs = 1_000,
  ) {}

  /** Record `rows` done at `t` and return the recent rate, if one can be told yet. */
  sample(id: string, rows: number, t: number): number | undefined {
    const list = this.samples.get(id) ?? [];
    const last = list[list.length - 1];
    if (!last || last.rows !== rows || t - last.t >= this.minSpanMs) list.push({ t, rows });
    while (list.length > 2 && t - list[1]!.t >= this.windowMs) list.shift();
    this.samples.set(id, list);
    const first = list[0]!;
    const span = t - first.t;
    if (span < this.minSpanMs) return undefined;
    return ((rows - first.rows) * 1000) / span;
  }

  /** Forget operations not in `live`. */
  keepOnly(live: Set<string>): void {
    for (const id of this.samples.keys()) if (!live.has(id)) this.samples.delete(id);
  }
}
