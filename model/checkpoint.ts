// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Loader for llama2.c checkpoints: the legacy format that `run.c` reads
 * (`export.py --version 0`, the format of Karpathy's `tinyllamas` files) and
 * the headed float32 format (`--version 1`, magic `"ak42"`).
 *
 * ## Legacy format (version 0)
 *
 * | bytes | content |
 * | --- | --- |
 * | 28 | 7 × int32 little-endian: `dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len`; a negative `vocab_size` means an unshared classifier |
 * | rest | f32 tensors in this order: token embedding `[vocab, dim]`, attention RMSNorm `[layers, dim]`, `wq [layers, dim, dim]`, `wk [layers, kvDim, dim]`, `wv [layers, kvDim, dim]`, `wo [layers, dim, dim]`, FFN RMSNorm `[layers, dim]`, `w1 [layers, hidden, dim]`, `w2 [layers, dim, hidden]`, `w3 [layers, hidden, dim]`, final RMSNorm `[dim]`, RoPE cos `[seq_len, headDim/2]`, RoPE sin `[seq_len, headDim/2]`, then the classifier `[vocab, dim]` if unshared |
 *
 * (`kvDim = n_kv_heads · dim / n_heads`.) Matrices are row-major `[out, in]`,
 * as PyTorch's `nn.Linear.weight`: `y = W x`.
 *
 * ## Version 1
 *
 * A 256-byte header (uint32 magic `0x616b3432` = `"ak42"`, int32 version 1,
 * the same 7 int32, a uint8 shared-classifier flag, zero padding), then the
 * norms of every layer, the final norm, the embedding, every `wq`, `wk`, `wv`,
 * `wo`, `w1`, `w2`, `w3`, and the classifier if unshared; no RoPE tables.
 * Version 2 (int8 Q8_0) is recognised and rejected.
 *
 * Weights are zero-copy `Float32Array` views of the file when its buffer is
 * 4-byte aligned and the host is little-endian, else one copy.
 *
 * @module
 */

import { describeValue, requireFinite, requireInt } from "../tensor/validate.ts";
import { Rng } from "../tensor/random.ts";

/** The magic of llama2.c's headed formats, `"ak42"` read as a little-endian uint32. */
export const LLAMA2C_MAGIC = 0x616b3432;

/** RMSNorm epsilon of llama2.c (`1e-5`). */
export const LLAMA2C_NORM_EPS = 1e-5;

/** RoPE base of llama2.c (`10000`). */
export const LLAMA2C_ROPE_BASE = 10000;

/** Shape of a Llama model, from a checkpoint header. */
export interface LlamaConfig {
  /** Model width. */
  readonly dim: number;
  /** FFN hidden width (SwiGLU). */
  readonly hiddenDim: number;
  /** Transformer layers. */
  readonly layers: number;
  /** Query heads. */
  readonly heads: number;
  /** KV heads (`heads % kvHeads == 0`). */
  readonly kvHeads: number;
  /** Vocabulary size. */
  readonly vocabSize: number;
  /** Trained context length (`seq_len`). */
  readonly seqLen: number;
  /** `dim / heads`. */
  readonly headDim: number;
  /** Whether the classifier is the token embedding. */
  readonly sharedClassifier: boolean;
  /** RMSNorm epsilon. */
  readonly normEps: number;
  /** RoPE base. */
  readonly ropeBase: number;
}

/** The tensors of a Llama model; every matrix is row-major `[out, in]`. */
export interface LlamaWeights {
  /** `[vocabSize, dim]`. */
  readonly tokenEmbedding: Float32Array;
  /** Attention RMSNorm gains, `[layers, dim]`. */
  readonly rmsAtt: Float32Array;
  /** `[layers, heads · headDim, dim]`. */
  readonly wq: Float32Array;
  /** `[layers, kvHeads · headDim, dim]`. */
  readonly wk: Float32Array;
  /** `[layers, kvHeads · headDim, dim]`. */
  readonly wv: Float32Array;
  /** `[layers, dim, heads · headDim]`. */
  readonly wo: Float32Array;
  /** FFN RMSNorm gains, `[layers, dim]`. */
  readonly rmsFfn: Float32Array;
  /** Gate projection, `[layers, hiddenDim, dim]`. */
  readonly w1: Float32Array;
  /** Down projection, `[layers, dim, hiddenDim]`. */
  readonly w2: Float32Array;
  /** Up projection, `[layers, hiddenDim, dim]`. */
  readonly w3: Float32Array;
  /** Final RMSNorm gains, `[dim]`. */
  readonly rmsFinal: Float32Array;
  /** Output classifier `[vocabSize, dim]` (the embedding itself when shared). */
  readonly classifier: Float32Array;
  /** The file's RoPE cos table `[seqLen, headDim / 2]` (legacy format only; the model does not read it). */
  readonly ropeCos: Float32Array | undefined;
  /** The file's RoPE sin table `[seqLen, headDim / 2]` (legacy format only). */
  readonly ropeSin: Float32Array | undefined;
}

/** A parsed checkpoint. */
export interface Checkpoint {
  /** Which llama2.c layout the file uses: 0 (legacy) or 1. */
  readonly version: 0 | 1;
  /** Model shape. */
  readonly config: LlamaConfig;
  /** Tensors (views of the file's bytes when possible). */
  readonly weights: LlamaWeights;
}

/** Options of {@linkcode loadCheckpoint}. */
export interface LoadCheckpointOptions {
  /** Expected SHA-256 of the whole file, hex (case-insensitive). @default {undefined} (not checked) */
  sha256?: string;
}

const ACTION = "load llama2.c checkpoint";
const LEGACY_HEADER_BYTES = 28;
const V1_HEADER_BYTES = 256;

/**
 * SHA-256 of `bytes` as lowercase hex (Web Crypto).
 *
 * @param bytes Any bytes.
 * @returns 64 hex digits.
 *
 * @example
 * ```ts
 * import { sha256Hex } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * assert.equal(
 *   await sha256Hex(new TextEncoder().encode("abc")),
 *   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
 * );
 * ```
 */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Checks `bytes` against an expected SHA-256.
 *
 * @param bytes The file's bytes.
 * @param expected Expected digest, 64 hex digits (case-insensitive).
 * @param what What the bytes are, for the message (e.g. a file name).
 * @throws {TypeError} If `expected` is not 64 hex digits.
 * @throws {RangeError} If the digest differs.
 *
 * @example
 * ```ts
 * import { verifySha256 } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * const abc = new TextEncoder().encode("abc");
 * await verifySha256(abc, "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", "abc");
 * await assert.rejects(verifySha256(abc, "0".repeat(64), "abc"), RangeError);
 * ```
 */
export async function verifySha256(
  bytes: Uint8Array,
  expected: string,
  what: string,
): Promise<void> {
  if (typeof expected !== "string" || !/^[0-9a-fA-F]{64}$/.test(expected)) {
    throw new TypeError(
      `Cannot verify ${what}: sha256 must be 64 hex digits, got ${describeValue(expected)}`,
    );
  }
  const got = await sha256Hex(bytes);
  if (got !== expected.toLowerCase()) {
    throw new RangeError(
      `Cannot verify ${what}: sha256 must be ${expected.toLowerCase()}, got ${got}`,
    );
  }
}

/**
 * Verifies the optional SHA-256, then parses a llama2.c checkpoint
 * ({@linkcode parseCheckpoint}).
 *
 * @param bytes The whole file.
 * @param options Expected SHA-256.
 * @returns The parsed checkpoint (weights view `bytes` when aligned).
 * @throws {RangeError} On a digest mismatch or a bad file (see {@linkcode parseCheckpoint}).
 * @throws {TypeError} On a malformed `sha256` option or non-byte input.
 *
 * @example A tiny legacy checkpoint built in memory
 * ```ts
 * import { loadCheckpoint, sha256Hex } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * const [dim, hidden, layers, heads, kv, vocab, seq] = [4, 8, 1, 2, 1, 5, 3];
 * const floats = vocab * dim + layers * (2 * dim + 2 * dim * dim + 2 * dim * (dim / 2) + 3 * dim * hidden) +
 *   dim + seq * (dim / heads);
 * const bytes = new Uint8Array(28 + 4 * floats);
 * new Int32Array(bytes.buffer, 0, 7).set([dim, hidden, layers, heads, kv, vocab, seq]);
 * const ckpt = await loadCheckpoint(bytes, { sha256: await sha256Hex(bytes) });
 * assert.equal(ckpt.config.headDim, 2);
 * assert.equal(ckpt.weights.classifier, ckpt.weights.tokenEmbedding);
 * ```
 */
export async function loadCheckpoint(
  bytes: Uint8Array,
  options: LoadCheckpointOptions = {},
): Promise<Checkpoint> {
  requireBytes(bytes);
  if (options.sha256 !== undefined) await verifySha256(bytes, options.sha256, "checkpoint");
  return parseCheckpoint(bytes);
}

/**
 * Parses a llama2.c checkpoint (legacy or version 1, see the module doc),
 * validating the header and the exact file size.
 *
 * @param bytes The whole file.
 * @returns Config and weights.
 * @throws {TypeError} If `bytes` is not a `Uint8Array`.
 * @throws {RangeError} If the file is shorter than a header, carries an
 *   unsupported magic/version, has an invalid header (non-positive sizes,
 *   `dim % heads != 0`, `heads % kvHeads != 0`, odd head dimension), or its
 *   size differs from what the header implies (truncated or trailing bytes).
 *
 * @example Truncated files are rejected with the expected size
 * ```ts
 * import { parseCheckpoint } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * const bytes = new Uint8Array(28 + 16);
 * new Int32Array(bytes.buffer, 0, 7).set([4, 8, 1, 2, 1, 5, 3]);
 * assert.throws(() => parseCheckpoint(bytes), /truncated: must be 756 bytes .*, got 44$/);
 * ```
 */
export function parseCheckpoint(bytes: Uint8Array): Checkpoint {
  requireBytes(bytes);
  if (bytes.byteLength < 8) {
    throw new RangeError(
      `Cannot ${ACTION}: file must hold at least a ${LEGACY_HEADER_BYTES}-byte header, got ${bytes.byteLength} bytes`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, true);
  if (magic === LLAMA2C_MAGIC) {
    const version = view.getInt32(4, true);
    if (version !== 1) {
      throw new RangeError(
        `Cannot ${ACTION}: only llama2.c format versions 0 (legacy) and 1 (float32, magic "ak42") are supported, got magic "ak42" with version ${version}${
          version === 2 ? " (int8 Q8_0)" : ""
        }`,
      );
    }
    if (bytes.byteLength < V1_HEADER_BYTES) {
      throw new RangeError(
        `Cannot ${ACTION}: a version 1 file must hold a ${V1_HEADER_BYTES}-byte header, got ${bytes.byteLength} bytes`,
      );
    }
    const header = readHeader(view, 8);
    const flag = view.getUint8(36);
    if (flag > 1) {
      throw new RangeError(
        `Cannot ${ACTION}: version 1 shared-classifier flag must be 0 or 1, got ${flag}`,
      );
    }
    const config = makeConfig(header, flag === 1, "version 1");
    return { version: 1, config, weights: readV1(bytes, config) };
  }
  if (bytes.byteLength < LEGACY_HEADER_BYTES) {
    throw new RangeError(
      `Cannot ${ACTION}: file must hold at least a ${LEGACY_HEADER_BYTES}-byte header, got ${bytes.byteLength} bytes`,
    );
  }
  const header = readHeader(view, 0);
  const shared = header[5]! > 0;
  header[5] = Math.abs(header[5]!);
  const config = makeConfig(header, shared, "legacy");
  return { version: 0, config, weights: readLegacy(bytes, config) };
}

function requireBytes(bytes: unknown): asserts bytes is Uint8Array {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(
      `Cannot ${ACTION}: bytes must be a Uint8Array, got ${describeValue(bytes)}`,
    );
  }
}

function readHeader(view: DataView, at: number): number[] {
  const h: number[] = [];
  for (let i = 0; i < 7; i++) h.push(view.getInt32(at + 4 * i, true));
  return h;
}

const HEADER_NAMES = [
  "dim",
  "hidden_dim",
  "n_layers",
  "n_heads",
  "n_kv_heads",
  "vocab_size",
  "seq_len",
] as const;

function makeConfig(h: number[], shared: boolean, format: string): LlamaConfig {
  for (let i = 0; i < 7; i++) {
    if (!(h[i]! > 0)) {
      throw new RangeError(
        `Cannot ${ACTION}: ${format} header field ${
          HEADER_NAMES[i]
        } must be a positive int32, got ${h[i]} (header ${
          describeValue(h)
        }; is this a llama2.c checkpoint?)`,
      );
    }
  }
  const [dim, hiddenDim, layers, heads, kvHeads, vocabSize, seqLen] = h as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  if (dim % heads !== 0) {
    throw new RangeError(
      `Cannot ${ACTION}: dim (${dim}) must be a multiple of n_heads, got n_heads ${heads}`,
    );
  }
  if (heads % kvHeads !== 0) {
    throw new RangeError(
      `Cannot ${ACTION}: n_heads (${heads}) must be a multiple of n_kv_heads, got n_kv_heads ${kvHeads}`,
    );
  }
  const headDim = dim / heads;
  if (headDim % 2 !== 0) {
    throw new RangeError(
      `Cannot ${ACTION}: head dimension dim / n_heads must be even for RoPE, got ${headDim}`,
    );
  }
  return {
    dim,
    hiddenDim,
    layers,
    heads,
    kvHeads,
    vocabSize,
    seqLen,
    headDim,
    sharedClassifier: shared,
    normEps: LLAMA2C_NORM_EPS,
    ropeBase: LLAMA2C_ROPE_BASE,
  };
}

/** Float counts of each tensor, in legacy order. */
function tensorSizes(c: LlamaConfig): Record<string, number> {
  const kvDim = c.kvHeads * c.headDim;
  const L = c.layers;
  return {
    tokenEmbedding: c.vocabSize * c.dim,
    rmsAtt: L * c.dim,
    wq: L * c.dim * c.dim,
    wk: L * kvDim * c.dim,
    wv: L * kvDim * c.dim,
    wo: L * c.dim * c.dim,
    rmsFfn: L * c.dim,
    w1: L * c.hiddenDim * c.dim,
    w2: L * c.dim * c.hiddenDim,
    w3: L * c.hiddenDim * c.dim,
    rmsFinal: c.dim,
    ropeCos: (c.seqLen * c.headDim) / 2,
    ropeSin: (c.seqLen * c.headDim) / 2,
    classifier: c.sharedClassifier ? 0 : c.vocabSize * c.dim,
  };
}

/** Reads `floats` f32 values from byte `at` (a view when aligned on a little-endian host). */
class FloatReader {
  #bytes: Uint8Array;
  #at: number;
  constructor(bytes: Uint8Array, at: number) {
    this.#bytes = bytes;
    this.#at = at;
  }
  next(floats: number): Float32Array {
    const start = this.#bytes.byteOffset + this.#at;
    this.#at += 4 * floats;
    if (LITTLE_ENDIAN && start % 4 === 0) {
      return new Float32Array(this.#bytes.buffer, start, floats);
    }
    const out = new Float32Array(floats);
    const view = new DataView(this.#bytes.buffer, start, 4 * floats);
    for (let i = 0; i < floats; i++) out[i] = view.getFloat32(4 * i, true);
    return out;
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function checkSize(bytes: Uint8Array, header: number, floats: number, c: LlamaConfig): void {
  const want = header + 4 * floats;
  if (bytes.byteLength !== want) {
    const what = bytes.byteLength < want ? "truncated" : "has trailing bytes";
    throw new RangeError(
      `Cannot ${ACTION}: file ${what}: must be ${want} bytes for this header (dim ${c.dim}, hidden_dim ${c.hiddenDim}, n_layers ${c.layers}, n_heads ${c.heads}, n_kv_heads ${c.kvHeads}, vocab_size ${c.vocabSize}${
        c.sharedClassifier ? "" : " unshared"
      }, seq_len ${c.seqLen}), got ${bytes.byteLength}`,
    );
  }
}

function readLegacy(bytes: Uint8Array, c: LlamaConfig): LlamaWeights {
  const s = tensorSizes(c);
  let floats = 0;
  for (const k in s) floats += s[k]!;
  checkSize(bytes, LEGACY_HEADER_BYTES, floats, c);
  const r = new FloatReader(bytes, LEGACY_HEADER_BYTES);
  const tokenEmbedding = r.next(s.tokenEmbedding!);
  const rmsAtt = r.next(s.rmsAtt!);
  const wq = r.next(s.wq!);
  const wk = r.next(s.wk!);
  const wv = r.next(s.wv!);
  const wo = r.next(s.wo!);
  const rmsFfn = r.next(s.rmsFfn!);
  const w1 = r.next(s.w1!);
  const w2 = r.next(s.w2!);
  const w3 = r.next(s.w3!);
  const rmsFinal = r.next(s.rmsFinal!);
  const ropeCos = r.next(s.ropeCos!);
  const ropeSin = r.next(s.ropeSin!);
  const classifier = c.sharedClassifier ? tokenEmbedding : r.next(s.classifier!);
  return {
    tokenEmbedding,
    rmsAtt,
    wq,
    wk,
    wv,
    wo,
    rmsFfn,
    w1,
    w2,
    w3,
    rmsFinal,
    classifier,
    ropeCos,
    ropeSin,
  };
}

function readV1(bytes: Uint8Array, c: LlamaConfig): LlamaWeights {
  const s = tensorSizes(c);
  const floats = s.tokenEmbedding! + s.rmsAtt! + s.wq! + s.wk! + s.wv! + s.wo! + s.rmsFfn! +
    s.w1! + s.w2! + s.w3! + s.rmsFinal! + s.classifier!;
  checkSize(bytes, V1_HEADER_BYTES, floats, c);
  const r = new FloatReader(bytes, V1_HEADER_BYTES);
  const rmsAtt = r.next(s.rmsAtt!);
  const rmsFfn = r.next(s.rmsFfn!);
  const rmsFinal = r.next(s.rmsFinal!);
  const tokenEmbedding = r.next(s.tokenEmbedding!);
  const wq = r.next(s.wq!);
  const wk = r.next(s.wk!);
  const wv = r.next(s.wv!);
  const wo = r.next(s.wo!);
  const w1 = r.next(s.w1!);
  const w2 = r.next(s.w2!);
  const w3 = r.next(s.w3!);
  const classifier = c.sharedClassifier ? tokenEmbedding : r.next(s.classifier!);
  return {
    tokenEmbedding,
    rmsAtt,
    wq,
    wk,
    wv,
    wo,
    rmsFfn,
    w1,
    w2,
    w3,
    rmsFinal,
    classifier,
    ropeCos: undefined,
    ropeSin: undefined,
  };
}

/** The header fields of a checkpoint (what {@linkcode randomCheckpoint} needs). */
export interface LlamaShape {
  /** Model width. */
  dim: number;
  /** FFN hidden width. */
  hiddenDim: number;
  /** Layers. */
  layers: number;
  /** Query heads. */
  heads: number;
  /** KV heads. */
  kvHeads: number;
  /** Vocabulary size. */
  vocabSize: number;
  /** Trained context length. */
  seqLen: number;
  /** Classifier shared with the embedding. @default {true} */
  sharedClassifier?: boolean;
}

/** Options of {@linkcode randomCheckpoint}. */
export interface RandomCheckpointOptions {
  /** Seed of the weights. @default {1} */
  seed?: number;
  /** Standard deviation of matrix entries; norm gains are `1 + 0.1·N(0, 1)`. @default {0.3} */
  std?: number;
}

/**
 * A checkpoint with seeded random weights (for tests, examples and
 * synthetic benchmarks): validated like a file header, with the legacy RoPE
 * tables filled as llama2.c writes them.
 *
 * @param shape Header fields.
 * @param options Seed and scale.
 * @returns A checkpoint (`version: 0`).
 * @throws {RangeError} On an invalid shape (as {@linkcode parseCheckpoint}).
 *
 * @example
 * ```ts
 * import { randomCheckpoint } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * const ckpt = randomCheckpoint({ dim: 8, hiddenDim: 16, layers: 1, heads: 2, kvHeads: 1, vocabSize: 7, seqLen: 4 });
 * assert.equal(ckpt.weights.wk.length, 1 * 4 * 8);
 * ```
 */
export function randomCheckpoint(
  shape: LlamaShape,
  options: RandomCheckpointOptions = {},
): Checkpoint {
  const shared = shape.sharedClassifier ?? true;
  const config = makeConfig(
    [
      shape.dim,
      shape.hiddenDim,
      shape.layers,
      shape.heads,
      shape.kvHeads,
      shape.vocabSize,
      shape.seqLen,
    ],
    shared,
    "random",
  );
  const rng = new Rng(requireInt("create random checkpoint", "seed", options.seed ?? 1));
  const std = requireFinite("create random checkpoint", "std", options.std ?? 0.3);
  const s = tensorSizes(config);
  const normal = (n: number): Float32Array => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = rng.normal() * std;
    return a;
  };
  const gain = (n: number): Float32Array => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = 1 + 0.1 * rng.normal();
    return a;
  };
  const tokenEmbedding = normal(s.tokenEmbedding!);
  const half = config.headDim / 2;
  const ropeCos = new Float32Array(config.seqLen * half);
  const ropeSin = new Float32Array(config.seqLen * half);
  for (let p = 0; p < config.seqLen; p++) {
    for (let i = 0; i < half; i++) {
      const a = p / Math.pow(config.ropeBase, (2 * i) / config.headDim);
      ropeCos[p * half + i] = Math.cos(a);
      ropeSin[p * half + i] = Math.sin(a);
    }
  }
  return {
    version: 0,
    config,
    weights: {
      tokenEmbedding,
      rmsAtt: gain(s.rmsAtt!),
      wq: normal(s.wq!),
      wk: normal(s.wk!),
      wv: normal(s.wv!),
      wo: normal(s.wo!),
      rmsFfn: gain(s.rmsFfn!),
      w1: normal(s.w1!),
      w2: normal(s.w2!),
      w3: normal(s.w3!),
      rmsFinal: gain(s.rmsFinal!),
      classifier: shared ? tokenEmbedding : normal(s.classifier!),
      ropeCos,
      ropeSin,
    },
  };
}

/** Options of {@linkcode encodeCheckpoint}. */
export interface EncodeCheckpointOptions {
  /** File layout: 0 (legacy) or 1 (`"ak42"` header). @default {0} */
  version?: 0 | 1;
}

/**
 * Serialises a checkpoint in a llama2.c layout ({@linkcode parseCheckpoint}
 * reads it back). Legacy files get the checkpoint's RoPE tables, or tables
 * computed from `ropeBase` when it has none.
 *
 * @param checkpoint Config and weights.
 * @param options Target version.
 * @returns The file's bytes.
 * @throws {RangeError} On an unknown version.
 *
 * @example Round trip in both layouts
 * ```ts
 * import { encodeCheckpoint, parseCheckpoint, randomCheckpoint } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * const ckpt = randomCheckpoint({ dim: 8, hiddenDim: 16, layers: 2, heads: 2, kvHeads: 1, vocabSize: 7, seqLen: 4, sharedClassifier: false });
 * for (const version of [0, 1] as const) {
 *   const back = parseCheckpoint(encodeCheckpoint(ckpt, { version }));
 *   assert.equal(back.version, version);
 *   assert.deepEqual(back.weights.w2, ckpt.weights.w2);
 *   assert.deepEqual(back.weights.classifier, ckpt.weights.classifier);
 * }
 * ```
 */
export function encodeCheckpoint(
  checkpoint: Checkpoint,
  options: EncodeCheckpointOptions = {},
): Uint8Array {
  const version = options.version ?? 0;
  if (version !== 0 && version !== 1) {
    throw new RangeError(
      `Cannot encode llama2.c checkpoint: version must be 0 or 1, got ${describeValue(version)}`,
    );
  }
  const c = checkpoint.config, w = checkpoint.weights;
  const header = [c.dim, c.hiddenDim, c.layers, c.heads, c.kvHeads, c.vocabSize, c.seqLen];
  let parts: Float32Array[];
  let head: Uint8Array;
  if (version === 0) {
    if (!c.sharedClassifier) header[5] = -c.vocabSize;
    head = new Uint8Array(LEGACY_HEADER_BYTES);
    const hv = new DataView(head.buffer);
    header.forEach((v, i) => hv.setInt32(4 * i, v, true));
    let cos = w.ropeCos, sin = w.ropeSin;
    if (cos === undefined || sin === undefined) {
      const half = c.headDim / 2;
      cos = new Float32Array(c.seqLen * half);
      sin = new Float32Array(c.seqLen * half);
      for (let p = 0; p < c.seqLen; p++) {
        for (let i = 0; i < half; i++) {
          const a = p / Math.pow(c.ropeBase, (2 * i) / c.headDim);
          cos[p * half + i] = Math.cos(a);
          sin[p * half + i] = Math.sin(a);
        }
      }
    }
    parts = [
      w.tokenEmbedding,
      w.rmsAtt,
      w.wq,
      w.wk,
      w.wv,
      w.wo,
      w.rmsFfn,
      w.w1,
      w.w2,
      w.w3,
      w.rmsFinal,
      cos,
      sin,
    ];
  } else {
    head = new Uint8Array(V1_HEADER_BYTES);
    const hv = new DataView(head.buffer);
    hv.setUint32(0, LLAMA2C_MAGIC, true);
    hv.setInt32(4, 1, true);
    header.forEach((v, i) => hv.setInt32(8 + 4 * i, v, true));
    hv.setUint8(36, c.sharedClassifier ? 1 : 0);
    parts = [
      w.rmsAtt,
      w.rmsFfn,
      w.rmsFinal,
      w.tokenEmbedding,
      w.wq,
      w.wk,
      w.wv,
      w.wo,
      w.w1,
      w.w2,
      w.w3,
    ];
  }
  if (!c.sharedClassifier) parts.push(w.classifier);
  let floats = 0;
  for (const p of parts) floats += p.length;
  const out = new Uint8Array(head.length + 4 * floats);
  out.set(head);
  const view = new DataView(out.buffer);
  let at = head.length;
  for (const p of parts) {
    for (let i = 0; i < p.length; i++, at += 4) view.setFloat32(at, p[i]!, true);
  }
  return out;
}
