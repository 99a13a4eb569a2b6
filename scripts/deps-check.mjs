#!/usr/bin/env node
// Holds src/ to the import directions written down in docs/architecture.md ("Import directions"):
// fails on any import cycle between modules and on any import from a folder into one it may not use.
// Type-only imports count: a type is part of what a module needs to be understood.
// Usage: node scripts/deps-check.mjs [--report]   (--report lists the findings and never fails)
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');

/**
 * Which areas each area may import from (besides itself). An area is a folder of src/, or a file at
 * its top level. The core (jobs, config, errors, clock, logger, validation, version) imports only the core.
 */
const CORE = ['errors', 'clock', 'logger', 'validation', 'version', 'fire-at', 'signing'];
export const ALLOWED = {
  errors: [],
  'fire-at': [],
  signing: [],
  clock: [],
  logger: [],
  version: [],
  validation: ['errors'],
  jobs: [...CORE],
  config: [...CORE, 'jobs'],
  store: [...CORE, 'jobs'],
  occurrence: [...CORE, 'jobs', 'store'],
  run: [...CORE, 'jobs', 'store', 'occurrence'],
  nas: [...CORE, 'config'],
  'jobs-file': [...CORE, 'jobs', 'store'],
  scheduler: [...CORE, 'jobs', 'config', 'store', 'occurrence', 'nas'],
  fire: [...CORE, 'jobs', 'config', 'store', 'occurrence'],
  http: [...CORE, 'jobs', 'config', 'store', 'occurrence', 'fire', 'scheduler', 'ui'],
  // The status page reads Chronos only over the admin API, as a browser does.
  ui: [...CORE],
  logging: [...CORE],
  emulator: [...CORE],
  alerts: [...CORE, 'jobs', 'store', 'run'],
  main: null, // the composition root: may import anything
  serve: ['main'],
  index: null, // the library entry re-exports the public surface
  cli: null, // the command line composes everything, like main
};

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return walk(path);
    return /\.ts$/.test(name) && !/\.d\.ts$/.test(name) ? [path] : [];
  });
}

const IMPORT_RE =
  /(?:^|[\s;])(?:import|export)\s+(?:type\s+)?(?:[\w*{}\s,]*?\s+from\s+)?['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

function importsOf(file) {
  const text = readFileSync(file, 'utf8');
  const found = new Set();
  for (const m of text.matchAll(IMPORT_RE)) {
    const spec = m[1] ?? m[2];
    found.add(resolve(dirname(file), spec).replace(/\.js$/, '.ts'));
  }
  return [...found];
}

function areaOf(file) {
  const rel = relative(src, file).split('/');
  return rel.length === 1 ? rel[0].replace(/\.ts$/, '') : rel[0];
}

const files = walk(src);
const graph = new Map(files.map((f) => [f, importsOf(f).filter((t) => files.includes(t))]));
const name = (f) => relative(root, f);

const wrongWay = [];
for (const [from, targets] of graph) {
  const a = areaOf(from);
  const allowed = ALLOWED[a];
  if (allowed === undefined) wrongWay.push(`${name(from)}: area "${a}" has no entry in ALLOWED`);
  if (!allowed) continue;
  for (const to of targets) {
    const b = areaOf(to);
    if (b !== a && !allowed.includes(b)) wrongWay.push(`${a} → ${b}: ${name(from)} imports ${name(to)}`);
  }
}

// Cycles: strongly connected components (Tarjan) of more than one module, or a module importing itself.
const cycles = [];
let counter = 0;
const index = new Map();
const low = new Map();
const stack = [];
const onStack = new Set();
function connect(v) {
  index.set(v, counter);
  low.set(v, counter++);
  stack.push(v);
  onStack.add(v);
  for (const w of graph.get(v)) {
    if (!index.has(w)) {
      connect(w);
      low.set(v, Math.min(low.get(v), low.get(w)));
    } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
  }
  if (low.get(v) === index.get(v)) {
    const component = [];
    let w;
    do {
      w = stack.pop();
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || graph.get(v).includes(v)) cycles.push(component.map(name).sort());
  }
}
for (const f of files) if (!index.has(f)) connect(f);

const report = process.argv.includes('--report');
console.log(
  `deps-check: ${files.length} modules, ${cycles.length} import cycles, ${wrongWay.length} wrong-way imports`,
);
for (const c of cycles) console.log(`  cycle: ${c.join(' ⇄ ')}`);
for (const w of wrongWay) console.log(`  wrong way: ${w}`);
if (!report && (cycles.length > 0 || wrongWay.length > 0)) {
  console.log('Imports must follow the directions in docs/architecture.md ("Import directions").');
  process.exit(1);
}
