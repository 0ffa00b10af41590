// Copyright 2026 the longctx authors. MIT license.

/**
 * Dense attention on a pool of workers: the same exact result as
 * {@linkcode denseAttention}, computed on several cores over shared memory.
 *
 * Long-context decode reads the whole KV cache once per step; one JS thread
 * leaves the other cores idle. {@linkcode AttentionWorkers} splits a call
 * across workers either by KV head (each worker owns whole heads and writes
 * its rows of the output in place) or by key range (split-K, as in
 * Flash-Decoding: each worker attends a slice of the cache with the right
 * `keyOffset`, and the partial states are combined with the exact
 * log-sum-exp merge of {@linkcode mergeStatesInto}).
 *
 * Inputs and outputs live in `SharedArrayBuffer`s, so nothing big is copied
 * per call: {@linkcode shareTensor} moves a tensor there once (e.g. when the
 * KV cache is allocated). Runs on Deno, and in browsers that are
 * cross-origin isolated and can load this module's worker.
 *
 * @see https://crfm.stanford.edu/2023/10/12/flashdecoding.html (Flash-Decoding, split-K)
 *
 * @module
 */

import type { DTypeArrayMap, FloatDType, Tensor } from "../tensor/types.ts";
import { contiguousStrides, copyInto, numel } from "../tensor/tensor.ts";
import { describeValue, requireInt, requireOneOf, requirePositiveInt } from "../tensor/validate.ts";
import type { AttentionInput, AttentionState } from "./types.ts";
import { checkState, type DenseAttentionOptions } from "./dense.ts";
import { mergeStatesInto } from "./merge_states.ts";
import { checkQkv, type QkvGeometry, resolveScale } from "./_validate.ts";
import type { ArrayRef, ViewRef, WorkerJob, WorkerReply } from "./_parallel_worker.ts";

const WORKER_URL = new URL("./_parallel_worker.ts", import.meta.url);
const ACTION = "compute attention in workers";
const SPLITS = ["auto", "heads", "keys"] as const;

/** Options of {@linkcode AttentionWorkers.create}. */
export interface AttentionWorkersOptions {
  /**
   * Number of workers (threads). More workers than cores only adds overhead.
   * @default {navigator.hardwareConcurrency}
   */
  workers?: number;
}

/** Options of {@linkcode AttentionWorkers.attention}: those of {@linkcode denseAttention}, plus the split. */
export interface ParallelAttentionOptions extends DenseAttentionOptions {
  /**
   * How a call is divided among the workers.
   *
   * - `"heads"`: worker `i` owns a contiguous range of KV heads (and their
   *   query heads) and writes its output rows in place. No merge, but at most
   *   `kvHeads` workers are used, and uneven ranges leave cores idle.
   * - `"keys"` (split-K): worker `i` attends a range of keys for every head;
   *   ranges are balanced by the work the causal mask leaves in them; the
   *   partial states are merged exactly on the calling thread
   *   (O(workers · queryTokens · heads · headDim)).
   * - `"auto"`: `"heads"` when `kvHeads` is a multiple of the worker count or at
   *   least four times it (so every worker gets nearly the same work), else `"keys"`.
   *
   * @default {"auto"}
   */
  split?: "auto" | "heads" | "keys";
}

/** One worker's share of a call: a range of KV heads (into the result) or of keys (into a partial). */
type Part =
  | { kind: "heads"; kvHead0: number; kvHead1: number }
  | { kind: "keys"; key0: number; key1: number };

interface Plan {
  state: AttentionState;
  input: AttentionInput;
  geometry: QkvGeometry;
  options: WorkerJob["options"];
  parts: Part[];
}

interface Pending {
  id: number;
  resolve: () => void;
  reject: (error: Error) => void;
}

/** Split-K partial states, grown on demand and reused across calls. */
interface Partials {
  out: Float32Array;
  lse: Float32Array;
  key: string;
  states: AttentionState[];
}

/**
 * A pool of workers that runs exact dense attention in parallel over
 * `SharedArrayBuffer`-backed tensors.
 *
 * Same contract as {@linkcode denseAttention} (any query length, GQA/MQA,
 * causal masks with offsets, scale, soft-cap) and the same result up to f32
 * rounding of the split-K merge. Calls on one pool run one at a time, in
 * order; each call uses every worker.
 *
 * | cost per call | |
 * | --- | --- |
 * | time | denseAttention's, divided by the workers used, plus ≈ 0.1 ms of messaging |
 * | reads | K and V once in total (each worker reads its own heads or keys) |
 * | messages | one small job per worker (shapes and offsets); a `SharedArrayBuffer` is re-posted only when it changes |
 * | allocation | `attention()`: the result; `attentionInto()`: none beyond the messages; split-K partials are pooled |
 *
 * Workers hold the last buffers they were sent until the next call or
 * {@linkcode AttentionWorkers.close}.
 *
 * @example One worker: same result as denseAttention
 * ```ts
 * import { AttentionWorkers, shareTensor } from "./parallel.ts";
 * import { denseAttention } from "./dense.ts";
 * import { randn } from "../tensor/mod.ts";
 * import assert from "node:assert/strict";
 *
 * const input = {
 *   query: shareTensor(randn([1, 4, 8], { seed: 1 })),  // [queryTokens, heads, headDim]
 *   key: shareTensor(randn([50, 2, 8], { seed: 2 })),   // [keyTokens, kvHeads, headDim]
 *   value: shareTensor(randn([50, 2, 8], { seed: 3 })),
 * };
 * using workers = await AttentionWorkers.create({ workers: 1 });
 * const { out, lse } = await workers.attention(input);
 * const want = denseAttention(input);
 * out.data.forEach((x, i) => assert.ok(Math.abs(x - want.out.data[i]) < 1e-6));
 * assert.deepEqual(lse.shape, [1, 4]);
 * ```
 */
export class AttentionWorkers implements Disposable {
  #workers: Worker[];
  #pending: (Pending | undefined)[];
  /** Per worker, the shared buffer last posted for each slot (query, key, value, out, lse). */
  #sent: (SharedArrayBuffer | undefined)[][];
  #queue: Promise<void> = Promise.resolve();
  #closed = false;
  #failure: Error | undefined;
  #partials: Partials | undefined;
  #nextId = 1;

  private constructor(workers: Worker[]) {
    this.#workers = workers;
    this.#pending = workers.map(() => undefined);
    this.#sent = workers.map(() => []);
    workers.forEach((w, i) => {
      w.onmessage = (e: MessageEvent<WorkerReply>) => this.#onReply(i, e.data);
      w.onerror = (e: ErrorEvent) => {
        e.preventDefault();
        this.#fail(new Error(`Cannot ${ACTION}: worker ${i} failed: ${e.message}`));
      };
      w.onmessageerror = () => {
        this.#fail(new Error(`Cannot ${ACTION}: worker ${i} could not receive a message`));
      };
    });
  }

  /**
   * Starts the workers and waits until each has loaded the kernel.
   *
   * @param options Number of workers.
   * @returns A ready pool; close it with {@linkcode AttentionWorkers.close} (or `using`).
   * @throws {RangeError} If `workers` is not a positive integer.
   * @throws {Error} If a worker fails to start (the others are terminated).
   */
  static async create(options: AttentionWorkersOptions = {}): Promise<AttentionWorkers> {
    const n = requirePositiveInt(
      "create AttentionWorkers",
      "workers",
      options.workers ?? Math.max(1, navigator.hardwareConcurrency || 1),
    );
    const workers: Worker[] = [];
    try {
      for (let i = 0; i < n; i++) {
        workers.push(new Worker(WORKER_URL, { type: "module", name: `longctx-attention-${i}` }));
      }
      await Promise.all(workers.map((w, i) => ready(w, i)));
    } catch (err) {
      for (const w of workers) w.terminate();
      throw err;
    }
    return new AttentionWorkers(workers);
  }

  /** Number of workers in the pool. */
  get size(): number {
    return this.#workers.length;
  }

  /**
   * Exact softmax attention, computed by the pool; see {@linkcode denseAttention}
   * for the math, masks and offsets.
   *
   * Do not modify the inputs until the returned promise settles: the workers
   * read them in place.
   *
   * @param input Queries `[queryTokens, heads, headDim]`, keys and values
   *   `[keyTokens, kvHeads, headDim]`, f32 or f16, last stride 1, each backed
   *   by a `SharedArrayBuffer` (see {@linkcode shareTensor}).
   * @param options Those of {@linkcode denseAttention}, plus `split`.
   * @returns `{ out: [queryTokens, heads, headDim], lse: [queryTokens, heads] }`,
   *   newly allocated in shared memory (reusable with {@linkcode AttentionWorkers.attentionInto}).
   * @throws {TypeError} If an input is not backed by a `SharedArrayBuffer`, or on
   *   the shape errors of {@linkcode denseAttention}.
   * @throws {RangeError} As in {@linkcode denseAttention}.
   * @throws {Error} If the pool is closed or a worker failed.
   */
  async attention(
    input: AttentionInput,
    options: ParallelAttentionOptions = {},
  ): Promise<AttentionState> {
    this.#checkOpen();
    const g = checkQkv(ACTION, input?.query, input?.key, input?.value);
    const state: AttentionState = {
      out: sharedF32([g.queryTokens, g.heads, g.headDim], true),
      lse: sharedF32([g.queryTokens, g.heads], false),
    };
    await this.attentionInto(state, input, options);
    return state;
  }

  /**
   * {@linkcode AttentionWorkers.attention} into a caller-owned shared state,
   * e.g. the one a previous call returned: no allocation per call.
   *
   * @param state Destination: `out` `[queryTokens, heads, headDim]` and `lse`
   *   `[queryTokens, heads]`, contiguous f32 backed by a `SharedArrayBuffer` (written).
   * @param input As in {@linkcode AttentionWorkers.attention}.
   * @param options As in {@linkcode AttentionWorkers.attention}.
   * @returns A promise that resolves once `state` holds the result.
   * @throws {TypeError} If `state` or an input is not backed by a
   *   `SharedArrayBuffer`, or shapes do not match.
   * @throws {RangeError} As in {@linkcode denseAttention}.
   * @throws {Error} If the pool is closed or a worker failed.
   */
  async attentionInto(
    state: AttentionState,
    input: AttentionInput,
    options: ParallelAttentionOptions = {},
  ): Promise<void> {
    const plan = this.#plan(state, input, options);
    const previous = this.#queue;
    let release!: () => void;
    this.#queue = new Promise<void>((resolve) => release = resolve);
    try {
      await previous;
      await this.#execute(plan);
    } finally {
      release();
    }
  }

  /**
   * Terminates the workers. Calls still running reject; later calls reject.
   * Closing twice is a no-op.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of this.#workers) w.terminate();
    this.#rejectPending(new Error(`Cannot ${ACTION}: AttentionWorkers was closed during the call`));
    this.#partials = undefined;
    this.#sent = [];
  }

  /** Same as {@linkcode AttentionWorkers.close}, for `using workers = await AttentionWorkers.create()`. */
  [Symbol.dispose](): void {
    this.close();
  }

  #checkOpen(): void {
    if (this.#closed) throw new Error(`Cannot ${ACTION}: AttentionWorkers is closed`);
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** Validates everything on the calling thread, so workers only compute. */
  #plan(state: AttentionState, input: AttentionInput, options: ParallelAttentionOptions): Plan {
    this.#checkOpen();
    const g = checkQkv(ACTION, input?.query, input?.key, input?.value);
    requireShared("query", input.query.data);
    requireShared("key", input.key.data);
    requireShared("value", input.value.data);
    checkState(ACTION, state, g.queryTokens, g.heads, g.headDim);
    requireShared("state.out", state.out.data);
    requireShared("state.lse", state.lse.data);
    const { scale, softCap } = resolveScale(ACTION, g.headDim, options.scale, options.softCap);
    const causal = options.causal ?? true;
    if (typeof causal !== "boolean") {
      throw new TypeError(
        `Cannot ${ACTION}: causal must be a boolean, got ${describeValue(causal)}`,
      );
    }
    const keyOffset = requireInt(ACTION, "keyOffset", options.keyOffset ?? 0);
    const queryOffset = requireInt(
      ACTION,
      "queryOffset",
      options.queryOffset ?? keyOffset + g.keyTokens - g.queryTokens,
    );
    const split = requireOneOf(ACTION, "split", options.split ?? "auto", SPLITS);
    const resolved = {
      causal,
      scale,
      keyOffset,
      queryOffset,
      ...(softCap > 0 ? { softCap } : {}),
    };
    const parts = planParts(g, this.#workers.length, split, resolved);
    return { state, input, geometry: g, options: resolved, parts };
  }

  async #execute(plan: Plan): Promise<void> {
    this.#checkOpen();
    const { state, input, geometry: g, options, parts } = plan;
    const { queryTokens: tq, heads: h, headDim: d, group } = g;
    const splitK = parts[0]!.kind === "keys";
    const partials = splitK ? this.#partialStates(parts.length, tq, h, d) : undefined;
    const outArray = partials?.out ?? state.out.data;
    const lseArray = partials?.lse ?? state.lse.data;
    const id = this.#nextId++;

    const jobs = parts.map((part, i): Promise<void> => {
      let query = input.query, key = input.key, value = input.value;
      let keyOffset = options.keyOffset;
      let headStart = 0;
      if (part.kind === "heads") {
        query = narrow(query, 1, part.kvHead0 * group, part.kvHead1 * group);
        key = narrow(key, 1, part.kvHead0, part.kvHead1);
        value = narrow(value, 1, part.kvHead0, part.kvHead1);
        headStart = part.kvHead0 * group;
      } else {
        key = narrow(key, 0, part.key0, part.key1);
        value = narrow(value, 0, part.key0, part.key1);
        keyOffset += part.key0;
      }
      const datas = [query.data, key.data, value.data, outArray, lseArray];
      const sent = this.#sent[i]!;
      const buffers = datas.map((a, slot) => {
        const sab = a.buffer as SharedArrayBuffer;
        if (sent[slot] === sab) return null;
        sent[slot] = sab;
        return sab;
      });
      const job: WorkerJob = {
        id,
        buffers,
        arrays: datas.map(arrayRef),
        query: viewRef(query),
        key: viewRef(key),
        value: viewRef(value),
        options: { ...options, keyOffset },
        dest: {
          outOffset: splitK ? i * tq * h * d : 0,
          lseOffset: splitK ? i * tq * h : 0,
          heads: h,
          headStart,
        },
      };
      return this.#post(i, job);
    });

    // Wait for every part, even after a failure, so no worker is still writing
    // (or still owes a reply) when the next call starts.
    const settled = await Promise.allSettled(jobs);
    for (const s of settled) if (s.status === "rejected") throw s.reason;
    if (partials !== undefined) mergeStatesInto(state, partials.states);
  }

  #post(i: number, job: WorkerJob): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.#closed || this.#failure !== undefined) {
        // Forget what this worker was sent: it may never have received it.
        this.#sent[i] = [];
        reject(this.#failure ?? new Error(`Cannot ${ACTION}: AttentionWorkers is closed`));
        return;
      }
      this.#pending[i] = { id: job.id, resolve, reject };
      this.#workers[i]!.postMessage(job);
    });
  }

  #onReply(i: number, reply: WorkerReply): void {
    const p = this.#pending[i];
    if (p === undefined || p.id !== reply.id) return;
    this.#pending[i] = undefined;
    if (reply.error === undefined) p.resolve();
    else p.reject(rebuildError(reply.error));
  }

  #fail(error: Error): void {
    if (this.#failure !== undefined || this.#closed) return;
    this.#failure = error;
    for (const w of this.#workers) w.terminate();
    this.#rejectPending(error);
  }

  #rejectPending(error: Error): void {
    this.#pending.forEach((p, i) => {
      this.#pending[i] = undefined;
      p?.reject(error);
    });
  }

  /** The pooled split-K partials `[parts, tq, h, d]` / `[parts, tq, h]` as states, reused per shape. */
  #partialStates(parts: number, tq: number, h: number, d: number): Partials {
    const key = `${parts}:${tq}:${h}:${d}`;
    let p = this.#partials;
    if (p !== undefined && p.key === key) return p;
    const outLen = parts * tq * h * d, lseLen = parts * tq * h;
    const out = p !== undefined && p.out.length >= outLen
      ? p.out
      : new Float32Array(new SharedArrayBuffer(outLen * 4));
    const lse = p !== undefined && p.lse.length >= lseLen
      ? p.lse
      : new Float32Array(new SharedArrayBuffer(lseLen * 4));
    const states: AttentionState[] = [];
    for (let i = 0; i < parts; i++) {
      const o = out.subarray(i * tq * h * d, (i + 1) * tq * h * d);
      const l = lse.subarray(i * tq * h, (i + 1) * tq * h);
      states.push({ out: f32Tensor(o, [tq, h, d]), lse: f32Tensor(l, [tq, h]) });
    }
    p = { out, lse, key, states };
    this.#partials = p;
    return p;
  }
}

/**
 * Copies a tensor into new `SharedArrayBuffer`-backed, contiguous storage, so
 * {@linkcode AttentionWorkers} can read it without copying per call. Do this
 * once per buffer (e.g. allocate the KV cache this way), not per step.
 *
 * | cost | |
 * | --- | --- |
 * | time | O(numel), one strided copy |
 * | allocation | one `SharedArrayBuffer` of `numel · bytesPerElement` bytes |
 *
 * @param t Any f32 or f16 tensor (views allowed), e.g. keys `[keyTokens, kvHeads, headDim]`.
 * @returns A contiguous tensor with the same dtype, shape, layout and values,
 *   whose `data.buffer` is a `SharedArrayBuffer`.
 * @throws {TypeError} If the dtype is not `"f32"` or `"f16"`.
 *
 * @example Sharing a strided view
 * ```ts
 * import { shareTensor } from "./parallel.ts";
 * import { randn, sliceAxis } from "../tensor/mod.ts";
 * import assert from "node:assert/strict";
 * const keys = randn([8, 2, 4], { seed: 1, layout: "thd" });
 * const shared = shareTensor(sliceAxis(keys, 1, 1, 2));  // head 1 only: [8, 1, 4]
 * assert.ok(shared.data.buffer instanceof SharedArrayBuffer);
 * assert.deepEqual(shared.strides, [4, 4, 1]);
 * assert.equal(shared.data[4], keys.data[4 * 1 + 8]);
 * ```
 */
export function shareTensor<D extends FloatDType>(t: Tensor<D>): Tensor<D> {
  const dtype = t?.dtype;
  if (dtype !== "f32" && dtype !== "f16") {
    throw new TypeError(
      `Cannot share tensor: dtype must be "f32" or "f16", got ${describeValue(dtype)}`,
    );
  }
  const n = numel(t.shape);
  const bytes = dtype === "f32" ? 4 : 2;
  const sab = new SharedArrayBuffer(n * bytes);
  const data =
    (dtype === "f32" ? new Float32Array(sab) : new Float16Array(sab)) as DTypeArrayMap[D];
  const shared: Tensor<D> = {
    dtype,
    shape: [...t.shape],
    strides: contiguousStrides(t.shape),
    offset: 0,
    data,
    ...(t.layout !== undefined ? { layout: t.layout } : {}),
  };
  copyInto(shared, t);
  return shared;
}

/** Splits a call into at most `workers` parts. */
function planParts(
  g: QkvGeometry,
  workers: number,
  split: "auto" | "heads" | "keys",
  o: { causal: boolean; keyOffset: number; queryOffset: number },
): Part[] {
  const { kvHeads, keyTokens: tk } = g;
  const kind = split !== "auto"
    ? split
    : kvHeads % workers === 0 || kvHeads >= 4 * workers
    ? "heads"
    : "keys";
  const n = Math.min(workers, kind === "heads" ? kvHeads : tk);
  if (n <= 1) return [{ kind: "heads", kvHead0: 0, kvHead1: kvHeads }];
  const parts: Part[] = [];
  if (kind === "heads") {
    for (let i = 0; i < n; i++) {
      parts.push({
        kind: "heads",
        kvHead0: Math.floor(i * kvHeads / n),
        kvHead1: Math.floor((i + 1) * kvHeads / n),
      });
    }
    return parts;
  }
  const bounds = keyBounds(n, tk, g.queryTokens, o);
  for (let i = 0; i < n; i++) parts.push({ kind: "keys", key0: bounds[i]!, key1: bounds[i + 1]! });
  return parts;
}

/**
 * Boundaries `0 = b0 < b1 < … < bn = keyTokens` that give each part about the
 * same number of (query, key) pairs the causal mask leaves visible: key `j` is
 * read by the queries `i` with `keyOffset + j <= queryOffset + i`.
 */
function keyBounds(
  n: number,
  tk: number,
  tq: number,
  o: { causal: boolean; keyOffset: number; queryOffset: number },
): number[] {
  const weight = (j: number): number =>
    o.causal ? Math.max(0, Math.min(tq, tq - (o.keyOffset + j - o.queryOffset))) : tq;
  let total = 0;
  const uniform = !o.causal || weight(tk - 1) === tq;
  if (!uniform) { for (let j = 0; j < tk; j++) total += weight(j); }
  const bounds = [0];
  if (uniform || total === 0) {
    for (let i = 1; i < n; i++) bounds.push(Math.floor(i * tk / n));
  } else {
    let acc = 0, j = 0;
    for (let i = 1; i < n; i++) {
      const target = total * i / n;
      while (j < tk && acc + weight(j) <= target) acc += weight(j++);
      bounds.push(j);
    }
  }
  bounds.push(tk);
  // Every part gets at least one key (n <= tk).
  for (let i = 1; i < n; i++) bounds[i] = Math.max(bounds[i]!, bounds[i - 1]! + 1);
  for (let i = n - 1; i >= 1; i--) bounds[i] = Math.min(bounds[i]!, bounds[i + 1]! - 1);
  return bounds;
}

/** A view of `[start, end)` along one axis (no copy, no checks: the plan is in range). */
function narrow<D extends FloatDType>(
  t: Tensor<D>,
  axis: number,
  start: number,
  end: number,
): Tensor<D> {
  const shape = [...t.shape];
  shape[axis] = end - start;
  return { ...t, shape, offset: t.offset + start * t.strides[axis]! };
}

function requireShared(name: string, data: ArrayBufferView): void {
  if (!(data.buffer instanceof SharedArrayBuffer)) {
    throw new TypeError(
      `Cannot ${ACTION}: ${name} data must be backed by a SharedArrayBuffer, got ${
        describeValue(data.buffer)
      } (copy it once with shareTensor())`,
    );
  }
}

function arrayRef(a: Float32Array | Float16Array): ArrayRef {
  return {
    dtype: a instanceof Float16Array ? "f16" : "f32",
    byteOffset: a.byteOffset,
    length: a.length,
  };
}

function viewRef(t: Tensor): ViewRef {
  return { shape: [...t.shape], strides: [...t.strides], offset: t.offset };
}

function f32Tensor(data: Float32Array, shape: number[]): Tensor<"f32"> {
  return { dtype: "f32", shape, strides: contiguousStrides(shape), offset: 0, data };
}

function sharedF32(shape: number[], thd: boolean): Tensor<"f32"> {
  const data = new Float32Array(new SharedArrayBuffer(numel(shape) * 4));
  return { ...f32Tensor(data, shape), ...(thd ? { layout: "thd" as const } : {}) };
}

function rebuildError(e: { name: string; message: string }): Error {
  if (e.name === "TypeError") return new TypeError(e.message);
  if (e.name === "RangeError") return new RangeError(e.message);
  return new Error(e.message);
}

/** Resolves once the worker reports it has loaded; rejects if it fails to start. */
function ready(w: Worker, i: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    w.onmessage = () => resolve();
    w.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      reject(
        new Error(`Cannot create AttentionWorkers: worker ${i} failed to start: ${e.message}`),
      );
    };
  });
}
