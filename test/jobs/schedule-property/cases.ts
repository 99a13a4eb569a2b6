/**
 * The seeded generators behind the nextOccurrence property tests (test/jobs/schedule-property/*.test.ts):
 * deterministic, so a failure prints the case and reproduces on every run. The properties live in three
 * files so that the three run side by side on the unit project's workers.
 */

import { seededRandom } from '../../helpers/seeded-random.js';

export const ZONES = [
  'America/New_York',
  'Europe/Berlin',
  'Australia/Sydney',
  'America/Santiago',
  'Asia/Kolkata',
  'Pacific/Chatham',
  'UTC',
];

export function generator(seed: number) {
  const random = seededRandom(seed);
  const int = (low: number, high: number): number => low + Math.floor(random() * (high - low + 1));
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

  function field(min: number, max: number, favoured: readonly number[] = []): string {
    switch (int(0, 6)) {
      case 0:
        return '*';
      case 1:
        return `*/${int(1, Math.max(1, Math.floor((max - min + 1) / 2)))}`;
      case 2: {
        const count = int(2, 4);
        const values = new Set<number>();
        while (values.size < count) values.add(int(min, max));
        return [...values].sort((a, b) => a - b).join(',');
      }
      case 3: {
        const low = int(min, max - 1);
        const high = int(low + 1, max);
        return random() < 0.5 ? `${low}-${high}` : `${low}-${high}/${int(1, Math.max(1, high - low))}`;
      }
      case 4:
        return favoured.length > 0 ? String(pick(favoured)) : String(int(min, max));
      default:
        return String(int(min, max));
    }
  }

  // Hours 0-3 are where transitions happen (and 23-0 in Santiago, 2-3 in Chatham).
  const hourFavoured = [0, 1, 2, 3, 23];
  function cron(): string {
    const minute = field(0, 59, [0, 30, 45, 59]);
    const hour = field(0, 23, hourFavoured);
    // Days up to 28 so every generated expression can fire in every month.
    const dom = random() < 0.7 ? '*' : field(1, 28);
    const month = random() < 0.85 ? '*' : field(1, 12);
    const dow = random() < 0.7 ? '*' : pick([field(0, 6), 'MON-FRI', 'SAT,SUN', 'sun']);
    const fields = `${minute} ${hour} ${dom} ${month} ${dow}`;
    return random() < 0.15 ? `${field(0, 59, [0, 30])} ${fields}` : fields;
  }

  function fixedDaily(): { expression: string; hour: number; minute: number } {
    const hour = random() < 0.6 ? pick(hourFavoured) : int(0, 23);
    const minute = pick([0, 15, 30, 45, int(0, 59)]);
    return { expression: `${minute} ${hour} * * *`, hour, minute };
  }

  // Bases across 2026-2028, half of them within a day of a transition.
  const start = Date.parse('2026-01-01T00:00:00Z');
  const span = Date.parse('2029-01-01T00:00:00Z') - start;
  const transitions = [
    '2026-03-08T07:00:00Z',
    '2026-11-01T06:00:00Z',
    '2027-03-28T01:00:00Z',
    '2027-10-31T01:00:00Z',
    '2028-04-01T16:00:00Z',
    '2028-09-30T16:00:00Z',
    '2026-04-05T03:00:00Z',
    '2026-09-06T04:00:00Z',
    '2027-04-03T14:00:00Z',
    '2027-09-25T14:00:00Z',
  ].map(Date.parse);
  function base(): number {
    if (random() < 0.5) return start + Math.floor(random() * span);
    return pick(transitions) + int(-86_400, 86_400) * 1000 + int(0, 999);
  }

  return { random, int, pick, cron, fixedDaily, base, zone: () => pick(ZONES) };
}

export const TRANSITIONS_2026: Record<string, [string, string]> = {
  'America/New_York': ['2026-03-08T07:00:00Z', '2026-11-01T06:00:00Z'],
  'Europe/Berlin': ['2026-03-29T01:00:00Z', '2026-10-25T01:00:00Z'],
  'Australia/Sydney': ['2026-04-04T16:00:00Z', '2026-10-03T16:00:00Z'],
  'America/Santiago': ['2026-04-05T03:00:00Z', '2026-09-06T04:00:00Z'],
  'Pacific/Chatham': ['2026-04-04T14:00:00Z', '2026-09-26T14:00:00Z'],
};

export function describeCase(expression: string, zone: string, base: number): string {
  return `${expression} in ${zone} after ${new Date(base).toISOString()}`;
}
