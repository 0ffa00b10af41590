// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Perplexity of a model over real text: stories are tokenized as llama2.c
 * trained on them, concatenated into one token stream, and cut into
 * non-overlapping windows of the evaluated context; each window is a fresh
 * sequence (empty KV cache) and every token after the window's first is
 * scored.
 *
 * @module
 */

import { describeValue, requirePositiveInt } from "../tensor/validate.ts";
import type { Llama } from "./llama.ts";
import type { Tokenizer } from "./tokenizer.ts";

/**
 * Splits a story file into stories: on `\n<|endoftext|>\n` (the TinyStories
 * export) when the text holds `<|endoftext|>`, else on `\n\n\n` (a blank-line
 * pair), else one story. Each story is trimmed and its blank lines collapsed
 * to single newlines (`\n\n` → `\n`), the paragraph spacing of llama2.c's
 * training data; empty stories are dropped.
 *
 * @param text The file's text.
 * @returns The stories.
 *
 * @example
 * ```ts
 * import { splitStories } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * const text = "One.\n\nTwo.\n<|endoftext|>\nThree.\n<|endoftext|>\n";
 * assert.deepEqual(splitStories(text), ["One.\nTwo.", "Three."]);
 * ```
 */
export function splitStories(text: string): string[] {
  if (typeof text !== "string") {
    throw new TypeError(`Cannot split stories: text must be a string, got ${describeValue(text)}`);
  }
  const parts = text.includes("<|endoftext|>")
    ? text.split("<|endoftext|>")
    : text.includes("\n\n\n")
    ? text.split(/\n\n\n+/)
    : [text];
  return parts.map((s) => s.trim().replace(/\n\n+/g, "\n")).filter((s) => s.length > 0);
}

/**
 * Tokenizes stories as llama2.c's pretokenizer does (`encode(story.strip(),
 * bos=True, eos=False)`) and concatenates them: `[BOS, …story 0…, BOS, …story 1…, …]`.
 *
 * @param tokenizer The tokenizer.
 * @param stories Stories (e.g. from {@linkcode splitStories}).
 * @param maxTokens Stop once this many tokens are collected (the stream is cut there). @default {Infinity}
 * @returns The token stream.
 */
export function tokenizeStories(
  tokenizer: Tokenizer,
  stories: readonly string[],
  maxTokens: number = Infinity,
): Int32Array {
  const out: number[] = [];
  for (const s of stories) {
    if (out.length >= maxTokens) break;
    for (const t of tokenizer.encode(s, { bos: true })) out.push(t);
  }
  return Int32Array.from(out.length > maxTokens ? out.slice(0, maxTokens) : out);
}

/** Options of {@linkcode perplexity}. */
export interface PerplexityOptions {
  /** Tokens per window (the evaluated context). */
  context: number;
  /** Windows to evaluate. @default {all full windows, at least one} */
  windows?: number;
  /** Called after each prefill chunk with tokens done and total. */
  onProgress?: (done: number, total: number) => void;
}

/** Result of {@linkcode perplexity}. */
export interface PerplexityResult {
  /** Tokens scored: `windows · (context − 1)` (fewer for a short stream). */
  tokens: number;
  /** Windows evaluated. */
  windows: number;
  /** Mean negative log-likelihood (nats per token). */
  meanNll: number;
  /** `exp(meanNll)`. */
  perplexity: number;
  /** NLL of each scored token, in stream order (window by window, positions 1 … context − 1). */
  nll: Float64Array;
}

/**
 * Perplexity over non-overlapping windows of `context` tokens of `tokens`.
 * Each window starts from an empty cache (`model.reset()`); the NLL of token
 * `i ≥ 1` of a window is `logsumexp(logits_{i−1}) − logits_{i−1}[token_i]`,
 * computed in float64. A stream shorter than `context` is one window.
 *
 * @param model The model (its pipeline is reset per window).
 * @param tokens The token stream (e.g. {@linkcode tokenizeStories}).
 * @param options Context, windows, progress callback.
 * @returns Token count, mean NLL, perplexity and per-token NLL.
 * @throws {RangeError} If `context < 2`, `windows` is not a positive integer,
 *   more windows are asked than the stream holds, or the stream has fewer than 2 tokens.
 */
export function perplexity(
  model: Llama,
  tokens: ArrayLike<number>,
  options: PerplexityOptions,
): PerplexityResult {
  const action = "compute perplexity";
  const context = requirePositiveInt(action, "context", options.context);
  if (context < 2) {
    throw new RangeError(`Cannot ${action}: context must be at least 2, got ${context}`);
  }
  if (tokens.length < 2) {
    throw new RangeError(
      `Cannot ${action}: tokens must hold at least 2 tokens, got ${tokens.length}`,
    );
  }
  const available = Math.max(1, Math.floor(tokens.length / context));
  const windows = options.windows === undefined
    ? available
    : requirePositiveInt(action, "windows", options.windows);
  if (windows > available) {
    throw new RangeError(
      `Cannot ${action}: windows must be at most ${available} (${tokens.length} tokens / context ${context}), got ${windows}`,
    );
  }
  const len = Math.min(context, tokens.length);
  const nll = new Float64Array(windows * (len - 1));
  const V = model.config.vocabSize;
  let k = 0;
  const total = windows * len;
  for (let w = 0; w < windows; w++) {
    const start = w * len;
    const window = Array.prototype.slice.call(tokens, start, start + len) as number[];
    model.reset();
    model.forward(window, {
      onLogits: (logits, rows, s) => {
        for (let r = 0; r < rows; r++) {
          const i = s + r; // logits of window token i predict token i + 1
          if (i + 1 >= len) break;
          const o = r * V;
          let max = -Infinity;
          for (let j = 0; j < V; j++) max = Math.max(max, logits[o + j]!);
          let sum = 0;
          for (let j = 0; j < V; j++) sum += Math.exp(logits[o + j]! - max);
          nll[k++] = max + Math.log(sum) - logits[o + window[i + 1]!]!;
        }
        options.onProgress?.(start + s + rows, total);
      },
    });
  }
  let sum = 0;
  for (let i = 0; i < nll.length; i++) sum += nll[i]!;
  const meanNll = sum / nll.length;
  return { tokens: nll.length, windows, meanNll, perplexity: Math.exp(meanNll), nll };
}
