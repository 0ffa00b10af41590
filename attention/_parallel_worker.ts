// Copyright 2026 the longctx authors. MIT license.

/**
 * The worker side of {@linkcode AttentionWorkers} (private): receives one
 * {@linkcode WorkerJob} at a time, runs `denseAttentionInto` on its part of
 * the problem, and writes the result straight into shared memory.
 *
 * Protocol (see `parallel.ts`):
 *   worker → main  `{ ready: true }` once the module has loaded
 *   main → worker  a {@linkcode WorkerJob}
 *   worker → main  a {@linkcode WorkerReply} with the job's id (and an error, if any)
 *
 * Shared buffers are cached per slot (query, key, value, out, lse): the main
 * thread re-posts a `SharedArrayBuffer` only when it changes, so a decode step
 * posts a few hundred bytes of shapes and offsets.
 *
 * @module
 */

import type { AttentionState } from "./types.ts";
import type { FloatArray, FloatDType, Tensor } from "../tensor/types.ts";
import { denseAttentionInto } from "./dense.ts";

/** Where one typed array lives inside its shared buffer. */
export interface ArrayRef {
  /** Element type of the array. */
  dtype: FloatDType;
  /** Byte offset of element 0 in the buffer. */
  byteOffset: number;
  /** Number of elements. */
  length: number;
}

/** A strided view over one of the job's arrays (element units). */
export interface ViewRef {
  /** `[tokens, heads, headDim]`. */
  shape: number[];
  /** Element step of each axis. */
  strides: number[];
  /** Element index of `[0, 0, 0]`. */
  offset: number;
}

/** Index of each array in {@linkcode WorkerJob.buffers} and {@linkcode WorkerJob.arrays}. */
export const SLOT = { query: 0, key: 1, value: 2, out: 3, lse: 4 } as const;

/** One part of an attention call, as posted to a worker. */
export interface WorkerJob {
  /** Call id, echoed in the reply. */
  id: number;
  /** Shared buffers by slot; `null` means "the same buffer as in this worker's previous job". */
  buffers: (SharedArrayBuffer | null)[];
  /** Typed arrays by slot (query, key, value f32/f16; out, lse f32). */
  arrays: ArrayRef[];
  /** Query view of this part, `[queryTokens, partHeads, headDim]`. */
  query: ViewRef;
  /** Key view of this part, `[partKeys, partKvHeads, headDim]`. */
  key: ViewRef;
  /** Value view of this part, same shape as `key`. */
  value: ViewRef;
  /** Fully resolved dense-attention options (offsets absolute). */
  options: {
    causal: boolean;
    scale: number;
    softCap?: number;
    keyOffset: number;
    queryOffset: number;
  };
  /**
   * Destination: a contiguous `[queryTokens, heads, headDim]` block of `out`
   * starting at element `outOffset` (and `[queryTokens, heads]` of `lse` at
   * `lseOffset`); this part writes heads `[headStart, headStart + partHeads)`.
   */
  dest: { outOffset: number; lseOffset: number; heads: number; headStart: number };
}

/** The worker's answer to one {@linkcode WorkerJob}. */
export interface WorkerReply {
  /** The job's id. */
  id: number;
  /** Set when the job threw. */
  error?: { name: string; message: string };
}

interface WorkerScope {
  onmessage: ((event: MessageEvent<WorkerJob>) => void) | null;
  postMessage(message: unknown): void;
}

const scope = globalThis as unknown as WorkerScope;

const buffers: (SharedArrayBuffer | undefined)[] = [];
const refs: (ArrayRef | undefined)[] = [];
const arrays: (FloatArray | undefined)[] = [];
/** Scratch for parts whose heads are not contiguous in the destination (prefill, head split). */
let scratch = new Float32Array(0);

function arrayFor(slot: number, buffer: SharedArrayBuffer | null, ref: ArrayRef): FloatArray {
  if (buffer !== null) buffers[slot] = buffer;
  const cached = refs[slot];
  if (
    buffer === null && cached !== undefined && cached.dtype === ref.dtype &&
    cached.byteOffset === ref.byteOffset && cached.length === ref.length
  ) return arrays[slot]!;
  const sab = buffers[slot]!;
  const a = ref.dtype === "f16"
    ? new Float16Array(sab, ref.byteOffset, ref.length)
    : new Float32Array(sab, ref.byteOffset, ref.length);
  refs[slot] = ref;
  arrays[slot] = a;
  return a;
}

function view(data: FloatArray, v: ViewRef, dtype: FloatDType): Tensor<FloatDType> {
  return { dtype, shape: v.shape, strides: v.strides, offset: v.offset, data } as Tensor<
    FloatDType
  >;
}

function f32State(out: Float32Array, lse: Float32Array, tq: number, h: number, d: number) {
  return {
    out: { dtype: "f32", shape: [tq, h, d], strides: [h * d, d, 1], offset: 0, data: out },
    lse: { dtype: "f32", shape: [tq, h], strides: [h, 1], offset: 0, data: lse },
  } satisfies AttentionState;
}

function run(job: WorkerJob): void {
  const a = job.arrays.map((ref, slot) => arrayFor(slot, job.buffers[slot] ?? null, ref));
  const query = view(a[SLOT.query]!, job.query, job.arrays[SLOT.query]!.dtype);
  const key = view(a[SLOT.key]!, job.key, job.arrays[SLOT.key]!.dtype);
  const value = view(a[SLOT.value]!, job.value, job.arrays[SLOT.value]!.dtype);
  const out = a[SLOT.out] as Float32Array, lse = a[SLOT.lse] as Float32Array;
  const [tq, hp, d] = job.query.shape as [number, number, number];
  const { outOffset, lseOffset, heads, headStart } = job.dest;
  const input = { query, key, value };

  if (hp === heads || tq <= 1) {
    // The part's rows are contiguous in the destination: write in place.
    const o0 = outOffset + headStart * d, l0 = lseOffset + headStart;
    const state = f32State(
      out.subarray(o0, o0 + tq * hp * d),
      lse.subarray(l0, l0 + tq * hp),
      tq,
      hp,
      d,
    );
    denseAttentionInto(state, input, job.options);
    return;
  }
  // Otherwise compute [tq, hp, d] into scratch, then scatter rows into [tq, heads, d].
  const need = tq * hp * (d + 1);
  if (scratch.length < need) scratch = new Float32Array(need);
  const so = scratch.subarray(0, tq * hp * d), sl = scratch.subarray(tq * hp * d, need);
  denseAttentionInto(f32State(so, sl, tq, hp, d), input, job.options);
  for (let t = 0; t < tq; t++) {
    const dst = outOffset + (t * heads + headStart) * d;
    out.set(so.subarray(t * hp * d, (t + 1) * hp * d), dst);
    lse.set(sl.subarray(t * hp, (t + 1) * hp), lseOffset + t * heads + headStart);
  }
}

scope.onmessage = (event: MessageEvent<WorkerJob>): void => {
  const job = event.data;
  let reply: WorkerReply;
  try {
    run(job);
    reply = { id: job.id };
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    reply = { id: job.id, error: { name: e.name, message: e.message } };
  }
  scope.postMessage(reply);
};

scope.postMessage({ ready: true });
