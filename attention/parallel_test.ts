// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import { AttentionWorkers, type ParallelAttentionOptions, shareTensor } from "./parallel.ts";
import { denseAttention } from "./dense.ts";
import type { AttentionInput } from "./types.ts";
import { randn, sliceAxis, zeros } from "../tensor/mod.ts";
import { assertClose } from "../tests/_util.ts";

function sharedQkv(
  tq: number,
  tk: number,
  h: number,
  hkv: number,
  d: number,
  seed: number,
  dtype: "f32" | "f16" = "f32",
): AttentionInput {
  return {
    query: shareTensor(randn([tq, h, d], { seed, layout: "thd", dtype })),
    key: shareTensor(randn([tk, hkv, d], { seed: seed + 1, layout: "thd", dtype })),
    value: shareTensor(randn([tk, hkv, d], { seed: seed + 2, layout: "thd", dtype })),
  };
}

async function assertParity(
  workers: AttentionWorkers,
  input: AttentionInput,
  options: ParallelAttentionOptions,
  label: string,
): Promise<void> {
  const { split: _, ...denseOptions } = options;
  const want = denseAttention(input, denseOptions);
  const got = await workers.attention(input, options);
  assert.ok(got.out.data.buffer instanceof SharedArrayBuffer, label);
  assert.deepEqual(got.out.shape, want.out.shape, label);
  assert.deepEqual(got.lse.shape, want.lse.shape, label);
  assertClose(got.out.data, want.out.data, { atol: 1e-5, rtol: 1e-5, label });
  assertClose(got.lse.data, want.lse.data, { atol: 1e-5, rtol: 1e-6, label: label + " lse" });
}

Deno.test("AttentionWorkers.attention() equals denseAttention on awkward sizes and every split", async () => {
  using workers = await AttentionWorkers.create({ workers: 2 });
  const cases: Array<[number, number, number, number, number]> = [
    // [queryTokens, keyTokens, heads, kvHeads, headDim]
    [1, 1, 4, 1, 8], // decode, one key: split-K degenerates to one part
    [1, 19, 8, 2, 16],
    [1, 1177, 6, 3, 32], // kvHeads 3 on 2 workers: uneven heads, or split-K
    [1, 1177, 32, 8, 16],
    [1, 1177, 4, 1, 64], // MQA decode: split-K only
    [19, 19, 4, 1, 8], // prefill
    [19, 19, 6, 3, 8],
    [19, 1177, 8, 2, 8], // chunked prefill at the end of a long cache
    [1177, 1177, 2, 1, 8], // causal prefill, split-K balanced by visible pairs
    [1177, 1177, 8, 8, 4],
  ];
  let seed = 100;
  for (const [tq, tk, h, hkv, d] of cases) {
    const input = sharedQkv(tq, tk, h, hkv, d, seed);
    seed += 3;
    for (const causal of [true, false]) {
      for (const split of ["auto", "heads", "keys"] as const) {
        const label = `tq=${tq} tk=${tk} h=${h} hkv=${hkv} d=${d} causal=${causal} split=${split}`;
        await assertParity(workers, input, { causal, split }, label);
      }
    }
  }
});

Deno.test("AttentionWorkers.attention() honours offsets, scale and soft-cap on both splits", async () => {
  using workers = await AttentionWorkers.create({ workers: 3 });
  const input = sharedQkv(7, 99, 6, 3, 8, 7);
  for (
    const o of [
      { scale: 0.3 },
      { softCap: 2.5 },
      { queryOffset: 20 }, // keys after 26 are masked for every query
      { queryOffset: 5, keyOffset: 3 },
      { keyOffset: 200, queryOffset: 0 }, // every query before every key: fully masked
      { queryOffset: -3 }, // some queries see nothing
    ]
  ) {
    for (const split of ["heads", "keys"] as const) {
      await assertParity(workers, input, { ...o, split }, `${JSON.stringify(o)} split=${split}`);
    }
  }
  const masked = await workers.attention(input, { keyOffset: 200, queryOffset: 0, split: "keys" });
  assert.ok(masked.lse.data.every((x) => x === -Infinity));
  assert.ok(masked.out.data.every((x) => x === 0));
});

Deno.test("AttentionWorkers.attention() reads f16 inputs and strided shared views", async () => {
  using workers = await AttentionWorkers.create({ workers: 2 });
  const input = sharedQkv(3, 300, 4, 2, 16, 11, "f16");
  for (const split of ["heads", "keys"] as const) {
    await assertParity(workers, input, { split }, `f16 split=${split}`);
  }
  // A window of a shared cache is still shared: no copy needed.
  const windowed = {
    query: input.query,
    key: sliceAxis(input.key, 0, 100, 250),
    value: sliceAxis(input.value, 0, 100, 250),
  };
  await assertParity(workers, windowed, { split: "keys" }, "window of a shared cache");
});

Deno.test("AttentionWorkers.attentionInto() reuses a state and follows changing buffers", async () => {
  using workers = await AttentionWorkers.create({ workers: 2 });
  const a = sharedQkv(1, 500, 8, 2, 16, 21);
  const b = sharedQkv(1, 700, 8, 2, 16, 31);
  const state = await workers.attention(a);
  const outBuffer = state.out.data.buffer;
  // Alternate inputs so each worker sees its cached buffers change and change back.
  for (const [input, split] of [[b, "heads"], [a, "keys"], [b, "keys"], [a, "heads"]] as const) {
    await workers.attentionInto(state, input, { split });
    const want = denseAttention(input);
    assertClose(state.out.data, want.out.data, { atol: 1e-5, rtol: 1e-5, label: split });
    assertClose(state.lse.data, want.lse.data, { atol: 1e-5, rtol: 1e-6, label: split });
  }
  assert.equal(state.out.data.buffer, outBuffer);
});

Deno.test("AttentionWorkers runs concurrent calls one at a time with correct results", async () => {
  using workers = await AttentionWorkers.create({ workers: 2 });
  const inputs = [0, 1, 2, 3, 4, 5].map((i) =>
    sharedQkv(1 + (i % 3) * 4, 257, 4, 1, 8, 40 + 3 * i)
  );
  const got = await Promise.all(inputs.map((x) => workers.attention(x, { split: "keys" })));
  got.forEach((g, i) => {
    const want = denseAttention(inputs[i]!);
    assertClose(g.out.data, want.out.data, { atol: 1e-5, rtol: 1e-5, label: `call ${i}` });
  });
});

Deno.test("AttentionWorkers.attention() rejects inputs not in shared memory with a TypeError", async () => {
  using workers = await AttentionWorkers.create({ workers: 1 });
  const shared = sharedQkv(1, 4, 2, 1, 4, 1);
  const plain = randn([4, 1, 4], { seed: 2 });
  await assert.rejects(
    workers.attention({ ...shared, key: plain }),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message ===
        "Cannot compute attention in workers: key data must be backed by a SharedArrayBuffer, got [object ArrayBuffer] (copy it once with shareTensor())",
  );
  const state = { out: zeros("f32", [1, 2, 4]), lse: zeros("f32", [1, 2]) };
  await assert.rejects(
    workers.attentionInto(state, shared),
    /state\.out data must be backed by a SharedArrayBuffer/,
  );
  await assert.rejects(
    workers.attention(shared, { split: "rows" as "keys" }),
    /split must be one of "auto", "heads", "keys", got "rows"/,
  );
  await assert.rejects(workers.attention(shared, { scale: NaN }), RangeError);
  await assert.rejects(
    workers.attention({ ...shared, query: shareTensor(randn([1, 2, 5])) }),
    /query headDim \(5\) does not match key headDim \(4\)/,
  );
  // The pool still works after rejected calls.
  await assertParity(workers, shared, {}, "after errors");
});

Deno.test("AttentionWorkers rejects calls after close() and during a closing call", async () => {
  const workers = await AttentionWorkers.create({ workers: 2 });
  assert.equal(workers.size, 2);
  const input = sharedQkv(64, 2000, 8, 2, 32, 5);
  const running = workers.attention(input);
  const queued = workers.attention(input);
  await new Promise((r) => setTimeout(r, 10));
  workers.close();
  await assert.rejects(running, /Cannot compute attention in workers: AttentionWorkers/);
  await assert.rejects(queued, /Cannot compute attention in workers: AttentionWorkers/);
  await assert.rejects(
    workers.attention(input),
    (e: unknown) =>
      e instanceof Error &&
      e.message === "Cannot compute attention in workers: AttentionWorkers is closed",
  );
  workers.close(); // idempotent
});

Deno.test("AttentionWorkers.create() validates the worker count", async () => {
  await assert.rejects(
    AttentionWorkers.create({ workers: 0 }),
    (e: unknown) =>
      e instanceof RangeError &&
      e.message === "Cannot create AttentionWorkers: workers must be a positive integer, got 0",
  );
  using workers = await AttentionWorkers.create();
  assert.equal(workers.size, navigator.hardwareConcurrency);
});

Deno.test("shareTensor() copies any view into contiguous shared memory", () => {
  const t = randn([5, 3, 4], { seed: 9, layout: "thd", dtype: "f16" });
  const view = sliceAxis(t, 1, 1, 3);
  const s = shareTensor(view);
  assert.ok(s.data.buffer instanceof SharedArrayBuffer);
  assert.ok(s.data instanceof Float16Array);
  assert.deepEqual(s.shape, [5, 2, 4]);
  assert.deepEqual(s.strides, [8, 4, 1]);
  assert.equal(s.layout, "thd");
  for (let i = 0; i < 5; i++) {
    for (let h = 0; h < 2; h++) {
      for (let k = 0; k < 4; k++) {
        assert.equal(s.data[i * 8 + h * 4 + k], t.data[i * 12 + (h + 1) * 4 + k]);
      }
    }
  }
  assert.throws(
    () => shareTensor(zeros("i32", [2]) as never),
    /Cannot share tensor: dtype must be "f32" or "f16", got "i32"/,
  );
});
