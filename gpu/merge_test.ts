// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import { denseAttention } from "../attention/dense.ts";
import { mergeStates } from "../attention/merge_states.ts";
import type { AttentionState } from "../attention/types.ts";
import { randn } from "../tensor/random.ts";
import { sliceAxis } from "../tensor/tensor.ts";
import { assertClose } from "../tests/_util.ts";
import { type GpuContext, tryRequestGpu } from "./device.ts";
import { mergeStatesWebGpu } from "./merge.ts";
import { downloadState, type GpuAttentionState, upload } from "./tensor.ts";

const probe = await tryRequestGpu();
const gpu = probe.gpu;
if (gpu === undefined) {
  console.log(`gpu/merge_test.ts: skipping WebGPU parity tests: ${probe.reason}`);
}
const ignore = gpu === undefined;

const toGpu = (g: GpuContext, s: AttentionState): GpuAttentionState => ({
  out: upload(g, s.out) as GpuAttentionState["out"],
  lse: upload(g, s.lse) as GpuAttentionState["lse"],
});

Deno.test({
  name: "mergeStatesWebGpu() equals mergeStates, and the merge of a split equals the whole",
  ignore,
  fn: async () => {
    const g = gpu!;
    for (
      const [tq, heads, kvHeads, d, tk] of [[1, 4, 2, 8, 97], [3, 3, 1, 24, 19], [
        19,
        2,
        2,
        130,
        1177,
      ]]
    ) {
      const query = randn([tq!, heads!, d!], { seed: 1 });
      const key = randn([tk!, kvHeads!, d!], { seed: 2 }),
        value = randn([tk!, kvHeads!, d!], { seed: 3 });
      const cuts = [0, 1, Math.floor(tk! / 3), tk!];
      const parts = cuts.slice(1).map((end, i) =>
        denseAttention({
          query,
          key: sliceAxis(key, 0, cuts[i]!, end),
          value: sliceAxis(value, 0, cuts[i]!, end),
        }, { causal: false })
      );
      const got = await downloadState(g, mergeStatesWebGpu(g, parts.map((p) => toGpu(g, p))));
      const ref = mergeStates(parts);
      assertClose(got.out.data, ref.out.data, {
        atol: 1e-6,
        rtol: 1e-5,
        label: "out vs mergeStates",
      });
      assertClose(got.lse.data, ref.lse.data, {
        atol: 1e-6,
        rtol: 1e-6,
        label: "lse vs mergeStates",
      });
      const whole = denseAttention({ query, key, value }, { causal: false });
      assertClose(got.out.data, whole.out.data, { atol: 1e-5, rtol: 1e-4, label: "out vs whole" });
    }
    await g.checkErrors();
  },
});

Deno.test({
  name: "mergeStatesWebGpu() gives empty states no weight and empty rows 0 and -Infinity",
  ignore,
  fn: async () => {
    const g = gpu!;
    const query = randn([4, 2, 8], { seed: 1 });
    const key = randn([6, 2, 8], { seed: 2 }), value = randn([6, 2, 8], { seed: 3 });
    // Causal over 3 keys with query t at position t − 1: query 0 sees no key (lse = -Infinity),
    // query t > 0 sees keys 0..t − 1. A state over no keys at all is empty in every row.
    const a = denseAttention({
      query,
      key: sliceAxis(key, 0, 0, 3),
      value: sliceAxis(value, 0, 0, 3),
    }, {
      queryOffset: -1,
    });
    assert.equal(a.lse.data[0], -Infinity);
    const empty = denseAttention({
      query,
      key: sliceAxis(key, 0, 0, 0),
      value: sliceAxis(value, 0, 0, 0),
    });
    assert.ok(empty.lse.data.every((x) => x === -Infinity));
    const got = await downloadState(
      g,
      mergeStatesWebGpu(g, [toGpu(g, empty), toGpu(g, a), toGpu(g, empty)]),
    );
    assertClose(got.out.data, a.out.data, { atol: 1e-6, rtol: 1e-6 });
    assertClose(got.lse.data, a.lse.data, { atol: 1e-6, rtol: 1e-6 });
    const none = await downloadState(g, mergeStatesWebGpu(g, [toGpu(g, empty), toGpu(g, empty)]));
    assert.ok(none.out.data.every((x) => x === 0));
    assert.ok(none.lse.data.every((x) => x === -Infinity));
    assert.throws(() => mergeStatesWebGpu(g, []), TypeError);
    const other = toGpu(g, denseAttention({ query: randn([1, 2, 8], { seed: 1 }), key, value }));
    assert.throws(() => mergeStatesWebGpu(g, [toGpu(g, a), other]), TypeError);
    await g.checkErrors();
  },
});
