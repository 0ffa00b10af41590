// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/** The cache policy that keeps every token. @module */

import type { CachePolicy, HistoryNeed } from "./types.ts";

/**
 * The cache policy that keeps everything.
 *
 * @example
 * ```ts
 * import { KeepAll } from "@longctx/longctx/kv";
 * import assert from "node:assert/strict";
 * assert.equal(new KeepAll().keeps.kind, "all");
 * ```
 */
export class KeepAll implements CachePolicy {
  /** `"keep-all"`. */
  readonly name = "keep-all";
  /** The whole history. */
  readonly keeps: HistoryNeed = { kind: "all" };
  /** Keeps everything: does nothing. */
  afterAttend(): void {}
}
