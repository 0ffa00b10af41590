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
  const order = Array.from(scores.keys()).sort((a, b) => scores[b]! - scores[a]! || a - b);
  const keep = Math.round(ratio * scores.length);
  const retrieval = Array.from({ length: c.layers }, () => new Array<boolean>(KV).fill(false));
  for (const i of order.slice(0, keep)) retrieval[Math.floor(i / KV)]![i % KV] = true;
  return { scores, retrieval };
}
