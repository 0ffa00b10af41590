// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import { denseAttention, type DenseAttentionOptions } from "../attention/dense.ts";
import { randn } from "../tensor/random.ts";
import { contiguous } from "../tensor/tensor.ts";
import { assertClose, maxAbsDiff, naiveAttention } from "../tests/_util.ts";
import { type GpuContext, tryRequestGpu } from "./device.ts";
import { denseAttentionWebGpu } from "./dense.ts";
import { densePrefillWebGpu } from "./dense_prefill.ts";
import { GpuKvStore } from "./kv_store.ts";
import { downloadState, releaseState, upload } from "./tensor.ts";
import { prefillTiles } from "./_wgsl/dense_prefill.ts";

const probe = await tryRequestGpu();
const gpu = probe.gpu;
if (gpu === undefined) {
  console.log(`gpu/dense_prefill_test.ts: skipping WebGPU parity tests: ${probe.reason}`);
}
const ignore = gpu === undefined;

async function parity(
  g: GpuContext,
  [tq, tk, heads, kvHeads, d]: readonly number[],
  dtype: "f32" | "f16",
  options: DenseAttentionOptions = {},
): Promise<number> {
  const query = randn([tq!, heads!, d!], { seed: tq! + 11 });
  const key = contiguous(randn([tk!, kvHeads!, d!], { seed: tk! + 12 }), dtype);
  const value = contiguous(randn([tk!, kvHeads!, d!], { seed: tk! + 13 }), dtype);
  const ref = denseAttention({ query, key, value }, options);
  const st = densePrefillWebGpu(
    g,
    { query: upload(g, query), key: upload(g, key), value: upload(g, value) },
    options,
  );
  const got = await downloadState(g, st);
  releaseState(g, st);
  const tol = dtype === "f16" ? { atol: 1e-4, rtol: 1e-3 } : { atol: 1e-5, rtol: 1e-4 };
  const label = `tq=${tq} tk=${tk} H=${heads}/${kvHeads} d=${d} ${dtype} ${
    JSON.stringify(options)
  }`;
  assertClose(got.out.data, ref.out.data, { ...tol, label: `${label} out` });
  assertClose(got.lse.data, ref.lse.data, { atol: tol.atol, rtol: 1e-5, label: `${label} lse` });
  await g.checkErrors();
  return maxAbsDiff(got.out.data, ref.out.data);
}

for (const dtype of ["f32", "f16"] as const) {
  Deno.test({
    name: `densePrefillWebGpu() equals causal denseAttention on awkward sizes (${dtype} KV)`,
    ignore,
    fn: async () => {
      let worst = 0;
      for (const shape of [[4, 2, 8], [3, 1, 24]]) {
        for (const t of [1, 3, 19, 97, 200]) {
          worst = Math.max(worst, await parity(gpu!, [t, t, ...shape], dtype));
        }
      }
      console.log(`  ${dtype}: max |Δ out| = ${worst.toExponential(2)}`);
    },
  });
}

Deno.test({
  name: "densePrefillWebGpu() handles offsets, non-causal, fully masked rows, soft-cap",
  ignore,
  fn: async () => {
    const g = gpu!;
    await parity(g, [19, 19, 4, 2, 8], "f32", { causal: false });
    await parity(g, [5, 40, 4, 2, 8], "f32"); // chunked prefill: the chunk is the cache's tail
    await parity(g, [1, 40, 4, 2, 8], "f32");
    await parity(g, [33, 20, 4, 2, 8], "f32"); // more queries than keys: early rows see nothing
    await parity(g, [12, 30, 4, 2, 8], "f32", { queryOffset: 3, keyOffset: 7 });
    await parity(g, [19, 19, 4, 2, 8], "f32", { scale: 0.7, softCap: 3 });
    // Independent oracle, not only the reference kernel: the three-loop formula in f64.
    const query = randn([7, 4, 8], { seed: 1 }), key = randn([9, 2, 8], { seed: 2 });
    const value = randn([9, 2, 8], { seed: 3 });
    const got = await downloadState(
      g,
      densePrefillWebGpu(g, {
        query: upload(g, query),
        key: upload(g, key),
        value: upload(g, value),
      }),
    );
    const naive = naiveAttention(query, key, value);
    assertClose(got.out.data, naive.out, { atol: 1e-5, rtol: 1e-4, label: "naive out" });
    assertClose(got.lse.data, naive.lse, { atol: 1e-5, rtol: 1e-5, label: "naive lse" });
  },
});

Deno.test({
  name: "densePrefillWebGpu() at headDim 128 with f16 tiles and GQA",
  ignore,
  fn: async () => {
    const e = await parity(gpu!, [130, 130, 8, 2, 128], "f16");
    console.log(`  d=128 f16: max |Δ out| = ${e.toExponential(2)}`);
  },
});

Deno.test("prefillTiles() fills 16 KiB of K/V tiles and shrinks to the device limit", () => {
  assert.deepEqual(prefillTiles(128, "f32", 32768), { tileRows: 16, tileKeys: 16 });
  assert.deepEqual(prefillTiles(128, "f16", 32768), { tileRows: 16, tileKeys: 32 });
  assert.deepEqual(prefillTiles(64, "f32", 32768), { tileRows: 16, tileKeys: 32 });
  const small = prefillTiles(128, "f32", 16384);
  assert.ok(small.tileKeys < 16);
  const bytes = 4 * small.tileRows * 128 + 2 * 4 * small.tileKeys * 128 +
    4 * small.tileRows * small.tileKeys + 16 * small.tileRows;
  assert.ok(bytes <= 16384, `${bytes}`);
});

Deno.test({
  name: "densePrefillWebGpu() over a multi-buffer GpuKvStore merges the segments exactly",
  ignore,
  fn: async () => {
    const g = gpu!;
    const [t, heads, kvHeads, d] = [150, 4, 2, 8];
    const key = randn([t, kvHeads, d], { seed: 1 }), value = randn([t, kvHeads, d], { seed: 2 });
    const query = randn([20, heads, d], { seed: 3 });
    const store = new GpuKvStore(g, {
      layers: 1,
      kvHeads,
      headDim: d,
      capacity: 200,
      pageSize: 16,
      dtype: "f32",
      maxSegmentBytes: 2 * 16 * kvHeads * d * 4,
    });
    store.append(0, key, value);
    const got = await downloadState(
      g,
      densePrefillWebGpu(g, { query: upload(g, query), kv: store.view(0) }),
    );
    const ref = denseAttention({ query, key, value });
    assertClose(got.out.data, ref.out.data, { atol: 1e-5, rtol: 1e-4, label: "out" });
    assertClose(got.lse.data, ref.lse.data, { atol: 1e-5, rtol: 1e-5, label: "lse" });
    store.destroy();
    await g.checkErrors();
  },
});

Deno.test({
  name: "denseAttentionWebGpu() takes denseAttention's input and options",
  ignore,
  fn: async () => {
    const input = {
      query: randn([1, 4, 8], { seed: 1 }),
      key: randn([50, 2, 8], { seed: 2 }),
      value: randn([50, 2, 8], { seed: 3 }),
    };
    for (const options of [{}, { causal: false }, { queryOffset: 20 }]) {
      const got = await denseAttentionWebGpu(gpu!, input, options);
      const ref = denseAttention(input, options);
      assertClose(got.out.data, ref.out.data, { atol: 1e-5, rtol: 1e-4 });
      assertClose(got.lse.data, ref.lse.data, { atol: 1e-5, rtol: 1e-5 });
    }
    await assert.rejects(
      () => denseAttentionWebGpu(gpu!, input, { causal: "yes" as unknown as boolean }),
      TypeError,
    );
  },
});
