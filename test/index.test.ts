import { describe, expect, it } from 'vitest';

describe('the public surface (src/index.ts)', () => {
  it('exports the embedding calls and nothing else at run time', async () => {
    const surface = await import('../src/index.js');
    // Adding a value here is a decision about the package's surface: record it in docs/architecture.md.
    expect(Object.keys(surface).sort()).toEqual([
      'ChronosError',
      'VERSION',
      'createHandlerRegistry',
      'isChronosError',
      'startChronos',
    ]);
  });
});
