// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import { DEFAULT_WASM_HEAP_MAX_BYTES, WasmHeap } from "./wasm_heap.ts";
import { denseAttention } from "./dense.ts";
import { copyInto, randn, sliceAxis, zeros } from "../tensor/mod.ts";

Deno.test("WasmHeap.create() picks the fastest kernel this engine runs and honours maxBytes", async () => {
  const heap = await WasmHeap.create({ maxBytes: 3 << 20 });
  // V8 (Deno) validates relaxed SIMD; the other kinds are fallbacks for other engines.
  assert.equal(heap.kernel, "relaxed-simd");
  assert.equal(heap.maxBytes, 3 << 20);
  assert.ok(heap.byteLength > 0 && heap.byteLength <= heap.maxBytes);
  assert.ok(heap.memory.buffer instanceof SharedArrayBuffer);
  assert.equal(heap.bytesAllocated(), 0);
  // maxBytes is rounded up to whole 64 KiB pages.
  assert.equal((await WasmHeap.create({ maxBytes: 100_000 })).maxBytes, 131072);
  assert.equal(DEFAULT_WASM_HEAP_MAX_BYTES, 1 << 30);
  for (const kernel of ["simd", "js"] as const) {
    assert.equal((await WasmHeap.create({ maxBytes: 1 << 20, kernel })).kernel, kernel);
  }
});

Deno.test("WasmHeap.create() rejects bad options with errors naming the option", async () => {
  await assert.rejects(() => WasmHeap.create({ maxBytes: 0 }), {
    name: "RangeError",
    message: /maxBytes must be a positive integer, got 0/,
  });
  await assert.rejects(() => WasmHeap.create({ maxBytes: 2 ** 32 + 1 }), {
    name: "RangeError",
    message: /maxBytes must be at most 4 GiB \(4294967296\), got 4294967297/,
  });
  await assert.rejects(() => WasmHeap.create({ kernel: "gpu" as never }), {
    name: "TypeError",
    message: /kernel must be one of "auto", "relaxed-simd", "simd", "js", got "gpu"/,
  });
});

Deno.test("WasmHeap.alloc() returns zeroed, 64-byte aligned tensors in the heap's memory", async () => {
  const heap = await WasmHeap.create({ maxBytes: 4 << 20 });
  const a = heap.alloc("f32", [3, 2, 5], { layout: "thd" });
  const b = heap.alloc("f16", [7]);
  const empty = heap.alloc("f32", [0, 4]);
  assert.ok(a.data instanceof Float32Array && b.data instanceof Float16Array);
  assert.deepEqual(a.shape, [3, 2, 5]);
  assert.deepEqual(a.strides, [10, 5, 1]);
  assert.equal(a.layout, "thd");
  assert.equal(a.data.length, 30);
  assert.equal(empty.data.length, 0);
  for (const t of [a, b, empty]) {
    assert.equal(t.data.buffer, heap.memory.buffer);
    assert.equal(t.data.byteOffset % 64, 0);
    assert.ok(heap.owns(t));
  }
  assert.ok(a.data.every((x) => x === 0));
  // Blocks do not overlap: 30 f32 round up to 128 bytes, 7 f16 to 64, the empty one to 64.
  assert.equal(b.data.byteOffset - a.data.byteOffset, 128);
  assert.equal(empty.data.byteOffset - b.data.byteOffset, 64);
  assert.equal(heap.bytesAllocated(), 128 + 64 + 64);
  assert.ok(!heap.owns(zeros("f32", [2])));
  assert.ok(!heap.owns(null as never));
});

Deno.test("WasmHeap.free() reuses and coalesces blocks, and refuses foreign or freed tensors", async () => {
  const heap = await WasmHeap.create({ maxBytes: 4 << 20 });
  const a = heap.alloc("f32", [16]); // 64 bytes
  const b = heap.alloc("f32", [32]); // 128 bytes
  const c = heap.alloc("f32", [16]);
  heap.free(a);
  heap.free(b);
  // a and b coalesce into one 192-byte block, which first fit hands out again.
  const ab = heap.alloc("f32", [48]);
  assert.equal(ab.data.byteOffset, a.data.byteOffset);
  // A view (sliceAxis) shares the block: freeing it frees the whole tensor.
  heap.free(sliceAxis(ab, 0, 8, 20));
  assert.throws(() => heap.free(ab), {
    name: "TypeError",
    message: /must be a live allocation of this heap, got a freed or unknown block at byte/,
  });
  assert.throws(() => heap.free(zeros("f32", [4])), {
    name: "TypeError",
    message: /got a tensor from elsewhere/,
  });
  const other = await WasmHeap.create({ maxBytes: 1 << 20 });
  assert.throws(() => other.free(c), TypeError);
  assert.ok(!other.owns(c));
  heap.free(c);
  assert.equal(heap.bytesAllocated(), 0);
});

Deno.test("WasmHeap.alloc() grows the memory without detaching earlier tensors", async () => {
  const heap = await WasmHeap.create({ maxBytes: 64 << 20 });
  const before = heap.byteLength;
  const small = heap.alloc("f32", [4]);
  small.data.set([1, 2, 3, 4]);
  const big = heap.alloc("f32", [4 << 20]); // 16 MiB: more than the initial memory
  assert.ok(heap.byteLength > before);
  assert.deepEqual(Array.from(small.data), [1, 2, 3, 4]); // the old view still reads the memory
  assert.ok(heap.owns(small) && heap.owns(big));
  assert.notEqual(small.data.buffer, big.data.buffer); // a new SharedArrayBuffer object…
  // …over the same bytes: a write through one view is seen through a view of the new buffer.
  small.data[0] = 42;
  assert.equal(new Float32Array(heap.memory.buffer, small.data.byteOffset, 1)[0], 42);
  heap.free(small);
  heap.free(big);
});

Deno.test("WasmHeap.alloc() rejects bad input and allocations past maxBytes", async () => {
  const heap = await WasmHeap.create({ maxBytes: 1 << 20 });
  assert.throws(() => heap.alloc("i8" as never, [2]), {
    name: "TypeError",
    message: /dtype must be "f32" or "f16", got "i8"/,
  });
  assert.throws(() => heap.alloc("f32", [2, -1]), {
    name: "RangeError",
    message: /shape\[1\] must be a non-negative integer, got -1/,
  });
  assert.throws(() => heap.alloc("f32", 3 as never), {
    name: "TypeError",
    message: /shape must be an array, got 3/,
  });
  assert.throws(() => heap.alloc("f32", [2, 3], { layout: "thd" }), {
    name: "TypeError",
    message: /layout "thd" needs rank 3, got rank 2/,
  });
  assert.throws(() => heap.alloc("f32", [1 << 20]), {
    name: "RangeError",
    message: /needs 4194304 bytes, but only \d+ of maxBytes 1048576 can be made free/,
  });
  // A failed allocation leaks nothing: the whole heap is still there to use.
  assert.equal(heap.bytesAllocated(), 0);
  const t = heap.alloc("f32", [200_000]);
  assert.equal(t.data.length, 200_000);
});

Deno.test("WasmHeap tensors are ordinary tensors for the rest of the library", async () => {
  const heap = await WasmHeap.create({ maxBytes: 4 << 20, kernel: "js" });
  const key = heap.alloc("f32", [20, 2, 8], { layout: "thd" });
  const value = heap.alloc("f16", [20, 2, 8], { layout: "thd" });
  copyInto(key, randn([20, 2, 8], { seed: 1 }));
  copyInto(value, randn([20, 2, 8], { seed: 2 }));
  const query = randn([2, 4, 8], { seed: 3 });
  const inHeap = denseAttention({ query, key, value });
  const outside = denseAttention({
    query,
    key: randn([20, 2, 8], { seed: 1 }),
    value: (() => {
      const v = zeros("f16", [20, 2, 8]);
      copyInto(v, randn([20, 2, 8], { seed: 2 }));
      return v;
    })(),
  });
  assert.deepEqual(Array.from(inHeap.out.data), Array.from(outside.out.data));
});
