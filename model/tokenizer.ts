// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * The llama2.c tokenizer (`tokenizer.bin`, `tok512.bin`, …): SentencePiece
 * BPE pieces with scores, encoded by greedy highest-score merges with byte
 * fallback exactly as llama2.c's `run.c` does.
 *
 * ## File format
 *
 * | bytes | content |
 * | --- | --- |
 * | 4 | int32 `max_token_length` |
 * | per token | f32 score, int32 byte length `n`, `n` bytes of the piece (UTF-8, possibly a partial character) |
 *
 * The number of tokens is not stored: it is the model's `vocab_size` (here:
 * given, or read to the end of the file). Token 0 is `<unk>`, 1 is `<s>`
 * (BOS), 2 is `</s>` (EOS); pieces `<0x00>` … `<0xFF>` are the byte-fallback
 * tokens.
 *
 * @module
 */

import { describeValue, requirePositiveInt } from "../tensor/validate.ts";

/** Beginning-of-sequence token id of llama2.c tokenizers (`<s>`). */
export const BOS_TOKEN = 1;
/** End-of-sequence token id of llama2.c tokenizers (`</s>`). */
export const EOS_TOKEN = 2;

/** Options of {@linkcode Tokenizer.encode}. */
export interface EncodeOptions {
  /** Prepend BOS. @default {true} */
  bos?: boolean;
  /** Append EOS. @default {false} */
  eos?: boolean;
}

/** Options of {@linkcode Tokenizer.parse}. */
export interface ParseTokenizerOptions {
  /** Tokens in the file (the model's `vocabSize`). @default {read to the end of the file} */
  vocabSize?: number;
}

const ACTION = "parse llama2.c tokenizer";
const latin1 = (b: Uint8Array): string => String.fromCharCode(...b);

/**
 * A llama2.c tokenizer.
 *
 * {@linkcode Tokenizer.encode} follows `run.c`'s `encode()` step for step:
 * optional BOS; a dummy-prefix `" "` token when the text is not empty; each
 * UTF-8 character (up to 4 bytes) looked up as a piece, or else its bytes as
 * `<0xXX>` tokens; then, repeatedly, the adjacent pair whose concatenation is
 * a piece with the highest score (leftmost on ties) is merged, until no pair
 * merges; optional EOS. The merge loop runs on a heap of candidate pairs
 * (O(n log n) instead of `run.c`'s O(n²)), which performs the same merges in
 * the same order: each step takes the best score, and among equal scores the
 * leftmost pair.
 *
 * {@linkcode Tokenizer.decode} concatenates piece bytes, drops the leading
 * space of the first piece after BOS (as `run.c`'s `decode()`), maps
 * `<0xXX>` pieces to their byte, and decodes the bytes as UTF-8.
 *
 * | cost | |
 * | --- | --- |
 * | encode | O(n log n) in the text's bytes |
 * | decode | O(total piece bytes) |
 *
 * @see https://github.com/karpathy/llama2.c/blob/master/run.c
 *
 * @example A tiny vocabulary built in memory
 * ```ts
 * import { Tokenizer } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * const tok = Tokenizer.fromPieces(
 *   ["<unk>", "<s>", "</s>", " ", "a", "b", "ab", " ab"],
 *   [0, 0, 0, -1, -1, -1, -0.5, -0.1],
 * );
 * assert.deepEqual(tok.encode("ab"), [1, 7]);      // BOS, " ab"
 * assert.equal(tok.decode([1, 7]), "ab");          // leading space after BOS dropped
 * assert.deepEqual(tok.encode("ab", { bos: false }), [7]);
 * ```
 */
export class Tokenizer {
  /** Number of tokens. */
  readonly vocabSize: number;
  /** Longest piece in bytes, as stored in the file. */
  readonly maxTokenLength: number;
  /** Piece bytes of each token (do not mutate). */
  readonly pieces: readonly Uint8Array[];
  /** Merge score of each token. */
  readonly scores: Float32Array;
  /** Token id of byte `b`'s fallback piece `<0xXX>`, or −1 when the vocabulary lacks it. */
  readonly byteTokens: Int32Array;

  #lookup: Map<string, number>;
  #keys: string[];
  /** Byte each token decodes to when it is a `<0xXX>` piece, else −1. */
  #byteOf: Int16Array;

  /**
   * Builds a tokenizer from pieces and scores.
   *
   * @param pieces Piece bytes of each token.
   * @param scores Score of each token.
   * @param maxTokenLength Longest piece in bytes. @default {the longest given piece}
   * @throws {TypeError} If the arrays differ in length or are empty.
   */
  constructor(pieces: readonly Uint8Array[], scores: ArrayLike<number>, maxTokenLength?: number) {
    const action = "create Tokenizer";
    if (!Array.isArray(pieces) || pieces.length === 0 || pieces.length !== scores?.length) {
      throw new TypeError(
        `Cannot ${action}: pieces and scores must be non-empty and of equal length, got ${
          describeValue((pieces as unknown[])?.length)
        } pieces and ${describeValue(scores?.length)} scores`,
      );
    }
    this.vocabSize = pieces.length;
    this.pieces = pieces;
    this.scores = Float32Array.from(scores);
    this.maxTokenLength = maxTokenLength ?? Math.max(...pieces.map((p) => p.length));
    this.#keys = pieces.map(latin1);
    this.#lookup = new Map();
    // run.c's str_lookup bsearches a sorted copy; with duplicate pieces it may
    // find any of them. Keep the first id, the common convention.
    for (let i = this.#keys.length - 1; i >= 0; i--) this.#lookup.set(this.#keys[i]!, i);
    this.byteTokens = new Int32Array(256).fill(-1);
    this.#byteOf = new Int16Array(pieces.length).fill(-1);
    for (let b = 0; b < 256; b++) {
      const id = this.#lookup.get(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
      if (id !== undefined) {
        this.byteTokens[b] = id;
        this.#byteOf[id] = b;
      }
    }
  }

  /**
   * Builds a tokenizer from strings (UTF-8 encoded) and scores; for tests and examples.
   *
   * @param pieces Piece of each token.
   * @param scores Score of each token.
   * @returns The tokenizer.
   * @throws {TypeError} If the arrays differ in length or are empty.
   */
  static fromPieces(pieces: readonly string[], scores: ArrayLike<number>): Tokenizer {
    const enc = new TextEncoder();
    return new Tokenizer(pieces.map((p) => enc.encode(p)), scores);
  }

  /**
   * Parses a llama2.c `tokenizer.bin` (see the module doc).
   *
   * @param bytes The whole file.
   * @param options The expected number of tokens.
   * @returns The tokenizer.
   * @throws {TypeError} If `bytes` is not a `Uint8Array`.
   * @throws {RangeError} If the file is truncated, has bytes after the last
   *   token, holds a negative length or a piece longer than `max_token_length`,
   *   or a non-finite score.
   *
   * @example Round trip through the file format
   * ```ts
   * import { Tokenizer } from "@longctx/longctx/model";
   * import assert from "node:assert/strict";
   * const tok = Tokenizer.fromPieces(
   *   ["<unk>", "<s>", "</s>", " ", "h", "i", " h", " hi"],
   *   [0, 0, 0, -1, -1, -1, -0.5, -0.2],
   * );
   * const again = Tokenizer.parse(tok.toBytes(), { vocabSize: 8 });
   * assert.deepEqual(again.encode("hi"), [1, 7]);
   * assert.throws(() => Tokenizer.parse(tok.toBytes().subarray(0, 20)), /truncated/);
   * ```
   */
  static parse(bytes: Uint8Array, options: ParseTokenizerOptions = {}): Tokenizer {
    if (!(bytes instanceof Uint8Array)) {
      throw new TypeError(
        `Cannot ${ACTION}: bytes must be a Uint8Array, got ${describeValue(bytes)}`,
      );
    }
    const want = options.vocabSize === undefined
      ? undefined
      : requirePositiveInt(ACTION, "vocabSize", options.vocabSize);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.byteLength < 4) {
      throw new RangeError(
        `Cannot ${ACTION}: file truncated: must hold a 4-byte max_token_length, got ${bytes.byteLength} bytes`,
      );
    }
    const maxLen = view.getInt32(0, true);
    if (maxLen <= 0) {
      throw new RangeError(
        `Cannot ${ACTION}: max_token_length must be positive, got ${maxLen}`,
      );
    }
    const pieces: Uint8Array[] = [];
    const scores: number[] = [];
    let at = 4;
    while (want === undefined ? at < bytes.byteLength : pieces.length < want) {
      const i = pieces.length;
      if (at + 8 > bytes.byteLength) {
        throw new RangeError(
          `Cannot ${ACTION}: file truncated in token ${i}${
            want ? ` of ${want}` : ""
          }: needs 8 bytes of score and length at byte ${at}, got ${bytes.byteLength - at}`,
        );
      }
      const score = view.getFloat32(at, true);
      const len = view.getInt32(at + 4, true);
      at += 8;
      if (!Number.isFinite(score)) {
        throw new RangeError(`Cannot ${ACTION}: token ${i} score must be finite, got ${score}`);
      }
      if (len < 0 || len > maxLen) {
        throw new RangeError(
          `Cannot ${ACTION}: token ${i} length must be in [0, ${maxLen}] (max_token_length), got ${len}`,
        );
      }
      if (at + len > bytes.byteLength) {
        throw new RangeError(
          `Cannot ${ACTION}: file truncated in token ${i}: piece needs ${len} bytes at byte ${at}, got ${
            bytes.byteLength - at
          }`,
        );
      }
      pieces.push(bytes.slice(at, at + len));
      scores.push(score);
      at += len;
    }
    if (at !== bytes.byteLength) {
      throw new RangeError(
        `Cannot ${ACTION}: file must end after ${want} tokens (byte ${at}), got ${
          bytes.byteLength - at
        } trailing bytes`,
      );
    }
    if (pieces.length === 0) {
      throw new RangeError(`Cannot ${ACTION}: file must hold at least one token, got 0`);
    }
    return new Tokenizer(pieces, scores, maxLen);
  }

  /**
   * Serialises to the llama2.c file format ({@linkcode Tokenizer.parse} reads it back).
   *
   * @returns The file's bytes.
   */
  toBytes(): Uint8Array {
    let n = 4;
    for (const p of this.pieces) n += 8 + p.length;
    const out = new Uint8Array(n);
    const view = new DataView(out.buffer);
    view.setInt32(0, this.maxTokenLength, true);
    let at = 4;
    for (let i = 0; i < this.vocabSize; i++) {
      view.setFloat32(at, this.scores[i]!, true);
      view.setInt32(at + 4, this.pieces[i]!.length, true);
      out.set(this.pieces[i]!, at + 8);
      at += 8 + this.pieces[i]!.length;
    }
    return out;
  }

  /**
   * The id of a piece given as a string (UTF-8), or `undefined`.
   *
   * @param piece The piece text.
   * @returns Its token id.
   */
  lookup(piece: string): number | undefined {
    return this.#lookup.get(latin1(new TextEncoder().encode(piece)));
  }

  /**
   * Encodes text as `run.c` does (see the class doc).
   *
   * @param text Any string (encoded as UTF-8 first).
   * @param options BOS/EOS.
   * @returns Token ids.
   * @throws {TypeError} If `text` is not a string.
   * @throws {RangeError} If a byte has no piece and no `<0xXX>` fallback token,
   *   or a non-empty text has no `" "` piece for the dummy prefix.
   */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const action = "encode text";
    if (typeof text !== "string") {
      throw new TypeError(`Cannot ${action}: text must be a string, got ${describeValue(text)}`);
    }
    const bytes = new TextEncoder().encode(text);
    const ids: number[] = [];
    if (options.bos ?? true) ids.push(BOS_TOKEN);
    const first = ids.length;
    if (bytes.length > 0) {
      const space = this.#lookup.get(" ");
      if (space === undefined) {
        throw new RangeError(
          `Cannot ${action}: the vocabulary must hold a " " piece for the dummy prefix, got none`,
        );
      }
      ids.push(space);
    }
    // One character at a time: a lead byte plus at most three continuation bytes (run.c).
    for (let i = 0; i < bytes.length;) {
      let j = i + 1;
      while (j < bytes.length && (bytes[j]! & 0xc0) === 0x80 && j - i < 4) j++;
      const id = this.#lookup.get(latin1(bytes.subarray(i, j)));
      if (id !== undefined) ids.push(id);
      else {
        for (let b = i; b < j; b++) {
          const t = this.byteTokens[bytes[b]!]!;
          if (t < 0) {
            throw new RangeError(
              `Cannot ${action}: byte 0x${
                bytes[b]!.toString(16).padStart(2, "0")
              } has no piece and no <0xXX> fallback token`,
            );
          }
          ids.push(t);
        }
      }
      i = j;
    }
    const merged = this.#merge(ids.slice(first));
    const out = ids.slice(0, first).concat(merged);
    if (options.eos ?? false) out.push(EOS_TOKEN);
    return out;
  }

  /** Greedy best-score pair merges, leftmost first on ties, with a heap over live pairs. */
  #merge(ids: number[]): number[] {
    const n = ids.length;
    if (n < 2) return ids;
    const tok = Int32Array.from(ids);
    const prev = new Int32Array(n), next = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    // Heap entries: left node index, right node index, their token ids at push time, merged id, score.
    const heap = new PairHeap();
    const push = (a: number): void => {
      const b = next[a]!;
      if (b < 0) return;
      const id = this.#lookup.get(this.#keys[tok[a]!]! + this.#keys[tok[b]!]!);
      // run.c starts its search at best_score = -1e10 and needs a strictly better score.
      if (id !== undefined && this.scores[id]! > -1e10) {
        heap.push(this.scores[id]!, a, b, tok[a]!, tok[b]!, id);
      }
    };
    for (let i = 0; i + 1 < n; i++) push(i);
    const alive = new Uint8Array(n).fill(1);
    while (heap.size > 0) {
      const e = heap.pop();
      const a = e.left, b = e.right;
      // Stale if either node died, they are no longer neighbours, or a token changed.
      if (
        !alive[a] || !alive[b] || next[a] !== b || tok[a] !== e.leftToken || tok[b] !== e.rightToken
      ) {
        continue;
      }
      tok[a] = e.merged;
      alive[b] = 0;
      next[a] = next[b]!;
      if (next[b]! >= 0) prev[next[b]!] = a;
      if (prev[a]! >= 0) push(prev[a]!);
      push(a);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]!) out.push(tok[i]!);
    return out;
  }

  /**
   * Bytes token `token` prints as after `prev` (`run.c`'s `decode()`): the
   * piece, without its leading space right after BOS, or the raw byte of a
   * `<0xXX>` piece.
   *
   * @param prev The previous token id (BOS strips a leading space).
   * @param token The token id.
   * @returns Bytes (a view into the vocabulary; do not mutate).
   * @throws {RangeError} If a token id is out of range.
   */
  piece(prev: number, token: number): Uint8Array {
    this.#checkId("decode token", token);
    const b = this.#byteOf[token]!;
    if (b >= 0) return BYTES[b]!;
    const p = this.pieces[token]!;
    return prev === BOS_TOKEN && p[0] === 0x20 ? p.subarray(1) : p;
  }

  /**
   * Decodes token ids to text: pieces as {@linkcode Tokenizer.piece} prints
   * them (BOS and EOS print nothing), joined, then UTF-8 decoded (invalid
   * sequences become U+FFFD).
   *
   * @param tokens Token ids.
   * @returns The text.
   * @throws {RangeError} If a token id is out of range.
   */
  decode(tokens: ArrayLike<number>): string {
    const parts: Uint8Array[] = [];
    let n = 0;
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i]!;
      this.#checkId("decode tokens", t);
      if (t === BOS_TOKEN || t === EOS_TOKEN) continue;
      const p = this.piece(i > 0 ? tokens[i - 1]! : -1, t);
      parts.push(p);
      n += p.length;
    }
    const all = new Uint8Array(n);
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    return new TextDecoder().decode(all);
  }

  #checkId(action: string, t: number): void {
    if (!Number.isInteger(t) || t < 0 || t >= this.vocabSize) {
      throw new RangeError(
        `Cannot ${action}: token ids must be integers in [0, ${this.vocabSize}), got ${
          describeValue(t)
        }`,
      );
    }
  }
}

const BYTES: Uint8Array[] = Array.from({ length: 256 }, (_, b) => Uint8Array.of(b));

interface PairEntry {
  score: number;
  left: number;
  right: number;
  leftToken: number;
  rightToken: number;
  merged: number;
}

/** Max-heap on (score, then smaller left index). */
class PairHeap {
  #items: PairEntry[] = [];
  get size(): number {
    return this.#items.length;
  }
  push(
    score: number,
    left: number,
    right: number,
    leftToken: number,
    rightToken: number,
    merged: number,
  ): void {
    const a = this.#items;
    a.push({ score, left, right, leftToken, rightToken, merged });
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }
  pop(): PairEntry {
    const a = this.#items;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < a.length && before(a[l]!, a[m]!)) m = l;
        if (r < a.length && before(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}

function before(x: PairEntry, y: PairEntry): boolean {
  return x.score > y.score || (x.score === y.score && x.left < y.left);
}
