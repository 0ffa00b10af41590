// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import {
  DEFAULT_ROPE_BASE,
  DEFAULT_YARN_BETA_FAST,
  DEFAULT_YARN_BETA_SLOW,
  dynamicNtkBase,
  dynamicNtkInvFreq,
  linearInvFreq,
  ntkBase,
  ntkInvFreq,
  ropeInvFreq,
  ropeParameters,
  type RopeScaling,
  yarnAttentionFactor,
  yarnCorrectionRange,
  yarnInvFreq,
  yarnMscale,
  yarnRamp,
} from "./scaling.ts";

const HEAD_DIMS = [2, 8, 64, 128];

function assertRelClose(actual: number, expected: number, rtol: number, what = ""): void {
  const err = Math.abs(actual - expected);
  assert.ok(
    err <= rtol * Math.abs(expected),
    `${what}: ${actual} vs ${expected} (relative error ${err / Math.abs(expected)})`,
  );
}

Deno.test("ropeInvFreq() gives base^(-2i/d) for every pair", () => {
  for (const d of HEAD_DIMS) {
    for (const base of [10000, 500000, 1e6, 1.5]) {
      const f = ropeInvFreq(d, base);
      assert.equal(f.length, d / 2);
      assert.equal(f[0], 1);
      for (let i = 0; i < d / 2; i++) assertRelClose(f[i]!, base ** (-2 * i / d), 1e-14, `θ_${i}`);
      for (let i = 1; i < d / 2; i++) assert.ok(f[i]! < f[i - 1]!);
    }
  }
  assert.deepEqual(ropeInvFreq(8), ropeInvFreq(8, DEFAULT_ROPE_BASE));
  assert.equal(DEFAULT_ROPE_BASE, 10000);
});

Deno.test("linearInvFreq() divides every plain frequency by the factor", () => {
  for (const d of HEAD_DIMS) {
    for (const factor of [1, 2, 4, 8.5]) {
      const plain = ropeInvFreq(d, 500000);
      const pi = linearInvFreq(d, { base: 500000, factor });
      assert.deepEqual(Array.from(pi), Array.from(plain, (f) => f / factor));
    }
  }
});

Deno.test("ntkBase() is base · factor^(d/(d-2)) and keeps headDim 2 finite", () => {
  for (const d of [8, 64, 128]) {
    for (const factor of [1, 2, 8, 16.5]) {
      assert.equal(ntkBase(d, { factor }), factor === 1 ? 10000 : 10000 * factor ** (d / (d - 2)));
    }
  }
  // With one pair, θ_0 = 1 for any base: the base is left as given.
  assert.equal(ntkBase(2, { factor: 8 }), 10000);
  assert.deepEqual(Array.from(ntkInvFreq(2, { factor: 8 })), [1]);
});

Deno.test("ntkInvFreq() keeps the fastest pair and interpolates the slowest by the factor", () => {
  for (const d of [8, 64, 128]) {
    for (const factor of [2, 4, 32]) {
      const plain = ropeInvFreq(d);
      const ntk = ntkInvFreq(d, { factor });
      assert.equal(ntk[0], 1);
      assertRelClose(ntk[d / 2 - 1]!, plain[d / 2 - 1]! / factor, 1e-12, "slowest pair");
      for (let i = 1; i < d / 2; i++) {
        assert.ok(ntk[i]! < plain[i]! && ntk[i]! >= plain[i]! / factor * (1 - 1e-12));
      }
      assert.deepEqual(ntk, ropeInvFreq(d, ntkBase(d, { factor })));
    }
  }
});

Deno.test("dynamicNtkBase() is the base up to originalMaxPosition and the formula above it", () => {
  for (const d of [8, 64, 128]) {
    for (const factor of [1, 2, 4]) {
      const o = { factor, originalMaxPosition: 4096 };
      for (const sequenceLength of [1, 19, 4095, 4096]) {
        assert.equal(dynamicNtkBase(d, { ...o, sequenceLength }), 10000);
        assert.deepEqual(dynamicNtkInvFreq(d, { ...o, sequenceLength }), ropeInvFreq(d));
      }
      for (const sequenceLength of [4097, 8192, 131071]) {
        const expected = 10000 *
          ((factor * sequenceLength) / 4096 - (factor - 1)) ** (d / (d - 2));
        assertRelClose(dynamicNtkBase(d, { ...o, sequenceLength }), expected, 1e-14, "base'");
        assert.deepEqual(
          dynamicNtkInvFreq(d, { ...o, sequenceLength }),
          ropeInvFreq(d, dynamicNtkBase(d, { ...o, sequenceLength })),
        );
      }
      // Continuous at the boundary: one token past it barely moves the base.
      const next = dynamicNtkBase(d, { ...o, sequenceLength: 4097 });
      assert.ok(next >= 10000 && next < 10000 * (1 + factor * 1e-3));
    }
  }
  assert.equal(
    dynamicNtkBase(2, { factor: 4, originalMaxPosition: 16, sequenceLength: 1000 }),
    10000,
  );
});

Deno.test("yarnCorrectionRange() floors and ceils the correction dims like transformers", () => {
  const llama2 = { factor: 16, originalMaxPosition: 4096 };
  // dim(32) = 20.944…, dim(1) = 45.026… for d = 128, base 1e4, L₀ = 4096.
  assert.deepEqual(yarnCorrectionRange(128, llama2), [20, 46]);
  const [low, high] = yarnCorrectionRange(128, { ...llama2, truncate: false });
  assertRelClose(low, 20.94448162063605, 1e-12, "low");
  assertRelClose(high, 45.02688127375455, 1e-12, "high");
  // Clamped to [0, d − 1] (transformers clamps to dim − 1, not d/2 − 1).
  assert.deepEqual(yarnCorrectionRange(16, { factor: 4, originalMaxPosition: 64 }), [0, 3]);
  assert.deepEqual(yarnCorrectionRange(8, { factor: 4, originalMaxPosition: 1e9 }), [6, 7]);
  assert.deepEqual(
    yarnCorrectionRange(64, { factor: 8, originalMaxPosition: 8192, base: 500000 }),
    [9, 18],
  );
  assert.equal(DEFAULT_YARN_BETA_FAST, 32);
  assert.equal(DEFAULT_YARN_BETA_SLOW, 1);
  assert.deepEqual(
    yarnCorrectionRange(128, { ...llama2, betaFast: 32, betaSlow: 1 }),
    yarnCorrectionRange(128, llama2),
  );
});

Deno.test("yarnRamp() is 0 before low, 1 after high and linear between", () => {
  const g = yarnRamp(128, { factor: 16, originalMaxPosition: 4096 }); // [20, 46]
  assert.equal(g.length, 64);
  for (let i = 0; i < 64; i++) {
    const expected = Math.min(1, Math.max(0, (i - 20) / 26));
    assertRelClose(g[i]! + 1, expected + 1, 1e-15, `γ_${i}`);
  }
  // low == high (both clamped to 0 for a tiny trained length): the ramp gets a 0.001
  // step instead of dividing by zero, so pair 0 is kept and every other pair interpolated.
  assert.deepEqual(yarnCorrectionRange(8, { factor: 4, originalMaxPosition: 4 }), [0, 0]);
  assert.deepEqual(Array.from(yarnRamp(8, { factor: 4, originalMaxPosition: 4 })), [0, 1, 1, 1]);
});

Deno.test("yarnInvFreq() keeps fast pairs, interpolates slow pairs and blends between", () => {
  for (const d of HEAD_DIMS) {
    for (const factor of [2, 4, 16]) {
      const o = { factor, originalMaxPosition: 4096, base: 10000 };
      const [low, high] = yarnCorrectionRange(d, o);
      const plain = ropeInvFreq(d);
      const yarn = yarnInvFreq(d, o);
      for (let i = 0; i < d / 2; i++) {
        if (i <= low) assert.equal(yarn[i], plain[i], `pair ${i} extrapolated`);
        else if (i >= high) assert.equal(yarn[i], plain[i]! / factor, `pair ${i} interpolated`);
        else assert.ok(yarn[i]! < plain[i]! && yarn[i]! > plain[i]! / factor, `pair ${i} blended`);
      }
    }
  }
});

Deno.test("yarnInvFreq() matches a float64 port of transformers' _compute_yarn_parameters", () => {
  // NumPy port of _compute_yarn_parameters (find_correction_range with floor/ceil,
  // linear_ramp_factor, inv_freq_extrapolation_factor) at d = 16, base 1e4, s = 4, L₀ = 64.
  const expected = [
    1.0,
    0.23717082451262847,
    0.05,
    0.007905694150420948,
    0.0025,
    0.0007905694150420947,
    0.00025,
    7.905694150420948e-05,
  ];
  const yarn = yarnInvFreq(16, { factor: 4, originalMaxPosition: 64 });
  for (let i = 0; i < 8; i++) assertRelClose(yarn[i]!, expected[i]!, 1e-15, `θ_${i}`);
});

Deno.test("yarnInvFreq() with factor 1 equals plain RoPE exactly", () => {
  for (const d of HEAD_DIMS) {
    assert.deepEqual(yarnInvFreq(d, { factor: 1, originalMaxPosition: 4096 }), ropeInvFreq(d));
  }
});

Deno.test("yarnAttentionFactor() is 0.1 ln(s) + 1, or the DeepSeek ratio", () => {
  for (const s of [1, 2, 4, 16, 40]) {
    assert.equal(yarnAttentionFactor({ factor: s }), s === 1 ? 1 : 0.1 * Math.log(s) + 1);
    assert.equal(yarnMscale(s), yarnAttentionFactor({ factor: s }));
  }
  assert.equal(yarnMscale(0.5), 1);
  assert.equal(yarnMscale(16, 0.707), 0.1 * 0.707 * Math.log(16) + 1);
  assert.equal(
    yarnAttentionFactor({ factor: 40, mscale: 0.707, mscaleAllDim: 1 }),
    (0.1 * 0.707 * Math.log(40) + 1) / (0.1 * Math.log(40) + 1),
  );
  // One of the pair missing or zero: the plain form, as transformers' `if mscale and mscale_all_dim`.
  assert.equal(yarnAttentionFactor({ factor: 40, mscale: 0.707 }), 0.1 * Math.log(40) + 1);
  assert.equal(
    yarnAttentionFactor({ factor: 40, mscale: 0, mscaleAllDim: 1 }),
    0.1 * Math.log(40) + 1,
  );
  assert.equal(yarnAttentionFactor({ factor: 40, attentionFactor: 1.25 }), 1.25);
});

Deno.test("ropeParameters() dispatches to each scaling's function", () => {
  const d = 64;
  const cases: [RopeScaling, Float64Array, number, number][] = [
    [{ type: "none" }, ropeInvFreq(d), 1, 10000],
    [{ type: "linear", factor: 4 }, linearInvFreq(d, { factor: 4 }), 1, 10000],
    [{ type: "ntk", factor: 4 }, ntkInvFreq(d, { factor: 4 }), 1, ntkBase(d, { factor: 4 })],
    [
      { type: "dynamic-ntk", factor: 4, originalMaxPosition: 128 },
      ropeInvFreq(d),
      1,
      10000,
    ],
    [
      { type: "yarn", factor: 4, originalMaxPosition: 128 },
      yarnInvFreq(d, { factor: 4, originalMaxPosition: 128 }),
      0.1 * Math.log(4) + 1,
      10000,
    ],
    [{ type: "base", base: 1e6 }, ropeInvFreq(d, 1e6), 1, 1e6],
  ];
  for (const [scaling, invFreq, attentionFactor, base] of cases) {
    assert.deepEqual(ropeParameters(d, { scaling }), { invFreq, attentionFactor, base });
  }
  const dyn = { type: "dynamic-ntk", factor: 4, originalMaxPosition: 128 } as const;
  const long = ropeParameters(d, { scaling: dyn, sequenceLength: 1000 });
  const base = dynamicNtkBase(d, { factor: 4, originalMaxPosition: 128, sequenceLength: 1000 });
  assert.deepEqual(long, { invFreq: ropeInvFreq(d, base), attentionFactor: 1, base });
});

Deno.test("scaling functions reject bad arguments with messages naming them", () => {
  const cases: [() => unknown, ErrorConstructor, RegExp][] = [
    [() => ropeInvFreq(0), RangeError, /headDim must be a positive even integer, got 0/],
    [() => ropeInvFreq(7), RangeError, /headDim must be a positive even integer, got 7/],
    [() => ropeInvFreq(8, 1), RangeError, /base must be a finite number > 1, got 1/],
    [() => ropeInvFreq(8, NaN), RangeError, /base must be a finite number, got NaN/],
    [
      () => linearInvFreq(8, { factor: 0.5 }),
      RangeError,
      /factor must be a finite number >= 1.*got 0.5/,
    ],
    [() => linearInvFreq(8, { factor: Infinity }), RangeError, /factor .* got Infinity/],
    [() => ntkBase(8, { factor: NaN }), RangeError, /factor .* got NaN/],
    [
      () => dynamicNtkBase(8, { factor: 2, originalMaxPosition: 0, sequenceLength: 4 }),
      RangeError,
      /originalMaxPosition must be a positive integer, got 0/,
    ],
    [
      () => dynamicNtkBase(8, { factor: 2, originalMaxPosition: 8, sequenceLength: 1.5 }),
      RangeError,
      /sequenceLength must be a positive integer, got 1.5/,
    ],
    [
      () => yarnInvFreq(8, { factor: 2, originalMaxPosition: 4.5 }),
      RangeError,
      /originalMaxPosition must be a positive integer, got 4.5/,
    ],
    [
      () => yarnInvFreq(8, { factor: 2, originalMaxPosition: 64, betaFast: 1, betaSlow: 2 }),
      RangeError,
      /betaSlow must be below betaFast \(1\), got 2/,
    ],
    [
      () => yarnRamp(8, { factor: 2, originalMaxPosition: 64, betaFast: -1 }),
      RangeError,
      /betaFast must be a positive finite number, got -1/,
    ],
    [
      () => yarnCorrectionRange(8, { factor: 0.9, originalMaxPosition: 64 }),
      RangeError,
      /factor must be a finite number >= 1/,
    ],
    [
      // @ts-expect-error: truncate must be a boolean
      () => yarnInvFreq(8, { factor: 2, originalMaxPosition: 64, truncate: "yes" }),
      TypeError,
      /truncate must be a boolean, got "yes"/,
    ],
    [() => yarnMscale(NaN), RangeError, /scale must be a finite number, got NaN/],
    [() => yarnAttentionFactor({ factor: 0 }), RangeError, /factor .* got 0/],
    [
      () => yarnAttentionFactor({ factor: 2, attentionFactor: 0 }),
      RangeError,
      /attentionFactor must be a positive finite number, got 0/,
    ],
    [
      // @ts-expect-error: unknown scaling type
      () => ropeParameters(8, { scaling: { type: "longrope", factor: 2 } }),
      TypeError,
      /scaling.type must be one of .*got "longrope"/,
    ],
    [
      // @ts-expect-error: scaling must be an object
      () => ropeParameters(8, { scaling: "yarn" }),
      TypeError,
      /scaling must be an object with a type field, got "yarn"/,
    ],
    [
      () => ropeParameters(8, { scaling: { type: "base", base: 0.5 } }),
      RangeError,
      /scaling.base must be a finite number > 1, got 0.5/,
    ],
    [
      // @ts-expect-error: options must be an object
      () => linearInvFreq(8, undefined),
      TypeError,
      /options must be an object, got undefined/,
    ],
  ];
  for (const [fn, cls, message] of cases) {
    assert.throws(fn, (e: unknown) => {
      assert.ok(e instanceof cls, `${String(e)} should be a ${cls.name}`);
      assert.match((e as Error).message, message);
      assert.match((e as Error).message, /^Cannot [a-zA-Z- ]+: /);
      return true;
    });
  }
});
