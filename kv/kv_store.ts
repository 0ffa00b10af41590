// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * The paged, ragged KV store every attention stage reads.
 *
 * One store holds the keys and values of every layer and every KV head of one
 * sequence. Each `(layer, head)` pair owns its own list of fixed-size pages, so
 * heads may hold different numbers of tokens (ragged lengths: a cache policy
 * may keep 4k tokens in one head and 128 in another).
 *
 * ## Layout
 *
 * A page holds `pageSize` token rows of one `(layer, head)`:
 *
 * | field | type | shape |
 * | --- | --- | --- |
 * | `keys` | `Float32Array` or `Float16Array` | `[pageSize, headDim]`, row-major |
 * | `values` | `Float32Array` or `Float16Array` | `[pageSize, headDim]`, row-major |
 * | `positions` | `Int32Array` | `[pageSize]` |
 *
 * Pages are always full except the last one of a head, so token `i` lives in
 * page `floor(i / pageSize)` at row `i % pageSize`. Kernels read pages without
 * copying through {@linkcode KvStore.prototype.forEachRun} or
 * {@linkcode KvStore.prototype.page}.
 *
 * ## Positions are data
 *
 * Every key keeps the **original** position it was appended at, whatever the
 * store later evicts; a selector decides at which position a span is *seen*.
 * The store never rotates anything: `keyForm` only records whether the keys
 * were stored before (`"pre-rope"`) or after (`"post-rope"`) rotary encoding,
 * so that readers know whether to rotate keys on read (pre-RoPE: every
 * positional scheme composes with every selector, at the cost of one rotation
 * per key read) or to rotate the query by −δ once per span seen with a shift δ
 * (post-RoPE: RoPE is relative, so sink/window re-indexing and dense attention
 * cost nothing extra; per-token remaps such as SelfExtend need pre-RoPE keys).
 * The default is `"pre-rope"` because it is the form every stage can consume;
 * a pipeline that only shifts whole spans should store `"post-rope"` keys.
 *
 * ## Growth and memory
 *
 * Pages are allocated lazily, one at a time, when an append fills the last
 * page of a head and the store-wide free list is empty. Pages a head no longer
 * needs after {@linkcode KvStore.prototype.retain} or
 * {@linkcode KvStore.prototype.evict} go to the free list, shared by every
 * `(layer, head)`, and are reused by later appends before anything new is
 * allocated. So the memory held ({@linkcode KvStore.prototype.bytesHeld}) is
 * the high-water mark of pages in use and never grows while a window slides;
 * {@linkcode KvStore.prototype.trim} gives the free pages back to the garbage
 * collector.
 *
 * @module
 */

import type { FloatArray, FloatDType, Tensor } from "../tensor/types.ts";
import { DTYPE_BYTES, tensor } from "../tensor/tensor.ts";
import { describeValue, requireOneOf, requirePositiveInt } from "../tensor/validate.ts";

/** Tokens per page when neither `pageSize` nor a smaller `capacity` is given. */
export const DEFAULT_KV_PAGE_SIZE = 256;

/** Largest position a store accepts (positions are kept in an `Int32Array`). */
export const MAX_KV_POSITION = 2147483647;

/**
 * Whether stored keys are already rotated by RoPE at their original positions
 * (`"post-rope"`) or not (`"pre-rope"`). Metadata for readers; the store itself
 * never rotates.
 */
export type KvKeyForm = "pre-rope" | "post-rope";

/** Options of {@linkcode KvStore}. */
export interface KvStoreOptions {
  /** Number of transformer layers. Positive integer. */
  layers: number;
  /** Number of KV heads per layer. Positive integer. */
  kvHeads: number;
  /** Elements per key and value vector. Positive integer. */
  headDim: number;
  /**
   * Storage dtype. Appended keys and values of either dtype are converted on
   * write (f32 → f16 rounds to nearest even); `"f16"` uses `Float16Array` and
   * halves the bytes.
   * @default {"f32"}
   */
  dtype?: FloatDType;
  /** Tokens per page. Positive integer. @default {Math.min(256, capacity)} */
  pageSize?: number;
  /**
   * Most tokens any one `(layer, head)` may hold; an append past it throws.
   * A positive integer or `Infinity`. A head never holds more than
   * `ceil(capacity / pageSize)` pages.
   * @default {Infinity}
   */
  capacity?: number;
  /** Whether stored keys are already rotated (see {@linkcode KvKeyForm}). @default {"pre-rope"} */
  keyForm?: KvKeyForm;
}

/**
 * One page of one `(layer, head)`: a zero-copy window into the store for
 * kernels. Only the first `length` rows are valid; rows past `length` hold
 * stale data. The arrays are the store's own storage: do not write to them,
 * and do not keep a page across a `retain`, `evict` or `clear`, which may move
 * rows or hand the page to another head.
 */
export interface KvPage {
  /** Keys, shape `[pageSize, headDim]`, row-major. */
  readonly keys: FloatArray;
  /** Values, shape `[pageSize, headDim]`, row-major. */
  readonly values: FloatArray;
  /** Original position of each row, shape `[pageSize]`. */
  readonly positions: Int32Array;
  /** Number of valid rows: `pageSize` for every page but a head's last. */
  readonly length: number;
}

/**
 * Callback of {@linkcode KvStore.prototype.forEachRun}: rows
 * `[row, row + count)` of one page, which are tokens
 * `[token, token + count)` of the head.
 *
 * @param keys The page's keys, shape `[pageSize, headDim]` (read from `row * headDim`).
 * @param values The page's values, shape `[pageSize, headDim]`.
 * @param positions The page's positions, shape `[pageSize]`.
 * @param row First row of the run inside the page.
 * @param count Rows in the run (at least 1).
 * @param token Token index of the run's first row within the head.
 */
export type KvRunCallback = (
  keys: FloatArray,
  values: FloatArray,
  positions: Int32Array,
  row: number,
  count: number,
  token: number,
) => void;

/** Result of {@linkcode KvStore.prototype.gather} and {@linkcode KvStore.prototype.gatherSpans}. */
export interface KvGathered {
  /** Copied keys, shape `[n, headDim]`, layout `"td"`, always f32. */
  keys: Tensor<"f32">;
  /** Copied values, shape `[n, headDim]`, layout `"td"`, always f32. */
  values: Tensor<"f32">;
  /** Original position of each gathered token, shape `[n]`. */
  positions: Int32Array;
}

/** A page with a writable length; handed out as a read-only {@linkcode KvPage}. */
class Page implements KvPage {
  length = 0;
  readonly keys: FloatArray;
  readonly values: FloatArray;
  readonly positions: Int32Array;
  constructor(keys: FloatArray, values: FloatArray, positions: Int32Array) {
    this.keys = keys;
    this.values = values;
    this.positions = positions;
  }
}

/** Pages and token count of one (layer, head). Invariant: pages.length === ceil(length / pageSize). */
interface HeadState {
  pages: Page[];
  length: number;
}

/**
 * A paged KV cache for one sequence: every layer × KV head holds its own
 * (ragged) list of tokens, each with its key, value and original position.
 *
 * Appends convert to the storage dtype and never move stored rows; eviction
 * compacts in place and recycles pages through a store-wide free list (see the
 * module doc for the growth policy).
 *
 * | operation | time | allocates |
 * | --- | --- | --- |
 * | `append(layer, k, v)` of `t` tokens | O(t · kvHeads · headDim) | a page per `pageSize` tokens, only when the free list is empty |
 * | `appendHead` of `t` tokens | O(t · headDim) | as `append` |
 * | `length`, `pageCount`, `page`, `position` | O(1) | nothing |
 * | `forEachRun(start, end)` | O((end − start) / pageSize) calls | nothing |
 * | `gather(n indices)`, `gatherSpans(n tokens)` | O(n · headDim) | the result |
 * | `positions` | O(length) | the result |
 * | `evict(start, end)` | O((length − end) · headDim): the tail shifts down | nothing |
 * | `retain(keep)` | O(keep.length + rows moved · headDim); a kept prefix does not move | nothing |
 * | `clear` | O(pages) | nothing |
 * | `bytesHeld`, `bytesUsed` | O(1) | nothing |
 * | `bytesHeldBy(layer, head?)` | O(1) or O(kvHeads) | nothing |
 *
 * StreamingLLM (keep `S` sink tokens and the last `W`): append one token, then
 * `evict(layer, head, S, S + 1)`; each step shifts `W` rows, and the page the
 * append opened is returned to the free list whenever the eviction empties it,
 * so the bytes held stay constant.
 *
 * @example Append a prefill chunk, slide a StreamingLLM window, read it back
 * ```ts
 * import { KvStore } from "@longctx/longctx/kv";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const store = new KvStore({ layers: 1, kvHeads: 2, headDim: 4, pageSize: 3 });
 * store.append(0, randn([6, 2, 4], { seed: 1 }), randn([6, 2, 4], { seed: 2 })); // positions 0..5
 * for (let step = 0; step < 3; step++) {
 *   store.append(0, randn([1, 2, 4], { seed: 10 + step }), randn([1, 2, 4], { seed: 20 + step }));
 *   for (let h = 0; h < 2; h++) store.evict(0, h, 2, 3); // keep 2 sinks, window of 4
 * }
 * assert.deepEqual([...store.positions(0, 1)], [0, 1, 5, 6, 7, 8]);
 * assert.equal(store.pageCount(0, 0), 2);
 * ```
 */
export class KvStore {
  /** Number of layers. */
  readonly layers: number;
  /** KV heads per layer. */
  readonly kvHeads: number;
  /** Elements per key and value vector. */
  readonly headDim: number;
  /** Storage dtype of keys and values. */
  readonly dtype: FloatDType;
  /** Token rows per page. */
  readonly pageSize: number;
  /** Most tokens one `(layer, head)` may hold (`Infinity` when unbounded). */
  readonly capacity: number;
  /** Whether the stored keys are already rotated by RoPE. */
  readonly keyForm: KvKeyForm;
  /** Bytes of one page: keys + values + positions. */
  readonly pageBytes: number;

  #heads: HeadState[];
  #free: Page[] = [];
  #pagesAllocated = 0;
  #tokens = 0;
  #tokenBytes: number;

  /**
   * Creates an empty store; no page is allocated until the first append.
   *
   * @param options Geometry (`layers`, `kvHeads`, `headDim`), storage `dtype`,
   *   `pageSize`, `capacity` and `keyForm`.
   * @throws {TypeError} If `options` is not an object, or `dtype`/`keyForm` is not a known name.
   * @throws {RangeError} If a size is not a positive integer (`capacity` may also be `Infinity`).
   *
   * @example An f16 store of 2 layers × 4 KV heads × 64 dims
   * ```ts
   * import { KvStore } from "@longctx/longctx/kv";
   * import assert from "node:assert/strict";
   * const store = new KvStore({ layers: 2, kvHeads: 4, headDim: 64, dtype: "f16" });
   * assert.equal(store.pageSize, 256);
   * assert.equal(store.pageBytes, 256 * 64 * 2 * 2 + 256 * 4);
   * assert.equal(store.bytesHeld(), 0);
   * ```
   */
  constructor(options: KvStoreOptions) {
    const action = "create KvStore";
    if (options === null || typeof options !== "object") {
      throw new TypeError(
        `Cannot ${action}: options must be an object, got ${describeValue(options)}`,
      );
    }
    this.layers = requirePositiveInt(action, "layers", options.layers);
    this.kvHeads = requirePositiveInt(action, "kvHeads", options.kvHeads);
    this.headDim = requirePositiveInt(action, "headDim", options.headDim);
    this.dtype = requireOneOf(action, "dtype", options.dtype ?? "f32", ["f32", "f16"] as const);
    const capacity = options.capacity ?? Infinity;
    if (capacity !== Infinity) {
      if (typeof capacity !== "number" || !Number.isSafeInteger(capacity) || capacity < 1) {
        throw new RangeError(
          `Cannot ${action}: capacity must be a positive integer or Infinity, got ${
            describeValue(capacity)
          }`,
        );
      }
    }
    this.capacity = capacity;
    this.pageSize = requirePositiveInt(
      action,
      "pageSize",
      options.pageSize ?? Math.min(DEFAULT_KV_PAGE_SIZE, capacity),
    );
    this.keyForm = requireOneOf(
      action,
      "keyForm",
      options.keyForm ?? "pre-rope",
      [
        "pre-rope",
        "post-rope",
      ] as const,
    );
    const elem = DTYPE_BYTES[this.dtype];
    this.#tokenBytes = 2 * this.headDim * elem + DTYPE_BYTES.i32;
    this.pageBytes = this.pageSize * this.#tokenBytes;
    const n = this.layers * this.kvHeads;
    this.#heads = new Array<HeadState>(n);
    for (let i = 0; i < n; i++) this.#heads[i] = { pages: [], length: 0 };
  }

  /**
   * Appends `t` tokens to every KV head of one layer.
   *
   * @param layer Layer index in `[0, layers)`.
   * @param keys Keys, shape `[t, kvHeads, headDim]` (layout `"thd"` if named), f32 or f16,
   *   any strides; converted to the storage dtype.
   * @param values Values, same shape as `keys`.
   * @param positions Original positions: an array of `t` integers (shared by every head),
   *   or a number, the position of the first token (the rest follow consecutively).
   *   Positions must be integers in `[0, MAX_KV_POSITION]`. Default: each head continues
   *   after its own last stored position (0 when empty).
   * @throws {TypeError} If `keys`/`values` are not f32/f16 tensors of shape
   *   `[t, kvHeads, headDim]` with equal `t`, or `positions` has the wrong type or length.
   * @throws {RangeError} If `layer` is out of range, a position is not a valid integer,
   *   or a head would exceed `capacity`. Nothing is written when it throws.
   *
   * @example Prefill then decode, with default and explicit positions
   * ```ts
   * import { KvStore } from "@longctx/longctx/kv";
   * import { randn } from "@longctx/longctx/tensor";
   * import assert from "node:assert/strict";
   * const store = new KvStore({ layers: 1, kvHeads: 2, headDim: 8 });
   * store.append(0, randn([5, 2, 8], { seed: 1 }), randn([5, 2, 8], { seed: 2 }), 100);
   * store.append(0, randn([1, 2, 8], { seed: 3 }), randn([1, 2, 8], { seed: 4 }));
   * assert.deepEqual([...store.positions(0, 0)], [100, 101, 102, 103, 104, 105]);
   * ```
   */
  append(
    layer: number,
    keys: Tensor,
    values: Tensor,
    positions?: ArrayLike<number> | number,
  ): void {
    const action = "append to KvStore";
    this.#checkLayer(action, layer);
    checkFloatTensor(action, "keys", keys, 3);
    checkFloatTensor(action, "values", values, 3);
    const t = keys.shape[0]!, hkv = this.kvHeads, d = this.headDim;
    if (keys.shape[1] !== hkv || keys.shape[2] !== d) {
      throw new TypeError(
        `Cannot ${action}: keys must have shape [tokens, kvHeads=${hkv}, headDim=${d}], got ${
          describeValue(keys.shape)
        }`,
      );
    }
    if (values.shape[1] !== hkv || values.shape[2] !== d) {
      throw new TypeError(
        `Cannot ${action}: values must have shape [tokens, kvHeads=${hkv}, headDim=${d}], got ${
          describeValue(values.shape)
        }`,
      );
    }
    checkTokenCounts(action, t, values.shape[0]!);
    checkPositions(action, positions, t);
    const base = layer * hkv;
    for (let h = 0; h < hkv; h++) this.#checkRoom(action, layer, h, t, positions);
    const ks0 = keys.strides[0]!, ks1 = keys.strides[1]!, ks2 = keys.strides[2]!;
    const vs0 = values.strides[0]!, vs1 = values.strides[1]!, vs2 = values.strides[2]!;
    for (let h = 0; h < hkv; h++) {
      this.#write(
        this.#heads[base + h]!,
        keys.data as FloatArray,
        keys.offset + h * ks1,
        ks0,
        ks2,
        values.data as FloatArray,
        values.offset + h * vs1,
        vs0,
        vs2,
        t,
        positions,
      );
    }
  }

  /**
   * Appends `t` tokens to one KV head only, so heads may hold different numbers
   * of tokens.
   *
   * @param layer Layer index in `[0, layers)`.
   * @param head KV head index in `[0, kvHeads)`.
   * @param keys Keys, shape `[t, headDim]` (layout `"td"` if named), f32 or f16, any strides.
   * @param values Values, same shape as `keys`.
   * @param positions As in {@linkcode KvStore.prototype.append}. Default: continue after the
   *   head's last stored position (0 when empty).
   * @throws {TypeError} On a wrong shape, dtype or positions type/length.
   * @throws {RangeError} If `layer`/`head` is out of range, a position is invalid, or the
   *   head would exceed `capacity`. Nothing is written when it throws.
   *
   * @example Ragged heads
   * ```ts
   * import { KvStore } from "@longctx/longctx/kv";
   * import { randn } from "@longctx/longctx/tensor";
   * import assert from "node:assert/strict";
   * const store = new KvStore({ layers: 1, kvHeads: 2, headDim: 4 });
   * store.appendHead(0, 1, randn([3, 4], { seed: 1 }), randn([3, 4], { seed: 2 }), [7, 9, 11]);
   * assert.equal(store.length(0, 0), 0);
   * assert.equal(store.length(0, 1), 3);
   * assert.equal(store.position(0, 1, 2), 11);
   * ```
   */
  appendHead(
    layer: number,
    head: number,
    keys: Tensor,
    values: Tensor,
    positions?: ArrayLike<number> | number,
  ): void {
    const action = "append to KvStore";
    this.#checkLayer(action, layer);
    this.#checkHead(action, head);
    checkFloatTensor(action, "keys", keys, 2);
    checkFloatTensor(action, "values", values, 2);
    const t = keys.shape[0]!, d = this.headDim;
    if (keys.shape[1] !== d) {
      throw new TypeError(
        `Cannot ${action}: keys must have shape [tokens, headDim=${d}], got ${
          describeValue(keys.shape)
        }`,
      );
    }
    if (values.shape[1] !== d) {
      throw new TypeError(
        `Cannot ${action}: values must have shape [tokens, headDim=${d}], got ${
          describeValue(values.shape)
        }`,
      );
    }
    checkTokenCounts(action, t, values.shape[0]!);
    checkPositions(action, positions, t);
    this.#checkRoom(action, layer, head, t, positions);
    this.#write(
      this.#heads[layer * this.kvHeads + head]!,
      keys.data as FloatArray,
      keys.offset,
      keys.strides[0]!,
      keys.strides[1]!,
      values.data as FloatArray,
      values.offset,
      values.strides[0]!,
      values.strides[1]!,
      t,
      positions,
    );
  }

  /**
   * Number of tokens one `(layer, head)` holds.
   *
   * @param layer Layer index in `[0, layers)`.
   * @param head KV head index in `[0, kvHeads)`.
   * @returns The token count.
   * @throws {RangeError} If `layer` or `head` is out of range.
   *
   * @example
   * ```ts
   * import { KvStore } from "@longctx/longctx/kv";
   * import assert from "node:assert/strict";
   * assert.equal(new KvStore({ layers: 1, kvHeads: 1, headDim: 2 }).length(0, 0), 0);
   * ```
   */
  length(layer: number, head: number): number {
    return this.#state("read KvStore length", layer, head).length;
  }

  /**
   * Number of pages one `(layer, head)` uses: `ceil(length / pageSize)`.
   *
   * @param layer Layer index in `[0, layers)`.
   * @param head KV head index in `[0, kvHeads)`.
   * @returns The page count.
   * @throws {RangeError} If `layer` or `head` is out of range.
   *
   * @example
   * ```ts
   * import { KvStore } from "@longctx/longctx/kv";
   * import { zeros } from "@longctx/longctx/tensor";
   * import assert from "node:assert/strict";
   * const store = new KvStore({ layers: 1, kvHeads: 1, headDim: 2, pageSize: 4 });
   * store.appendHead(0, 0, zeros("f32", [5, 2]), zeros("f32", [5, 2]));
   * assert.equal(store.pageCount(0, 0), 2);
   * ```
   */
  pageCount(layer: number, head: number): number {
    return this.#state("read KvStore page count", layer, head).pages.length;
  }

  /**
   * Zero-copy access to one page of one `(layer, head)`, for kernels.
   *
   * @param layer Layer index in `[0, layers)`.
   * @param head KV head index in `[0, kvHeads)`.
   * @param index Page index in `[0, pageCount(layer, head))`.
   * @returns The page (its arrays are the store's storage; see {@linkcode KvPage}).
   * @throws {RangeError} If an index is out of range.
   *
   * @example Reading a key row straight from its page
   * ```ts
   * import { KvStore } from "@longctx/longctx/kv";
   * import { tensor } from "@longctx/longctx/tensor";
   * import assert from "node:assert/strict";
   * const store = new KvStore({ layers: 1, kvHeads: 1, headDim: 2, pageSize: 2 });
   * const k = tensor(new Float32Array([1, 2, 3, 4, 5, 6]), [3, 2]);
   * store.appendHead(0, 0, k, k);
   * const p = store.page(0, 0, 1);
   * assert.equal(p.length, 1);
   * assert.deepEqual([...p.keys.subarray(0, 2)], [5, 6]);
   * assert.equal(p.positions[0], 2);
   * ```
   */
  page(layer: number, head: number, index: number): KvPage {
    const action = "read KvStore page";
    const state = this.#state(action, layer, head);
    if (!Number.isInteger(index) || index < 0 || index >= state.pages.length) {
      throw new RangeError(
        `Cannot ${action}: index must be an integer in [0, ${state.pages.length}), got ${
          describeValue(index)
        }`,
      );
    }
    return state.pages[index]!;
  }

  /**
   * Original position of one stored token.
   *
   * @param layer Layer index in `[0, layers)`.
   * @param head KV head index in `[0, kvHeads)`.
   * @param index Token index in `[0, length(layer, head))`; it lives in page
   *   `floor(index / pageSize)` at row `index % pageSize`.
   * @returns The position it was appended at.
   * @throws {RangeError} If an index is out of range.
   *
   * @example
   * ```ts
   * import { KvStore } from "@longctx/longctx/kv";
   * import { zeros } from "@longctx/longctx/tensor";
   * import assert from "node:assert/strict";
   * const store = new KvStore({ layers: 1, kvHeads: 1, headDim: 2 });
   * store.appendHead(0, 0, zeros("f32", [3, 2]), zeros("f32", [3, 2]), 40);
   * assert.equal(store.position(0, 0, 2), 42);
   * ```
   */
  position(layer: number, head: number, index: number): number {
    const action = "read KvStore position";
    const state = this.#state(action, layer, head);
    checkTokenIndex(action, "index", index, state.length);
    const p = this.pageSize;
    return state.pages[Math.floor(index / p)]!.positions[index % p]!;
  }

  /**
   * Copies the original positions of every token of one `(layer, head)`.
   *
   * @param layer Layer index in `[0, layers)`.
   * @param head KV head index in `[0, kvHeads)`.
   * @returns A new array, shape `[length]`.
   * @throws {RangeError} If `layer` or `head` is out of range.
   *
   * @example
   * ```ts
   * import { KvStore } from "@longctx/longctx/kv";
   * import { zeros } from "@longctx/longctx/tensor";
   * import assert from "node:assert/strict";
   * const store = new KvStore({ layers: 1, kvHeads: 1, headDim: 2, pageSize: 2 });
   * store.appendHead(0, 0, zeros("f32", [3, 2]), zeros("f32", [3, 2]), [5, 3, 8]);
   * assert.deepEqual([...store.positions(0, 0)], [5, 3, 8]);
   * ```
   */
  positions(layer: number, head: number): Int32Array {
    const state = this.#state("read KvStore positions", layer, head);
    const out = new Int32Array(state.length);
    const p = this.pageSize;
    for (let i = 0, o = 0; i < state.pages.length; i++, o += p) {
      const page = state.pages[i]!;
      out.set(page.positions.subarray(0, page.length), o);
    }
    return out;
  }

  /**
   * Visits tokens `[start, end)` of one `(layer, head)` as contiguous runs
   * inside pages, without copying or allocating: the kernel hot path. The
   * callback must not modify the store.
   *
   * @param layer Layer index in `[0, layers)`.
   * @param head KV head index in `[0, kvHeads)`.
   * @param start First token index, in `[0, length]`.
   * @param end One past the last token index, in `[start, length]`.
   * @param callback Called once per run, in token order (see {@linkcode KvRunCallback}).
   * @throws {RangeError} If `layer`/`head` is out of range or not `0 <= start <= end <= length`.
   *
   * @example Summing the first key element of tokens 1..4 across page boundaries
   * ```ts
   * import { KvStore } from "@longctx/longctx/kv";
   * import { tensor } from "@longctx/longctx/tensor";
   * import assert from "node:assert/strict";
   * const store = new KvStore({ layers: 1, kvHeads: 1, headDim: 1, pageSize: 2 });
   * const k = tensor(new Float32Array([10, 11, 12, 13, 14]), [5, 1]);
   * store.appendHead(0, 0, k, k);
   * let sum = 0, runs = 0;
   * store.forEachRun(0, 0, 1, 5, (keys, _values, _positions, row, count) => {
   *   for (let r = row; r < row + count; r++) sum += keys[r];
   *   runs++;
   * });
   * assert.equal(sum, 11 + 12 + 13 + 14);
   * assert.equal(runs, 3); // [1], [2, 3], [4]
   * ```
   */
  forEachRun(
    layer: number,
    head: number,
    start: number,
    end: number,
    callback: KvRunCallback,
  ): void {
    const action = "iterate KvStore";
    const state = this.#state(action, layer, head);
    checkRange(action, start, end, state.length);
    if (typeof callback !== "function") {
      throw new TypeError(
        `Cannot ${action}: callback must be a function, got ${describeValue(callback)}`,
      );
    }
    const p = this.pageSize;
    let token = start;
    while (token < end) {
      const page = state.pages[Math.floor(token / p)]!;
      const row = token % p;
      const count = Math.min(p - row, end - token);
      callback(page.keys, page.values, page.positions, row, count, token);
      token += count;
    }
  }

  /**
   * Copies the tokens at `indices` (any order, repeats allowed) out of one
   * `(layer, head)`, converted to f32.
   *
   * @param layer Layer index in `[0, layers)`.
   * @param head KV head index in `[0, kvHeads)`.
   * @param indices Token indices in `[0, length)`, shape `[n]`.
   * @returns Keys and values `[n, headDim]` (f32, layout `"td"`) and positions `[n]`.
   * @throws {TypeError} If `indices` is not an array.
   * @throws {RangeError} If `layer`/`head` or an index is out of range.
   *
   * @example
   * ```ts
   * import { KvStore } from "@longctx/longctx/kv";
   * import { tensor } from "@longctx/longctx/tensor";
   * import assert from "node:assert/strict";
   * const store = new KvStore({ layers: 1, kvHeads: 1, headDim: 2, pageSize: 2 });
   * const k = tensor(new Float32Array([0, 1, 2, 3, 4, 5]), [3, 2]);
   * store.appendHead(0, 0, k, k);
   * const g = store.gather(0, 0, [2, 0]);
   * assert.deepEqual(g.keys.shape, [2, 2]);
   * assert.deepEqual([...g.keys.data], [4, 5, 0, 1]);
   * assert.deepEqual([...g.positions], [2, 0]);
   * ```
   */
  gather(layer: number, head: number, indices: ArrayLike<number>): KvGathered {
    const action = "gather from KvStore";
    const state = this.#state(action, layer, head);
    if (!isArrayLike(indices)) {
      throw new TypeError(
        `Cannot ${action}: indices must be an array of token indices, got ${
          describeValue(indices)
        }`,
      );
    }
    const n = indices.length;
    for (let i = 0; i < n; i++) checkTokenIndex(action, `indices[${i}]`, indices[i], state.length);
    const d = this.headDim, p = this.pageSize;
    const keys = new Float32Array(n * d), values = new Float32Array(n * d);
    const positions = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const idx = indices[i]!;
      const page = state.pages[Math.floor(idx / p)]!;
      const row = idx % p;
      const src = row * d, dst = i * d;
      const pk = page.keys, pv = page.values;
      for (let j = 0; j < d; j++) {
        keys[dst + j] = pk[src + j]!;
        values[dst + j] = pv[src + j]!;
      }
      positions[i] = page.positions[row]!;
    }
    return {
      keys: tensor(keys, [n, d], { layout: "td" }),
      values: tensor(values, [n, d], { layout: "td" }),
      positions,
    };
  }

  /**
   * Copies the tokens of half-open spans `[start, end)` out of one
   * `(layer, head)`, concatenated in the order given, converted to f32.
   *
   * @param layer Layer index in `[0, layers)`.
   * @param head KV head index in `[0, kvHeads)`.
   * @param spans Pairs `[start, end)` with `0 <= start <= end <= length`; any order, may overlap.
   * @returns Keys and values `[n, headDim]` (f32, layout `"td"`) and positions `[n]`,
   *   where `n` is the sum of the span lengths.
   * @throws {TypeError} If `spans` is not an array of pairs.
   * @throws {RangeError} If `layer`/`head` is out of range or a span is out of range or reversed.
   *
   * @example Sinks plus a recent window
   * ```ts
   * import { KvStore } from "@longctx/longctx/kv";
   * import { zeros } from "@longctx/longctx/tensor";
   * import assert from "node:assert/strict";
   * const store = new KvStore({ layers: 1, kvHeads: 1, headDim: 2, pageSize: 3 });
   * store.appendHead(0, 0, zeros("f32", [10, 2]), zeros("f32", [10, 2]));
   * const g = store.gatherSpans(0, 0, [[0, 2], [7, 10]]);
   * assert.deepEqual([...g.positions], [0, 1, 7, 8, 9]);
   * assert.deepEqual(g.values.shape, [5, 2]);
   * ```
   */
  gatherSpans(
    layer: number,
    head: number,
    spans: ArrayLike<readonly [number, number]>,
  ): KvGathered {
    const action = "gather spans from KvStore";
    const state = this.#state(action, layer, head);
    if (!isArrayLike(spans)) {
      throw new TypeError(
        `Cannot ${action}: spans must be an array of [start, end) pairs, got ${
          describeValue(spans)
        }`,
      );
    }
    let n = 0;
    for (let i = 0; i < spans.length; i++) {
      const span = spans[i];
      if (!isArrayLike(span) || span.length !== 2) {
        throw new TypeError(
          `Cannot ${action}: spans[${i}] must be a [start, end) pair, got ${describeValue(span)}`,
        );
      }
      const [s, e] = span;
      if (
        !Number.isInteger(s) || !Number.isInteger(e) || s < 0 || s > e || e > state.length
      ) {
        throw new RangeError(
          `Cannot ${action}: spans[${i}] must satisfy 0 <= start <= end <= ${state.length}, got [${
            describeValue(s)
          }, ${describeValue(e)})`,
        );
      }
      n += e - s;
    }
    const d = this.headDim, p = this.pageSize;
    const keys = new Float32Array(n * d), values = new Float32Array(n * d);
    const positions = new Int32Array(n);
    let o = 0;
    for (let i = 0; i < spans.length; i++) {
      const [s, e] = spans[i]!;
      let token = s;
      while (token < e) {
        const page = state.pages[Math.floor(token / p)]!;
        const row = token % p;
        const count = Math.min(p - row, e - token);
        keys.set(page.keys.subarray(row * d, (row + count) * d), o * d);
        values.set(page.values.subarray(row * d, (row + count) * d), o * d);
        positions.set(page.positions.subarray(row, row + count), o);
        token += count;
        o += count;
      }
    }
    return {
      keys: tensor(keys, [n, d], { layout: "td" }),
      values: tensor(values, [n, d], { layout: "td" }),
      positions,
    };
  }

  /**
   * Keeps only the tokens at `keep` in one `(layer, head)`, in order, compacting
   * in place; pages no longer needed go to the free list. This is how a cache
   * policy applies its selection.
   *
   * @param layer Layer index in `[0, layers)`.
   * @param head KV head index in `[0, kvHeads)`.
   * @param keep Strictly increasing token indices in `[0, length)`, shape `[n]`.
   * @throws {TypeError} If `keep` is not an array.
   * @throws {RangeError} If `layer`/`head` or an index is out of range, or `keep` is not
   *   strictly increasing. Nothing changes when it throws.
   *
   * @example Keep tokens 0, 3 and 4
   * ```ts
   * import { KvStore } from "@longctx/longctx/kv";
   * import { zeros } from "@longctx/longctx/tensor";
   * import assert from "node:assert/strict";
   * const store = new KvStore({ layers: 1, kvHeads: 1, headDim: 2, pageSize: 2 });
   * store.appendHead(0, 0, zeros("f32", [6, 2]), zeros("f32", [6, 2]));
   * store.retain(0, 0, [0, 3, 4]);
   * assert.deepEqual([...store.positions(0, 0)], [0, 3, 4]);
   * assert.equal(store.pageCount(0, 0), 2);
   * ```
   */
  retain(layer: number, head: number, keep: ArrayLike<number>): void {
    const action = "retain in KvStore";
    const state = this.#state(action, layer, head);
    if (!isArrayLike(keep)) {
      throw new TypeError(
        `Cannot ${action}: keep must be an array of token indices, got ${describeValue(keep)}`,
      );
    }
    const n = keep.length;
    for (let i = 0; i < n; i++) {
      const k = keep[i];
      checkTokenIndex(action, `keep[${i}]`, k, state.length);
      if (i > 0 && !(k! > keep[i - 1]!)) {
        throw new RangeError(
          `Cannot ${action}: keep must be strictly increasing, got keep[${i - 1}] = ${
            keep[i - 1]
          } then keep[${i}] = ${k}`,
        );
      }
    }
    // Move each run of consecutive kept indices down to the write cursor.
    let w = 0;
    for (let i = 0; i < n;) {
      const first = keep[i]!;
      let run = 1;
      while (i + run < n && keep[i + run] === first + run) run++;
      if (first !== w) this.#moveRows(state, first, w, run);
      w += run;
      i += run;
    }
    this.#tokens -= state.length - n;
    state.length = n;
    this.#releaseTail(state);
  }

  /**
   * Drops tokens `[start, end)` of one `(layer, head)`, shifting the tail down
   * (StreamingLLM evicts the oldest non-sink token with `evict(l, h, sinks, sinks + 1)`);
   * pages no longer needed go to the free list.
   *
   * @param layer Layer index in `[0, layers)`.
   * @param head KV head index in `[0, kvHeads)`.
   * @param start First token dropped.
   * @param end One past the last token dropped; `0 <= start <= end <= length`.
   * @throws {RangeError} If `layer`/`head` is out of range or the range is out of range or reversed.
   *
   * @example Evict the middle
   * ```ts
   * import { KvStore } from "@longctx/longctx/kv";
   * import { zeros } from "@longctx/longctx/tensor";
   * import assert from "node:assert/strict";
   * const store = new KvStore({ layers: 1, kvHeads: 1, headDim: 2, pageSize: 4 });
   * store.appendHead(0, 0, zeros("f32", [9, 2]), zeros("f32", [9, 2]));
   * store.evict(0, 0, 2, 7);
   * assert.deepEqual([...store.positions(0, 0)], [0, 1, 7, 8]);
   * assert.equal(store.pageCount(0, 0), 1);
   * ```
   */
  evict(layer: number, head: number, start: number, end: number): void {
    const action = "evict from KvStore";
    const state = this.#state(action, layer, head);
    checkRange(action, start, end, state.length);
    if (start === end) return;
    this.#moveRows(state, end, start, state.length - end);
    this.#tokens -= end - start;
    state.length -= end - start;
    this.#releaseTail(state);
  }

  /**
   * Empties every `(layer, head)`. All pages go to the free list, so refilling
   * the store allocates nothing; call {@linkcode KvStore.prototype.trim} to
   * release them.
   *
   * @example
   * ```ts
   * import { KvStore } from "@longctx/longctx/kv";
   * import { zeros } from "@longctx/longctx/tensor";
   * import assert from "node:assert/strict";
   * const store = new KvStore({ layers: 1, kvHeads: 2, headDim: 2, pageSize: 4 });
   * store.append(0, zeros("f32", [5, 2, 2]), zeros("f32", [5, 2, 2]));
   * store.clear();
   * assert.equal(store.length(0, 1), 0);
   * assert.equal(store.bytesUsed(), 0);
   * assert.equal(store.bytesHeld(), 4 * store.pageBytes);
   * ```
   */
  clear(): void {
    for (const state of this.#heads) {
      for (const page of state.pages) {
        page.length = 0;
        this.#free.push(page);
      }
      state.pages.length = 0;
      state.length = 0;
    }
    this.#tokens = 0;
  }

  /**
   * Releases the pages on the free list to the garbage collector.
   *
   * @returns The number of bytes released.
   *
   * @example
   * ```ts
   * import { KvStore } from "@longctx/longctx/kv";
   * import { zeros } from "@longctx/longctx/tensor";
   * import assert from "node:assert/strict";
   * const store = new KvStore({ layers: 1, kvHeads: 1, headDim: 2, pageSize: 4 });
   * store.appendHead(0, 0, zeros("f32", [9, 2]), zeros("f32", [9, 2]));
   * store.evict(0, 0, 0, 8);
   * assert.equal(store.trim(), 2 * store.pageBytes);
   * assert.equal(store.bytesHeld(), store.pageBytes);
   * ```
   */
  trim(): number {
    const released = this.#free.length * this.pageBytes;
    this.#pagesAllocated -= this.#free.length;
    this.#free.length = 0;
    return released;
  }

  /**
   * Bytes of every page this store has allocated and not trimmed (keys +
   * values + positions), in use or on the free list.
   *
   * @returns `pages × pageSize × (2 · headDim · bytes(dtype) + 4)`.
   *
   * @example
   * ```ts
   * import { KvStore } from "@longctx/longctx/kv";
   * import { zeros } from "@longctx/longctx/tensor";
   * import assert from "node:assert/strict";
   * const store = new KvStore({ layers: 1, kvHeads: 1, headDim: 8, pageSize: 16 });
   * store.appendHead(0, 0, zeros("f32", [17, 8]), zeros("f32", [17, 8]));
   * assert.equal(store.bytesHeld(), 2 * 16 * (2 * 8 * 4 + 4));
   * ```
   */
  bytesHeld(): number {
    return this.#pagesAllocated * this.pageBytes;
  }

  /**
   * Bytes of the stored tokens only (keys + values + positions), excluding
   * unused rows and free pages.
   *
   * @returns `tokens × (2 · headDim · bytes(dtype) + 4)`, summed over every `(layer, head)`.
   *
   * @example
   * ```ts
   * import { KvStore } from "@longctx/longctx/kv";
   * import { zeros } from "@longctx/longctx/tensor";
   * import assert from "node:assert/strict";
   * const store = new KvStore({ layers: 1, kvHeads: 1, headDim: 8, dtype: "f16" });
   * store.appendHead(0, 0, zeros("f32", [17, 8]), zeros("f32", [17, 8]));
   * assert.equal(store.bytesUsed(), 17 * (2 * 8 * 2 + 4));
   * ```
   */
  bytesUsed(): number {
    return this.#tokens * this.#tokenBytes;
  }

  /**
   * Bytes of the pages in use by one layer, or by one `(layer, head)`; free
   * pages belong to no head and are not counted.
   *
   * @param layer Layer index in `[0, layers)`.
   * @param head KV head index in `[0, kvHeads)`; omit it to count every head of the layer.
   * @returns `pages in use × pageBytes`.
   * @throws {RangeError} If `layer` or `head` is out of range.
   *
   * @example
   * ```ts
   * import { KvStore } from "@longctx/longctx/kv";
   * import { zeros } from "@longctx/longctx/tensor";
   * import assert from "node:assert/strict";
   * const store = new KvStore({ layers: 2, kvHeads: 2, headDim: 2, pageSize: 4 });
   * store.appendHead(1, 0, zeros("f32", [5, 2]), zeros("f32", [5, 2]));
   * assert.equal(store.bytesHeldBy(1, 0), 2 * store.pageBytes);
   * assert.equal(store.bytesHeldBy(1), 2 * store.pageBytes);
   * assert.equal(store.bytesHeldBy(0), 0);
   * ```
   */
  bytesHeldBy(layer: number, head?: number): number {
    const action = "measure KvStore bytes";
    if (head !== undefined) return this.#state(action, layer, head).pages.length * this.pageBytes;
    this.#checkLayer(action, layer);
    let pages = 0;
    const base = layer * this.kvHeads;
    for (let h = 0; h < this.kvHeads; h++) pages += this.#heads[base + h]!.pages.length;
    return pages * this.pageBytes;
  }

  // ---------------------------------------------------------------- internals

  #checkLayer(action: string, layer: number): void {
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.layers) {
      throw new RangeError(
        `Cannot ${action}: layer must be an integer in [0, ${this.layers}), got ${
          describeValue(layer)
        }`,
      );
    }
  }

  #checkHead(action: string, head: number): void {
    if (!Number.isInteger(head) || head < 0 || head >= this.kvHeads) {
      throw new RangeError(
        `Cannot ${action}: head must be an integer in [0, ${this.kvHeads}), got ${
          describeValue(head)
        }`,
      );
    }
  }

  #state(action: string, layer: number, head: number): HeadState {
    this.#checkLayer(action, layer);
    this.#checkHead(action, head);
    return this.#heads[layer * this.kvHeads + head]!;
  }

  /** Capacity and default-position overflow for `t` more tokens in (layer, head). */
  #checkRoom(
    action: string,
    layer: number,
    head: number,
    t: number,
    positions: ArrayLike<number> | number | undefined,
  ): void {
    const state = this.#heads[layer * this.kvHeads + head]!;
    if (state.length + t > this.capacity) {
      throw new RangeError(
        `Cannot ${action}: layer ${layer} head ${head} holds ${state.length} tokens and capacity is ${this.capacity}, got ${t} more`,
      );
    }
    if (positions === undefined && t > 0) {
      const next = this.#nextPosition(state);
      if (next + t - 1 > MAX_KV_POSITION) {
        throw new RangeError(
          `Cannot ${action}: positions continuing from ${next} must stay <= ${MAX_KV_POSITION}, got ${t} more tokens`,
        );
      }
    }
  }

  #nextPosition(state: HeadState): number {
    const n = state.length;
    if (n === 0) return 0;
    const p = this.pageSize;
    return state.pages[Math.floor((n - 1) / p)]!.positions[(n - 1) % p]! + 1;
  }

  /** Writes t rows from strided sources (already validated); no allocation but pages. */
  #write(
    state: HeadState,
    kd: FloatArray,
    ko: number,
    ks0: number,
    ksd: number,
    vd: FloatArray,
    vo: number,
    vs0: number,
    vsd: number,
    t: number,
    positions: ArrayLike<number> | number | undefined,
  ): void {
    const d = this.headDim, p = this.pageSize;
    const first = positions === undefined
      ? this.#nextPosition(state)
      : typeof positions === "number"
      ? positions
      : 0;
    const list = typeof positions === "object" ? positions : undefined;
    const pages = state.pages;
    for (let i = 0; i < t; i++) {
      const len = state.length;
      const row = len % p;
      const page = row === 0 ? this.#takePage(pages) : pages[pages.length - 1]!;
      const keys = page.keys, values = page.values;
      const dst = row * d;
      let k = ko + i * ks0, v = vo + i * vs0;
      for (let j = 0; j < d; j++, k += ksd, v += vsd) {
        keys[dst + j] = kd[k]!;
        values[dst + j] = vd[v]!;
      }
      page.positions[row] = list === undefined ? first + i : list[i]!;
      page.length = row + 1;
      state.length = len + 1;
    }
    this.#tokens += t;
  }

  /** Appends a page (from the free list when possible) to `pages` and returns it. */
  #takePage(pages: Page[]): Page {
    let page = this.#free.pop();
    if (page === undefined) {
      const n = this.pageSize * this.headDim;
      const ctor = this.dtype === "f16" ? Float16Array : Float32Array;
      page = new Page(new ctor(n), new ctor(n), new Int32Array(this.pageSize));
      this.#pagesAllocated++;
    }
    page.length = 0;
    pages.push(page);
    return page;
  }

  /** Moves `count` rows from token `from` down to token `to` (to < from), page by page. */
  #moveRows(state: HeadState, from: number, to: number, count: number): void {
    const p = this.pageSize, d = this.headDim;
    while (count > 0) {
      const src = state.pages[Math.floor(from / p)]!, sr = from % p;
      const dst = state.pages[Math.floor(to / p)]!, dr = to % p;
      const n = Math.min(count, p - sr, p - dr);
      if (src === dst) {
        src.keys.copyWithin(dr * d, sr * d, (sr + n) * d);
        src.values.copyWithin(dr * d, sr * d, (sr + n) * d);
        src.positions.copyWithin(dr, sr, sr + n);
      } else {
        dst.keys.set(src.keys.subarray(sr * d, (sr + n) * d), dr * d);
        dst.values.set(src.values.subarray(sr * d, (sr + n) * d), dr * d);
        dst.positions.set(src.positions.subarray(sr, sr + n), dr);
      }
      from += n;
      to += n;
      count -= n;
    }
  }

  /** Returns pages past ceil(length / pageSize) to the free list and fixes the last page's length. */
  #releaseTail(state: HeadState): void {
    const p = this.pageSize;
    const need = Math.ceil(state.length / p);
    const pages = state.pages;
    while (pages.length > need) {
      const page = pages.pop()!;
      page.length = 0;
      this.#free.push(page);
    }
    if (need > 0) pages[need - 1]!.length = state.length - (need - 1) * p;
  }
}

// ------------------------------------------------------------------ validation

function isArrayLike(x: unknown): x is ArrayLike<unknown> {
  return x !== null && typeof x === "object" &&
    typeof (x as ArrayLike<unknown>).length === "number";
}

/** A tensor of `rank` f32/f16 elements whose view stays inside its data. */
function checkFloatTensor(action: string, name: string, t: Tensor, rank: 2 | 3): void {
  const axes = rank === 3 ? "[tokens, kvHeads, headDim]" : "[tokens, headDim]";
  if (
    t === null || typeof t !== "object" || !Array.isArray(t.shape) || !Array.isArray(t.strides) ||
    !ArrayBuffer.isView(t.data)
  ) {
    throw new TypeError(
      `Cannot ${action}: ${name} must be a Tensor ${axes}, got ${describeValue(t)}`,
    );
  }
  if (
    !(t.dtype === "f32" && t.data instanceof Float32Array) &&
    !(t.dtype === "f16" && t.data instanceof Float16Array)
  ) {
    throw new TypeError(
      `Cannot ${action}: ${name} dtype must be "f32" or "f16", got ${describeValue(t.dtype)}`,
    );
  }
  if (t.shape.length !== rank || t.strides.length !== rank) {
    throw new TypeError(
      `Cannot ${action}: ${name} must have rank ${rank} ${axes}, got shape ${
        describeValue(t.shape)
      }`,
    );
  }
  const layout = rank === 3 ? "thd" : "td";
  if (t.layout !== undefined && t.layout !== layout) {
    throw new TypeError(
      `Cannot ${action}: ${name} layout must be "${layout}" ${axes}, got ${
        describeValue(t.layout)
      }`,
    );
  }
  const tokens = t.shape[0];
  if (typeof tokens !== "number" || !Number.isSafeInteger(tokens) || tokens < 0) {
    throw new TypeError(
      `Cannot ${action}: ${name} token count must be a non-negative integer, got shape ${
        describeValue(t.shape)
      }`,
    );
  }
  let lo = t.offset, hi = t.offset, empty = false;
  for (let a = 0; a < rank; a++) {
    const n = t.shape[a]!, s = t.strides[a]!;
    if (n === 0) empty = true;
    else if (s >= 0) hi += (n - 1) * s;
    else lo += (n - 1) * s;
  }
  if (
    !empty &&
    (!Number.isSafeInteger(lo) || !Number.isSafeInteger(hi) || lo < 0 || hi >= t.data.length)
  ) {
    throw new RangeError(
      `Cannot ${action}: ${name} view must lie inside its data of length ${t.data.length}, got offset ${
        describeValue(t.offset)
      } with shape ${describeValue(t.shape)} and strides ${describeValue(t.strides)}`,
    );
  }
}

function checkTokenCounts(action: string, keyTokens: number, valueTokens: number): void {
  if (valueTokens !== keyTokens) {
    throw new TypeError(
      `Cannot ${action}: values must have as many tokens as keys (${keyTokens}), got ${
        describeValue(valueTokens)
      }`,
    );
  }
}

/** Validates an explicit positions argument for `t` tokens; `undefined` is checked later per head. */
function checkPositions(
  action: string,
  positions: ArrayLike<number> | number | undefined,
  t: number,
): void {
  if (positions === undefined) return;
  if (typeof positions === "number") {
    const last = MAX_KV_POSITION - Math.max(t, 1) + 1;
    if (!Number.isSafeInteger(positions) || positions < 0 || positions > last) {
      throw new RangeError(
        `Cannot ${action}: positions (the first position of ${t} tokens) must be an integer in [0, ${last}], got ${
          describeValue(positions)
        }`,
      );
    }
    return;
  }
  if (!isArrayLike(positions)) {
    throw new TypeError(
      `Cannot ${action}: positions must be an array of integers, a number or undefined, got ${
        describeValue(positions)
      }`,
    );
  }
  if (positions.length !== t) {
    throw new TypeError(
      `Cannot ${action}: positions must have one entry per token (${t}), got length ${positions.length}`,
    );
  }
  for (let i = 0; i < t; i++) {
    const p = positions[i];
    if (typeof p !== "number" || !Number.isInteger(p) || p < 0 || p > MAX_KV_POSITION) {
      throw new RangeError(
        `Cannot ${action}: positions[${i}] must be an integer in [0, ${MAX_KV_POSITION}], got ${
          describeValue(p)
        }`,
      );
    }
  }
}

function checkTokenIndex(action: string, name: string, index: unknown, length: number): void {
  if (typeof index !== "number" || !Number.isInteger(index) || index < 0 || index >= length) {
    throw new RangeError(
      `Cannot ${action}: ${name} must be an integer in [0, ${length}), got ${describeValue(index)}`,
    );
  }
}

function checkRange(action: string, start: number, end: number, length: number): void {
  if (
    !Number.isInteger(start) || !Number.isInteger(end) || start < 0 || start > end || end > length
  ) {
    throw new RangeError(
      `Cannot ${action}: range must satisfy 0 <= start <= end <= ${length}, got [${
        describeValue(start)
      }, ${describeValue(end)})`,
    );
  }
}
