// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Exact dense attention on WASM SIMD, over keys and values that live in a
 * `WasmHeap`: the fast CPU path next to its reference, `denseAttention`.
 *
 * @module
 */

import { zeros } from "../tensor/tensor.ts";
import type { Tensor } from "../tensor/types.ts";
import { describeValue, requireInt } from "../tensor/validate.ts";
import { checkState, denseAttentionInto, type DenseAttentionOptions } from "./dense.ts";
import type { AttentionInput, AttentionState } from "./types.ts";
import { checkQkv, resolveScale } from "./_validate.ts";
import { type HeapInternals, heapOfBuffer } from "./_wasm/kernel.ts";

/**
 * Query rows per KV head handed to one kernel call (prefill: 128 tokens of an MHA
 * head, or 32 tokens of a 4-head GQA group). Keys and values are read once per call.
 */
const ROWS_PER_CALL = 128;

/** Most query rows (over all KV heads) per call, bounding the workspace to 1024 rows. */
const LANES_PER_CALL = 1024;

/**
 * `denseAttention` computed by a WASM SIMD kernel (`f32x4`), reading
 * keys and values in place in a `WasmHeap`: same contract, same options, same
 * results up to f32 rounding.
 *
 * The kernel is the same blocked online softmax as the reference (64 keys per
 * block, running max and denominator per query row), written in
 * AssemblyScript (`attention/_wasm/attention.as.ts`). Query rows go to the
 * kernel in groups of four, one per lane of a `v128`, so the softmax update of
 * a block runs on four rows at once. Rows that read one KV head (a GQA group of
 * 4 or more, or four query tokens of a head in prefill) share every key and
 * value load; with fewer query heads per KV head (MHA or group 2 decode) a
 * group spans several KV heads and each lane streams its own. Groups are
 * ordered by KV head, so each block of a `"thd"` cache
 * `[tokens, kvHeads, headDim]` is read in address order. Any `headDim` works;
 * the last `headDim % 4` elements take a scalar tail. Logits are accumulated in
 * f32 (the reference sums them in f64 before rounding to f32), `exp` is a
 * vectorised polynomial (about 1 ulp), and the denominator is f64.
 *
 * Keys and values must be `f32` tensors allocated in one `WasmHeap`
 * (`heap.alloc()`): copying a cache in per call would cost as much as attending
 * over it. The query may live anywhere, in `f32` or `f16` (it is gathered into
 * the kernel's workspace). If the heap runs the `"js"` kernel (no WASM SIMD in
 * this engine), the call runs `denseAttentionInto` on the same tensors.
 *
 * Keys and values must be finite wherever they are read: inside a block, a row
 * skips keys past its causal limit by giving them weight 0, and `0 · ∞` is NaN.
 * Logits (`scale · q·k`) must be finite in f32.
 *
 * | cost | |
 * | --- | --- |
 * | time | O(queryTokens · keyTokens · heads · headDim), four multiply-adds per instruction |
 * | reads | K and V once per 128 query rows per KV head (at most 1024 rows in all; decode: once) |
 * | allocation | the result; the kernel's workspace lives in the heap and is reused |
 *
 * @see https://arxiv.org/abs/2205.14135 (FlashAttention's online softmax)
 * @param input Queries `[queryTokens, heads, headDim]` (f32 or f16, anywhere), keys and
 *   values `[keyTokens, kvHeads, headDim]` (f32, in one `WasmHeap`), last stride 1
 *   (views allowed).
 * @param options Causal mask, scale, soft-cap, offsets, as in `denseAttention`.
 * @returns `{ out: [queryTokens, heads, headDim], lse: [queryTokens, heads] }`, in
 *   ordinary (non-heap) memory. Fully masked rows get `out = 0`, `lse = -Infinity`.
 * @throws {TypeError} If keys or values are not f32 tensors in a `WasmHeap` (or not in
 *   the same one), or on the shape errors of `denseAttention`.
 * @throws {RangeError} As `denseAttention`, or if a key/value view reaches past its data.
 *
 * @example Decode over a cache in the heap equals the reference
 * ```ts
 * import { denseAttention, denseAttentionWasm, WasmHeap } from "@longctx/longctx/attention";
 * import { copyInto, randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const heap = await WasmHeap.create({ maxBytes: 8 << 20 });
 * const key = heap.alloc("f32", [100, 2, 16], { layout: "thd" });
 * const value = heap.alloc("f32", [100, 2, 16], { layout: "thd" });
 * copyInto(key, randn([100, 2, 16], { seed: 1 }));
 * copyInto(value, randn([100, 2, 16], { seed: 2 }));
 * const query = randn([1, 8, 16], { seed: 3 }); // GQA: 8 heads over 2 KV heads
 * const fast = denseAttentionWasm({ query, key, value });
 * const ref = denseAttention({ query, key, value });
 * fast.out.data.forEach((x, i) => assert.ok(Math.abs(x - ref.out.data[i]) < 1e-5));
 * ```
 */
export function denseAttentionWasm(
  input: AttentionInput,
  options: DenseAttentionOptions = {},
): AttentionState {
  const g = checkQkv("compute attention with WASM", input.query, input.key, input.value);
  const state: AttentionState = {
    out: zeros("f32", [g.queryTokens, g.heads, g.headDim], { layout: "thd" }),
    lse: zeros("f32", [g.queryTokens, g.heads]),
  };
  denseAttentionWasmInto(state, input, options);
  return state;
}

/**
 * {@linkcode denseAttentionWasm} writing into a caller-owned state (no allocation
 * once the heap's kernel workspace has grown to the problem size).
 *
 * @param state Destination: `out` `[queryTokens, heads, headDim]` and `lse`
 *   `[queryTokens, heads]`, contiguous f32, anywhere (written).
 * @param input Queries, keys and values as in {@linkcode denseAttentionWasm}.
 * @param options As in `denseAttention`.
 * @throws {TypeError} As {@linkcode denseAttentionWasm}, or for a wrongly shaped `state`.
 * @throws {RangeError} As {@linkcode denseAttentionWasm}.
 *
 * @example Reusing the output buffers across decode steps
 * ```ts
 * import { denseAttentionWasm, denseAttentionWasmInto, WasmHeap } from "@longctx/longctx/attention";
 * import { copyInto, randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const heap = await WasmHeap.create({ maxBytes: 1 << 20 });
 * const key = heap.alloc("f32", [9, 1, 4]);
 * const value = heap.alloc("f32", [9, 1, 4]);
 * copyInto(key, randn([9, 1, 4], { seed: 2 }));
 * copyInto(value, randn([9, 1, 4], { seed: 3 }));
 * const input = { query: randn([1, 2, 4], { seed: 1 }), key, value };
 * const state = denseAttentionWasm(input);
 * const before = Array.from(state.out.data);
 * denseAttentionWasmInto(state, input);
 * assert.deepEqual(Array.from(state.out.data), before);
 * ```
 */
export function denseAttentionWasmInto(
  state: AttentionState,
  input: AttentionInput,
  options: DenseAttentionOptions = {},
): void {
  const action = "compute attention with WASM";
  const { query, key, value } = input;
  const g = checkQkv(action, query, key, value);
  checkState(action, state, g.queryTokens, g.heads, g.headDim);
  const heap = requireHeapTensors(action, key, value);
  if (heap.kernel === undefined) {
    denseAttentionInto(state, input, options);
    return;
  }
  const kernel = heap.kernel;
  const { scale, softCap } = resolveScale(action, g.headDim, options.scale, options.softCap);
  const causal = options.causal ?? true;
  if (typeof causal !== "boolean") {
    throw new TypeError(`Cannot ${action}: causal must be a boolean, got ${describeValue(causal)}`);
  }
  const keyOffset = requireInt(action, "keyOffset", options.keyOffset ?? 0);
  const queryOffset = requireInt(
    action,
    "queryOffset",
    options.queryOffset ?? keyOffset + g.keyTokens - g.queryTokens,
  );

  const { queryTokens: tq, heads, headDim: d, keyTokens: tk, kvHeads, group } = g;
  const out = state.out.data, lse = state.lse.data;
  const rowsPerHead = tq * group; // row r of KV head kh: token ⌊r / group⌋, head kh·group + r % group
  if (rowsPerHead === 0) return;

  // Workspace (see the layout table in attention.as.ts), for `lanes` = slots rounded up to 4:
  // q, acc [lanes, pitch] f32; m [lanes] f32; l [lanes] f64; vis, heads [lanes] i32; s.
  const pitch = (d + 3) & ~3;
  const rowsPerCall = Math.min(
    rowsPerHead,
    ROWS_PER_CALL,
    Math.max(4, Math.floor(LANES_PER_CALL / kvHeads) & ~3),
  );
  const maxLanes = (kvHeads * rowsPerCall + 3) & ~3;
  const qBytes = maxLanes * pitch * 4;
  const base = heap.scratch(2 * qBytes + maxLanes * 20 + 16 * kernel.blockKeys());
  const qPtr = base, accPtr = qPtr + qBytes, mPtr = accPtr + qBytes;
  const lPtr = mPtr + maxLanes * 4, visPtr = lPtr + maxLanes * 8, headsPtr = visPtr + maxLanes * 4;
  const sPtr = headsPtr + maxLanes * 4;
  const { f32, f64, i32 } = heap.views();
  const q0 = qPtr >>> 2, acc0 = accPtr >>> 2, m0 = mPtr >>> 2, l0 = lPtr >>> 3;
  const vis0 = visPtr >>> 2, heads0 = headsPtr >>> 2;
  const kPtr = key.data.byteOffset + key.offset * 4;
  const vPtr = value.data.byteOffset + value.offset * 4;
  const [qs0, qs1] = query.strides as [number, number, number];
  const qd = query.data;

  for (let r0 = 0; r0 < rowsPerHead; r0 += rowsPerCall) {
    // Slots of this call, KV-head-major: slot = kh·n + rr is row r0 + rr of KV head kh.
    const n = Math.min(rowsPerCall, rowsPerHead - r0);
    const slots = kvHeads * n;
    const lanes = (slots + 3) & ~3;
    let count = 0;
    f32.fill(0, q0, q0 + lanes * pitch);
    for (let slot = 0; slot < slots; slot++) {
      const kh = Math.floor(slot / n), r = r0 + slot - kh * n;
      const t = Math.floor(r / group), h = kh * group + (r - t * group);
      const vis = causal ? Math.max(0, Math.min(tk, queryOffset + t - keyOffset + 1)) : tk;
      i32[vis0 + slot] = vis;
      i32[heads0 + slot] = kh;
      if (vis > count) count = vis;
      // Queries interleaved by 4-float chunk inside each group of four lanes.
      const dst = q0 + (slot & ~3) * pitch + (slot & 3) * 4;
      const src = query.offset + t * qs0 + h * qs1;
      for (let i = 0; i < d; i++) f32[dst + (i >> 2) * 16 + (i & 3)] = qd[src + i]!;
    }
    // Padding lanes see nothing; they copy the last head so a group of one head stays one.
    for (let slot = slots; slot < lanes; slot++) {
      i32[vis0 + slot] = 0;
      i32[heads0 + slot] = kvHeads - 1;
    }
    kernel.attend(
      qPtr,
      accPtr,
      mPtr,
      lPtr,
      visPtr,
      headsPtr,
      sPtr,
      lanes >> 2,
      d,
      kPtr,
      key.strides[0]! * 4,
      key.strides[1]! * 4,
      vPtr,
      value.strides[0]! * 4,
      value.strides[1]! * 4,
      count,
      scale,
      softCap,
    );
    // Finish rows: out = acc / l, lse = m + ln l; l = 0 (no visible key) gives 0 and −∞.
    for (let slot = 0; slot < slots; slot++) {
      const kh = Math.floor(slot / n), r = r0 + slot - kh * n;
      const t = Math.floor(r / group), h = kh * group + (r - t * group);
      const row = t * heads + h;
      const dst = row * d;
      const l = f64[l0 + slot]!;
      if (l === 0) {
        out.fill(0, dst, dst + d);
        lse[row] = -Infinity;
        continue;
      }
      const inv = 1 / l;
      const src = acc0 + slot * pitch;
      for (let i = 0; i < d; i++) out[dst + i] = f32[src + i]! * inv;
      lse[row] = f32[m0 + slot]! + Math.log(l);
    }
  }
}

/**
 * Requires keys and values to be f32 tensors in one `WasmHeap`, each view inside its
 * data, and returns that heap's internals.
 */
function requireHeapTensors(action: string, key: Tensor, value: Tensor): HeapInternals {
  let heap: HeapInternals | undefined;
  for (const [name, t] of [["key", key], ["value", value]] as const) {
    if (t.dtype !== "f32") {
      throw new TypeError(
        `Cannot ${action}: ${name} dtype must be "f32" (the WASM kernel reads f32; use denseAttention for f16), got ${
          describeValue(t.dtype)
        }`,
      );
    }
    const owner = heapOfBuffer(t.data.buffer);
    if (owner === undefined) {
      throw new TypeError(
        `Cannot ${action}: ${name} must be allocated in a WasmHeap (use heap.alloc() and write into it), got a tensor in ${
          describeValue(t.data.buffer)
        }`,
      );
    }
    if (heap !== undefined && owner !== heap) {
      throw new TypeError(
        `Cannot ${action}: key and value must be allocated in the same WasmHeap, got value in another heap`,
      );
    }
    heap = owner;
    requireInBounds(action, name, t);
  }
  return heap!;
}

/** Requires every element of a view to lie inside its `data`, since the kernel reads raw memory. */
function requireInBounds(action: string, name: string, t: Tensor): void {
  let lo = t.offset, hi = t.offset;
  for (let a = 0; a < t.shape.length; a++) {
    const n = t.shape[a]!;
    if (n === 0) return;
    const step = (n - 1) * t.strides[a]!;
    if (step < 0) lo += step;
    else hi += step;
  }
  if (lo < 0 || hi >= t.data.length) {
    throw new RangeError(
      `Cannot ${action}: ${name} view must lie inside its data (length ${t.data.length}), got elements ${lo}..${hi}`,
    );
  }
}
