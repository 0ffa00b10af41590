// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * The one sparse attend kernel: executes any {@linkcode Selection} over a
 * paged KV store with an exact softmax over exactly the selected keys.
 *
 * ## Positions (DESIGN §1 "Positions are data")
 *
 * The store says whether its keys are `"post-rope"` (rotated at their original
 * positions when written) or `"pre-rope"` (raw). Both are exact:
 *
 * - **post-RoPE** (the default of {@linkcode AttentionPipeline}): a span seen at
 *   a constant shift δ from its original positions is served by rotating the
 *   **query** to `queryAt − δ` once per span (RoPE is relative:
 *   R(a)ᵀR(b) = R(b − a)), so dense attention, StreamingLLM re-indexing and
 *   LongHeads/Landmark slot re-numbering read keys straight from the pages with
 *   no rotation. A span whose original positions are not consecutive (a gap
 *   left by eviction) is rotated per key by (seen − original).
 * - **pre-RoPE**: every key read is rotated to its seen position (one
 *   rotation per key, ≈ +40% work in this compute-bound loop), and the query to
 *   `queryAt`. Needed only when frequencies change after caching (dynamic NTK).
 *
 * Measured (bench/pipeline_bench.ts): see the bench README; the post-RoPE rule
 * is the default for that reason.
 *
 * @module
 */

import type { FloatArray, Tensor } from "../tensor/types.ts";
import { zeros } from "../tensor/tensor.ts";
import { describeValue, requireFinite } from "../tensor/validate.ts";
import type { AttentionState } from "./types.ts";
import type { HeadSelection, Selection } from "./selection.ts";
import { checkSparseCall, MAX_GROUP } from "./_sparse_call.ts";
import {
  ensureGroupWorkspace,
  finishRows,
  foldRun,
  type GroupWorkspace,
  KEY_BLOCK,
  resetRows,
} from "./_online_softmax.ts";

/** One page of a head's cache, as the kernel reads it. */
export interface KvPageView {
  /** Keys, `[pageSize, headDim]` row-major; the first `length` rows are valid. */
  readonly keys: FloatArray;
  /** Values, `[pageSize, headDim]` row-major. */
  readonly values: FloatArray;
  /** Original position of each row, `[pageSize]`. */
  readonly positions: Int32Array;
  /** Valid rows. */
  readonly length: number;
}

/** What the kernel needs of a KV store (implemented by `KvStore` in `kv/`). */
export interface KvSource {
  /** Tokens per page; page `p` holds cache indices `[p·pageSize, (p+1)·pageSize)`. */
  readonly pageSize: number;
  /** Head dimension. */
  readonly headDim: number;
  /** KV heads per layer. */
  readonly kvHeads: number;
  /** Storage dtype of keys and values. */
  readonly dtype: "f32" | "f16";
  /** Whether stored keys are rotated at their original positions. */
  readonly keyForm: "pre-rope" | "post-rope";
  /** Cached tokens of one head. */
  length(layer: number, head: number): number;
  /** Zero-copy page access. */
  page(layer: number, head: number, index: number): KvPageView;
}

/** A rotary encoding the kernel can apply on read (implemented by `Rope` in `positional/`). */
export interface RotaryEncoding {
  /** Head dimension it rotates. */
  readonly headDim: number;
  /** Multiplies both q and k (YaRN's mscale), so logits by its square. */
  readonly attentionFactor: number;
  /** `dst[dOff..] = R(position) · src[sOff..]`, one row of headDim. */
  rotateRow(src: FloatArray, sOff: number, dst: FloatArray, dOff: number, position: number): void;
}

/** Per-call accounting of what the kernel read. */
export interface AttendStats {
  /** Tokens attended by each query head, summed over query tokens, `[heads]`. */
  tokensPerHead: Float64Array;
  /** Distinct key+value rows read from the store (a GQA group sharing a selection reads once). */
  rowsRead: number;
  /** Bytes of keys and values read from the store (`rowsRead · 2 · headDim · bytesPerElement`). */
  bytesRead: number;
}

/** Options of {@linkcode sparseAttend}. */
export interface SparseAttendOptions {
  /** Layer of the store to read. */
  layer: number;
  /** Original position of each query token, `[queryTokens]`. */
  queryPositions: ArrayLike<number>;
  /** RoPE to apply (queries always arrive raw). Omit for a model without rotary positions. */
  rope?: RotaryEncoding;
  /** Multiplies q·k; YaRN's attentionFactor² is applied on top. @default {1 / Math.sqrt(headDim)} */
  scale?: number;
  /** Logit soft-cap. @default {undefined} (none) */
  softCap?: number;
  /** Accumulates what was read (added to, not reset). */
  stats?: AttendStats;
}

/**
 * Creates a zeroed {@linkcode AttendStats} for `heads` query heads.
 *
 * @param heads Query heads.
 * @returns Fresh counters.
 */
export function createAttendStats(heads: number): AttendStats {
  return { tokensPerHead: new Float64Array(heads), rowsRead: 0, bytesRead: 0 };
}

/**
 * Exact softmax attention of each query token over exactly the tokens its
 * {@linkcode Selection} names, at the positions it names.
 *
 * Query head `h` reads KV head `floor(h / (heads / kvHeads))`. Consecutive
 * heads of a group whose selections are the same object are computed
 * together, reading each key once.
 *
 * | cost | |
 * | --- | --- |
 * | time | O(Σ selected tokens · headDim) per group, + one query rotation per span |
 * | reads | each selected key/value row once per group sharing a selection |
 * | allocation | the result; workspaces are reused |
 *
 * @param query Raw (pre-RoPE) queries, `[queryTokens, heads, headDim]`.
 * @param source The KV store.
 * @param selections One {@linkcode Selection} per query token (`selections[t][h]`).
 * @param options Layer, query positions, RoPE, scale, soft-cap, stats.
 * @returns `{ out: [queryTokens, heads, headDim], lse: [queryTokens, heads] }`.
 * @throws {TypeError} On shape mismatches between query, store and selections.
 * @throws {RangeError} On spans beyond a head's cache length or bad options.
 *
 * @example Everything at original positions equals dense attention
 * ```ts
 * import { denseAttention, selectAll, sparseAttend } from "@longctx/longctx/attention";
 * import { KvStore } from "@longctx/longctx/kv";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const [T, H, KV, D] = [20, 4, 2, 8];
 * const query = randn([1, H, D], { seed: 1 });
 * const key = randn([T, KV, D], { seed: 2 }), value = randn([T, KV, D], { seed: 3 });
 * const store = new KvStore({ layers: 1, kvHeads: KV, headDim: D, pageSize: 7, keyForm: "post-rope" });
 * store.append(0, key, value);
 * const all = selectAll(T);
 * const sparse = sparseAttend(query, store, [Array(H).fill(all)], { layer: 0, queryPositions: [T - 1] });
 * const dense = denseAttention({ query, key, value });
 * sparse.out.data.forEach((x, i) => assert.ok(Math.abs(x - dense.out.data[i]) < 1e-5));
 * ```
 */
export function sparseAttend(
  query: Tensor,
  source: KvSource,
  selections: readonly Selection[],
  options: SparseAttendOptions,
): AttentionState {
  const [tq, h, d] = query.shape as [number, number, number];
  const state: AttentionState = {
    out: zeros("f32", [tq ?? 0, h ?? 0, d ?? 0], { layout: "thd" }),
    lse: zeros("f32", [tq ?? 0, h ?? 0]),
  };
  sparseAttendInto(state, query, source, selections, options);
  return state;
}

/** Rows of one group: at most this many query heads share a KV head. */
const rowOut = new Int32Array(MAX_GROUP);
const rowLse = new Int32Array(MAX_GROUP);
let keyScratch = new Float32Array(KEY_BLOCK * 128);

/**
 * {@linkcode sparseAttend} into a caller-owned state.
 *
 * @param state Destination `out` `[queryTokens, heads, headDim]`, `lse` `[queryTokens, heads]` (written).
 * @param query Raw queries `[queryTokens, heads, headDim]`.
 * @param source The KV store.
 * @param selections One selection per query token.
 * @param options As {@linkcode sparseAttend}.
 * @throws {TypeError} / {RangeError} As {@linkcode sparseAttend}.
 *
 * @example
 * ```ts
 * import { headSelection, sparseAttend, sparseAttendInto } from "@longctx/longctx/attention";
 * import { KvStore } from "@longctx/longctx/kv";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const store = new KvStore({ layers: 1, kvHeads: 1, headDim: 4 });
 * store.append(0, randn([9, 1, 4], { seed: 1 }), randn([9, 1, 4], { seed: 2 }));
 * const q = randn([1, 2, 4], { seed: 3 });
 * const sel = headSelection([[0, 2], [6, 9]]);
 * const st = sparseAttend(q, store, [[sel, sel]], { layer: 0, queryPositions: [8] });
 * const again = { out: st.out, lse: st.lse };
 * sparseAttendInto(again, q, store, [[sel, sel]], { layer: 0, queryPositions: [8] });
 * assert.ok(again.lse.data.every(Number.isFinite));
 * ```
 */
export function sparseAttendInto(
  state: AttentionState,
  query: Tensor,
  source: KvSource,
  selections: readonly Selection[],
  options: SparseAttendOptions,
): void {
  const action = "attend sparsely";
  const { tq, heads, d, group, scale, softCap } = checkSparseCall(
    action,
    state,
    query,
    source,
    selections,
    options,
  );
  const rope = options.rope;
  const qpos = options.queryPositions;
  const kvHeads = source.kvHeads;
  const layer = options.layer;
  const stats = options.stats;
  const preRope = source.keyForm === "pre-rope";
  const bytesPerRow = 2 * d * (source.dtype === "f16" ? 2 : 4);
  if (keyScratch.length < KEY_BLOCK * d) keyScratch = new Float32Array(KEY_BLOCK * d);

  const w = ensureGroupWorkspace(group, d);
  const [qs0, qs1] = query.strides as [number, number, number];
  for (let t = 0; t < tq; t++) {
    const sel = selections[t]!;
    if (!Array.isArray(sel) || sel.length !== heads) {
      throw new TypeError(
        `Cannot ${action}: selections[${t}] must have one HeadSelection per query head (${heads}), got ${
          describeValue((sel as unknown[])?.length)
        }`,
      );
    }
    const p = requireFinite(action, `queryPositions[${t}]`, qpos[t]);
    for (let kh = 0; kh < kvHeads; kh++) {
      const length = source.length(layer, kh);
      // Split the group into runs of heads sharing one selection object.
      let g0 = 0;
      while (g0 < group) {
        const hs = sel[kh * group + g0]!;
        let g1 = g0 + 1;
        while (g1 < group && sel[kh * group + g1] === hs) g1++;
        const rows = g1 - g0;
        validateSpans(action, hs, length, t, kh * group + g0);
        resetRows(w, rows, d);
        w.visible.fill(0x7fffffff, 0, rows);
        for (let r = 0; r < rows; r++) {
          const hh = kh * group + g0 + r;
          rowOut[r] = (t * heads + hh) * d;
          rowLse[r] = t * heads + hh;
        }
        const qBase = query.offset + t * qs0 + (kh * group + g0) * qs1;
        const read = attendHead(
          w,
          rows,
          d,
          query.data as FloatArray,
          qBase,
          qs1,
          source,
          layer,
          kh,
          hs,
          p,
          rope,
          preRope,
          scale,
          softCap,
        );
        finishRows(w, rows, d, state.out.data, rowOut, state.lse.data, rowLse);
        if (stats !== undefined) {
          for (let r = 0; r < rows; r++) stats.tokensPerHead[kh * group + g0 + r]! += read;
          stats.rowsRead += read;
          stats.bytesRead += read * bytesPerRow;
        }
        g0 = g1;
      }
    }
  }
}

function validateSpans(
  action: string,
  hs: HeadSelection,
  length: number,
  t: number,
  h: number,
): void {
  if (hs === undefined || !(hs.spans instanceof Int32Array)) {
    throw new TypeError(
      `Cannot ${action}: selections[${t}][${h}] must be a HeadSelection, got ${describeValue(hs)}`,
    );
  }
  const n = hs.spans.length;
  if (n > 0 && hs.spans[n - 1]! > length) {
    throw new RangeError(
      `Cannot ${action}: selections[${t}][${h}] reads up to cache index ${
        hs.spans[n - 1]
      }, but the head holds ${length} tokens`,
    );
  }
}

/** Loads query rows, rotated to `position` when a rope is given. */
function loadQuery(
  w: GroupWorkspace,
  rows: number,
  d: number,
  q: FloatArray,
  qBase: number,
  qStride: number,
  rope: RotaryEncoding | undefined,
  position: number,
): void {
  for (let r = 0; r < rows; r++) {
    const src = qBase + r * qStride;
    if (rope === undefined) {
      for (let i = 0; i < d; i++) w.q[r * d + i] = q[src + i]!;
    } else {
      rope.rotateRow(q, src, w.q, r * d, position);
    }
  }
}

/** Folds every span of one head selection into the group's running state; returns tokens read. */
function attendHead(
  w: GroupWorkspace,
  rows: number,
  d: number,
  q: FloatArray,
  qBase: number,
  qStride: number,
  source: KvSource,
  layer: number,
  kh: number,
  hs: HeadSelection,
  queryPosition: number,
  rope: RotaryEncoding | undefined,
  preRope: boolean,
  scale: number,
  softCap: number,
): number {
  const spans = hs.spans;
  const seenAt = hs.seenAt;
  const queryAt = hs.queryAt ?? queryPosition;
  const pageSize = source.pageSize;
  let read = 0;
  // Query rotation in force (NaN: not loaded yet).
  let loadedAt = NaN;
  if (rope === undefined) {
    loadQuery(w, rows, d, q, qBase, qStride, undefined, 0);
    loadedAt = 0;
  } else if (preRope) {
    loadQuery(w, rows, d, q, qBase, qStride, rope, queryAt);
    loadedAt = queryAt;
  }
  for (let i = 0; i < spans.length; i += 2) {
    const s = spans[i]!, e = spans[i + 1]!;
    read += e - s;
    // Seen position of cache index j is seen0 + (j − s); NaN = original position.
    const seen0 = seenAt === undefined ? NaN : seenAt[i >> 1]!;
    let j = s;
    while (j < e) {
      const pi = Math.floor(j / pageSize);
      const row = j - pi * pageSize;
      const pg = source.page(layer, kh, pi);
      const count = Math.min(e - j, pageSize - row, pg.length - row);
      const pos = pg.positions;
      if (rope === undefined || (!preRope && seenAt === undefined)) {
        // Keys already at their original positions (or no RoPE at all).
        if (rope !== undefined && loadedAt !== queryPosition) {
          loadQuery(w, rows, d, q, qBase, qStride, rope, queryPosition);
          loadedAt = queryPosition;
        }
        foldRun(w, rows, d, pg.keys, row * d, pg.values, row * d, d, d, count, scale, softCap);
      } else if (!preRope && pos[row + count - 1]! - pos[row]! === count - 1) {
        // Post-RoPE keys with consecutive original positions: a constant shift δ, served by
        // rotating the query to queryAt − δ.
        const delta = seen0 + (j - s) - pos[row]!;
        const at = queryAt - delta;
        if (at !== loadedAt) {
          loadQuery(w, rows, d, q, qBase, qStride, rope, at);
          loadedAt = at;
        }
        foldRun(w, rows, d, pg.keys, row * d, pg.values, row * d, d, d, count, scale, softCap);
      } else {
        // Rotate keys on read into scratch: pre-RoPE keys to their seen position, or post-RoPE
        // keys by (seen − original) where original positions have gaps.
        if (!preRope && loadedAt !== queryAt) {
          loadQuery(w, rows, d, q, qBase, qStride, rope, queryAt);
          loadedAt = queryAt;
        }
        for (let b = 0; b < count; b += KEY_BLOCK) {
          const bn = Math.min(KEY_BLOCK, count - b);
          for (let k = 0; k < bn; k++) {
            const r = row + b + k;
            const seen = Number.isNaN(seen0) ? pos[r]! : seen0 + (j + b + k - s);
            rope.rotateRow(pg.keys, r * d, keyScratch, k * d, preRope ? seen : seen - pos[r]!);
          }
          foldRun(
            w,
            rows,
            d,
            keyScratch,
            0,
            pg.values,
            (row + b) * d,
            d,
            d,
            bn,
            scale,
            softCap,
          );
        }
      }
      j += count;
    }
  }
  return read;
}
