import type { Target } from '../../jobs/model.js';
import { executeCommand } from './command.js';
import { executeHandler, type HandlerRegistry } from './handler.js';
import { executeHttp } from './http.js';
import type { TargetContext, TargetResult } from './types.js';

export type { TargetContext, TargetResult } from './types.js';

export interface TargetDeps {
  handlers: HandlerRegistry;
  /** CHRONOS_TARGET_SIGNING_SECRET: http targets are signed with it (Standard Webhooks). */
  signingSecret?: string;
}

export function executeTarget(target: Target, ctx: TargetContext, deps: TargetDeps): Promise<TargetResult> {
  switch (target.type) {
    case 'http':
      return executeHttp(target, ctx, deps.signingSecret);
    case 'command':
      return executeCommand(target, ctx);
    case 'handler':
      return executeHandler(target, ctx, deps.handlers);
  }
}
