// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * DuoAttention's published head patterns: a pure-text parser for the gate
 * file (`full_attention_heads.tsv`) and the training config (`config.json`),
 * and the binarization of gates into retrieval / streaming heads. No file
 * access here (the parser takes strings), so it runs in browsers; read the
 * files with `Deno.readTextFile`, `fetch` or `node:fs` and pass the text.
 * Re-exported by `attention/duo_attention.ts`.
 *
 * @module
 */

import { describeValue, requireFinite, requirePositiveInt } from "../tensor/validate.ts";

/**
 * Gates α of every `(layer, KV head)`, clipped to `[0, 1]`. High α = retrieval
 * head (full KV), low α = streaming head (sinks + recent window).
 */
export interface DuoGates {
  /** Decoder layers (rows of the file). */
  readonly layers: number;
  /** KV heads per layer (columns of the file). */
  readonly kvHeads: number;
  /** Gate values, row-major `[layers · kvHeads]`: `alpha[layer · kvHeads + kvHead]`, each in `[0, 1]`. */
  readonly alpha: Float64Array;
}

/**
 * The training run's settings from a pattern's `config.json`, with the
 * fields a loader needs typed; everything else is in `raw`.
 */
export interface DuoTrainingConfig {
  /** `sink_size`: sink tokens of the training Λ mask (128 in every published run). */
  readonly sinkSize: number;
  /** `recent_size`: recent tokens of the training Λ mask (256 in every published run). */
  readonly recentSize: number;
  /** `deploy_sink_size`, `null` when unset (as published). */
  readonly deploySinkSize: number | null;
  /** `deploy_recent_size`, `null` when unset (as published). */
  readonly deployRecentSize: number | null;
  /** `threshold` on α (0.5 as published), or `null`. */
  readonly threshold: number | null;
  /** `sparsity` (streaming fraction), `null` as published. */
  readonly sparsity: number | null;
  /** `model_name`, or `null` when absent. */
  readonly modelName: string | null;
  /** `max_length` of the training contexts, or `null` when absent. */
  readonly maxLength: number | null;
  /** The whole parsed object. */
  readonly raw: Readonly<Record<string, unknown>>;
}

/** A parsed pattern: gates plus, when given, the training config. */
export interface DuoPattern extends DuoGates {
  /** How many values lay outside `[0, 1]` before clipping. */
  readonly clipped: number;
  /** The parsed `config.json`, when `options.config` was given. */
  readonly config?: DuoTrainingConfig;
}

/** Options of {@linkcode parseDuoPattern}. */
export interface ParseDuoPatternOptions {
  /** Text of the run's `config.json`, parsed with {@linkcode parseDuoConfig}. @default {undefined} */
  config?: string;
  /** Expected decoder layers (rows); a mismatch throws. @default {undefined (any)} */
  layers?: number;
  /** Expected KV heads (columns); a mismatch throws. @default {undefined (any)} */
  kvHeads?: number;
  /** Name of the gate file in error messages. @default {"full_attention_heads.tsv"} */
  source?: string;
  /** Name of the config file in error messages. @default {"config.json"} */
  configSource?: string;
}

/** A decimal float as `%.18e` (or any plain decimal) writes it; no NaN, no Infinity, no hex. */
const FLOAT = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/**
 * Parses DuoAttention's `full_attention_heads.tsv` (and optionally the run's
 * `config.json`) into gates clipped to `[0, 1]`, as the authors' loader does
 * (`np.loadtxt(..., delimiter="\t")` then `np.clip(α, 0, 1)`).
 *
 * Format: plain text, no header, one line per decoder layer, one
 * tab-separated decimal per KV head (`%.18e` in the published files). Line
 * ends may be `\n` or `\r\n`, trailing blank lines are ignored and spaces
 * around a value are allowed. Published values dip slightly below 0 (about
 * −0.0014) because the last optimizer step follows the clamp; they are
 * clipped and counted in `clipped`.
 *
 * Stricter than `np.loadtxt` on purpose: a blank line between rows, `nan`,
 * `inf` and values that overflow to ±Infinity are errors, since each means a
 * damaged file rather than a gate.
 *
 * @param text Contents of `full_attention_heads.tsv`.
 * @param options The config text, the expected model shape (layers × KV heads), file names for messages.
 * @returns Gates, shape `[layers, kvHeads]` row-major, and the config when given.
 * @throws {SyntaxError} On an empty file, a line with a different number of
 *   columns than the first, or a field that is not a finite decimal; the
 *   message names `file:line:column` (1-based). Also from {@linkcode parseDuoConfig}.
 * @throws {TypeError} When the shape differs from `options.layers` × `options.kvHeads`.
 *
 * @example A 2-layer × 3-KV-head pattern
 * ```ts
 * import { parseDuoPattern } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * const p = parseDuoPattern("9.0e-01\t-1.0e-03\t5.0e-01\n1.0e+00\t2.5e-01\t1.2e-02\n", {
 *   layers: 2,
 *   kvHeads: 3,
 * });
 * assert.deepEqual([p.layers, p.kvHeads, p.clipped], [2, 3, 1]);
 * assert.deepEqual([...p.alpha], [0.9, 0, 0.5, 1, 0.25, 0.012]);
 * assert.throws(() => parseDuoPattern("1\t2\n3\n"), {
 *   name: "SyntaxError",
 *   message: /full_attention_heads\.tsv:2 must have 2 tab-separated columns \(as line 1\), got 1/,
 * });
 * ```
 */
export function parseDuoPattern(text: string, options: ParseDuoPatternOptions = {}): DuoPattern {
  const action = "parse DuoAttention gates";
  const source = options.source ?? "full_attention_heads.tsv";
  if (typeof text !== "string") {
    throw new TypeError(
      `Cannot ${action}: ${source} text must be a string, got ${describeValue(text)}`,
    );
  }
  const lines = text.split(/\r?\n/);
  while (lines.length > 0 && lines[lines.length - 1]!.trim() === "") lines.pop();
  if (lines.length === 0) {
    throw new SyntaxError(
      `Cannot ${action}: ${source} must hold one line of tab-separated gates per layer, got an empty file`,
    );
  }
  const cols = lines[0]!.split("\t").length;
  const alpha = new Float64Array(lines.length * cols);
  let clipped = 0;
  for (let l = 0; l < lines.length; l++) {
    const fields = lines[l]!.split("\t");
    if (lines[l]!.trim() === "") {
      throw new SyntaxError(
        `Cannot ${action}: ${source}:${
          l + 1
        } must hold ${cols} tab-separated gates, got an empty line`,
      );
    }
    if (fields.length !== cols) {
      throw new SyntaxError(
        `Cannot ${action}: ${source}:${
          l + 1
        } must have ${cols} tab-separated columns (as line 1), got ${fields.length}`,
      );
    }
    for (let c = 0; c < cols; c++) {
      const field = fields[c]!.trim();
      const v = FLOAT.test(field) ? Number(field) : NaN;
      if (!Number.isFinite(v)) {
        throw new SyntaxError(
          `Cannot ${action}: ${source}:${l + 1}:${c + 1} must be a finite decimal number, got ${
            JSON.stringify(fields[c]!.length > 40 ? `${fields[c]!.slice(0, 40)}…` : fields[c])
          }`,
        );
      }
      if (v < 0 || v > 1) clipped++;
      alpha[l * cols + c] = Math.min(1, Math.max(0, v));
    }
  }
  const layers = lines.length;
  if (options.layers !== undefined || options.kvHeads !== undefined) {
    const wantL = options.layers === undefined
      ? layers
      : requirePositiveInt(action, "layers", options.layers);
    const wantH = options.kvHeads === undefined
      ? cols
      : requirePositiveInt(action, "kvHeads", options.kvHeads);
    if (wantL !== layers || wantH !== cols) {
      throw new TypeError(
        `Cannot ${action}: ${source} must have ${wantL} rows (layers) × ${wantH} columns (KV heads) to match the model, got ${layers} × ${cols}`,
      );
    }
  }
  const config = options.config === undefined
    ? undefined
    : parseDuoConfig(options.config, { source: options.configSource ?? "config.json" });
  return { layers, kvHeads: cols, alpha, clipped, ...(config !== undefined ? { config } : {}) };
}

/**
 * Parses a DuoAttention run's `config.json` (one JSON object of training
 * arguments). `sink_size` and `recent_size` are required (the authors' loader
 * reads them); the other typed fields are `null` when absent.
 *
 * Note: the published `sink_size` (128) is the **training** value; the
 * authors' evaluation scripts deploy 64 sinks and 256 recent tokens.
 *
 * @param text The JSON text.
 * @param options File name for messages (default `"config.json"`).
 * @returns The typed fields and the raw object.
 * @throws {SyntaxError} If the text is not JSON (message names the file).
 * @throws {TypeError} If it is not an object, or a field has the wrong type.
 * @throws {RangeError} If a size is not a positive integer or `sparsity` is outside `[0, 1]`.
 *
 * @example
 * ```ts
 * import { parseDuoConfig } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * const c = parseDuoConfig('{"sink_size": 128, "recent_size": 256, "threshold": 0.5, "sparsity": null}');
 * assert.deepEqual([c.sinkSize, c.recentSize, c.threshold, c.sparsity], [128, 256, 0.5, null]);
 * assert.throws(() => parseDuoConfig("{"), { name: "SyntaxError", message: /config\.json is not valid JSON/ });
 * ```
 */
export function parseDuoConfig(text: string, options: { source?: string } = {}): DuoTrainingConfig {
  const action = "parse DuoAttention config";
  const source = options.source ?? "config.json";
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(
      `Cannot ${action}: ${source} is not valid JSON, got ${(e as Error).message}`,
    );
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new TypeError(
      `Cannot ${action}: ${source} must hold a JSON object, got ${describeValue(raw)}`,
    );
  }
  const obj = raw as Record<string, unknown>;
  const size = (key: string, required: boolean): number | null => {
    const v = obj[key];
    if (v === undefined || v === null) {
      if (!required) return null;
      throw new TypeError(
        `Cannot ${action}: ${source} must have "${key}", got ${describeValue(v)}`,
      );
    }
    return requirePositiveInt(action, `${source} "${key}"`, v);
  };
  const num = (key: string): number | null => {
    const v = obj[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== "number") {
      throw new TypeError(
        `Cannot ${action}: ${source} "${key}" must be a number or null, got ${describeValue(v)}`,
      );
    }
    return requireFinite(action, `${source} "${key}"`, v);
  };
  const sparsity = num("sparsity");
  if (sparsity !== null && !(sparsity >= 0 && sparsity <= 1)) {
    throw new RangeError(
      `Cannot ${action}: ${source} "sparsity" must be in [0, 1], got ${sparsity}`,
    );
  }
  const modelName = obj["model_name"];
  if (modelName !== undefined && modelName !== null && typeof modelName !== "string") {
    throw new TypeError(
      `Cannot ${action}: ${source} "model_name" must be a string or null, got ${
        describeValue(modelName)
      }`,
    );
  }
  return {
    sinkSize: size("sink_size", true)!,
    recentSize: size("recent_size", true)!,
    deploySinkSize: size("deploy_sink_size", false),
    deployRecentSize: size("deploy_recent_size", false),
    threshold: num("threshold"),
    sparsity,
    modelName: (modelName as string | undefined) ?? null,
    maxLength: size("max_length", false),
    raw: obj,
  };
}

/** Which `(layer, KV head)` pairs are retrieval heads. */
export interface DuoHeadMask {
  /** Decoder layers. */
  readonly layers: number;
  /** KV heads per layer. */
  readonly kvHeads: number;
  /** `1` = retrieval head, `0` = streaming head; row-major `[layers · kvHeads]`. */
  readonly retrieval: Uint8Array;
  /** Number of retrieval heads. */
  readonly retrievalHeads: number;
  /** Achieved streaming fraction, `1 − retrievalHeads / (layers · kvHeads)`. */
  readonly sparsity: number;
}

/**
 * How to binarize gates: a target streaming fraction (`sparsity`, what every
 * official evaluation uses) or a gate threshold.
 */
export type DuoBinarization = { sparsity: number } | { threshold: number };

/**
 * Binarizes gates into retrieval and streaming heads, globally over all
 * layers × KV heads (a layer may end up all streaming or all retrieval).
 *
 * - `{ sparsity: s }` (target-ratio mode): `⌈s · (n − 1)⌉` of the `n` heads
 *   become streaming, the lowest gates first; `s ≤ 0` keeps all as retrieval
 *   and `s ≥ 1` makes all streaming. That count is what the authors' rule
 *   `α ≥ np.quantile(α, s)` (linear interpolation) gives on distinct gates:
 *   0.5 of Llama-3-8B's 256 heads → 128 streaming, 0.75 of Llama-2-7B's 1024 →
 *   768. The authors break ties by adding `U(0, 1e-6)` noise to α; here ties
 *   are broken deterministically: among equal gates, the head **earlier** in
 *   row-major order (lower layer, then lower KV head) stays retrieval. So the
 *   split depends only on the gates.
 * - `{ threshold: τ }` (threshold mode): retrieval iff `α ≥ τ`, the authors'
 *   comparison (their threshold path then fails on a `None` sparsity; this one
 *   works). `τ ≤ 0` keeps every head, `τ > 1` none. τ = 0.5 keeps 81–95% of
 *   the GQA heads in the published patterns, which is why ratio mode is used.
 *
 * @param gates Gates `[layers · kvHeads]` (from {@linkcode parseDuoPattern} or your own).
 * @param options `{ sparsity }` in `[0, 1]` or `{ threshold }` finite.
 * @returns The mask.
 * @throws {TypeError} Unless exactly one of `sparsity` / `threshold` is given, or on a gate array of the wrong length.
 * @throws {RangeError} On `sparsity` outside `[0, 1]`, a non-finite threshold or gate.
 *
 * | cost | |
 * | --- | --- |
 * | time | O(n log n) for `sparsity` (one sort), O(n) for `threshold` |
 *
 * @example Half the heads streaming; ties keep the earlier head
 * ```ts
 * import { binarizeDuoGates } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * const gates = { layers: 2, kvHeads: 2, alpha: Float64Array.of(0.9, 0.1, 0.5, 0.5) };
 * const m = binarizeDuoGates(gates, { sparsity: 0.5 });
 * assert.deepEqual([...m.retrieval], [1, 0, 1, 0]);
 * assert.equal(m.sparsity, 0.5);
 * assert.deepEqual([...binarizeDuoGates(gates, { threshold: 0.5 }).retrieval], [1, 0, 1, 1]);
 * ```
 */
export function binarizeDuoGates(gates: DuoGates, options: DuoBinarization): DuoHeadMask {
  const action = "binarize DuoAttention gates";
  const layers = requirePositiveInt(action, "gates.layers", gates.layers);
  const kvHeads = requirePositiveInt(action, "gates.kvHeads", gates.kvHeads);
  const n = layers * kvHeads;
  const alpha = gates.alpha;
  if (alpha === null || typeof alpha !== "object" || alpha.length !== n) {
    throw new TypeError(
      `Cannot ${action}: gates.alpha must hold layers × kvHeads = ${n} values, got ${
        describeValue(alpha?.length ?? alpha)
      }`,
    );
  }
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(alpha[i]!)) {
      throw new RangeError(
        `Cannot ${action}: gate (layer ${Math.floor(i / kvHeads)}, KV head ${
          i % kvHeads
        }) must be finite, got ${describeValue(alpha[i])}`,
      );
    }
  }
  const o = (options ?? {}) as { sparsity?: unknown; threshold?: unknown };
  const hasS = o.sparsity !== undefined, hasT = o.threshold !== undefined;
  if (hasS === hasT) {
    throw new TypeError(
      `Cannot ${action}: give exactly one of sparsity or threshold, got ${
        hasS ? "both" : "neither"
      }`,
    );
  }
  const retrieval = new Uint8Array(n);
  if (hasT) {
    const tau = requireFinite(action, "threshold", o.threshold);
    for (let i = 0; i < n; i++) retrieval[i] = alpha[i]! >= tau ? 1 : 0;
  } else {
    const s = requireFinite(action, "sparsity", o.sparsity);
    if (s < 0 || s > 1) {
      throw new RangeError(`Cannot ${action}: sparsity must be in [0, 1], got ${s}`);
    }
    // Streaming heads: the lowest ⌈s·(n−1)⌉ gates (1e-9 absorbs rounding in s·(n−1)).
    const streaming = s >= 1 ? n : s <= 0 ? 0 : Math.min(n, Math.ceil(s * (n - 1) - 1e-9));
    // Rank by gate descending, earlier head first among equals; keep the first n − streaming.
    const order = Array.from({ length: n }, (_, i) => i);
    order.sort((a, b) => alpha[b]! - alpha[a]! || a - b);
    for (let r = 0; r < n - streaming; r++) retrieval[order[r]!] = 1;
  }
  let kept = 0;
  for (let i = 0; i < n; i++) kept += retrieval[i]!;
  return { layers, kvHeads, retrieval, retrievalHeads: kept, sparsity: 1 - kept / n };
}
