// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * DuoAttention (Xiao et al., 2024): a static split of KV heads into
 * **retrieval heads**, which keep the full KV cache and attend to everything
 * (or run any long-context selector), and **streaming heads**, which keep only
 * attention sinks and a recent window. The split comes from gates α learned
 * offline per `(layer, KV head)`; the authors publish them for several models
 * ({@linkcode parseDuoPattern} reads the files, {@linkcode binarizeDuoGates}
 * turns them into a {@linkcode DuoHeadMask}), and {@linkcode DuoAttention} is
 * the router an `AttentionPipeline` runs.
 *
 * Faithful to the authors' deployment code (mit-han-lab/duo-attention):
 *
 * - **Sizes**: 64 sinks and 256 recent tokens by default, as in their
 *   evaluation scripts; the published `config.json` says `sink_size` 128,
 *   which is the training value (pass `sinks: config.sinkSize` to use it).
 * - **Positions**: keys are cached post-RoPE and streaming heads see their
 *   sinks and window at the **original** positions; nothing is re-indexed
 *   (unlike StreamingLLM), so the streaming selector is
 *   `StreamingLlm({ reindex: false })`.
 * - **Decode**: a streaming head attends to its `S` sinks, its last `R` cached
 *   tokens and the current token (`S + R + 1` keys, one more than the training
 *   Λ mask `i − j < R`), so the window is `R + 1` including self; retrieval
 *   heads attend to the whole cache.
 * - **Head choice**: target-ratio mode over all layers × KV heads, ties broken
 *   deterministically instead of by noise (see {@linkcode binarizeDuoGates}).
 * - **GQA**: one gate per KV head; the whole query group follows it.
 *
 * Where this library differs, and why:
 *
 * - **Prefill** (`prefill` option). The authors prefill in chunks: the first
 *   chunk (empty cache) is dense for every head, and a later chunk's streaming
 *   heads see the cached `S + R` tokens plus the whole chunk causally, a
 *   superset of the Λ mask that depends on the chunk size. The default here,
 *   `"lambda"`, gives every query the same rule as decode (sinks + last
 *   `R + 1` tokens), so outputs do not depend on how a prompt is chunked and
 *   the streaming KV stays bounded during prefill (the spec's
 *   `exactLambdaPrefill`). `"chunked"` reproduces the authors' chunked
 *   prefill, treating each `attend` call as one chunk.
 * - **Compression**: the authors compress the streaming cache to `S + R` after
 *   every step; here `SinkWindow` lets it grow by `slack` tokens (default 64)
 *   before compacting, so a decode step does not move `R` rows. This changes
 *   no output (selection is independent of what else is held), only memory:
 *   at most `S + R + 1 + slack` tokens per streaming head.
 * - **Head reordering** (retrieval heads first, two dense calls) is a GPU
 *   layout optimisation; the pipeline routes per head instead.
 * - Gate training (distillation on synthetic passkeys) is offline and not
 *   here; load published gates or bring your own.
 *
 * The parsers take text, never paths, so this module stays browser
 * compatible; read the published files with whatever the runtime offers:
 *
 * ```ts ignore
 * import { AttentionPipeline, binarizeDuoGates, DuoAttention, parseDuoPattern } from "@longctx/longctx/attention";
 * const dir = "attn_patterns/Llama-3-8B-Instruct-Gradient-1048k/";
 * const pattern = parseDuoPattern(await Deno.readTextFile(dir + "full_attention_heads.tsv"), {
 *   config: await Deno.readTextFile(dir + "config.json"), // or: await (await fetch(url)).text()
 *   layers: 32,
 *   kvHeads: 8,
 * });
 * const router = new DuoAttention({ retrieval: binarizeDuoGates(pattern, { sparsity: 0.5 }) });
 * const pipe = new AttentionPipeline({ layers: 32, heads: 32, kvHeads: 8, headDim: 128, router });
 * ```
 *
 * @see https://arxiv.org/abs/2410.10819
 *
 * @module
 */

import { describeValue, requireNonNegativeInt, requireOneOf } from "../tensor/validate.ts";
import type { HistoryNeed } from "../kv/types.ts";
import { KeepAll } from "../kv/keep_all.ts";
import { SinkWindow } from "../kv/sink_window.ts";
import type { HeadSelection } from "./selection.ts";
import {
  DenseSelector,
  type HeadPlan,
  type Router,
  type SelectContext,
  type Selector,
} from "./stages.ts";
import { StreamingLlm } from "./streaming_llm.ts";
import type { DuoHeadMask } from "./_duo_pattern.ts";

export {
  binarizeDuoGates,
  type DuoBinarization,
  type DuoGates,
  type DuoHeadMask,
  type DuoPattern,
  type DuoTrainingConfig,
  parseDuoConfig,
  parseDuoPattern,
  type ParseDuoPatternOptions,
} from "./_duo_pattern.ts";

/** Sink tokens of DuoAttention's streaming heads in the authors' evaluations. */
export const DEFAULT_DUO_SINKS = 64;
/** Recent tokens of DuoAttention's streaming heads in the authors' evaluations. */
export const DEFAULT_DUO_RECENT = 256;

/** Options of {@linkcode DuoAttention}. */
export interface DuoAttentionOptions {
  /**
   * Which `(layer, KV head)` pairs are retrieval heads: a {@linkcode DuoHeadMask}
   * (from {@linkcode binarizeDuoGates}) or `rows[layer][kvHead]` booleans
   * (`true` = retrieval).
   */
  retrieval: DuoHeadMask | ReadonlyArray<ReadonlyArray<boolean>>;
  /** Sink tokens `S` of streaming heads. @default {64} */
  sinks?: number;
  /** Recent tokens `R` of streaming heads (cached, besides the current token). @default {256} */
  recent?: number;
  /**
   * Selector of retrieval heads: one selector for all (it may keep per-head
   * state, as `LongHeads` does) or a function of `(layer, kvHead)`.
   * @default {new DenseSelector()}
   */
  retrievalSelector?: Selector | ((layer: number, kvHead: number) => Selector);
  /** Tokens a streaming head may hold beyond `S + R + 1` before compacting (see `SinkWindow`). @default {64} */
  slack?: number;
  /**
   * Streaming-head rule in multi-token calls: `"lambda"` (every query sees
   * sinks + the last `R + 1` tokens, as in decode) or `"chunked"` (the
   * authors' chunked prefill: each `attend` call is a chunk; a call on an
   * empty cache is dense, a later one sees the cached `S + R` tokens plus the
   * call's tokens up to the query). `"chunked"` needs the whole call in the
   * store while it runs: give the pipeline a `prefillBlock` at least as large
   * as the largest call, else selection throws a `RangeError` once the cache
   * policy has evicted part of a call.
   * @default {"lambda"}
   */
  prefill?: "lambda" | "chunked";
}

/**
 * The DuoAttention router: retrieval heads get the full KV cache (`KeepAll`)
 * and the retrieval selector (dense by default, e.g. `LongHeads` by option);
 * streaming heads get sinks + recent window at original positions
 * (`StreamingLlm` with `reindex: false`, window `recent + 1` including the
 * query) and the `SinkWindow` policy, so their KV stays bounded. See the
 * module doc for what follows the authors' code and what differs.
 *
 * Oracles (tested): with every head retrieval (`sparsity: 0` or
 * `threshold: 0`) the pipeline is dense attention; with every head streaming,
 * a sequence of at most `sinks + recent + 1` tokens is dense attention.
 *
 * | per layer, `Hr` retrieval / `Hs` streaming KV heads, `T` tokens | |
 * | --- | --- |
 * | KV memory | `Hr·T + Hs·(S + R)` tokens (plus at most `1 + slack` per streaming head) |
 * | decode step | O(Hr·T·d + Hs·(S + R)·d) with the dense retrieval selector |
 * | prefill (`"lambda"`) | retrieval O(Hr·T²·d), streaming O(Hs·T·(S + R)·d) |
 *
 * The router checks that the pipeline's shape fits the mask when routing
 * (a `RangeError` for a layer or KV head beyond it); a mask with more layers
 * or KV heads than the pipeline is not detected.
 *
 * @see https://arxiv.org/abs/2410.10819
 *
 * @example Two layers × two KV heads, one streaming head per layer: its KV stays bounded
 * ```ts
 * import { AttentionPipeline, DuoAttention } from "@longctx/longctx/attention";
 * import { Rope } from "@longctx/longctx/positional";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const duo = new DuoAttention({ retrieval: [[true, false], [false, true]], sinks: 4, recent: 16, slack: 4 });
 * const pipe = new AttentionPipeline({ layers: 2, heads: 4, kvHeads: 2, headDim: 8, rope: new Rope({ headDim: 8 }), router: duo });
 * for (let t = 0; t < 100; t++) {
 *   for (let layer = 0; layer < 2; layer++) {
 *     pipe.attend(layer, randn([1, 4, 8], { seed: t }), randn([1, 2, 8], { seed: 1000 + t }), randn([1, 2, 8], { seed: 2000 + t }));
 *   }
 * }
 * assert.equal(pipe.store.length(0, 0), 100);             // retrieval: everything
 * assert.ok(pipe.store.length(0, 1) <= 4 + 16 + 1 + 4);    // streaming: bounded
 * assert.equal(duo.kvTokens(100), 2 * 100 + 2 * (4 + 16));
 * ```
 */
export class DuoAttention implements Router {
  /** `"duo-attention"`. */
  readonly name: string = "duo-attention";
  /** Layers of the mask. */
  readonly layers: number;
  /** KV heads per layer of the mask. */
  readonly kvHeads: number;
  /** Sink tokens `S` of streaming heads. */
  readonly sinks: number;
  /** Recent tokens `R` of streaming heads. */
  readonly recent: number;
  /** Compaction slack of streaming heads. */
  readonly slack: number;
  /** Streaming-head rule in multi-token calls. */
  readonly prefill: "lambda" | "chunked";
  /** Number of retrieval heads over all layers. */
  readonly retrievalHeads: number;
  /** Number of streaming heads over all layers. */
  readonly streamingHeads: number;
  /** The plan every streaming head shares. */
  readonly streamingPlan: HeadPlan;

  #mask: Uint8Array;
  #retrieval: (layer: number, kvHead: number) => HeadPlan;

  /**
   * Creates the router from its options.
   *
   * @param options Head mask, sizes, retrieval selector, prefill rule.
   * @throws {TypeError} On a ragged or empty mask, a bad `prefill`, or a retrieval selector that is not a selector.
   * @throws {RangeError} On sizes that are not non-negative integers.
   */
  constructor(options: DuoAttentionOptions) {
    const action = "create DuoAttention";
    const m = toMask(action, options.retrieval);
    this.layers = m.layers;
    this.kvHeads = m.kvHeads;
    this.#mask = m.retrieval;
    let kept = 0;
    for (const x of this.#mask) kept += x;
    this.retrievalHeads = kept;
    this.streamingHeads = this.#mask.length - kept;
    this.sinks = requireNonNegativeInt(action, "sinks", options.sinks ?? DEFAULT_DUO_SINKS);
    this.recent = requireNonNegativeInt(action, "recent", options.recent ?? DEFAULT_DUO_RECENT);
    this.slack = requireNonNegativeInt(action, "slack", options.slack ?? 64);
    this.prefill = requireOneOf(action, "prefill", options.prefill ?? "lambda", [
      "lambda",
      "chunked",
    ]);
    const window = this.recent + 1;
    const selector: Selector = this.prefill === "lambda"
      ? new StreamingLlm({ sinks: this.sinks, window, reindex: false })
      : new DuoChunkedStreaming(this.sinks, this.recent);
    this.streamingPlan = {
      selector,
      policy: new SinkWindow({ sinks: this.sinks, window, slack: this.slack }),
    };
    const rs = options.retrievalSelector ?? new DenseSelector();
    const keepAll = new KeepAll();
    if (typeof rs === "function") {
      this.#retrieval = (l, h) => {
        const s = rs(l, h);
        if (s === null || typeof s !== "object" || typeof s.select !== "function") {
          throw new TypeError(
            `Cannot route DuoAttention: retrievalSelector(${l}, ${h}) must return a selector, got ${
              describeValue(s)
            }`,
          );
        }
        return { selector: s, policy: keepAll };
      };
    } else if (rs !== null && typeof rs === "object" && typeof rs.select === "function") {
      const plan: HeadPlan = { selector: rs, policy: keepAll };
      this.#retrieval = () => plan;
    } else {
      throw new TypeError(
        `Cannot ${action}: retrievalSelector must be a selector or a function returning one, got ${
          describeValue(rs)
        }`,
      );
    }
  }

  /**
   * Whether `(layer, kvHead)` is a retrieval head.
   *
   * @param layer Layer index.
   * @param kvHead KV head index.
   * @returns `true` for a retrieval head, `false` for a streaming head.
   * @throws {RangeError} Outside the mask.
   */
  isRetrieval(layer: number, kvHead: number): boolean {
    return this.#mask[this.#index("read DuoAttention head", layer, kvHead)] === 1;
  }

  /**
   * The plan of one head: retrieval selector + `KeepAll`, or the streaming
   * selector + `SinkWindow`.
   *
   * @param layer Layer index.
   * @param kvHead KV head index.
   * @returns The head's selector and cache policy.
   * @throws {RangeError} Outside the mask (the pipeline has more layers or KV heads than the mask).
   */
  route(layer: number, kvHead: number): HeadPlan {
    const i = this.#index("route DuoAttention", layer, kvHead);
    return this.#mask[i] === 1 ? this.#retrieval(layer, kvHead) : this.streamingPlan;
  }

  /**
   * Analytic KV tokens held over all layers after `tokens` tokens, as the
   * authors' deployment keeps them: `Hr·T + Hs·min(T, S + R)`. Dense
   * attention holds `layers · kvHeads · T`; the ratio approaches
   * `Hr / (Hr + Hs)` for long contexts.
   *
   * @param tokens Sequence length `T`, a non-negative integer.
   * @returns Cached tokens summed over every `(layer, KV head)`.
   * @throws {RangeError} If `tokens` is not a non-negative integer.
   */
  kvTokens(tokens: number): number {
    const T = requireNonNegativeInt("count DuoAttention KV tokens", "tokens", tokens);
    return this.retrievalHeads * T + this.streamingHeads * Math.min(T, this.sinks + this.recent);
  }

  #index(action: string, layer: number, kvHead: number): number {
    if (
      !Number.isInteger(layer) || !Number.isInteger(kvHead) || layer < 0 || kvHead < 0 ||
      layer >= this.layers || kvHead >= this.kvHeads
    ) {
      throw new RangeError(
        `Cannot ${action}: (layer, kvHead) must be within the head mask (${this.layers} layers × ${this.kvHeads} KV heads), got (${
          describeValue(layer)
        }, ${describeValue(kvHead)})`,
      );
    }
    return layer * this.kvHeads + kvHead;
  }
}

function toMask(
  action: string,
  r: DuoHeadMask | ReadonlyArray<ReadonlyArray<boolean>>,
): { layers: number; kvHeads: number; retrieval: Uint8Array } {
  if (Array.isArray(r)) {
    const rows = r as ReadonlyArray<ReadonlyArray<boolean>>;
    const cols = Array.isArray(rows[0]) ? rows[0].length : 0;
    if (rows.length === 0 || cols === 0) {
      throw new TypeError(
        `Cannot ${action}: retrieval must have at least one layer and one KV head, got ${
          describeValue(rows)
        }`,
      );
    }
    const out = new Uint8Array(rows.length * cols);
    rows.forEach((row, l) => {
      if (!Array.isArray(row) || row.length !== cols) {
        throw new TypeError(
          `Cannot ${action}: retrieval rows must all have ${cols} KV heads (as row 0), got row ${l} ${
            describeValue(row)
          }`,
        );
      }
      row.forEach((x, h) => {
        if (typeof x !== "boolean") {
          throw new TypeError(
            `Cannot ${action}: retrieval[${l}][${h}] must be a boolean, got ${describeValue(x)}`,
          );
        }
        out[l * cols + h] = x ? 1 : 0;
      });
    });
    return { layers: rows.length, kvHeads: cols, retrieval: out };
  }
  const mask = r as DuoHeadMask;
  if (
    mask === null || typeof mask !== "object" || !(mask.retrieval instanceof Uint8Array) ||
    !Number.isSafeInteger(mask.layers) || !Number.isSafeInteger(mask.kvHeads) ||
    mask.layers < 1 || mask.kvHeads < 1 || mask.retrieval.length !== mask.layers * mask.kvHeads
  ) {
    throw new TypeError(
      `Cannot ${action}: retrieval must be a DuoHeadMask (layers × kvHeads Uint8Array) or boolean rows, got ${
        describeValue(r)
      }`,
    );
  }
  return { layers: mask.layers, kvHeads: mask.kvHeads, retrieval: mask.retrieval.slice() };
}

/**
 * Streaming heads under the authors' chunked prefill. Each `attend` call is a
 * chunk; a query at call offset `i` whose call started at cache index `c`
 * reads: everything when `c ≤ S + R` (the first chunk is dense), else the
 * first `S` and the last `R` tokens before `c`, plus the call's tokens
 * `c … c + i`. In decode (`c` = the query's own index) this is the `"lambda"`
 * rule. The call's start comes from `SelectContext.callStart`, checked
 * against the store's stored positions.
 */
class DuoChunkedStreaming implements Selector {
  readonly name: string = "duo-streaming-chunked";
  readonly positions = "original" as const;
  readonly needs: HistoryNeed;
  readonly #sinks: number;
  readonly #recent: number;

  constructor(sinks: number, recent: number) {
    this.#sinks = sinks;
    this.#recent = recent;
    this.needs = { kind: "sink-window", sinks, window: recent + 1 };
  }

  select(ctx: SelectContext): HeadSelection {
    const n = ctx.length;
    const c = n - 1 - (ctx.queryPosition - ctx.callStart); // cache index of the call's first token
    if (c < 0 || ctx.store.position(ctx.layer, ctx.kvHead, c) !== ctx.callStart) {
      throw new RangeError(
        `Cannot select DuoAttention chunked-prefill tokens: the whole call (${ctx.callTokens} tokens from position ${ctx.callStart}) must stay in the store while it runs, got part of it evicted at layer ${ctx.layer} KV head ${ctx.kvHead}; give AttentionPipeline a prefillBlock of at least ${ctx.callTokens}`,
      );
    }
    const S = this.#sinks, R = this.#recent;
    if (c <= S + R) return { spans: Int32Array.of(0, n) };
    return { spans: S > 0 ? Int32Array.of(0, S, c - R, n) : Int32Array.of(c - R, n) };
  }
}
