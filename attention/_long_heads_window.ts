// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.
/** LongHeads' window rule, shared by the CPU selector and the WebGPU path (private). @module */

import type { HeadSelection } from "./selection.ts";

/**
 * Chunks 0, chosen…, a−1, and a's tokens up to `end`, re-numbered from 0; the
 * query sits on its own key's slot, or just after the last key when its own
 * key is excluded.
 */
export function longHeadsWindow(
  chosen: Int32Array,
  a: number,
  w: number,
  end: number,
  excludeSelf: boolean,
): HeadSelection {
  const spans: number[] = [0, w];
  for (const c of chosen) spans.push(c * w, (c + 1) * w);
  if (a - 1 >= 1) spans.push((a - 1) * w, a * w);
  if (end > a * w) spans.push(a * w, end);
  const seen: number[] = [];
  const merged: number[] = [];
  let pos = 0;
  for (let i = 0; i < spans.length; i += 2) {
    const s = spans[i]!, e = spans[i + 1]!;
    const m = merged.length;
    if (m > 0 && merged[m - 1] === s) merged[m - 1] = e;
    else {
      merged.push(s, e);
      seen.push(pos);
    }
    pos += e - s;
  }
  return {
    spans: Int32Array.from(merged),
    seenAt: Float64Array.from(seen),
    queryAt: excludeSelf ? pos : pos - 1,
  };
}
