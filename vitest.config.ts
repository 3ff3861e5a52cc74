import { defineConfig } from 'vitest/config';

// Three projects: `default` runs in parallel files; `faults` kills connections and restarts
// services, and `scale` runs eight worker processes, so each runs alone (one file at a time)
// in its own step of .ci/run.
export default defineConfig({
  test: {
    globalSetup: ['test/globalSetup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'default',
          include: ['test/**/*.test.ts'],
          exclude: ['test/faults/**', 'test/scale/**'],
        },
      },
      {
        extends: true,
        test: {
          name: 'faults',
          include: ['test/faults/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: 180_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'scale',
          include: ['test/scale/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: 600_000,
        },
      },
    ],
  },
});
