// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import { randn } from "../tensor/random.ts";
import { contiguous } from "../tensor/tensor.ts";
import type { Tensor } from "../tensor/types.ts";
import { assertClose } from "../tests/_util.ts";
import { tryRequestGpu } from "./device.ts";
import { scoreKeysWebGpu } from "./score.ts";
import { download, upload } from "./tensor.ts";

const probe = await tryRequestGpu();
const gpu = probe.gpu;
if (gpu === undefined) {
  console.log(`gpu/score_test.ts: skipping WebGPU parity tests: ${probe.reason}`);
}
const ignore = gpu === undefined;

/** The formula in f64: scores[t, h, j] = scale · Σ_i q·k (or Σ_i max(q·lo, q·hi)). */
function naiveScores(q: Tensor, lo: Tensor, hi: Tensor | undefined, scale: number): Float64Array {
  const [tq, heads, d] = q.shape as [number, number, number];
  const [n, kvHeads] = lo.shape as [number, number];
  const group = heads / kvHeads;
  const out = new Float64Array(tq * heads * n);
  for (let t = 0; t < tq; t++) {
    for (let h = 0; h < heads; h++) {
      const kh = Math.floor(h / group);
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let i = 0; i < d; i++) {
          const qi = q.data[(t * heads + h) * d + i]!;
          const a = qi * lo.data[(j * kvHeads + kh) * d + i]!;
          s += hi === undefined ? a : Math.max(a, qi * hi.data[(j * kvHeads + kh) * d + i]!);
        }
        out[(t * heads + h) * n + j] = s * scale;
      }
    }
  }
  return out;
}

Deno.test({
  name: "scoreKeysWebGpu() equals the dot-product formula on awkward sizes, GQA, f32 and f16",
  ignore,
  fn: async () => {
    const g = gpu!;
    for (const dtype of ["f32", "f16"] as const) {
      for (
        const [tq, heads, kvHeads, d, n] of [[1, 4, 2, 8, 1], [1, 32, 8, 128, 97], [
          3,
          3,
          1,
          24,
          1177,
        ], [2, 40, 2, 8, 19]]
      ) {
        const q = randn([tq!, heads!, d!], { seed: n! });
        const keys = contiguous(randn([n!, kvHeads!, d!], { seed: n! + 1 }), dtype);
        const got = await download(
          g,
          scoreKeysWebGpu(g, { query: upload(g, q), keys: upload(g, keys) }, { scale: 0.25 }),
        );
        assert.deepEqual(got.shape, [tq, heads, n]);
        assertClose(got.data, naiveScores(q, keys, undefined, 0.25), {
          atol: 1e-5,
          rtol: 1e-4,
          label: `${dtype} ${tq}x${heads}/${kvHeads}x${d} n=${n}`,
        });
      }
    }
    await g.checkErrors();
  },
});

Deno.test({
  name: "scoreKeysWebGpu() computes Quest's upper bound from per-page key bounds",
  ignore,
  fn: async () => {
    const g = gpu!;
    const q = randn([1, 8, 16], { seed: 1 });
    const a = randn([37, 2, 16], { seed: 2 }), b = randn([37, 2, 16], { seed: 3 });
    const lo = contiguous(a), hi = contiguous(b);
    for (let i = 0; i < lo.data.length; i++) {
      const x = lo.data[i]!, y = hi.data[i]!;
      lo.data[i] = Math.min(x, y);
      hi.data[i] = Math.max(x, y);
    }
    const got = await download(
      g,
      scoreKeysWebGpu(g, { query: upload(g, q), keys: upload(g, lo), keysMax: upload(g, hi) }),
    );
    assertClose(got.data, naiveScores(q, lo, hi, 1), { atol: 1e-5, rtol: 1e-4 });
    // The bound is never below the score of any key inside the box (here: the box corners' dots).
    const dots = naiveScores(q, lo, undefined, 1);
    for (let i = 0; i < dots.length; i++) assert.ok(got.data[i]! >= dots[i]! - 1e-5);
    assert.throws(
      () =>
        scoreKeysWebGpu(g, {
          query: upload(g, q),
          keys: upload(g, lo),
          keysMax: upload(g, randn([36, 2, 16], { seed: 1 })),
        }),
      TypeError,
    );
    assert.throws(
      () =>
        scoreKeysWebGpu(g, {
          query: upload(g, randn([1, 3, 16], { seed: 1 })),
          keys: upload(g, lo),
        }),
      RangeError,
    );
    await g.checkErrors();
  },
});
