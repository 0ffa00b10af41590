// Copyright 2026 the longctx authors. MIT license.

/**
 * A direct transcription of llama2.c's `run.c` `forward()`: one token at a
 * time, per-token matrix-vector products, RoPE from `run.c`'s own formula,
 * and a naive attention loop over a flat KV cache. It shares no code with
 * {@linkcode Llama} or the attention library, so tests use it as the oracle
 * and `bench/model_bench.ts` as the baseline.
 *
 * @module
 */

import type { Checkpoint } from "./checkpoint.ts";

/** `run.c`'s forward pass with its own KV cache of `capacity` positions. */
export class ReferenceLlama {
  readonly ckpt: Checkpoint;
  readonly capacity: number;
  position = 0;
  #keyCache: Float32Array;
  #valueCache: Float32Array;
  #x: Float32Array;
  #xb: Float32Array;
  #xb2: Float32Array;
  #q: Float32Array;
  #hb: Float32Array;
  #hb2: Float32Array;
  #att: Float64Array;
  readonly logits: Float32Array;

  constructor(ckpt: Checkpoint, capacity: number) {
    const c = ckpt.config;
    this.ckpt = ckpt;
    this.capacity = capacity;
    const kvDim = c.kvHeads * c.headDim;
    this.#keyCache = new Float32Array(c.layers * capacity * kvDim);
    this.#valueCache = new Float32Array(c.layers * capacity * kvDim);
    this.#x = new Float32Array(c.dim);
    this.#xb = new Float32Array(c.dim);
    this.#xb2 = new Float32Array(c.dim);
    this.#q = new Float32Array(c.dim);
    this.#hb = new Float32Array(c.hiddenDim);
    this.#hb2 = new Float32Array(c.hiddenDim);
    this.#att = new Float64Array(capacity);
    this.logits = new Float32Array(c.vocabSize);
  }

  reset(): void {
    this.position = 0;
  }

  /** Forwards one token at `this.position`; returns the logits buffer. */
  forward(token: number): Float32Array {
    const c = this.ckpt.config, w = this.ckpt.weights;
    const pos = this.position;
    if (pos >= this.capacity) throw new RangeError(`reference cache full at ${pos}`);
    const dim = c.dim, hs = c.headDim, kvDim = c.kvHeads * hs, kvMul = c.heads / c.kvHeads;
    const hidden = c.hiddenDim, cap = this.capacity;
    const x = this.#x, xb = this.#xb, xb2 = this.#xb2, q = this.#q, hb = this.#hb, hb2 = this.#hb2;
    for (let i = 0; i < dim; i++) x[i] = w.tokenEmbedding[token * dim + i]!;
    for (let l = 0; l < c.layers; l++) {
      rmsnorm(xb, x, w.rmsAtt, l * dim, c.normEps);
      const loff = l * cap * kvDim;
      const kRow = loff + pos * kvDim;
      // q = Wq·xb; k, v written straight into the cache at pos.
      matvec(q, 0, xb, w.wq, l * dim * dim, dim, dim);
      matvec(this.#keyCache, kRow, xb, w.wk, l * kvDim * dim, dim, kvDim);
      matvec(this.#valueCache, kRow, xb, w.wv, l * kvDim * dim, dim, kvDim);
      // RoPE, run.c's loop: pairs (i, i+1), freq = 1 / 10000^((i % hs) / hs).
      for (let i = 0; i < dim; i += 2) {
        const freq = 1 / Math.pow(c.ropeBase, (i % hs) / hs);
        const val = pos * freq;
        const fcr = Math.cos(val), fci = Math.sin(val);
        const rot = i < kvDim ? 2 : 1;
        for (let r = 0; r < rot; r++) {
          const vec = r === 0 ? q : this.#keyCache;
          const o = r === 0 ? i : kRow + i;
          const v0 = vec[o]!, v1 = vec[o + 1]!;
          vec[o] = v0 * fcr - v1 * fci;
          vec[o + 1] = v0 * fci + v1 * fcr;
        }
      }
      // Naive attention per head over positions 0..pos.
      for (let h = 0; h < c.heads; h++) {
        const kvh = Math.floor(h / kvMul);
        let max = -Infinity;
        for (let t = 0; t <= pos; t++) {
          const ko = loff + t * kvDim + kvh * hs;
          let s = 0;
          for (let i = 0; i < hs; i++) s += q[h * hs + i]! * this.#keyCache[ko + i]!;
          s /= Math.sqrt(hs);
          this.#att[t] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let t = 0; t <= pos; t++) {
          this.#att[t] = Math.exp(this.#att[t]! - max);
          sum += this.#att[t]!;
        }
        for (let i = 0; i < hs; i++) {
          let acc = 0;
          for (let t = 0; t <= pos; t++) {
            acc += (this.#att[t]! / sum) * this.#valueCache[loff + t * kvDim + kvh * hs + i]!;
          }
          xb[h * hs + i] = acc;
        }
      }
      matvec(xb2, 0, xb, w.wo, l * dim * dim, dim, dim);
      for (let i = 0; i < dim; i++) x[i]! += xb2[i]!;
      rmsnorm(xb, x, w.rmsFfn, l * dim, c.normEps);
      matvec(hb, 0, xb, w.w1, l * hidden * dim, dim, hidden);
      matvec(hb2, 0, xb, w.w3, l * hidden * dim, dim, hidden);
      for (let i = 0; i < hidden; i++) {
        const v = hb[i]!;
        hb[i] = v * (1 / (1 + Math.exp(-v))) * hb2[i]!;
      }
      matvec(xb, 0, hb, w.w2, l * dim * hidden, hidden, dim);
      for (let i = 0; i < dim; i++) x[i]! += xb[i]!;
    }
    rmsnorm(x, x, w.rmsFinal, 0, c.normEps);
    matvec(this.logits, 0, x, w.classifier, 0, dim, c.vocabSize);
    this.position++;
    return this.logits;
  }
}

function rmsnorm(o: Float32Array, x: Float32Array, g: Float32Array, gOff: number, eps: number) {
  let ss = 0;
  for (let j = 0; j < x.length; j++) ss += x[j]! * x[j]!;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  for (let j = 0; j < x.length; j++) o[j] = g[gOff + j]! * (inv * x[j]!);
}

function matvec(
  out: Float32Array,
  oOff: number,
  x: Float32Array,
  w: Float32Array,
  wOff: number,
  n: number,
  d: number,
) {
  for (let i = 0; i < d; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += w[wOff + i * n + j]! * x[j]!;
    out[oOff + i] = s;
  }
}
