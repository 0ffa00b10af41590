// Copyright 2026 the longctx authors. MIT license.

import assert from "node:assert/strict";
import { randomCheckpoint } from "./checkpoint.ts";
import { Llama } from "./llama.ts";
import { perplexity, splitStories, tokenizeStories } from "./perplexity.ts";
import { Tokenizer } from "./tokenizer.ts";
import { ReferenceLlama } from "./_reference.ts";

Deno.test("splitStories() splits on <|endoftext|> or blank-line pairs and collapses paragraphs", () => {
  assert.deepEqual(
    splitStories("A one.\n\nA two.\n<|endoftext|>\n  B.\n<|endoftext|>\n\n"),
    ["A one.\nA two.", "B."],
  );
  assert.deepEqual(splitStories("First.\nSecond line.\n\n\nNext story.\n\n\n\nLast."), [
    "First.\nSecond line.",
    "Next story.",
    "Last.",
  ]);
  assert.deepEqual(splitStories("just one\n\nstory"), ["just one\nstory"]);
  assert.deepEqual(splitStories(""), []);
});

Deno.test("tokenizeStories() gives each story a BOS and cuts the stream at maxTokens", () => {
  const tok = Tokenizer.fromPieces(["<unk>", "<s>", "</s>", " ", "a", "b", " a"], [
    0,
    0,
    0,
    -1,
    -1,
    -1,
    0,
  ]);
  const stream = tokenizeStories(tok, ["a", "ab", "b"]);
  assert.deepEqual([...stream], [1, 6, 1, 6, 5, 1, 3, 5]);
  assert.deepEqual([...tokenizeStories(tok, ["a", "ab", "b"], 4)], [1, 6, 1, 6]);
});

Deno.test("perplexity() scores windows from an empty cache, equal to a direct computation", () => {
  const shape = {
    dim: 16,
    hiddenDim: 24,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    vocabSize: 23,
    seqLen: 32,
  };
  const ckpt = randomCheckpoint(shape, { seed: 12 });
  const tokens = Array.from({ length: 50 }, (_, i) => (i * 5 + 3) % 23);
  const r = perplexity(new Llama(ckpt, { prefillChunk: 7 }), tokens, { context: 16 });
  assert.equal(r.windows, 3);
  assert.equal(r.tokens, 3 * 15);
  // The oracle: the naive forward, window by window, NLL of each next token.
  const ref = new ReferenceLlama(ckpt, 16);
  const nll: number[] = [];
  for (let w = 0; w < 3; w++) {
    ref.reset();
    for (let i = 0; i < 15; i++) {
      const logits = ref.forward(tokens[16 * w + i]!);
      const max = Math.max(...logits);
      const lse = max + Math.log(logits.reduce((s, x) => s + Math.exp(x - max), 0));
      nll.push(lse - logits[tokens[16 * w + i + 1]!]!);
    }
  }
  nll.forEach((x, i) =>
    assert.ok(Math.abs(x - r.nll[i]!) < 1e-4, `token ${i}: ${r.nll[i]} vs ${x}`)
  );
  const mean = nll.reduce((a, b) => a + b) / nll.length;
  assert.ok(Math.abs(r.perplexity - Math.exp(mean)) < 1e-3 * Math.exp(mean));
  // Progress reaches the total.
  let last = 0;
  perplexity(new Llama(ckpt), tokens, { context: 16, windows: 2, onProgress: (d) => (last = d) });
  assert.equal(last, 32);
});

Deno.test("perplexity() validates context and window counts", () => {
  const ckpt = randomCheckpoint({
    dim: 8,
    hiddenDim: 8,
    layers: 1,
    heads: 2,
    kvHeads: 1,
    vocabSize: 5,
    seqLen: 8,
  });
  const model = new Llama(ckpt);
  assert.throws(() => perplexity(model, [1, 2, 3], { context: 1 }), /at least 2/);
  assert.throws(() => perplexity(model, [1], { context: 4 }), /at least 2 tokens/);
  assert.throws(() => perplexity(model, [1, 2, 3, 4], { context: 2, windows: 3 }), /at most 2/);
  // A stream shorter than the context is one window of the whole stream.
  assert.equal(perplexity(model, [1, 2, 3], { context: 8 }).tokens, 2);
});
