// Preloaded with --import by bench/memory.mjs when BENCH_MEMORY_BREAKDOWN=1: on SIGUSR2 the process writes
// V8's heap spaces and process.memoryUsage() to BENCH_MEMORY_PROBE_FILE, so the benchmark can say which
// part of the RSS grew (the young generation, old space, code, or memory outside V8's heap).
import { renameSync, writeFileSync } from 'node:fs';
import { getHeapSpaceStatistics } from 'node:v8';

const file = process.env.BENCH_MEMORY_PROBE_FILE;
if (file) {
  process.on('SIGUSR2', () => {
    const spaces = Object.fromEntries(
      getHeapSpaceStatistics().map((s) => [s.space_name, { size: s.space_size, used: s.space_used_size }]),
    );
    // Written whole under another name first: the benchmark polls for the file.
    writeFileSync(`${file}.tmp`, JSON.stringify({ spaces, usage: process.memoryUsage() }));
    renameSync(`${file}.tmp`, file);
  });
}
