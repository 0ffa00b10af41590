// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Text generation as llama2.c's `run.c` `generate()` does it: the prompt is
 * encoded with BOS, forced token by token, then tokens are sampled until
 * `steps` positions are done or the model emits BOS.
 *
 * @module
 */

import { describeValue, requirePositiveInt } from "../tensor/validate.ts";
import type { Llama } from "./llama.ts";
import type { Sampler } from "./sampler.ts";
import { BOS_TOKEN, type Tokenizer } from "./tokenizer.ts";

/** Options of {@linkcode generate}. */
export interface GenerateOptions {
  /** Prompt text (may be empty). @default {""} */
  prompt?: string;
  /** Positions to run, prompt included (`run.c`'s `-n`). @default {256} */
  steps?: number;
  /** Receives each printed piece of text as it is produced. */
  onText?: (text: string) => void;
}

/** Result of {@linkcode generate}. */
export interface GenerateResult {
  /** The printed text: the prompt (without BOS) followed by the generated continuation. */
  text: string;
  /** Every token of the sequence, BOS and prompt included. */
  tokens: number[];
  /** Prompt tokens (BOS included). */
  promptTokens: number;
}

/**
 * Generates text. The prompt is prefilled in one `forward` call (chunked by
 * the model), which gives the same logits as `run.c`'s token-by-token
 * forcing; then one `forward([token])` per new token. Generation stops after
 * `steps` positions or when the sampler picks BOS (`run.c`'s sequence
 * delimiter). The model is reset first.
 *
 * @param model The model.
 * @param tokenizer Its tokenizer.
 * @param sampler Next-token sampler (`temperature: 0` for greedy).
 * @param options Prompt, steps, streaming callback.
 * @returns Text and tokens.
 * @throws {RangeError} If `steps` is not a positive integer or is smaller
 *   than the prompt's token count (BOS included).
 */
export function generate(
  model: Llama,
  tokenizer: Tokenizer,
  sampler: Sampler,
  options: GenerateOptions = {},
): GenerateResult {
  const action = "generate";
  const prompt = options.prompt ?? "";
  if (typeof prompt !== "string") {
    throw new TypeError(`Cannot ${action}: prompt must be a string, got ${describeValue(prompt)}`);
  }
  const steps = requirePositiveInt(action, "steps", options.steps ?? 256);
  const promptTokens = tokenizer.encode(prompt, { bos: true });
  if (steps < promptTokens.length) {
    throw new RangeError(
      `Cannot ${action}: steps must be at least the prompt's ${promptTokens.length} tokens (BOS included), got ${steps}`,
    );
  }
  model.reset();
  const tokens = promptTokens.slice();
  const decoder = new TextDecoder();
  let text = "";
  const emit = (prev: number, next: number, final: boolean): void => {
    const piece = decoder.decode(tokenizer.piece(prev, next), { stream: !final });
    if (piece.length > 0) {
      text += piece;
      options.onText?.(piece);
    }
  };
  // Forced prompt tokens print as they are fed (run.c prints each "next").
  for (let i = 1; i < promptTokens.length; i++) emit(promptTokens[i - 1]!, promptTokens[i]!, false);
  // Logits at position p predict token p + 1; run.c samples at p = prompt − 1 … steps − 1.
  let logits = model.forward(promptTokens);
  for (let p = promptTokens.length - 1; p < steps; p++) {
    const next = sampler.sample(logits);
    if (next === BOS_TOKEN) break;
    emit(tokens[tokens.length - 1]!, next, false);
    tokens.push(next);
    if (p + 1 < steps) logits = model.forward([next]);
  }
  const tail = decoder.decode();
  if (tail.length > 0) {
    text += tail;
    options.onText?.(tail);
  }
  return { text, tokens, promptTokens: promptTokens.length };
}
