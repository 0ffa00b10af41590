// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Exact dense scaled-dot-product attention, the reference every other kernel
 * is tested against.
 *
 * @module
 */

import { zeros } from "../tensor/tensor.ts";
import { describeValue, requireInt } from "../tensor/validate.ts";
import type { AttentionInput, AttentionState } from "./types.ts";
import { checkQkv, resolveScale } from "./_validate.ts";
import { ensureGroupWorkspace, finishRows, foldRun, resetRows } from "./_online_softmax.ts";

/** Options of {@linkcode denseAttention}. */
export interface DenseAttentionOptions {
  /** Mask keys after each query (key j visible to query i iff `keyOffset + j <= queryOffset + i`). @default {true} */
  causal?: boolean;
  /** Multiplies q·k. @default {1 / Math.sqrt(headDim)} */
  scale?: number;
  /** Logit soft-capping (Gemma 2): `logit → softCap · tanh(logit / softCap)`, applied after `scale`. @default {undefined} (none) */
  softCap?: number;
  /** Index on the common token axis of key 0. @default {0} */
  keyOffset?: number;
  /**
   * Index on the common token axis of query 0. The default aligns the last query with the
   * last key (bottom-right), which is prefill (`queryTokens == keyTokens`), decode
   * (`queryTokens == 1`) and chunked prefill over a cache that already holds the chunk.
   * @default {keyOffset + keyTokens - queryTokens}
   */
  queryOffset?: number;
}

/** Query tokens processed together per KV head in prefill: keys are read once per tile. */
const QUERY_TILE = 8;

/**
 * Exact softmax attention of every query over every (visible) key.
 *
 * MHA, GQA and MQA: query head `h` reads KV head `floor(h / (heads / kvHeads))`.
 * Accumulation is f32 with f64 running max/denominator, and the softmax is
 * computed online (flash-style) over key blocks, so logits of ±1e4 stay finite.
 * A query with no visible key gets `out = 0`, `lse = -Infinity` (see
 * {@linkcode AttentionState}).
 *
 * | cost | |
 * | --- | --- |
 * | time | O(queryTokens · keyTokens · heads · headDim) (halved when causal) |
 * | reads | K and V once per KV head per query tile of 8 tokens (decode: once) |
 * | allocation | the result only; workspaces are reused across calls |
 *
 * @param input Queries `[queryTokens, heads, headDim]`, keys and values
 *   `[keyTokens, kvHeads, headDim]`, f32 or f16, last stride 1 (views allowed).
 * @param options Causal mask, scale, soft-cap, offsets for chunked prefill.
 * @returns `{ out: [queryTokens, heads, headDim], lse: [queryTokens, heads] }`.
 * @throws {TypeError} On wrong ranks, mismatched head dims or dtypes.
 * @throws {RangeError} If heads is not a multiple of kvHeads, or an option is not finite.
 *
 * @example Decode: one query over four keys, GQA with 2 query heads per KV head
 * ```ts
 * import { denseAttention } from "@longctx/longctx/attention";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const query = randn([1, 4, 8], { seed: 1 });
 * const key = randn([4, 2, 8], { seed: 2 });
 * const value = randn([4, 2, 8], { seed: 3 });
 * const { out, lse } = denseAttention({ query, key, value });
 * assert.deepEqual(out.shape, [1, 4, 8]);
 * assert.deepEqual(lse.shape, [1, 4]);
 * assert.ok(out.data.every(Number.isFinite));
 * ```
 */
export function denseAttention(
  input: AttentionInput,
  options: DenseAttentionOptions = {},
): AttentionState {
  const g = checkQkv("compute attention", input.query, input.key, input.value);
  const state: AttentionState = {
    out: zeros("f32", [g.queryTokens, g.heads, g.headDim], { layout: "thd" }),
    lse: zeros("f32", [g.queryTokens, g.heads]),
  };
  denseAttentionInto(state, input, options);
  return state;
}

/**
 * {@linkcode denseAttention} writing into a caller-owned state (no allocation
 * once the shared workspace has grown to the problem size).
 *
 * @param state Destination: `out` `[queryTokens, heads, headDim]` and `lse`
 *   `[queryTokens, heads]`, contiguous f32 (written).
 * @param input Queries, keys and values as in {@linkcode denseAttention}.
 * @param options As in {@linkcode denseAttention}.
 * @throws {TypeError} On shape mismatches, including a wrongly shaped `state`.
 * @throws {RangeError} As in {@linkcode denseAttention}.
 *
 * @example Reusing the output buffers across decode steps
 * ```ts
 * import { denseAttention, denseAttentionInto } from "@longctx/longctx/attention";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const input = { query: randn([1, 2, 4], { seed: 1 }), key: randn([9, 1, 4], { seed: 2 }), value: randn([9, 1, 4], { seed: 3 }) };
 * const state = denseAttention(input);
 * const before = Array.from(state.out.data);
 * denseAttentionInto(state, input);
 * assert.deepEqual(Array.from(state.out.data), before);
 * ```
 */
export function denseAttentionInto(
  state: AttentionState,
  input: AttentionInput,
  options: DenseAttentionOptions = {},
): void {
  const action = "compute attention";
  const { query, key, value } = input;
  const g = checkQkv(action, query, key, value);
  checkState(action, state, g.queryTokens, g.heads, g.headDim);
  const { scale, softCap } = resolveScale(action, g.headDim, options.scale, options.softCap);
  const causal = options.causal ?? true;
  if (typeof causal !== "boolean") {
    throw new TypeError(`Cannot ${action}: causal must be a boolean, got ${describeValue(causal)}`);
  }
  const keyOffset = requireInt(action, "keyOffset", options.keyOffset ?? 0);
  const queryOffset = requireInt(
    action,
    "queryOffset",
    options.queryOffset ?? keyOffset + g.keyTokens - g.queryTokens,
  );

  const { queryTokens: tq, headDim: d, keyTokens: tk, kvHeads, group } = g;
  const tile = tq === 1 ? 1 : QUERY_TILE;
  const maxRows = tile * group;
  const w = ensureGroupWorkspace(maxRows, d);
  const outOffsets = new Int32Array(maxRows);
  const lseOffsets = new Int32Array(maxRows);
  const [qs0, qs1] = query.strides as [number, number, number];
  const [ks0, ks1] = key.strides as [number, number, number];
  const [vs0, vs1] = value.strides as [number, number, number];
  const heads = g.heads;

  for (let kh = 0; kh < kvHeads; kh++) {
    for (let t0 = 0; t0 < tq; t0 += tile) {
      const tn = Math.min(tile, tq - t0);
      const rows = tn * group;
      resetRows(w, rows, d);
      let maxVis = 0;
      // Row r = (token t0 + ti, head kh·group + gi), gathered into the contiguous q buffer.
      for (let ti = 0; ti < tn; ti++) {
        const t = t0 + ti;
        const vis = causal ? Math.max(0, Math.min(tk, queryOffset + t - keyOffset + 1)) : tk;
        if (vis > maxVis) maxVis = vis;
        for (let gi = 0; gi < group; gi++) {
          const r = ti * group + gi;
          const h = kh * group + gi;
          const qo = query.offset + t * qs0 + h * qs1;
          for (let i = 0; i < d; i++) w.q[r * d + i] = query.data[qo + i]!;
          w.visible[r] = vis;
          outOffsets[r] = (t * heads + h) * d;
          lseOffsets[r] = t * heads + h;
        }
      }
      foldRun(
        w,
        rows,
        d,
        key.data,
        key.offset + kh * ks1,
        value.data,
        value.offset + kh * vs1,
        ks0,
        vs0,
        maxVis,
        scale,
        softCap,
      );
      finishRows(w, rows, d, state.out.data, outOffsets, state.lse.data, lseOffsets);
    }
  }
}

/** Checks a destination state's shapes (private helper, also used by other kernels). */
export function checkState(
  action: string,
  state: AttentionState,
  queryTokens: number,
  heads: number,
  headDim: number,
): void {
  const o = state?.out, l = state?.lse;
  const ok = o !== undefined && l !== undefined && o.dtype === "f32" && l.dtype === "f32" &&
    o.offset === 0 && l.offset === 0 &&
    o.data.length === queryTokens * heads * headDim && l.data.length === queryTokens * heads &&
    o.shape.length === 3 && o.shape[0] === queryTokens && o.shape[1] === heads &&
    o.shape[2] === headDim;
  if (!ok) {
    throw new TypeError(
      `Cannot ${action}: state must hold out [${queryTokens}, ${heads}, ${headDim}] and lse [${queryTokens}, ${heads}] as contiguous f32, got out shape ${
        describeValue(o?.shape)
      } and lse shape ${describeValue(l?.shape)}`,
    );
  }
}
