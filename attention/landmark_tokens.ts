// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Landmark tokens in token streams (Landmark Attention, Mohtashami & Jaggi
 * 2023): a landmark is appended after every `blockSize` content tokens, both
 * when a prompt is prefilled and while tokens are generated, and the rows a
 * model computes for landmarks are dropped from the logits it returns.
 *
 * ## Stream layout
 *
 * Block `c` of the stream holds `blockSize` content tokens followed by its
 * landmark: stream indices `[c·(blockSize+1), (c+1)·(blockSize+1))`, landmark
 * at the last one. So stream index `i` is a landmark exactly when
 * `i mod (blockSize + 1) == blockSize`, and a trailing partial block has no
 * landmark yet. Landmarks occupy positions like any other token (they take
 * part in RoPE). Every function here and every kernel in `landmark.ts` uses
 * this layout, counted from the first token of the sequence.
 *
 * @see https://arxiv.org/abs/2305.16300
 *
 * @module
 */

import type { Tensor } from "../tensor/types.ts";
import { zeros } from "../tensor/tensor.ts";
import { describeValue, requireInt, requirePositiveInt } from "../tensor/validate.ts";

/** Content tokens per landmark block in the paper's LM benchmarks (`mem_freq` 50, block length 51). */
export const DEFAULT_LANDMARK_BLOCK_SIZE = 50;

/** Blocks retrieved per query by default (the brief's default; the paper evaluates k = 2…5). */
export const DEFAULT_LANDMARK_TOP_K = 4;

/** Settings of a published landmark configuration (see {@linkcode LANDMARK_PRESETS}). */
export interface LandmarkPreset {
  /** Content tokens per block (`mem_freq`); the block length is `blockSize + 1`. */
  readonly blockSize: number;
  /** Blocks retrieved per query in the authors' evaluation scripts. */
  readonly topK: number;
  /** Training sequence length (tokens, landmarks included). */
  readonly trainLength: number;
  /** Vocabulary id of the landmark token, where the model defines one. */
  readonly landmarkId?: number;
}

/**
 * Published landmark configurations (epfml/landmark-attention @ d963e504).
 *
 * | preset | blockSize | block length | topK | train length | landmark id |
 * | --- | --- | --- | --- | --- | --- |
 * | `"lm-benchmark"` (GPT-2-like, PG19 / arXiv-math) | 50 | 51 | 4 (evaluated 2–4) | 512 | — |
 * | `"llama-7b"` (LLaMA-7B fine-tune, `llama/train.py`) | 63 | 64 | 5 (`run_test.py`) | 512 | 32001 |
 *
 * @example The LLaMA fine-tune's block of 64 and its local chunk length
 * ```ts
 * import { LANDMARK_PRESETS, landmarkChunkLength } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * const p = LANDMARK_PRESETS["llama-7b"];
 * assert.equal(p.blockSize + 1, 64);
 * assert.equal(landmarkChunkLength(p), 512 - 0 - 6 * 64);
 * ```
 */
export const LANDMARK_PRESETS: Readonly<Record<"lm-benchmark" | "llama-7b", LandmarkPreset>> =
  Object.freeze({
    "lm-benchmark": Object.freeze({ blockSize: 50, topK: 4, trainLength: 512 }),
    "llama-7b": Object.freeze({ blockSize: 63, topK: 5, trainLength: 512, landmarkId: 32001 }),
  });

/**
 * Longest chunk of new tokens the authors process at once with retrieval, so
 * that the `k + 1` retrieved block slots plus the chunk stay within the
 * training length: `trainLength − (trainLength mod Bℓ) − (topK + 1)·Bℓ` with
 * `Bℓ = blockSize + 1`.
 *
 * @param preset Block size, top-k and training length.
 * @returns The chunk length in tokens.
 * @throws {RangeError} If a size is not a positive integer or the chunk would be empty
 *   (the authors' "K is too large for this model").
 *
 * @example 512 tokens, block length 51, k = 5 gives 204
 * ```ts
 * import { landmarkChunkLength } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * assert.equal(landmarkChunkLength({ blockSize: 50, topK: 5, trainLength: 512 }), 204);
 * ```
 */
export function landmarkChunkLength(
  preset: Pick<LandmarkPreset, "blockSize" | "topK" | "trainLength">,
): number {
  const action = "compute landmark chunk length";
  const bs = requirePositiveInt(action, "blockSize", preset.blockSize);
  const k = requirePositiveInt(action, "topK", preset.topK);
  const train = requirePositiveInt(action, "trainLength", preset.trainLength);
  const bl = bs + 1;
  const chunk = train - (train % bl) - (k + 1) * bl;
  if (chunk <= 0) {
    throw new RangeError(
      `Cannot ${action}: (topK + 1) blocks of ${bl} tokens must leave room in trainLength ${train}, got topK ${k}`,
    );
  }
  return chunk;
}

/**
 * Whether stream index `index` holds a landmark (see the module doc's layout).
 *
 * @param index Stream index (landmarks counted), a non-negative integer.
 * @param blockSize Content tokens per block. @default {50}
 * @returns `index mod (blockSize + 1) == blockSize`.
 * @throws {RangeError} If an argument is not a valid integer.
 *
 * @example
 * ```ts
 * import { isLandmarkIndex } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * assert.ok(isLandmarkIndex(3, 3));
 * assert.ok(!isLandmarkIndex(4, 3));
 * assert.ok(isLandmarkIndex(7, 3));
 * ```
 */
export function isLandmarkIndex(index: number, blockSize = DEFAULT_LANDMARK_BLOCK_SIZE): boolean {
  const action = "test landmark index";
  requireInt(action, "index", index);
  if (index < 0) {
    throw new RangeError(`Cannot ${action}: index must be non-negative, got ${index}`);
  }
  const bs = requirePositiveInt(action, "blockSize", blockSize);
  return index % (bs + 1) === bs;
}

/** Options of {@linkcode insertLandmarks}. */
export interface InsertLandmarksOptions {
  /** Vocabulary id of the landmark token. */
  landmarkId: number;
  /** Content tokens per block. @default {50} */
  blockSize?: number;
}

/**
 * Inserts a landmark after every `blockSize` content tokens (the authors'
 * training-time and prefill insertion). A trailing partial block gets no
 * landmark.
 *
 * @param tokens Content token ids, shape `[n]`.
 * @param options Landmark id and block size.
 * @returns The stream, shape `[n + floor(n / blockSize)]`.
 * @throws {RangeError} If `blockSize` is not a positive integer, `landmarkId` or a token is not an integer.
 *
 * @example Blocks of 3
 * ```ts
 * import { insertLandmarks } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * const s = insertLandmarks([1, 2, 3, 4, 5, 6, 7], { landmarkId: 0, blockSize: 3 });
 * assert.deepEqual([...s], [1, 2, 3, 0, 4, 5, 6, 0, 7]);
 * ```
 */
export function insertLandmarks(
  tokens: ArrayLike<number>,
  options: InsertLandmarksOptions,
): Int32Array {
  const action = "insert landmarks";
  const id = requireInt(action, "landmarkId", options?.landmarkId);
  const bs = requirePositiveInt(
    action,
    "blockSize",
    options.blockSize ?? DEFAULT_LANDMARK_BLOCK_SIZE,
  );
  checkTokens(action, tokens);
  const n = tokens.length;
  const out = new Int32Array(n + Math.floor(n / bs));
  let o = 0;
  for (let i = 0; i < n; i++) {
    out[o++] = tokens[i]!;
    if ((i + 1) % bs === 0) out[o++] = id;
  }
  return out;
}

/** Options of {@linkcode removeLandmarks}, {@linkcode landmarkMask} and {@linkcode dropLandmarkRows}. */
export interface LandmarkLayoutOptions {
  /** Content tokens per block. @default {50} */
  blockSize?: number;
  /** Stream index of the first element (for a chunk in the middle of a sequence). @default {0} */
  start?: number;
}

/**
 * Removes the landmarks of a stream by their place in the layout (not by id),
 * the inverse of {@linkcode insertLandmarks}.
 *
 * @param stream Stream token ids (or any per-token values), shape `[n]`.
 * @param options Block size and the stream index of `stream[0]`.
 * @returns The content tokens, in order.
 * @throws {RangeError} On a bad block size or start.
 *
 * @example Round trip
 * ```ts
 * import { insertLandmarks, removeLandmarks } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * const s = insertLandmarks([1, 2, 3, 4, 5], { landmarkId: 9, blockSize: 2 });
 * assert.deepEqual([...removeLandmarks(s, { blockSize: 2 })], [1, 2, 3, 4, 5]);
 * ```
 */
export function removeLandmarks(
  stream: ArrayLike<number>,
  options: LandmarkLayoutOptions = {},
): Int32Array {
  const action = "remove landmarks";
  const { bs, start } = layout(action, options);
  checkTokens(action, stream);
  const out: number[] = [];
  for (let i = 0; i < stream.length; i++) {
    if ((start + i) % (bs + 1) !== bs) out.push(stream[i]!);
  }
  return Int32Array.from(out);
}

/**
 * A mask of the landmark slots of `length` stream elements.
 *
 * @param length Number of stream elements, a non-negative integer.
 * @param options Block size and the stream index of element 0.
 * @returns `mask[i] = 1` where stream index `start + i` is a landmark, shape `[length]`.
 * @throws {RangeError} On bad sizes.
 *
 * @example
 * ```ts
 * import { landmarkMask } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * assert.deepEqual([...landmarkMask(6, { blockSize: 2, start: 1 })], [0, 1, 0, 0, 1, 0]);
 * ```
 */
export function landmarkMask(length: number, options: LandmarkLayoutOptions = {}): Uint8Array {
  const action = "build landmark mask";
  const n = requireInt(action, "length", length);
  if (n < 0) throw new RangeError(`Cannot ${action}: length must be non-negative, got ${n}`);
  const { bs, start } = layout(action, options);
  const m = new Uint8Array(n);
  for (let i = 0; i < n; i++) m[i] = (start + i) % (bs + 1) === bs ? 1 : 0;
  return m;
}

/**
 * Drops the rows computed for landmark tokens from per-token outputs (logits
 * `[tokens, vocab]`, hidden states, attention outputs `[tokens, heads, d]`),
 * as the authors' auto-insertion path strips landmark positions: landmark
 * outputs are not predictions.
 *
 * @param x Per-token outputs, shape `[tokens, …]`, any dtype and strides.
 * @param options Block size and the stream index of row 0.
 * @returns A new contiguous tensor `[contentTokens, …]` of the same dtype.
 * @throws {TypeError} If `x` has rank 0.
 * @throws {RangeError} On a bad block size or start.
 *
 * @example Logits of a 7-token stream with blocks of 3: row 3 is the landmark's
 * ```ts
 * import { dropLandmarkRows } from "@longctx/longctx/attention";
 * import { tensor } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const logits = tensor(Float32Array.from({ length: 14 }, (_, i) => i), [7, 2]);
 * const kept = dropLandmarkRows(logits, { blockSize: 3 });
 * assert.deepEqual(kept.shape, [6, 2]);
 * assert.deepEqual([...kept.data.subarray(6, 8)], [8, 9]);
 * ```
 */
export function dropLandmarkRows<T extends Tensor>(x: T, options: LandmarkLayoutOptions = {}): T {
  const action = "drop landmark rows";
  if (x === null || typeof x !== "object" || !Array.isArray(x.shape) || x.shape.length === 0) {
    throw new TypeError(
      `Cannot ${action}: x must be a tensor of rank at least 1, got shape ${
        describeValue(x?.shape)
      }`,
    );
  }
  const { bs, start } = layout(action, options);
  const rows = x.shape[0]!;
  const keep: number[] = [];
  for (let i = 0; i < rows; i++) if ((start + i) % (bs + 1) !== bs) keep.push(i);
  const shape = [keep.length, ...x.shape.slice(1)];
  const out = zeros(x.dtype, shape);
  const inner = shape.slice(1).reduce((a, b) => a * b, 1);
  // Copy row by row through an odometer over the trailing axes (views may be strided).
  const r = x.shape.length;
  const idx = new Array<number>(r).fill(0);
  let o = 0;
  for (const row of keep) {
    for (let e = 0; e < inner; e++) {
      let rem = e, src = x.offset + row * x.strides[0]!;
      for (let a = r - 1; a >= 1; a--) {
        idx[a] = rem % x.shape[a]!;
        rem = Math.floor(rem / x.shape[a]!);
        src += idx[a]! * x.strides[a]!;
      }
      out.data[o++] = x.data[src]!;
    }
  }
  return out as unknown as T;
}

/** What to run through the model for one {@linkcode LandmarkInserter.feed}. */
export interface LandmarkFeed {
  /** Stream tokens to run, in order: the fed content tokens with landmarks inserted. */
  tokens: Int32Array;
  /** Stream index (= position) of `tokens[0]`. */
  start: number;
  /** Rows of `tokens` that are content tokens (their logits are predictions), ascending. */
  contentRows: Int32Array;
  /**
   * Row whose logits predict the next content token: the last content row
   * (the authors' `drop_last_logit_if_mem`), or −1 when nothing was fed.
   */
  predictRow: number;
}

/** Options of {@linkcode LandmarkInserter}. */
export interface LandmarkInserterOptions {
  /** Vocabulary id of the landmark token. */
  landmarkId: number;
  /** Content tokens per block. @default {50} */
  blockSize?: number;
}

/**
 * Landmark insertion during generation. Feed the prompt, then every generated
 * token; each feed returns the stream tokens to run through the model: the
 * content tokens, plus a landmark right after each one that completes a
 * block (so a generated token that completes a block is run together with its
 * landmark, and the landmark's logits are dropped: read `predictRow`).
 *
 * Feeding tokens in any split gives the same stream as
 * {@linkcode insertLandmarks} on their concatenation.
 *
 * @example Prompt of 5, then two generated tokens, blocks of 3
 * ```ts
 * import { LandmarkInserter } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * const ins = new LandmarkInserter({ landmarkId: 0, blockSize: 3 });
 * const p = ins.feed([11, 12, 13, 14, 15]);
 * assert.deepEqual([...p.tokens], [11, 12, 13, 0, 14, 15]);
 * assert.equal(p.predictRow, 5);
 * const g = ins.feed([16]);                 // completes block 1
 * assert.deepEqual([...g.tokens], [16, 0]);
 * assert.equal(g.start, 6);
 * assert.equal(g.predictRow, 0);           // the landmark's logits (row 1) are dropped
 * assert.equal(ins.feed([17]).start, 8);
 * ```
 */
export class LandmarkInserter {
  /** Vocabulary id of the landmark token. */
  readonly landmarkId: number;
  /** Content tokens per block. */
  readonly blockSize: number;
  #content = 0;

  /**
   * Creates an inserter for an empty sequence.
   *
   * @param options Landmark id and block size.
   * @throws {RangeError} If `landmarkId` is not an integer or `blockSize` not a positive integer.
   */
  constructor(options: LandmarkInserterOptions) {
    const action = "create LandmarkInserter";
    this.landmarkId = requireInt(action, "landmarkId", options?.landmarkId);
    this.blockSize = requirePositiveInt(
      action,
      "blockSize",
      options.blockSize ?? DEFAULT_LANDMARK_BLOCK_SIZE,
    );
  }

  /** Content tokens fed so far. */
  get contentLength(): number {
    return this.#content;
  }

  /** Stream tokens produced so far (content and landmarks): the next stream index. */
  get streamLength(): number {
    return this.#content + Math.floor(this.#content / this.blockSize);
  }

  /**
   * Adds content tokens (a prompt, a chunk of it, or one generated token).
   *
   * @param tokens Content token ids, shape `[n]`.
   * @returns The stream tokens to run, their start index, and which rows are content.
   * @throws {RangeError} If a token is not an integer.
   */
  feed(tokens: ArrayLike<number>): LandmarkFeed {
    const action = "feed LandmarkInserter";
    checkTokens(action, tokens);
    const start = this.streamLength;
    const out: number[] = [];
    const rows: number[] = [];
    for (let i = 0; i < tokens.length; i++) {
      rows.push(out.length);
      out.push(tokens[i]!);
      this.#content++;
      if (this.#content % this.blockSize === 0) out.push(this.landmarkId);
    }
    return {
      tokens: Int32Array.from(out),
      start,
      contentRows: Int32Array.from(rows),
      predictRow: rows.length > 0 ? rows[rows.length - 1]! : -1,
    };
  }

  /** Forgets the sequence. */
  reset(): void {
    this.#content = 0;
  }
}

function layout(action: string, o: LandmarkLayoutOptions): { bs: number; start: number } {
  const bs = requirePositiveInt(action, "blockSize", o.blockSize ?? DEFAULT_LANDMARK_BLOCK_SIZE);
  const start = requireInt(action, "start", o.start ?? 0);
  if (start < 0) throw new RangeError(`Cannot ${action}: start must be non-negative, got ${start}`);
  return { bs, start };
}

function checkTokens(action: string, tokens: ArrayLike<number>): void {
  if (tokens === null || typeof tokens !== "object" || typeof tokens.length !== "number") {
    throw new TypeError(
      `Cannot ${action}: tokens must be an array of integers, got ${describeValue(tokens)}`,
    );
  }
  for (let i = 0; i < tokens.length; i++) {
    if (!Number.isSafeInteger(tokens[i])) {
      throw new RangeError(
        `Cannot ${action}: tokens[${i}] must be an integer, got ${describeValue(tokens[i])}`,
      );
    }
  }
}
