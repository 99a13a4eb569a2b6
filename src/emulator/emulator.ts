import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Clock, formatInstant, systemClock } from '../clock.js';
import { ChronosError } from '../errors.js';
import { ArmTable } from './arms.js';
import { describeError, type EmulatorContext } from './context.js';
import { Deliveries } from './delivery.js';
import { createFaults, mergeFaults, STRICT_FAULTS, snapshotFaults } from './faults.js';
import { createRouter } from './routes.js';
import { SigningKeys } from './signing.js';
import type { DeliveryAttempt, Emulator, EmulatorOptions, FireAlg } from './types.js';
import { sendJson, urlHost } from './wire.js';

// The emulator is put together from parts a reader can hold one at a time:
// arms.ts (NAS's table and hop-1 semantics), delivery.ts (timers, hop 3, retries), signing.ts (fire-token
// keys), routes.ts (the HTTP routes), faults.ts (the switches), wire.ts (validation and HTTP helpers).

export { JUNK_LIST_ITEMS, STRICT_FAULTS } from './faults.js';
export type {
  ArmedOneShot,
  DeliveryAttempt,
  Emulator,
  EmulatorOptions,
  FaultSwitches,
  FireAlg,
  FireTokenClaims,
  KeyOutcome,
  ProvisionCall,
  ProvisionKind,
  RowRemoval,
} from './types.js';
export { formatUtcPlusZero, isIsoWithOffset, parseRetryAfter, validateProvision } from './wire.js';

const DELIVERY_HISTORY = 200;

export async function startEmulator(opts: EmulatorOptions = {}): Promise<Emulator> {
  const clock: Clock = opts.clock ?? systemClock;
  const offsetMs = opts.clockOffsetMs ?? 0;
  const alg: FireAlg = opts.alg ?? 'ES256';
  const agentToken = opts.agentToken ?? 'dev-agent-token';
  const audience = opts.audience ?? 'agent:dev';
  const strict = opts.strict === true;
  const listeners = new Set<() => void>();
  const closing = new AbortController();
  let url = '';

  // Deliveries exist only once the faults do; the earlyMs setter reaches them through this late binding.
  let deliveries: Deliveries | undefined;
  const faults = createFaults(Math.max(1, opts.retry?.maxAttempts ?? 8), () => deliveries?.retimeAll());
  for (const initial of [strict ? STRICT_FAULTS : {}, opts.faults ?? {}]) {
    const problem = mergeFaults(faults, initial);
    if (problem) throw new ChronosError('invalid_config', `emulator faults: ${problem}`);
  }
  const ctx: EmulatorContext = {
    clock,
    now: () => clock.now() + offsetMs,
    log: opts.log ?? (() => {}),
    notify: () => {
      for (const listener of [...listeners]) listener();
    },
    faults,
    closing: closing.signal,
  };

  const keys = await SigningKeys.create(ctx, alg, opts.retiredKeyTtlMs ?? 10 * 60_000);
  const table = new ArmTable(ctx);
  const delivery = new Deliveries(ctx, table, keys, {
    baseDelayMs: opts.retry?.baseDelayMs ?? 500,
    maxDelayMs: opts.retry?.maxDelayMs ?? 30_000,
    deliveryTimeoutMs: opts.deliveryTimeoutMs ?? 10_000,
    audience,
    issuer: () => url,
    ...(opts.deliverVia ? { deliverVia: opts.deliverVia } : {}),
  });
  deliveries = delivery;

  async function fireNow(jobId: string): Promise<DeliveryAttempt> {
    const arm = table.get(jobId);
    if (!arm) throw new ChronosError('job_not_found', `no one-shot armed for job ${jobId}`);
    return delivery.deliverNow(arm);
  }

  const state = (): Record<string, unknown> => ({
    url,
    audience,
    alg,
    clock_offset_ms: offsetMs,
    now: formatInstant(ctx.now()),
    current_kid: keys.currentKid(),
    strict,
    armed: table.publicArms(),
    deliveries: delivery.attempts().slice(-DELIVERY_HISTORY),
    row_removals: table.rowRemovals().slice(-DELIVERY_HISTORY),
    consumed_keys: table.consumedKeys().slice(-DELIVERY_HISTORY),
    faults: snapshotFaults(faults),
  });

  const router = createRouter({ ctx, table, keys, agentToken, state, fireNow });
  const server: Server = createServer((req, res) => {
    router.route(req, res).catch((err: unknown) => {
      ctx.log(`error    ${req.method} ${req.url}: ${describeError(err)}`);
      if (!res.headersSent) sendJson(res, 500, { error: 'internal', message: describeError(err) });
      else res.destroy();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  url = `http://${urlHost(address)}:${address.port}`;
  ctx.log(`listen   ${url}  (aud ${audience}, ${alg}, kid ${keys.currentKid()}${strict ? ', strict' : ''})`);
  if (strict || opts.faults) ctx.log(`faults   ${JSON.stringify(snapshotFaults(faults))}`);

  let closed: Promise<void> | undefined;

  return {
    url,
    jwksUrl: `${url}/.well-known/jwks.json`,
    audience,
    agentToken,
    alg,
    faults,
    strict,
    armed: () => table.publicArms(),
    deliveries: () => delivery.attempts(),
    provisions: router.calls,
    rowRemovals: () => table.rowRemovals(),
    consumedKeys: () => table.consumedKeys(),
    jwks: () => keys.jwks(),
    currentKid: () => keys.currentKid(),
    rotateKey: (options) => keys.rotate(options),
    mintFireToken: (claims) => keys.sign({ aud: audience, iss: url }, { sub: 'job', ...claims }),
    fireNow,
    waitFor(predicate, timeoutMs = 5000) {
      return new Promise<void>((resolve, reject) => {
        if (predicate()) return resolve();
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`emulator.waitFor: condition not met within ${timeoutMs} ms`));
        }, timeoutMs);
        function check(): void {
          let ok = false;
          try {
            ok = predicate();
          } catch (err) {
            listeners.delete(check);
            clearTimeout(timer);
            reject(err);
            return;
          }
          if (!ok) return;
          listeners.delete(check);
          clearTimeout(timer);
          resolve();
        }
        listeners.add(check);
      });
    },
    close() {
      closed ??= (async () => {
        closing.abort();
        table.close();
        await delivery.close();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        ctx.log('closed');
      })();
      return closed;
    },
  };
}
