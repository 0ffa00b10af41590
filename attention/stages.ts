// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * The stage kinds a pipeline is built from (DESIGN §1): **selectors** (which
 * cached tokens a head reads, at which positions), **cache policies** (what a
 * head's KV store keeps), and **routers** (which selector and policy serve
 * which head). The positional stage is a `Rope` (see `positional/`).
 *
 * A new technique is one class implementing one of these small interfaces.
 *
 * @module
 */

import type { HeadSelection } from "./selection.ts";
import { selectAll } from "./selection.ts";
import type { KvSource, RotaryEncoding } from "./sparse_attend.ts";
import type { CachePolicy, HistoryNeed } from "../kv/types.ts";

/** Everything a selector may look at to choose tokens for one query and one KV head. */
export interface SelectContext {
  /** The KV store (read-only use). */
  readonly store: KvSource & { position(layer: number, head: number, index: number): number };
  /** Layer index. */
  readonly layer: number;
  /** KV head index. */
  readonly kvHead: number;
  /** Query heads per KV head. */
  readonly group: number;
  /** Cache tokens visible to this query: indices `[0, length)`; its own key is `length − 1`. */
  readonly length: number;
  /** Original position of the query token. */
  readonly queryPosition: number;
  /** Raw (pre-RoPE) query rows of the group, `[group, headDim]` (valid during the call only). */
  readonly query: Float32Array;
  /** The pipeline's positional stage, if any (selectors that build summaries rotate with it). */
  readonly rope: RotaryEncoding | undefined;
  /** Query tokens in the current pipeline call (1 in decode, more in prefill). */
  readonly callTokens: number;
  /** Original position of the current call's first token (`queryPosition` in decode). */
  readonly callStart: number;
}

/**
 * A selector: which cached tokens each head reads for one query.
 *
 * Return one {@linkcode HeadSelection} (shared by the whole GQA group: each key
 * is read once for the group) or an array of `group` selections (one per query
 * head).
 */
export interface Selector {
  /** Short name for tables and error messages. */
  readonly name: string;
  /** `"remapped"` if selections set `seenAt` (re-numbered positions), else `"original"`. */
  readonly positions: "original" | "remapped";
  /** The history it may read. */
  readonly needs: HistoryNeed;
  /** Chooses the tokens for one query token and one KV head. */
  select(ctx: SelectContext): HeadSelection | readonly HeadSelection[];
  /** Forgets per-sequence state (called by `AttentionPipeline.reset`); stateless selectors omit it. */
  reset?(): void;
}

/** What serves one `(layer, kvHead)`. */
export interface HeadPlan {
  /** The selector the head's queries use. */
  readonly selector: Selector;
  /** The head's cache policy. */
  readonly policy: CachePolicy;
}

/** A router: assigns a selector and a cache policy to every `(layer, kvHead)`. */
export interface Router {
  /** Short name. */
  readonly name: string;
  /** The plan of one head. */
  route(layer: number, kvHead: number): HeadPlan;
}

/**
 * Dense attention as a selector: every visible token at its original position.
 *
 * @example
 * ```ts
 * import { DenseSelector } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * assert.equal(new DenseSelector().needs.kind, "all");
 * ```
 */
export class DenseSelector implements Selector {
  /** `"dense"`. */
  readonly name = "dense";
  /** Original positions. */
  readonly positions = "original" as const;
  /** The whole history. */
  readonly needs: HistoryNeed = { kind: "all" };
  /**
   * Chooses the tokens one query reads for one KV head.
   *
   * @param ctx The selection context.
   * @returns All visible tokens.
   */
  select(ctx: SelectContext): HeadSelection {
    return selectAll(ctx.length);
  }
}
