// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import { randn } from "../tensor/random.ts";
import { contiguous, sliceAxis } from "../tensor/tensor.ts";
import { requestGpu, tryRequestGpu } from "./device.ts";
import { GpuKvStore } from "./kv_store.ts";
import { releaseTensor, upload } from "./tensor.ts";

const probe = await tryRequestGpu();
const gpu = probe.gpu;
if (gpu === undefined) {
  console.log(`gpu/kv_store_test.ts: skipping WebGPU tests: ${probe.reason}`);
}
const ignore = gpu === undefined;

Deno.test("GpuKvStore.plan() splits a 128k-token cache across bindings", () => {
  const limits = { maxStorageBufferBindingSize: 2 ** 27, maxBufferSize: 2 ** 31 - 1 };
  const f16 = GpuKvStore.plan({ layers: 2, kvHeads: 8, headDim: 128, capacity: 131072 }, limits);
  assert.equal(f16.dtype, "f16");
  assert.equal(f16.segmentsPerLayer, 2);
  assert.equal(f16.segmentBytes, 2 ** 27);
  assert.equal(f16.totalBytes, 2 * (4 * 2 ** 27 + 131072 * 4));
  const f32 = GpuKvStore.plan(
    { layers: 1, kvHeads: 8, headDim: 128, capacity: 131072, dtype: "f32" },
    limits,
  );
  assert.equal(f32.segmentsPerLayer, 4);
  const odd = GpuKvStore.plan({ layers: 1, kvHeads: 1, headDim: 7, capacity: 10 }, limits);
  assert.equal(odd.rowStride, 8);
  assert.equal(
    GpuKvStore.plan({ layers: 1, kvHeads: 1, headDim: 7, capacity: 10 }, limits, false).dtype,
    "f32",
  );
  assert.throws(
    () =>
      GpuKvStore.plan(
        {
          layers: 1,
          kvHeads: 8,
          headDim: 128,
          capacity: 1024,
          pageSize: 1024,
          maxSegmentBytes: 1e6,
        },
        limits,
      ),
    (e: unknown) => e instanceof RangeError && /one page needs 2097152 bytes/.test(e.message),
  );
  assert.throws(
    () => GpuKvStore.plan({ layers: 0, kvHeads: 1, headDim: 8, capacity: 8 }, limits),
    RangeError,
  );
  assert.throws(
    () =>
      GpuKvStore.plan(
        { layers: 1, kvHeads: 1, headDim: 8, capacity: 8, dtype: "bf16" as "f16" },
        limits,
      ),
    TypeError,
  );
});

/** Appends `sizes` chunks to both stores' layer and checks the read-back against the inputs. */
async function roundTrip(dtype: "f32" | "f16", headDim: number, viaGpu: boolean): Promise<void> {
  const g = gpu!;
  const kvHeads = 3, pageSize = 5;
  // Segments of 2 pages: appends straddle pages and buffers.
  const elem = dtype === "f16" ? 2 : 4;
  const rowStride = dtype === "f16" ? headDim + (headDim & 1) : headDim;
  const store = new GpuKvStore(g, {
    layers: 2,
    kvHeads,
    headDim,
    capacity: 130,
    pageSize,
    dtype,
    maxSegmentBytes: 2 * kvHeads * pageSize * rowStride * elem,
  });
  assert.equal(store.view(1).segments.length, 13);
  const created = g.pool.stats().created;
  const sizes = [1, 3, 19, 97];
  const keys = randn([120, kvHeads, headDim], { seed: 1, layout: "thd" });
  const values = randn([120, kvHeads, headDim], { seed: 2, layout: "thd" });
  let at = 0;
  for (const n of sizes) {
    const k = sliceAxis(keys, 0, at, at + n), v = sliceAxis(values, 0, at, at + n);
    if (viaGpu) {
      const gk = upload(g, k), gv = upload(g, v);
      store.appendGpu(1, gk, gv);
      releaseTensor(g, gk);
      releaseTensor(g, gv);
    } else {
      store.append(1, k, v);
    }
    at += n;
  }
  if (!viaGpu) assert.equal(g.pool.stats().created, created, "host appends allocate no buffer");
  assert.equal(store.length(1), 120);
  assert.equal(store.length(0), 0);
  const back = await store.read(1);
  const want = (t: typeof keys) => Array.from(contiguous(t, dtype).data);
  assert.deepEqual(Array.from(back.keys.data), want(keys));
  assert.deepEqual(Array.from(back.values.data), want(values));
  assert.deepEqual(Array.from(back.positions), Array.from({ length: 120 }, (_, i) => i));
  const part = await store.read(1, 7, 31);
  assert.deepEqual(
    Array.from(part.keys.data),
    Array.from(contiguous(sliceAxis(keys, 0, 7, 31), dtype).data),
  );
  store.destroy();
  await g.checkErrors();
}

for (const dtype of ["f32", "f16"] as const) {
  for (const headDim of [8, 7]) {
    Deno.test({
      name:
        `GpuKvStore.append() writes ${dtype} rows (headDim ${headDim}) in place across pages and buffers`,
      ignore,
      fn: () => roundTrip(dtype, headDim, false),
    });
    Deno.test({
      name:
        `GpuKvStore.appendGpu() scatters ${dtype} GPU tensors (headDim ${headDim}) like append()`,
      ignore,
      fn: () => roundTrip(dtype, headDim, true),
    });
  }
}

Deno.test({
  name: "GpuKvStore.appendGpu() writes packed f16 on a device without shader-f16",
  ignore,
  fn: async () => {
    const g = await requestGpu({ features: { shaderF16: false } });
    try {
      const store = new GpuKvStore(g, {
        layers: 1,
        kvHeads: 2,
        headDim: 5,
        capacity: 40,
        pageSize: 4,
        dtype: "f16",
      });
      const k = randn([23, 2, 5], { seed: 3 }), v = randn([23, 2, 5], { seed: 4 });
      const [k1, k2] = [sliceAxis(k, 0, 0, 17), sliceAxis(k, 0, 17, 23)];
      const [v1, v2] = [sliceAxis(v, 0, 0, 17), sliceAxis(v, 0, 17, 23)];
      store.appendGpu(0, upload(g, k1, { dtype: "f16" }), upload(g, v1, { dtype: "f16" }));
      store.appendGpu(0, upload(g, k2), upload(g, v2));
      const back = await store.read(0);
      assert.deepEqual(Array.from(back.keys.data), Array.from(contiguous(k, "f16").data));
      assert.deepEqual(Array.from(back.values.data), Array.from(contiguous(v, "f16").data));
      await g.checkErrors();
    } finally {
      g.destroy();
    }
  },
});

Deno.test({
  name: "GpuKvStore keeps positions and consecutive-run starts for RoPE on read",
  ignore,
  fn: () => {
    const store = new GpuKvStore(gpu!, { layers: 1, kvHeads: 1, headDim: 4, capacity: 16 });
    store.append(0, randn([3, 1, 4], { seed: 1 }), randn([3, 1, 4], { seed: 2 }), 10);
    store.append(0, randn([2, 1, 4], { seed: 3 }), randn([2, 1, 4], { seed: 4 }), [20, 21]);
    store.append(0, randn([1, 1, 4], { seed: 5 }), randn([1, 1, 4], { seed: 6 }));
    const v = store.view(0);
    assert.deepEqual(Array.from(v.positions!.host), [10, 11, 12, 20, 21, 22]);
    assert.deepEqual(Array.from(v.positions!.runStart), [0, 0, 0, 3, 3, 3]);
    store.clear(0);
    assert.equal(store.length(0), 0);
    store.destroy();
  },
});

Deno.test({
  name: "GpuKvStore rejects bad input before writing anything",
  ignore,
  fn: () => {
    const store = new GpuKvStore(gpu!, { layers: 1, kvHeads: 2, headDim: 4, capacity: 8 });
    const k = randn([5, 2, 4], { seed: 1 }), v = randn([5, 2, 4], { seed: 2 });
    store.append(0, k, v);
    assert.throws(() => store.append(0, k, v), /layer holds 5 of 8 tokens, got 5 more/);
    assert.equal(store.length(0), 5);
    assert.throws(() => store.append(1, k, v), RangeError);
    assert.throws(() => store.append(0, randn([1, 3, 4], { seed: 1 }), v), TypeError);
    assert.throws(() => store.append(0, sliceAxis(k, 0, 0, 1), v), TypeError);
    assert.throws(
      () => store.append(0, sliceAxis(k, 0, 0, 1), sliceAxis(v, 0, 0, 1), [-1]),
      RangeError,
    );
    assert.throws(
      () => store.append(0, sliceAxis(k, 0, 0, 2), sliceAxis(v, 0, 0, 2), [1]),
      TypeError,
    );
    assert.equal(store.length(0), 5);
    store.destroy();
    assert.throws(() => store.view(0), /destroyed/);
  },
});
