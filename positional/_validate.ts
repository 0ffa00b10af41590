// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/** Argument checks shared by the RoPE modules (private). @module */

import {
  describeValue,
  requireFinite,
  requireOneOf,
  requirePositiveInt,
} from "../tensor/validate.ts";
import type { RopeScaling } from "./scaling.ts";

/** RoPE base of RoFormer / Llama 1–2. */
export const ROPE_BASE = 10000;
/** YaRN `beta_fast` default. */
export const YARN_BETA_FAST = 32;
/** YaRN `beta_slow` default. */
export const YARN_BETA_SLOW = 1;

const SCALING_TYPES: readonly RopeScaling["type"][] = [
  "none",
  "linear",
  "ntk",
  "dynamic-ntk",
  "yarn",
  "base",
];

/** `value` unless it is `undefined` (unlike `??`, a `null` is kept so that validation rejects it). */
export function orDefault<T>(value: T | undefined, fallback: T): T {
  return value === undefined ? fallback : value;
}

/** Requires a positive even integer head dimension. */
export function checkHeadDim(action: string, headDim: unknown): number {
  if (
    typeof headDim !== "number" || !Number.isSafeInteger(headDim) || headDim < 2 || headDim % 2
  ) {
    throw new RangeError(
      `Cannot ${action}: headDim must be a positive even integer, got ${describeValue(headDim)}`,
    );
  }
  return headDim;
}

/** Requires a finite base `> 1`. */
export function checkBase(action: string, name: string, base: unknown): number {
  requireFinite(action, name, base);
  if (!((base as number) > 1)) {
    throw new RangeError(
      `Cannot ${action}: ${name} must be a finite number > 1, got ${describeValue(base)}`,
    );
  }
  return base as number;
}

/** Requires a finite scaling factor `>= 1`. */
export function checkFactor(action: string, name: string, factor: unknown): number {
  if (typeof factor !== "number" || !Number.isFinite(factor) || factor < 1) {
    throw new RangeError(
      `Cannot ${action}: ${name} must be a finite number >= 1 (a factor below 1 shrinks the context instead of extending it), got ${
        describeValue(factor)
      }`,
    );
  }
  return factor;
}

/** Requires an options object. */
export function checkObject(action: string, name: string, value: unknown): void {
  if (value === null || typeof value !== "object") {
    throw new TypeError(`Cannot ${action}: ${name} must be an object, got ${describeValue(value)}`);
  }
}

/**
 * Validates a {@linkcode RopeScaling}; `name` prefixes field names in messages
 * (`"scaling"` → `scaling.factor`).
 */
export function checkScaling(action: string, name: string, scaling: unknown): RopeScaling {
  if (scaling === null || typeof scaling !== "object") {
    throw new TypeError(
      `Cannot ${action}: ${name} must be an object with a type field, got ${
        describeValue(scaling)
      }`,
    );
  }
  const s = scaling as Record<string, unknown>;
  const type = requireOneOf(action, `${name}.type`, s.type, SCALING_TYPES);
  switch (type) {
    case "none":
      break;
    case "linear":
    case "ntk":
      checkFactor(action, `${name}.factor`, s.factor);
      break;
    case "dynamic-ntk":
      checkFactor(action, `${name}.factor`, s.factor);
      requirePositiveInt(action, `${name}.originalMaxPosition`, s.originalMaxPosition);
      break;
    case "yarn":
      checkYarnFields(action, `${name}.`, s);
      break;
    case "base":
      checkBase(action, `${name}.base`, s.base);
      break;
  }
  return scaling as RopeScaling;
}

/** Validates the YaRN fields of an object; `prefix` is `""` or `"scaling."`. */
export function checkYarnFields(action: string, prefix: string, s: Record<string, unknown>): void {
  const p = prefix;
  checkFactor(action, `${p}factor`, s.factor);
  requirePositiveInt(action, `${p}originalMaxPosition`, s.originalMaxPosition);
  const fast = s.betaFast === undefined
    ? YARN_BETA_FAST
    : requireFinite(action, `${p}betaFast`, s.betaFast, { positive: true });
  const slow = s.betaSlow === undefined
    ? YARN_BETA_SLOW
    : requireFinite(action, `${p}betaSlow`, s.betaSlow, { positive: true });
  if (!(fast > slow)) {
    throw new RangeError(
      `Cannot ${action}: ${p}betaSlow must be below ${p}betaFast (${fast}), got ${
        describeValue(slow)
      }`,
    );
  }
  if (s.mscale !== undefined) requireFinite(action, `${p}mscale`, s.mscale);
  if (s.mscaleAllDim !== undefined) requireFinite(action, `${p}mscaleAllDim`, s.mscaleAllDim);
  if (s.attentionFactor !== undefined) {
    requireFinite(action, `${p}attentionFactor`, s.attentionFactor, { positive: true });
  }
  if (s.truncate !== undefined && typeof s.truncate !== "boolean") {
    throw new TypeError(
      `Cannot ${action}: ${p}truncate must be a boolean, got ${describeValue(s.truncate)}`,
    );
  }
}
