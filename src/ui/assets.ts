import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export interface UiAsset {
  contentType: string;
  body: Buffer;
}

/** The page's own files: plain HTML, JS and CSS in src/ui/assets/, copied as they are into dist/ui/. */
export const UI_FILES: Readonly<Record<string, string>> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};

/**
 * Third-party browser scripts, by the name the page loads them under and their file in node_modules.
 * scripts/build.mjs copies them into dist/ui/ (the runtime image has no node_modules).
 */
export const UI_VENDOR_FILES: Readonly<Record<string, string>> = {
  // Cron expressions in words (MIT); the page calls window.cronstrue.toString().
  'cronstrue.min.js': 'cronstrue/dist/cronstrue.min.js',
};

/**
 * Where the files are: dist/ui/ beside the bundle's chunks/ (this module is a chunk of dist/serve.js), or
 * src/ui/assets/ and node_modules when Chronos runs from source (tests, embedding with a TS loader).
 */
function locate(name: string): string {
  const built = new URL(`../ui/${name}`, import.meta.url);
  if (existsSync(built)) return fileURLToPath(built);
  const vendor = UI_VENDOR_FILES[name];
  if (vendor !== undefined) return createRequire(import.meta.url).resolve(vendor);
  return fileURLToPath(new URL(`./assets/${name}`, import.meta.url));
}

export async function loadUiAssets(): Promise<Map<string, UiAsset>> {
  const types: Record<string, string> = { ...UI_FILES };
  for (const name of Object.keys(UI_VENDOR_FILES)) types[name] = 'text/javascript; charset=utf-8';
  const assets = new Map<string, UiAsset>();
  for (const [name, contentType] of Object.entries(types)) {
    assets.set(name, { contentType, body: await readFile(locate(name)) });
  }
  return assets;
}
