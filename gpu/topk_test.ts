// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import { Rng } from "../tensor/random.ts";
import { tensor } from "../tensor/tensor.ts";
import { tryRequestGpu } from "./device.ts";
import { download, upload } from "./tensor.ts";
import { topKWebGpu } from "./topk.ts";

const probe = await tryRequestGpu();
const gpu = probe.gpu;
if (gpu === undefined) {
  console.log(`gpu/topk_test.ts: skipping WebGPU parity tests: ${probe.reason}`);
}
const ignore = gpu === undefined;

const bits = new Uint32Array(1), f = new Float32Array(bits.buffer);
/** IEEE total order as an unsigned key, NaN lowest: the documented ranking. */
function rankKey(x: number): number {
  f[0] = x;
  const b = bits[0]!;
  if ((b & 0x7fffffff) > 0x7f800000) return 0;
  return b & 0x80000000 ? ~b >>> 0 : (b | 0x80000000) >>> 0;
}

/** The oracle: a stable sort of each row by descending rank, first k, optionally by index. */
function oracle(
  data: Float32Array,
  rows: number,
  n: number,
  k: number,
  order: "score" | "index",
): number[] {
  const out: number[] = [];
  for (let r = 0; r < rows; r++) {
    const ids = Array.from({ length: n }, (_, i) => i)
      .sort((a, b) => rankKey(data[r * n + b]!) - rankKey(data[r * n + a]!) || a - b)
      .slice(0, k);
    if (order === "index") ids.sort((a, b) => a - b);
    out.push(...ids);
  }
  return out;
}

Deno.test({
  name: "topKWebGpu() equals a stable descending sort, with ties, ±0, ±Infinity and NaN",
  ignore,
  fn: async () => {
    const g = gpu!;
    const rng = new Rng(7);
    for (
      const [rows, n, k] of [[1, 1, 1], [3, 19, 5], [2, 97, 97], [4, 1177, 13], [70, 300, 100], [
        1,
        2000,
        1024,
      ]]
    ) {
      const data = new Float32Array(rows! * n!);
      // Coarse values so that ties are common.
      for (let i = 0; i < data.length; i++) data[i] = Math.round(rng.normal() * 3) / 2;
      const specials = [NaN, -Infinity, Infinity, -0, 0, NaN];
      for (let i = 0; i < Math.min(specials.length, data.length); i++) {
        data[(i * 7919) % data.length] = specials[i]!;
      }
      // Index order only where k shares a sort size with another case (one pipeline each).
      for (
        const order of k === 13 || k === 100 ? ["score", "index"] as const : ["score"] as const
      ) {
        const r = topKWebGpu(g, upload(g, tensor(data, [rows!, n!])), k!, { order });
        const idx = await download(g, r.indices);
        const val = await download(g, r.values);
        assert.deepEqual(idx.shape, [rows, k]);
        const want = oracle(data, rows!, n!, k!, order);
        assert.deepEqual(Array.from(idx.data), want, `rows=${rows} n=${n} k=${k} ${order}`);
        for (let i = 0; i < want.length; i++) {
          const row = Math.floor(i / k!);
          assert.ok(Object.is(val.data[i], data[row * n! + want[i]!]), `value ${i}`);
        }
      }
    }
    await g.checkErrors();
  },
});

Deno.test({
  name: "topKWebGpu() takes every axis but the last as rows, and validates k",
  ignore,
  fn: async () => {
    const g = gpu!;
    const data = Float32Array.from({ length: 2 * 3 * 10 }, (_, i) => (i * 37) % 11);
    const r = topKWebGpu(g, upload(g, tensor(data, [2, 3, 10])), 3);
    assert.deepEqual(r.indices.shape, [2, 3, 3]);
    assert.deepEqual(
      Array.from((await download(g, r.indices)).data),
      oracle(data, 6, 10, 3, "score"),
    );
    const s = upload(g, tensor(data, [6, 10]));
    assert.throws(() => topKWebGpu(g, s, 0), RangeError);
    assert.throws(() => topKWebGpu(g, s, 11), RangeError);
    assert.throws(() => topKWebGpu(g, s, 2, { order: "random" as "score" }), TypeError);
    assert.throws(() => topKWebGpu(g, upload(g, tensor(new Int32Array(4), [4])), 1), TypeError);
    await g.checkErrors();
  },
});
