// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Pass-key retrieval on a real model: the synthetic task `tinystories-1k` was
 * trained on (see `../shared/models/tinystories-1k/PROVENANCE.md`) — story
 * text as filler, the fact {@linkcode passkeyFact} (`The secret number is
 * NNNNN. Remember it.`) at a chosen depth, and at the end
 * {@linkcode PASSKEY_QUESTION} (`What is the secret number? The secret number
 * is`); the model must continue with the 5-digit key.
 *
 * A prompt of `length` tokens is built at the token level so its length is
 * exact: `[BOS] + filler₁ + fact + filler₂ + question`, followed by the
 * answer tokens (a space and the five digits), `length` tokens in all. Each
 * piece is encoded on its own with `run.c`'s dummy-prefix space, which is
 * how the same text joined by spaces tokenizes. The filler is consecutive
 * held-out stories (each encoded without BOS) starting at a chosen story,
 * cut to the tokens needed; the fact goes at the sentence end (a token whose
 * piece ends in `.`, `!` or `?`) nearest to `depth · filler`, or at the
 * start/end of the filler.
 *
 * Scoring is exact match under greedy decoding: after a prefill of the
 * prompt (chunked by the model) the answer is decoded token by token from the
 * KV cache, and a trial counts only if every answer token is the model's top
 * choice — the criterion of PROVENANCE.md.
 *
 * @module
 */

import { Rng } from "../tensor/random.ts";
import { describeValue, requireFinite, requirePositiveInt } from "../tensor/validate.ts";
import type { Llama } from "./llama.ts";
import { BOS_TOKEN, type Tokenizer } from "./tokenizer.ts";

/** The question that ends every pass-key prompt (PROVENANCE.md, verbatim). */
export const PASSKEY_QUESTION = "What is the secret number? The secret number is";

/** Digits of a pass key. */
export const PASSKEY_DIGITS = 5;

/**
 * The fact sentence holding the key (PROVENANCE.md, verbatim).
 *
 * @param key The pass key (digits).
 * @returns `The secret number is ${key}. Remember it.`
 * @throws {TypeError} If `key` is not a string of digits.
 *
 * @example
 * ```ts
 * import { passkeyFact } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * assert.equal(passkeyFact("41592"), "The secret number is 41592. Remember it.");
 * ```
 */
export function passkeyFact(key: string): string {
  requireKey("build pass-key fact", key);
  return `The secret number is ${key}. Remember it.`;
}

/**
 * Parses the key out of a model's continuation of {@linkcode PASSKEY_QUESTION}:
 * the first run of digits after optional whitespace, or `null` when the text
 * does not start with digits.
 *
 * @param text The decoded continuation (e.g. `" 41592."`).
 * @returns The digits, or `null`.
 *
 * @example
 * ```ts
 * import { parsePasskeyAnswer } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * assert.equal(parsePasskeyAnswer(" 41592. Remember"), "41592");
 * assert.equal(parsePasskeyAnswer(" Lily."), null);
 * ```
 */
export function parsePasskeyAnswer(text: string): string | null {
  if (typeof text !== "string") {
    throw new TypeError(
      `Cannot parse pass-key answer: text must be a string, got ${describeValue(text)}`,
    );
  }
  const m = /^\s*(\d+)/.exec(text);
  return m ? m[1]! : null;
}

/** A random key of {@linkcode PASSKEY_DIGITS} digits without a leading zero (`10000 … 99999`). */
function randomPasskey(rng: Rng): string {
  const lo = 10 ** (PASSKEY_DIGITS - 1);
  return String(lo + rng.int(9 * lo));
}

/**
 * Filler for pass-key prompts: each story encoded without BOS (with the
 * dummy-prefix space, so consecutive stories read as text joined by spaces).
 *
 * @param tokenizer The model's tokenizer.
 * @param stories Stories (e.g. `splitStories` of the held-out file).
 * @returns One token array per non-empty story.
 * @throws {RangeError} If no story has tokens.
 */
export function passkeyFiller(tokenizer: Tokenizer, stories: readonly string[]): Int32Array[] {
  const out = stories
    .map((s) => Int32Array.from(tokenizer.encode(s, { bos: false })))
    .filter((t) => t.length > 0);
  if (out.length === 0) {
    throw new RangeError(
      `Cannot build pass-key filler: stories must hold text, got ${stories.length} empty stories`,
    );
  }
  return out;
}

/** Options of {@linkcode buildPasskeyPrompt}. */
export interface PasskeyPromptOptions {
  /** Total tokens: prompt (BOS included) plus answer. */
  length: number;
  /** Where the fact goes, as a fraction of the filler in `[0, 1]`. */
  depth: number;
  /** The key: {@linkcode PASSKEY_DIGITS} digits. */
  key: string;
  /** Story the filler starts at (wrapping around). @default {0} */
  startStory?: number;
}

/** A pass-key prompt from {@linkcode buildPasskeyPrompt}. */
export interface PasskeyPrompt {
  /** `[BOS] + filler₁ + fact + filler₂ + question`: `length − answer.length` tokens. */
  tokens: Int32Array;
  /** The expected continuation: the tokens of `" " + key`. */
  answer: Int32Array;
  /** The key. */
  key: string;
  /** Token index in `tokens` of the fact's first token. */
  factPosition: number;
  /** Tokens of the fact sentence. */
  factTokens: number;
  /** The requested depth. */
  depth: number;
  /** Filler tokens in the prompt (before and after the fact). */
  fillerTokens: number;
}

/**
 * Builds a pass-key prompt of exactly `options.length` tokens (prompt plus
 * answer); see the module doc for the layout.
 *
 * @param tokenizer The model's tokenizer.
 * @param filler Stories as tokens ({@linkcode passkeyFiller}).
 * @param options Length, depth, key, first story.
 * @returns The prompt tokens, the answer tokens and where the fact is.
 * @throws {RangeError} If `length` is not a positive integer or leaves no
 *   room for BOS, fact, question and answer, `depth` is outside `[0, 1]`,
 *   or `startStory` is not a non-negative integer.
 * @throws {TypeError} If `key` is not a string of {@linkcode PASSKEY_DIGITS} digits.
 *
 * @example A toy filler: the fact at the middle sentence end, the question last
 * ```ts
 * import { buildPasskeyPrompt, PASSKEY_QUESTION, passkeyFact, Tokenizer } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * const pieces = ["<unk>", "\n<s>\n", "\n</s>\n", ...new Set(passkeyFact("12345") + PASSKEY_QUESTION + "ab")];
 * const tok = Tokenizer.fromPieces(pieces, pieces.map(() => 0));
 * const filler = [Int32Array.from(tok.encode("a a. b b. a a. b b.", { bos: false }))];
 * const p = buildPasskeyPrompt(tok, filler, { length: 170, depth: 0.5, key: "12345" });
 * assert.equal(p.tokens.length + p.answer.length, 170);
 * assert.equal(tok.decode(p.answer), " 12345");
 * const text = tok.decode(p.tokens.subarray(1));
 * assert.ok(text.includes(" " + passkeyFact("12345") + " "));
 * assert.ok(text.endsWith(" " + PASSKEY_QUESTION));
 * ```
 */
export function buildPasskeyPrompt(
  tokenizer: Tokenizer,
  filler: readonly ArrayLike<number>[],
  options: PasskeyPromptOptions,
): PasskeyPrompt {
  const action = "build pass-key prompt";
  const length = requirePositiveInt(action, "length", options.length);
  const depth = requireFinite(action, "depth", options.depth);
  if (depth < 0 || depth > 1) {
    throw new RangeError(`Cannot ${action}: depth must be in [0, 1], got ${depth}`);
  }
  const key = requireKey(action, options.key);
  const start = options.startStory ?? 0;
  if (!Number.isSafeInteger(start) || start < 0) {
    throw new RangeError(
      `Cannot ${action}: startStory must be a non-negative integer, got ${describeValue(start)}`,
    );
  }
  if (filler.length === 0 || filler.every((s) => s.length === 0)) {
    throw new RangeError(`Cannot ${action}: filler must hold tokens, got none`);
  }
  const fact = tokenizer.encode(passkeyFact(key), { bos: false });
  const question = tokenizer.encode(PASSKEY_QUESTION, { bos: false });
  const answer = answerTokens(tokenizer, question, key);
  const fixed = 1 + fact.length + question.length + answer.length;
  if (length < fixed) {
    throw new RangeError(
      `Cannot ${action}: length must be at least ${fixed} (BOS, fact, question and answer), got ${length}`,
    );
  }
  const F = length - fixed;
  // Filler: consecutive stories from `start`, wrapping around, cut to F tokens.
  const fill = new Int32Array(F);
  for (let n = 0, s = start; n < F; s++) {
    const story = filler[s % filler.length]!;
    for (let i = 0; i < story.length && n < F; i++) fill[n++] = story[i]!;
  }
  // The sentence end nearest to depth·F (ties to the earlier one); 0 and F always qualify.
  const target = depth * F;
  let cut = 0;
  for (let i = 1; i <= F; i++) {
    if (i < F && !endsSentence(tokenizer, fill[i - 1]!)) continue;
    if (Math.abs(i - target) < Math.abs(cut - target)) cut = i;
  }
  const tokens = new Int32Array(length - answer.length);
  let o = 0;
  tokens[o++] = BOS_TOKEN;
  tokens.set(fill.subarray(0, cut), o);
  o += cut;
  const factPosition = o;
  tokens.set(fact, o);
  o += fact.length;
  tokens.set(fill.subarray(cut), o);
  o += F - cut;
  tokens.set(question, o);
  return {
    tokens,
    answer: Int32Array.from(answer),
    key,
    factPosition,
    factTokens: fact.length,
    depth,
    fillerTokens: F,
  };
}

/** Result of {@linkcode runPasskey}. */
export interface PasskeyOutcome {
  /** Greedy tokens after the prompt: `answer.length + extra`. */
  generated: Int32Array;
  /** Their decoded text (e.g. `" 41592."`). */
  text: string;
  /** {@linkcode parsePasskeyAnswer} of `text`. */
  parsed: string | null;
  /** Every answer token was the top choice (the exact-match criterion). */
  correct: boolean;
}

/** Options of {@linkcode runPasskey}. */
export interface RunPasskeyOptions {
  /** Tokens decoded past the answer, for display (the period). @default {1} */
  extra?: number;
}

/**
 * Runs one pass-key trial: resets the model, prefills the prompt (chunked by
 * the model's `prefillChunk`), then decodes greedily from the KV cache
 * (argmax, lowest index on ties) for the answer's length plus `extra` tokens.
 *
 * @param model The model (its pipeline decides the attention).
 * @param tokenizer Its tokenizer.
 * @param prompt From {@linkcode buildPasskeyPrompt}.
 * @param options Extra tokens to decode.
 * @returns Generated tokens and text, parsed key, exact match.
 * @throws {RangeError} If `extra` is not a non-negative integer.
 */
export function runPasskey(
  model: Llama,
  tokenizer: Tokenizer,
  prompt: PasskeyPrompt,
  options: RunPasskeyOptions = {},
): PasskeyOutcome {
  const extra = options.extra ?? 1;
  if (!Number.isSafeInteger(extra) || extra < 0) {
    throw new RangeError(
      `Cannot run pass-key trial: extra must be a non-negative integer, got ${
        describeValue(extra)
      }`,
    );
  }
  const n = prompt.answer.length + extra;
  const generated = new Int32Array(n);
  model.reset();
  let logits = model.forward(prompt.tokens);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < logits.length; j++) if (logits[j]! > logits[best]!) best = j;
    generated[i] = best;
    if (i + 1 < n) logits = model.forward([best]);
  }
  let correct = true;
  for (let i = 0; i < prompt.answer.length; i++) {
    if (generated[i] !== prompt.answer[i]) correct = false;
  }
  const text = decodeAfter(tokenizer, prompt.tokens[prompt.tokens.length - 1]!, generated);
  return { generated, text, parsed: parsePasskeyAnswer(text), correct };
}

/** One key of a pass-key grid: the key and the story its filler starts at. */
export interface PasskeyTrial {
  /** The key. */
  key: string;
  /** First filler story. */
  startStory: number;
}

/**
 * The keys of a grid: `count` trials drawn from `new Rng(seed)` (key, then
 * first story), shared by every length, depth and pipeline so that cells
 * differ only in what they vary.
 *
 * @param count Keys per cell.
 * @param seed Seed.
 * @param stories Filler stories to start from.
 * @returns The trials.
 * @throws {RangeError} If `count` or `stories` is not a positive integer.
 *
 * @example
 * ```ts
 * import { passkeyTrials } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * const a = passkeyTrials(3, 7, 100);
 * assert.deepEqual(a, passkeyTrials(3, 7, 100));
 * assert.ok(a.every((t) => /^[1-9]\d{4}$/.test(t.key) && t.startStory < 100));
 * ```
 */
export function passkeyTrials(count: number, seed: number, stories: number): PasskeyTrial[] {
  const action = "draw pass-key trials";
  requirePositiveInt(action, "count", count);
  requirePositiveInt(action, "stories", stories);
  const rng = new Rng(seed);
  const out: PasskeyTrial[] = [];
  for (let i = 0; i < count; i++) {
    const key = randomPasskey(rng);
    out.push({ key, startStory: rng.int(stories) });
  }
  return out;
}

/** One trial's record in a {@linkcode PasskeyCell}. */
export interface PasskeyTrialResult extends PasskeyTrial {
  /** Token index of the fact. */
  factPosition: number;
  /** Decoded greedy continuation. */
  text: string;
  /** Exact match. */
  correct: boolean;
  /** Wall time of prefill plus decode. */
  seconds: number;
}

/** One cell of a pass-key grid: a pipeline at one length and depth. */
export interface PasskeyCell {
  /** Pipeline label. */
  pipeline: string;
  /** Total tokens (prompt plus answer). */
  length: number;
  /** Requested depth. */
  depth: number;
  /** Fraction of trials answered exactly. */
  accuracy: number;
  /** Every trial. */
  trials: PasskeyTrialResult[];
}

/** Options of {@linkcode evaluatePasskey}. */
export interface EvaluatePasskeyOptions {
  /** Pipeline label for the cells. */
  pipeline: string;
  /** Builds the model for a length (the pipeline sized for it). */
  model: (length: number) => Llama;
  /** The tokenizer. */
  tokenizer: Tokenizer;
  /** Filler stories as tokens ({@linkcode passkeyFiller}). */
  filler: readonly ArrayLike<number>[];
  /** Total lengths (prompt plus answer). */
  lengths: readonly number[];
  /** Depths in `[0, 1]`. */
  depths: readonly number[];
  /** Keys ({@linkcode passkeyTrials}). */
  trials: readonly PasskeyTrial[];
  /** Clock for `seconds` (e.g. `() => performance.now()`, milliseconds). @default {() => 0} */
  now?: () => number;
  /** Called after each trial. */
  onTrial?: (cell: { length: number; depth: number }, trial: PasskeyTrialResult) => void;
}

/**
 * Runs a pass-key grid for one pipeline: for each length (one model from
 * `options.model`), each depth and each trial, {@linkcode buildPasskeyPrompt}
 * then {@linkcode runPasskey}.
 *
 * @param options Pipeline, model factory, tokenizer, filler, grid.
 * @returns One cell per length and depth, lengths outer.
 */
export function evaluatePasskey(options: EvaluatePasskeyOptions): PasskeyCell[] {
  const now = options.now ?? (() => 0);
  const cells: PasskeyCell[] = [];
  for (const length of options.lengths) {
    const model = options.model(length);
    for (const depth of options.depths) {
      const trials: PasskeyTrialResult[] = [];
      for (const t of options.trials) {
        const prompt = buildPasskeyPrompt(options.tokenizer, options.filler, {
          length,
          depth,
          key: t.key,
          startStory: t.startStory,
        });
        const t0 = now();
        const r = runPasskey(model, options.tokenizer, prompt);
        const result: PasskeyTrialResult = {
          key: t.key,
          startStory: t.startStory,
          factPosition: prompt.factPosition,
          text: r.text,
          correct: r.correct,
          seconds: (now() - t0) / 1000,
        };
        trials.push(result);
        options.onTrial?.({ length, depth }, result);
      }
      const ok = trials.filter((t) => t.correct).length;
      cells.push({
        pipeline: options.pipeline,
        length,
        depth,
        accuracy: trials.length > 0 ? ok / trials.length : NaN,
        trials,
      });
    }
  }
  return cells;
}

/**
 * A Markdown table of one pipeline's cells: a row per depth, a column per
 * length (the needle-in-a-haystack layout), and a mean row.
 *
 * @param cells Cells of one pipeline ({@linkcode evaluatePasskey}).
 * @returns The table, ending in a newline.
 *
 * @example
 * ```ts
 * import { passkeyTable } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * const cell = (length: number, depth: number, accuracy: number) => ({ pipeline: "dense", length, depth, accuracy, trials: [] });
 * const t = passkeyTable([cell(1024, 0.5, 1), cell(2048, 0.5, 0.5)]);
 * assert.equal(t.split("\n")[2], "| 0.5 | 1.00 | 0.50 |");
 * ```
 */
export function passkeyTable(cells: readonly PasskeyCell[]): string {
  const lengths = [...new Set(cells.map((c) => c.length))];
  const depths = [...new Set(cells.map((c) => c.depth))];
  const at = (l: number, d: number): PasskeyCell | undefined =>
    cells.find((c) => c.length === l && c.depth === d);
  const fmt = (x: number | undefined): string => (x === undefined || isNaN(x) ? "—" : x.toFixed(2));
  const lines = [
    `| depth | ${lengths.map((l) => String(l)).join(" | ")} |`,
    `| --- |${lengths.map(() => " ---: |").join("")}`,
    ...depths.map((d) => `| ${d} | ${lengths.map((l) => fmt(at(l, d)?.accuracy)).join(" | ")} |`),
  ];
  if (depths.length > 1) {
    lines.push(
      `| mean | ${
        lengths.map((l) => {
          const row = cells.filter((c) => c.length === l);
          return fmt(row.reduce((s, c) => s + c.accuracy, 0) / row.length);
        }).join(" | ")
      } |`,
    );
  }
  return lines.join("\n") + "\n";
}

function requireKey(action: string, key: unknown): string {
  if (typeof key !== "string" || !new RegExp(`^\\d{${PASSKEY_DIGITS}}$`).test(key)) {
    throw new TypeError(
      `Cannot ${action}: key must be a string of ${PASSKEY_DIGITS} digits, got ${
        describeValue(key)
      }`,
    );
  }
  return key;
}

/** Tokens of `" " + key` as they follow the question (the suffix of encoding both together). */
function answerTokens(tokenizer: Tokenizer, question: readonly number[], key: string): number[] {
  const both = tokenizer.encode(`${PASSKEY_QUESTION} ${key}`, { bos: false });
  const prefixOk = question.every((t, i) => both[i] === t);
  if (prefixOk && both.length > question.length) return both.slice(question.length);
  // The key merged into the question's last piece: fall back to the key on its own.
  return tokenizer.encode(key, { bos: false });
}

function endsSentence(tokenizer: Tokenizer, token: number): boolean {
  const p = tokenizer.pieces[token];
  if (p === undefined || p.length === 0) return false;
  const last = p[p.length - 1]!;
  return last === 0x2e || last === 0x21 || last === 0x3f; // . ! ?
}

function decodeAfter(tokenizer: Tokenizer, prev: number, tokens: Int32Array): string {
  const decoder = new TextDecoder();
  let text = "";
  for (let i = 0; i < tokens.length; i++) {
    text += decoder.decode(tokenizer.piece(i === 0 ? prev : tokens[i - 1]!, tokens[i]!), {
      stream: true,
    });
  }
  return text + decoder.decode();
}
