// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * LM-Infinite's Λ-shaped attention with its distance ceiling.
 *
 * @module
 */

import { requireNonNegativeInt, requirePositiveInt } from "../tensor/validate.ts";
import type { HistoryNeed } from "../kv/types.ts";
import type { HeadSelection } from "./selection.ts";
import type { SelectContext, Selector } from "./stages.ts";

/** Options of {@linkcode LmInfinite}. */
export interface LmInfiniteOptions {
  /** Leading tokens always read (the global branch). @default {10} */
  globalTokens?: number;
  /** Nearest tokens read, the query's own key included; the paper sets it to the pretraining length. */
  localWindow: number;
  /** Largest relative distance any key is seen at. @default {localWindow} */
  maxDistance?: number;
}

/**
 * Λ-shaped selector with a distance ceiling (LM-Infinite): each query reads
 * the first `globalTokens` and the nearest `localWindow` tokens at their
 * original positions, except that a key farther than `maxDistance` is seen at
 * distance exactly `maxDistance` (the official code's "stationary" branch
 * rotates the query by the fixed angle of `limit_distance`). One softmax over
 * both branches.
 *
 * Unlike StreamingLLM, positions are not re-indexed: window keys keep their
 * true distances. While the cache holds at most `localWindow` tokens, nothing
 * is masked or capped: dense attention.
 *
 * @see https://arxiv.org/abs/2308.16137
 *
 * @example
 * ```ts
 * import { LmInfinite } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * const s = new LmInfinite({ globalTokens: 2, localWindow: 8 });
 * const ctx = {
 *   length: 50, queryPosition: 49, layer: 0, kvHead: 0,
 *   store: { position: (_l: number, _h: number, i: number) => i },
 * } as unknown as Parameters<LmInfinite["select"]>[0];
 * const sel = s.select(ctx);
 * assert.deepEqual([...sel.spans], [0, 1, 1, 2, 42, 50]);
 * assert.deepEqual([...sel.seenAt!], [41, 41, 42]); // both sinks at distance 8
 * ```
 */
export class LmInfinite implements Selector {
  /** `"lm-infinite"`. */
  readonly name: string = "lm-infinite";
  /** Positions are capped per key. */
  readonly positions = "remapped" as const;
  /** Global tokens + local window. */
  readonly needs: HistoryNeed;
  /** Global-branch tokens. */
  readonly globalTokens: number;
  /** Local-branch tokens. */
  readonly localWindow: number;
  /** Distance ceiling. */
  readonly maxDistance: number;

  /**
   * Creates the stage from its options.
   *
   * @param options Branch sizes and distance ceiling.
   * @throws {RangeError} On bad sizes.
   */
  constructor(options: LmInfiniteOptions) {
    const action = "create LmInfinite";
    this.globalTokens = requireNonNegativeInt(action, "globalTokens", options.globalTokens ?? 10);
    this.localWindow = requirePositiveInt(action, "localWindow", options.localWindow);
    this.maxDistance = requirePositiveInt(
      action,
      "maxDistance",
      options.maxDistance ?? options.localWindow,
    );
    this.needs = { kind: "sink-window", sinks: this.globalTokens, window: this.localWindow };
  }

  /**
   * Chooses the tokens one query reads for one KV head.
   *
   * @param ctx The selection context.
   * @returns Global tokens (capped distances) ∪ local window (true distances).
   */
  select(ctx: SelectContext): HeadSelection {
    const n = ctx.length;
    const G = Math.min(this.globalTokens, n), L = this.localWindow;
    const q = ctx.queryPosition;
    if (n <= L) {
      // Every key is within the window; still cap any (unusual) distance beyond the ceiling.
      if (q - ctx.store.position(ctx.layer, ctx.kvHead, 0) <= this.maxDistance) {
        return { spans: n > 0 ? Int32Array.of(0, n) : new Int32Array(0) };
      }
    }
    const winStart = Math.max(G, n - L);
    const spans: number[] = [];
    const seen: number[] = [];
    for (let i = 0; i < G && i < winStart; i++) {
      const p = ctx.store.position(ctx.layer, ctx.kvHead, i);
      spans.push(i, i + 1);
      seen.push(Math.max(p, q - this.maxDistance));
    }
    // The window keeps true distances except where they exceed the ceiling.
    for (let i = winStart; i < n;) {
      const p = ctx.store.position(ctx.layer, ctx.kvHead, i);
      if (q - p > this.maxDistance) {
        spans.push(i, i + 1);
        seen.push(q - this.maxDistance);
        i++;
        continue;
      }
      spans.push(i, n);
      seen.push(p);
      break;
    }
    return { spans: Int32Array.from(spans), seenAt: Float64Array.from(seen), queryAt: q };
  }
}
