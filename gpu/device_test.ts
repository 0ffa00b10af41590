// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import { denseAttention } from "../attention/dense.ts";
import { randn } from "../tensor/random.ts";
import { selectAxis, tensor } from "../tensor/tensor.ts";
import { assertClose } from "../tests/_util.ts";
import {
  chooseBackend,
  type GpuContext,
  GpuDeviceLostError,
  GpuValidationError,
  requestGpu,
  tryRequestGpu,
  WebGpuUnavailableError,
} from "./device.ts";
import { denseAttentionAuto } from "./dense.ts";
import { denseDecodeWebGpu } from "./dense_decode.ts";
import { download, releaseTensor, upload } from "./tensor.ts";

const probe = await tryRequestGpu();
const gpu = probe.gpu;
if (gpu === undefined) {
  console.log(`gpu/device_test.ts: skipping WebGPU tests: ${probe.reason}`);
}
const ignore = gpu === undefined;
const noAdapter = { requestAdapter: () => Promise.resolve(null) };

Deno.test("tryRequestGpu() reports a missing adapter instead of throwing", async () => {
  const r = await tryRequestGpu({ provider: noAdapter });
  assert.equal(r.gpu, undefined);
  assert.match(r.reason, /no adapter/);
  const failing = { requestAdapter: () => Promise.reject(new Error("driver exploded")) };
  const f = await tryRequestGpu({ provider: failing });
  assert.equal(f.gpu, undefined);
  assert.match(f.reason, /requestAdapter\(\) failed: driver exploded/);
});

Deno.test("requestGpu() throws WebGpuUnavailableError without an adapter", async () => {
  await assert.rejects(() => requestGpu({ provider: noAdapter }), WebGpuUnavailableError);
});

Deno.test("chooseBackend() follows the documented rule", async () => {
  const cpu = await chooseBackend({ backend: "cpu" });
  assert.equal(cpu.backend, "cpu");
  assert.equal(cpu.gpu, undefined);
  const none = await chooseBackend({ request: { provider: noAdapter } });
  assert.equal(none.backend, "cpu");
  assert.match(none.reason, /^auto: .*no adapter/);
  const small = await chooseBackend({ work: 10, request: { provider: noAdapter } });
  assert.match(small.reason, /below minWork/);
  await assert.rejects(
    () => chooseBackend({ backend: "webgpu", request: { provider: noAdapter } }),
    WebGpuUnavailableError,
  );
  await assert.rejects(
    // @ts-expect-error: an unknown backend name
    () => chooseBackend({ backend: "cuda" }),
    (e: unknown) => e instanceof TypeError && /got "cuda"/.test(e.message),
  );
});

Deno.test({
  name: "requestGpu() probes features and raises limits to the adapter's",
  ignore,
  fn: async () => {
    const g = gpu!;
    console.log(
      `  adapter: ${g.adapter.description} software=${g.adapter.software} features=${
        JSON.stringify(g.features)
      }`,
    );
    assert.equal(g.features.shaderF16, g.device.features.has("shader-f16"));
    assert.equal(g.features.timestampQuery, g.device.features.has("timestamp-query"));
    const adapter = (await navigator.gpu.requestAdapter())!;
    assert.equal(g.limits.maxStorageBufferBindingSize, adapter.limits.maxStorageBufferBindingSize);
    assert.equal(
      g.limits.maxComputeWorkgroupStorageSize,
      adapter.limits.maxComputeWorkgroupStorageSize,
    );
    const plain = await requestGpu({ limits: "default", features: { shaderF16: false } });
    try {
      assert.equal(plain.limits.maxComputeWorkgroupStorageSize, 16384);
      assert.equal(plain.features.shaderF16, false);
    } finally {
      plain.destroy();
    }
  },
});

Deno.test({
  name: "chooseBackend() keeps a software adapter on the CPU unless allowed",
  ignore,
  fn: async () => {
    const g = gpu!;
    const c = await chooseBackend({ gpu: g });
    if (g.adapter.software) {
      assert.equal(c.backend, "cpu");
      assert.match(c.reason, /slower than the CPU reference/);
    } else {
      assert.equal(c.backend, "webgpu");
    }
    const allowed = await chooseBackend({ gpu: g, allowSoftware: true });
    assert.equal(allowed.backend, "webgpu");
    assert.equal(allowed.gpu, g);
    const forced = await chooseBackend({ backend: "webgpu", gpu: g });
    assert.equal(forced.gpu, g);
  },
});

Deno.test({
  name: "GpuContext.pipeline() caches by kernel and config and labels what it creates",
  ignore,
  fn: () => {
    const g = gpu!;
    const build = (c: { n: number }) =>
      `@group(0) @binding(0) var<storage, read_write> x: array<f32>;
       @compute @workgroup_size(${c.n}) fn main(@builtin(global_invocation_id) i: vec3u) {
         if (i.x < arrayLength(&x)) { x[i.x] = x[i.x] + 1.0; }
       }`;
    const before = g.pipelinesCompiled, hits = g.pipelineCacheHits;
    const a = g.pipeline("test-add", { n: 8 }, build);
    const b = g.pipeline("test-add", { n: 8 }, build);
    const c = g.pipeline("test-add", { n: 16 }, build);
    assert.equal(a, b);
    assert.notEqual(a, c);
    assert.equal(g.pipelinesCompiled, before + 2);
    assert.equal(g.pipelineCacheHits, hits + 1);
    assert.match(a.label, /^longctx test-add\{n=8\}$/);
  },
});

Deno.test({
  name: "BufferPool reuses buffers by size and usage and counts bytes",
  ignore,
  fn: () => {
    const pool = gpu!.pool;
    const s0 = pool.stats();
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
    const a = pool.acquire(1000, usage, "test");
    assert.equal(a.size, 1024);
    const s1 = pool.stats();
    assert.equal(s1.bytesInUse - s0.bytesInUse, 1024);
    pool.release(a);
    const b = pool.acquire(900, usage, "test");
    assert.equal(b, a);
    assert.equal(pool.stats().reused, s1.reused + 1);
    const c = pool.acquire(900, usage | GPUBufferUsage.COPY_SRC, "test");
    assert.notEqual(c, a);
    pool.release(b);
    pool.release(c);
    assert.throws(() => pool.release(c), TypeError);
    const s2 = pool.stats();
    assert.equal(s2.bytesFree, s2.bytesAllocated - s2.bytesInUse);
    assert.equal(s2.bytesInUse, s0.bytesInUse);
  },
});

Deno.test({
  name: "upload() and download() round-trip f32, f16 and i32 tensors of odd sizes",
  ignore,
  fn: async () => {
    const g = gpu!;
    for (const n of [1, 3, 19, 97]) {
      const f = randn([n], { seed: n });
      const back = await download(g, upload(g, f));
      assert.deepEqual(Array.from(back.data), Array.from(f.data));
      const h = await download(g, upload(g, f, { dtype: "f16" }));
      assert.ok(h.data instanceof Float16Array);
      assert.deepEqual(Array.from(h.data), Array.from(Float16Array.from(f.data)));
      const ints = tensor(Int32Array.from({ length: n }, (_, i) => i * 7 - 3), [n]);
      assert.deepEqual(
        Array.from((await download(g, upload(g, ints))).data),
        Array.from(ints.data),
      );
    }
    // A strided view (one head of a [tokens, heads, dim] tensor) uploads contiguously.
    const k = randn([5, 3, 4], { seed: 9, layout: "thd" });
    const head = selectAxis(k, 1, 2);
    const up = upload(g, head);
    assert.deepEqual(up.shape, [5, 4]);
    const down = await download(g, up);
    for (let t = 0; t < 5; t++) {
      for (let i = 0; i < 4; i++) assert.equal(down.data[t * 4 + i], k.data[t * 12 + 8 + i]);
    }
    releaseTensor(g, up);
    assert.throws(() => upload(g, tensor(new Int32Array(2), [2]), { dtype: "f32" }), TypeError);
    await g.checkErrors();
  },
});

Deno.test({
  name: "GpuContext.checkErrors() surfaces shader errors as GpuValidationError",
  ignore,
  fn: async () => {
    const g = gpu!;
    g.pipeline("test-broken", { v: 1 }, () => "fn main( {");
    await assert.rejects(() => g.checkErrors(), (e: unknown) => {
      assert.ok(e instanceof GpuValidationError);
      assert.match(e.messages.join("\n"), /expected/);
      return true;
    });
    await g.checkErrors(); // the errors were consumed
  },
});

Deno.test({
  name: "GpuContext.profile() times compute passes with timestamp queries",
  ignore,
  fn: async () => {
    const g = gpu!;
    const q = upload(g, randn([1, 4, 16], { seed: 1 }));
    const k = upload(g, randn([300, 2, 16], { seed: 2 }));
    const v = upload(g, randn([300, 2, 16], { seed: 3 }));
    const p = await g.profile(() => denseDecodeWebGpu(g, { query: q, key: k, value: v }));
    if (g.features.timestampQuery) {
      assert.equal(p.passes, 1);
      assert.ok(p.gpuNs! > 0, `gpuNs ${p.gpuNs}`);
    } else {
      assert.equal(p.gpuNs, undefined);
    }
    await g.checkErrors();
  },
});

async function lostContext(): Promise<GpuContext> {
  const g = await requestGpu();
  g.device.destroy(); // a loss the context did not ask for
  await g.device.lost;
  await new Promise((r) => setTimeout(r, 0));
  return g;
}

Deno.test({
  name: "a lost device throws GpuDeviceLostError and auto falls back to the CPU",
  ignore,
  fn: async () => {
    const g = await lostContext();
    assert.equal(g.lost?.reason, "destroyed");
    const q = randn([1, 4, 8], { seed: 1 });
    assert.throws(() => upload(g, q), GpuDeviceLostError);
    const input = {
      query: q,
      key: randn([50, 2, 8], { seed: 2 }),
      value: randn([50, 2, 8], { seed: 3 }),
    };
    const c = await chooseBackend({ gpu: g, allowSoftware: true, minWork: 0 });
    assert.equal(c.backend, "cpu");
    assert.match(c.reason, /lost/);
    const r = await denseAttentionAuto(input, { gpu: g, allowSoftware: true, minWork: 0 });
    assert.equal(r.choice.backend, "cpu");
    assertClose(r.state.out.data, denseAttention(input).out.data, { atol: 0, rtol: 0 });
    await assert.rejects(
      () => chooseBackend({ backend: "webgpu", gpu: g }),
      WebGpuUnavailableError,
    );
  },
});

Deno.test({
  name: "denseAttentionAuto() runs on the GPU when allowed and matches denseAttention",
  ignore,
  fn: async () => {
    const input = {
      query: randn([1, 8, 32], { seed: 1 }),
      key: randn([333, 2, 32], { seed: 2 }),
      value: randn([333, 2, 32], { seed: 3 }),
    };
    const r = await denseAttentionAuto(input, { gpu: gpu!, allowSoftware: true, minWork: 0 });
    assert.equal(r.choice.backend, "webgpu");
    const ref = denseAttention(input);
    assertClose(r.state.out.data, ref.out.data, { atol: 1e-5, rtol: 1e-4, label: "out" });
    assertClose(r.state.lse.data, ref.lse.data, { atol: 1e-5, rtol: 1e-5, label: "lse" });
    await gpu!.checkErrors();
  },
});

Deno.test({
  name: "GpuContext.destroy() makes later calls throw GpuDeviceLostError",
  ignore,
  fn: () => {
    const g = gpu!;
    g.destroy();
    assert.equal(g.lost?.reason, "destroyed");
    assert.throws(() => g.uniform(new ArrayBuffer(16)), GpuDeviceLostError);
  },
});
