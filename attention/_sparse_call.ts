// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.
/** Argument checks shared by the sparse attend kernels (private). @module */

import type { Tensor } from "../tensor/types.ts";
import { describeValue } from "../tensor/validate.ts";
import type { AttentionState } from "./types.ts";
import type { Selection } from "./selection.ts";
import type { KvSource, SparseAttendOptions } from "./sparse_attend.ts";
import { checkState } from "./dense.ts";
import { requireThd, resolveScale } from "./_validate.ts";

/** Most query heads per KV head the kernels' per-row scratch holds. */
export const MAX_GROUP = 256;

/** Geometry and resolved scale of a checked sparse attend call. */
export interface SparseCall {
  tq: number;
  heads: number;
  d: number;
  group: number;
  /** Logit scale including YaRN's attention factor squared. */
  scale: number;
  softCap: number;
}

/**
 * Validates a sparse attend call (query `[tq, heads, d]` in `"thd"`, a
 * matching store, one selection per query token, query positions, RoPE
 * head dim, state shape) and resolves its scale.
 */
export function checkSparseCall(
  action: string,
  state: AttentionState,
  query: Tensor,
  source: KvSource,
  selections: readonly Selection[],
  options: SparseAttendOptions,
): SparseCall {
  requireThd(action, "query", query);
  const [tq, heads, d] = query.shape as [number, number, number];
  if (source.headDim !== d) {
    throw new TypeError(
      `Cannot ${action}: query headDim (${d}) does not match store headDim (${source.headDim})`,
    );
  }
  const kvHeads = source.kvHeads;
  if (heads % kvHeads !== 0) {
    throw new RangeError(
      `Cannot ${action}: query heads (${heads}) must be a multiple of kvHeads, got kvHeads ${kvHeads}`,
    );
  }
  const group = heads / kvHeads;
  if (group > MAX_GROUP) {
    throw new RangeError(
      `Cannot ${action}: at most ${MAX_GROUP} query heads per KV head, got ${group}`,
    );
  }
  checkState(action, state, tq, heads, d);
  if (!Array.isArray(selections) || selections.length !== tq) {
    throw new TypeError(
      `Cannot ${action}: selections must have one entry per query token (${tq}), got ${
        describeValue((selections as unknown[])?.length)
      }`,
    );
  }
  const qpos = options.queryPositions;
  if (qpos === undefined || qpos.length !== tq) {
    throw new TypeError(
      `Cannot ${action}: queryPositions must have one entry per query token (${tq}), got ${
        describeValue(qpos?.length)
      }`,
    );
  }
  const rope = options.rope;
  if (rope !== undefined && rope.headDim !== d) {
    throw new TypeError(
      `Cannot ${action}: rope headDim (${rope.headDim}) does not match query headDim (${d})`,
    );
  }
  const base = resolveScale(action, d, options.scale, options.softCap);
  const factor = rope?.attentionFactor ?? 1;
  return { tq, heads, d, group, scale: base.scale * factor * factor, softCap: base.softCap };
}
