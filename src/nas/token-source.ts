import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { ChronosError, errorMessage } from '../errors.js';

export interface TokenSourceOptions {
  /** Inline token (CHRONOS_ACCESS_TOKEN). */
  token?: string;
  /** Token file (CHRONOS_ACCESS_TOKEN_FILE); wins over `token` because only a file can rotate. */
  file?: string;
}

/** The agent access token sent to NAS as `Authorization: Bearer`. */
export interface TokenSource {
  /** The cached token; a file is read at first use. */
  get(): Promise<string>;
  /** Read the file again (after a 401: the token may have been rotated). Inline tokens return as is. */
  refresh(): Promise<string>;
}

function describeReadError(file: string, err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return `access token file ${file} does not exist`;
  if (code === 'EACCES' || code === 'EPERM')
    return `access token file ${file} is not readable (permission denied)`;
  if (code === 'EISDIR') return `access token file ${file} is a directory`;
  return `access token file ${file} cannot be read: ${errorMessage(err)}`;
}

const emptyFile = (file: string): string => `access token file ${file} is empty`;
const EMPTY_INLINE = 'access token (CHRONOS_ACCESS_TOKEN) is empty';
const NOTHING_CONFIGURED =
  'no access token configured (set CHRONOS_ACCESS_TOKEN or CHRONOS_ACCESS_TOKEN_FILE)';

export function createTokenSource(options: TokenSourceOptions): TokenSource {
  const { file } = options;
  if (file === undefined || file === '') {
    const token = options.token?.trim() ?? '';
    const problem = options.token === undefined ? NOTHING_CONFIGURED : EMPTY_INLINE;
    const fixed = async (): Promise<string> => {
      if (token === '') throw new ChronosError('invalid_config', problem);
      return token;
    };
    return { get: fixed, refresh: fixed };
  }

  let cached: string | undefined;
  // Concurrent calls that all saw a 401 share one read instead of each hitting the disk.
  let reading: Promise<string> | undefined;

  const read = (): Promise<string> => {
    reading ??= (async () => {
      try {
        let text: string;
        try {
          text = await readFile(file, 'utf8');
        } catch (err) {
          throw new ChronosError('invalid_config', describeReadError(file, err), { file }, { cause: err });
        }
        const token = text.trim();
        if (token === '') throw new ChronosError('invalid_config', emptyFile(file), { file });
        cached = token;
        return token;
      } finally {
        reading = undefined;
      }
    })();
    return reading;
  };

  return {
    get: async () => cached ?? read(),
    refresh: read,
  };
}

/**
 * Why the token source cannot work, or null when it can. Reads the file (a few bytes) but makes no
 * network call, so the provider's availability check can use it at boot.
 */
export function checkTokenSourceSync(options: TokenSourceOptions): string | null {
  const { file } = options;
  if (file === undefined || file === '') {
    if (options.token === undefined) return NOTHING_CONFIGURED;
    return options.token.trim() === '' ? EMPTY_INLINE : null;
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return describeReadError(file, err);
  }
  return text.trim() === '' ? emptyFile(file) : null;
}
