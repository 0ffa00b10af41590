// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * `AttentionPipeline`: the composition of a positional stage, a router, per
 * head selectors and cache policies over one paged KV store, with prefill
 * (whole prompt or chunks of any size) and decode. DESIGN §1: select, then
 * attend exactly, then merge.
 *
 * @module
 */

import type { Tensor } from "../tensor/types.ts";
import { sliceAxis, zeros } from "../tensor/tensor.ts";
import { describeValue, requirePositiveInt } from "../tensor/validate.ts";
import { KvStore } from "../kv/kv_store.ts";
import { KeepAll } from "../kv/keep_all.ts";
import { type CachePolicy, describeNeed, historyCovers } from "../kv/types.ts";
import type { Rope } from "../positional/rope.ts";
import type { AttentionState } from "./types.ts";
import type { HeadSelection, Selection } from "./selection.ts";
import { type AttendStats, createAttendStats, sparseAttendInto } from "./sparse_attend.ts";
import { DenseSelector, type HeadPlan, type Router, type Selector } from "./stages.ts";
import { requireThd } from "./_validate.ts";

/** Options of {@linkcode AttentionPipeline}. */
export interface AttentionPipelineOptions {
  /** Transformer layers (each has its own KV store slice). */
  layers: number;
  /** Query heads. */
  heads: number;
  /** KV heads; `heads % kvHeads == 0`. */
  kvHeads: number;
  /** Head dimension. */
  headDim: number;
  /** Positional stage: the RoPE (with its frequency scaling) keys and queries are rotated with. Omit for no RoPE. */
  rope?: Rope;
  /** Selector for every head (when no `router`). @default {new DenseSelector()} */
  selector?: Selector;
  /** Cache policy for every head (when no `router`). @default {new KeepAll()} */
  policy?: CachePolicy;
  /** Per-head selector and policy; excludes `selector` and `policy`. */
  router?: Router;
  /**
   * Whether the store keeps keys rotated at original positions (`"post-rope"`:
   * re-positioned spans cost one query rotation per span) or raw (`"pre-rope"`:
   * one rotation per key read). Dynamic NTK changes frequencies after caching
   * and needs `"pre-rope"`.
   * @default {"post-rope", or "pre-rope" with dynamic NTK}
   */
  keyForm?: "post-rope" | "pre-rope";
  /** KV storage dtype. @default {"f32"} */
  dtype?: "f32" | "f16";
  /** Tokens per KV page. @default {256} */
  pageSize?: number;
  /** Softmax scale. @default {1 / Math.sqrt(headDim)} */
  scale?: number;
  /** Logit soft-cap. @default {undefined} */
  softCap?: number;
  /** Query tokens per kernel call in prefill (bounds the memory of per-token selections). @default {128} */
  prefillBlock?: number;
  /**
   * Record, for the last query token of each call, the original positions each
   * query head read ({@linkcode AttentionPipeline.lastRead}); costs O(tokens read) per call.
   * @default {false}
   */
  record?: boolean;
}

/** Cumulative accounting of a pipeline. */
export interface PipelineStats {
  /** Query tokens attended (summed over layers). */
  queries: number;
  /** Tokens read per query head, summed over layers and queries, `[heads]`. */
  tokensPerHead: Float64Array;
  /** Distinct KV rows read. */
  rowsRead: number;
  /** Bytes of K and V read. */
  bytesRead: number;
}

/**
 * A composed attention pipeline over one paged KV store.
 *
 * Per call, for each query token: the router's selector for each KV head
 * produces a {@linkcode HeadSelection}; the sparse attend kernel computes one
 * exact softmax over exactly those tokens at the positions they are seen at;
 * then each head's cache policy may evict. Because composition happens on
 * selections (set algebra) rather than on outputs, a union of stages is one
 * softmax over the union by construction.
 *
 * Rejected at construction with a `TypeError` that says why: a head whose
 * selector may read tokens its cache policy evicts (e.g. LongHeads over a
 * sink+window store); a post-RoPE store with dynamic NTK; `router` together
 * with `selector`/`policy`.
 *
 * Prefill is exact per query token (each sees exactly what its selector
 * picks among the tokens before it, e.g. the exact Λ mask for streaming
 * heads), whatever the chunk size; cache policies run after each call.
 *
 * | cost per query token | |
 * | --- | --- |
 * | time | O(selected tokens · headDim) per KV head group + the selectors' own cost |
 * | memory | what the cache policies keep, `bytesHeld()` |
 *
 * @example StreamingLLM sinks + window, decode over 300 tokens, memory bounded
 * ```ts
 * import { AttentionPipeline, StreamingLlm } from "@longctx/longctx/attention";
 * import { SinkWindow } from "@longctx/longctx/kv";
 * import { Rope } from "@longctx/longctx/positional";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const pipe = new AttentionPipeline({
 *   layers: 1, heads: 4, kvHeads: 2, headDim: 8,
 *   rope: new Rope({ headDim: 8 }),
 *   selector: new StreamingLlm({ sinks: 4, window: 32 }),
 *   policy: new SinkWindow({ sinks: 4, window: 32, slack: 8 }),
 * });
 * pipe.attend(0, randn([100, 4, 8], { seed: 1 }), randn([100, 2, 8], { seed: 2 }), randn([100, 2, 8], { seed: 3 }));
 * for (let t = 0; t < 200; t++) {
 *   const { out } = pipe.attend(0, randn([1, 4, 8], { seed: 10 + t }), randn([1, 2, 8], { seed: 20 + t }), randn([1, 2, 8], { seed: 30 + t }));
 *   assert.ok(out.data.every(Number.isFinite));
 * }
 * assert.ok(pipe.store.length(0, 0) <= 4 + 32 + 8);
 * ```
 */
export class AttentionPipeline {
  /** The KV store (one slice per layer and KV head, ragged). */
  readonly store: KvStore;
  /** Layers. */
  readonly layers: number;
  /** Query heads. */
  readonly heads: number;
  /** KV heads. */
  readonly kvHeads: number;
  /** Head dimension. */
  readonly headDim: number;
  /** The positional stage, if any. */
  readonly rope: Rope | undefined;
  /** Accounting since construction or {@linkcode AttentionPipeline.resetStats}. */
  readonly stats: PipelineStats;
  /** What the last {@linkcode AttentionPipeline.attend} call read. */
  lastStats: AttendStats;
  /**
   * The selection of the last query token of the last {@linkcode AttentionPipeline.attend}
   * call (per query head; cache indices as they were during that call), for
   * recall metrics and selection maps.
   */
  lastSelection: Selection | undefined;
  /**
   * With `record: true`: original positions each query head read for the last
   * query token of the last call, `[heads][tokensRead]` (ascending cache order).
   */
  lastRead: Int32Array[] | undefined;

  #plans: HeadPlan[][];
  #next: number[];
  #scale: number | undefined;
  #softCap: number | undefined;
  #block: number;
  #query: Float32Array;
  #blockState: AttentionState | undefined;
  #record: boolean;

  /**
   * Creates the stage from its options.
   *
   * @param options Shapes, stages, storage.
   * @throws {TypeError} On unsupported combinations (see the class doc).
   * @throws {RangeError} On bad sizes.
   */
  constructor(options: AttentionPipelineOptions) {
    const action = "create AttentionPipeline";
    this.layers = requirePositiveInt(action, "layers", options.layers);
    this.heads = requirePositiveInt(action, "heads", options.heads);
    this.kvHeads = requirePositiveInt(action, "kvHeads", options.kvHeads);
    this.headDim = requirePositiveInt(action, "headDim", options.headDim);
    if (this.heads % this.kvHeads !== 0) {
      throw new RangeError(
        `Cannot ${action}: heads (${this.heads}) must be a multiple of kvHeads, got kvHeads ${this.kvHeads}`,
      );
    }
    this.#block = requirePositiveInt(action, "prefillBlock", options.prefillBlock ?? 128);
    const rope = options.rope;
    if (rope !== undefined && rope.headDim !== this.headDim) {
      throw new TypeError(
        `Cannot ${action}: rope headDim (${rope.headDim}) does not match headDim (${this.headDim})`,
      );
    }
    this.rope = rope;
    const dynamic = rope?.scaling.type === "dynamic-ntk";
    const keyForm = options.keyForm ?? (dynamic ? "pre-rope" : "post-rope");
    if (keyForm !== "post-rope" && keyForm !== "pre-rope") {
      throw new TypeError(
        `Cannot ${action}: keyForm must be "post-rope" or "pre-rope", got ${
          describeValue(keyForm)
        }`,
      );
    }
    if (dynamic && keyForm === "post-rope") {
      throw new TypeError(
        `Cannot ${action}: dynamic NTK changes RoPE frequencies after keys are cached, so it needs keyForm "pre-rope", got "post-rope"`,
      );
    }
    if (options.router !== undefined && (options.selector ?? options.policy) !== undefined) {
      throw new TypeError(
        `Cannot ${action}: give either router or selector/policy, got both (router ${options.router.name})`,
      );
    }
    const fallback: HeadPlan = {
      selector: options.selector ?? new DenseSelector(),
      policy: options.policy ?? new KeepAll(),
    };
    this.#plans = [];
    for (let l = 0; l < this.layers; l++) {
      const row: HeadPlan[] = [];
      for (let h = 0; h < this.kvHeads; h++) {
        const plan = options.router ? options.router.route(l, h) : fallback;
        if (plan?.selector === undefined || plan.policy === undefined) {
          throw new TypeError(
            `Cannot ${action}: router ${options.router?.name} gave no selector and policy for layer ${l} KV head ${h}`,
          );
        }
        if (!historyCovers(plan.policy.keeps, plan.selector.needs)) {
          throw new TypeError(
            `Cannot ${action}: layer ${l} KV head ${h}: cache policy ${plan.policy.name} keeps ${
              describeNeed(plan.policy.keeps)
            }, but selector ${plan.selector.name} may read ${describeNeed(plan.selector.needs)}`,
          );
        }
        row.push(plan);
      }
      this.#plans.push(row);
    }
    this.store = new KvStore({
      layers: this.layers,
      kvHeads: this.kvHeads,
      headDim: this.headDim,
      keyForm,
      ...(options.dtype !== undefined ? { dtype: options.dtype } : {}),
      ...(options.pageSize !== undefined ? { pageSize: options.pageSize } : {}),
    });
    this.#scale = options.scale;
    this.#softCap = options.softCap;
    this.#next = new Array(this.layers).fill(0);
    this.#query = new Float32Array((this.heads / this.kvHeads) * this.headDim);
    this.stats = {
      queries: 0,
      tokensPerHead: new Float64Array(this.heads),
      rowsRead: 0,
      bytesRead: 0,
    };
    this.lastStats = createAttendStats(this.heads);
    this.lastSelection = undefined;
    this.lastRead = undefined;
    this.#record = options.record ?? false;
  }

  /** The selector and policy serving `(layer, kvHead)`. */
  plan(layer: number, kvHead: number): HeadPlan {
    const p = this.#plans[layer]?.[kvHead];
    if (p === undefined) {
      throw new RangeError(
        `Cannot read pipeline plan: (layer, kvHead) must be within (${this.layers}, ${this.kvHeads}), got (${layer}, ${kvHead})`,
      );
    }
    return p;
  }

  /** Tokens processed so far by `layer` (the next token's position). */
  position(layer: number): number {
    return this.#next[layer] ?? 0;
  }

  /**
   * Attends a chunk of `t` new tokens in `layer` (prefill: any `t`; decode:
   * `t = 1`): appends their keys and values (rotated by the positional stage
   * when the store is post-RoPE), computes each query's selection and one
   * exact softmax over it, then applies the cache policies.
   *
   * @param layer Layer index.
   * @param query Raw queries `[t, heads, headDim]`.
   * @param key Raw keys `[t, kvHeads, headDim]`.
   * @param value Values `[t, kvHeads, headDim]`.
   * @returns `{ out: [t, heads, headDim], lse: [t, heads] }`.
   * @throws {TypeError} / {RangeError} On shape mismatches or a bad layer.
   */
  attend(layer: number, query: Tensor, key: Tensor, value: Tensor): AttentionState {
    const action = "attend in AttentionPipeline";
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.layers) {
      throw new RangeError(
        `Cannot ${action}: layer must be an integer in [0, ${this.layers}), got ${
          describeValue(layer)
        }`,
      );
    }
    requireThd(action, "query", query);
    requireThd(action, "key", key);
    requireThd(action, "value", value);
    const t = query.shape[0]!;
    const H = this.heads, KV = this.kvHeads, d = this.headDim;
    if (query.shape[1] !== H || query.shape[2] !== d) {
      throw new TypeError(
        `Cannot ${action}: query shape must be [tokens, ${H}, ${d}], got ${
          describeValue(query.shape)
        }`,
      );
    }
    for (const [name, x] of [["key", key], ["value", value]] as const) {
      if (x.shape[0] !== t || x.shape[1] !== KV || x.shape[2] !== d) {
        throw new TypeError(
          `Cannot ${action}: ${name} shape must be [${t}, ${KV}, ${d}], got ${
            describeValue(x.shape)
          }`,
        );
      }
    }
    const p0 = this.#next[layer]!;
    const rope = this.rope?.forSequenceLength(p0 + t);
    const keys = rope !== undefined && this.store.keyForm === "post-rope"
      ? rope.apply(key, p0)
      : key;
    const lenBefore = new Int32Array(KV);
    const out = zeros("f32", [t, H, d], { layout: "thd" });
    const lse = zeros("f32", [t, H]);
    const stats = createAttendStats(H);
    const group = H / KV;
    const qs = query.strides;
    // Block by block: append the block's keys, attend its queries, apply the cache policies, so
    // the store never holds more than the policies keep plus one block.
    for (let b0 = 0; b0 < t; b0 += this.#block) {
      const bn = Math.min(this.#block, t - b0);
      for (let h = 0; h < KV; h++) lenBefore[h] = this.store.length(layer, h) - b0;
      this.store.append(
        layer,
        sliceAxis(keys, 0, b0, b0 + bn),
        sliceAxis(value, 0, b0, b0 + bn),
        p0 + b0,
      );
      const selections: Selection[] = [];
      const positions = new Float64Array(bn);
      for (let i = 0; i < bn; i++) {
        const ti = b0 + i;
        positions[i] = p0 + ti;
        const sel = new Array<HeadSelection>(H);
        for (let kh = 0; kh < KV; kh++) {
          // Raw query rows of the group, [group, d].
          for (let g = 0; g < group; g++) {
            const o = query.offset + ti * qs[0]! + (kh * group + g) * qs[1]!;
            for (let c = 0; c < d; c++) this.#query[g * d + c] = query.data[o + c]!;
          }
          const r = this.#plans[layer]![kh]!.selector.select({
            store: this.store,
            layer,
            kvHead: kh,
            group,
            length: lenBefore[kh]! + ti + 1,
            queryPosition: p0 + ti,
            query: this.#query,
            rope,
            callTokens: t,
            callStart: p0,
          });
          if (Array.isArray(r)) {
            if (r.length !== group) {
              throw new TypeError(
                `Cannot ${action}: selector ${
                  this.#plans[layer]![kh]!.selector.name
                } returned ${r.length} selections for a group of ${group} query heads`,
              );
            }
            for (let g = 0; g < group; g++) sel[kh * group + g] = r[g]!;
          } else {
            for (let g = 0; g < group; g++) sel[kh * group + g] = r as HeadSelection;
          }
        }
        selections.push(sel);
      }
      const state = this.#stateFor(bn);
      const qBlock: Tensor = {
        ...query,
        shape: [bn, H, d],
        offset: query.offset + b0 * qs[0]!,
      };
      sparseAttendInto(state, qBlock, this.store, selections, {
        layer,
        queryPositions: positions,
        ...(rope !== undefined ? { rope } : {}),
        ...(this.#scale !== undefined ? { scale: this.#scale } : {}),
        ...(this.#softCap !== undefined ? { softCap: this.#softCap } : {}),
        stats,
      });
      this.lastSelection = selections[bn - 1];
      out.data.set(state.out.data, b0 * H * d);
      lse.data.set(state.lse.data, b0 * H);
      if (b0 + bn < t) this.#applyPolicies(layer);
    }
    if (this.#record && this.lastSelection !== undefined) {
      this.lastRead = this.lastSelection.map((hs, h) => {
        const kh = Math.floor(h / group);
        const pos: number[] = [];
        for (let i = 0; i < hs.spans.length; i += 2) {
          for (let j = hs.spans[i]!; j < hs.spans[i + 1]!; j++) {
            pos.push(this.store.position(layer, kh, j));
          }
        }
        return Int32Array.from(pos);
      });
    }
    this.#applyPolicies(layer);
    this.#next[layer] = p0 + t;
    this.lastStats = stats;
    this.stats.queries += t;
    this.stats.rowsRead += stats.rowsRead;
    this.stats.bytesRead += stats.bytesRead;
    for (let h = 0; h < H; h++) this.stats.tokensPerHead[h]! += stats.tokensPerHead[h]!;
    return { out, lse };
  }

  /**
   * Writes `t` tokens' keys and values into `layer` without attending (keys
   * rotated as in {@linkcode AttentionPipeline.attend}), then applies the cache
   * policies. For caches built elsewhere and for synthetic benchmarks where the
   * prompt's own attention outputs are not needed.
   *
   * @param layer Layer index.
   * @param key Raw keys `[t, kvHeads, headDim]`.
   * @param value Values `[t, kvHeads, headDim]`.
   * @throws {TypeError} / {RangeError} On shape mismatches or a bad layer.
   */
  append(layer: number, key: Tensor, value: Tensor): void {
    const action = "append to AttentionPipeline";
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.layers) {
      throw new RangeError(
        `Cannot ${action}: layer must be an integer in [0, ${this.layers}), got ${
          describeValue(layer)
        }`,
      );
    }
    requireThd(action, "key", key);
    const t = key.shape[0]!;
    const p0 = this.#next[layer]!;
    const rope = this.rope?.forSequenceLength(p0 + Math.max(t, 1));
    const keys = rope !== undefined && this.store.keyForm === "post-rope"
      ? rope.apply(key, p0)
      : key;
    for (let b0 = 0; b0 < t; b0 += this.#block) {
      const b1 = Math.min(t, b0 + this.#block);
      this.store.append(layer, sliceAxis(keys, 0, b0, b1), sliceAxis(value, 0, b0, b1), p0 + b0);
      this.#applyPolicies(layer);
    }
    this.#next[layer] = p0 + t;
  }

  /** KV bytes held by the store (allocated pages). */
  bytesHeld(): number {
    return this.store.bytesHeld();
  }

  /** Zeroes {@linkcode AttentionPipeline.stats}. */
  resetStats(): void {
    this.stats.queries = 0;
    this.stats.rowsRead = 0;
    this.stats.bytesRead = 0;
    this.stats.tokensPerHead.fill(0);
  }

  /**
   * Empties the KV store and position counters and resets every stateful
   * selector (those with a `reset()`, e.g. LongHeads' chunk summaries): a new
   * sequence.
   */
  reset(): void {
    this.store.clear();
    this.#next.fill(0);
    this.resetStats();
    this.lastSelection = undefined;
    this.lastRead = undefined;
    const seen = new Set<Selector>();
    for (const row of this.#plans) {
      for (const { selector } of row) {
        if (seen.has(selector)) continue;
        seen.add(selector);
        selector.reset?.();
      }
    }
  }

  #applyPolicies(layer: number): void {
    for (let h = 0; h < this.kvHeads; h++) {
      this.#plans[layer]![h]!.policy.afterAttend(this.store, layer, h);
    }
  }

  #stateFor(bn: number): AttentionState {
    const s = this.#blockState;
    if (s !== undefined && s.out.shape[0] === bn) return s;
    const fresh: AttentionState = {
      out: zeros("f32", [bn, this.heads, this.headDim], { layout: "thd" }),
      lse: zeros("f32", [bn, this.heads]),
    };
    this.#blockState = fresh;
    return fresh;
  }
}
