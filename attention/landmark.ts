// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Landmark Attention (Mohtashami & Jaggi, NeurIPS 2023): a landmark token
 * closes every block of `blockSize` content tokens, and the model is trained
 * with a **grouped softmax** in which a query reaches an earlier block's
 * tokens only through that block's landmark. At inference the landmark
 * logits score every cached block, the top-k blocks are retrieved, re-placed
 * in `k + 1` slots before the current block, and attended with the same
 * grouped softmax.
 *
 * What this module holds:
 *
 * | export | what |
 * | --- | --- |
 * | {@linkcode landmarkGroupedAttention} | the grouped softmax, reference form (group ids, per-group softmax, as the authors' `landmark_grouped_softmax`), any landmark mask |
 * | {@linkcode landmarkFusedAttention} | the same rule in the fused flash form (key tile = one block, online outer softmax), for the periodic layout |
 * | {@linkcode LandmarkRetrieval} | the inference selector over the shared KV store: landmark scoring, top-k, slot positions |
 * | {@linkcode landmarkAttend} | the grouped attend kernel that executes its selections over the KV store |
 * | {@linkcode LandmarkAttention} | a runner: KV store + retrieval + grouped attend, prefill in chunks and decode |
 *
 * ## How the grouped softmax composes with the one sparse attend kernel
 *
 * Grouped attention is not one plain softmax over the selected keys, so a
 * {@linkcode LandmarkHeadSelection} says more than a `HeadSelection`: its
 * `spans` list the **content** tokens read (landmarks are never in them: a
 * landmark's value is never mixed in) and its `gates` list the landmarks that
 * gate the blocks before them. Two executions of the same selection are exact:
 *
 * - **grouped** ({@linkcode landmarkAttend}): each gated block's content is
 *   softmaxed on its own (state `{out_c, lse_c}`), then the block enters the
 *   outer softmax as one super-token with logit `z_ℓc` (its landmark's logit)
 *   and value `out_c`. In merge-state terms: `mergeStates` of the block states
 *   with each `lse_c` replaced by `z_ℓc`, and of the ungated (local) tokens'
 *   state. This is the trained model's attention rule.
 * - **plain** (`sparseAttend`, e.g. inside `AttentionPipeline`, which ignores
 *   `gates`): one softmax over the selected content tokens. By the exact
 *   identity of the paper's rule, this equals the grouped softmax with each
 *   landmark logit replaced by its block's log-sum-exp (`z_ℓc := lse_c`).
 *   It is what a model without landmark training gets from landmark
 *   retrieval (e.g. DuoAttention retrieval heads using landmark retrieval as
 *   their selector); the landmark keys then only choose blocks.
 *
 * Both identities are tested against independent oracles.
 *
 * ## Meaningful gates need a landmark-trained model
 *
 * Landmark keys only carry their block's content if the model was trained or
 * fine-tuned with landmarks and the grouped softmax (paper §3). Applying the
 * retrieval to a model without that training gives meaningless gates; the
 * tests use synthetic keys where the landmark key is built to carry the
 * block's content.
 *
 * ## Deviations and choices (see also each export)
 *
 * - GQA: the authors' code is MHA only. `gqa: "kv-head"` (default) scores with
 *   every query head of a group and takes the max of their softmax
 *   probabilities per block (the `max_over_heads` style), giving one block
 *   set per KV head (keys read once per group); `"query-head"` keeps one set
 *   per query head, gathered from the shared KV head.
 * - Chunked prefill in {@linkcode LandmarkAttention} follows the authors'
 *   rule (memory = complete blocks cached before the chunk; everything after,
 *   including blocks the chunk completes, is local and attended with the
 *   grouped softmax). Where the authors' non-flash path lets a query in a
 *   later block of the chunk see the previous incomplete block's cached tail
 *   as part of its own section, we keep that tail in its block (gated by its
 *   landmark), so every chunking gives the §2.4 rule on the local part.
 * - Ties in top-k go to the earlier block.
 *
 * @see https://arxiv.org/abs/2305.16300
 *
 * @module
 */

import type { FloatArray, Tensor } from "../tensor/types.ts";
import { zeros } from "../tensor/tensor.ts";
import {
  describeValue,
  requireFinite,
  requireInt,
  requireOneOf,
  requirePositiveInt,
} from "../tensor/validate.ts";
import { DTYPE_BYTES } from "../tensor/tensor.ts";
import type { HistoryNeed } from "../kv/types.ts";
import { KvStore } from "../kv/kv_store.ts";
import type { Rope } from "../positional/rope.ts";
import type { AttentionInput, AttentionState } from "./types.ts";
import type { HeadSelection, Selection } from "./selection.ts";
import {
  type AttendStats,
  createAttendStats,
  type KvPageView,
  type KvSource,
  type RotaryEncoding,
  type SparseAttendOptions,
} from "./sparse_attend.ts";
import type { SelectContext, Selector } from "./stages.ts";
import { checkState } from "./dense.ts";
import { checkSparseCall, MAX_GROUP } from "./_sparse_call.ts";
import { checkQkv, requireThd, resolveScale } from "./_validate.ts";
import {
  finishRows,
  foldRun,
  type GroupWorkspace,
  KEY_BLOCK,
  resetRows,
} from "./_online_softmax.ts";
import { DEFAULT_LANDMARK_BLOCK_SIZE, DEFAULT_LANDMARK_TOP_K } from "./landmark_tokens.ts";

// ---------------------------------------------------------------------------
// Selections with gates.

/**
 * A {@linkcode HeadSelection} for grouped (landmark-gated) attention.
 *
 * - `spans` (and `seenAt`, `queryAt`): the **content** tokens read, as for any
 *   selection. Landmark tokens never appear in them.
 * - `gates`: cache indices of landmarks, ascending. Gate `g` gates the block
 *   of cache indices `[g − blockSize, g)`: the selected tokens of that range
 *   are softmaxed among themselves and enter the outer softmax as one
 *   super-token with the landmark's logit. Selected tokens outside every gated
 *   range (the current block) enter the outer softmax directly.
 * - `gateSeenAt`: the position each gate is seen at (required when `seenAt`
 *   is present; absent = original positions).
 *
 * Executors that know nothing of gates (the plain sparse attend kernel)
 * compute one softmax over the spans, which is the grouped softmax with every
 * gate logit replaced by its block's log-sum-exp (see the module doc). Set
 * algebra (`unionSelections`, `capSelection`, …) returns plain selections:
 * gates are dropped, so compose landmark selections by heads (a router), not
 * by union within a head.
 */
export interface LandmarkHeadSelection extends HeadSelection {
  /** Content tokens per block (the gated range before each gate). */
  readonly blockSize: number;
  /** Cache index of each gating landmark, ascending, shape `[gateCount]`. */
  readonly gates: Int32Array;
  /** Seen position of each gate, shape `[gateCount]`; absent = original positions. */
  readonly gateSeenAt?: Float64Array;
}

/**
 * Whether a head selection carries landmark gates.
 *
 * @param sel A head selection.
 * @returns `true` for a {@linkcode LandmarkHeadSelection}.
 *
 * @example
 * ```ts
 * import {
 *   headSelection, isLandmarkSelection, type LandmarkHeadSelection,
 * } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * const gated: LandmarkHeadSelection = { spans: Int32Array.of(0, 3), gates: Int32Array.of(3), blockSize: 3 };
 * assert.ok(isLandmarkSelection(gated));
 * assert.ok(!isLandmarkSelection(headSelection([[0, 4]])));
 * ```
 */
export function isLandmarkSelection(sel: HeadSelection): sel is LandmarkHeadSelection {
  return (sel as Partial<LandmarkHeadSelection>).gates instanceof Int32Array;
}

// ---------------------------------------------------------------------------
// Grouped softmax: reference form.

/** Options of {@linkcode landmarkGroupedAttention}. */
export interface LandmarkGroupedAttentionOptions {
  /**
   * Content tokens per block in the periodic layout (key `j` is a landmark iff
   * `j mod (blockSize + 1) == blockSize`). Excludes `landmarks`.
   * @default {50} (when `landmarks` is absent)
   */
  blockSize?: number;
  /** Which keys are landmarks (nonzero / `true`), shape `[keyTokens]`, any layout. Excludes `blockSize`. */
  landmarks?: ArrayLike<number | boolean>;
  /**
   * Index on the key axis of query 0; query `i` is the token at key index
   * `queryOffset + i` and sees keys `0 … queryOffset + i`. Every query's own
   * key must be present.
   * @default {keyTokens - queryTokens}
   */
  queryOffset?: number;
  /** Multiplies q·k. @default {1 / Math.sqrt(headDim)} */
  scale?: number;
}

/**
 * The grouped softmax of Landmark Attention (the training-time rule, which is
 * also the attention rule at inference), in the authors' reference form.
 *
 * For the query at key index `a` (causal, post-RoPE logits `z = scale·q·k`),
 * the visible keys split into past blocks `c` (content `N_c`, landmark `ℓ_c`)
 * and the current section `S` (content of `a`'s own block up to `a`; the own
 * block's landmark is masked, also when `a` is that landmark). Every key gets
 * a group: content of past block `c` → group `c`; past landmarks and `S` →
 * one outer group. Each group is softmaxed on its own; content of block `c`
 * is then weighted by its landmark's outer probability, `S` by its own, and
 * landmarks get weight 0:
 *
 * ```
 * P(x)    = exp(z_x) / (Σ_c exp(z_ℓc) + Σ_{j∈S} exp(z_j))     x ∈ {ℓ_c} ∪ S
 * p(j|c)  = exp(z_j) / Σ_{j'∈N_c} exp(z_j')
 * o       = Σ_c P(ℓ_c) Σ_{j∈N_c} p(j|c) v_j + Σ_{j∈S} P(j) v_j
 * lse     = log(Σ_c exp(z_ℓc) + Σ_{j∈S} exp(z_j))
 * ```
 *
 * With no complete block before the query this is plain causal softmax. A
 * block with no content (two adjacent landmarks) keeps its landmark's outer
 * mass but adds no value, as in the authors' code.
 *
 * Written to be read: f64 throughout, O(keys) memory per row, no tiling.
 * {@linkcode landmarkFusedAttention} is the fast form.
 *
 * | cost | |
 * | --- | --- |
 * | time | O(queryTokens · keyTokens · heads · headDim) |
 * | allocation | O(keyTokens) per row, and the result |
 *
 * @see https://arxiv.org/abs/2305.16300
 * @param input Queries `[queryTokens, heads, headDim]`, keys and values
 *   `[keyTokens, kvHeads, headDim]` (post-RoPE if the model uses RoPE), f32 or f16.
 * @param options Landmark layout (periodic `blockSize` or a `landmarks` mask), query offset, scale.
 * @returns `{ out: [queryTokens, heads, headDim], lse: [queryTokens, heads] }`, `lse` the
 *   log of the outer denominator.
 * @throws {TypeError} On shape mismatches, or both `blockSize` and `landmarks` given.
 * @throws {RangeError} On a bad block size, offset or scale.
 *
 * @example A query in block 2 reads blocks 0 and 1 through their landmarks
 * ```ts
 * import { landmarkGroupedAttention } from "@longctx/longctx/attention";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * // blockSize 3 → blocks of 4 tokens, landmarks at 3 and 7.
 * const key = randn([10, 1, 8], { seed: 1 }), value = randn([10, 1, 8], { seed: 2 });
 * const query = randn([1, 2, 8], { seed: 3 });
 * const { out, lse } = landmarkGroupedAttention({ query, key, value }, { blockSize: 3 });
 * assert.deepEqual(out.shape, [1, 2, 8]);
 * assert.ok(Number.isFinite(lse.data[0]));
 * ```
 */
export function landmarkGroupedAttention(
  input: AttentionInput,
  options: LandmarkGroupedAttentionOptions = {},
): AttentionState {
  const action = "compute landmark grouped attention";
  const { query, key, value } = input;
  const g = checkQkv(action, query, key, value);
  const { scale } = resolveScale(action, g.headDim, options.scale, undefined);
  const { queryTokens: tq, heads: H, headDim: d, keyTokens: tk, group } = g;
  const isLm = landmarkFlags(action, options, tk);
  const qo = queryOffsetOf(action, options.queryOffset, tq, tk);

  // blockOf[j] = number of landmarks before key j (the authors' cumsum(is_mem) − is_mem);
  // lmOf[c] = key index of block c's landmark.
  const blockOf = new Int32Array(tk);
  const lmOf: number[] = [];
  for (let j = 0, c = 0; j < tk; j++) {
    blockOf[j] = c;
    if (isLm[j]) {
      lmOf.push(j);
      c++;
    }
  }
  const out = zeros("f32", [tq, H, d], { layout: "thd" });
  const lse = zeros("f32", [tq, H]);
  const z = new Float64Array(tk);
  const group_ = new Int32Array(tk);
  for (let t = 0; t < tq; t++) {
    const a = qo + t;
    const own = blockOf[a]!;
    const OUTER = own; // group id of the outer softmax; past blocks are 0 … own − 1
    const MASKED = -1;
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / group);
      // 1. Logits and group ids of the visible keys.
      for (let j = 0; j <= a; j++) {
        let s = 0;
        for (let i = 0; i < d; i++) s += at3(query, t, h, i) * at3(key, j, kh, i);
        z[j] = s * scale;
        const b = blockOf[j]!;
        if (b === own) group_[j] = isLm[j] ? MASKED : OUTER; // own landmark masked
        else group_[j] = isLm[j] ? OUTER : b;
      }
      // 2. Per-group max and sum (scatter-max, scatter-add).
      const gmax = new Float64Array(own + 1).fill(-Infinity);
      const gsum = new Float64Array(own + 1);
      for (let j = 0; j <= a; j++) {
        const gi = group_[j]!;
        if (gi !== MASKED && z[j]! > gmax[gi]!) gmax[gi] = z[j]!;
      }
      for (let j = 0; j <= a; j++) {
        const gi = group_[j]!;
        if (gi !== MASKED) gsum[gi]! += Math.exp(z[j]! - gmax[gi]!);
      }
      // 3. Weights: content of a past block × its landmark's outer probability; S its own; landmarks 0.
      const o = (t * H + h) * d;
      for (let j = 0; j <= a; j++) {
        const gi = group_[j]!;
        if (gi === MASKED || isLm[j]) continue;
        const p = Math.exp(z[j]! - gmax[gi]!) / gsum[gi]!;
        const w = gi === OUTER ? p : p * Math.exp(z[lmOf[gi]!]! - gmax[OUTER]!) / gsum[OUTER]!;
        for (let i = 0; i < d; i++) out.data[o + i]! += w * at3(value, j, kh, i);
      }
      lse.data[t * H + h] = gsum[OUTER]! > 0 ? gmax[OUTER]! + Math.log(gsum[OUTER]!) : -Infinity;
    }
  }
  return { out, lse };
}

function at3(x: Tensor, i: number, j: number, k: number): number {
  return x.data[x.offset + i * x.strides[0]! + j * x.strides[1]! + k * x.strides[2]!]! as number;
}

function landmarkFlags(
  action: string,
  o: LandmarkGroupedAttentionOptions,
  tk: number,
): Uint8Array {
  if (o.landmarks !== undefined && o.blockSize !== undefined) {
    throw new TypeError(
      `Cannot ${action}: give either blockSize or landmarks, got both (blockSize ${o.blockSize})`,
    );
  }
  const flags = new Uint8Array(tk);
  if (o.landmarks !== undefined) {
    const m = o.landmarks;
    if (m === null || typeof m !== "object" || m.length !== tk) {
      throw new TypeError(
        `Cannot ${action}: landmarks must have one entry per key (${tk}), got ${
          describeValue((m as ArrayLike<unknown>)?.length)
        }`,
      );
    }
    for (let j = 0; j < tk; j++) flags[j] = m[j] ? 1 : 0;
    return flags;
  }
  const bs = requirePositiveInt(action, "blockSize", o.blockSize ?? DEFAULT_LANDMARK_BLOCK_SIZE);
  for (let j = 0; j < tk; j++) flags[j] = j % (bs + 1) === bs ? 1 : 0;
  return flags;
}

function queryOffsetOf(
  action: string,
  value: number | undefined,
  tq: number,
  tk: number,
): number {
  const qo = requireInt(action, "queryOffset", value ?? tk - tq);
  if (qo < 0 || qo + tq > tk) {
    throw new RangeError(
      `Cannot ${action}: queryOffset must keep every query's own key present (0 <= queryOffset <= ${
        tk - tq
      }), got ${qo}`,
    );
  }
  return qo;
}

// ---------------------------------------------------------------------------
// Workspaces shared by the fused kernel and the grouped attend kernel.

interface Pair {
  outer: GroupWorkspace;
  inner: GroupWorkspace;
  /** Gate logits per row. */
  gate: Float64Array;
}

let pair: Pair | undefined;

/** Outer and inner running states over one shared query buffer, grown to `rows × headDim`. */
function ensurePair(rows: number, headDim: number): Pair {
  const p = pair;
  if (p !== undefined && p.gate.length >= rows && p.outer.q.length >= rows * headDim) return p;
  const r = Math.max(rows, p?.gate.length ?? 0);
  const d = Math.max(headDim, p ? p.outer.q.length / p.gate.length : 0);
  const q = new Float32Array(r * d);
  const make = (): GroupWorkspace => ({
    q,
    s: new Float32Array(r * KEY_BLOCK),
    m: new Float64Array(r),
    l: new Float64Array(r),
    acc: new Float32Array(r * d),
    visible: new Int32Array(r),
  });
  pair = { outer: make(), inner: make(), gate: new Float64Array(r) };
  return pair;
}

/**
 * Folds one finished block into the outer running state as a super-token with
 * logit `gate[r]` and value `inner.acc_r / inner.l_r` (the block's inner
 * softmax mixture). A block with no content adds its mass and no value.
 */
function mergeGate(outer: GroupWorkspace, inner: GroupWorkspace, rows: number, d: number): void {
  const gate = pair!.gate;
  for (let r = 0; r < rows; r++) {
    const z = gate[r]!;
    if (z === -Infinity) continue;
    const mo = outer.m[r]!;
    const ao = r * d;
    if (z > mo) {
      if (mo !== -Infinity) {
        const alpha = Math.exp(mo - z);
        outer.l[r] = outer.l[r]! * alpha;
        for (let i = 0; i < d; i++) outer.acc[ao + i] = outer.acc[ao + i]! * alpha;
      }
      outer.m[r] = z;
    }
    const p = Math.exp(z - outer.m[r]!);
    outer.l[r] = outer.l[r]! + p;
    const li = inner.l[r]!;
    if (li > 0) {
      const w = p / li;
      for (let i = 0; i < d; i++) outer.acc[ao + i] = outer.acc[ao + i]! + w * inner.acc[ao + i]!;
    }
  }
}

function cap(x: number, softCap: number): number {
  return softCap > 0 ? softCap * Math.tanh(x / softCap) : x;
}

// ---------------------------------------------------------------------------
// Grouped softmax: fused (flash) form.

/** Options of {@linkcode landmarkFusedAttention}. */
export interface LandmarkFusedAttentionOptions {
  /** Content tokens per block; keys follow the periodic layout. @default {50} */
  blockSize?: number;
  /** Key index of query 0 (see {@linkcode LandmarkGroupedAttentionOptions.queryOffset}). @default {keyTokens - queryTokens} */
  queryOffset?: number;
  /** Multiplies q·k. @default {1 / Math.sqrt(headDim)} */
  scale?: number;
}

/**
 * {@linkcode landmarkGroupedAttention} in the fused flash form of the authors'
 * Triton kernel (spec §2.5): one key tile per block of `blockSize + 1` keys
 * with the landmark in its last column. For each past tile, an inner softmax
 * over its content columns, an online update of the outer `(m, l)` with only
 * the landmark logit, and `acc += P_outer(landmark) · (inner mixture of V)`;
 * the query's own tile enters the outer state directly, causally, with its
 * landmark column masked (a landmark query never sees its own key). Queries
 * are processed one block at a time (the query tile), so every key is read
 * once per query block and KV head; the periodic layout means each row's
 * visible part of its own tile is a prefix.
 *
 * Exact: same result as the reference up to f32 accumulation.
 *
 * | cost | |
 * | --- | --- |
 * | time | O(queryTokens · keyTokens · heads · headDim) (causal: about half) |
 * | reads | K and V once per query block per KV head; decode: once |
 * | allocation | the result and two row offset arrays; workspaces are reused |
 *
 * @param input Queries `[queryTokens, heads, headDim]`, keys and values `[keyTokens, kvHeads, headDim]`.
 * @param options Block size, query offset, scale.
 * @returns `{ out, lse }` as {@linkcode landmarkGroupedAttention}.
 * @throws {TypeError} / {RangeError} As {@linkcode landmarkGroupedAttention}.
 *
 * @example Fused equals the reference
 * ```ts
 * import { landmarkFusedAttention, landmarkGroupedAttention } from "@longctx/longctx/attention";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const input = { query: randn([23, 4, 8], { seed: 1 }), key: randn([23, 2, 8], { seed: 2 }), value: randn([23, 2, 8], { seed: 3 }) };
 * const a = landmarkFusedAttention(input, { blockSize: 4 });
 * const b = landmarkGroupedAttention(input, { blockSize: 4 });
 * a.out.data.forEach((x, i) => assert.ok(Math.abs(x - b.out.data[i]) < 1e-5));
 * ```
 */
export function landmarkFusedAttention(
  input: AttentionInput,
  options: LandmarkFusedAttentionOptions = {},
): AttentionState {
  const g = checkQkv("compute landmark attention", input.query, input.key, input.value);
  const state: AttentionState = {
    out: zeros("f32", [g.queryTokens, g.heads, g.headDim], { layout: "thd" }),
    lse: zeros("f32", [g.queryTokens, g.heads]),
  };
  landmarkFusedAttentionInto(state, input, options);
  return state;
}

/**
 * {@linkcode landmarkFusedAttention} into a caller-owned state.
 *
 * @param state Destination `out` `[queryTokens, heads, headDim]` and `lse` `[queryTokens, heads]` (written).
 * @param input Queries, keys, values.
 * @param options Block size, query offset, scale.
 * @throws {TypeError} / {RangeError} As {@linkcode landmarkGroupedAttention}.
 *
 * @example Decode: the last token of a 130-token stream
 * ```ts
 * import { landmarkFusedAttention, landmarkFusedAttentionInto } from "@longctx/longctx/attention";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const input = { query: randn([1, 2, 16], { seed: 1 }), key: randn([130, 2, 16], { seed: 2 }), value: randn([130, 2, 16], { seed: 3 }) };
 * const st = landmarkFusedAttention(input, { blockSize: 63 });
 * const before = [...st.out.data];
 * landmarkFusedAttentionInto(st, input, { blockSize: 63 });
 * assert.deepEqual([...st.out.data], before);
 * ```
 */
export function landmarkFusedAttentionInto(
  state: AttentionState,
  input: AttentionInput,
  options: LandmarkFusedAttentionOptions = {},
): void {
  const action = "compute landmark attention";
  const { query, key, value } = input;
  const g = checkQkv(action, query, key, value);
  checkState(action, state, g.queryTokens, g.heads, g.headDim);
  const { scale } = resolveScale(action, g.headDim, options.scale, undefined);
  const bs = requirePositiveInt(
    action,
    "blockSize",
    options.blockSize ?? DEFAULT_LANDMARK_BLOCK_SIZE,
  );
  const bl = bs + 1;
  const { queryTokens: tq, heads: H, headDim: d, keyTokens: tk, kvHeads, group } = g;
  const qo = queryOffsetOf(action, options.queryOffset, tq, tk);
  const maxRows = Math.min(tq, bl) * group;
  const { outer, inner, gate } = ensurePair(maxRows, d);
  const outOffsets = new Int32Array(maxRows);
  const lseOffsets = new Int32Array(maxRows);
  const [qs0, qs1] = query.strides as [number, number, number];
  const [ks0, ks1] = key.strides as [number, number, number];
  const [vs0, vs1] = value.strides as [number, number, number];
  const q = outer.q;

  for (let kh = 0; kh < kvHeads; kh++) {
    const kBase = key.offset + kh * ks1, vBase = value.offset + kh * vs1;
    let t0 = 0;
    while (t0 < tq) {
      // The query tile: the queries whose own block is b.
      const b = Math.floor((qo + t0) / bl);
      const t1 = Math.min(tq, (b + 1) * bl - qo);
      const rows = (t1 - t0) * group;
      resetRows(outer, rows, d);
      for (let ti = t0; ti < t1; ti++) {
        // Own tile: content columns up to the query (its landmark column is masked).
        const vis = Math.min(qo + ti - b * bl + 1, bs);
        for (let gi = 0; gi < group; gi++) {
          const r = (ti - t0) * group + gi, h = kh * group + gi;
          const src = query.offset + ti * qs0 + h * qs1;
          for (let i = 0; i < d; i++) q[r * d + i] = query.data[src + i]!;
          outer.visible[r] = vis;
          outOffsets[r] = (ti * H + h) * d;
          lseOffsets[r] = ti * H + h;
        }
      }
      // Past tiles: inner softmax over the content columns, outer update with the landmark.
      inner.visible.fill(bs, 0, rows);
      for (let c = 0; c < b; c++) {
        resetRows(inner, rows, d);
        const k0 = kBase + c * bl * ks0, v0 = vBase + c * bl * vs0;
        foldRun(inner, rows, d, key.data, k0, value.data, v0, ks0, vs0, bs, scale, 0);
        const lo = k0 + bs * ks0;
        for (let r = 0; r < rows; r++) {
          let s = 0;
          for (let i = 0; i < d; i++) s += q[r * d + i]! * key.data[lo + i]!;
          gate[r] = s * scale;
        }
        mergeGate(outer, inner, rows, d);
      }
      const count = Math.min(bl, tk - b * bl);
      foldRun(
        outer,
        rows,
        d,
        key.data,
        kBase + b * bl * ks0,
        value.data,
        vBase + b * bl * vs0,
        ks0,
        vs0,
        count,
        scale,
        0,
      );
      finishRows(outer, rows, d, state.out.data, outOffsets, state.lse.data, lseOffsets);
      t0 = t1;
    }
  }
}

// ---------------------------------------------------------------------------
// Grouped attend over the KV store.

/** Rows of one group: at most this many query heads share a KV head. */
const rowOut = new Int32Array(MAX_GROUP);
const rowLse = new Int32Array(MAX_GROUP);
let keyScratch = new Float32Array(KEY_BLOCK * 128);
const EMPTY_I32 = new Int32Array(0);

/**
 * Grouped (landmark-gated) attention of each query token over exactly the
 * tokens and gates its selection names: the executor of
 * {@linkcode LandmarkHeadSelection}s, with the signature of `sparseAttend`.
 *
 * Per query head: the selected tokens inside a gated block `[g − blockSize, g)`
 * are softmaxed among themselves, the block enters the outer softmax as one
 * super-token with the landmark's logit; the other selected tokens enter the
 * outer softmax directly. Positions are honoured exactly as by `sparseAttend`
 * (post-RoPE keys: one query rotation per constant-shift span; pre-RoPE: keys
 * rotated on read), gates included. A selection without gates (a plain
 * `HeadSelection`) is plain softmax, identical to `sparseAttend`.
 *
 * `lse` is the log of the outer denominator, so the result merges with other
 * states by `mergeStates` like any attention state. Stats count the content
 * tokens read (`tokensPerHead`, `rowsRead`) and add the gates' key bytes to
 * `bytesRead`.
 *
 * | cost | |
 * | --- | --- |
 * | time | O((selected tokens + gates) · headDim) per group sharing a selection |
 * | allocation | the result; workspaces are reused |
 *
 * @param query Raw (pre-RoPE) queries, `[queryTokens, heads, headDim]`.
 * @param source The KV store.
 * @param selections One selection per query token (`selections[t][h]`).
 * @param options Layer, query positions, RoPE, scale, soft-cap, stats.
 * @returns `{ out: [queryTokens, heads, headDim], lse: [queryTokens, heads] }`.
 * @throws {TypeError} On shape mismatches, or gates without `gateSeenAt` where `seenAt` is given.
 * @throws {RangeError} On out-of-range spans or gates, a landmark inside the spans, or a gate with no selected content.
 *
 * @example One gated block and the current block's tokens
 * ```ts
 * import { landmarkAttend, landmarkGroupedAttention } from "@longctx/longctx/attention";
 * import { KvStore } from "@longctx/longctx/kv";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const key = randn([6, 1, 4], { seed: 1 }), value = randn([6, 1, 4], { seed: 2 });
 * const store = new KvStore({ layers: 1, kvHeads: 1, headDim: 4 });
 * store.append(0, key, value);
 * const query = randn([1, 1, 4], { seed: 3 });
 * // blockSize 3: block 0 = tokens 0..2 gated by landmark 3; the query is token 5.
 * const sel = { spans: Int32Array.of(0, 3, 4, 6), gates: Int32Array.of(3), blockSize: 3 };
 * const got = landmarkAttend(query, store, [[sel]], { layer: 0, queryPositions: [5] });
 * const want = landmarkGroupedAttention({ query, key, value }, { blockSize: 3 });
 * got.out.data.forEach((x, i) => assert.ok(Math.abs(x - want.out.data[i]) < 1e-5));
 * ```
 */
export function landmarkAttend(
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
  landmarkAttendInto(state, query, source, selections, options);
  return state;
}

/**
 * {@linkcode landmarkAttend} into a caller-owned state.
 *
 * @param state Destination `out` `[queryTokens, heads, headDim]`, `lse` `[queryTokens, heads]` (written).
 * @param query Raw queries `[queryTokens, heads, headDim]`.
 * @param source The KV store.
 * @param selections One selection per query token.
 * @param options As {@linkcode landmarkAttend}.
 * @throws {TypeError} / {RangeError} As {@linkcode landmarkAttend}.
 *
 * @example A plain selection gives the sparse attend result
 * ```ts
 * import { headSelection, landmarkAttendInto, sparseAttend } from "@longctx/longctx/attention";
 * import { KvStore } from "@longctx/longctx/kv";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const store = new KvStore({ layers: 1, kvHeads: 1, headDim: 4 });
 * store.append(0, randn([9, 1, 4], { seed: 1 }), randn([9, 1, 4], { seed: 2 }));
 * const q = randn([1, 2, 4], { seed: 3 });
 * const sel = headSelection([[0, 2], [6, 9]]);
 * const st = sparseAttend(q, store, [[sel, sel]], { layer: 0, queryPositions: [8] });
 * const want = [...st.out.data];
 * landmarkAttendInto(st, q, store, [[sel, sel]], { layer: 0, queryPositions: [8] });
 * st.out.data.forEach((x, i) => assert.ok(Math.abs(x - want[i]) < 1e-6));
 * ```
 */
export function landmarkAttendInto(
  state: AttentionState,
  query: Tensor,
  source: KvSource,
  selections: readonly Selection[],
  options: SparseAttendOptions,
): void {
  const action = "attend landmark blocks";
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
  const elem = source.dtype === "f16" ? 2 : 4;
  if (keyScratch.length < KEY_BLOCK * d) keyScratch = new Float32Array(KEY_BLOCK * d);
  ensurePair(group, d);
  const run = new GroupedRun(
    source,
    options.layer,
    d,
    rope,
    source.keyForm === "pre-rope",
    scale,
    softCap,
  );
  const [qs0, qs1] = query.strides as [number, number, number];
  const stats = options.stats;
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
      const length = source.length(options.layer, kh);
      let g0 = 0;
      while (g0 < group) {
        const hs = sel[kh * group + g0]!;
        let g1 = g0 + 1;
        while (g1 < group && sel[kh * group + g1] === hs) g1++;
        const rows = g1 - g0;
        validateLandmarkSelection(action, hs, length, t, kh * group + g0);
        for (let r = 0; r < rows; r++) {
          const hh = kh * group + g0 + r;
          rowOut[r] = (t * heads + hh) * d;
          rowLse[r] = t * heads + hh;
        }
        const qBase = query.offset + t * qs0 + (kh * group + g0) * qs1;
        const read = run.attend(rows, query.data as FloatArray, qBase, qs1, kh, hs, p);
        finishRows(pair!.outer, rows, d, state.out.data, rowOut, state.lse.data, rowLse);
        if (stats !== undefined) {
          for (let r = 0; r < rows; r++) stats.tokensPerHead[kh * group + g0 + r]! += read;
          stats.rowsRead += read;
          stats.bytesRead += read * 2 * d * elem;
          if (isLandmarkSelection(hs)) stats.bytesRead += hs.gates.length * d * elem;
        }
        g0 = g1;
      }
    }
  }
}

function validateLandmarkSelection(
  action: string,
  hs: HeadSelection,
  length: number,
  t: number,
  h: number,
): void {
  if (hs === undefined || hs === null || !(hs.spans instanceof Int32Array)) {
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
  if (!isLandmarkSelection(hs)) return;
  requirePositiveInt(action, `selections[${t}][${h}].blockSize`, hs.blockSize);
  const g = hs.gates;
  for (let i = 0; i < g.length; i++) {
    if (g[i]! < 0 || g[i]! >= length || (i > 0 && g[i]! <= g[i - 1]!)) {
      throw new RangeError(
        `Cannot ${action}: selections[${t}][${h}].gates must be ascending cache indices below ${length}, got ${
          describeValue(g)
        }`,
      );
    }
  }
  if (hs.gateSeenAt !== undefined && hs.gateSeenAt.length !== g.length) {
    throw new TypeError(
      `Cannot ${action}: selections[${t}][${h}].gateSeenAt must have one entry per gate (${g.length}), got ${hs.gateSeenAt.length}`,
    );
  }
  if (hs.seenAt !== undefined && g.length > 0 && hs.gateSeenAt === undefined) {
    throw new TypeError(
      `Cannot ${action}: selections[${t}][${h}] re-maps positions (seenAt) but gives no gateSeenAt for its ${g.length} gates`,
    );
  }
}

/**
 * The per-group state of one grouped attend call: walks a selection's spans,
 * routes each run of tokens to the outer state (ungated) or to its block's
 * inner state (gated), and folds finished blocks into the outer state.
 */
class GroupedRun {
  #source: KvSource;
  #layer: number;
  #d: number;
  #rope: RotaryEncoding | undefined;
  #preRope: boolean;
  #scale: number;
  #softCap: number;
  // Per group call.
  #rows = 0;
  #q: FloatArray = new Float32Array(0);
  #qBase = 0;
  #qStride = 0;
  #kh = 0;
  #queryPosition = 0;
  #queryAt = 0;
  /** Position the shared query buffer is rotated to (NaN: not loaded). */
  #loadedAt = NaN;

  constructor(
    source: KvSource,
    layer: number,
    d: number,
    rope: RotaryEncoding | undefined,
    preRope: boolean,
    scale: number,
    softCap: number,
  ) {
    this.#source = source;
    this.#layer = layer;
    this.#d = d;
    this.#rope = rope;
    this.#preRope = preRope;
    this.#scale = scale;
    this.#softCap = softCap;
  }

  /** Attends one group of `rows` query heads sharing `hs`; returns the content tokens read. */
  attend(
    rows: number,
    q: FloatArray,
    qBase: number,
    qStride: number,
    kh: number,
    hs: HeadSelection,
    queryPosition: number,
  ): number {
    const { outer, inner } = pair!;
    const d = this.#d;
    this.#rows = rows;
    this.#q = q;
    this.#qBase = qBase;
    this.#qStride = qStride;
    this.#kh = kh;
    this.#queryPosition = queryPosition;
    this.#queryAt = hs.queryAt ?? queryPosition;
    this.#loadedAt = NaN;
    resetRows(outer, rows, d);
    outer.visible.fill(0x7fffffff, 0, rows);
    inner.visible.fill(0x7fffffff, 0, rows);
    const lm = isLandmarkSelection(hs) ? hs : undefined;
    const gates = lm?.gates ?? EMPTY_I32;
    const gateSeen = lm?.gateSeenAt;
    const bs = lm?.blockSize ?? 0;
    const G = gates.length;
    const spans = hs.spans, seenAt = hs.seenAt;
    const ps = this.#source.pageSize;
    let gp = 0; // first gate whose index is > the current token
    let open = -1; // gate whose block is accumulating in `inner`
    let read = 0;
    const passGate = (): void => {
      if (open === gp) {
        this.#flush(gates[gp]!, gateSeen === undefined ? NaN : gateSeen[gp]!);
        open = -1;
      } else {
        throw new RangeError(
          `Cannot attend landmark blocks: gate ${gates[gp]} has no selected content in [${
            gates[gp]! - bs
          }, ${gates[gp]})`,
        );
      }
      gp++;
    };
    for (let i = 0; i < spans.length; i += 2) {
      const s = spans[i]!, e = spans[i + 1]!;
      const seen0 = seenAt === undefined ? NaN : seenAt[i >> 1]!;
      let j = s;
      while (j < e) {
        while (gp < G && gates[gp]! <= j) {
          if (gates[gp] === j) {
            throw new RangeError(
              `Cannot attend landmark blocks: landmark ${j} is a gate and must not be in the spans (its value is never mixed in)`,
            );
          }
          passGate();
        }
        const pi = Math.floor(j / ps);
        const row = j - pi * ps;
        const pg = this.#source.page(this.#layer, kh, pi);
        let count = Math.min(e - j, ps - row, pg.length - row);
        const seen = Number.isNaN(seen0) ? NaN : seen0 + (j - s);
        if (gp < G && gates[gp]! - bs <= j) {
          // Inside gated block gp.
          count = Math.min(count, gates[gp]! - j);
          if (open !== gp) {
            open = gp;
            resetRows(inner, rows, d);
          }
          this.#fold(inner, pg, row, count, seen, seenAt !== undefined);
        } else {
          if (gp < G) count = Math.min(count, gates[gp]! - bs - j);
          this.#fold(outer, pg, row, count, seen, seenAt !== undefined);
        }
        read += count;
        j += count;
      }
    }
    while (gp < G) passGate();
    return read;
  }

  /** Loads the group's query rows rotated to `at` (raw when there is no RoPE). */
  #loadQuery(at: number): void {
    if (this.#loadedAt === at) return;
    const w = pair!.outer, d = this.#d, rope = this.#rope;
    for (let r = 0; r < this.#rows; r++) {
      const src = this.#qBase + r * this.#qStride;
      if (rope === undefined) { for (let i = 0; i < d; i++) w.q[r * d + i] = this.#q[src + i]!; }
      else rope.rotateRow(this.#q, src, w.q, r * d, at);
    }
    this.#loadedAt = at;
  }

  /**
   * Folds rows `[row, row + count)` of a page into `w`; `seen` is the seen
   * position of `row` (NaN: original positions).
   */
  #fold(
    w: GroupWorkspace,
    pg: KvPageView,
    row: number,
    count: number,
    seen: number,
    remapped: boolean,
  ): void {
    const d = this.#d, rope = this.#rope, rows = this.#rows;
    const scale = this.#scale, softCap = this.#softCap;
    const pos = pg.positions;
    if (rope === undefined || (!this.#preRope && !remapped)) {
      this.#loadQuery(rope === undefined ? 0 : this.#queryPosition);
      foldRun(w, rows, d, pg.keys, row * d, pg.values, row * d, d, d, count, scale, softCap);
    } else if (!this.#preRope && pos[row + count - 1]! - pos[row]! === count - 1) {
      // Post-RoPE keys at a constant shift δ: rotate the query to queryAt − δ.
      this.#loadQuery(this.#queryAt - (seen - pos[row]!));
      foldRun(w, rows, d, pg.keys, row * d, pg.values, row * d, d, d, count, scale, softCap);
    } else {
      // Rotate keys on read: pre-RoPE keys to their seen position; post-RoPE keys with gaps in
      // their original positions by (seen − original).
      this.#loadQuery(this.#queryAt);
      for (let b = 0; b < count; b += KEY_BLOCK) {
        const bn = Math.min(KEY_BLOCK, count - b);
        for (let k = 0; k < bn; k++) {
          const r = row + b + k;
          const sk = Number.isNaN(seen) ? pos[r]! : seen + b + k;
          rope.rotateRow(pg.keys, r * d, keyScratch, k * d, this.#preRope ? sk : sk - pos[r]!);
        }
        foldRun(w, rows, d, keyScratch, 0, pg.values, (row + b) * d, d, d, bn, scale, softCap);
      }
    }
  }

  /** Computes the gate logits of landmark `g` (seen at `seen`, NaN: original) and folds the open block. */
  #flush(g: number, seen: number): void {
    const { outer, inner, gate } = pair!;
    const d = this.#d, rope = this.#rope, rows = this.#rows;
    const ps = this.#source.pageSize;
    const pg = this.#source.page(this.#layer, this.#kh, Math.floor(g / ps));
    const row = g % ps;
    const orig = pg.positions[row]!;
    let keys: FloatArray = pg.keys, ko = row * d;
    if (rope === undefined) {
      this.#loadQuery(0);
    } else if (!this.#preRope) {
      this.#loadQuery(
        Number.isNaN(seen) ? this.#queryPosition : this.#queryAt - (seen - orig),
      );
    } else {
      rope.rotateRow(pg.keys, ko, keyScratch, 0, Number.isNaN(seen) ? orig : seen);
      keys = keyScratch;
      ko = 0;
      this.#loadQuery(this.#queryAt);
    }
    const q = outer.q;
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let i = 0; i < d; i++) s += q[r * d + i]! * keys[ko + i]!;
      gate[r] = cap(s * this.#scale, this.#softCap);
    }
    mergeGate(outer, inner, rows, d);
  }
}

// ---------------------------------------------------------------------------
// Retrieval: the selector.

/**
 * How block scores are aggregated into retrieval sets (the authors'
 * `cache_selection_method`).
 *
 * | value | sets | rule |
 * | --- | --- | --- |
 * | `"per-token-and-head"` | one per query token and head (per KV head with `gqa: "kv-head"`) | top-k of the landmark logits |
 * | `"max-over-heads"` | one per query token, shared by every head | softmax over blocks per head, max over heads, top-k |
 * | `"max-over-tokens"` | one per head per chunk (forced by the authors when offloading) | softmax over blocks per token, max over the chunk's tokens, top-k |
 */
export type LandmarkAggregate = "per-token-and-head" | "max-over-heads" | "max-over-tokens";

/** GQA handling of {@linkcode LandmarkRetrieval} (the authors' code is MHA only). */
export type LandmarkGqa = "kv-head" | "query-head";

/** Options of {@linkcode LandmarkRetrieval}. */
export interface LandmarkRetrievalOptions {
  /** Content tokens per block (`mem_freq`); blocks are `blockSize + 1` tokens. @default {50} */
  blockSize?: number;
  /** Blocks retrieved per retrieval set, `k`; `min(k, blocks)` when fewer are cached. @default {4} */
  topK?: number;
  /** Score aggregation. @default {"per-token-and-head"} */
  aggregate?: LandmarkAggregate;
  /**
   * GQA: `"kv-head"` takes, per block, the max over the group's query heads of
   * their softmax probabilities, so the group shares one set (each key read
   * once per group); `"query-head"` keeps one set per query head. The two
   * coincide for MHA.
   * @default {"kv-head"}
   */
  gqa?: LandmarkGqa;
}

/** Input of {@linkcode LandmarkRetrieval.selectChunk}. */
export interface LandmarkChunkInput {
  /** The KV store; it already holds the chunk's keys (cache indices `start … start + c − 1`). */
  store: KvSource;
  /** Layer index. */
  layer: number;
  /** Raw (pre-RoPE) queries of the chunk, `[c, heads, headDim]`. */
  query: Tensor;
  /** Cache index of the chunk's first token. */
  start: number;
  /** Position of each query token, `[c]`; cache index `i` is at position `queryPositions[0] − start + i`. @default {start + t} */
  queryPositions?: ArrayLike<number>;
  /** RoPE the model uses, if any. */
  rope?: RotaryEncoding;
  /** Softmax scale of the landmark logits. @default {1 / Math.sqrt(headDim)} */
  scale?: number;
}

/** The offloading view of a landmark cache (spec §2.8), in bytes of the store's dtype. */
export interface LandmarkResidency {
  /** Complete blocks, summed over the (layer, KV head) pairs counted. */
  blocks: number;
  /** Landmark keys (one per complete block): stay on the device. */
  landmarkKeyBytes: number;
  /** K and V of the incomplete last block: stay on the device. */
  localBytes: number;
  /** `landmarkKeyBytes + localBytes`. */
  deviceBytes: number;
  /** K and V of every complete block: may live in host memory. */
  hostBytes: number;
  /** K and V of every cached token. */
  totalBytes: number;
  /** K and V copied in per retrieval set and KV head (`min(k, blocks)` blocks). */
  fetchBytesPerSet: number;
}

interface LandmarkKeys {
  /** Raw (pre-RoPE) landmark keys, `[blocks, headDim]`. */
  keys: Float32Array;
  /** Head dimension. */
  d: number;
  /** Blocks whose landmark key is cached. */
  built: number;
}

/**
 * Landmark retrieval as a selector over the shared KV store (spec §2.6–2.7).
 *
 * For a query at cache index `q`, memory is every complete block before the
 * query's own block (`Nb = ⌊q / Bℓ⌋` blocks, `Bℓ = blockSize + 1`, cache index
 * `i` is a landmark iff `i mod Bℓ == blockSize`). Each block is scored by its
 * landmark key, `z = scale · ⟨rope(q, pos_q), rope(ℓ_c, pos_ℓc)⟩`, the top
 * `k_eff = min(k, Nb)` are kept (chronological order), and the selection
 * reads them plus the query's own block up to the query:
 *
 * - **slots**: `prefix = Nb·Bℓ − (k_eff + 1)·Bℓ`; slot `j` spans
 *   `[prefix + j·Bℓ, prefix + (j + 1)·Bℓ)`. For scoring, the `k_eff` most
 *   recent blocks sit in slots `1 … k_eff` (their true positions) and every
 *   older landmark in slot 0 (so old blocks compete on content alone). The
 *   `j`-th selected block is seen in slot `j`, or `j + 1` if it is one of the
 *   `k_eff` most recent; within-block offsets are kept. The current block
 *   keeps its true positions.
 * - **gates**: each retrieved block is gated by its landmark (a
 *   {@linkcode LandmarkHeadSelection}); the landmark is never in the spans.
 *
 * Landmark keys are cached once per block in raw form (pre-RoPE; un-rotated
 * from a post-RoPE store), `Nb · headDim` floats per KV head: the
 * device-resident part of an offloaded cache.
 *
 * Execution: {@linkcode landmarkAttend} (or {@linkcode LandmarkAttention})
 * gives the trained grouped softmax; `AttentionPipeline`'s plain attend gives
 * one softmax over the retrieved content (gates := block LSE; see the module
 * doc). In a pipeline the selector is called per query token and KV head, so
 * `"max-over-heads"` aggregates over the GQA group only and
 * `"max-over-tokens"` over the one token; {@linkcode LandmarkRetrieval.selectChunk}
 * (used by {@linkcode LandmarkAttention}) sees every head and the whole chunk.
 *
 * Oracles: with `k ≥ Nb` every block is retrieved at its true position and
 * the grouped execution equals {@linkcode landmarkGroupedAttention} over the
 * whole context; with no complete block it is plain causal attention.
 *
 * Meaningful scores need a landmark-trained model (see the module doc).
 *
 * | cost per query token and KV head (Nb blocks, group g) | |
 * | --- | --- |
 * | scoring | O(g · Nb · headDim) + k + 1 query rotations |
 * | top-k | O(Nb · k) |
 * | attend | ≤ k·Bℓ + Bℓ keys (per query head with `"query-head"`) |
 * | memory | Nb · headDim f32 landmark keys per KV head |
 *
 * @see https://arxiv.org/abs/2305.16300
 *
 * @example Retrieval reads k blocks plus the current one, at slot positions
 * ```ts
 * import { LandmarkAttention } from "@longctx/longctx/attention";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const la = new LandmarkAttention({ layers: 1, heads: 2, kvHeads: 1, headDim: 8, blockSize: 7, topK: 2 });
 * la.attend(0, randn([100, 2, 8], { seed: 1 }), randn([100, 1, 8], { seed: 2 }), randn([100, 1, 8], { seed: 3 }));
 * const { out } = la.attend(0, randn([1, 2, 8], { seed: 4 }), randn([1, 1, 8], { seed: 5 }), randn([1, 1, 8], { seed: 6 }));
 * assert.ok(out.data.every(Number.isFinite));
 * const sel = la.lastSelection![0];
 * assert.equal(sel.gates.length, 2);                 // two retrieved blocks
 * assert.deepEqual([...sel.spans.slice(-2)], [96, 101]); // current block 12 = tokens 96..103, up to the query
 * ```
 */
export class LandmarkRetrieval implements Selector {
  /** `"landmark"`. */
  readonly name: string = "landmark";
  /** Retrieved blocks are re-placed in slots. */
  readonly positions = "remapped" as const;
  /** The whole history (blocks stay retrievable). */
  readonly needs: HistoryNeed = { kind: "all" };
  /** Content tokens per block. */
  readonly blockSize: number;
  /** Tokens per block, `blockSize + 1`. */
  readonly blockLength: number;
  /** Blocks per retrieval set. */
  readonly topK: number;
  /** Score aggregation. */
  readonly aggregate: LandmarkAggregate;
  /** GQA handling. */
  readonly gqa: LandmarkGqa;

  #state = new Map<number, LandmarkKeys>();
  #scores = new Float64Array(0);
  #acc = new Float64Array(0);
  #rot = new Float32Array(0);
  #best = new Int32Array(0);

  /**
   * Creates the selector from its options.
   *
   * @param options Block size, top-k, aggregation, GQA handling.
   * @throws {RangeError} If a size is not a positive integer.
   * @throws {TypeError} If `aggregate` or `gqa` is not a known name.
   */
  constructor(options: LandmarkRetrievalOptions = {}) {
    const action = "create LandmarkRetrieval";
    this.blockSize = requirePositiveInt(
      action,
      "blockSize",
      options.blockSize ?? DEFAULT_LANDMARK_BLOCK_SIZE,
    );
    this.blockLength = this.blockSize + 1;
    this.topK = requirePositiveInt(action, "topK", options.topK ?? DEFAULT_LANDMARK_TOP_K);
    this.aggregate = requireOneOf(
      action,
      "aggregate",
      options.aggregate ?? "per-token-and-head",
      ["per-token-and-head", "max-over-heads", "max-over-tokens"] as const,
    );
    this.gqa = requireOneOf(
      action,
      "gqa",
      options.gqa ?? "kv-head",
      [
        "kv-head",
        "query-head",
      ] as const,
    );
  }

  /** Forgets the cached landmark keys (a new sequence). */
  reset(): void {
    this.#state.clear();
  }

  /**
   * The raw (pre-RoPE) landmark key of one cached block (a copy), for inspection and tests.
   *
   * @param layer Layer index.
   * @param kvHead KV head index.
   * @param block Block index.
   * @returns `[headDim]`, or `undefined` if not cached yet.
   */
  landmarkKey(layer: number, kvHead: number, block: number): Float32Array | undefined {
    const st = this.#state.get(layer * 65536 + kvHead);
    if (st === undefined || block < 0 || block >= st.built) return undefined;
    return st.keys.slice(block * st.d, (block + 1) * st.d);
  }

  /**
   * Chooses the tokens one query reads for one KV head (the decode rule,
   * applied to every query token of a pipeline call).
   *
   * @param ctx The selection context (`ctx.rope` for positions, `ctx.query` for the group's raw queries).
   * @returns One {@linkcode LandmarkHeadSelection} for the group, or one per query head with `gqa: "query-head"`.
   */
  select(ctx: SelectContext): HeadSelection | readonly HeadSelection[] {
    const q = ctx.length - 1;
    const bl = this.blockLength;
    const nb = Math.floor(q / bl);
    const origin = ctx.queryPosition - q;
    const g = ctx.group, d = ctx.store.headDim;
    const qpos = [ctx.queryPosition];
    const scale = 1 / Math.sqrt(d) * (ctx.rope?.attentionFactor ?? 1) ** 2;
    const sets = this.#chooseSets(
      ctx.store,
      ctx.layer,
      [ctx.kvHead],
      g,
      1,
      (_t, h) => h * d,
      ctx.query,
      qpos,
      origin,
      nb,
      ctx.rope,
      scale,
    );
    const perHead = this.#perHead();
    const build = (set: Int32Array): LandmarkHeadSelection => this.#selection(set, nb, q, origin);
    if (!perHead) return build(sets[0]![0]!);
    return sets[0]!.map(build);
  }

  /**
   * Chooses the tokens every query token of a chunk reads, for every head, by
   * the authors' chunk rule: memory is the complete blocks cached before the
   * chunk (`⌊start / Bℓ⌋` blocks); everything from there to the query is
   * local (blocks the chunk completes are gated by their landmarks).
   * `"max-over-heads"` aggregates over every head and `"max-over-tokens"`
   * over the chunk.
   *
   * @param input Store, layer, raw queries of the chunk, its start, positions, RoPE, scale.
   * @returns One {@linkcode Selection} per query token; heads sharing a set share one object.
   * @throws {TypeError} On a query shape that does not fit the store.
   * @throws {RangeError} If the store does not hold the chunk.
   *
   * @example The chunk rule with k ≥ blocks reads everything before the query
   * ```ts
   * import { LandmarkRetrieval, selectedTokens } from "@longctx/longctx/attention";
   * import { KvStore } from "@longctx/longctx/kv";
   * import { randn } from "@longctx/longctx/tensor";
   * import assert from "node:assert/strict";
   * const store = new KvStore({ layers: 1, kvHeads: 1, headDim: 4 });
   * store.append(0, randn([20, 1, 4], { seed: 1 }), randn([20, 1, 4], { seed: 2 }));
   * const lr = new LandmarkRetrieval({ blockSize: 3, topK: 8 });
   * const [sel] = lr.selectChunk({ store, layer: 0, query: randn([1, 1, 4], { seed: 3 }), start: 19 });
   * assert.equal(selectedTokens(sel[0]), 15);   // 20 tokens minus 4 landmarks, minus the own landmark (19)
   * ```
   */
  selectChunk(input: LandmarkChunkInput): Selection[] {
    const action = "select landmark blocks";
    const { store, layer, query } = input;
    requireThd(action, "query", query);
    const [c, H, d] = query.shape as [number, number, number];
    if (d !== store.headDim || H % store.kvHeads !== 0) {
      throw new TypeError(
        `Cannot ${action}: query shape ${
          describeValue(query.shape)
        } must be [tokens, a multiple of ${store.kvHeads}, ${store.headDim}]`,
      );
    }
    const start = requireInt(action, "start", input.start);
    const KV = store.kvHeads, g = H / KV;
    for (let kh = 0; kh < KV; kh++) {
      if (start < 0 || store.length(layer, kh) < start + c) {
        throw new RangeError(
          `Cannot ${action}: the store must hold the chunk (cache indices ${start} … ${
            start + c - 1
          }), but KV head ${kh} holds ${store.length(layer, kh)} tokens`,
        );
      }
    }
    const positions = input.queryPositions;
    if (positions !== undefined && positions.length !== c) {
      throw new TypeError(
        `Cannot ${action}: queryPositions must have one entry per query token (${c}), got ${positions.length}`,
      );
    }
    const qpos = Array.from({ length: c }, (_, t) => positions?.[t] ?? start + t);
    const origin = c > 0 ? qpos[0]! - start : 0;
    const nb = Math.floor(start / this.blockLength);
    const base = resolveScale(action, d, input.scale, undefined).scale;
    const scale = base * (input.rope?.attentionFactor ?? 1) ** 2;
    // Raw query rows as a contiguous [c, H, d] copy so scoring reads rows by offset.
    const qd = new Float32Array(c * H * d);
    const [qs0, qs1] = query.strides as [number, number, number];
    for (let t = 0; t < c; t++) {
      for (let h = 0; h < H; h++) {
        const src = query.offset + t * qs0 + h * qs1;
        for (let i = 0; i < d; i++) qd[(t * H + h) * d + i] = query.data[src + i]!;
      }
    }
    const kvList = Array.from({ length: KV }, (_, kh) => kh);
    const sets = this.#chooseSets(
      store,
      layer,
      kvList,
      g,
      c,
      (t, h) => (t * H + h) * d,
      qd,
      qpos,
      origin,
      nb,
      input.rope,
      scale,
    );
    const perHead = this.#perHead();
    const overHeads = this.aggregate === "max-over-heads";
    const out: Selection[] = [];
    for (let t = 0; t < c; t++) {
      const built = sets[t]!.map((set) => this.#selection(set, nb, start + t, origin));
      const sel = new Array<HeadSelection>(H);
      for (let h = 0; h < H; h++) {
        sel[h] = built[overHeads ? 0 : perHead ? h : Math.floor(h / g)]!;
      }
      out.push(sel);
    }
    return out;
  }

  /**
   * The offloading view (spec §2.8): device-resident bytes (landmark keys and
   * the incomplete last block) against the bytes of all blocks, for one layer
   * or every layer of a store.
   *
   * @param store The KV store.
   * @param layer One layer, or every layer when omitted.
   * @returns Byte counts in the store's element size.
   *
   * @example 1000 tokens in blocks of 64: 15 complete blocks per head
   * ```ts
   * import { LandmarkRetrieval } from "@longctx/longctx/attention";
   * import { KvStore } from "@longctx/longctx/kv";
   * import { zeros } from "@longctx/longctx/tensor";
   * import assert from "node:assert/strict";
   * const store = new KvStore({ layers: 1, kvHeads: 2, headDim: 8 });
   * store.append(0, zeros("f32", [1000, 2, 8]), zeros("f32", [1000, 2, 8]));
   * const r = new LandmarkRetrieval({ blockSize: 63 }).residency(store);
   * assert.equal(r.blocks, 30);
   * assert.equal(r.landmarkKeyBytes, 30 * 8 * 4);
   * assert.equal(r.localBytes, 2 * (1000 - 960) * 2 * 8 * 4);
   * assert.equal(r.totalBytes, 2 * 1000 * 2 * 8 * 4);
   * ```
   */
  residency(store: KvSource & { readonly layers?: number }, layer?: number): LandmarkResidency {
    const layers = layer === undefined
      ? Array.from({ length: store.layers ?? 1 }, (_, l) => l)
      : [requireInt("report landmark residency", "layer", layer)];
    const elem = store.dtype === "f16" ? DTYPE_BYTES.f16 : DTYPE_BYTES.f32;
    const d = store.headDim, bl = this.blockLength;
    const row = 2 * d * elem;
    let blocks = 0, tokens = 0, maxBlocks = 0;
    for (const l of layers) {
      for (let kh = 0; kh < store.kvHeads; kh++) {
        const n = store.length(l, kh);
        const nb = Math.floor(n / bl);
        blocks += nb;
        tokens += n;
        maxBlocks = Math.max(maxBlocks, nb);
      }
    }
    const landmarkKeyBytes = blocks * d * elem;
    const hostBytes = blocks * bl * row;
    const totalBytes = tokens * row;
    const localBytes = totalBytes - hostBytes;
    return {
      blocks,
      landmarkKeyBytes,
      localBytes,
      deviceBytes: landmarkKeyBytes + localBytes,
      hostBytes,
      totalBytes,
      fetchBytesPerSet: Math.min(this.topK, maxBlocks) * bl * row,
    };
  }

  /** Whether retrieval sets are per query head (else per KV head, or shared by every head). */
  #perHead(): boolean {
    return this.gqa === "query-head" && this.aggregate !== "max-over-heads";
  }

  /** Caches raw landmark keys of blocks `[built, blocks)` of one head. */
  #landmarks(
    store: KvSource,
    layer: number,
    kh: number,
    blocks: number,
    rope: RotaryEncoding | undefined,
  ): Float32Array {
    const key = layer * 65536 + kh;
    const d = store.headDim, bl = this.blockLength, ps = store.pageSize;
    let st = this.#state.get(key);
    if (st === undefined || st.d !== d) {
      st = { keys: new Float32Array(16 * d), d, built: 0 };
      this.#state.set(key, st);
    }
    if (store.length(layer, kh) < st.built * bl) st.built = 0; // the store was cleared
    if (st.keys.length < blocks * d) {
      const grown = new Float32Array(Math.max(blocks, 2 * (st.keys.length / d)) * d);
      grown.set(st.keys.subarray(0, st.built * d));
      st.keys = grown;
    }
    const unrotate = rope !== undefined && store.keyForm === "post-rope";
    for (let c = st.built; c < blocks; c++) {
      const idx = c * bl + this.blockSize;
      const pg = store.page(layer, kh, Math.floor(idx / ps));
      const row = idx % ps;
      if (unrotate) rope.rotateRow(pg.keys, row * d, st.keys, c * d, -pg.positions[row]!);
      else for (let i = 0; i < d; i++) st.keys[c * d + i] = pg.keys[row * d + i]!;
    }
    if (blocks > st.built) st.built = blocks;
    return st.keys;
  }

  /**
   * Retrieval sets `[token][setKey]` (ascending block ids) for `tokens` query
   * tokens over `kvList` KV heads of `group` query heads each. Query row of
   * token t and local head h (0 … kvList.length·group − 1) is `qd[rowOf(t, h) …]`.
   */
  #chooseSets(
    store: KvSource,
    layer: number,
    kvList: readonly number[],
    group: number,
    tokens: number,
    rowOf: (t: number, h: number) => number,
    qd: FloatArray,
    qpos: readonly number[],
    origin: number,
    nb: number,
    rope: RotaryEncoding | undefined,
    scale: number,
  ): Int32Array[][] {
    const H = kvList.length * group;
    const perHead = this.#perHead();
    const overHeads = this.aggregate === "max-over-heads";
    const overTokens = this.aggregate === "max-over-tokens";
    const nKeys = overHeads ? 1 : perHead ? H : kvList.length;
    const keyOf = (h: number): number => overHeads ? 0 : perHead ? h : Math.floor(h / group);
    const softmax = !(perHead && this.aggregate === "per-token-and-head");
    const kEff = Math.min(this.topK, nb);
    const out: Int32Array[][] = [];
    if (nb === 0) {
      const none = new Int32Array(0);
      for (let t = 0; t < tokens; t++) out.push(new Array<Int32Array>(nKeys).fill(none));
      return out;
    }
    const d = store.headDim;
    const lks = kvList.map((kh) => this.#landmarks(store, layer, kh, nb, rope));
    if (this.#scores.length < nb) this.#scores = new Float64Array(2 * nb);
    if (this.#acc.length < nKeys * nb) this.#acc = new Float64Array(2 * nKeys * nb);
    if (this.#rot.length < d) this.#rot = new Float32Array(d);
    const acc = this.#acc, scores = this.#scores;
    const pick = (): Int32Array[] => {
      const sets: Int32Array[] = [];
      for (let k = 0; k < nKeys; k++) sets.push(this.#topK(acc, k * nb, nb, kEff));
      return sets;
    };
    acc.fill(-Infinity, 0, nKeys * nb);
    for (let t = 0; t < tokens; t++) {
      if (!overTokens && t > 0) acc.fill(-Infinity, 0, nKeys * nb);
      for (let h = 0; h < H; h++) {
        const keys = lks[Math.floor(h / group)]!;
        this.#score(scores, keys, nb, kEff, qd, rowOf(t, h), d, qpos[t]!, origin, rope, scale);
        if (softmax) softmaxInPlace(scores, nb);
        const o = keyOf(h) * nb;
        for (let b = 0; b < nb; b++) if (scores[b]! > acc[o + b]!) acc[o + b] = scores[b]!;
      }
      if (!overTokens) out.push(pick());
    }
    if (overTokens) {
      const sets = pick();
      for (let t = 0; t < tokens; t++) out.push(sets);
    }
    return out;
  }

  /** Landmark logits of blocks `[0, nb)` for one raw query row, at the scoring slot positions. */
  #score(
    out: Float64Array,
    keys: Float32Array,
    nb: number,
    kEff: number,
    q: FloatArray,
    qOff: number,
    d: number,
    qpos: number,
    origin: number,
    rope: RotaryEncoding | undefined,
    scale: number,
  ): void {
    const bl = this.blockLength, bs = this.blockSize;
    const recent0 = nb - kEff;
    const rot = this.#rot;
    const dot = (b: number, x: FloatArray, xo: number): number => {
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      const ko = b * d;
      let i = 0;
      for (; i + 4 <= d; i += 4) {
        s0 += x[xo + i]! * keys[ko + i]!;
        s1 += x[xo + i + 1]! * keys[ko + i + 1]!;
        s2 += x[xo + i + 2]! * keys[ko + i + 2]!;
        s3 += x[xo + i + 3]! * keys[ko + i + 3]!;
      }
      for (; i < d; i++) s0 += x[xo + i]! * keys[ko + i]!;
      return (s0 + s1 + s2 + s3) * scale;
    };
    if (rope === undefined) {
      for (let b = 0; b < nb; b++) out[b] = dot(b, q, qOff);
      return;
    }
    // ⟨R(a)q, R(p)ℓ⟩ = ⟨R(a − p)q, ℓ⟩: one query rotation for all old blocks (slot 0), one per recent block.
    const prefix = origin + nb * bl - (kEff + 1) * bl;
    if (recent0 > 0) {
      rope.rotateRow(q, qOff, rot, 0, qpos - (prefix + bs));
      for (let b = 0; b < recent0; b++) out[b] = dot(b, rot, 0);
    }
    for (let b = recent0; b < nb; b++) {
      rope.rotateRow(q, qOff, rot, 0, qpos - (origin + b * bl + bs));
      out[b] = dot(b, rot, 0);
    }
  }

  /** Top-`k` indices of `v[o … o + n)` in ascending index order (ties: the earlier block). */
  #topK(v: Float64Array, o: number, n: number, k: number): Int32Array {
    if (this.#best.length < k) this.#best = new Int32Array(2 * k);
    const best = this.#best;
    let m = 0;
    for (let b = 0; b < n; b++) {
      const s = v[o + b]!;
      if (m === k && !(s > v[o + best[m - 1]!]!)) continue;
      let i = m < k ? m++ : m - 1;
      while (i > 0 && v[o + best[i - 1]!]! < s) {
        best[i] = best[i - 1]!;
        i--;
      }
      best[i] = b;
    }
    return best.slice(0, m).sort();
  }

  /**
   * The selection of the query at cache index `qi` given the retrieved blocks
   * `set` (ascending) among `nb` memory blocks; tokens from `local0 = nb·Bℓ`
   * to the query are local, at true positions.
   */
  #selection(
    set: Int32Array,
    nb: number,
    qi: number,
    origin: number,
  ): LandmarkHeadSelection {
    const bl = this.blockLength, bs = this.blockSize;
    const kEff = Math.min(this.topK, nb);
    const prefix = origin + nb * bl - (kEff + 1) * bl;
    const spans: number[] = [];
    const seen: number[] = [];
    const gates: number[] = [];
    const gateSeen: number[] = [];
    for (let j = 0; j < set.length; j++) {
      const c = set[j]!;
      const slot = j + (c >= nb - kEff ? 1 : 0);
      const at = prefix + slot * bl;
      spans.push(c * bl, c * bl + bs);
      seen.push(at);
      gates.push(c * bl + bs);
      gateSeen.push(at + bs);
    }
    // Local blocks: complete ones before the query's own block are gated; the own block is read
    // up to the query, its landmark masked.
    const own = Math.floor(qi / bl);
    for (let c = nb; c <= own; c++) {
      const s = c * bl;
      const e = c < own ? s + bs : Math.min(qi + 1, s + bs);
      if (e > s) {
        spans.push(s, e);
        seen.push(origin + s);
      }
      if (c < own) {
        gates.push(s + bs);
        gateSeen.push(origin + s + bs);
      }
    }
    return {
      spans: Int32Array.from(spans),
      seenAt: Float64Array.from(seen),
      queryAt: origin + qi,
      blockSize: bs,
      gates: Int32Array.from(gates),
      gateSeenAt: Float64Array.from(gateSeen),
    };
  }
}

function softmaxInPlace(x: Float64Array, n: number): void {
  let m = -Infinity;
  for (let i = 0; i < n; i++) if (x[i]! > m) m = x[i]!;
  let z = 0;
  for (let i = 0; i < n; i++) z += x[i] = Math.exp(x[i]! - m);
  for (let i = 0; i < n; i++) x[i] = x[i]! / z;
}

// ---------------------------------------------------------------------------
// The runner.

/** Options of {@linkcode LandmarkAttention}. */
export interface LandmarkAttentionOptions extends LandmarkRetrievalOptions {
  /** Transformer layers. */
  layers: number;
  /** Query heads. */
  heads: number;
  /** KV heads; `heads % kvHeads == 0`. */
  kvHeads: number;
  /** Head dimension. */
  headDim: number;
  /** RoPE of the model; omit for none. */
  rope?: Rope;
  /** Whether the store keeps rotated keys (`"post-rope"`) or raw keys. @default {"post-rope"} */
  keyForm?: "post-rope" | "pre-rope";
  /** KV storage dtype. @default {"f32"} */
  dtype?: "f32" | "f16";
  /** Tokens per KV page. @default {256} */
  pageSize?: number;
  /** Softmax scale. @default {1 / Math.sqrt(headDim)} */
  scale?: number;
}

/**
 * Landmark Attention at inference: a KV store, landmark retrieval and the
 * grouped attend, for a landmark-inserted token stream (see
 * `landmark_tokens.ts`; cache index `i` is a landmark iff
 * `i mod (blockSize + 1) == blockSize`, counted from the first token).
 *
 * Each {@linkcode LandmarkAttention.attend} call is one chunk of the authors'
 * rule: its keys are appended, memory is the complete blocks cached before
 * the chunk, and every query reads its retrieved blocks plus the local tokens
 * with the grouped softmax. Decode is a chunk of 1 (or 2 when a generated
 * token is followed by its landmark); the authors' prefill uses chunks of
 * {@linkcode landmarkChunkLength} tokens.
 *
 * Oracle: with `topK ≥` the number of blocks, the output equals
 * {@linkcode landmarkGroupedAttention} over the whole context (for any chunking).
 *
 * | cost per query token (Nb blocks) | |
 * | --- | --- |
 * | time | O(heads · Nb · headDim) scoring + O(heads · (k + 1) · Bℓ · headDim) attend (+ the chunk's local tokens) |
 * | memory | every token's K and V (offloadable: {@linkcode LandmarkAttention.residency}) + Nb · headDim landmark keys per KV head |
 *
 * @example Decode over a long stream: reads a bounded number of tokens
 * ```ts
 * import { LandmarkAttention } from "@longctx/longctx/attention";
 * import { Rope } from "@longctx/longctx/positional";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const la = new LandmarkAttention({ layers: 1, heads: 4, kvHeads: 2, headDim: 16, rope: new Rope({ headDim: 16 }), blockSize: 15, topK: 3 });
 * la.attend(0, randn([500, 4, 16], { seed: 1 }), randn([500, 2, 16], { seed: 2 }), randn([500, 2, 16], { seed: 3 }));
 * la.attend(0, randn([1, 4, 16], { seed: 4 }), randn([1, 2, 16], { seed: 5 }), randn([1, 2, 16], { seed: 6 }));
 * assert.ok(la.lastStats.tokensPerHead[0] <= 3 * 15 + 16);
 * assert.ok(la.residency().deviceBytes < la.residency().totalBytes / 10);
 * ```
 */
export class LandmarkAttention {
  /** The KV store. */
  readonly store: KvStore;
  /** The retrieval selector. */
  readonly retrieval: LandmarkRetrieval;
  /** Query heads. */
  readonly heads: number;
  /** The positional stage, if any. */
  readonly rope: Rope | undefined;
  /** Selection of the last query token of the last call (per query head). */
  lastSelection: LandmarkHeadSelection[] | undefined;
  /** What the last call read. */
  lastStats: AttendStats;
  #scale: number | undefined;
  #next: number[];

  /**
   * Creates the runner and its store.
   *
   * @param options Shapes, retrieval options, positions, storage.
   * @throws {TypeError} / {RangeError} On bad options.
   */
  constructor(options: LandmarkAttentionOptions) {
    const action = "create LandmarkAttention";
    const layers = requirePositiveInt(action, "layers", options.layers);
    this.heads = requirePositiveInt(action, "heads", options.heads);
    const kvHeads = requirePositiveInt(action, "kvHeads", options.kvHeads);
    const headDim = requirePositiveInt(action, "headDim", options.headDim);
    if (this.heads % kvHeads !== 0) {
      throw new RangeError(
        `Cannot ${action}: heads (${this.heads}) must be a multiple of kvHeads, got kvHeads ${kvHeads}`,
      );
    }
    if (options.rope !== undefined && options.rope.headDim !== headDim) {
      throw new TypeError(
        `Cannot ${action}: rope headDim (${options.rope.headDim}) does not match headDim (${headDim})`,
      );
    }
    this.rope = options.rope;
    this.retrieval = new LandmarkRetrieval(options);
    this.store = new KvStore({
      layers,
      kvHeads,
      headDim,
      keyForm: options.keyForm ?? "post-rope",
      ...(options.dtype !== undefined ? { dtype: options.dtype } : {}),
      ...(options.pageSize !== undefined ? { pageSize: options.pageSize } : {}),
    });
    if (options.scale !== undefined) requireFinite(action, "scale", options.scale);
    this.#scale = options.scale;
    this.#next = new Array(layers).fill(0);
    this.lastSelection = undefined;
    this.lastStats = createAttendStats(this.heads);
  }

  /** Tokens processed so far by `layer` (the next token's position). */
  position(layer: number): number {
    return this.#next[layer] ?? 0;
  }

  /**
   * Attends one chunk of `t` new stream tokens (prefill chunk or decode step).
   *
   * @param layer Layer index.
   * @param query Raw queries `[t, heads, headDim]`.
   * @param key Raw keys `[t, kvHeads, headDim]`.
   * @param value Values `[t, kvHeads, headDim]`.
   * @returns `{ out: [t, heads, headDim], lse: [t, heads] }` (grouped softmax; `lse` of the outer softmax).
   * @throws {TypeError} / {RangeError} On shape mismatches or a bad layer.
   */
  attend(layer: number, query: Tensor, key: Tensor, value: Tensor): AttentionState {
    const action = "attend in LandmarkAttention";
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.store.layers) {
      throw new RangeError(
        `Cannot ${action}: layer must be an integer in [0, ${this.store.layers}), got ${
          describeValue(layer)
        }`,
      );
    }
    requireThd(action, "query", query);
    requireThd(action, "key", key);
    const t = query.shape[0]!;
    if (key.shape[0] !== t || query.shape[1] !== this.heads) {
      throw new TypeError(
        `Cannot ${action}: query [${t}, ${this.heads}, d] and key [${t}, kvHeads, d] must have the same tokens, got shapes ${
          describeValue(query.shape)
        } and ${describeValue(key.shape)}`,
      );
    }
    const p0 = this.#next[layer]!;
    const rope = this.rope?.forSequenceLength(p0 + Math.max(t, 1));
    const keys = rope !== undefined && this.store.keyForm === "post-rope"
      ? rope.apply(key, p0)
      : key;
    this.store.append(layer, keys, value, p0);
    const selections = this.retrieval.selectChunk({
      store: this.store,
      layer,
      query,
      start: p0,
      ...(rope !== undefined ? { rope } : {}),
      ...(this.#scale !== undefined ? { scale: this.#scale } : {}),
    });
    const stats = createAttendStats(this.heads);
    const positions = Float64Array.from({ length: t }, (_, i) => p0 + i);
    const state = landmarkAttend(query, this.store, selections, {
      layer,
      queryPositions: positions,
      ...(rope !== undefined ? { rope } : {}),
      ...(this.#scale !== undefined ? { scale: this.#scale } : {}),
      stats,
    });
    this.#next[layer] = p0 + t;
    this.lastStats = stats;
    this.lastSelection = t > 0 ? selections[t - 1] as LandmarkHeadSelection[] : undefined;
    return state;
  }

  /**
   * The offloading view of the store (see {@linkcode LandmarkRetrieval.residency}).
   *
   * @param layer One layer, or all when omitted.
   * @returns Device-resident and total bytes.
   */
  residency(layer?: number): LandmarkResidency {
    return this.retrieval.residency(this.store, layer);
  }

  /** Empties the store and the landmark key cache (a new sequence). */
  reset(): void {
    this.store.clear();
    this.retrieval.reset();
    this.#next.fill(0);
    this.lastSelection = undefined;
  }
}
