// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Named attention pipelines for context extension of a trained Llama model:
 * RoPE frequency scaling (PI, NTK, YaRN, dynamic NTK) and bounded-attention
 * selectors (StreamingLLM, LM-Infinite, LongHeads), each sized from the
 * model's trained context and the target context.
 *
 * With `L₀` the trained context (`config.seqLen`), `T` the target context
 * and `s = max(1, T / L₀)`:
 *
 * | name | what | sizes |
 * | --- | --- | --- |
 * | `dense` | plain RoPE, every token | — |
 * | `pi` | Position Interpolation | `factor s` |
 * | `ntk` | NTK-aware base scaling | `factor s` |
 * | `yarn` | YaRN (NTK-by-parts + attention temperature) | `factor s`, `originalMaxPosition L₀` |
 * | `dynamic-ntk` | dynamic NTK: plain up to `L₀`, then the base grows with the current length `L` (ratio `L / L₀`) | `factor 1`, `originalMaxPosition L₀`; pre-RoPE cache |
 * | `streaming` | StreamingLLM: 4 sinks + recent window, positions re-indexed in the cache; SinkWindow eviction | window `L₀ − 4` |
 * | `lm-infinite` | LM-Infinite Λ mask + distance ceiling; SinkWindow eviction | 10 global tokens, local window `L₀`, ceiling `L₀` |
 * | `longheads` | LongHeads chunk selection per head | chunk 64, attention length `L₀` |
 * | `longheads-32` | LongHeads with smaller chunks | chunk 32, attention length `L₀` |
 * | `longheads-kb` | LongHeads ranking chunks by a key bound (`chunkScore: "key-bound"`, a deviation) | chunk 64, attention length `L₀` |
 * | `duo` | DuoAttention router: retrieval heads dense, streaming heads 4 sinks + recent window at original positions | recent `L₀ / 4`; head split from `duoRetrieval` |
 * | `duo-longheads` | DuoAttention whose retrieval heads run LongHeads | as `duo`, LongHeads chunk 64, attention length `L₀` |
 * | `duo-longheads-kb` | DuoAttention whose retrieval heads run `longheads-kb` | as `duo-longheads` |
 *
 * Oracles: at `T ≤ L₀` every name but the two DuoAttention ones is dense
 * attention (factors are 1, windows and attention lengths cover the
 * context); DuoAttention's streaming heads keep their window at any length.
 *
 * The DuoAttention names need the head split (`duoRetrieval`): the authors'
 * learned gates exist only for their 7B/8B models, so for a small model use
 * {@linkcode calibrateDuoHeads} (a training-free proxy, see its module).
 *
 * Dynamic NTK uses `factor 1` because its scaling already follows the
 * length: transformers' formula `base · (factor·L/L₀ − (factor − 1))^(d/(d−2))`
 * with `factor 1` is NTK at ratio `L / L₀`, i.e. the static `ntk` ratio
 * when `L = T`. Its keys are cached raw and rotated on every read with the
 * frequencies in force, and an `attend` call uses the length at the end of
 * the call: in a chunked prefill every query of a chunk sees the frequencies
 * of the chunk's last position (so results depend slightly on the model's
 * `prefillChunk`), in decode those of its own position.
 *
 * @module
 */

import { AttentionPipeline } from "../attention/pipeline.ts";
import { StreamingLlm } from "../attention/streaming_llm.ts";
import { LmInfinite } from "../attention/lm_infinite.ts";
import { LongHeads } from "../attention/long_heads.ts";
import { DuoAttention } from "../attention/duo_attention.ts";
import { SinkWindow } from "../kv/sink_window.ts";
import { Rope } from "../positional/rope.ts";
import type { RopeScaling } from "../positional/scaling.ts";
import { describeValue, requirePositiveInt } from "../tensor/validate.ts";
import type { LlamaConfig } from "./checkpoint.ts";
import type { PipelineFactory } from "./llama.ts";

/** Every pipeline name {@linkcode namedPipeline} knows, in table order. */
export const PIPELINE_NAMES = [
  "dense",
  "pi",
  "ntk",
  "yarn",
  "dynamic-ntk",
  "streaming",
  "lm-infinite",
  "longheads",
  "longheads-32",
  "longheads-kb",
  "duo",
  "duo-longheads",
  "duo-longheads-kb",
] as const;

/** A name of {@linkcode PIPELINE_NAMES}. */
export type PipelineName = typeof PIPELINE_NAMES[number];

/** StreamingLLM sinks of the `streaming` pipeline. */
export const STREAMING_SINKS = 4;
/** LM-Infinite global tokens of the `lm-infinite` pipeline. */
export const LM_INFINITE_GLOBAL = 10;

/** Options of {@linkcode namedPipeline}. */
export interface NamedPipelineOptions {
  /** Context length the pipeline should serve; sets the scaling factor. @default {config.seqLen} */
  targetContext?: number;
  /** Tokens per KV page. @default {256} */
  pageSize?: number;
  /**
   * Retrieval heads of the DuoAttention names, `duoRetrieval[layer][kvHead]`
   * (`true` = full KV); required by `duo` and `duo-longheads`.
   * @default {undefined}
   */
  duoRetrieval?: ReadonlyArray<ReadonlyArray<boolean>>;
}

/** Sinks of the DuoAttention names' streaming heads. */
export const DUO_SINKS = 4;

/** Recent tokens of the DuoAttention names' streaming heads for a trained context `seqLen`: `seqLen / 4`. */
export function duoRecent(seqLen: number): number {
  return Math.max(1, Math.floor(seqLen / 4));
}

/**
 * The scaling factor `max(1, targetContext / seqLen)`.
 *
 * @param config Model shape (`seqLen` is the trained context).
 * @param targetContext Context to serve.
 * @returns The factor.
 */
export function contextFactor(config: LlamaConfig, targetContext: number): number {
  return Math.max(1, targetContext / config.seqLen);
}

/**
 * Builds a named pipeline for a model (see the module doc for each name).
 *
 * @param name One of {@linkcode PIPELINE_NAMES}.
 * @param config Model shape.
 * @param options Target context.
 * @returns A fresh pipeline.
 * @throws {TypeError} On an unknown name, or a DuoAttention name without `duoRetrieval`.
 * @throws {RangeError} If `targetContext` is not a positive integer.
 *
 * @example PI at 4× the trained context; the selectors are dense up to it
 * ```ts
 * import { namedPipeline } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * const config = {
 *   dim: 64, hiddenDim: 172, layers: 5, heads: 8, kvHeads: 4, vocabSize: 512, seqLen: 512,
 *   headDim: 8, sharedClassifier: true, normEps: 1e-5, ropeBase: 10000,
 * };
 * const pi = namedPipeline("pi", config, { targetContext: 2048 });
 * assert.deepEqual(pi.rope?.scaling, { type: "linear", factor: 4 });
 * const streaming = namedPipeline("streaming", config, { targetContext: 2048 });
 * assert.equal(streaming.plan(0, 0).selector.name, "streaming-llm");
 * ```
 */
export function namedPipeline(
  name: PipelineName,
  config: LlamaConfig,
  options: NamedPipelineOptions = {},
): AttentionPipeline {
  const action = "build named pipeline";
  if (!(PIPELINE_NAMES as readonly string[]).includes(name)) {
    throw new TypeError(
      `Cannot ${action}: name must be one of ${
        PIPELINE_NAMES.map((n) => JSON.stringify(n)).join(", ")
      }, got ${describeValue(name)}`,
    );
  }
  const target = requirePositiveInt(
    action,
    "targetContext",
    options.targetContext ?? config.seqLen,
  );
  const L0 = config.seqLen;
  const s = contextFactor(config, target);
  const base = {
    layers: config.layers,
    heads: config.heads,
    kvHeads: config.kvHeads,
    headDim: config.headDim,
    ...(options.pageSize !== undefined ? { pageSize: options.pageSize } : {}),
  };
  const rope = (scaling: RopeScaling = { type: "none" }): Rope =>
    new Rope({ headDim: config.headDim, base: config.ropeBase, layout: "adjacent", scaling });
  switch (name) {
    case "dense":
      return new AttentionPipeline({ ...base, rope: rope() });
    case "pi":
      return new AttentionPipeline({ ...base, rope: rope({ type: "linear", factor: s }) });
    case "ntk":
      return new AttentionPipeline({ ...base, rope: rope({ type: "ntk", factor: s }) });
    case "yarn":
      return new AttentionPipeline({
        ...base,
        rope: rope({ type: "yarn", factor: s, originalMaxPosition: L0 }),
      });
    case "dynamic-ntk":
      return new AttentionPipeline({
        ...base,
        rope: rope({ type: "dynamic-ntk", factor: 1, originalMaxPosition: L0 }),
        keyForm: "pre-rope",
      });
    case "streaming": {
      const window = Math.max(1, L0 - STREAMING_SINKS);
      return new AttentionPipeline({
        ...base,
        rope: rope(),
        selector: new StreamingLlm({ sinks: STREAMING_SINKS, window }),
        policy: new SinkWindow({ sinks: STREAMING_SINKS, window }),
      });
    }
    case "lm-infinite":
      return new AttentionPipeline({
        ...base,
        rope: rope(),
        selector: new LmInfinite({ globalTokens: LM_INFINITE_GLOBAL, localWindow: L0 }),
        policy: new SinkWindow({ sinks: LM_INFINITE_GLOBAL, window: L0 }),
      });
    case "longheads":
    case "longheads-32":
    case "longheads-kb": {
      const chunkSize = name === "longheads-32" ? 32 : 64;
      const attentionLength = Math.floor(L0 / chunkSize) * chunkSize;
      return new AttentionPipeline({
        ...base,
        rope: rope(),
        selector: new LongHeads({
          chunkSize,
          attentionLength,
          chunkScore: name === "longheads-kb" ? "key-bound" : "summary",
        }),
      });
    }
    case "duo":
    case "duo-longheads":
    case "duo-longheads-kb": {
      if (options.duoRetrieval === undefined) {
        throw new TypeError(
          `Cannot ${action}: ${
            JSON.stringify(name)
          } needs duoRetrieval (retrieval heads per layer and KV head), got undefined`,
        );
      }
      return new AttentionPipeline({
        ...base,
        rope: rope(),
        router: new DuoAttention({
          retrieval: options.duoRetrieval,
          sinks: DUO_SINKS,
          recent: duoRecent(L0),
          ...(name !== "duo"
            ? {
              retrievalSelector: new LongHeads({
                chunkSize: 64,
                attentionLength: Math.floor(L0 / 64) * 64,
                chunkScore: name === "duo-longheads-kb" ? "key-bound" : "summary",
              }),
            }
            : {}),
        }),
      });
    }
  }
}

/**
 * {@linkcode namedPipeline} as a {@linkcode PipelineFactory} for `new Llama(…, { pipeline })`.
 *
 * @param name One of {@linkcode PIPELINE_NAMES}.
 * @param options Target context.
 * @returns A factory.
 *
 * @example
 * ```ts
 * import { pipelineFactory } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * const make = pipelineFactory("yarn", { targetContext: 1024 });
 * const config = {
 *   dim: 16, hiddenDim: 32, layers: 1, heads: 2, kvHeads: 1, vocabSize: 8, seqLen: 256,
 *   headDim: 8, sharedClassifier: true, normEps: 1e-5, ropeBase: 10000,
 * };
 * assert.equal(make(config).rope?.scaling.type, "yarn");
 * ```
 */
export function pipelineFactory(
  name: PipelineName,
  options: NamedPipelineOptions = {},
): PipelineFactory {
  return (config) => namedPipeline(name, config, options);
}

/**
 * One line describing what {@linkcode namedPipeline} builds, for tables.
 *
 * @param name One of {@linkcode PIPELINE_NAMES}.
 * @param config Model shape.
 * @param options Target context.
 * @returns E.g. `"PI, factor 4"`.
 */
export function describeNamedPipeline(
  name: PipelineName,
  config: LlamaConfig,
  options: NamedPipelineOptions = {},
): string {
  const L0 = config.seqLen;
  const s = contextFactor(config, options.targetContext ?? L0);
  const f = Number.isInteger(s) ? String(s) : s.toFixed(3);
  switch (name) {
    case "dense":
      return "plain RoPE, all tokens";
    case "pi":
      return `Position Interpolation, factor ${f}`;
    case "ntk":
      return `NTK-aware base, factor ${f}`;
    case "yarn":
      return `YaRN, factor ${f}, original ${L0}`;
    case "dynamic-ntk":
      return `dynamic NTK (ratio L/${L0} beyond ${L0}), pre-RoPE cache`;
    case "streaming":
      return `StreamingLLM, ${STREAMING_SINKS} sinks + window ${L0 - STREAMING_SINKS}, re-indexed`;
    case "lm-infinite":
      return `LM-Infinite, ${LM_INFINITE_GLOBAL} global + local ${L0}, distance cap ${L0}`;
    case "longheads":
      return `LongHeads, chunk 64, attention length ${Math.floor(L0 / 64) * 64}`;
    case "longheads-32":
      return `LongHeads, chunk 32, attention length ${Math.floor(L0 / 32) * 32}`;
    case "longheads-kb":
      return `LongHeads ranked by key bound, chunk 64, attention length ${
        Math.floor(L0 / 64) * 64
      }`;
    case "duo":
    case "duo-longheads":
    case "duo-longheads-kb": {
      const mask = options.duoRetrieval;
      const kept = mask ? mask.flat().filter(Boolean).length : NaN;
      const total = mask ? mask.flat().length : NaN;
      return `DuoAttention, ${kept}/${total} retrieval heads (${
        name === "duo"
          ? "dense"
          : name === "duo-longheads"
          ? "LongHeads chunk 64"
          : "LongHeads key-bound chunk 64"
      }), streaming ${DUO_SINKS} sinks + ${duoRecent(L0)} recent`;
    }
  }
  return name;
}
