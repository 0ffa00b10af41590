// Copyright 2026 the longctx authors. MIT license.

import assert from "node:assert/strict";
import { argmax, Sampler } from "./sampler.ts";

Deno.test("Sampler.nextU32() is run.c's xorshift* (known answers)", () => {
  // From a Python transcription of run.c's random_u32 with 64-bit wrap-around:
  //   s ^= s >> 12; s ^= (s << 25) mod 2^64; s ^= s >> 27; (s * 0x2545F4914F6CDD1D mod 2^64) >> 32
  const s42 = new Sampler(4, { seed: 42 });
  assert.deepEqual(
    Array.from({ length: 5 }, () => s42.nextU32()),
    [1456360119, 3359763283, 3393612768, 4054632243, 3283045847],
  );
  const s1 = new Sampler(4, { seed: 1 });
  assert.deepEqual(Array.from({ length: 3 }, () => s1.nextU32()), [
    1206177355,
    2882512552,
    3117485455,
  ]);
  const f = new Sampler(4, { seed: 1 }).nextF32();
  assert.equal(f, (1206177355 >>> 8) / 16777216);
});

Deno.test("Sampler at temperature 0 is argmax, first on ties", () => {
  const s = new Sampler(5, { temperature: 0 });
  assert.equal(s.sample([0.1, 0.9, 0.9, -1, 0]), 1);
  assert.equal(argmax([-3, -2, -5]), 1);
  assert.equal(argmax([2]), 0);
});

Deno.test("Sampler draws follow softmax(logits / T) (multinomial, top-p off)", () => {
  const logits = [0, Math.log(2), Math.log(3), Math.log(4)]; // probabilities 0.1 … 0.4
  const s = new Sampler(4, { temperature: 1, topP: 1, seed: 9 });
  const counts = [0, 0, 0, 0];
  const n = 20000;
  for (let i = 0; i < n; i++) counts[s.sample(logits)]!++;
  for (let k = 0; k < 4; k++) {
    const p = (k + 1) / 10, sd = Math.sqrt((p * (1 - p)) / n);
    assert.ok(Math.abs(counts[k]! / n - p) < 5 * sd, `token ${k}: ${counts[k]! / n} vs ${p}`);
  }
  // Temperature 2 flattens: p ∝ sqrt(k + 1).
  const hot = new Sampler(4, { temperature: 2, topP: 0, seed: 3 });
  const c2 = [0, 0, 0, 0];
  for (let i = 0; i < n; i++) c2[hot.sample(logits)]!++;
  const z = [1, 2, 3, 4].reduce((a, k) => a + Math.sqrt(k), 0);
  for (let k = 0; k < 4; k++) {
    const p = Math.sqrt(k + 1) / z, sd = Math.sqrt((p * (1 - p)) / n);
    assert.ok(Math.abs(c2[k]! / n - p) < 5 * sd, `T=2 token ${k}`);
  }
});

Deno.test("Sampler top-p keeps only the smallest prefix whose mass exceeds p", () => {
  // Probabilities 0.5, 0.3, 0.15, 0.05: top-p 0.7 keeps the first two (0.8 > 0.7).
  const logits = [0.5, 0.3, 0.15, 0.05].map(Math.log);
  const s = new Sampler(4, { temperature: 1, topP: 0.7, seed: 5 });
  const counts = [0, 0, 0, 0];
  const n = 10000;
  for (let i = 0; i < n; i++) counts[s.sample(logits)]!++;
  assert.equal(counts[2]! + counts[3]!, 0);
  const p0 = 0.5 / 0.8, sd = Math.sqrt((p0 * (1 - p0)) / n);
  assert.ok(Math.abs(counts[0]! / n - p0) < 5 * sd, `${counts[0]! / n} vs ${p0}`);
  // A near-uniform distribution with a tiny top-p leaves no candidate above the cutoff.
  const flat = new Sampler(512, { temperature: 1, topP: 0.001, seed: 1 });
  assert.equal(flat.sample(new Float32Array(512)), 0);
});

Deno.test("Sampler validates its options and inputs", () => {
  assert.throws(() => new Sampler(0), RangeError);
  assert.throws(() => new Sampler(4, { temperature: -1 }), /temperature must be >= 0/);
  assert.throws(() => new Sampler(4, { temperature: NaN }), RangeError);
  assert.throws(() => new Sampler(4, { seed: 1.5 }), /seed must be/);
  assert.throws(() => new Sampler(4).sample([1, 2]), /logits must have length 4, got 2/);
  // Seed 0 is replaced by 1, as a zero xorshift state would stay zero.
  assert.equal(new Sampler(4, { seed: 0 }).nextU32(), new Sampler(4, { seed: 1 }).nextU32());
});
