// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * `Selection`: which cached tokens a head reads for one query, and at which
 * positions it sees them. Data, not code: selectors produce it, set algebra
 * combines it, the sparse attend kernel executes it, the visualiser draws it.
 *
 * @module
 */

import { describeValue, requireInt, requireNonNegativeInt } from "../tensor/validate.ts";

/**
 * The tokens one head reads for one query: sorted, non-overlapping half-open
 * spans `[start, end)` of **cache indices** (index into the head's KV store,
 * not original positions), each optionally seen at a chosen position.
 *
 * - `spans`: `[start0, end0, start1, end1, …]`, strictly increasing, no empty span,
 *   no overlap, no adjacency required (adjacent spans are merged by {@linkcode headSelection}
 *   when their positions continue).
 * - `seenAt`: if present, span `i` is seen at positions `seenAt[i] + (j − start_i)`
 *   for its tokens `j` (a constant shift per span: StreamingLLM re-indexing,
 *   LongHeads/Landmark slot re-numbering). If absent, every token is seen at its
 *   original (stored) position.
 * - `queryAt`: the position the query is seen at when `seenAt` is present;
 *   absent means the query's original position.
 */
export interface HeadSelection {
  /** Flattened `[start, end)` pairs of cache indices, shape `[2 · spanCount]`. */
  readonly spans: Int32Array;
  /** Seen position of each span's first token, shape `[spanCount]`; absent = original positions. */
  readonly seenAt?: Float64Array;
  /** Position the query is seen at; absent = its original position. */
  readonly queryAt?: number;
}

/**
 * One query token's selection across heads: `heads[h]` is what query head `h`
 * reads. Query heads of a GQA group that share one `HeadSelection` object
 * (same reference) are executed together, reading each key once.
 */
export type Selection = readonly HeadSelection[];

/** Number of tokens a head selection reads. */
export function selectedTokens(sel: HeadSelection): number {
  let n = 0;
  for (let i = 0; i < sel.spans.length; i += 2) n += sel.spans[i + 1]! - sel.spans[i]!;
  return n;
}

/** Options of {@linkcode headSelection}. */
export interface HeadSelectionOptions {
  /** Seen position of each span's first token (see {@linkcode HeadSelection}). */
  seenAt?: ArrayLike<number>;
  /** Position the query is seen at (requires `seenAt`). */
  queryAt?: number;
  /** Cache length: every span must end at or before it. */
  length?: number;
}

/**
 * Builds and validates a {@linkcode HeadSelection}. Spans must be sorted and
 * non-overlapping; empty spans are dropped; adjacent spans whose positions
 * continue are merged.
 *
 * @param spans `[start, end)` pairs as `[[s, e], …]` or flat `[s0, e0, s1, e1, …]`.
 * @param options Seen positions, query position, cache length for range checks.
 * @returns A normalised selection.
 * @throws {RangeError} On unsorted/overlapping/out-of-range spans or non-integer bounds.
 * @throws {TypeError} If `seenAt` length differs from the span count, or `queryAt` is given without `seenAt`.
 *
 * @example Sinks 0..3 and the last 4 of 20 tokens, re-indexed as StreamingLLM does
 * ```ts
 * import { headSelection, selectedTokens } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * const s = headSelection([[0, 4], [16, 20]], { seenAt: [0, 4], queryAt: 7, length: 20 });
 * assert.equal(selectedTokens(s), 8);
 * assert.deepEqual([...s.spans], [0, 4, 16, 20]);
 * ```
 */
export function headSelection(
  spans: ArrayLike<number> | ReadonlyArray<readonly [number, number]>,
  options: HeadSelectionOptions = {},
): HeadSelection {
  const action = "create selection";
  const flat: number[] = [];
  const list = spans as ArrayLike<unknown>;
  if (list.length > 0 && Array.isArray(list[0])) {
    for (const p of spans as ReadonlyArray<readonly [number, number]>) flat.push(p[0], p[1]);
  } else {
    for (let i = 0; i < list.length; i++) flat.push(list[i] as number);
  }
  if (flat.length % 2 !== 0) {
    throw new RangeError(
      `Cannot ${action}: spans must hold [start, end) pairs, got ${flat.length} numbers`,
    );
  }
  const n = flat.length / 2;
  const seen = options.seenAt;
  if (seen !== undefined && seen.length !== n) {
    throw new TypeError(
      `Cannot ${action}: seenAt must have one entry per span (${n}), got ${seen.length}`,
    );
  }
  if (options.queryAt !== undefined && seen === undefined) {
    throw new TypeError(`Cannot ${action}: queryAt needs seenAt, got queryAt ${options.queryAt}`);
  }
  if (options.queryAt !== undefined) requireInt(action, "queryAt", options.queryAt);
  const length = options.length;
  if (length !== undefined) requireNonNegativeInt(action, "length", length);
  const outSpans: number[] = [];
  const outSeen: number[] = [];
  let prevEnd = -1;
  for (let i = 0; i < n; i++) {
    const s = flat[2 * i]!, e = flat[2 * i + 1]!;
    if (!Number.isSafeInteger(s) || !Number.isSafeInteger(e) || s < 0 || e < s) {
      throw new RangeError(
        `Cannot ${action}: span ${i} must satisfy 0 <= start <= end, got [${describeValue(s)}, ${
          describeValue(e)
        })`,
      );
    }
    if (length !== undefined && e > length) {
      throw new RangeError(
        `Cannot ${action}: span ${i} must end at or before the cache length ${length}, got [${s}, ${e})`,
      );
    }
    if (s === e) continue;
    if (s < prevEnd) {
      throw new RangeError(
        `Cannot ${action}: spans must be sorted and non-overlapping, got span ${i} [${s}, ${e}) after one ending at ${prevEnd}`,
      );
    }
    const at = seen === undefined ? 0 : seen[i]!;
    if (seen !== undefined && !Number.isSafeInteger(at)) {
      throw new RangeError(
        `Cannot ${action}: seenAt[${i}] must be an integer, got ${describeValue(at)}`,
      );
    }
    const k = outSpans.length;
    // Merge with the previous span when contiguous in cache and in seen position.
    if (
      k > 0 && outSpans[k - 1] === s &&
      (seen === undefined || outSeen[outSeen.length - 1]! + (s - outSpans[k - 2]!) === at)
    ) {
      outSpans[k - 1] = e;
    } else {
      outSpans.push(s, e);
      if (seen !== undefined) outSeen.push(at);
    }
    prevEnd = e;
  }
  return {
    spans: Int32Array.from(outSpans),
    ...(seen !== undefined ? { seenAt: Float64Array.from(outSeen) } : {}),
    ...(options.queryAt !== undefined ? { queryAt: options.queryAt } : {}),
  };
}

/**
 * Every cached token `[0, length)` at its original position: the selection
 * under which sparse attention is dense attention.
 *
 * @param length Cache length.
 * @returns A one-span selection (or empty when `length` is 0).
 *
 * @example
 * ```ts
 * import { selectAll } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * assert.deepEqual([...selectAll(5).spans], [0, 5]);
 * ```
 */
export function selectAll(length: number): HeadSelection {
  requireNonNegativeInt("select all tokens", "length", length);
  return { spans: length > 0 ? Int32Array.of(0, length) : new Int32Array(0) };
}

/** Expands a selection into per-token `(index, seen position or NaN)` pairs. */
function expand(sel: HeadSelection): { idx: number[]; pos: number[] } {
  const idx: number[] = [], pos: number[] = [];
  for (let i = 0; i < sel.spans.length / 2; i++) {
    const s = sel.spans[2 * i]!, e = sel.spans[2 * i + 1]!;
    for (let j = s; j < e; j++) {
      idx.push(j);
      pos.push(sel.seenAt === undefined ? NaN : sel.seenAt[i]! + (j - s));
    }
  }
  return { idx, pos };
}

function fromTokens(
  idx: number[],
  pos: number[],
  remapped: boolean,
  queryAt: number | undefined,
): HeadSelection {
  const spans: number[] = [];
  const seen: number[] = [];
  for (let t = 0; t < idx.length; t++) {
    spans.push(idx[t]!, idx[t]! + 1);
    if (remapped) seen.push(pos[t]!);
  }
  return headSelection(spans, {
    ...(remapped ? { seenAt: seen } : {}),
    ...(remapped && queryAt !== undefined ? { queryAt } : {}),
  });
}

function checkCompatible(action: string, a: HeadSelection, b: HeadSelection): void {
  if ((a.seenAt === undefined) !== (b.seenAt === undefined)) {
    throw new TypeError(
      `Cannot ${action}: one selection re-maps positions and the other keeps original positions; compose position re-mapping after set algebra`,
    );
  }
  if (a.queryAt !== b.queryAt) {
    throw new RangeError(
      `Cannot ${action}: selections see the query at different positions, got ${a.queryAt} and ${b.queryAt}`,
    );
  }
}

/**
 * Union of two head selections: every token either reads, once. A token both
 * select must be seen at the same position in both.
 *
 * @param a A selection.
 * @param b A selection.
 * @returns The union, normalised.
 * @throws {TypeError} If one re-maps positions and the other does not.
 * @throws {RangeError} If a shared token is seen at two positions, or query positions differ.
 *
 * @example Sinks ∪ recent window ∪ a retrieved chunk: one softmax over all three
 * ```ts
 * import { headSelection, unionSelections } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * const u = unionSelections(
 *   unionSelections(headSelection([[0, 4]]), headSelection([[90, 100]])),
 *   headSelection([[40, 48], [95, 100]]),
 * );
 * assert.deepEqual([...u.spans], [0, 4, 40, 48, 90, 100]);
 * ```
 */
export function unionSelections(a: HeadSelection, b: HeadSelection): HeadSelection {
  const action = "union selections";
  checkCompatible(action, a, b);
  if (a.seenAt === undefined) {
    // Fast path: merge sorted span lists.
    const out: number[] = [];
    let i = 0, j = 0;
    const sa = a.spans, sb = b.spans;
    while (i < sa.length || j < sb.length) {
      let s: number, e: number;
      if (j >= sb.length || (i < sa.length && sa[i]! <= sb[j]!)) {
        s = sa[i]!;
        e = sa[i + 1]!;
        i += 2;
      } else {
        s = sb[j]!;
        e = sb[j + 1]!;
        j += 2;
      }
      const k = out.length;
      if (k > 0 && s <= out[k - 1]!) out[k - 1] = Math.max(out[k - 1]!, e);
      else out.push(s, e);
    }
    return { spans: Int32Array.from(out) };
  }
  const ea = expand(a), eb = expand(b);
  const idx: number[] = [], pos: number[] = [];
  let i = 0, j = 0;
  while (i < ea.idx.length || j < eb.idx.length) {
    const ia = i < ea.idx.length ? ea.idx[i]! : Infinity;
    const ib = j < eb.idx.length ? eb.idx[j]! : Infinity;
    if (ia === ib) {
      if (ea.pos[i] !== eb.pos[j]) {
        throw new RangeError(
          `Cannot ${action}: token ${ia} is seen at positions ${ea.pos[i]} and ${eb.pos[j]}`,
        );
      }
      idx.push(ia);
      pos.push(ea.pos[i]!);
      i++;
      j++;
    } else if (ia < ib) {
      idx.push(ia);
      pos.push(ea.pos[i++]!);
    } else {
      idx.push(ib);
      pos.push(eb.pos[j++]!);
    }
  }
  return fromTokens(idx, pos, true, a.queryAt);
}

/**
 * Intersection of two head selections: tokens both read.
 *
 * @param a A selection.
 * @param b A selection.
 * @returns The intersection, normalised.
 * @throws {TypeError} / {RangeError} As {@linkcode unionSelections}.
 *
 * @example
 * ```ts
 * import { headSelection, intersectSelections } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * const x = intersectSelections(headSelection([[0, 10]]), headSelection([[5, 20]]));
 * assert.deepEqual([...x.spans], [5, 10]);
 * ```
 */
export function intersectSelections(a: HeadSelection, b: HeadSelection): HeadSelection {
  const action = "intersect selections";
  checkCompatible(action, a, b);
  const ea = expand(a), eb = expand(b);
  const idx: number[] = [], pos: number[] = [];
  let i = 0, j = 0;
  while (i < ea.idx.length && j < eb.idx.length) {
    const ia = ea.idx[i]!, ib = eb.idx[j]!;
    if (ia === ib) {
      if (a.seenAt !== undefined && ea.pos[i] !== eb.pos[j]) {
        throw new RangeError(
          `Cannot ${action}: token ${ia} is seen at positions ${ea.pos[i]} and ${eb.pos[j]}`,
        );
      }
      idx.push(ia);
      pos.push(ea.pos[i]!);
      i++;
      j++;
    } else if (ia < ib) i++;
    else j++;
  }
  return fromTokens(idx, pos, a.seenAt !== undefined, a.queryAt);
}

/**
 * Caps a selection to at most `budget` tokens, keeping the most recent
 * (`keep: "last"`, default) or the earliest (`"first"`) tokens.
 *
 * @param sel A selection.
 * @param budget Maximum tokens kept, a non-negative integer.
 * @param options Which end to keep.
 * @returns `sel` itself when within budget, else a truncated selection.
 * @throws {RangeError} If `budget` is not a non-negative integer.
 *
 * @example
 * ```ts
 * import { capSelection, headSelection } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * const s = capSelection(headSelection([[0, 4], [10, 20]]), 6);
 * assert.deepEqual([...s.spans], [14, 20]);
 * ```
 */
export function capSelection(
  sel: HeadSelection,
  budget: number,
  options: { keep?: "first" | "last" } = {},
): HeadSelection {
  requireNonNegativeInt("cap selection", "budget", budget);
  const total = selectedTokens(sel);
  if (total <= budget) return sel;
  const keepLast = (options.keep ?? "last") === "last";
  const spans: number[] = [];
  const seen: number[] = [];
  let left = budget;
  const n = sel.spans.length / 2;
  const order = keepLast ? [...Array(n).keys()].reverse() : [...Array(n).keys()];
  for (const i of order) {
    if (left === 0) break;
    const s = sel.spans[2 * i]!, e = sel.spans[2 * i + 1]!;
    const take = Math.min(left, e - s);
    const ns = keepLast ? e - take : s;
    const ne = keepLast ? e : s + take;
    spans.push(ns, ne);
    if (sel.seenAt) seen.push(sel.seenAt[i]! + (ns - s));
    left -= take;
  }
  if (keepLast) {
    // Restore ascending order.
    const pairs = [];
    for (let i = spans.length / 2 - 1; i >= 0; i--) pairs.push(spans[2 * i]!, spans[2 * i + 1]!);
    spans.splice(0, spans.length, ...pairs);
    seen.reverse();
  }
  return headSelection(spans, {
    ...(sel.seenAt ? { seenAt: seen } : {}),
    ...(sel.queryAt !== undefined ? { queryAt: sel.queryAt } : {}),
  });
}

/**
 * Re-numbers a selection contiguously: its tokens are seen at
 * `start, start + 1, …` in order and the query right after the last one
 * (or at `queryAt`). This is how StreamingLLM indexes positions within the
 * cache and how LongHeads packs its chunks.
 *
 * @param sel A selection with original positions.
 * @param options First seen position (default 0) and the query position
 *   (default: the seen position of the last selected token, i.e. the query reads its own key at distance 0 when it is selected last).
 * @returns The same tokens with `seenAt`/`queryAt` set.
 *
 * @example
 * ```ts
 * import { headSelection, renumberContiguous } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * const r = renumberContiguous(headSelection([[0, 2], [50, 53]]));
 * assert.deepEqual([...r.seenAt!], [0, 2]);
 * assert.equal(r.queryAt, 4);
 * ```
 */
export function renumberContiguous(
  sel: HeadSelection,
  options: { start?: number; queryAt?: number } = {},
): HeadSelection {
  const start = requireInt("renumber selection", "start", options.start ?? 0);
  const n = sel.spans.length / 2;
  const seen = new Float64Array(n);
  let p = start;
  for (let i = 0; i < n; i++) {
    seen[i] = p;
    p += sel.spans[2 * i + 1]! - sel.spans[2 * i]!;
  }
  const queryAt = options.queryAt ?? p - 1;
  return { spans: sel.spans, seenAt: seen, queryAt };
}
