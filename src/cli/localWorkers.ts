import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';

/**
 * Worker processes started by a command (demo, load --workers) for its own run: the same CLI
 * (`bulkmodel worker ...`) run with the same Node flags, so it also works from sources under
 * `node --import tsx`. A worker that dies early fails the command with its last stderr lines
 * instead of leaving it waiting for progress that never comes.
 */
export class LocalWorkers {
  private readonly children: ChildProcess[] = [];
  private readonly tails: string[] = [];
  private stopping = false;
  /** Rejects when a worker exits before stop(); never resolves. */
  readonly died: Promise<never>;

  constructor(count: number, workerArgs: string[], env: NodeJS.ProcessEnv) {
    let fail: (err: Error) => void = () => {};
    this.died = new Promise<never>((_, reject) => {
      fail = reject;
    });
    this.died.catch(() => {}); // observed through race(); never an unhandled rejection
    for (let i = 0; i < count; i++) {
      const child = spawn(
        process.execPath,
        [...process.execArgv, process.argv[1]!, 'worker', ...workerArgs],
        {
          env,
          stdio: ['ignore', 'ignore', 'pipe'],
        },
      );
      this.tails.push('');
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (d: string) => {
        if (process.env.BULKMODEL_DEBUG) process.stderr.write(d);
        this.tails[i] = (this.tails[i] + d).slice(-2000);
      });
      child.on('exit', (code, signal) => {
        if (this.stopping) return;
        const err = new Error(
          `local worker ${i + 1} exited (${signal ?? `code ${code}`}) before the command finished:\n${this.tails[i]!.trim()}`,
        );
        err.stack = err.message; // what the user needs is the worker's output, not our stack
        fail(err);
      });
      this.children.push(child);
    }
  }

  /** Await `p`, or fail as soon as a worker dies. */
  race<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, this.died]);
  }

  /** SIGTERM every worker (they finish in-flight chunks) and wait for them to exit. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const c of this.children)
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    await Promise.all(
      this.children.map((c) =>
        c.exitCode === null && c.signalCode === null ? once(c, 'exit') : undefined,
      ),
    );
  }
}
