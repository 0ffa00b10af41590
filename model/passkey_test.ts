// Copyright 2026 the longctx authors. MIT license.

import assert from "node:assert/strict";
import { join } from "node:path";
import { encodeCheckpoint, parseCheckpoint, randomCheckpoint } from "./checkpoint.ts";
import { Llama } from "./llama.ts";
import { namedPipeline } from "./pipelines.ts";
import { splitStories } from "./perplexity.ts";
import { BOS_TOKEN, Tokenizer } from "./tokenizer.ts";
import { ReferenceLlama } from "./_reference.ts";
import { loadSharedArtefact } from "./_files.ts";
import { passkeyHeadProfile } from "./duo_calibration.ts";
import { main } from "./cli.ts";
import {
  buildPasskeyPrompt,
  evaluatePasskey,
  parsePasskeyAnswer,
  PASSKEY_QUESTION,
  passkeyFact,
  passkeyFiller,
  passkeyTable,
  passkeyTrials,
  runPasskey,
} from "./passkey.ts";

/** A character-level toy tokenizer holding every character of the task and of `extra`. */
function toyTokenizer(extra = ""): Tokenizer {
  const chars = new Set(passkeyFact("12345") + PASSKEY_QUESTION + "0123456789" + extra);
  const pieces = ["<unk>", "\n<s>\n", "\n</s>\n", ...chars];
  return Tokenizer.fromPieces(pieces, pieces.map(() => 0));
}

const TOY_STORIES = [
  "a cat sat. the cat ran! a dog? the end.",
  "one day a hat. it was red. the hat sat.",
  "the dog ran far. then it sat.",
];

Deno.test("passkeyFact() and PASSKEY_QUESTION are PROVENANCE.md's sentences verbatim", () => {
  assert.equal(passkeyFact("41592"), "The secret number is 41592. Remember it.");
  assert.equal(PASSKEY_QUESTION, "What is the secret number? The secret number is");
  assert.throws(() => passkeyFact("4159"), TypeError);
  assert.throws(() => passkeyFact(41592 as unknown as string), /key must be a string of 5 digits/);
});

Deno.test("parsePasskeyAnswer() reads the leading digits of a continuation", () => {
  assert.equal(parsePasskeyAnswer(" 41592."), "41592");
  assert.equal(parsePasskeyAnswer("41592"), "41592");
  assert.equal(parsePasskeyAnswer(" 4159 2."), "4159");
  assert.equal(parsePasskeyAnswer(" always to"), null);
  assert.equal(parsePasskeyAnswer(""), null);
  assert.throws(() => parsePasskeyAnswer(5 as unknown as string), TypeError);
});

Deno.test("passkeyTrials() is reproducible from the seed and draws 5-digit keys", () => {
  const a = passkeyTrials(20, 3, 7);
  assert.deepEqual(a, passkeyTrials(20, 3, 7));
  assert.notDeepEqual(a, passkeyTrials(20, 4, 7));
  for (const t of a) {
    assert.match(t.key, /^[1-9]\d{4}$/);
    assert.ok(Number.isInteger(t.startStory) && t.startStory >= 0 && t.startStory < 7);
  }
  assert.throws(() => passkeyTrials(0, 1, 7), /count must be a positive integer/);
});

Deno.test("buildPasskeyPrompt() lays out BOS, filler, fact at a sentence end, filler, question, answer", () => {
  const tok = toyTokenizer(TOY_STORIES.join(""));
  const filler = passkeyFiller(tok, TOY_STORIES);
  assert.equal(filler.length, 3);
  const fact = tok.encode(passkeyFact("27182"), { bos: false });
  const question = tok.encode(PASSKEY_QUESTION, { bos: false });
  for (const length of [fact.length + question.length + 7, 150, 151, 333]) {
    for (const depth of [0, 0.05, 0.37, 0.5, 0.95, 1]) {
      const p = buildPasskeyPrompt(tok, filler, { length, depth, key: "27182", startStory: 1 });
      assert.equal(p.tokens.length + p.answer.length, length);
      assert.equal(p.tokens[0], BOS_TOKEN);
      assert.equal(tok.decode(p.answer), " 27182");
      assert.deepEqual(
        [...p.tokens.subarray(p.factPosition, p.factPosition + fact.length)],
        fact,
      );
      assert.deepEqual([...p.tokens.subarray(p.tokens.length - question.length)], question);
      assert.equal(p.fillerTokens, length - 1 - fact.length - question.length - 6);
      // The fact sits at a sentence end of the filler (or at its start or end).
      const before = p.factPosition - 1;
      assert.ok(
        before === 0 || before === p.fillerTokens ||
          /[.!?]$/.test(tok.decode([p.tokens[before]!])),
        `fact after ${JSON.stringify(tok.decode([p.tokens[before]!]))}`,
      );
      // The filler is the stories from story 1 on, wrapping around, in order.
      const fill = [...p.tokens.subarray(1, p.factPosition)].concat([
        ...p.tokens.subarray(p.factPosition + fact.length, p.tokens.length - question.length),
      ]);
      const stream = Array.from({ length: 12 }, (_, i) => [...filler[(1 + i) % 3]!]).flat();
      assert.deepEqual(fill, stream.slice(0, fill.length));
    }
  }
  // Depth moves the fact monotonically.
  const pos = [0, 0.25, 0.5, 0.75, 1].map((depth) =>
    buildPasskeyPrompt(tok, filler, { length: 300, depth, key: "27182" }).factPosition
  );
  assert.deepEqual(pos, [...pos].sort((a, b) => a - b));
  assert.equal(pos[0], 1);
  assert.throws(
    () => buildPasskeyPrompt(tok, filler, { length: 50, depth: 0.5, key: "27182" }),
    /length must be at least/,
  );
  assert.throws(
    () => buildPasskeyPrompt(tok, filler, { length: 300, depth: 1.5, key: "27182" }),
    /depth must be in \[0, 1\], got 1.5/,
  );
  assert.throws(
    () => buildPasskeyPrompt(tok, filler, { length: 300, depth: 0.5, key: "2718" }),
    TypeError,
  );
  assert.throws(
    () => buildPasskeyPrompt(tok, [], { length: 300, depth: 0.5, key: "27182" }),
    /filler must hold tokens/,
  );
});

Deno.test("runPasskey() is greedy decoding from the KV cache: equal to the naive token-by-token model", () => {
  const tok = toyTokenizer(TOY_STORIES.join(""));
  const ckpt = randomCheckpoint({
    dim: 16,
    hiddenDim: 32,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    vocabSize: tok.vocabSize,
    seqLen: 256,
  }, { seed: 5, std: 0.3 });
  const filler = passkeyFiller(tok, TOY_STORIES);
  for (const [length, depth] of [[137, 0.3], [201, 0.9]] as const) {
    const p = buildPasskeyPrompt(tok, filler, { length, depth, key: "90210" });
    const r = runPasskey(new Llama(ckpt, { prefillChunk: 37 }), tok, p, { extra: 2 });
    // Oracle: the naive forward one token at a time, argmax (lowest index on ties).
    const ref = new ReferenceLlama(ckpt, length + 4);
    let logits: ArrayLike<number> = [];
    for (const t of p.tokens) logits = ref.forward(t);
    const want: number[] = [];
    for (let i = 0; i < p.answer.length + 2; i++) {
      let best = 0;
      for (let j = 1; j < logits.length; j++) if (logits[j]! > logits[best]!) best = j;
      want.push(best);
      logits = ref.forward(best);
    }
    assert.deepEqual([...r.generated], want);
    assert.equal(r.correct, want.slice(0, p.answer.length).every((t, i) => t === p.answer[i]));
    assert.equal(r.parsed, parsePasskeyAnswer(r.text));
  }
});

Deno.test("evaluatePasskey() runs every length × depth × key and passkeyTable() lays it out", () => {
  const tok = toyTokenizer(TOY_STORIES.join(""));
  const ckpt = randomCheckpoint({
    dim: 8,
    hiddenDim: 16,
    layers: 1,
    heads: 2,
    kvHeads: 1,
    vocabSize: tok.vocabSize,
    seqLen: 128,
  }, { seed: 1 });
  const filler = passkeyFiller(tok, TOY_STORIES);
  const trials = passkeyTrials(2, 9, filler.length);
  const seen: string[] = [];
  const cells = evaluatePasskey({
    pipeline: "toy",
    model: () => new Llama(ckpt),
    tokenizer: tok,
    filler,
    lengths: [120, 160],
    depths: [0.1, 0.9],
    trials,
    onTrial: (c, t) => seen.push(`${c.length}/${c.depth}/${t.key}`),
  });
  assert.equal(cells.length, 4);
  assert.equal(seen.length, 8);
  assert.deepEqual(cells.map((c) => [c.length, c.depth]), [[120, 0.1], [120, 0.9], [160, 0.1], [
    160,
    0.9,
  ]]);
  for (const c of cells) {
    assert.equal(c.trials.length, 2);
    assert.equal(c.accuracy, c.trials.filter((t) => t.correct).length / 2);
    assert.deepEqual(c.trials.map((t) => t.key), trials.map((t) => t.key));
  }
  const table = passkeyTable(cells).split("\n");
  assert.equal(table[0], "| depth | 120 | 160 |");
  assert.equal(table.length, 6); // header, rule, 2 depths, mean, trailing ""
  assert.match(table[4]!, /^\| mean \| \d\.\d\d \| \d\.\d\d \|$/);
});

Deno.test("cli passkey prints a table per pipeline and writes JSON", async () => {
  const stories = TOY_STORIES.join("\n\n\n") + "\n";
  const tok = toyTokenizer(stories);
  const ckpt = randomCheckpoint({
    dim: 8,
    hiddenDim: 16,
    layers: 1,
    heads: 2,
    kvHeads: 1,
    vocabSize: tok.vocabSize,
    seqLen: 128,
  }, { seed: 2 });
  const dir = await Deno.makeTempDir({ prefix: "longctx_passkey_" });
  try {
    const p = (f: string): string => join(dir, f);
    await Deno.writeFile(p("m.bin"), encodeCheckpoint(ckpt));
    await Deno.writeFile(p("t.bin"), tok.toBytes());
    await Deno.writeTextFile(p("s.txt"), stories);
    let out = "", err = "";
    const code = await main([
      "passkey",
      ...["--model", p("m.bin"), "--tokenizer", p("t.bin"), "--text", p("s.txt")],
      ...["--lengths", "120,256", "--depths", "0.5", "--keys", "2", "--seed", "3"],
      ...["--pipelines", "dense,streaming", "--json", p("r.json")],
    ], { out: (t) => (out += t), err: (t) => (err += t) });
    assert.equal(code, 0, err);
    assert.match(out, /dense: plain RoPE/);
    assert.match(out, /streaming: StreamingLLM/);
    assert.match(out, /\| depth \| 120 \| 256 \|/);
    assert.match(err, /dense @ 256 depth 0.5 key \d{5}: /);
    const json = JSON.parse(await Deno.readTextFile(p("r.json")));
    assert.equal(json.cells.length, 4);
    assert.deepEqual(json.trials, passkeyTrials(2, 3, 3));
    // Streaming's window (124 tokens) covers 120 but not 256: dense attention at 120.
    const at = (pipe: string, len: number) =>
      json.cells.find((c: { pipeline: string; length: number }) =>
        c.pipeline === pipe && c.length === len
      );
    assert.deepEqual(at("streaming", 120).trials.map((t: { text: string }) => t.text), [
      ...at("dense", 120).trials.map((t: { text: string }) => t.text),
    ]);
    const bad = await main([
      "passkey",
      "--model",
      p("m.bin"),
      "--tokenizer",
      p("t.bin"),
      "--depths",
      "0.5,2",
    ], {
      out: () => {},
      err: (t) => (err = t),
    });
    assert.equal(bad, 1);
    assert.match(err, /--depths must be in \[0, 1\]/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// --- tinystories-1k (../shared): the template on the real tokenizer and the dense baseline.

const model = await loadSharedArtefact("models/tinystories-1k/tinystories1k.bin");
const tokFile = await loadSharedArtefact("models/stories260K/tok512.bin");
const heldout = await loadSharedArtefact("models/tinystories-1k/heldout_stories.txt");
const missing = model.reason ?? tokFile.reason ?? heldout.reason;
if (missing !== undefined) {
  console.log(`passkey_test: skipping the tinystories-1k tests: ${missing}`);
}

function realSetup(name: "dense" | "longheads-kb" = "dense"): {
  llama: (length: number) => Llama;
  tok: Tokenizer;
  filler: Int32Array[];
} {
  const ckpt = parseCheckpoint(model.bytes!);
  const tok = Tokenizer.parse(tokFile.bytes!, { vocabSize: ckpt.config.vocabSize });
  const filler = passkeyFiller(tok, splitStories(new TextDecoder().decode(heldout.bytes!)));
  const llama = (length: number): Llama =>
    new Llama(ckpt, { pipeline: (c) => namedPipeline(name, c, { targetContext: length }) });
  return { llama, tok, filler };
}

Deno.test({
  name: "tinystories-1k: the prompt reads as PROVENANCE.md's task on a fixed seed",
  ignore: missing !== undefined,
  fn() {
    const { tok, filler } = realSetup();
    assert.equal(filler.length, 100); // the 100 held-out stories
    const [trial] = passkeyTrials(1, 0, filler.length);
    const p = buildPasskeyPrompt(tok, filler, { length: 1024, depth: 0.5, ...trial! });
    assert.equal(p.tokens.length + p.answer.length, 1024);
    const text = tok.decode(p.tokens);
    const fact = ` ${passkeyFact(trial!.key)} `;
    assert.equal(text.split(fact).length, 2, "the fact appears once, between sentences");
    assert.ok(text.endsWith(` ${PASSKEY_QUESTION}`));
    assert.ok(text.startsWith(splitStories(new TextDecoder().decode(heldout.bytes!))[
      trial!.startStory
    ]!.slice(0, 40)));
    assert.equal(tok.decode(p.answer), ` ${trial!.key}`);
    // The answer tokens are how the question followed by the key tokenizes.
    const both = tok.encode(`${PASSKEY_QUESTION} ${trial!.key}.`, { bos: false });
    const q = tok.encode(PASSKEY_QUESTION, { bos: false });
    assert.deepEqual(both.slice(q.length, q.length + p.answer.length), [...p.answer]);
    const depth = p.factPosition / p.tokens.length;
    assert.ok(Math.abs(depth - 0.5) < 0.1, `fact at ${depth}`);
  },
});

Deno.test({
  name:
    "tinystories-1k dense: 100% at the trained 1024 tokens, a miss at 2048 (PROVENANCE.md: <= 12%)",
  ignore: missing !== undefined,
  fn() {
    const { llama, tok, filler } = realSetup();
    const trials = passkeyTrials(2, 0, filler.length);
    // About 10 s of CPU for 1024 (3 depths × 2 keys) and 5 s for 2048 (1 depth × 1 key).
    const run = (
      length: number,
      depths: number[],
      keys: number,
    ): { ok: number; n: number; texts: string[] } => {
      const cells = evaluatePasskey({
        pipeline: "dense",
        model: llama,
        tokenizer: tok,
        filler,
        lengths: [length],
        depths,
        trials: trials.slice(0, keys),
      });
      const all = cells.flatMap((c) => c.trials);
      return {
        ok: all.filter((t) => t.correct).length,
        n: all.length,
        texts: all.map((t) => `${t.key}:${JSON.stringify(t.text)}`),
      };
    };
    const at1k = run(1024, [0.05, 0.5, 0.95], 2);
    assert.equal(at1k.ok, at1k.n, at1k.texts.join(" "));
    const at2k = run(2048, [0.5], 1);
    assert.equal(at2k.ok, 0, at2k.texts.join(" "));
  },
});

Deno.test({
  name:
    "tinystories-1k: the pass-key profile finds one retrieval KV head; key-bound LongHeads retrieves at 2048",
  ignore: missing !== undefined,
  fn() {
    const { llama, tok, filler } = realSetup();
    const [a, b] = passkeyTrials(2, 7, filler.length);
    const prompts = [
      buildPasskeyPrompt(tok, filler, { length: 1024, depth: 0.2, ...a! }),
      buildPasskeyPrompt(tok, filler, { length: 1024, depth: 0.7, ...b! }),
    ];
    const profile = passkeyHeadProfile(llama(1024), prompts);
    // Layer 1's second KV head carries the retrieval (bench/results/passkey_longheads_trace.md):
    // most of its attention from the answering queries is on the fact; every other head's is small.
    const kv = Array.from(profile.kvHeads);
    const top = kv.indexOf(Math.max(...kv));
    assert.equal(top, 1 * 2 + 1, kv.map((x) => x.toFixed(3)).join(" "));
    assert.ok(kv[top]! > 0.5 && kv.every((x, i) => i === top || x < 0.1));
    // Where dense misses (2048, the test above), LongHeads ranked by key bound reads the fact
    // with every head's distances within 1024 and answers (about 10 s).
    const kb = realSetup("longheads-kb");
    const cells = evaluatePasskey({
      pipeline: "longheads-kb",
      model: kb.llama,
      tokenizer: kb.tok,
      filler: kb.filler,
      lengths: [2048],
      depths: [0.05, 0.5],
      trials: passkeyTrials(1, 0, kb.filler.length),
    });
    const all = cells.flatMap((c) => c.trials);
    assert.deepEqual(all.map((t) => t.correct), [true, true], all.map((t) => t.text).join(" "));
  },
});
