import { defineConfig } from 'vitest/config';

// Two projects: `default` runs in parallel files; `faults` kills connections and restarts
// services, so it runs alone (one file at a time) in its own step of .ci/run.
export default defineConfig({
  test: {
    globalSetup: ['test/globalSetup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    projects: [
      {
        extends: true,
        test: { name: 'default', include: ['test/**/*.test.ts'], exclude: ['test/faults/**'] },
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
    ],
  },
});
