// Copyright 2026 the longctx authors. MIT license.

import assert from "node:assert/strict";
import { join } from "node:path";
import { BOS_TOKEN, EOS_TOKEN, Tokenizer } from "./tokenizer.ts";
import { splitStories } from "./perplexity.ts";
import { loadSharedArtefact } from "./_files.ts";
import { Rng } from "../tensor/random.ts";

/**
 * Oracle: a line-by-line transcription of llama2.c run.c's encode(), including its O(n²)
 * merge loop (scan every pair, keep the first strictly best score, merge, repeat). Shares no
 * code with Tokenizer beyond reading its pieces and scores.
 */
function runCEncode(tok: Tokenizer, text: string, bos: boolean, eos: boolean): number[] {
  const keys = tok.pieces.map((p) => String.fromCharCode(...p));
  const lookup = new Map<string, number>();
  keys.forEach((k, i) => {
    if (!lookup.has(k)) lookup.set(k, i);
  });
  const bytes = new TextEncoder().encode(text);
  const tokens: number[] = [];
  if (bos) tokens.push(1);
  if (bytes.length > 0) tokens.push(lookup.get(" ")!);
  let buf: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if ((c & 0xc0) !== 0x80) buf = [];
    buf.push(c);
    const next = bytes[i + 1];
    if (next !== undefined && (next & 0xc0) === 0x80 && buf.length < 4) continue;
    const id = lookup.get(String.fromCharCode(...buf));
    if (id !== undefined) tokens.push(id);
    else for (const b of buf) tokens.push(b + 3);
    buf = [];
  }
  for (;;) {
    let best = -1e10, bestId = -1, bestIdx = -1;
    for (let i = 0; i + 1 < tokens.length; i++) {
      const id = lookup.get(keys[tokens[i]!]! + keys[tokens[i + 1]!]!);
      if (id !== undefined && tok.scores[id]! > best) {
        best = tok.scores[id]!;
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx === -1) break;
    tokens.splice(bestIdx, 2, bestId);
  }
  if (eos) tokens.push(2);
  return tokens;
}

/** A small vocabulary with byte tokens at 3…258, as llama2.c's tokenizers have. */
function toyTokenizer(extra: [string, number][]): Tokenizer {
  const pieces = ["<unk>", "<s>", "</s>"];
  const scores = [0, 0, 0];
  for (let b = 0; b < 256; b++) {
    pieces.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    scores.push(0);
  }
  for (const [p, s] of extra) {
    pieces.push(p);
    scores.push(s);
  }
  return Tokenizer.fromPieces(pieces, scores);
}

Deno.test("Tokenizer.encode() merges the best-scoring pair first, leftmost on ties", () => {
  const tok = toyTokenizer([
    [" ", -10],
    ["a", -10],
    ["b", -10],
    ["ab", -1],
    ["ba", -1],
    [" a", -5],
    ["aba", -0.5],
  ]);
  const id = (p: string): number => tok.lookup(p)!;
  // " abab": pairs " a"(-5), "ab"(-1), "ba"(-1), "ab"(-1): the leftmost "ab" wins the tie.
  assert.deepEqual(tok.encode("abab", { bos: false }), runCEncode(tok, "abab", false, false));
  assert.deepEqual(tok.encode("abab", { bos: false }), [id(" "), id("aba"), id("b")]);
  for (const t of ["", "a", "ba", "bab", "aaaa", "abba", "ab ab", "b a b a"]) {
    assert.deepEqual(tok.encode(t), runCEncode(tok, t, true, false), JSON.stringify(t));
  }
});

Deno.test("Tokenizer.encode() falls back to <0xXX> byte tokens and decode() restores the bytes", () => {
  const tok = toyTokenizer([[" ", -1], ["é", -1]]);
  // "é" is a piece; "ü" (C3 BC) is not: two byte tokens. "€" is three bytes.
  const ids = tok.encode("éü€", { bos: true, eos: true });
  assert.deepEqual(ids, [
    BOS_TOKEN,
    tok.lookup(" ")!,
    tok.lookup("é")!,
    0xc3 + 3,
    0xbc + 3,
    0xe2 + 3,
    0x82 + 3,
    0xac + 3,
    EOS_TOKEN,
  ]);
  assert.deepEqual(ids, runCEncode(tok, "éü€", true, true));
  assert.equal(tok.decode(ids), "éü€");
  assert.deepEqual(tok.piece(5, 0xc3 + 3), Uint8Array.of(0xc3));
  // A lone byte that is not valid UTF-8 decodes to U+FFFD rather than throwing.
  assert.equal(tok.decode([0xff + 3]), "\ufffd");
});

Deno.test("Tokenizer.encode() of the empty string is BOS alone (no dummy prefix)", () => {
  const tok = toyTokenizer([[" ", -1]]);
  assert.deepEqual(tok.encode(""), [BOS_TOKEN]);
  assert.deepEqual(tok.encode("", { bos: false, eos: true }), [EOS_TOKEN]);
});

Deno.test("Tokenizer.decode() drops the space after BOS only, and prints nothing for BOS/EOS", () => {
  const tok = toyTokenizer([[" ", -1], [" hi", -1], ["hi", -2]]);
  const hi = tok.lookup(" hi")!;
  assert.equal(tok.decode([BOS_TOKEN, hi, hi, EOS_TOKEN]), "hi hi");
  assert.equal(tok.decode([hi, hi]), " hi hi");
  assert.deepEqual(tok.piece(BOS_TOKEN, hi), new TextEncoder().encode("hi"));
  assert.throws(() => tok.decode([tok.vocabSize]), RangeError);
  assert.throws(() => tok.piece(0, -1), RangeError);
});

Deno.test("Tokenizer.parse() reads what toBytes() writes and rejects damaged files", async () => {
  const tok = toyTokenizer([[" ", -1], ["ab", 2.5]]);
  const dir = await Deno.makeTempDir({ prefix: "longctx_tok_" });
  try {
    const path = join(dir, "tok.bin");
    await Deno.writeFile(path, tok.toBytes());
    const bytes = await Deno.readFile(path);
    const back = Tokenizer.parse(bytes, { vocabSize: tok.vocabSize });
    assert.deepEqual(back.pieces, tok.pieces);
    assert.deepEqual(back.scores, tok.scores);
    assert.equal(Tokenizer.parse(bytes).vocabSize, tok.vocabSize); // read to the end
    assert.throws(() => Tokenizer.parse(bytes.subarray(0, bytes.length - 1)), /truncated in token/);
    assert.throws(
      () => Tokenizer.parse(bytes, { vocabSize: tok.vocabSize + 1 }),
      /truncated in token/,
    );
    assert.throws(
      () => Tokenizer.parse(bytes, { vocabSize: tok.vocabSize - 1 }),
      /must end after \d+ tokens .* got \d+ trailing bytes/,
    );
    assert.throws(() => Tokenizer.parse(bytes.subarray(0, 2)), /truncated/);
    const neg = bytes.slice();
    new DataView(neg.buffer).setInt32(8, -3, true); // token 0's length
    assert.throws(() => Tokenizer.parse(neg), /token 0 length must be in \[0, \d+\]/);
    const nan = bytes.slice();
    new DataView(nan.buffer).setFloat32(4, NaN, true);
    assert.throws(() => Tokenizer.parse(nan), /score must be finite/);
    const zero = bytes.slice();
    new DataView(zero.buffer).setInt32(0, 0, true);
    assert.throws(() => Tokenizer.parse(zero), /max_token_length must be positive/);
    assert.throws(() => Tokenizer.parse([1, 2] as unknown as Uint8Array), TypeError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Tokenizer.encode() equals run.c's O(n²) loop on random strings over a toy vocabulary", () => {
  const alphabet = ["a", "b", "c", " ", "é", "\n"];
  const merges: [string, number][] = [[" ", -20], ["a", -20], ["b", -20], ["c", -20]];
  const rng = new Rng(5);
  // Random merge pieces of 2–4 characters with random (often tied) scores.
  const seen = new Set(merges.map((m) => m[0]));
  while (merges.length < 60) {
    const len = 2 + rng.int(3);
    let p = "";
    for (let i = 0; i < len; i++) p += alphabet[rng.int(alphabet.length)];
    if (seen.has(p)) continue;
    seen.add(p);
    merges.push([p, -rng.int(6)]);
  }
  const tok = toyTokenizer(merges);
  for (let trial = 0; trial < 300; trial++) {
    let t = "";
    const n = rng.int(40);
    for (let i = 0; i < n; i++) t += alphabet[rng.int(alphabet.length)];
    assert.deepEqual(tok.encode(t), runCEncode(tok, t, true, false), JSON.stringify(t));
  }
});

// ---------------------------------------------------------------------------
// The real tok512 tokenizer (sha256-checked; skipped when ../shared is absent).

const tokFile = await loadSharedArtefact("models/stories260K/tok512.bin");
const storiesFile = await loadSharedArtefact(
  "data/tinystories/tinystories_validation_first1000.txt",
);
if (tokFile.reason) console.log(`skipping tok512 tests: ${tokFile.reason}`);
if (storiesFile.reason) console.log(`skipping TinyStories tokenizer tests: ${storiesFile.reason}`);

Deno.test({
  name: "tok512: 512 tokens, special tokens, byte tokens at 3…258",
  ignore: tokFile.bytes === undefined,
  fn() {
    const tok = Tokenizer.parse(tokFile.bytes!, { vocabSize: 512 });
    assert.equal(tok.vocabSize, 512);
    assert.equal(tok.maxTokenLength, 7);
    const dec = new TextDecoder();
    assert.deepEqual([0, 1, 2].map((i) => dec.decode(tok.pieces[i])), [
      "<unk>",
      "\n<s>\n",
      "\n</s>\n",
    ]); // as llama2.c's tokenizer.py exports them
    for (let b = 0; b < 256; b++) assert.equal(tok.byteTokens[b], b + 3);
  },
});

Deno.test({
  name: "tok512: known encodings — pieces of a sentence, byte fallback for mojibake",
  ignore: tokFile.bytes === undefined,
  fn() {
    const tok = Tokenizer.parse(tokFile.bytes!, { vocabSize: 512 });
    const pieces = (s: string): string[] => tok.encode(s).slice(1).map((i) => tok.decode([i]));
    // Every piece is a whole-word or sub-word string that re-joins to the text with its
    // dummy-prefix space, and no byte token is needed for plain ASCII story text.
    const sentence = "Once upon a time, there was a little girl named Lily.";
    assert.equal(pieces(sentence).join(""), " " + sentence);
    assert.ok(tok.encode(sentence).every((i) => i > 258 || i === BOS_TOKEN));
    // "â€œ" (mojibake of a curly quote) is valid UTF-8; any character missing from the
    // vocabulary becomes its UTF-8 bytes.
    const moji = tok.encode("â€œ", { bos: false });
    assert.equal(tok.decode(moji), " â€œ");
    assert.ok(moji.some((i) => i >= 3 && i <= 258));
    assert.deepEqual(moji, runCEncode(tok, "â€œ", false, false));
  },
});

Deno.test({
  name: "tok512: encode equals run.c's loop and decode round-trips on 1000 real stories",
  ignore: tokFile.bytes === undefined || storiesFile.bytes === undefined,
  fn() {
    const tok = Tokenizer.parse(tokFile.bytes!, { vocabSize: 512 });
    const stories = splitStories(new TextDecoder().decode(storiesFile.bytes!));
    assert.equal(stories.length, 1000);
    let tokens = 0;
    for (const [i, s] of stories.entries()) {
      const ids = tok.encode(s);
      tokens += ids.length;
      assert.equal(tok.decode(ids), s, `story ${i}`);
      // The quadratic oracle is slow on long stories: check every 25th.
      if (i % 25 === 0) assert.deepEqual(ids, runCEncode(tok, s, true, false), `story ${i}`);
    }
    assert.ok(tokens > 150_000, `tokens ${tokens}`);
  },
});
