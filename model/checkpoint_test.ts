// Copyright 2026 the longctx authors. MIT license.

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type Checkpoint,
  encodeCheckpoint,
  LLAMA2C_MAGIC,
  loadCheckpoint,
  parseCheckpoint,
  randomCheckpoint,
  sha256Hex,
} from "./checkpoint.ts";
import { Rope } from "../positional/rope.ts";
import { loadSharedArtefact } from "./_files.ts";

const SHAPE = { dim: 12, hiddenDim: 20, layers: 3, heads: 3, kvHeads: 1, vocabSize: 17, seqLen: 9 };

/** Writes bytes to a temp file and reads them back, as a user's file would arrive. */
async function viaFile(bytes: Uint8Array): Promise<Uint8Array> {
  const dir = await Deno.makeTempDir({ prefix: "longctx_ckpt_" });
  try {
    const path = join(dir, "model.bin");
    await Deno.writeFile(path, bytes);
    return await Deno.readFile(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** parseCheckpoint(bytes) must throw a RangeError matching `re`. */
async function rejectsFile(bytes: Promise<Uint8Array>, re: RegExp): Promise<void> {
  const b = await bytes;
  assert.throws(
    () => parseCheckpoint(b),
    (e: Error) => e instanceof RangeError && re.test(e.message),
  );
}

function sameWeights(a: Checkpoint, b: Checkpoint): void {
  for (
    const k of [
      "tokenEmbedding",
      "rmsAtt",
      "wq",
      "wk",
      "wv",
      "wo",
      "rmsFfn",
      "w1",
      "w2",
      "w3",
      "rmsFinal",
      "classifier",
    ] as const
  ) {
    assert.deepEqual(a.weights[k], b.weights[k], k);
  }
}

Deno.test("parseCheckpoint() reads back legacy and version 1 files, shared and unshared classifier", async () => {
  for (const sharedClassifier of [true, false]) {
    const ckpt = randomCheckpoint({ ...SHAPE, sharedClassifier }, { seed: 3 });
    for (const version of [0, 1] as const) {
      const bytes = await viaFile(encodeCheckpoint(ckpt, { version }));
      const back = parseCheckpoint(bytes);
      assert.equal(back.version, version);
      assert.deepEqual(back.config, ckpt.config);
      sameWeights(back, ckpt);
      assert.equal(back.weights.classifier === back.weights.tokenEmbedding, sharedClassifier);
      if (version === 0) assert.deepEqual(back.weights.ropeCos, ckpt.weights.ropeCos);
      else assert.equal(back.weights.ropeCos, undefined);
    }
  }
});

Deno.test("parseCheckpoint() stores a negative vocab_size for an unshared classifier (legacy)", () => {
  const bytes = encodeCheckpoint(randomCheckpoint({ ...SHAPE, sharedClassifier: false }));
  assert.equal(new DataView(bytes.buffer).getInt32(20, true), -SHAPE.vocabSize);
  const back = parseCheckpoint(bytes);
  assert.equal(back.config.vocabSize, SHAPE.vocabSize);
  assert.equal(back.config.sharedClassifier, false);
});

Deno.test("parseCheckpoint() views the file without copying when aligned, copies when not", () => {
  const bytes = encodeCheckpoint(randomCheckpoint(SHAPE));
  const aligned = parseCheckpoint(bytes);
  assert.equal(aligned.weights.wq.buffer, bytes.buffer);
  const shifted = new Uint8Array(bytes.length + 1);
  shifted.set(bytes, 1);
  const odd = parseCheckpoint(shifted.subarray(1));
  assert.notEqual(odd.weights.wq.buffer, shifted.buffer);
  sameWeights(odd, aligned);
});

Deno.test("parseCheckpoint() rejects truncated and oversized files with the expected size", async () => {
  const good = encodeCheckpoint(randomCheckpoint(SHAPE));
  const cut = await viaFile(good.subarray(0, good.length - 4));
  assert.throws(
    () => parseCheckpoint(cut),
    (e: Error) =>
      e instanceof RangeError && /truncated/.test(e.message) &&
      e.message.includes(`must be ${good.length} bytes`) &&
      e.message.includes(`got ${good.length - 4}`),
  );
  const long = new Uint8Array(good.length + 8);
  long.set(good);
  assert.throws(() => parseCheckpoint(long), /trailing bytes: must be \d+ bytes/);
  const v1 = encodeCheckpoint(randomCheckpoint(SHAPE), { version: 1 });
  assert.throws(() => parseCheckpoint(v1.subarray(0, v1.length - 1)), /truncated/);
  assert.throws(() => parseCheckpoint(v1.subarray(0, 100)), /256-byte header, got 100 bytes/);
  assert.throws(() => parseCheckpoint(new Uint8Array(20)), /28-byte header, got 20 bytes/);
  assert.throws(() => parseCheckpoint(new Uint8Array(3)), RangeError);
});

Deno.test("parseCheckpoint() rejects invalid headers naming the field", async () => {
  const good = encodeCheckpoint(randomCheckpoint(SHAPE));
  const patched = async (field: number, value: number): Promise<Uint8Array> => {
    const b = good.slice();
    new DataView(b.buffer).setInt32(4 * field, value, true);
    return await viaFile(b);
  };
  assert.throws(() => parseCheckpoint(new Uint8Array(28)), /dim must be a positive int32, got 0/);
  assert.throws(
    () => parseCheckpoint(new Uint8Array(good.length)),
    /is this a llama2.c checkpoint\?/,
  );
  await rejectsFile(patched(2, -1), /n_layers must be a positive/);
  await rejectsFile(patched(6, 0), /seq_len must be a positive/);
  await rejectsFile(patched(3, 5), /dim \(12\) must be a multiple of n_heads/);
  await rejectsFile(patched(4, 2), /multiple of n_kv_heads, got n_kv_heads 2/);
  // dim 12, 4 heads: head dimension 3 cannot be rotated in pairs.
  const odd = encodeCheckpoint(randomCheckpoint({ ...SHAPE, heads: 2, kvHeads: 2 }));
  new DataView(odd.buffer).setInt32(12, 4, true);
  new DataView(odd.buffer).setInt32(16, 4, true);
  assert.throws(() => parseCheckpoint(odd), /must be even for RoPE, got 3/);
  assert.throws(() => parseCheckpoint("not bytes" as unknown as Uint8Array), TypeError);
});

Deno.test("parseCheckpoint() recognises the ak42 magic: version 2 and bad flags are rejected", async () => {
  const v1 = encodeCheckpoint(randomCheckpoint(SHAPE), { version: 1 });
  assert.equal(new DataView(v1.buffer).getUint32(0, true), LLAMA2C_MAGIC);
  assert.equal(new TextDecoder().decode(v1.subarray(0, 4)), "24ka"); // "ak42" as a LE uint32
  const v2 = v1.slice();
  new DataView(v2.buffer).setInt32(4, 2, true);
  assert.throws(
    () => parseCheckpoint(v2),
    (e: Error) => e instanceof RangeError && /version 2 \(int8 Q8_0\)/.test(e.message),
  );
  const v9 = v1.slice();
  new DataView(v9.buffer).setInt32(4, 9, true);
  await rejectsFile(viaFile(v9), /versions 0 \(legacy\) and 1/);
  const flag = v1.slice();
  flag[36] = 7;
  assert.throws(() => parseCheckpoint(flag), /shared-classifier flag must be 0 or 1, got 7/);
});

Deno.test("loadCheckpoint() checks the sha256 before parsing", async () => {
  const bytes = await viaFile(encodeCheckpoint(randomCheckpoint(SHAPE)));
  const sha = await sha256Hex(bytes);
  const ok = await loadCheckpoint(bytes, { sha256: sha.toUpperCase() });
  assert.equal(ok.config.dim, SHAPE.dim);
  const wrong = sha.slice(0, 63) + (sha[63] === "0" ? "1" : "0");
  await assert.rejects(
    loadCheckpoint(bytes, { sha256: wrong }),
    (e: Error) => e instanceof RangeError && e.message.includes(`got ${sha}`),
  );
  await assert.rejects(loadCheckpoint(bytes, { sha256: "abc" }), TypeError);
  // A mismatching digest wins over a bad file: the digest is checked first.
  await assert.rejects(
    loadCheckpoint(bytes.subarray(0, 40), { sha256: sha }),
    /sha256 must be/,
  );
});

Deno.test("randomCheckpoint() validates its shape like a header", () => {
  assert.throws(() => randomCheckpoint({ ...SHAPE, kvHeads: 2 }), RangeError);
  assert.throws(() => randomCheckpoint({ ...SHAPE, layers: 0 }), RangeError);
  assert.throws(() => encodeCheckpoint(randomCheckpoint(SHAPE), { version: 2 as 0 }), RangeError);
});

// ---------------------------------------------------------------------------
// Real checkpoints from ../shared (sha256-checked; skipped when absent).

const s260 = await loadSharedArtefact("models/stories260K/stories260K.bin");
const s1k = await loadSharedArtefact("models/tinystories-1k/tinystories1k.bin");
if (s260.reason) console.log(`skipping stories260K checkpoint tests: ${s260.reason}`);
if (s1k.reason) console.log(`skipping tinystories-1k checkpoint tests: ${s1k.reason}`);

Deno.test({
  name:
    "parseCheckpoint() reads stories260K: header, and its RoPE table is Rope adjacent base 10000",
  ignore: s260.bytes === undefined,
  fn() {
    const ckpt = parseCheckpoint(s260.bytes!);
    const c = ckpt.config;
    assert.deepEqual(
      [c.dim, c.hiddenDim, c.layers, c.heads, c.kvHeads, c.vocabSize, c.seqLen, c.headDim],
      [64, 172, 5, 8, 4, 512, 512, 8],
    );
    assert.equal(c.sharedClassifier, true);
    // The file's freq_cis tables were written by llama2.c's model.py; compare every entry with
    // the library's Rope (adjacent pairs, base 10000) rotating unit vectors.
    const rope = new Rope({ headDim: 8, layout: "adjacent", base: 10000 });
    const half = 4;
    let worst = 0;
    const e = new Float32Array(8), out = new Float32Array(8);
    for (let p = 0; p < c.seqLen; p++) {
      e.fill(0);
      for (let i = 0; i < half; i++) e[2 * i] = 1;
      rope.rotateRow(e, 0, out, 0, p); // (1, 0) → (cos, sin) for every pair
      for (let i = 0; i < half; i++) {
        worst = Math.max(
          worst,
          Math.abs(out[2 * i]! - ckpt.weights.ropeCos![p * half + i]!),
          Math.abs(out[2 * i + 1]! - ckpt.weights.ropeSin![p * half + i]!),
        );
      }
    }
    assert.ok(worst < 1e-4, `max |Δ| ${worst}`);
  },
});

Deno.test({
  name: "parseCheckpoint() reads tinystories-1k: 4 layers, GQA 4/2, head dim 32, context 1024",
  ignore: s1k.bytes === undefined,
  fn() {
    const c = parseCheckpoint(s1k.bytes!).config;
    assert.deepEqual(
      [c.dim, c.hiddenDim, c.layers, c.heads, c.kvHeads, c.vocabSize, c.seqLen, c.headDim],
      [128, 384, 4, 4, 2, 512, 1024, 32],
    );
  },
});
