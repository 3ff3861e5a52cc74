export interface CaseResult {
  group: string;
  name: string;
  rows: number;
  /** Seconds per repetition. */
  secs: number[];
  baseline?: string;
  note?: string;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function rate(rows: number, secs: number): number {
  return rows / Math.max(secs, 1e-9);
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

/** A markdown table per group: rows/s median (min-max) and the ratio to the group's baseline. */
export function markdown(results: CaseResult[]): string {
  const out: string[] = [];
  const groups = [...new Set(results.map((r) => r.group))];
  for (const g of groups) {
    const rs = results.filter((r) => r.group === g);
    out.push(
      `\n### ${g}\n`,
      '| case | rows/s (median) | min–max | vs baseline |',
      '|---|---:|---:|---:|',
    );
    for (const r of rs) {
      const med = rate(r.rows, median(r.secs));
      const lo = rate(r.rows, Math.max(...r.secs));
      const hi = rate(r.rows, Math.min(...r.secs));
      const base = r.baseline ? rs.find((x) => x.name === r.baseline) : undefined;
      const ratio = base ? (med / rate(base.rows, median(base.secs))).toFixed(2) : '';
      out.push(
        `| ${r.name}${r.note ? ` (${r.note})` : ''} | ${fmt(med)} | ${fmt(lo)}–${fmt(hi)} | ${ratio} |`,
      );
    }
  }
  return out.join('\n');
}
