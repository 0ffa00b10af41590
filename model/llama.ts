// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * A Llama forward pass (RMSNorm, RoPE, grouped-query attention, SwiGLU), as
 * llama2.c's `run.c` computes it, whose attention in every layer is a longctx
 * {@linkcode AttentionPipeline}: dense by default, any composed pipeline by
 * option, with the pipeline's KV cache serving decode.
 *
 * @module
 */

import type { Tensor } from "../tensor/types.ts";
import { describeValue, requirePositiveInt } from "../tensor/validate.ts";
import { AttentionPipeline } from "../attention/pipeline.ts";
import type { AttentionState } from "../attention/types.ts";
import { Rope } from "../positional/rope.ts";
import type { Checkpoint, LlamaConfig, LlamaWeights } from "./checkpoint.ts";

/** Builds the attention pipeline of a model from its config. */
export type PipelineFactory = (config: LlamaConfig) => AttentionPipeline;

/** Options of {@linkcode Llama}. */
export interface LlamaOptions {
  /**
   * The attention of every layer: a pipeline (its shapes must match the
   * model and its `rope` must use the `"adjacent"` layout), or a factory
   * receiving the model config.
   * @default {denseLlamaPipeline}
   */
  pipeline?: AttentionPipeline | PipelineFactory;
  /**
   * Tokens per prefill chunk: a long prompt is processed in blocks of this
   * many tokens, so activations stay `O(prefillChunk · max(dim, hiddenDim))`
   * whatever the prompt length (the KV cache is what grows).
   * @default {256}
   */
  prefillChunk?: number;
}

/** What one layer's attention saw and produced, for capture and analysis. */
export interface AttentionEvent {
  /** Layer index. */
  readonly layer: number;
  /** Index, within the tokens of the current `forward` call, of the chunk's first row. */
  readonly start: number;
  /** Sequence position of the chunk's first row. */
  readonly position: number;
  /** Raw (pre-RoPE) queries `[rows, heads, headDim]` (valid during the callback only). */
  readonly query: Tensor<"f32">;
  /** Raw (pre-RoPE) keys `[rows, kvHeads, headDim]` (valid during the callback only). */
  readonly key: Tensor<"f32">;
  /** Values `[rows, kvHeads, headDim]` (valid during the callback only). */
  readonly value: Tensor<"f32">;
  /** The pipeline's result: `out [rows, heads, headDim]`, `lse [rows, heads]`. */
  readonly state: AttentionState;
}

/** Options of {@linkcode Llama.forward}. */
export interface ForwardOptions {
  /**
   * Receives the logits of every token, chunk by chunk: `logits` is
   * `[rows, vocabSize]` row-major (a reused buffer, valid during the call
   * only) for the call's tokens `[start, start + rows)`.
   */
  onLogits?: (logits: Float32Array, rows: number, start: number) => void;
  /** Receives each layer's attention inputs and outputs, chunk by chunk. */
  onAttention?: (event: AttentionEvent) => void;
}

/**
 * The dense pipeline for a llama2.c model: every head reads every cached
 * token; RoPE with `layout: "adjacent"` and the model's base (10000), which is
 * `run.c`'s `freq = 1 / 10000^(headDim_i / headSize)` for `headDim_i = 2i`.
 *
 * @param config Model shape.
 * @returns A fresh pipeline.
 *
 * @example
 * ```ts
 * import { denseLlamaPipeline } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * const config = {
 *   dim: 16, hiddenDim: 32, layers: 2, heads: 4, kvHeads: 2, vocabSize: 10, seqLen: 8,
 *   headDim: 4, sharedClassifier: true, normEps: 1e-5, ropeBase: 10000,
 * };
 * const pipe = denseLlamaPipeline(config);
 * assert.equal(pipe.rope?.layout, "adjacent");
 * assert.equal(pipe.layers, 2);
 * ```
 */
export function denseLlamaPipeline(config: LlamaConfig): AttentionPipeline {
  return new AttentionPipeline({
    layers: config.layers,
    heads: config.heads,
    kvHeads: config.kvHeads,
    headDim: config.headDim,
    rope: new Rope({ headDim: config.headDim, base: config.ropeBase, layout: "adjacent" }),
  });
}

/** The default of {@linkcode Llama.forward}'s options: shared, so a decode call allocates nothing. */
const NO_OPTIONS: ForwardOptions = Object.freeze({});

/** Preallocated activations for up to `rows` tokens. */
interface Workspace {
  rows: number;
  /** Residual stream `[rows, dim]`. */
  x: Float32Array;
  /** Normed input / projection output `[rows, dim]`. */
  xb: Float32Array;
  /** Queries `[rows, heads · headDim]`. */
  q: Float32Array;
  /** Keys and values `[rows, kvHeads · headDim]`. */
  k: Float32Array;
  v: Float32Array;
  /** FFN gate and up projections `[rows, hiddenDim]`. */
  hb: Float32Array;
  hb2: Float32Array;
}

interface Views {
  q: Tensor<"f32">;
  k: Tensor<"f32">;
  v: Tensor<"f32">;
}

/**
 * A Llama model (llama2.c architecture) over a longctx attention pipeline.
 *
 * Per token, as `run.c`: `x = embed(token)`; per layer,
 * `x += Wo · attn(Wq·n(x), Wk·n(x), Wv·n(x))` with `n` the layer's RMSNorm,
 * then `x += W2 · (silu(W1·n'(x)) ⊙ W3·n'(x))`; logits `= Wcls · n_final(x)`.
 * The attention call hands the **raw** (pre-RoPE) queries and keys to
 * `pipeline.attend(layer, q, k, v)`; the pipeline rotates them (its `rope`),
 * keeps the KV cache, selects and attends. So any positional scaling,
 * selector, router or cache policy of the library runs inside a real model,
 * and with the dense pipeline the result is `run.c`'s (up to float rounding:
 * dot products accumulate in float64 here).
 *
 * A `forward` call processes its tokens in chunks of `prefillChunk` rows
 * (chunked prefill); decode is `forward([token])`. Activations live in
 * buffers allocated once; a decode step allocates nothing in the model
 * itself (the pipeline allocates its per-call result).
 *
 * | cost per token | |
 * | --- | --- |
 * | matmuls | `2·(2·dim² + 2·dim·kvDim + 3·dim·hiddenDim)·layers + 2·dim·vocab` flops |
 * | attention | what the pipeline reads (dense: `4·position·dim` flops per layer) |
 *
 * @example Greedy continuation of a random tiny model (chunked prefill, then decode)
 * ```ts
 * import { argmax, Llama, randomCheckpoint } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * const ckpt = randomCheckpoint({ dim: 8, hiddenDim: 16, layers: 2, heads: 2, kvHeads: 1, vocabSize: 11, seqLen: 16 });
 * const model = new Llama(ckpt, { prefillChunk: 4 });
 * let logits = model.forward([1, 5, 7, 2, 9]);          // two chunks
 * for (let i = 0; i < 3; i++) logits = model.forward([argmax(logits)]);
 * assert.equal(model.position, 8);
 * assert.ok(logits.every(Number.isFinite));
 * ```
 */
export class Llama {
  /** Model shape. */
  readonly config: LlamaConfig;
  /** Model tensors. */
  readonly weights: LlamaWeights;
  /** Tokens per prefill chunk. */
  readonly prefillChunk: number;

  #pipeline: AttentionPipeline;
  #ws: Workspace;
  #views = new Map<number, Views>();
  /** Logits of the last token `[vocabSize]`. */
  #logits: Float32Array;
  /** Logits of a whole chunk `[prefillChunk, vocabSize]`, allocated on first use. */
  #chunkLogits: Float32Array | undefined;

  /**
   * Builds the model.
   *
   * @param checkpoint A parsed checkpoint ({@linkcode parseCheckpoint}).
   * @param options Pipeline and prefill chunk size.
   * @throws {TypeError} If the pipeline's layers, heads, KV heads or head
   *   dimension differ from the model's, or it has no `"adjacent"` RoPE.
   * @throws {RangeError} If `prefillChunk` is not a positive integer.
   */
  constructor(checkpoint: Checkpoint, options: LlamaOptions = {}) {
    const action = "create Llama";
    this.config = checkpoint.config;
    this.weights = checkpoint.weights;
    this.prefillChunk = requirePositiveInt(action, "prefillChunk", options.prefillChunk ?? 256);
    const p = options.pipeline ?? denseLlamaPipeline;
    this.#pipeline = checkPipeline(
      action,
      typeof p === "function" ? p(this.config) : p,
      this.config,
    );
    const c = this.config, r = this.prefillChunk;
    const kvDim = c.kvHeads * c.headDim, qDim = c.heads * c.headDim;
    this.#ws = {
      rows: r,
      x: new Float32Array(r * c.dim),
      xb: new Float32Array(r * Math.max(c.dim, qDim)),
      q: new Float32Array(r * qDim),
      k: new Float32Array(r * kvDim),
      v: new Float32Array(r * kvDim),
      hb: new Float32Array(r * c.hiddenDim),
      hb2: new Float32Array(r * c.hiddenDim),
    };
    this.#logits = new Float32Array(c.vocabSize);
  }

  /** The attention pipeline every layer runs (its KV store is the model's cache). */
  get pipeline(): AttentionPipeline {
    return this.#pipeline;
  }

  /** Tokens processed since construction or {@linkcode Llama.reset}: the next token's position. */
  get position(): number {
    return this.#pipeline.position(0);
  }

  /**
   * Starts a new sequence: empties the pipeline's KV cache and position, and
   * resets stateful selectors (those with a `reset()` method, e.g. LongHeads'
   * chunk summaries).
   */
  reset(): void {
    this.#pipeline.reset();
  }

  /**
   * Runs `tokens` through the model at the current position (prefill when
   * several, decode when one), appending them to the KV cache.
   *
   * @param tokens Token ids, at least one, each in `[0, vocabSize)`.
   * @param options Per-chunk logits and attention callbacks.
   * @returns Logits of the last token, `[vocabSize]` — a reused buffer,
   *   overwritten by the next call.
   * @throws {RangeError} If `tokens` is empty or holds an id out of range.
   */
  forward(tokens: ArrayLike<number>, options: ForwardOptions = NO_OPTIONS): Float32Array {
    const action = "run Llama forward";
    const n = tokens?.length;
    if (typeof n !== "number" || n < 1) {
      throw new RangeError(
        `Cannot ${action}: tokens must hold at least one token id, got ${describeValue(tokens)}`,
      );
    }
    const V = this.config.vocabSize;
    for (let i = 0; i < n; i++) {
      const t = tokens[i];
      if (!Number.isInteger(t) || t! < 0 || t! >= V) {
        throw new RangeError(
          `Cannot ${action}: tokens[${i}] must be an integer in [0, ${V}), got ${describeValue(t)}`,
        );
      }
    }
    for (let s = 0; s < n; s += this.prefillChunk) {
      this.#chunk(
        tokens,
        s,
        Math.min(this.prefillChunk, n - s),
        s + this.prefillChunk >= n,
        options,
      );
    }
    return this.#logits;
  }

  /** One chunk of `rows` tokens starting at `tokens[s]`. */
  #chunk(
    tokens: ArrayLike<number>,
    s: number,
    rows: number,
    last: boolean,
    options: ForwardOptions,
  ): void {
    const c = this.config, w = this.weights, ws = this.#ws;
    const dim = c.dim, hidden = c.hiddenDim;
    const qDim = c.heads * c.headDim, kvDim = c.kvHeads * c.headDim;
    const { x, xb, q, k, v, hb, hb2 } = ws;
    // x [rows, dim] = embedding rows.
    const emb = w.tokenEmbedding;
    for (let i = 0; i < rows; i++) {
      const e = tokens[s + i]! * dim;
      for (let j = 0; j < dim; j++) x[i * dim + j] = emb[e + j]!;
    }
    const views = this.#viewsFor(rows);
    for (let l = 0; l < c.layers; l++) {
      // Attention block.
      rmsNorm(xb, x, 0, rows, dim, w.rmsAtt, l * dim, c.normEps);
      matmul(q, xb, 0, rows, w.wq, l * qDim * dim, dim, qDim);
      matmul(k, xb, 0, rows, w.wk, l * kvDim * dim, dim, kvDim);
      matmul(v, xb, 0, rows, w.wv, l * kvDim * dim, dim, kvDim);
      const position = this.#pipeline.position(l);
      const state = this.#pipeline.attend(l, views.q, views.k, views.v);
      options.onAttention?.({
        layer: l,
        start: s,
        position,
        query: views.q,
        key: views.k,
        value: views.v,
        state,
      });
      matmul(xb, state.out.data, 0, rows, w.wo, l * dim * qDim, qDim, dim);
      for (let i = 0; i < rows * dim; i++) x[i]! += xb[i]!;
      // FFN block: x += W2 · (silu(W1 · n(x)) ⊙ W3 · n(x)).
      rmsNorm(xb, x, 0, rows, dim, w.rmsFfn, l * dim, c.normEps);
      matmul(hb, xb, 0, rows, w.w1, l * hidden * dim, dim, hidden);
      matmul(hb2, xb, 0, rows, w.w3, l * hidden * dim, dim, hidden);
      for (let i = 0; i < rows * hidden; i++) {
        const g = hb[i]!;
        hb[i] = (g / (1 + Math.exp(-g))) * hb2[i]!;
      }
      matmul(xb, hb, 0, rows, w.w2, l * dim * hidden, hidden, dim);
      for (let i = 0; i < rows * dim; i++) x[i]! += xb[i]!;
    }
    // Classifier: every row when asked for, else the call's last row only.
    const V = c.vocabSize;
    if (options.onLogits !== undefined) {
      const all = this.#chunkLogits ??= new Float32Array(this.prefillChunk * V);
      rmsNorm(xb, x, 0, rows, dim, w.rmsFinal, 0, c.normEps);
      matmul(all, xb, 0, rows, w.classifier, 0, dim, V);
      if (last) this.#logits.set(all.subarray((rows - 1) * V, rows * V));
      options.onLogits(all, rows, s);
    } else if (last) {
      rmsNorm(xb, x, (rows - 1) * dim, 1, dim, w.rmsFinal, 0, c.normEps);
      matmul(this.#logits, xb, 0, 1, w.classifier, 0, dim, V);
    }
  }

  #viewsFor(rows: number): Views {
    let v = this.#views.get(rows);
    if (v === undefined) {
      const c = this.config, d = c.headDim;
      const view = (data: Float32Array, heads: number): Tensor<"f32"> => ({
        dtype: "f32",
        shape: [rows, heads, d],
        strides: [heads * d, d, 1],
        offset: 0,
        data,
        layout: "thd",
      });
      v = {
        q: view(this.#ws.q, c.heads),
        k: view(this.#ws.k, c.kvHeads),
        v: view(this.#ws.v, c.kvHeads),
      };
      // Decode (1 row) and full chunks are the common sizes; keep the cache small.
      if (this.#views.size > 8) this.#views.clear();
      this.#views.set(rows, v);
    }
    return v;
  }
}

function checkPipeline(
  action: string,
  p: AttentionPipeline,
  c: LlamaConfig,
): AttentionPipeline {
  if (!(p instanceof AttentionPipeline)) {
    throw new TypeError(
      `Cannot ${action}: pipeline must be an AttentionPipeline (or a factory returning one), got ${
        describeValue(p)
      }`,
    );
  }
  const want = [c.layers, c.heads, c.kvHeads, c.headDim];
  const got = [p.layers, p.heads, p.kvHeads, p.headDim];
  if (want.some((x, i) => x !== got[i])) {
    throw new TypeError(
      `Cannot ${action}: pipeline (layers, heads, kvHeads, headDim) must be (${
        want.join(", ")
      }), got (${got.join(", ")})`,
    );
  }
  if (p.rope === undefined || p.rope.layout !== "adjacent") {
    throw new TypeError(
      `Cannot ${action}: pipeline rope must be a Rope with layout "adjacent" (llama2.c pairs dimensions 2i, 2i+1), got ${
        p.rope === undefined ? "no rope" : `layout ${describeValue(p.rope.layout)}`
      }`,
    );
  }
  return p;
}

/**
 * `out[r] = (x[xOff + r] / rms(x[xOff + r])) ⊙ gain` for `rows` rows of width
 * `n`, with `rms = sqrt(mean(x²) + eps)` (llama2.c's `rmsnorm`, sum in float64).
 */
function rmsNorm(
  out: Float32Array,
  x: Float32Array,
  xOff: number,
  rows: number,
  n: number,
  gain: Float32Array,
  gOff: number,
  eps: number,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * n, xo = xOff + r * n;
    let ss = 0;
    for (let j = 0; j < n; j++) ss += x[xo + j]! * x[xo + j]!;
    const inv = 1 / Math.sqrt(ss / n + eps);
    for (let j = 0; j < n; j++) out[o + j] = gain[gOff + j]! * (inv * x[xo + j]!);
  }
}

/**
 * `out[r, i] = Σ_j x[xOff + r·n + j] · W[wOff + i·n + j]` for `rows` rows:
 * `[rows, n] × [d, n]ᵀ → [rows, d]`. Four rows at a time share each weight
 * load; sums in float64.
 */
function matmul(
  out: Float32Array,
  x: Float32Array,
  xOff: number,
  rows: number,
  w: Float32Array,
  wOff: number,
  n: number,
  d: number,
): void {
  let r = 0;
  for (; r + 4 <= rows; r += 4) {
    const x0 = xOff + r * n, x1 = x0 + n, x2 = x1 + n, x3 = x2 + n;
    const o = r * d;
    for (let i = 0; i < d; i++) {
      const wi = wOff + i * n;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let j = 0; j < n; j++) {
        const wv = w[wi + j]!;
        s0 += x[x0 + j]! * wv;
        s1 += x[x1 + j]! * wv;
        s2 += x[x2 + j]! * wv;
        s3 += x[x3 + j]! * wv;
      }
      out[o + i] = s0;
      out[o + d + i] = s1;
      out[o + 2 * d + i] = s2;
      out[o + 3 * d + i] = s3;
    }
  }
  for (; r < rows; r++) {
    const xr = xOff + r * n, o = r * d;
    for (let i = 0; i < d; i++) {
      const wi = wOff + i * n;
      let s = 0;
      for (let j = 0; j < n; j++) s += x[xr + j]! * w[wi + j]!;
      out[o + i] = s;
    }
  }
}
