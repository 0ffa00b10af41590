// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Sink + recent-window eviction (StreamingLLM, LM-Infinite, DuoAttention's
 * streaming heads): keep the first `sinks` tokens and the last `window`.
 *
 * @module
 */

import { requireNonNegativeInt, requirePositiveInt } from "../tensor/validate.ts";
import type { CachePolicy, HistoryNeed, PolicyStore } from "./types.ts";

/** Options of {@linkcode SinkWindow}. */
export interface SinkWindowOptions {
  /** First tokens kept forever. @default {4} */
  sinks?: number;
  /** Most recent tokens kept. */
  window: number;
  /**
   * Tokens allowed beyond `sinks + window` before evicting, so the store
   * compacts once every `slack` tokens instead of moving `window` rows every
   * step. Memory held stays bounded by `sinks + window + slack` plus one
   * prefill chunk. @default {64}
   */
  slack?: number;
}

/**
 * Keeps `sinks` + `window` tokens per head; evicts the middle.
 *
 * | cost | |
 * | --- | --- |
 * | memory | at most `sinks + window + slack` tokens (plus the chunk being prefilled) |
 * | eviction | moves `window` rows once every `slack` steps: `window / slack` rows per step amortised |
 *
 * @see https://arxiv.org/abs/2309.17453 (StreamingLLM)
 *
 * @example The store stays bounded
 * ```ts
 * import { KvStore, SinkWindow } from "@longctx/longctx/kv";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const store = new KvStore({ layers: 1, kvHeads: 1, headDim: 4, pageSize: 8 });
 * const policy = new SinkWindow({ sinks: 2, window: 8, slack: 4 });
 * for (let t = 0; t < 100; t++) {
 *   store.append(0, randn([1, 1, 4], { seed: t }), randn([1, 1, 4], { seed: -t }));
 *   policy.afterAttend(store, 0, 0);
 * }
 * assert.ok(store.length(0, 0) <= 2 + 8 + 4);
 * ```
 */
export class SinkWindow implements CachePolicy {
  /** `"sink-window"`. */
  readonly name: string = "sink-window";
  /** Sinks and window kept. */
  readonly keeps: HistoryNeed;
  /** Sink tokens. */
  readonly sinks: number;
  /** Window tokens. */
  readonly window: number;
  /** Slack tokens before compaction. */
  readonly slack: number;

  /**
   * Creates the stage from its options.
   *
   * @param options Sinks, window, slack.
   * @throws {RangeError} On non-integer or negative sizes, or a zero window.
   */
  constructor(options: SinkWindowOptions) {
    const action = "create SinkWindow";
    this.sinks = requireNonNegativeInt(action, "sinks", options.sinks ?? 4);
    this.window = requirePositiveInt(action, "window", options.window);
    this.slack = requireNonNegativeInt(action, "slack", options.slack ?? 64);
    this.keeps = { kind: "sink-window", sinks: this.sinks, window: this.window };
  }

  /**
   * Evicts the middle of `(layer, head)` once it exceeds `sinks + window + slack`.
   *
   * @param store The store.
   * @param layer Layer index.
   * @param head KV head index.
   */
  afterAttend(store: PolicyStore, layer: number, head: number): void {
    const n = store.length(layer, head);
    if (n > this.sinks + this.window + this.slack) {
      store.evict(layer, head, this.sinks, n - this.window);
    }
  }
}
