// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * The cache-policy interface: what a head's KV store keeps. Selectors (in
 * `attention/`) declare what they read with the same {@linkcode HistoryNeed},
 * so a pipeline can reject, at construction, a policy that evicts what a
 * selector needs.
 *
 * @module
 */

/**
 * What part of a head's history a stage may read (selectors) or keeps
 * (cache policies). A pipeline rejects at construction any head whose
 * selector needs more than its policy keeps.
 */
export type HistoryNeed =
  | { readonly kind: "all" }
  | { readonly kind: "sink-window"; readonly sinks: number; readonly window: number };

/** A cache policy: what one head's KV store keeps after each attended chunk. */
export interface CachePolicy {
  /** Short name for tables and error messages. */
  readonly name: string;
  /** The history kept for future queries. */
  readonly keeps: HistoryNeed;
  /**
   * Called after a chunk of queries has attended; may evict from
   * `(layer, head)` of `store`.
   */
  afterAttend(store: PolicyStore, layer: number, head: number): void;
}

/** The store operations a cache policy may use (implemented by `KvStore`). */
export interface PolicyStore {
  /** Cached tokens of one head. */
  length(layer: number, head: number): number;
  /** Drops tokens `[start, end)` of one head. */
  evict(layer: number, head: number, start: number, end: number): void;
}

/**
 * Whether `kept` covers `need`.
 *
 * @param need What a selector reads.
 * @param kept What a policy keeps.
 * @returns `true` when every token the selector may read is kept.
 */
export function historyCovers(kept: HistoryNeed, need: HistoryNeed): boolean {
  if (kept.kind === "all") return true;
  if (need.kind === "all") return false;
  return need.sinks <= kept.sinks && need.window <= kept.window;
}

/** Renders a {@linkcode HistoryNeed} for messages. */
export function describeNeed(n: HistoryNeed): string {
  return n.kind === "all" ? "the full history" : `sinks ${n.sinks} + window ${n.window}`;
}
