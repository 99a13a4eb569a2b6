import type { Target } from '../../jobs/model.js';
import { executeCommand } from './command.js';
import { executeHandler, type HandlerRegistry } from './handler.js';
import { executeHttp } from './http.js';
import type { TargetContext, TargetResult } from './types.js';

export type { TargetContext, TargetResult } from './types.js';

export interface TargetDeps {
  handlers: HandlerRegistry;
}

export function executeTarget(target: Target, ctx: TargetContext, deps: TargetDeps): Promise<TargetResult> {
  switch (target.type) {
    case 'http':
      return executeHttp(target, ctx);
    case 'command':
      return executeCommand(target, ctx);
    case 'handler':
      return executeHandler(target, ctx, deps.handlers);
  }
}
