// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Validation helpers shared by every stage. Each throws a `TypeError` (wrong
 * type or shape) or `RangeError` (value out of range) whose message follows one
 * voice: `Cannot <action>: <what is wrong>, got <value>`.
 *
 * They are ordinary functions (not assertions) so that library code validates
 * up front and the message always names the argument and the value.
 *
 * @module
 */

/**
 * Formats a value for an error message: numbers keep their sign and NaN/±Infinity,
 * strings are quoted, arrays are shown in brackets (long ones truncated).
 *
 * @param value Any value.
 * @returns A short human-readable rendering.
 *
 * @example Formatting values
 * ```ts
 * import { describeValue } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * assert.equal(describeValue(-0), "-0");
 * assert.equal(describeValue([1, 2]), "[1, 2]");
 * assert.equal(describeValue("f64"), '"f64"');
 * ```
 */
export function describeValue(value: unknown): string {
  if (typeof value === "number") return Object.is(value, -0) ? "-0" : String(value);
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value) || ArrayBuffer.isView(value)) {
    const arr = Array.from(value as ArrayLike<unknown>);
    const shown = arr.slice(0, 8).map(describeValue).join(", ");
    return `[${shown}${arr.length > 8 ? `, … (${arr.length} items)` : ""}]`;
  }
  if (value === null) return "null";
  if (value === undefined) return "undefined";
  if (typeof value === "object") return Object.prototype.toString.call(value);
  return String(value);
}

/**
 * Requires an integer `>= 1`.
 *
 * @param action What was being done, e.g. `"create KvStore"`.
 * @param name The argument's name as the caller wrote it.
 * @param value The value to check.
 * @returns `value`, typed as a number.
 * @throws {RangeError} If `value` is not a positive safe integer.
 *
 * @example Rejecting zero
 * ```ts
 * import { requirePositiveInt } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * assert.throws(() => requirePositiveInt("create store", "pageSize", 0), RangeError);
 * ```
 */
export function requirePositiveInt(action: string, name: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(
      `Cannot ${action}: ${name} must be a positive integer, got ${describeValue(value)}`,
    );
  }
  return value;
}

/**
 * Requires an integer `>= 0`.
 *
 * @param action What was being done.
 * @param name The argument's name.
 * @param value The value to check.
 * @returns `value`.
 * @throws {RangeError} If `value` is not a non-negative safe integer.
 *
 * @example
 * ```ts
 * import { requireNonNegativeInt } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * assert.equal(requireNonNegativeInt("x", "n", 0), 0);
 * assert.throws(() => requireNonNegativeInt("x", "n", 1.5), RangeError);
 * ```
 */
export function requireNonNegativeInt(action: string, name: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(
      `Cannot ${action}: ${name} must be a non-negative integer, got ${describeValue(value)}`,
    );
  }
  return value;
}

/**
 * Requires a safe integer (any sign).
 *
 * @param action What was being done.
 * @param name The argument's name.
 * @param value The value to check.
 * @returns `value`.
 * @throws {RangeError} If `value` is not a safe integer.
 *
 * @example
 * ```ts
 * import { requireInt } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * assert.equal(requireInt("x", "offset", -3), -3);
 * ```
 */
export function requireInt(action: string, name: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value)) {
    throw new RangeError(
      `Cannot ${action}: ${name} must be an integer, got ${describeValue(value)}`,
    );
  }
  return value;
}

/**
 * Requires a finite number, optionally strictly positive.
 *
 * @param action What was being done.
 * @param name The argument's name.
 * @param value The value to check.
 * @param options `positive: true` additionally requires `value > 0`.
 * @returns `value`.
 * @throws {RangeError} If `value` is NaN, ±Infinity, not a number, or not positive when required.
 *
 * @example
 * ```ts
 * import { requireFinite } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * assert.throws(() => requireFinite("attend", "scale", NaN), /scale must be a finite number, got NaN/);
 * ```
 */
export function requireFinite(
  action: string,
  name: string,
  value: unknown,
  options: { positive?: boolean } = {},
): number {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new RangeError(
      `Cannot ${action}: ${name} must be a finite number, got ${describeValue(value)}`,
    );
  }
  if (options.positive && !(value > 0)) {
    throw new RangeError(
      `Cannot ${action}: ${name} must be a positive finite number, got ${describeValue(value)}`,
    );
  }
  return value;
}

/**
 * Requires one of a fixed set of string values.
 *
 * @param action What was being done.
 * @param name The argument's name.
 * @param value The value to check.
 * @param allowed The accepted values.
 * @returns `value`, narrowed to the allowed union.
 * @throws {TypeError} If `value` is not one of `allowed`.
 *
 * @example
 * ```ts
 * import { requireOneOf } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * assert.equal(requireOneOf("x", "layout", "halves", ["halves", "adjacent"] as const), "halves");
 * assert.throws(() => requireOneOf("x", "layout", "odd", ["halves"] as const), TypeError);
 * ```
 */
export function requireOneOf<const T extends string>(
  action: string,
  name: string,
  value: unknown,
  allowed: readonly T[],
): T {
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
    throw new TypeError(
      `Cannot ${action}: ${name} must be one of ${
        allowed.map((a) => JSON.stringify(a)).join(", ")
      }, got ${describeValue(value)}`,
    );
  }
  return value as T;
}
