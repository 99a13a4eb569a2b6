/**
 * Bounded capture of target output. A run's excerpt is stored with its history (100 runs per job
 * by default), so a chatty job must not grow the store; and a target that streams gigabytes must
 * not grow our memory either, which is why bytes past the bound are dropped as they arrive.
 */

export const DEFAULT_OUTPUT_LIMIT_BYTES = 8192;
export const TRUNCATED_MARK = '…[truncated]';

function isContinuationByte(byte: number | undefined): boolean {
  return byte !== undefined && (byte & 0xc0) === 0x80;
}

/** Decode the start of a cut stream: a character split by the cut is dropped, not mangled. */
export function decodeHead(buf: Buffer): string {
  return new TextDecoder('utf-8').decode(buf, { stream: true });
}

/** Decode the end of a cut stream: leading bytes of a character split by the cut are dropped. */
export function decodeTail(buf: Buffer): string {
  let start = 0;
  while (start < buf.length && start < 4 && isContinuationByte(buf[start])) start++;
  return buf.subarray(start).toString('utf8');
}

/** Cut a string to at most `maxBytes` of UTF-8, marking the cut. */
export function boundText(text: string, maxBytes: number): string {
  const buf = Buffer.from(text, 'utf8');
  if (buf.length <= maxBytes) return text;
  return decodeHead(buf.subarray(0, maxBytes)) + TRUNCATED_MARK;
}

/**
 * Keeps the first bytes of a stream and drops the rest (HTTP response bodies: the start of a body
 * usually says what went wrong, e.g. an error document).
 */
export class HeadCapture {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  private overflow = false;

  constructor(private readonly limit: number) {}

  /** Returns false once the bound is reached, so the reader can stop pulling. */
  push(chunk: Buffer): boolean {
    if (this.kept >= this.limit) {
      this.overflow = this.overflow || chunk.length > 0;
      return false;
    }
    const room = this.limit - this.kept;
    const piece = chunk.length > room ? chunk.subarray(0, room) : chunk;
    if (chunk.length > room) this.overflow = true;
    this.chunks.push(piece);
    this.kept += piece.length;
    return !this.overflow;
  }

  get truncated(): boolean {
    return this.overflow;
  }

  text(): string | null {
    if (this.kept === 0) return this.overflow ? TRUNCATED_MARK : null;
    const body = Buffer.concat(this.chunks, this.kept);
    if (!this.overflow) return body.toString('utf8');
    return decodeHead(body) + TRUNCATED_MARK;
  }
}

/**
 * Keeps the first quarter and the last three quarters of the bound (process output: the command
 * line echo or banner at the start, the error and exit summary at the end). The middle is replaced
 * by a marker giving the number of bytes dropped.
 */
export class HeadTailCapture {
  private readonly headLimit: number;
  private readonly tailLimit: number;
  private readonly head: Buffer[] = [];
  private headBytes = 0;
  private tail: Buffer[] = [];
  private tailBytes = 0;
  private total = 0;

  constructor(limit: number) {
    this.headLimit = Math.floor(limit / 4);
    this.tailLimit = limit - this.headLimit;
  }

  push(chunk: Buffer): void {
    this.total += chunk.length;
    let rest = chunk;
    if (this.headBytes < this.headLimit) {
      const room = this.headLimit - this.headBytes;
      const piece = rest.subarray(0, room);
      this.head.push(piece);
      this.headBytes += piece.length;
      rest = rest.subarray(piece.length);
    }
    if (rest.length === 0) return;
    this.tail.push(rest);
    this.tailBytes += rest.length;
    // Drop whole chunks that are entirely outside the tail window; the final cut happens in text().
    while (this.tail.length > 1 && this.tailBytes - this.tail[0]!.length >= this.tailLimit) {
      this.tailBytes -= this.tail.shift()!.length;
    }
    if (this.tail.length === 1 && this.tailBytes > this.tailLimit * 2) {
      // One huge chunk: trim it now so memory stays bounded.
      this.tail = [this.tail[0]!.subarray(this.tailBytes - this.tailLimit)];
      this.tailBytes = this.tailLimit;
    }
  }

  get totalBytes(): number {
    return this.total;
  }

  get truncated(): boolean {
    return this.total > this.headLimit + this.tailLimit;
  }

  text(): string | null {
    if (this.total === 0) return null;
    const head = Buffer.concat(this.head, this.headBytes);
    const tailAll = Buffer.concat(this.tail, this.tailBytes);
    if (!this.truncated) return Buffer.concat([head, tailAll]).toString('utf8');
    const tail = tailAll.subarray(Math.max(0, tailAll.length - this.tailLimit));
    const dropped = this.total - head.length - tail.length;
    return `${decodeHead(head)}\n…[truncated ${dropped} bytes]…\n${decodeTail(tail)}`;
  }
}
