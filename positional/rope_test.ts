// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import { Rope, type RopeLayout, type RopeOptions } from "./rope.ts";
import { dynamicNtkBase, ropeInvFreq, type RopeScaling, yarnInvFreq } from "./scaling.ts";
import { permute, randn, Rng, sliceAxis, tensor, zeros } from "../tensor/mod.ts";
import type { Tensor } from "../tensor/types.ts";

const HEAD_DIMS = [2, 8, 64, 128];
const POSITIONS = [0, 1, 19, 4097, 131071];
const LAYOUTS: RopeLayout[] = ["halves", "adjacent"];

const SCALINGS: RopeScaling[] = [
  { type: "none" },
  { type: "linear", factor: 4 },
  { type: "ntk", factor: 8 },
  { type: "dynamic-ntk", factor: 2, originalMaxPosition: 2048 },
  { type: "yarn", factor: 16, originalMaxPosition: 4096 },
  { type: "base", base: 500000 },
];

/** Passes a deliberately ill-typed value, as untyped JavaScript callers can. */
function bad<T>(value: unknown): T {
  return value as T;
}

function vec(rng: Rng, n: number): Float32Array {
  return rng.fillNormal(new Float32Array(n));
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

function norm(a: ArrayLike<number>): number {
  return Math.sqrt(dot(a, a));
}

function rotated(rope: Rope, x: Float32Array, position: number): Float32Array {
  const out = new Float32Array(x.length);
  rope.rotateRow(x, 0, out, 0, position);
  return out;
}

function assertAllClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  atol: number,
  rtol = 0,
  what = "",
): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!, e = expected[i]!;
    assert.ok(
      Math.abs(a - e) <= atol + rtol * Math.abs(e),
      `${what}: index ${i}: ${a} vs ${e} (|diff| ${Math.abs(a - e)})`,
    );
  }
}

/**
 * Textbook RoPE written independently of rope.ts: pair i at position p turns by
 * p · base^(-2i/d); pairs are (i, i + d/2) or (2i, 2i + 1).
 */
function referenceRotate(
  x: ArrayLike<number>,
  position: number,
  layout: RopeLayout,
  invFreq: ArrayLike<number>,
): Float64Array {
  const d = x.length, h = d / 2;
  const out = new Float64Array(d);
  for (let i = 0; i < h; i++) {
    const a = position * invFreq[i]!;
    const [j, k] = layout === "halves" ? [i, i + h] : [2 * i, 2 * i + 1];
    out[j] = x[j]! * Math.cos(a) - x[k]! * Math.sin(a);
    out[k] = x[j]! * Math.sin(a) + x[k]! * Math.cos(a);
  }
  return out;
}

Deno.test("Rope.rotateRow() matches the textbook rotation in both layouts", () => {
  const rng = new Rng(1);
  for (const d of HEAD_DIMS) {
    for (const layout of LAYOUTS) {
      for (const base of [10000, 500000]) {
        const rope = new Rope({ headDim: d, layout, base });
        const theta = Array.from({ length: d / 2 }, (_, i) => Math.pow(base, (-2 * i) / d));
        for (const p of [...POSITIONS, -3, 2.5, 1e9]) {
          const x = vec(rng, d);
          assertAllClose(
            rotated(rope, x, p),
            referenceRotate(x, p, layout, theta),
            1e-5,
            1e-6,
            `d=${d} ${layout} p=${p}`,
          );
        }
      }
    }
  }
});

Deno.test("Rope.rotateRow() preserves the norm of every vector", () => {
  const rng = new Rng(2);
  for (const d of HEAD_DIMS) {
    for (const layout of LAYOUTS) {
      for (const scaling of SCALINGS) {
        const rope = new Rope({ headDim: d, layout, scaling });
        for (const p of [...POSITIONS, -7, 0.25, 3e7]) {
          const x = vec(rng, d);
          const n = norm(x);
          assert.ok(Math.abs(norm(rotated(rope, x, p)) - n) <= 1e-5 * n, `${scaling.type} p=${p}`);
        }
      }
    }
  }
});

Deno.test("Rope.rotateRow() makes q·k depend only on the relative position", () => {
  const rng = new Rng(3);
  for (const d of HEAD_DIMS) {
    for (const layout of LAYOUTS) {
      for (const scaling of SCALINGS) {
        const rope = new Rope({ headDim: d, layout, scaling });
        const q = vec(rng, d), k = vec(rng, d);
        const scale = norm(q) * norm(k);
        for (const [a, b] of [[5, 2], [0, 19], [1000, 0], [3, 3]]) {
          const reference = dot(rotated(rope, q, a!), rotated(rope, k, b!));
          for (const p of POSITIONS) {
            const score = dot(rotated(rope, q, p + a!), rotated(rope, k, p + b!));
            assert.ok(
              Math.abs(score - reference) <= 1e-4 * scale,
              `d=${d} ${layout} ${scaling.type} p=${p} a=${a} b=${b}: ${score} vs ${reference}`,
            );
          }
        }
      }
    }
  }
});

Deno.test("Rope.rotateRow() in 'adjacent' layout is 'halves' conjugated by the interleave permutation", () => {
  const rng = new Rng(4);
  for (const d of HEAD_DIMS) {
    const h = d / 2;
    // perm[j] = index in the adjacent layout of dimension j in the halves layout.
    const perm = Array.from({ length: d }, (_, j) => (j < h ? 2 * j : 2 * (j - h) + 1));
    const halves = new Rope({ headDim: d, layout: "halves" });
    const adjacent = new Rope({ headDim: d, layout: "adjacent" });
    for (const p of POSITIONS) {
      const x = vec(rng, d); // adjacent order
      const px = Float32Array.from(perm, (i) => x[i]!); // halves order
      const viaHalves = rotated(halves, px, p);
      const back = new Float32Array(d);
      for (let j = 0; j < d; j++) back[perm[j]!] = viaHalves[j]!;
      assert.deepEqual(rotated(adjacent, x, p), back, `d=${d} p=${p}`);
    }
  }
});

Deno.test("Rope with each scaling at its identity setting equals plain RoPE exactly", () => {
  const rng = new Rng(5);
  const identities: RopeScaling[] = [
    { type: "none" },
    { type: "linear", factor: 1 },
    { type: "ntk", factor: 1 },
    { type: "dynamic-ntk", factor: 4, originalMaxPosition: 131072 },
    { type: "yarn", factor: 1, originalMaxPosition: 4096 },
    { type: "yarn", factor: 1, originalMaxPosition: 64, mscale: 0.707, mscaleAllDim: 1 },
    { type: "base", base: 10000 },
  ];
  for (const d of HEAD_DIMS) {
    for (const layout of LAYOUTS) {
      const plain = new Rope({ headDim: d, layout });
      for (const scaling of identities) {
        const rope = new Rope({ headDim: d, layout, scaling }).forSequenceLength(4097);
        assert.deepEqual(rope.invFreq, plain.invFreq, scaling.type);
        assert.equal(rope.attentionFactor, 1);
        assert.equal(rope.base, 10000);
        for (const p of [...POSITIONS, -2, 0.5]) {
          const x = vec(rng, d);
          assert.deepEqual(rotated(rope, x, p), rotated(plain, x, p), `${scaling.type} p=${p}`);
        }
      }
    }
  }
});

Deno.test("Rope with PI rotates position p exactly as plain RoPE rotates p / factor", () => {
  const rng = new Rng(6);
  for (const d of HEAD_DIMS) {
    for (const layout of LAYOUTS) {
      const plain = new Rope({ headDim: d, layout });
      for (const factor of [2, 4, 8.5]) {
        const pi = new Rope({ headDim: d, layout, scaling: { type: "linear", factor } });
        assert.deepEqual(Array.from(pi.invFreq), Array.from(plain.invFreq, (f) => f / factor));
        for (const p of POSITIONS) {
          const x = vec(rng, d);
          // PI reads its f32 table at integer p; plain computes p / factor directly.
          assertAllClose(rotated(pi, x, p), rotated(plain, x, p / factor), 2e-6, 1e-6);
        }
      }
    }
  }
});

Deno.test("Rope with NTK scaling uses base · factor^(d/(d-2))", () => {
  const rng = new Rng(7);
  for (const d of [8, 64, 128]) {
    for (const factor of [2, 8]) {
      const rope = new Rope({ headDim: d, scaling: { type: "ntk", factor } });
      const base = 10000 * factor ** (d / (d - 2));
      assert.equal(rope.base, base);
      assert.deepEqual(rope.invFreq, ropeInvFreq(d, base));
      const abf = new Rope({ headDim: d, scaling: { type: "base", base } });
      for (const p of POSITIONS) {
        const x = vec(rng, d);
        assert.deepEqual(rotated(rope, x, p), rotated(abf, x, p));
      }
    }
  }
});

Deno.test("Rope.forSequenceLength() with dynamic NTK is plain up to originalMaxPosition and the formula above", () => {
  const rng = new Rng(8);
  for (const d of [8, 64, 128]) {
    const scaling = { type: "dynamic-ntk", factor: 4, originalMaxPosition: 4096 } as const;
    const rope = new Rope({ headDim: d, scaling });
    const plain = new Rope({ headDim: d });
    assert.deepEqual(rope.invFreq, plain.invFreq);
    for (const n of [1, 19, 4096]) assert.equal(rope.forSequenceLength(n), rope);
    for (const n of [4097, 8192, 131071]) {
      const longer = rope.forSequenceLength(n);
      const base = 10000 * ((4 * n) / 4096 - 3) ** (d / (d - 2));
      assert.ok(Math.abs(longer.base / base - 1) < 1e-14, `n=${n}`);
      assert.equal(longer.base, dynamicNtkBase(d, { ...scaling, sequenceLength: n }));
      assert.deepEqual(longer.invFreq, ropeInvFreq(d, longer.base));
      assert.equal(rope.forSequenceLength(n), longer, "cached");
      assert.equal(longer.forSequenceLength(n), longer, "unchanged");
      assert.deepEqual(longer.forSequenceLength(100).invFreq, plain.invFreq, "back to plain");
      assert.deepEqual(
        new Rope({ headDim: d, scaling, sequenceLength: n }).invFreq,
        longer.invFreq,
      );
      const x = vec(rng, d);
      const viaAbf = new Rope({ headDim: d, scaling: { type: "base", base: longer.base } });
      assert.deepEqual(rotated(longer, x, 4000), rotated(viaAbf, x, 4000));
    }
  }
  // factor 1 is plain only inside the trained window: past it the ratio is L / L₀.
  const one = new Rope({
    headDim: 8,
    scaling: { type: "dynamic-ntk", factor: 1, originalMaxPosition: 16 },
  });
  assert.equal(one.forSequenceLength(16), one);
  assert.equal(one.forSequenceLength(64).base, 10000 * 4 ** (8 / 6));
  for (const scaling of SCALINGS.filter((s) => s.type !== "dynamic-ntk")) {
    const rope = new Rope({ headDim: 8, scaling });
    assert.equal(rope.forSequenceLength(1 << 20), rope, scaling.type);
  }
});

Deno.test("Rope with YaRN keeps fast pairs, interpolates slow pairs and reports attentionFactor", () => {
  for (const d of [64, 128]) {
    for (const factor of [2, 4, 16, 40]) {
      const scaling = { type: "yarn", factor, originalMaxPosition: 4096 } as const;
      const rope = new Rope({ headDim: d, scaling });
      const plain = ropeInvFreq(d);
      assert.deepEqual(rope.invFreq, yarnInvFreq(d, scaling));
      assert.equal(rope.invFreq[0], plain[0]); // extrapolated (high frequency)
      assert.equal(rope.invFreq[d / 2 - 1], plain[d / 2 - 1]! / factor); // interpolated (low frequency)
      assert.equal(rope.attentionFactor, 0.1 * Math.log(factor) + 1);
      assert.equal(rope.base, 10000);
    }
  }
  const deepseek = new Rope({
    headDim: 64,
    scaling: {
      type: "yarn",
      factor: 40,
      originalMaxPosition: 4096,
      betaFast: 32,
      betaSlow: 1,
      mscale: 1,
      mscaleAllDim: 1,
    },
  });
  assert.equal(deepseek.attentionFactor, 1);
});

Deno.test("Rope.rotateRow() gives the same result from the table and the direct path", () => {
  const rng = new Rng(9);
  for (const d of HEAD_DIMS) {
    for (const layout of LAYOUTS) {
      const scaling = { type: "yarn", factor: 4, originalMaxPosition: 1024 } as const;
      const tabled = new Rope({ headDim: d, layout, scaling, tableLimit: 8192 });
      const direct = new Rope({ headDim: d, layout, scaling, tableLimit: 0 });
      for (const p of [...POSITIONS, 8191, 8192]) {
        const x = vec(rng, d);
        const t = rotated(tabled, x, p);
        const r = rotated(direct, x, p);
        if (p >= 8192) assert.deepEqual(t, r, `p=${p} is outside the table`);
        else assertAllClose(t, r, 1e-6, 1e-6, `d=${d} p=${p}`);
      }
      assert.equal(direct.tableBytes, 0);
      // Non-integer and negative positions never use the table.
      for (const p of [0.5, -1, -4097, 19.000001]) {
        const x = vec(rng, d);
        assert.deepEqual(rotated(tabled, x, p), rotated(direct, x, p), `p=${p}`);
      }
    }
  }
});

Deno.test("Rope table grows lazily by doubling up to tableLimit, and reserve() pre-grows it", () => {
  const d = 64;
  const rope = new Rope({ headDim: d, tableLimit: 5000 });
  const rng = new Rng(10);
  const x = vec(rng, d), out = new Float32Array(d);
  assert.equal(rope.tableBytes, 0);
  rope.rotateRow(x, 0, out, 0, 19);
  assert.equal(rope.tableBytes, 64 * d * 4);
  rope.rotateRow(x, 0, out, 0, 100);
  assert.equal(rope.tableBytes, 128 * d * 4);
  rope.rotateRow(x, 0, out, 0, 4097);
  assert.equal(rope.tableBytes, 4098 * d * 4);
  rope.rotateRow(x, 0, out, 0, 4099);
  assert.equal(rope.tableBytes, 5000 * d * 4, "capped at tableLimit");
  rope.rotateRow(x, 0, out, 0, 131071);
  assert.equal(rope.tableBytes, 5000 * d * 4, "beyond tableLimit: direct");

  const reserved = new Rope({ headDim: d });
  reserved.reserve(4096);
  const bytes = reserved.tableBytes;
  assert.equal(bytes, 4096 * d * 4);
  for (let p = 0; p < 4096; p += 7) reserved.rotateRow(x, 0, out, 0, p);
  assert.equal(reserved.tableBytes, bytes, "no growth inside the reserved range");
  reserved.reserve(10);
  assert.equal(reserved.tableBytes, bytes);
});

Deno.test("Rope.rotateRow() on f16 storage is within f16 rounding of the f32 result", () => {
  const rng = new Rng(11);
  for (const d of HEAD_DIMS) {
    for (const layout of LAYOUTS) {
      const rope = new Rope({ headDim: d, layout });
      for (const p of POSITIONS) {
        const x16 = rng.fillNormal(new Float16Array(d));
        const x32 = Float32Array.from(x16);
        const want = rotated(rope, x32, p);
        const got = new Float16Array(d);
        rope.rotateRow(x16, 0, got, 0, p);
        // One rounding to f16 on store: half an ulp, 2^-11 relative (plus subnormal slack).
        assertAllClose(got, want, 2 ** -24, 2 ** -11, `d=${d} p=${p}`);
        // f16 in place, and f16 → f32 and f32 → f16 mixes.
        rope.rotateRow(x16, 0, x16, 0, p);
        assert.deepEqual(x16, got);
        const wide = new Float32Array(d);
        rope.rotateRow(Float16Array.from(x32), 0, wide, 0, p);
        assertAllClose(wide, want, 1e-6, 1e-6);
      }
    }
  }
});

Deno.test("Rope.rotateRow() reads and writes at offsets and works in place", () => {
  const rng = new Rng(12);
  const d = 8;
  const rope = new Rope({ headDim: d, layout: "adjacent" });
  const src = vec(rng, 3 * d);
  const dst = new Float32Array(5 * d).fill(7);
  rope.rotateRow(src, d, dst, 2 * d + 3, 19);
  assert.deepEqual(dst.subarray(2 * d + 3, 3 * d + 3), rotated(rope, src.slice(d, 2 * d), 19));
  assert.ok(dst.subarray(0, 2 * d + 3).every((v) => v === 7));
  assert.ok(dst.subarray(3 * d + 3).every((v) => v === 7));
  const copy = src.slice();
  rope.rotateRow(copy, d, copy, d, 19);
  assert.deepEqual(copy.subarray(d, 2 * d), rotated(rope, src.slice(d, 2 * d), 19));
  assert.deepEqual(copy.subarray(0, d), src.subarray(0, d));
});

Deno.test("Rope.applyInto() rotates each token to its position on any strided view", () => {
  for (const layout of LAYOUTS) {
    const d = 64;
    const rope = new Rope({ headDim: d, layout, scaling: { type: "ntk", factor: 2 } });
    const full = randn([5, 4, d], { seed: 13, layout: "thd" }); // [tokens, heads, headDim]
    const original = Float32Array.from(full.data);
    const view = sliceAxis(full, 1, 1, 3); // heads 1..2: non-contiguous
    const positions = Int32Array.from([0, 1, 19, 4097, 131071]);
    rope.applyInto(view, positions);
    for (let t = 0; t < 5; t++) {
      for (let h = 0; h < 4; h++) {
        const o = (t * 4 + h) * d;
        const row = original.subarray(o, o + d);
        const expected = h === 1 || h === 2 ? rotated(rope, row, positions[t]!) : row;
        assert.deepEqual(full.data.subarray(o, o + d), expected, `t=${t} h=${h}`);
      }
    }
  }
});

Deno.test("Rope.applyInto() takes a start position, [tokens, headDim] and 'htd' tensors", () => {
  const d = 8;
  const rope = new Rope({ headDim: d });
  const thd = randn([3, 2, d], { seed: 14, layout: "thd" });
  const a = rope.apply(thd, 17);
  const b = rope.apply(thd, [17, 18, 19]);
  assert.deepEqual(a.data, b.data);

  // The same data seen as [heads, tokens, headDim] with layout "htd".
  const htd = permute(thd, [1, 0, 2], "htd");
  const c = rope.apply(htd, [17, 18, 19]);
  assert.deepEqual(c.shape, [2, 3, d]);
  assert.deepEqual(permute(c, [1, 0, 2], "thd").shape, [3, 2, d]);
  for (let t = 0; t < 3; t++) {
    for (let h = 0; h < 2; h++) {
      assert.deepEqual(
        c.data.subarray((h * 3 + t) * d, (h * 3 + t + 1) * d),
        a.data.subarray((t * 2 + h) * d, (t * 2 + h + 1) * d),
      );
    }
  }

  const td = tensor(Float32Array.from(thd.data.subarray(0, 3 * d)), [3, d], { layout: "td" });
  const e = rope.apply(td, [-1, 0.5, 1e6]);
  for (let t = 0; t < 3; t++) {
    assert.deepEqual(
      e.data.subarray(t * d, (t + 1) * d),
      rotated(rope, td.data.slice(t * d, (t + 1) * d), [-1, 0.5, 1e6][t]!),
    );
  }
});

Deno.test("Rope.apply() returns a new f32 tensor and leaves its input alone", () => {
  const rope = new Rope({ headDim: 8, layout: "adjacent" });
  const x16 = randn([4, 3, 8], { seed: 15, dtype: "f16", layout: "thd" }) as Tensor<"f16">;
  const before = Float16Array.from(x16.data);
  const out = rope.apply(x16, 4097);
  assert.equal(out.dtype, "f32");
  assert.equal(out.layout, "thd");
  assert.deepEqual(x16.data, before);
  const inPlace = zeros("f32", [4, 3, 8], { layout: "thd" });
  inPlace.data.set(Float32Array.from(x16.data));
  rope.applyInto(inPlace, 4097);
  assert.deepEqual(out.data, inPlace.data);
  // In place on f16 storage: the f32 result rounded once.
  rope.applyInto(x16, 4097);
  assert.deepEqual(x16.data, Float16Array.from(out.data));
  // A contiguous f32 input is still copied, not returned.
  const x32 = randn([2, 1, 8], { seed: 16 });
  assert.notEqual(rope.apply(x32, 0).data, x32.data);
});

Deno.test("Rope.applyInto() validates every position before writing", () => {
  const rope = new Rope({ headDim: 8 });
  const x = randn([3, 2, 8], { seed: 17 });
  const before = Float32Array.from(x.data);
  assert.throws(() => rope.applyInto(x, [1, 2, NaN]), RangeError);
  assert.deepEqual(x.data, before);
});

Deno.test("Rope rejects bad options and inputs with messages naming the argument", () => {
  const make = (o: Partial<RopeOptions>) => () => new Rope({ headDim: 8, ...o } as RopeOptions);
  const rope = new Rope({ headDim: 8 });
  const row = new Float32Array(8);
  const good = randn([2, 3, 8], { seed: 18 });
  const cases: [() => unknown, ErrorConstructor, RegExp][] = [
    [
      make({ headDim: 0 }),
      RangeError,
      /^Cannot create Rope: headDim must be a positive even integer, got 0$/,
    ],
    [make({ headDim: 7 }), RangeError, /headDim must be a positive even integer, got 7/],
    [make({ headDim: -2 }), RangeError, /headDim .* got -2/],
    [make({ headDim: 2.5 }), RangeError, /headDim .* got 2.5/],
    [make({ headDim: NaN }), RangeError, /headDim .* got NaN/],
    [
      make({ base: 1 }),
      RangeError,
      /^Cannot create Rope: base must be a finite number > 1, got 1$/,
    ],
    [make({ base: 0.5 }), RangeError, /base must be a finite number > 1, got 0.5/],
    [make({ base: Infinity }), RangeError, /base must be a finite number, got Infinity/],
    [make({ base: NaN }), RangeError, /base must be a finite number, got NaN/],
    [
      make({ layout: bad("interleaved") }),
      TypeError,
      /layout must be one of "halves", "adjacent", got "interleaved"/,
    ],
    [
      make({ scaling: { type: "linear", factor: 0.5 } }),
      RangeError,
      /^Cannot create Rope: scaling.factor must be a finite number >= 1 \(a factor below 1 shrinks the context instead of extending it\), got 0.5$/,
    ],
    [make({ scaling: { type: "linear", factor: NaN } }), RangeError, /scaling.factor .* got NaN/],
    [
      make({ scaling: { type: "ntk", factor: Infinity } }),
      RangeError,
      /scaling.factor .* got Infinity/,
    ],
    [make({ scaling: { type: "ntk", factor: 0 } }), RangeError, /scaling.factor .* got 0/],
    [
      make({ scaling: { type: "dynamic-ntk", factor: 2, originalMaxPosition: 0 } }),
      RangeError,
      /scaling.originalMaxPosition must be a positive integer, got 0/,
    ],
    [
      make({ scaling: { type: "dynamic-ntk", factor: -1, originalMaxPosition: 10 } }),
      RangeError,
      /scaling.factor .* got -1/,
    ],
    [
      make({ scaling: { type: "yarn", factor: 4, originalMaxPosition: 4096.5 } }),
      RangeError,
      /scaling.originalMaxPosition must be a positive integer, got 4096.5/,
    ],
    [
      make({ scaling: { type: "yarn", factor: 0.25, originalMaxPosition: 4096 } }),
      RangeError,
      /scaling.factor .* got 0.25/,
    ],
    [
      make({ scaling: { type: "yarn", factor: 4, originalMaxPosition: 64, betaSlow: 40 } }),
      RangeError,
      /scaling.betaSlow must be below scaling.betaFast \(32\), got 40/,
    ],
    [
      make({ scaling: { type: "yarn", factor: 4, originalMaxPosition: 64, mscale: NaN } }),
      RangeError,
      /scaling.mscale must be a finite number, got NaN/,
    ],
    [
      make({ scaling: { type: "base", base: 1 } }),
      RangeError,
      /scaling.base must be a finite number > 1, got 1/,
    ],
    [
      make({ scaling: bad({ type: "llama3", factor: 8 }) }),
      TypeError,
      /scaling.type must be one of .*got "llama3"/,
    ],
    [
      make({ scaling: bad({ factor: 8 }) }),
      TypeError,
      /scaling.type must be one of .*got undefined/,
    ],
    [
      make({ scaling: bad(null) }),
      TypeError,
      /scaling must be an object with a type field, got null/,
    ],
    [make({ tableLimit: -1 }), RangeError, /tableLimit must be a non-negative integer, got -1/],
    [
      make({ tableLimit: 2 ** 28 }),
      RangeError,
      /tableLimit × headDim must be at most 2\^30 floats/,
    ],
    [make({ sequenceLength: 0 }), RangeError, /sequenceLength must be a positive integer, got 0/],
    [
      () => new Rope(bad(undefined)),
      TypeError,
      /^Cannot create Rope: options must be an object, got undefined$/,
    ],
    [() => rope.forSequenceLength(0), RangeError, /seqLen must be a positive integer, got 0/],
    [() => rope.forSequenceLength(1.5), RangeError, /seqLen .* got 1.5/],
    [
      () => rope.rotateRow(row, 0, row, 0, NaN),
      RangeError,
      /position must be a finite number, got NaN/,
    ],
    [() => rope.rotateRow(row, 0, row, 0, Infinity), RangeError, /position .* got Infinity/],
    [() => rope.rotateRow(row, 0, row, 0, -Infinity), RangeError, /position .* got -Infinity/],
    [() => rope.reserve(-1), RangeError, /positions must be a non-negative integer, got -1/],
    [
      () => rope.applyInto(good, NaN),
      RangeError,
      /^Cannot apply Rope: positions must be a finite number, got NaN$/,
    ],
    [
      () => rope.applyInto(good, [0, Infinity]),
      RangeError,
      /positions\[1\] must be a finite number, got Infinity/,
    ],
    [
      () => rope.applyInto(good, [0, 1, 2]),
      TypeError,
      /positions must have one entry per token \(2 for x shape \[2, 3, 8\]\), got length 3/,
    ],
    [
      () => rope.applyInto(randn([2, 3, 16], { seed: 1 }), 0),
      TypeError,
      /x must have shape \[tokens, heads, 8\] or \[tokens, 8\], got shape \[2, 3, 16\]/,
    ],
    [() => rope.applyInto(randn([8], { seed: 1 }), 0), TypeError, /got shape \[8\]/],
    [() => rope.apply(randn([1, 2, 3, 8], { seed: 1 }), 0), TypeError, /got shape \[1, 2, 3, 8\]/],
    [
      () => rope.apply(bad(tensor(new Int8Array(16), [2, 8])), 0),
      TypeError,
      /^Cannot apply Rope: x dtype must be "f32" or "f16", got "i8"$/,
    ],
    [
      () => rope.applyInto(permute(randn([8, 2], { seed: 1 }), [1, 0]), 0),
      TypeError,
      /x must have last stride 1 \(use contiguous\(\)\), got strides \[1, 2\]/,
    ],
    [() => rope.apply(bad(new Float32Array(8)), 0), TypeError, /x must be a tensor/],
    [
      () => rope.applyInto(good, bad("01")),
      TypeError,
      /positions must be a number or an array of numbers/,
    ],
  ];
  for (const [fn, cls, message] of cases) {
    assert.throws(fn, (e: unknown) => {
      assert.ok(e instanceof cls, `${String(e)} should be a ${cls.name}`);
      assert.match((e as Error).message, message);
      return true;
    }, `expected ${cls.name} matching ${message}`);
  }
});
