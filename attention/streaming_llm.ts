// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * StreamingLLM's selector: attention sinks plus a recent window, with
 * positions re-indexed within the cache.
 *
 * @module
 */

import { requireNonNegativeInt, requirePositiveInt } from "../tensor/validate.ts";
import type { HistoryNeed } from "../kv/types.ts";
import type { HeadSelection } from "./selection.ts";
import type { SelectContext, Selector } from "./stages.ts";

/** Options of {@linkcode StreamingLlm}. */
export interface StreamingLlmOptions {
  /** First tokens always read (attention sinks). @default {4} */
  sinks?: number;
  /** Most recent tokens read, including the query's own key. */
  window: number;
  /**
   * Re-index positions within the cache as the paper does (sinks at
   * `0..S−1`, window right after, the query last). `false` keeps original
   * positions (DuoAttention's streaming heads). @default {true}
   */
  reindex?: boolean;
}

/**
 * Sink + recent-window selector (StreamingLLM). Reads the first `sinks`
 * cached tokens and the last `window` (the query's own key included). With
 * `reindex` (default), keys are seen at their slot in the cache, `0 … S+W−1`,
 * and the query at the last slot, as the official implementation rotates keys
 * by `arange(kv_len)`; without it, at original positions.
 *
 * Pair it with `SinkWindow` (in `kv/`) so the store stays bounded. While the
 * cache holds at most `sinks + window` tokens it reads everything at original
 * positions, which is dense attention.
 *
 * @see https://arxiv.org/abs/2309.17453
 *
 * @example Sinks and window over a 100-token cache
 * ```ts
 * import { StreamingLlm } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * const s = new StreamingLlm({ sinks: 4, window: 10 });
 * const ctx = { length: 100, queryPosition: 99 } as Parameters<StreamingLlm["select"]>[0];
 * const sel = s.select(ctx);
 * assert.deepEqual([...sel.spans], [0, 4, 90, 100]);
 * assert.deepEqual([...sel.seenAt!], [0, 4]);
 * assert.equal(sel.queryAt, 13);
 * ```
 */
export class StreamingLlm implements Selector {
  /** `"streaming-llm"`. */
  readonly name: string = "streaming-llm";
  /** Re-maps positions when `reindex`. */
  readonly positions: "original" | "remapped";
  /** Sinks + window. */
  readonly needs: HistoryNeed;
  /** Sink tokens. */
  readonly sinks: number;
  /** Window tokens. */
  readonly window: number;
  /** Whether positions are re-indexed within the cache. */
  readonly reindex: boolean;

  /**
   * Creates the stage from its options.
   *
   * @param options Sinks, window, re-indexing.
   * @throws {RangeError} On bad sizes.
   */
  constructor(options: StreamingLlmOptions) {
    const action = "create StreamingLlm";
    this.sinks = requireNonNegativeInt(action, "sinks", options.sinks ?? 4);
    this.window = requirePositiveInt(action, "window", options.window);
    this.reindex = options.reindex ?? true;
    this.positions = this.reindex ? "remapped" : "original";
    this.needs = { kind: "sink-window", sinks: this.sinks, window: this.window };
  }

  /**
   * Chooses the tokens one query reads for one KV head.
   *
   * @param ctx The selection context (uses `length`; `store` to read original
   *   positions when nothing was evicted yet).
   * @returns Sinks ∪ window.
   */
  select(ctx: SelectContext): HeadSelection {
    const n = ctx.length;
    const S = this.sinks, W = this.window;
    if (n <= S + W) {
      // Everything fits. Slot index = original position unless the cache was compacted;
      // read at original positions (identical to re-indexing when nothing was evicted).
      return { spans: n > 0 ? Int32Array.of(0, n) : new Int32Array(0) };
    }
    const spans = S > 0 ? Int32Array.of(0, S, n - W, n) : Int32Array.of(n - W, n);
    if (!this.reindex) return { spans };
    const seenAt = S > 0 ? Float64Array.of(0, S) : Float64Array.of(0);
    return { spans, seenAt, queryAt: S + W - 1 };
  }
}
