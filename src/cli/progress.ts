/** A one-line progress bar with rows per second and ETA; plain lines when not on a terminal. */
export class ProgressBar {
  private lastPrinted = -1;
  constructor(
    private readonly label: string,
    private total: number | undefined,
    private readonly started = Date.now(),
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {}

  setTotal(total: number): void {
    this.total = total;
  }

  update(done: number): void {
    const secs = Math.max(0.001, (Date.now() - this.started) / 1000);
    const rate = done / secs;
    const total = this.total;
    const pct = total ? Math.min(1, done / total) : 0;
    const eta = total && rate > 0 ? Math.max(0, (total - done) / rate) : undefined;
    const line =
      `${this.label} ${total ? `[${'#'.repeat(Math.round(pct * 30)).padEnd(30, '.')}] ${(pct * 100).toFixed(0).padStart(3)}% ` : ''}` +
      `${done.toLocaleString('en-US')}${total ? `/${total.toLocaleString('en-US')}` : ''} rows  ${Math.round(rate).toLocaleString('en-US')} rows/s` +
      `${eta !== undefined ? `  ETA ${eta.toFixed(0)}s` : ''}`;
    if (this.out.isTTY) this.out.write(`\r${line}\x1b[K`);
    else {
      const step = total ? Math.floor(pct * 10) : Math.floor(done / 100_000);
      if (step !== this.lastPrinted) {
        this.lastPrinted = step;
        this.out.write(`${line}\n`);
      }
    }
  }

  finish(done: number): number {
    this.update(done);
    if (this.out.isTTY) this.out.write('\n');
    return (Date.now() - this.started) / 1000;
  }
}
