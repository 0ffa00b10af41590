// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * A training-free retrieval/streaming head split for DuoAttention on a model
 * whose learned gates are not published.
 *
 * DuoAttention learns one gate per `(layer, KV head)` by distillation: how
 * much the model's output suffers when that head only sees its sinks and
 * recent window. This module ranks heads by a direct proxy of that loss
 * measured on calibration text: the share of each head's exact softmax
 * attention that falls **outside** the streaming Λ window (the first `sinks`
 * tokens and the last `recent + 1`), averaged over the queries that have
 * anything outside it and over the KV head's query group. The top
 * `retrievalRatio` of KV heads become retrieval heads. This is a stand-in
 * for the paper's gates, not a reproduction of them.
 *
 * @see https://arxiv.org/abs/2410.10819
 *
 * @module
 */

import { describeValue, requireNonNegativeInt } from "../tensor/validate.ts";
import { captureAttention } from "./capture.ts";
import type { Llama } from "./llama.ts";

/** Options of {@linkcode calibrateDuoHeads}. */
export interface DuoCalibrationOptions {
  /** Sink tokens of streaming heads. */
  sinks: number;
  /** Recent tokens of streaming heads (the window is `recent + 1` with the query). */
  recent: number;
  /** Fraction of KV heads kept as retrieval heads, in `[0, 1]`. @default {0.5} */
  retrievalRatio?: number;
}

/** Result of {@linkcode calibrateDuoHeads}. */
export interface DuoCalibration {
  /** Mean attention mass outside the Λ window per `(layer, kvHead)`, row-major `[layers · kvHeads]`. */
  scores: Float64Array;
  /** `retrieval[layer][kvHead]`: the highest-scoring heads (ties: lower index first). */
  retrieval: boolean[][];
}

/**
 * Ranks KV heads by the attention mass a streaming Λ window would drop (see
 * the module doc) on `tokens`, using the model's own captured, rotated
 * queries and keys with exact softmax. Run it with the dense pipeline on text
 * at most the trained context long.
 *
 * @param model The model (reset and run on `tokens`).
 * @param tokens Calibration tokens; longer than `sinks + recent + 1` to measure anything.
 * @param options Window sizes and retrieval ratio.
 * @returns Scores and the retrieval mask.
 * @throws {RangeError} On bad sizes, a ratio outside `[0, 1]`, or too few tokens.
 *
 * @example The split keeps the requested fraction of heads
 * ```ts
 * import { calibrateDuoHeads, Llama, randomCheckpoint } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * const ckpt = randomCheckpoint({ dim: 16, hiddenDim: 32, layers: 2, heads: 4, kvHeads: 2, vocabSize: 20, seqLen: 64 });
 * const tokens = Array.from({ length: 40 }, (_, i) => (i * 7) % 20);
 * const { retrieval, scores } = calibrateDuoHeads(new Llama(ckpt), tokens, { sinks: 2, recent: 8 });
 * assert.equal(retrieval.flat().filter(Boolean).length, 2);
 * assert.ok(scores.every((s) => s >= 0 && s <= 1));
 * ```
 */
export function calibrateDuoHeads(
  model: Llama,
  tokens: ArrayLike<number>,
  options: DuoCalibrationOptions,
): DuoCalibration {
  const action = "calibrate DuoAttention heads";
  const S = requireNonNegativeInt(action, "sinks", options.sinks);
  const R = requireNonNegativeInt(action, "recent", options.recent);
  const ratio = options.retrievalRatio ?? 0.5;
  if (typeof ratio !== "number" || !(ratio >= 0 && ratio <= 1)) {
    throw new RangeError(
      `Cannot ${action}: retrievalRatio must be in [0, 1], got ${describeValue(ratio)}`,
    );
  }
  const T = tokens.length;
  if (T <= S + R + 1) {
    throw new RangeError(
      `Cannot ${action}: tokens must be longer than sinks + recent + 1 (${S + R + 1}), got ${T}`,
    );
  }
  const c = model.config, H = c.heads, KV = c.kvHeads, d = c.headDim, g = H / KV;
  const { arrays } = captureAttention(model, tokens, { statistics: false });
  const scores = new Float64Array(c.layers * KV);
  const s = new Float64Array(T);
  const scale = 1 / Math.sqrt(d);
  for (let l = 0; l < c.layers; l++) {
    const q = arrays.get(`layer${l}_q_rope`)!.data, k = arrays.get(`layer${l}_k_rope`)!.data;
    for (let kh = 0; kh < KV; kh++) {
      let sum = 0, n = 0;
      for (let i = S + R + 1; i < T; i++) {
        for (let r = 0; r < g; r++) {
          const h = kh * g + r, qo = (i * H + h) * d;
          let max = -Infinity;
          for (let j = 0; j <= i; j++) {
            let dot = 0;
            for (let x = 0; x < d; x++) dot += q[qo + x]! * k[(j * KV + kh) * d + x]!;
            s[j] = dot * scale;
            if (s[j]! > max) max = s[j]!;
          }
          let z = 0, outside = 0;
          for (let j = 0; j <= i; j++) {
            const e = Math.exp(s[j]! - max);
            z += e;
            if (j >= S && j < i - R) outside += e;
          }
          sum += outside / z;
          n++;
        }
      }
      scores[l * KV + kh] = sum / n;
    }
  }
  return { scores, retrieval: topRetrievalHeads(scores, c.layers, KV, ratio) };
}

/**
 * The retrieval mask keeping the top `ratio` of `(layer, kvHead)` scores
 * (ties: lower index first), as DuoAttention's target-sparsity mode does with
 * its gates.
 *
 * @param scores Row-major `[layers · kvHeads]`, higher = more retrieval.
 * @param layers Layers.
 * @param kvHeads KV heads per layer.
 * @param ratio Fraction kept, in `[0, 1]` (rounded to whole heads).
 * @returns `retrieval[layer][kvHead]`.
 * @throws {RangeError} If the sizes disagree or `ratio` is outside `[0, 1]`.
 *
 * @example
 * ```ts
 * import { topRetrievalHeads } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * const mask = topRetrievalHeads(Float64Array.of(0.1, 0.9, 0.5, 0.2), 2, 2, 0.5);
 * assert.deepEqual(mask, [[false, true], [true, false]]);
 * ```
 */
export function topRetrievalHeads(
  scores: ArrayLike<number>,
  layers: number,
  kvHeads: number,
  ratio: number,
): boolean[][] {
  const action = "choose retrieval heads";
  requireNonNegativeInt(action, "layers", layers);
  requireNonNegativeInt(action, "kvHeads", kvHeads);
  if (scores.length !== layers * kvHeads) {
    throw new RangeError(
      `Cannot ${action}: scores must hold layers · kvHeads = ${
        layers * kvHeads
      } values, got ${scores.length}`,
    );
  }
  if (typeof ratio !== "number" || !(ratio >= 0 && ratio <= 1)) {
    throw new RangeError(
      `Cannot ${action}: ratio must be in [0, 1], got ${describeValue(ratio)}`,
    );
  }
  const order = Array.from({ length: scores.length }, (_, i) => i)
    .sort((a, b) => scores[b]! - scores[a]! || a - b);
  const keep = Math.round(ratio * scores.length);
  const retrieval = Array.from({ length: layers }, () => new Array<boolean>(kvHeads).fill(false));
  for (const i of order.slice(0, keep)) retrieval[Math.floor(i / kvHeads)]![i % kvHeads] = true;
  return retrieval;
}

/** A prompt with a known fact span and answer, e.g. a `PasskeyPrompt`. */
export interface FactPrompt {
  /** Prompt tokens (BOS first). */
  readonly tokens: ArrayLike<number>;
  /** The expected continuation (teacher-forced after the prompt). */
  readonly answer: ArrayLike<number>;
  /** Index in `tokens` of the fact's first token. */
  readonly factPosition: number;
  /** Tokens of the fact. */
  readonly factTokens: number;
}

/** Result of {@linkcode passkeyHeadProfile}: plain data a router consumes. */
export interface PasskeyHeadProfile {
  /** Mean attention share on the fact per `(layer, query head)`, row-major `[layers · heads]`. */
  queryHeads: Float64Array;
  /** The same averaged over each KV head's query group, row-major `[layers · kvHeads]`. */
  kvHeads: Float64Array;
  /** Prompts measured. */
  prompts: number;
}

/**
 * A pass-key attention profile: for each head, the share of its exact softmax
 * attention that lands on the fact's tokens, from the queries that predict the
 * answer (the prompt's last token and the answer tokens but the last, teacher
 * forced), averaged over those queries and the prompts, from the model's
 * captured rotated queries and keys (original positions, the pipeline's RoPE
 * scaling) with exact softmax over all keys; for a sparse pipeline that is
 * what dense attention would give, not what the pipeline read. Run it with
 * the dense pipeline on prompts within the trained context, where retrieval
 * works: the heads with a high share are the ones doing the retrieval, the natural
 * retrieval heads for DuoAttention ({@linkcode topRetrievalHeads} of `kvHeads`).
 *
 * @param model The model (reset and run once per prompt).
 * @param prompts Prompts with their fact span and answer.
 * @returns Shares per query head and per KV head, in `[0, 1]`.
 * @throws {RangeError} If `prompts` is empty or a fact span lies outside its prompt.
 *
 * @example A random model spreads attention; the shares are probabilities
 * ```ts
 * import { Llama, passkeyHeadProfile, randomCheckpoint } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * const ckpt = randomCheckpoint({ dim: 16, hiddenDim: 32, layers: 2, heads: 4, kvHeads: 2, vocabSize: 20, seqLen: 64 });
 * const prompt = { tokens: [1, 5, 6, 7, 8, 9, 3, 4], answer: [6, 7], factPosition: 2, factTokens: 2 };
 * const { queryHeads, kvHeads } = passkeyHeadProfile(new Llama(ckpt), [prompt]);
 * assert.equal(queryHeads.length, 8);
 * assert.equal(kvHeads.length, 4);
 * assert.ok(queryHeads.every((s) => s > 0 && s < 1));
 * ```
 */
export function passkeyHeadProfile(
  model: Llama,
  prompts: readonly FactPrompt[],
): PasskeyHeadProfile {
  const action = "measure pass-key head profile";
  if (prompts.length === 0) {
    throw new RangeError(`Cannot ${action}: prompts must not be empty, got 0 prompts`);
  }
  const c = model.config, H = c.heads, KV = c.kvHeads, d = c.headDim, g = H / KV;
  const queryHeads = new Float64Array(c.layers * H);
  const counts = new Float64Array(c.layers * H);
  for (const [n, p] of prompts.entries()) {
    const P = p.tokens.length, A = p.answer.length;
    const f0 = p.factPosition, f1 = p.factPosition + p.factTokens;
    if (!(Number.isSafeInteger(f0) && Number.isSafeInteger(f1) && f0 >= 0 && f1 <= P && f0 < f1)) {
      throw new RangeError(
        `Cannot ${action}: prompts[${n}]'s fact [${f0}, ${f1}) must lie inside its ${P} tokens`,
      );
    }
    const tokens = new Int32Array(P + Math.max(0, A - 1));
    tokens.set(Array.from(p.tokens));
    for (let i = 0; i + 1 < A; i++) tokens[P + i] = p.answer[i]!;
    const T = tokens.length;
    const { arrays } = captureAttention(model, tokens, { statistics: false });
    const s = new Float64Array(T);
    // The logits the pipeline's RoPE gives (YaRN scales them by its attention factor²).
    const factor = model.pipeline.rope?.forSequenceLength(T).attentionFactor ?? 1;
    const scale = factor * factor / Math.sqrt(d);
    for (let l = 0; l < c.layers; l++) {
      const q = arrays.get(`layer${l}_q_rope`)!.data, k = arrays.get(`layer${l}_k_rope`)!.data;
      for (let i = P - 1; i < T; i++) {
        for (let h = 0; h < H; h++) {
          const kh = Math.floor(h / g), qo = (i * H + h) * d;
          let max = -Infinity;
          for (let j = 0; j <= i; j++) {
            let dot = 0;
            for (let x = 0; x < d; x++) dot += q[qo + x]! * k[(j * KV + kh) * d + x]!;
            s[j] = dot * scale;
            if (s[j]! > max) max = s[j]!;
          }
          let z = 0, fact = 0;
          for (let j = 0; j <= i; j++) {
            const e = Math.exp(s[j]! - max);
            z += e;
            if (j >= f0 && j < f1) fact += e;
          }
          queryHeads[l * H + h] += fact / z;
          counts[l * H + h]++;
        }
      }
    }
  }
  const kvHeads = new Float64Array(c.layers * KV);
  for (let i = 0; i < queryHeads.length; i++) {
    queryHeads[i] /= counts[i]!;
    kvHeads[Math.floor(i / g)] += queryHeads[i]! / g;
  }
  return { queryHeads, kvHeads, prompts: prompts.length };
}
