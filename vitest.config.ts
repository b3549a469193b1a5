import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Multi-process tests spawn real OS processes on one SQLite file; give them room,
    // but never assert on wall-clock speed (see bench/ for figures).
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Two cores: files run in parallel in two forks; the process-heavy files set their own limits.
    pool: 'forks',
    maxWorkers: 2,
  },
})
