// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import { denseAttention } from "../attention/dense.ts";
import type { AttentionState } from "../attention/types.ts";
import { randn } from "../tensor/random.ts";
import { contiguous } from "../tensor/tensor.ts";
import type { Tensor } from "../tensor/types.ts";
import { assertClose, maxAbsDiff } from "../tests/_util.ts";
import { type GpuContext, requestGpu, tryRequestGpu } from "./device.ts";
import { type DenseDecodeOptions, denseDecodeWebGpu } from "./dense_decode.ts";
import { GpuKvStore } from "./kv_store.ts";
import { downloadState, type GpuAttentionState, releaseState, upload } from "./tensor.ts";

const probe = await tryRequestGpu();
const gpu = probe.gpu;
if (gpu === undefined) {
  console.log(`gpu/dense_decode_test.ts: skipping WebGPU parity tests: ${probe.reason}`);
}
const ignore = gpu === undefined;

/** `|gpu − ref| <= atol + rtol·|ref|`, looser for f16 storage; returns the worst |Δ| of out. */
async function check(
  g: GpuContext,
  label: string,
  st: GpuAttentionState,
  ref: AttentionState,
  f16: boolean,
): Promise<number> {
  const got = await downloadState(g, st);
  releaseState(g, st);
  const tol = f16 ? { atol: 1e-4, rtol: 1e-3 } : { atol: 1e-5, rtol: 1e-4 };
  assertClose(got.out.data, ref.out.data, { ...tol, label: `${label} out` });
  assertClose(got.lse.data, ref.lse.data, { atol: tol.atol, rtol: 1e-5, label: `${label} lse` });
  return maxAbsDiff(got.out.data, ref.out.data);
}

/** Runs GPU decode over uploaded tensors and compares with denseAttention on the same (rounded) data. */
async function parity(
  g: GpuContext,
  [t, heads, kvHeads, d]: readonly number[],
  dtype: "f32" | "f16",
  options: DenseDecodeOptions = {},
  queryDtype: "f32" | "f16" = "f32",
): Promise<number> {
  const query = contiguous(randn([1, heads!, d!], { seed: t! + 1 }), queryDtype);
  const key = contiguous(randn([t!, kvHeads!, d!], { seed: t! + 2 }), dtype);
  const value = contiguous(randn([t!, kvHeads!, d!], { seed: t! + 3 }), dtype);
  const ref = denseAttention({ query, key, value }, {
    ...(options.scale !== undefined ? { scale: options.scale } : {}),
    ...(options.softCap !== undefined ? { softCap: options.softCap } : {}),
  });
  const st = denseDecodeWebGpu(
    g,
    { query: upload(g, query), key: upload(g, key), value: upload(g, value) },
    options,
  );
  const err = await check(
    g,
    `T=${t} H=${heads}/${kvHeads} d=${d} ${dtype}`,
    st,
    ref,
    dtype === "f16",
  );
  await g.checkErrors();
  return err;
}

for (const dtype of ["f32", "f16"] as const) {
  Deno.test({
    name: `denseDecodeWebGpu() equals denseAttention on awkward sizes (${dtype} KV)`,
    ignore,
    fn: async () => {
      let worst = 0;
      const shapes = dtype === "f32"
        ? [[4, 2, 8], [3, 1, 24], [8, 8, 16]]
        : [[4, 2, 8], [3, 1, 24]];
      for (const shape of shapes) {
        for (const t of [1, 3, 19, 97, 1177]) {
          worst = Math.max(worst, await parity(gpu!, [t, ...shape], dtype));
        }
      }
      console.log(`  ${dtype}: max |Δ out| = ${worst.toExponential(2)}`);
    },
  });
}

Deno.test({
  name: "denseDecodeWebGpu() merges many splits of many tiles exactly (split-K)",
  ignore,
  fn: async () => {
    for (const splitTokens of [1, 64, 200, 5000]) {
      await parity(gpu!, [1177, 3, 1, 24], "f16", { splitTokens });
    }
  },
});

Deno.test({
  name: "denseDecodeWebGpu() honours scale and soft-cap",
  ignore,
  fn: async () => {
    await parity(gpu!, [97, 8, 8, 16], "f32", { scale: 0.9, softCap: 2 });
  },
});

Deno.test({
  name: "denseDecodeWebGpu() serves groups larger than one workgroup (MQA with 24 heads)",
  ignore,
  fn: async () => {
    await parity(gpu!, [300, 24, 1, 8], "f32");
  },
});

Deno.test({
  name: "denseDecodeWebGpu() reads f16 queries and the bench shape (32/8 heads × 128)",
  ignore,
  fn: async () => {
    await parity(gpu!, [19, 4, 2, 8], "f16", {}, "f16");
    const err = await parity(gpu!, [1000, 32, 8, 128], "f16");
    console.log(`  32/8 × 128, 1000 tokens, f16 KV: max |Δ out| = ${err.toExponential(2)}`);
  },
});

Deno.test({
  name: "denseDecodeWebGpu() over a GpuKvStore split across buffers equals denseAttention",
  ignore,
  fn: async () => {
    const g = gpu!;
    const [t, heads, kvHeads, d] = [1177, 4, 2, 8];
    const key = randn([t, kvHeads, d], { seed: 5 }), value = randn([t, kvHeads, d], { seed: 6 });
    const query = randn([1, heads, d], { seed: 7 });
    for (const dtype of ["f32", "f16"] as const) {
      const elem = dtype === "f16" ? 2 : 4;
      const store = new GpuKvStore(g, {
        layers: 1,
        kvHeads,
        headDim: d,
        capacity: 1500,
        pageSize: 37,
        dtype,
        maxSegmentBytes: 3 * 37 * kvHeads * d * elem, // 3 pages per buffer
      });
      assert.ok(store.view(0).segments.length > 10);
      const q = upload(g, query);
      const empty = await downloadState(g, denseDecodeWebGpu(g, { query: q, kv: store.view(0) }));
      assert.ok(empty.out.data.every((x) => x === 0));
      assert.ok(empty.lse.data.every((x) => x === -Infinity));
      store.append(0, key, value);
      const ref = denseAttention({
        query,
        key: contiguous(key, dtype),
        value: contiguous(value, dtype),
      });
      await check(
        g,
        `store ${dtype}`,
        denseDecodeWebGpu(g, { query: q, kv: store.view(0) }),
        ref,
        dtype === "f16",
      );
      store.destroy();
    }
    await g.checkErrors();
  },
});

Deno.test({
  name: "a 131072-token GpuKvStore spans several buffers and decodes like denseAttention",
  ignore,
  fn: async () => {
    const g = gpu!;
    const [t, heads, kvHeads, d] = [131072, 2, 1, 8];
    // 2 MiB of f16 keys with 1 MiB buffers: the cache is split as a 128k × 8 × 128 one is at 128 MiB.
    const store = new GpuKvStore(g, {
      layers: 1,
      kvHeads,
      headDim: d,
      capacity: t,
      dtype: "f16",
      maxSegmentBytes: 2 ** 20,
    });
    assert.equal(store.view(0).segments.length, 2);
    const key = randn([t, kvHeads, d], { seed: 1 }), value = randn([t, kvHeads, d], { seed: 2 });
    store.append(0, key, value);
    const query = randn([1, heads, d], { seed: 3 });
    const ref = denseAttention({
      query,
      key: contiguous(key, "f16"),
      value: contiguous(value, "f16"),
    });
    const st = denseDecodeWebGpu(g, { query: upload(g, query), kv: store.view(0) });
    const err = await check(g, "128k store", st, ref, true);
    console.log(`  131072 tokens, 2 buffers: max |Δ out| = ${err.toExponential(2)}`);
    store.destroy();
    await g.checkErrors();
  },
});

Deno.test({
  name: "denseDecodeWebGpu() reads packed f16 on a device without shader-f16",
  ignore,
  fn: async () => {
    const g = await requestGpu({ features: { shaderF16: false } });
    try {
      assert.equal(g.features.shaderF16, false);
      await parity(g, [97, 4, 2, 8], "f16", {}, "f16");
    } finally {
      g.destroy();
    }
  },
});

Deno.test({
  name: "denseDecodeWebGpu() validates shapes",
  ignore,
  fn: () => {
    const g = gpu!;
    const up = (t: Tensor) => upload(g, t);
    const k = up(randn([5, 2, 8], { seed: 1 })), v = up(randn([5, 2, 8], { seed: 2 }));
    assert.throws(
      () => denseDecodeWebGpu(g, { query: up(randn([2, 4, 8], { seed: 3 })), key: k, value: v }),
      /query must have shape \[1, heads, headDim\]/,
    );
    assert.throws(
      () => denseDecodeWebGpu(g, { query: up(randn([1, 3, 8], { seed: 3 })), key: k, value: v }),
      RangeError,
    );
    assert.throws(
      () => denseDecodeWebGpu(g, { query: up(randn([1, 4, 4], { seed: 3 })), key: k, value: v }),
      /headDim/,
    );
    assert.throws(
      () =>
        denseDecodeWebGpu(g, { query: up(randn([1, 4, 8], { seed: 3 })), key: k, value: v }, {
          splitTokens: 0,
        }),
      RangeError,
    );
  },
});
