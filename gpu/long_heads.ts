// Copyright 2026 the longctx authors. MIT license.

/**
 * LongHeads decode on WebGPU: chunk scoring, top-(k − 3) chunk selection and
 * the gathered attend with RoPE on read run on the GPU, composed from
 * {@linkcode scoreKeysWebGpu}, {@linkcode topKWebGpu} and
 * {@linkcode sparseAttendWebGpu}. Chunk summary keys (the paper's ranking,
 * `chunkScore: "summary"`) or chunk key bounds (`chunkScore: "key-bound"`,
 * ranked by Quest's bound) are built by the CPU reference (`LongHeads` in
 * `attention/long_heads.ts`) and uploaded with
 * {@linkcode uploadLongHeadsSummaries} (whole table) or kept in a growing
 * {@linkcode LongHeadsGpuSummaries} table (only new chunks uploaded).
 *
 * | `chunkScore` | table layout | chunk score |
 * | --- | --- | --- |
 * | `"summary"` | `[chunks, rows, headDim]`, rows = heads (`"query-head"`) or kvHeads (`"kv-head"`) | `⟨q_raw, c⟩` |
 * | `"key-bound"` | `[2, chunks, kvHeads, headDim]`: element-wise min, then max, of the chunk's un-rotated keys | `Σ_x max(q_x · min_x, q_x · max_x)` |
 *
 * | piece | export |
 * | --- | --- |
 * | decode step | {@linkcode longHeadsDecodeWebGpu} |
 * | summaries on the GPU | {@linkcode uploadLongHeadsSummaries}, {@linkcode LongHeadsGpuSummaries} |
 *
 * @module
 */

import type { AttendStats } from "../attention/sparse_attend.ts";
import type { HeadSelection, Selection } from "../attention/selection.ts";
import { longHeadsWindow } from "../attention/_long_heads_window.ts";
import {
  describeValue,
  requireFinite,
  requireNonNegativeInt,
  requireOneOf,
  requirePositiveInt,
} from "../tensor/validate.ts";
import { type GpuCommand, type GpuContext, STORAGE_USAGE } from "./device.ts";
import type { GpuKvView } from "./kv_store.ts";
import { scoreKeysWebGpu } from "./score.ts";
import { type GpuRotary, sparseAttendWebGpu } from "./sparse_attend.ts";
import {
  createGpuTensor,
  download,
  type GpuAttentionState,
  type GpuTensor,
  releaseTensor,
  upload,
} from "./tensor.ts";
import { topKWebGpu } from "./topk.ts";
import { requireBindable, requireGpuThd, storageOf } from "./_kernel.ts";
import { grid2d } from "./_wgsl/common.ts";
import { GROUP_SUM_PARAMS, groupSumWgsl } from "./_wgsl/long_heads.ts";

/** Threads per workgroup of the group-sum kernel. */
const GROUP_SUM_WORKGROUP = 64;

/**
 * The LongHeads configuration the GPU path follows; a `LongHeads` instance
 * (`attention/long_heads.ts`) satisfies it.
 */
export interface LongHeadsWebGpuConfig {
  /** Chunk size `w` in tokens. */
  readonly chunkSize: number;
  /** Chunks per window `k = A / w` (at least 3). */
  readonly chunks: number;
  /** Dense at or below this cache length. */
  readonly selectiveThreshold: number;
  /** `"query-head"`: one window per query head; `"kv-head"`: one per KV head, scored with the summed group query. */
  readonly gqa: "query-head" | "kv-head";
  /**
   * Chunk ranking: `"summary"` (the paper's, `⟨q_raw, c⟩` against summary
   * keys) or `"key-bound"` (Quest's bound over each chunk's min/max of
   * un-rotated keys); it decides the layout of the table
   * {@linkcode longHeadsDecodeWebGpu} reads.
   * @default {"summary"}
   */
  readonly chunkScore?: "summary" | "key-bound";
}

/**
 * The source {@linkcode uploadLongHeadsSummaries} and
 * {@linkcode LongHeadsGpuSummaries} read: a `LongHeads` instance
 * (`summary` in `"summary"` mode, `keyBound` in `"key-bound"` mode).
 */
export interface LongHeadsSummarySource {
  /** GQA variant (decides the rows per KV head of summary keys). */
  readonly gqa: "query-head" | "kv-head";
  /** Chunk ranking: which of `summary` / `keyBound` is read. @default {"summary"} */
  readonly chunkScore?: "summary" | "key-bound";
  /** `[headDim]` summary key of one chunk for one query row, `undefined` if not built. */
  summary(layer: number, kvHead: number, row: number, chunk: number): Float32Array | undefined;
  /**
   * `[2 · headDim]` element-wise min then max of one chunk's un-rotated keys,
   * `undefined` if not built; required when `chunkScore` is `"key-bound"`.
   */
  keyBound?(layer: number, kvHead: number, chunk: number): Float32Array | undefined;
}

/** Options of {@linkcode longHeadsDecodeWebGpu}. */
export interface LongHeadsDecodeWebGpuOptions {
  /** Original position of the decode query (an integer when `rope` is given). */
  queryPosition: number;
  /** RoPE applied on read (queries arrive raw); a `Rope` works. */
  rope?: GpuRotary;
  /** Multiplies q·k. @default {1 / Math.sqrt(headDim)} */
  scale?: number;
  /** Logit soft-cap. @default {undefined} (none) */
  softCap?: number;
  /** Accumulates what the attend read, as `sparseAttend` counts it. */
  stats?: AttendStats;
}

/** Result of {@linkcode longHeadsDecodeWebGpu}: the attention state plus what was chosen. */
export interface LongHeadsDecodeWebGpuResult extends GpuAttentionState {
  /**
   * Chosen chunks, `[rows, take]` row-major, ascending within a row; rows are
   * query heads (`"query-head"`) or KV heads (`"kv-head"`). Empty when the
   * step is dense or no candidate chunk exists.
   */
  readonly chosen: Int32Array;
  /** Chunks chosen per row (`min(k − 3, a − 2)`, or 0 when dense). */
  readonly take: number;
  /** The selection the attend executed, one {@linkcode HeadSelection} per query head. */
  readonly selection: Selection;
}

/**
 * Packs the chunk ranking data of chunks `0 … chunks − 1` from the CPU
 * reference into one contiguous GPU tensor, the layout
 * {@linkcode longHeadsDecodeWebGpu} reads. With `source.chunkScore` `"summary"`
 * (default) the summary keys: `[chunks, kvHeads · group, headDim]` (query head
 * `h = kh · group + r` reads row `h`) in `"query-head"` mode,
 * `[chunks, kvHeads, headDim]` in `"kv-head"` mode. With `"key-bound"` the key
 * bounds `[2, chunks, kvHeads, headDim]`: `[0, c, kh]` the chunk's element-wise
 * min, `[1, c, kh]` its max (`source.keyBound`), shared by the group's query
 * heads in both GQA modes.
 *
 * | cost | |
 * | --- | --- |
 * | host | O(chunks · rows · headDim) copy (key-bound: O(2 · chunks · kvHeads · headDim)) |
 * | transfer | one upload of that size |
 *
 * @param gpu The context.
 * @param source The selector (`LongHeads`) that built the summaries or bounds.
 * @param layer Layer index.
 * @param kvHeads KV heads.
 * @param group Query heads per KV head.
 * @param chunks Complete chunks to pack (≥ 1).
 * @param headDim Head dimension.
 * @returns f32 GPU tensor of the summaries or bounds (pooled).
 * @throws {RangeError} On non-integer sizes, or if a summary or bound is not built yet.
 * @throws {TypeError} If a summary or bound has the wrong length, `source.chunkScore`
 *   is unknown, or a key-bound source has no `keyBound`.
 *
 * @example The summaries of 10 chunks, as `LongHeads.summary` holds them (skipped without a GPU)
 * ```ts
 * import { download, tryRequestGpu, uploadLongHeadsSummaries } from "@longctx/longctx/gpu";
 * import { AttentionPipeline, LongHeads } from "@longctx/longctx/attention";
 * import { Rope } from "@longctx/longctx/positional";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const longHeads = new LongHeads({ chunkSize: 4, attentionLength: 16 });
 *   const pipe = new AttentionPipeline({ layers: 1, heads: 4, kvHeads: 2, headDim: 8, rope: new Rope({ headDim: 8 }), selector: longHeads });
 *   pipe.attend(0, randn([40, 4, 8], { seed: 1 }), randn([40, 2, 8], { seed: 2 }), randn([40, 2, 8], { seed: 3 })); // 10 chunks
 *   const keys = await download(gpu, uploadLongHeadsSummaries(gpu, longHeads, 0, 2, 2, 10, 8)); // [10, 4, 8]
 *   assert.deepEqual(keys.shape, [10, 4, 8]);
 *   const at = (3 * 4 + 2) * 8; // chunk 3, query head 2 = KV head 1, row 0 of its group
 *   assert.deepEqual(keys.data.slice(at, at + 8), longHeads.summary(0, 1, 0, 3));
 *   gpu.destroy();
 * }
 * ```
 *
 * @example Key bounds in `"key-bound"` mode: min then max, per KV head (skipped without a GPU)
 * ```ts
 * import { download, tryRequestGpu, uploadLongHeadsSummaries } from "@longctx/longctx/gpu";
 * import { AttentionPipeline, LongHeads } from "@longctx/longctx/attention";
 * import { Rope } from "@longctx/longctx/positional";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const longHeads = new LongHeads({ chunkSize: 4, attentionLength: 16, chunkScore: "key-bound" });
 *   const pipe = new AttentionPipeline({ layers: 1, heads: 4, kvHeads: 2, headDim: 8, rope: new Rope({ headDim: 8 }), selector: longHeads });
 *   pipe.attend(0, randn([40, 4, 8], { seed: 1 }), randn([40, 2, 8], { seed: 2 }), randn([40, 2, 8], { seed: 3 })); // 10 chunks
 *   const bounds = await download(gpu, uploadLongHeadsSummaries(gpu, longHeads, 0, 2, 2, 10, 8));
 *   assert.deepEqual(bounds.shape, [2, 10, 2, 8]); // [min | max, chunk, KV head, headDim]
 *   const [lo, hi] = [(3 * 2 + 1) * 8, ((10 + 3) * 2 + 1) * 8]; // chunk 3, KV head 1
 *   const want = longHeads.keyBound(0, 1, 3)!; // [2 · 8]: min, then max
 *   assert.deepEqual(bounds.data.slice(lo, lo + 8), want.slice(0, 8));
 *   assert.deepEqual(bounds.data.slice(hi, hi + 8), want.slice(8));
 *   gpu.destroy();
 * }
 * ```
 */
export function uploadLongHeadsSummaries(
  gpu: GpuContext,
  source: LongHeadsSummarySource,
  layer: number,
  kvHeads: number,
  group: number,
  chunks: number,
  headDim: number,
): GpuTensor<"f32"> {
  const action = "upload LongHeads summaries";
  for (
    const [name, v] of [["layer", layer], ["kvHeads", kvHeads], ["group", group], [
      "chunks",
      chunks,
    ], ["headDim", headDim]] as const
  ) {
    requireNonNegativeInt(action, name, v);
  }
  if (kvHeads === 0 || group === 0 || chunks === 0 || headDim === 0) {
    throw new RangeError(
      `Cannot ${action}: kvHeads, group, chunks and headDim must be positive, got ${
        describeValue([kvHeads, group, chunks, headDim])
      }`,
    );
  }
  if (sourceChunkScore(action, source) === "key-bound") {
    const data = packBounds(action, source, layer, kvHeads, 0, chunks, headDim);
    return upload(gpu, {
      dtype: "f32",
      shape: [2, chunks, kvHeads, headDim],
      strides: [chunks * kvHeads * headDim, kvHeads * headDim, headDim, 1],
      offset: 0,
      data,
    }) as GpuTensor<"f32">;
  }
  const perKv = source.gqa === "query-head" ? group : 1;
  const data = packSummaries(action, source, layer, kvHeads, perKv, 0, chunks, headDim);
  return upload(gpu, {
    dtype: "f32",
    shape: [chunks, kvHeads * perKv, headDim],
    strides: [kvHeads * perKv * headDim, headDim, 1],
    offset: 0,
    data,
  }) as GpuTensor<"f32">;
}

/** The source's `chunkScore` (default `"summary"`), validated; a key-bound source needs `keyBound`. */
function sourceChunkScore(
  action: string,
  source: LongHeadsSummarySource,
): "summary" | "key-bound" {
  if (source === null || typeof source !== "object") {
    throw new TypeError(`Cannot ${action}: source must be an object, got ${describeValue(source)}`);
  }
  const mode = requireOneOf(action, "source.chunkScore", source.chunkScore ?? "summary", [
    "summary",
    "key-bound",
  ]);
  if (mode === "key-bound" && typeof source.keyBound !== "function") {
    throw new TypeError(
      `Cannot ${action}: source.keyBound must be a function in "key-bound" mode, got ${
        describeValue(source.keyBound)
      }`,
    );
  }
  return mode;
}

/**
 * Key bounds of chunks `from … to − 1`, `[2, to − from, kvHeads, d]` row-major:
 * the element-wise minima, then the maxima.
 */
function packBounds(
  action: string,
  source: LongHeadsSummarySource,
  layer: number,
  kvHeads: number,
  from: number,
  to: number,
  d: number,
): Float32Array {
  const half = (to - from) * kvHeads * d;
  const out = new Float32Array(2 * half);
  for (let c = from; c < to; c++) {
    for (let kh = 0; kh < kvHeads; kh++) {
      const b = source.keyBound!(layer, kh, c);
      if (b === undefined) {
        throw new RangeError(
          `Cannot ${action}: chunk ${c} of layer ${layer}, KV head ${kh} has no key bound yet`,
        );
      }
      if (b.length !== 2 * d) {
        throw new TypeError(
          `Cannot ${action}: key bound length must be 2 · headDim (${2 * d}), got ${b.length}`,
        );
      }
      const at = ((c - from) * kvHeads + kh) * d;
      out.set(b.subarray(0, d), at);
      out.set(b.subarray(d, 2 * d), half + at);
    }
  }
  return out;
}

/** Summaries of chunks `from … to − 1`, `[to − from, kvHeads · perKv, d]` row-major. */
function packSummaries(
  action: string,
  source: LongHeadsSummarySource,
  layer: number,
  kvHeads: number,
  perKv: number,
  from: number,
  to: number,
  d: number,
): Float32Array {
  const rows = kvHeads * perKv;
  const out = new Float32Array((to - from) * rows * d);
  for (let c = from; c < to; c++) {
    for (let kh = 0; kh < kvHeads; kh++) {
      for (let r = 0; r < perKv; r++) {
        const s = source.summary(layer, kh, r, c);
        if (s === undefined) {
          throw new RangeError(
            `Cannot ${action}: chunk ${c} of layer ${layer}, KV head ${kh}, row ${r} has no summary yet`,
          );
        }
        if (s.length !== d) {
          throw new TypeError(
            `Cannot ${action}: summary length must be headDim (${d}), got ${s.length}`,
          );
        }
        out.set(s, ((c - from) * rows + kh * perKv + r) * d);
      }
    }
  }
  return out;
}

/** Options of {@linkcode LongHeadsGpuSummaries}. */
export interface LongHeadsGpuSummariesOptions {
  /** KV heads. */
  kvHeads: number;
  /** Query heads per KV head. */
  group: number;
  /** Head dimension. */
  headDim: number;
  /** GQA variant of the selector (rows per KV head of summary keys: `group` or 1). */
  gqa: "query-head" | "kv-head";
  /**
   * Chunk ranking of the selector: `"summary"` holds summary keys,
   * `"key-bound"` the per-KV-head key bounds (min and max halves).
   * @default {"summary"}
   */
  chunkScore?: "summary" | "key-bound";
  /** Chunks the first buffer holds (it doubles as needed). @default {64} */
  initialChunks?: number;
}

/**
 * A growing GPU copy of one layer's LongHeads summary keys (or key bounds) for
 * a decode loop: {@linkcode LongHeadsGpuSummaries.sync} uploads only the
 * chunks completed since the last call (one chunk per `w` decode steps),
 * instead of the whole table every step. Layout as
 * {@linkcode uploadLongHeadsSummaries}: `[chunks, rows, headDim]` contiguous
 * in `"summary"` mode; `[2, chunks, kvHeads, headDim]` in `"key-bound"` mode,
 * where each half (min, max) is contiguous and the halves lie
 * `strides[0]` elements apart (the buffer's capacity).
 *
 * | cost | |
 * | --- | --- |
 * | sync | O(new chunks · rows · headDim) upload; a doubling copies the table on the GPU |
 * | memory | ≤ 2 × the table, f32 |
 *
 * @example A decode loop vs the CPU pipeline (skipped without a GPU)
 * ```ts
 * import { downloadState, GpuKvStore, LongHeadsGpuSummaries, longHeadsDecodeWebGpu, tryRequestGpu, upload } from "@longctx/longctx/gpu";
 * import { AttentionPipeline, LongHeads } from "@longctx/longctx/attention";
 * import { Rope } from "@longctx/longctx/positional";
 * import { randn, sliceAxis } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const [rope, lh] = [new Rope({ headDim: 8 }), new LongHeads({ chunkSize: 4, attentionLength: 16 })];
 *   const pipe = new AttentionPipeline({ layers: 1, heads: 4, kvHeads: 2, headDim: 8, rope, selector: lh, keyForm: "pre-rope" });
 *   const store = new GpuKvStore(gpu, { layers: 1, kvHeads: 2, headDim: 8, capacity: 64, dtype: "f32" });
 *   const table = new LongHeadsGpuSummaries(gpu, { kvHeads: 2, group: 2, headDim: 8, gqa: lh.gqa });
 *   const [q, k, v] = [randn([40, 4, 8], { seed: 1 }), randn([40, 2, 8], { seed: 2 }), randn([40, 2, 8], { seed: 3 })];
 *   pipe.attend(0, sliceAxis(q, 0, 0, 36), sliceAxis(k, 0, 0, 36), sliceAxis(v, 0, 0, 36)); // prefill
 *   store.append(0, sliceAxis(k, 0, 0, 36), sliceAxis(v, 0, 0, 36));
 *   for (let t = 36; t < 40; t++) { // each decode step, after the CPU selector has seen the token:
 *     const [qt, kt, vt] = [q, k, v].map((x) => sliceAxis(x, 0, t, t + 1));
 *     const cpu = pipe.attend(0, qt, kt, vt);
 *     store.append(0, kt, vt);
 *     const summaries = table.sync(lh, 0, Math.floor((t + 1) / lh.chunkSize)); // uploads new chunks only
 *     const step = await longHeadsDecodeWebGpu(gpu, lh, upload(gpu, qt), store.view(0), summaries, { queryPosition: t, rope });
 *     const { out } = await downloadState(gpu, step);
 *     out.data.forEach((x, i) => assert.ok(Math.abs(x - cpu.out.data[i]) < 1e-4));
 *   }
 *   table.destroy();
 *   store.destroy();
 *   gpu.destroy();
 * }
 * ```
 *
 * @example Key bounds (`chunkScore: "key-bound"`): each half is a contiguous `[chunks, kvHeads, headDim]` view (skipped without a GPU)
 * ```ts
 * import { download, LongHeadsGpuSummaries, tryRequestGpu } from "@longctx/longctx/gpu";
 * import { AttentionPipeline, LongHeads } from "@longctx/longctx/attention";
 * import { Rope } from "@longctx/longctx/positional";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const lh = new LongHeads({ chunkSize: 4, attentionLength: 16, chunkScore: "key-bound" });
 *   const pipe = new AttentionPipeline({ layers: 1, heads: 4, kvHeads: 2, headDim: 8, rope: new Rope({ headDim: 8 }), selector: lh });
 *   const table = new LongHeadsGpuSummaries(gpu, { kvHeads: 2, group: 2, headDim: 8, gqa: lh.gqa, chunkScore: lh.chunkScore });
 *   pipe.attend(0, randn([21, 4, 8], { seed: 1 }), randn([21, 2, 8], { seed: 2 }), randn([21, 2, 8], { seed: 3 }));
 *   const view = table.sync(lh, 0, 5); // [2, 5, 2, 8]
 *   const half = (i: number) => ({ ...view, shape: view.shape.slice(1), strides: view.strides.slice(1), offset: view.offset + i * view.strides[0] });
 *   const [min, max] = [await download(gpu, half(0)), await download(gpu, half(1))];
 *   const want = lh.keyBound(0, 1, 4)!; // chunk 4, KV head 1
 *   const at = (4 * 2 + 1) * 8;
 *   assert.deepEqual(min.data.slice(at, at + 8), want.slice(0, 8));
 *   assert.deepEqual(max.data.slice(at, at + 8), want.slice(8));
 *   table.destroy();
 *   gpu.destroy();
 * }
 * ```
 */
export class LongHeadsGpuSummaries {
  /** Rows per chunk (per half in `"key-bound"` mode): `kvHeads · group` (`"query-head"` summaries) or `kvHeads`. */
  readonly rows: number;
  /** Head dimension. */
  readonly headDim: number;
  /** KV heads. */
  readonly kvHeads: number;
  /** Rows per KV head. */
  readonly perKv: number;
  /** What the table holds: summary keys or key bounds. */
  readonly chunkScore: "summary" | "key-bound";
  #gpu: GpuContext;
  #buffer: GPUBuffer | undefined;
  #capacity: number;
  #count = 0;

  /**
   * Creates an empty table (no GPU memory until the first sync).
   *
   * @param gpu The context.
   * @param options Sizes and GQA variant.
   * @throws {RangeError} If a size is not a positive integer.
   * @throws {TypeError} If `gqa` or `chunkScore` is unknown.
   */
  constructor(gpu: GpuContext, options: LongHeadsGpuSummariesOptions) {
    const action = "create LongHeadsGpuSummaries";
    this.kvHeads = requirePositiveInt(action, "kvHeads", options?.kvHeads);
    const group = requirePositiveInt(action, "group", options.group);
    this.headDim = requirePositiveInt(action, "headDim", options.headDim);
    const gqa = requireOneOf(action, "gqa", options.gqa, ["query-head", "kv-head"]);
    this.chunkScore = requireOneOf(action, "chunkScore", options.chunkScore ?? "summary", [
      "summary",
      "key-bound",
    ]);
    // Key bounds are per KV head in both GQA modes.
    this.perKv = gqa === "query-head" && this.chunkScore === "summary" ? group : 1;
    this.rows = this.kvHeads * this.perKv;
    this.#capacity = requirePositiveInt(action, "initialChunks", options.initialChunks ?? 64);
    this.#gpu = gpu;
  }

  /** Chunks on the GPU. */
  get chunks(): number {
    return this.#count;
  }

  /**
   * Uploads the summaries (or key bounds) of chunks `this.chunks … chunks − 1`
   * from the selector and returns the table (a view valid until the next
   * `sync`, `reset` or `destroy`): `[chunks, rows, headDim]` contiguous, or in
   * `"key-bound"` mode `[2, chunks, kvHeads, headDim]` with strides
   * `[capacity · kvHeads · headDim, kvHeads · headDim, headDim, 1]`.
   *
   * @param source The selector (`LongHeads`), with this table's `chunkScore`.
   * @param layer Layer index.
   * @param chunks Complete chunks to hold (≥ 1; never fewer than already held).
   * @returns f32 GPU tensor view of the table.
   * @throws {RangeError} If `chunks` shrinks or is 0, or a summary or bound is not built.
   * @throws {TypeError} If `source.chunkScore` differs from the table's.
   */
  sync(source: LongHeadsSummarySource, layer: number, chunks: number): GpuTensor<"f32"> {
    const action = "sync LongHeads summaries";
    requirePositiveInt(action, "chunks", chunks);
    requireNonNegativeInt(action, "layer", layer);
    const mode = sourceChunkScore(action, source);
    if (mode !== this.chunkScore) {
      throw new TypeError(
        `Cannot ${action}: source.chunkScore must be the table's ("${this.chunkScore}"), got ${
          describeValue(mode)
        }`,
      );
    }
    if (chunks < this.#count) {
      throw new RangeError(
        `Cannot ${action}: chunks must not shrink below the ${this.#count} held (call reset() for a new sequence), got ${chunks}`,
      );
    }
    const gpu = this.#gpu;
    gpu.checkAlive(action);
    const bound = this.chunkScore === "key-bound";
    const halves = bound ? 2 : 1;
    const rowBytes = this.rows * this.headDim * 4;
    if (this.#buffer === undefined || chunks > this.#capacity) {
      const oldCapacity = this.#capacity;
      while (chunks > this.#capacity) this.#capacity *= 2;
      const next = gpu.pool.acquire(
        halves * this.#capacity * rowBytes,
        STORAGE_USAGE,
        "longheads summaries",
      );
      const old = this.#buffer;
      if (old !== undefined && this.#count > 0) {
        const copies: GpuCommand[] = [];
        for (let i = 0; i < halves; i++) {
          copies.push({
            kind: "copy",
            src: old,
            srcOffset: i * oldCapacity * rowBytes,
            dst: next,
            dstOffset: i * this.#capacity * rowBytes,
            size: this.#count * rowBytes,
          });
        }
        gpu.submit("long-heads-summaries-grow", copies, { release: [old] });
      } else if (old !== undefined) gpu.pool.release(old);
      this.#buffer = next;
    }
    if (chunks > this.#count) {
      const at = this.#count * rowBytes;
      if (bound) {
        const data = packBounds(
          action,
          source,
          layer,
          this.kvHeads,
          this.#count,
          chunks,
          this.headDim,
        );
        const half = data.length / 2;
        gpu.write(this.#buffer, at, data.subarray(0, half));
        gpu.write(this.#buffer, this.#capacity * rowBytes + at, data.subarray(half));
      } else {
        const data = packSummaries(
          action,
          source,
          layer,
          this.kvHeads,
          this.perKv,
          this.#count,
          chunks,
          this.headDim,
        );
        gpu.write(this.#buffer, at, data);
      }
      this.#count = chunks;
    }
    const rowElems = this.rows * this.headDim;
    return {
      dtype: "f32",
      shape: bound ? [2, chunks, this.rows, this.headDim] : [chunks, this.rows, this.headDim],
      strides: bound
        ? [this.#capacity * rowElems, rowElems, this.headDim, 1]
        : [rowElems, this.headDim, 1],
      offset: 0,
      buffer: this.#buffer,
    };
  }

  /** Forgets the held chunks (a new sequence); keeps the buffer. */
  reset(): void {
    this.#count = 0;
  }

  /** Gives the buffer back to the pool. */
  destroy(): void {
    if (this.#buffer !== undefined) this.#gpu.pool.release(this.#buffer);
    this.#buffer = undefined;
    this.#count = 0;
  }
}

/**
 * One LongHeads decode step on the GPU, equal to the CPU pipeline's
 * (`AttentionPipeline` with a `LongHeads` selector) for a single query token:
 * for cache length `n` (the query's own key already appended) and the query's
 * chunk `a = ⌊(n − 1) / w⌋`, a cache of at most `selectiveThreshold` tokens or
 * one whose chunks all fit (`a + 1 ≤ k`) is read densely at original
 * positions; otherwise candidates `1 … a − 2` are scored on the GPU
 * ({@linkcode scoreKeysWebGpu}) by `⟨q_raw, c⟩` against their summary keys
 * (`config.chunkScore` `"summary"`) or by Quest's bound
 * `Σ_x max(q_x · min_x, q_x · max_x)` over their key bounds (`"key-bound"`;
 * in `"query-head"` mode each query head scores its KV head's bounds with
 * its own query), unscaled as the CPU ranks them, the top `k − 3` taken per row
 * ({@linkcode topKWebGpu}, ties to the earlier chunk), and the window — chunk
 * 0, the chosen chunks, chunk `a − 1` and chunk `a` up to the query —
 * re-numbered contiguously from position 0 and attended with RoPE on read
 * ({@linkcode sparseAttendWebGpu}).
 *
 * In `"kv-head"` mode the group's queries are summed on the GPU and one
 * window serves the whole group. The chosen indices come back to the host
 * (one small read-back) because the attend's work list is planned there.
 *
 * | cost per step | |
 * | --- | --- |
 * | scoring | O(heads · G · d) on the GPU, G = a − 2 candidates |
 * | selection | one top-k workgroup per row, then a read-back of `rows · (k − 3)` ints |
 * | attend | ≤ `k · w` keys per row group |
 *
 * @param gpu The context.
 * @param config The LongHeads configuration (a `LongHeads` instance works).
 * @param query Raw decode queries, contiguous `[1, heads, headDim]`, f32 or f16.
 * @param kv The store layer's view holding the cache, the query's key last.
 * @param summaries Chunk ranking table ({@linkcode uploadLongHeadsSummaries} or
 *   {@linkcode LongHeadsGpuSummaries.sync}), G ≥ a − 1 chunks: summary keys
 *   `[G, heads, headDim]` (`"query-head"`) or `[G, kvHeads, headDim]` (`"kv-head"`),
 *   contiguous; in `"key-bound"` mode key bounds `[2, G, kvHeads, headDim]`
 *   (min, max), each half contiguous.
 * @param options Query position, RoPE, scale, soft-cap, stats.
 * @returns `{ out: [1, heads, headDim], lse: [1, heads] }` on the GPU, plus the chosen chunks and the selection.
 * @throws {TypeError} On shape mismatches or an unknown `gqa` or `chunkScore`.
 * @throws {RangeError} On too few summaries, an empty cache or invalid sizes.
 * @throws {GpuDeviceLostError} If the device is lost.
 *
 * @example One decode step vs the CPU `LongHeads` pipeline (skipped without a GPU)
 * ```ts
 * import { downloadState, GpuKvStore, longHeadsDecodeWebGpu, tryRequestGpu, upload, uploadLongHeadsSummaries } from "@longctx/longctx/gpu";
 * import { AttentionPipeline, LongHeads } from "@longctx/longctx/attention";
 * import { Rope } from "@longctx/longctx/positional";
 * import { randn, sliceAxis } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const [heads, kvHeads, headDim, rope] = [4, 2, 8, new Rope({ headDim: 8 })];
 *   const lh = new LongHeads({ chunkSize: 4, attentionLength: 16 }); // windows of k = 4 chunks
 *   const pipe = new AttentionPipeline({ layers: 1, heads, kvHeads, headDim, rope, selector: lh, keyForm: "pre-rope" });
 *   const [q, k, v] = [randn([41, 4, 8], { seed: 1 }), randn([41, 2, 8], { seed: 2 }), randn([41, 2, 8], { seed: 3 })];
 *   const store = new GpuKvStore(gpu, { layers: 1, kvHeads, headDim, capacity: 64, dtype: "f32" });
 *   store.append(0, k, v); // the whole cache, the query's key last
 *   pipe.attend(0, sliceAxis(q, 0, 0, 40), sliceAxis(k, 0, 0, 40), sliceAxis(v, 0, 0, 40));
 *   const cpu = pipe.attend(0, sliceAxis(q, 0, 40, 41), sliceAxis(k, 0, 40, 41), sliceAxis(v, 0, 40, 41));
 *   const summaries = uploadLongHeadsSummaries(gpu, lh, 0, kvHeads, heads / kvHeads, 10, headDim);
 *   const step = await longHeadsDecodeWebGpu(gpu, lh, upload(gpu, sliceAxis(q, 0, 40, 41)), store.view(0), summaries, {
 *     queryPosition: store.length(0) - 1,
 *     rope,
 *   });
 *   assert.equal(step.take, 1); // min(k − 3, a − 2) chunks chosen per head
 *   const { out } = await downloadState(gpu, step);
 *   out.data.forEach((x, i) => assert.ok(Math.abs(x - cpu.out.data[i]) < 1e-4));
 *   store.destroy();
 *   gpu.destroy();
 * }
 * ``` *
 * @example Key-bound ranking, one window per KV head (skipped without a GPU)
 * ```ts
 * import { downloadState, GpuKvStore, longHeadsDecodeWebGpu, tryRequestGpu, upload, uploadLongHeadsSummaries } from "@longctx/longctx/gpu";
 * import { AttentionPipeline, LongHeads } from "@longctx/longctx/attention";
 * import { Rope } from "@longctx/longctx/positional";
 * import { randn, sliceAxis } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const [heads, kvHeads, headDim, rope] = [4, 2, 8, new Rope({ headDim: 8 })];
 *   const lh = new LongHeads({ chunkSize: 4, attentionLength: 20, gqa: "kv-head", chunkScore: "key-bound" });
 *   const pipe = new AttentionPipeline({ layers: 1, heads, kvHeads, headDim, rope, selector: lh, keyForm: "pre-rope" });
 *   const [q, k, v] = [randn([43, 4, 8], { seed: 4 }), randn([43, 2, 8], { seed: 5 }), randn([43, 2, 8], { seed: 6 })];
 *   const store = new GpuKvStore(gpu, { layers: 1, kvHeads, headDim, capacity: 64, dtype: "f32" });
 *   store.append(0, k, v);
 *   pipe.attend(0, sliceAxis(q, 0, 0, 42), sliceAxis(k, 0, 0, 42), sliceAxis(v, 0, 0, 42));
 *   const cpu = pipe.attend(0, sliceAxis(q, 0, 42, 43), sliceAxis(k, 0, 42, 43), sliceAxis(v, 0, 42, 43));
 *   const bounds = uploadLongHeadsSummaries(gpu, lh, 0, kvHeads, heads / kvHeads, 10, headDim); // [2, 10, 2, 8]
 *   const step = await longHeadsDecodeWebGpu(gpu, lh, upload(gpu, sliceAxis(q, 0, 42, 43)), store.view(0), bounds, {
 *     queryPosition: 42,
 *     rope,
 *   });
 *   assert.equal(step.take, 2); // k − 3 chunks of 1 … 8 per KV head
 *   assert.deepEqual(step.selection[1].spans, pipe.lastSelection![1].spans); // the CPU's window
 *   const { out } = await downloadState(gpu, step);
 *   out.data.forEach((x, i) => assert.ok(Math.abs(x - cpu.out.data[i]) < 1e-4));
 *   store.destroy();
 *   gpu.destroy();
 * }
 * ```
 */
export async function longHeadsDecodeWebGpu(
  gpu: GpuContext,
  config: LongHeadsWebGpuConfig,
  query: GpuTensor,
  kv: GpuKvView,
  summaries: GpuTensor,
  options: LongHeadsDecodeWebGpuOptions,
): Promise<LongHeadsDecodeWebGpuResult> {
  const action = "run LongHeads decode on GPU";
  if (config === null || typeof config !== "object") {
    throw new TypeError(`Cannot ${action}: config must be an object, got ${describeValue(config)}`);
  }
  const { chunkSize: w, chunks: k, selectiveThreshold, gqa } = config;
  for (
    const [name, v] of [["chunkSize", w], ["chunks", k], [
      "selectiveThreshold",
      selectiveThreshold,
    ]] as const
  ) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(
        `Cannot ${action}: config.${name} must be a positive integer, got ${describeValue(v)}`,
      );
    }
  }
  if (k < 3) {
    throw new RangeError(`Cannot ${action}: config.chunks must be at least 3, got ${k}`);
  }
  const chunkScore = config.chunkScore ?? "summary";
  if (chunkScore !== "summary" && chunkScore !== "key-bound") {
    throw new TypeError(
      `Cannot ${action}: config.chunkScore must be "summary" or "key-bound", got ${
        describeValue(config.chunkScore)
      }`,
    );
  }
  if (gqa !== "query-head" && gqa !== "kv-head") {
    throw new TypeError(
      `Cannot ${action}: config.gqa must be "query-head" or "kv-head", got ${describeValue(gqa)}`,
    );
  }
  requireGpuThd(action, "query", query);
  const [tq, heads, d] = query.shape as [number, number, number];
  if (tq !== 1) {
    throw new TypeError(
      `Cannot ${action}: query must hold one decode token, got shape ${describeValue(query.shape)}`,
    );
  }
  if (kv === null || typeof kv !== "object" || !Array.isArray(kv.segments)) {
    throw new TypeError(`Cannot ${action}: kv must be a GpuKvView, got ${describeValue(kv)}`);
  }
  const kvHeads = kv.kvHeads;
  if (kv.headDim !== d || kvHeads === 0 || heads % kvHeads !== 0) {
    throw new TypeError(
      `Cannot ${action}: query [1, ${heads}, ${d}] does not fit the store (kvHeads ${kvHeads}, headDim ${kv.headDim})`,
    );
  }
  const qpos = requireFinite(action, "queryPosition", options?.queryPosition);
  const group = heads / kvHeads;
  const n = kv.length;
  if (n < 1) {
    throw new RangeError(`Cannot ${action}: the cache must hold the query's key, got length ${n}`);
  }
  const q = n - 1;
  const a = Math.floor(q / w);
  const attendOptions = {
    queryPositions: [qpos],
    ...(options.rope !== undefined ? { rope: options.rope } : {}),
    ...(options.scale !== undefined ? { scale: options.scale } : {}),
    ...(options.softCap !== undefined ? { softCap: options.softCap } : {}),
    ...(options.stats !== undefined ? { stats: options.stats } : {}),
  };

  const cand = a - 2;
  const take = Math.min(k - 3, Math.max(cand, 0));
  if (n <= selectiveThreshold || a + 1 <= k || take === 0) {
    // Dense (below the threshold, or every chunk fits) at original positions; with k = 3 or no
    // candidate the window is chunks 0, a − 1 and a, with nothing to score.
    const all: HeadSelection = n <= selectiveThreshold || a + 1 <= k
      ? { spans: Int32Array.of(0, n) }
      : longHeadsWindow(new Int32Array(0), a, w, n, false);
    const selection: Selection = new Array<HeadSelection>(heads).fill(all);
    const state = sparseAttendWebGpu(gpu, query, kv, [selection], attendOptions);
    return { ...state, chosen: new Int32Array(0), take: 0, selection };
  }

  const rows = gqa === "query-head" ? heads : kvHeads;
  let G: number, keyRows: number, maxOffset: number | undefined;
  if (chunkScore === "key-bound") {
    G = requireBoundTable(action, summaries, kvHeads, d);
    keyRows = kvHeads;
    maxOffset = summaries.offset + summaries.strides[0]!;
  } else {
    requireGpuThd(action, "summaries", summaries);
    const [g, sr, sd] = summaries.shape as [number, number, number];
    if (sr !== rows || sd !== d) {
      throw new TypeError(
        `Cannot ${action}: summaries must have shape [chunks, ${rows}, ${d}] in "${gqa}" mode, got ${
          describeValue(summaries.shape)
        }`,
      );
    }
    G = g;
    keyRows = rows;
  }
  requireBindable(gpu, action, "summaries", summaries.buffer);
  if (G < a - 1) {
    throw new RangeError(
      `Cannot ${action}: summaries must cover chunks 0 … ${a - 2} (${a - 1} chunks), got ${G}`,
    );
  }
  // Candidates 1 … a − 2: views starting at chunk 1 (key-bound: of the min and the max half).
  const candidates = (base: number): GpuTensor => ({
    dtype: summaries.dtype,
    shape: [cand, keyRows, d],
    strides: [keyRows * d, d, 1],
    offset: base + keyRows * d,
    buffer: summaries.buffer,
  });
  const candKeys = candidates(summaries.offset);
  const candMax = maxOffset === undefined ? undefined : candidates(maxOffset);
  let scoreQuery: GpuTensor = query;
  let summed: GpuTensor<"f32"> | undefined;
  if (gqa === "kv-head" && group > 1) {
    summed = groupSum(gpu, query, kvHeads, group, d);
    scoreQuery = summed;
  }
  // Unscaled (scale 1), as the CPU ranks; keys with kvHeads rows are shared by the group's queries.
  const scores = scoreKeysWebGpu(gpu, {
    query: scoreQuery,
    keys: candKeys,
    ...(candMax !== undefined ? { keysMax: candMax } : {}),
  });
  const top = topKWebGpu(gpu, scores, take, { order: "index" });
  let chosen: Int32Array;
  try {
    chosen = (await download(gpu, top.indices)).data as Int32Array;
  } finally {
    releaseTensor(gpu, scores);
    releaseTensor(gpu, top.indices);
    releaseTensor(gpu, top.values);
    if (summed !== undefined) releaseTensor(gpu, summed);
  }
  // Indices are relative to chunk 1.
  for (let i = 0; i < chosen.length; i++) chosen[i]! += 1;
  const selection: HeadSelection[] = new Array<HeadSelection>(heads);
  for (let r = 0; r < rows; r++) {
    const hs = longHeadsWindow(chosen.subarray(r * take, (r + 1) * take), a, w, n, false);
    if (gqa === "query-head") selection[r] = hs;
    else for (let g = 0; g < group; g++) selection[r * group + g] = hs;
  }
  const state = sparseAttendWebGpu(gpu, query, kv, [selection], attendOptions);
  return { ...state, chosen, take, selection };
}

/**
 * Checks a key-bound table `[2, G, kvHeads, d]` (f32 or f16) whose halves are
 * each row-major contiguous and do not overlap; returns G.
 */
function requireBoundTable(action: string, t: GpuTensor, kvHeads: number, d: number): number {
  if (t === null || typeof t !== "object" || !Array.isArray(t.shape) || !t.buffer) {
    throw new TypeError(
      `Cannot ${action}: summaries must be a GPU tensor, got ${describeValue(t)}`,
    );
  }
  const [two, g, kh, dd] = t.shape as number[];
  const s = t.strides ?? [];
  const ok = t.shape.length === 4 && two === 2 && kh === kvHeads && dd === d &&
    Number.isInteger(g) && g! >= 0 && (d === 1 || s[3] === 1) &&
    (kvHeads === 1 || s[2] === d) && (g! <= 1 || s[1] === kvHeads * d) &&
    Number.isInteger(s[0]) && s[0]! >= g! * kvHeads * d;
  if (!ok) {
    throw new TypeError(
      `Cannot ${action}: summaries must be key bounds of shape [2, chunks, ${kvHeads}, ${d}] (min, then max; each half contiguous) in "key-bound" mode, got shape ${
        describeValue(t.shape)
      } with strides ${describeValue(t.strides)}`,
    );
  }
  if (t.dtype !== "f32" && t.dtype !== "f16") {
    throw new TypeError(
      `Cannot ${action}: summaries dtype must be "f32" or "f16", got ${describeValue(t.dtype)}`,
    );
  }
  return g!;
}

/** The summed group query `[1, kvHeads, d]` (f32) of the `"kv-head"` variant. */
function groupSum(
  gpu: GpuContext,
  query: GpuTensor,
  kvHeads: number,
  group: number,
  d: number,
): GpuTensor<"f32"> {
  requireBindable(gpu, "sum group queries on GPU", "query", query.buffer);
  gpu.checkAlive("sum group queries on GPU");
  const out = createGpuTensor(gpu, "f32", [1, kvHeads, d]);
  const pipeline = gpu.pipeline("long-heads-group-sum", {
    workgroupSize: GROUP_SUM_WORKGROUP,
    query: storageOf(gpu, query.dtype),
  }, groupSumWgsl);
  const u = gpu.uniform(GROUP_SUM_PARAMS.pack({
    kvHeads,
    group,
    headDim: d,
    qBase: query.offset,
  }));
  gpu.submit("long-heads-group-sum", [{
    kind: "dispatch",
    pipeline,
    bindings: [u, query.buffer, out.buffer],
    workgroups: grid2d(
      Math.ceil(kvHeads * d / GROUP_SUM_WORKGROUP),
      gpu.limits.maxComputeWorkgroupsPerDimension,
    ),
  }], { release: [u] });
  return out;
}
