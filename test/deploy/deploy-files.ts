import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DockerfileParser, type Flag, type Instruction, type Property } from 'dockerfile-ast';
import { parse as parseToml } from 'smol-toml';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface DockerInstruction {
  keyword: string;
  /** Flags first (`--from=build`), then the arguments, with line continuations removed. */
  args: string[];
  /** The arguments as written, continuations included. */
  raw: string;
  /** ENV only: name → value, in order. */
  env?: Array<[string, string]>;
  /** LABEL only: name → value, in order. */
  labels?: Array<[string, string]>;
}

export interface DockerStage {
  /** The FROM image as written, e.g. `${NODE_IMAGE}`. */
  image: string;
  name: string | null;
  instructions: DockerInstruction[];
}

function envProperties(instruction: Instruction): Array<[string, string]> {
  const withProps = instruction as unknown as { getProperties?: () => Property[] };
  return (withProps.getProperties?.() ?? []).map((p) => [p.getName(), p.getValue() ?? '']);
}

/** The Dockerfile as stages of instructions (dockerfile-ast does the lexing, continuations and quoting). */
export function readDockerfile(path = `${REPO_ROOT}Dockerfile`): {
  text: string;
  globalArgs: string[];
  stages: DockerStage[];
} {
  const text = readFileSync(path, 'utf8');
  const parsed = DockerfileParser.parse(text);
  const globalArgs: string[] = [];
  const stages: DockerStage[] = [];
  for (const instruction of parsed.getInstructions()) {
    const keyword = instruction.getKeyword().toUpperCase();
    const withFlags = instruction as unknown as { getFlags?: () => Flag[] };
    const flags = (withFlags.getFlags?.() ?? []).map(
      (f) => `--${f.getName()}${f.getValue() === null ? '' : `=${f.getValue()}`}`,
    );
    const args = [...flags, ...instruction.getArguments().map((a) => a.getValue())];
    const raw = instruction.getRawArgumentsContent() ?? '';
    if (keyword === 'FROM') {
      const asIndex = args.findIndex((a) => a.toUpperCase() === 'AS');
      stages.push({
        image: args.find((a) => !a.startsWith('--')) ?? '',
        name: asIndex >= 0 ? (args[asIndex + 1] ?? null) : null,
        instructions: [],
      });
      continue;
    }
    const entry: DockerInstruction = { keyword, args, raw };
    if (keyword === 'ENV') entry.env = envProperties(instruction);
    if (keyword === 'LABEL') entry.labels = envProperties(instruction);
    const stage = stages[stages.length - 1];
    if (stage) stage.instructions.push(entry);
    else if (keyword === 'ARG') globalArgs.push(...args);
  }
  return { text, globalArgs, stages };
}

/** Exec form (`CMD ["node", "x"]`) parsed as JSON; null for the shell form. */
export function execForm(instruction: DockerInstruction, skipFlags = false): string[] | null {
  let raw = instruction.raw.trim();
  if (skipFlags) {
    // HEALTHCHECK --interval=.. CMD [..]: the JSON array follows the CMD subcommand.
    const at = raw.search(/\bCMD\s+\[/i);
    if (at < 0) return null;
    raw = raw.slice(at + 3).trim();
  }
  if (!raw.startsWith('[')) return null;
  try {
    const value: unknown = JSON.parse(raw.replace(/\\\r?\n/g, ''));
    return Array.isArray(value) && value.every((v) => typeof v === 'string') ? value : null;
  } catch {
    return null;
  }
}

/** Every ENV of a stage, later ones overriding earlier ones. */
export function stageEnv(stage: DockerStage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const instruction of stage.instructions)
    for (const [name, value] of instruction.env ?? []) env[name] = value;
  return env;
}

export function lastInstruction(stage: DockerStage, keyword: string): DockerInstruction | undefined {
  return stage.instructions.filter((i) => i.keyword === keyword).at(-1);
}

export type Toml = Record<string, unknown>;

export function readFlyToml(path = `${REPO_ROOT}fly.toml`): Toml {
  return parseToml(readFileSync(path, 'utf8')) as Toml;
}

/** Fly durations: a number of seconds, or a string like "45s", "1m30s", "500ms". */
export function durationSeconds(value: unknown): number {
  if (typeof value === 'number') return value;
  if (typeof value !== 'string') throw new Error(`not a duration: ${JSON.stringify(value)}`);
  const parts = [...value.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== value)
    throw new Error(`not a duration: ${value}`);
  const unit = { ms: 0.001, s: 1, m: 60, h: 3600 } as const;
  return parts.reduce((sum, p) => sum + Number(p[1]) * unit[p[2] as keyof typeof unit], 0);
}

/** Names that must never be baked into an image or a committed config file. */
export const SECRET_NAME = /TOKEN|SECRET|KEY|PASSWORD|PASSWD|CREDENTIAL/i;
