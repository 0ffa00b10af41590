// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/** Shape checks shared by the attention kernels (private). @module */

import type { FloatDType, Tensor } from "../tensor/types.ts";
import { describeValue, requireFinite } from "../tensor/validate.ts";

/** Checks a float tensor of rank 3 with last stride 1. */
export function requireThd(
  action: string,
  name: string,
  t: Tensor,
): asserts t is Tensor<FloatDType> {
  if (t === null || typeof t !== "object" || !Array.isArray(t.shape)) {
    throw new TypeError(`Cannot ${action}: ${name} must be a tensor, got ${describeValue(t)}`);
  }
  if (t.shape.length !== 3) {
    throw new TypeError(
      `Cannot ${action}: ${name} must have shape [tokens, heads, headDim], got shape ${
        describeValue(t.shape)
      }`,
    );
  }
  if (t.dtype !== "f32" && t.dtype !== "f16") {
    throw new TypeError(
      `Cannot ${action}: ${name} dtype must be "f32" or "f16", got ${describeValue(t.dtype)}`,
    );
  }
  if (t.shape[2]! > 1 && t.strides[2] !== 1) {
    throw new TypeError(
      `Cannot ${action}: ${name} must have last stride 1 (use contiguous()), got strides ${
        describeValue(t.strides)
      }`,
    );
  }
}

/** Resolved geometry of a Q/K/V triple. */
export interface QkvGeometry {
  queryTokens: number;
  heads: number;
  headDim: number;
  keyTokens: number;
  kvHeads: number;
  group: number;
}

/** Validates query [tq, h, d] against key/value [tk, hkv, d] and returns the geometry. */
export function checkQkv(
  action: string,
  query: Tensor,
  key: Tensor,
  value: Tensor,
): QkvGeometry {
  requireThd(action, "query", query);
  requireThd(action, "key", key);
  requireThd(action, "value", value);
  const [tq, h, d] = query.shape as [number, number, number];
  const [tk, hkv, dk] = key.shape as [number, number, number];
  if (dk !== d) {
    throw new TypeError(
      `Cannot ${action}: query headDim (${d}) does not match key headDim (${dk})`,
    );
  }
  if (value.shape[0] !== tk || value.shape[1] !== hkv || value.shape[2] !== d) {
    throw new TypeError(
      `Cannot ${action}: value shape ${describeValue(value.shape)} must equal key shape ${
        describeValue(key.shape)
      }`,
    );
  }
  if (hkv === 0 || h % hkv !== 0) {
    throw new RangeError(
      `Cannot ${action}: query heads (${h}) must be a multiple of kvHeads, got kvHeads ${hkv}`,
    );
  }
  if (d === 0) {
    throw new RangeError(`Cannot ${action}: headDim must be positive, got 0`);
  }
  return { queryTokens: tq, heads: h, headDim: d, keyTokens: tk, kvHeads: hkv, group: h / hkv };
}

/** Resolves `scale` (default 1/√d) and `softCap` (default none = 0). */
export function resolveScale(
  action: string,
  headDim: number,
  scale: number | undefined,
  softCap: number | undefined,
): { scale: number; softCap: number } {
  const s = scale === undefined ? 1 / Math.sqrt(headDim) : requireFinite(action, "scale", scale);
  const c = softCap === undefined
    ? 0
    : requireFinite(action, "softCap", softCap, { positive: true });
  return { scale: s, softCap: c };
}
