// Copyright 2026 the longctx authors. MIT license.

import assert from "node:assert/strict";
import { join } from "node:path";
import { main } from "./cli.ts";
import { encodeCheckpoint, parseCheckpoint, randomCheckpoint } from "./checkpoint.ts";
import { Tokenizer } from "./tokenizer.ts";
import { Llama } from "./llama.ts";
import { decodeNpy } from "./npy.ts";
import { splitStories, tokenizeStories } from "./perplexity.ts";
import { loadSharedArtefact } from "./_files.ts";

/** Runs the CLI in-process, collecting what it prints. */
async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "", err = "";
  const code = await main(args, { out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

/** A toy vocabulary (specials, 256 byte tokens, letters) and a random model of the same size. */
function toyFiles(): { model: Uint8Array; tokenizer: Uint8Array; vocab: number } {
  const pieces = ["<unk>", "\n<s>\n", "\n</s>\n"];
  for (let b = 0; b < 256; b++) pieces.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
  for (const p of " abcdefghijklmnopqrstuvwxyz.".split("")) pieces.push(p);
  for (const p of [" the", " cat", " sat", " on", " mat", "at"]) pieces.push(p);
  const tok = Tokenizer.fromPieces(pieces, pieces.map((_p, i) => (i < 259 ? 0 : -i / 100)));
  const ckpt = randomCheckpoint({
    dim: 16,
    hiddenDim: 32,
    layers: 3,
    heads: 4,
    kvHeads: 2,
    vocabSize: pieces.length,
    seqLen: 32,
  }, { seed: 4, std: 0.2 });
  return { model: encodeCheckpoint(ckpt), tokenizer: tok.toBytes(), vocab: pieces.length };
}

const STORIES = [
  "the cat sat on the mat. the cat sat on the mat again.",
  "a story about a cat and a mat and a hat.",
  "the end of the third story. the cat sat.",
].join("\n<|endoftext|>\n") + "\n<|endoftext|>\n";

async function withToyFiles(
  fn: (paths: { dir: string; model: string; tokenizer: string; text: string }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "longctx_cli_" });
  try {
    const f = toyFiles();
    const paths = {
      dir,
      model: join(dir, "toy.bin"),
      tokenizer: join(dir, "toy_tok.bin"),
      text: join(dir, "stories.txt"),
    };
    await Deno.writeFile(paths.model, f.model);
    await Deno.writeFile(paths.tokenizer, f.tokenizer);
    await Deno.writeTextFile(paths.text, STORIES);
    await fn(paths);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("cli perplexity prints tokens and perplexity, and writes per-token NLL on request", async () => {
  await withToyFiles(async (p) => {
    const nllPath = join(p.dir, "nll.json");
    const r = await cli([
      "perplexity",
      "--model",
      p.model,
      "--tokenizer",
      p.tokenizer,
      "--text",
      p.text,
      "--context",
      "16",
      "--nll-out",
      nllPath,
    ]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /no SHA256SUMS/); // the checksum status is reported
    const tokens = Number(/^tokens: (\d+)$/m.exec(r.out)![1]);
    const ppl = Number(/^perplexity: ([\d.]+)$/m.exec(r.out)![1]);
    const json = JSON.parse(await Deno.readTextFile(nllPath));
    assert.equal(json.nll.length, tokens);
    assert.equal(json.windows * 15, tokens);
    const mean = json.nll.reduce((a: number, b: number) => a + b, 0) / tokens;
    assert.ok(Math.abs(Math.exp(mean) - ppl) < 1e-3 * ppl, `${Math.exp(mean)} vs ${ppl}`);
  });
});

Deno.test("cli capture writes .npy files whose header and values re-read exactly", async () => {
  await withToyFiles(async (p) => {
    const out = join(p.dir, "cap");
    const r = await cli([
      "capture",
      "--model",
      p.model,
      "--tokenizer",
      p.tokenizer,
      "--text",
      p.text,
      "--out",
      out,
      "--tokens",
      "20",
      "--quiet",
    ]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^tokens: 20$/m);
    // Header of layer1_k.npy, byte for byte: magic, version 1.0, header length, dict, padding.
    const bytes = await Deno.readFile(join(out, "layer1_k.npy"));
    assert.deepEqual([...bytes.subarray(0, 8)], [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
    const hlen = bytes[8]! | (bytes[9]! << 8);
    assert.equal((10 + hlen) % 64, 0);
    const header = new TextDecoder().decode(bytes.subarray(10, 10 + hlen));
    assert.equal(
      header.trimEnd(),
      "{'descr': '<f4', 'fortran_order': False, 'shape': (20, 2, 4), }",
    );
    assert.equal(bytes.length, 10 + hlen + 20 * 2 * 4 * 4);
    // Values: the raw keys layer 1 hands to its pipeline, from a direct run.
    const ckpt = parseCheckpoint(await Deno.readFile(p.model));
    const tok = Tokenizer.parse(await Deno.readFile(p.tokenizer));
    const tokens = tokenizeStories(tok, splitStories(STORIES), 20);
    const want = new Float32Array(20 * 2 * 4);
    new Llama(ckpt).forward(tokens, {
      onAttention: (e) => {
        if (e.layer === 1) want.set(e.key.data.subarray(0, e.key.shape[0]! * 8), e.start * 8);
      },
    });
    assert.deepEqual(decodeNpy(bytes).data, want);
    assert.deepEqual([...decodeNpy(await Deno.readFile(join(out, "tokens.npy"))).data], [
      ...tokens,
    ]);
    const meta = JSON.parse(await Deno.readTextFile(join(out, "meta.json")));
    assert.deepEqual(meta.files["layer2_sink_mass.npy"].shape, [20, 4]);
    assert.equal(meta.heads.length, 3 * 4);
    const sink = decodeNpy(await Deno.readFile(join(out, "layer0_sink_mass.npy"))).data;
    assert.equal(sink[0], 1); // token 0 attends only to itself
  });
});

Deno.test("cli sweep writes a markdown table and JSON for every pipeline × context", async () => {
  await withToyFiles(async (p) => {
    const prefix = join(p.dir, "sweep");
    const r = await cli([
      "sweep",
      "--model",
      p.model,
      "--tokenizer",
      p.tokenizer,
      "--text",
      p.text,
      "--contexts",
      "16,32",
      "--pipelines",
      "dense,pi,streaming",
      "--tokens",
      "64",
      "--quiet",
    ].concat(["--out", prefix]));
    assert.equal(r.code, 0, r.err);
    const md = await Deno.readTextFile(`${prefix}.md`);
    assert.match(md, /\| pipeline \| ppl @ 16 \| ppl @ 32 \|/);
    const json = JSON.parse(await Deno.readTextFile(`${prefix}.json`));
    assert.equal(json.cells.length, 6);
    // At the trained context (32) PI has factor 1: the same perplexity as dense.
    const at = (n: string, c: number) =>
      json.cells.find((x: { pipeline: string; context: number }) =>
        x.pipeline === n && x.context === c
      );
    assert.equal(at("pi", 32).perplexity, at("dense", 32).perplexity);
    assert.ok(at("dense", 16).perplexity > 1);
  });
});

Deno.test("cli perplexity --pipelines is the sweep: one table, DuoAttention split from --duo-split", async () => {
  await withToyFiles(async (p) => {
    const prefix = join(p.dir, "ppl");
    const long = join(p.dir, "long.txt");
    await Deno.writeTextFile(long, STORIES.repeat(6));
    const r = await cli([
      "perplexity",
      "--model",
      p.model,
      "--tokenizer",
      p.tokenizer,
      "--text",
      long,
      "--pipelines",
      "dense,duo",
      "--tokens",
      "300",
      "--duo-split",
      "window",
      "--duo-ratio",
      "0.5",
      "--out",
      prefix,
    ]);
    assert.equal(r.code, 0, r.err);
    // Default contexts: 1, 2, 4 and 8 times the trained context (32).
    assert.match(r.out, /\| pipeline \| ppl @ 32 \| ppl @ 64 \| ppl @ 128 \| ppl @ 256 \|/);
    assert.match(r.out, /\| duo \| /);
    assert.match(r.err, /DuoAttention heads \(training-free calibration/);
    assert.match(r.out, /\| tokens scored \| /);
    const json = JSON.parse(await Deno.readTextFile(`${prefix}.json`));
    assert.equal(json.duoCalibration.method, "window-mass");
    assert.equal(json.duoCalibration.retrieval.flat().filter(Boolean).length, 3); // half of 3 × 2
    const md = await Deno.readTextFile(`${prefix}.md`);
    assert.match(md, /model\/cli\.ts perplexity .*--pipelines dense,duo/);
    const bad = await cli([
      "perplexity",
      "--model",
      p.model,
      "--tokenizer",
      p.tokenizer,
      "--text",
      p.text,
      "--pipelines",
      "duo",
      "--contexts",
      "32",
      "--duo-split",
      "learned",
      "--quiet",
    ]);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /--duo-split must be "passkey" or "window", got "learned"/);
  });
});

Deno.test("cli reports usage errors and bad options", async () => {
  assert.equal((await cli([])).code, 2);
  assert.equal((await cli(["--help"])).code, 0);
  const unknown = await cli(["frobnicate"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.err, /unknown command "frobnicate"/);
  assert.equal((await cli(["generate", "--bogus-flag"])).code, 2);
  await withToyFiles(async (p) => {
    const base = ["--model", p.model, "--tokenizer", p.tokenizer, "--quiet"];
    const noText = await cli(["perplexity", ...base]);
    assert.equal(noText.code, 1);
    assert.match(noText.err, /--text FILE is required/);
    const badPipe = await cli(["perplexity", ...base, "--text", p.text, "--pipeline", "nope"]);
    assert.match(badPipe.err, /--pipeline must be one of/);
    const badNum = await cli(["generate", ...base, "--steps", "many"]);
    assert.match(badNum.err, /--steps must be an integer/);
    // A model whose SHA256SUMS disagrees is refused.
    await Deno.writeTextFile(join(p.dir, "SHA256SUMS"), `${"0".repeat(64)}  toy.bin\n`);
    const bad = await cli(["info", ...base]);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /sha256 must be 0{64} \(SHA256SUMS\)/);
  });
});

// ---------------------------------------------------------------------------

const modelFile = await loadSharedArtefact("models/stories260K/stories260K.bin");
const tokFile = await loadSharedArtefact("models/stories260K/tok512.bin");
const missing = modelFile.reason ?? tokFile.reason;
if (missing) console.log(`skipping stories260K CLI test: ${missing}`);

Deno.test({
  name: "cli generate --temperature 0 prints run.c's greedy continuation (stories260K)",
  ignore: missing !== undefined,
  async fn() {
    const r = await cli(["generate", "--temperature", "0", "--prompt", "Zoo", "--steps", "60"]);
    assert.equal(r.code, 0, r.err);
    assert.equal(
      r.out,
      "Zoo was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but she didn't want to play with\n",
    );
    assert.match(r.err, /sha256 verified/);
    const yarn = await cli([
      "generate",
      "--seed",
      "7",
      "--steps",
      "40",
      "--pipeline",
      "yarn",
      "--context",
      "2048",
      "--quiet",
    ]);
    assert.equal(yarn.code, 0, yarn.err);
    assert.ok(yarn.out.trim().length > 20);
  },
});
