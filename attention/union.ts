// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Union of selectors: one exact softmax over the union of what each selects.
 *
 * @module
 */

import type { HistoryNeed } from "../kv/types.ts";
import { describeValue } from "../tensor/validate.ts";
import { type HeadSelection, unionSelections } from "./selection.ts";
import type { SelectContext, Selector } from "./stages.ts";

/**
 * Composes selectors by set union of their {@linkcode HeadSelection}s, so the
 * attend kernel runs **one** softmax over, e.g., sinks ∪ window ∪ retrieved
 * chunks — never two softmaxes added.
 *
 * Unsupported, rejected at construction with a `TypeError`: unions in which
 * any part re-maps positions (StreamingLLM re-indexing, LongHeads packing,
 * LM-Infinite capping) — a token both parts select would be seen at two
 * positions, and tokens only one part selects would be placed on different
 * position scales. Re-map after the union instead (a selector that unions
 * original-position parts, then re-numbers).
 *
 * @example Sinks + window ∪ another selector, at original positions
 * ```ts
 * import { DenseSelector, StreamingLlm, UnionSelector } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * const u = new UnionSelector([new StreamingLlm({ sinks: 2, window: 4, reindex: false }), new DenseSelector()]);
 * assert.equal(u.needs.kind, "all");
 * assert.throws(() => new UnionSelector([new StreamingLlm({ window: 4 }), new DenseSelector()]), TypeError);
 * ```
 */
export class UnionSelector implements Selector {
  /** `"a ∪ b"`. */
  readonly name: string;
  /** Always original. */
  readonly positions = "original" as const;
  /** The largest need of the parts. */
  readonly needs: HistoryNeed;
  /** The composed selectors. */
  readonly parts: readonly Selector[];

  /**
   * Creates the stage from its options.
   *
   * @param parts Two or more selectors keeping original positions.
   * @throws {TypeError} If fewer than two parts, or any part re-maps positions.
   */
  constructor(parts: readonly Selector[]) {
    if (!Array.isArray(parts) || parts.length < 2) {
      throw new TypeError(
        `Cannot create UnionSelector: parts must hold at least two selectors, got ${
          describeValue(parts)
        }`,
      );
    }
    const remap = parts.filter((p) => p.positions !== "original");
    if (remap.length > 0) {
      throw new TypeError(
        `Cannot create UnionSelector: ${
          remap.map((p) => p.name).join(", ")
        } re-maps positions, so a union would see shared tokens at conflicting positions; use original positions in every part`,
      );
    }
    this.parts = [...parts];
    this.name = parts.map((p) => p.name).join(" ∪ ");
    let need: HistoryNeed = parts[0]!.needs;
    for (const p of parts.slice(1)) {
      const n = p.needs;
      if (need.kind === "all" || n.kind === "all") need = { kind: "all" };
      else {
        need = {
          kind: "sink-window",
          sinks: Math.max(need.sinks, n.sinks),
          window: Math.max(need.window, n.window),
        };
      }
    }
    this.needs = need;
  }

  /**
   * Chooses the tokens one query reads for one KV head.
   *
   * @param ctx The selection context.
   * @returns The union of the parts' selections (per query head if any part selects per query head).
   */
  select(ctx: SelectContext): HeadSelection | readonly HeadSelection[] {
    const results = this.parts.map((p) => p.select(ctx));
    if (results.every((r) => !Array.isArray(r))) {
      let acc = results[0] as HeadSelection;
      for (const r of results.slice(1)) acc = unionSelections(acc, r as HeadSelection);
      return acc;
    }
    const perHead: HeadSelection[] = [];
    for (let g = 0; g < ctx.group; g++) {
      const pick = (r: HeadSelection | readonly HeadSelection[]) =>
        Array.isArray(r) ? (r as readonly HeadSelection[])[g]! : (r as HeadSelection);
      let acc = pick(results[0]!);
      for (const r of results.slice(1)) acc = unionSelections(acc, pick(r));
      perHead.push(acc);
    }
    return perHead;
  }
}
