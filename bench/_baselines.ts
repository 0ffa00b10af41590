// Copyright 2026 the longctx authors. MIT license.

/**
 * Outside baselines for the attention bench: attention written the way a user
 * of TensorFlow.js (`@tensorflow/tfjs-core`, CPU backend) or ONNX Runtime
 * (`onnxruntime-node`, native and multi-threaded) would write it —
 * `softmax(Q·Kᵀ·scale [+ causal mask])·V` as two batched matmuls, one batch
 * per KV head, with the GQA group and the query tokens folded into the query
 * rows: `[kvHeads, tq · group, d] × [kvHeads, d, T]`. Both materialise the
 * `[kvHeads, tq · group, T]` score matrix, which the library's kernels never do.
 *
 * K and V (and the mask) are converted once, outside the timed region, from
 * the library's `[tokens, kvHeads, headDim]` cache layout to the head-major
 * layouts these runtimes want (a real user would keep the cache that way).
 *
 * The ONNX model is built in code: {@linkcode attentionOnnxModel} serializes
 * a `ModelProto` with a few lines of protobuf encoding (varints and
 * length-delimited fields), so no protobuf dependency is needed.
 *
 * @module
 */

import type { FloatDType, Tensor } from "../tensor/types.ts";

// ---------------------------------------------------------------------------
// Protobuf wire format: https://protobuf.dev/programming-guides/encoding/
// A message is a concatenation of fields; each field is a key
// (fieldNumber << 3 | wireType) followed by a varint (wire type 0) or a
// varint length and that many bytes (wire type 2).

const VARINT = 0;
const LEN = 2;

/** Encodes a non-negative integer or a (two's-complement, 10-byte) negative int64 as a varint. */
export function varint(value: number | bigint): Uint8Array {
  let v = BigInt.asUintN(64, BigInt(value));
  const bytes: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) b |= 0x80;
    bytes.push(b);
  } while (v !== 0n);
  return Uint8Array.from(bytes);
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A varint field (int32, int64, enum). */
function intField(field: number, value: number | bigint): Uint8Array {
  return concat([varint((field << 3) | VARINT), varint(value)]);
}

/** A length-delimited field (bytes, string, embedded message, packed repeated). */
function bytesField(field: number, bytes: Uint8Array): Uint8Array {
  return concat([varint((field << 3) | LEN), varint(bytes.length), bytes]);
}

function stringField(field: number, s: string): Uint8Array {
  return bytesField(field, new TextEncoder().encode(s));
}

/** An embedded message made of already-encoded fields. */
function messageField(field: number, fields: readonly Uint8Array[]): Uint8Array {
  return bytesField(field, concat(fields));
}

// ---------------------------------------------------------------------------
// The few ONNX messages we need (field numbers from onnx/onnx.proto).

/** `TensorProto.DataType.FLOAT`. */
const ONNX_FLOAT = 1;

/** A dimension: a number, or a symbolic name bound at run time. */
type Dim = number | string;

/** `ValueInfoProto { name = 1; type = 2 }` of a float tensor. */
function valueInfo(field: number, name: string, dims: readonly Dim[]): Uint8Array {
  // TensorShapeProto { dim = 1 }, Dimension { dim_value = 1 | dim_param = 2 }
  const shape = dims.map((d) =>
    messageField(1, [typeof d === "number" ? intField(1, d) : stringField(2, d)])
  );
  // TypeProto { tensor_type = 1 }, TypeProto.Tensor { elem_type = 1; shape = 2 }
  const tensorType = messageField(1, [intField(1, ONNX_FLOAT), messageField(2, shape)]);
  return messageField(field, [stringField(1, name), messageField(2, [tensorType])]);
}

/** `NodeProto { input = 1; output = 2; name = 3; op_type = 4 }`. */
function node(opType: string, inputs: readonly string[], outputs: readonly string[]): Uint8Array {
  return messageField(1, [
    ...inputs.map((s) => stringField(1, s)),
    ...outputs.map((s) => stringField(2, s)),
    stringField(3, `${opType}_${outputs[0]}`),
    stringField(4, opType),
  ]);
}

/** A scalar float initializer: `TensorProto { data_type = 2; name = 8; raw_data = 9 }` (no dims). */
function scalarInitializer(name: string, value: number): Uint8Array {
  const raw = new Uint8Array(4);
  new DataView(raw.buffer).setFloat32(0, value, true);
  return messageField(5, [intField(2, ONNX_FLOAT), stringField(8, name), bytesField(9, raw)]);
}

/** Shape of the attention graph. Query rows (`"R"`) and key length (`"T"`) are symbolic. */
export interface AttentionModelShape {
  /** KV heads (the matmul batch). */
  kvHeads: number;
  /** Head dimension. */
  headDim: number;
  /** Multiplies Q·Kᵀ. */
  scale: number;
  /** Whether the graph takes an additive mask input `Mask [R, T]` (0 or −1e30). */
  masked: boolean;
}

/**
 * Serializes the ONNX model (IR 8, opset 17) of
 * `Out = Softmax(MatMul(Q, Kt) · scale [+ Mask]) · V` with inputs
 * `Q [kvHeads, R, headDim]`, `Kt [kvHeads, headDim, T]`, `V [kvHeads, T, headDim]`
 * (and `Mask [R, T]`, broadcast over heads) and output `Out [kvHeads, R, headDim]`.
 *
 * @param shape Heads, head dim, scale, mask.
 * @returns The bytes of a `ModelProto`, for `InferenceSession.create(bytes)`.
 */
export function attentionOnnxModel(shape: AttentionModelShape): Uint8Array {
  const { kvHeads: h, headDim: d } = shape;
  const graph = [
    node("MatMul", ["Q", "Kt"], ["S"]),
    node("Mul", ["S", "scale"], ["Z"]),
    ...(shape.masked ? [node("Add", ["Z", "Mask"], ["ZM"])] : []),
    node("Softmax", [shape.masked ? "ZM" : "Z"], ["P"]), // opset 13+: axis defaults to -1
    node("MatMul", ["P", "V"], ["Out"]),
    stringField(2, "attention"),
    scalarInitializer("scale", shape.scale),
    valueInfo(11, "Q", [h, "R", d]),
    valueInfo(11, "Kt", [h, d, "T"]),
    valueInfo(11, "V", [h, "T", d]),
    ...(shape.masked ? [valueInfo(11, "Mask", ["R", "T"])] : []),
    valueInfo(12, "Out", [h, "R", d]),
  ];
  return concat([
    intField(1, 8), // ir_version
    stringField(2, "longctx-bench"), // producer_name
    messageField(7, graph), // graph
    messageField(8, [stringField(1, ""), intField(2, 17)]), // opset_import: default domain, 17
  ]);
}

// ---------------------------------------------------------------------------
// Layout conversions (setup only).

function element(t: Tensor<FloatDType>, i: number, h: number, k: number): number {
  return t.data[t.offset + i * t.strides[0]! + h * t.strides[1]! + k * t.strides[2]!]!;
}

/** `[tokens, kvHeads, d]` → `[kvHeads, tokens, d]` as a new f32 array. */
export function headMajor(t: Tensor<FloatDType>): Float32Array {
  const [n, h, d] = t.shape as [number, number, number];
  const out = new Float32Array(n * h * d);
  for (let hh = 0; hh < h; hh++) {
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < d; k++) out[(hh * n + i) * d + k] = element(t, i, hh, k);
    }
  }
  return out;
}

/** `[tokens, kvHeads, d]` → `[kvHeads, d, tokens]` as a new f32 array. */
export function headMajorTransposed(t: Tensor<FloatDType>): Float32Array {
  const [n, h, d] = t.shape as [number, number, number];
  const out = new Float32Array(n * h * d);
  for (let hh = 0; hh < h; hh++) {
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < d; k++) out[(hh * d + k) * n + i] = element(t, i, hh, k);
    }
  }
  return out;
}

/**
 * Copies queries `[tq, heads, d]` into `out` as `[kvHeads, tq · group, d]`, row
 * `t · group + g` of KV head `kh` being query head `kh · group + g` of token `t`.
 */
function queryRows(q: Tensor<FloatDType>, kvHeads: number, out: Float32Array): Float32Array {
  const [tq, h, d] = q.shape as [number, number, number];
  const group = h / kvHeads, rows = tq * group;
  for (let kh = 0; kh < kvHeads; kh++) {
    for (let t = 0; t < tq; t++) {
      for (let g = 0; g < group; g++) {
        const o = (kh * rows + t * group + g) * d;
        for (let k = 0; k < d; k++) out[o + k] = element(q, t, kh * group + g, k);
      }
    }
  }
  return out;
}

/** The additive causal mask `[tq · group, T]`: row `t · group + g` sees keys `j ≤ T − tq + t`. */
function causalMask(tq: number, group: number, tokens: number): Float32Array {
  const mask = new Float32Array(tq * group * tokens);
  for (let t = 0; t < tq; t++) {
    for (let g = 0; g < group; g++) {
      mask.fill(
        -1e30,
        (t * group + g) * tokens + tokens - tq + t + 1,
        (t * group + g + 1) * tokens,
      );
    }
  }
  return mask;
}

/**
 * Reorders a baseline's output `[kvHeads, tq · group, d]` into the library's
 * `[tq, heads, d]`, for checking it against `denseAttention`.
 *
 * @param out The runtime's output.
 * @param tq Query tokens.
 * @param heads Query heads.
 * @param kvHeads KV heads.
 * @param d Head dimension.
 * @returns A new array in `"thd"` order.
 */
export function toThd(
  out: Float32Array,
  tq: number,
  heads: number,
  kvHeads: number,
  d: number,
): Float32Array {
  const group = heads / kvHeads, rows = tq * group;
  const thd = new Float32Array(out.length);
  for (let kh = 0; kh < kvHeads; kh++) {
    for (let t = 0; t < tq; t++) {
      for (let g = 0; g < group; g++) {
        const src = (kh * rows + t * group + g) * d, dst = (t * heads + kh * group + g) * d;
        thd.set(out.subarray(src, src + d), dst);
      }
    }
  }
  return thd;
}

/** An outside attention baseline over a fixed cache. */
export interface Baseline {
  /** Runtime name for tables. */
  readonly name: string;
  /** Threads the runtime computes with. */
  readonly threads: number;
  /** Attends the queries `[tq, heads, d]`; resolves to `out` as `[kvHeads, tq · group, d]`. */
  run(query: Tensor<FloatDType>): Promise<Float32Array>;
  /** Frees the runtime's copies of K and V. */
  dispose(): void;
}

/** The problem a baseline is built for. */
export interface BaselineProblem {
  /** Keys `[tokens, kvHeads, d]`. */
  key: Tensor<FloatDType>;
  /** Values `[tokens, kvHeads, d]`. */
  value: Tensor<FloatDType>;
  /** Query heads. */
  heads: number;
  /** Query tokens (the last `queryTokens` keys' positions; causal when > 1). */
  queryTokens: number;
  /** Multiplies Q·Kᵀ. @default {1 / Math.sqrt(d)} */
  scale?: number;
}

/**
 * `onnxruntime-node` (CPU execution provider, `intraOpNumThreads` threads) on
 * the graph of {@linkcode attentionOnnxModel}; causal (with a mask input) when
 * there is more than one query token.
 *
 * @param problem Keys, values, heads, query tokens.
 * @param threads Intra-op threads. @default {navigator.hardwareConcurrency}
 * @returns A baseline whose `run` feeds Q and the pre-converted Kᵀ, V (and mask).
 */
export async function onnxBaseline(
  problem: BaselineProblem,
  threads: number = navigator.hardwareConcurrency || 1,
): Promise<Baseline> {
  const ort = await import("npm:onnxruntime-node@1.30.0");
  const [tokens, kvHeads, d] = problem.key.shape as [number, number, number];
  const tq = problem.queryTokens, group = problem.heads / kvHeads, rows = tq * group;
  const masked = tq > 1;
  const scale = problem.scale ?? 1 / Math.sqrt(d);
  const session = await ort.InferenceSession.create(
    attentionOnnxModel({ kvHeads, headDim: d, scale, masked }),
    {
      executionProviders: ["cpu"],
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: "all",
    },
  );
  const kt = new ort.Tensor("float32", headMajorTransposed(problem.key), [kvHeads, d, tokens]);
  const v = new ort.Tensor("float32", headMajor(problem.value), [kvHeads, tokens, d]);
  const mask = masked
    ? new ort.Tensor("float32", causalMask(tq, group, tokens), [rows, tokens])
    : undefined;
  const qData = new Float32Array(kvHeads * rows * d);
  return {
    name: `onnxruntime-node ${ort.env.versions.node} (${threads} threads)`,
    threads,
    async run(query) {
      const q = new ort.Tensor("float32", queryRows(query, kvHeads, qData), [kvHeads, rows, d]);
      const feeds = mask === undefined
        ? { Q: q, Kt: kt, V: v }
        : { Q: q, Kt: kt, V: v, Mask: mask };
      const result = await session.run(feeds);
      const out = result.Out!;
      const data = out.data as Float32Array;
      out.dispose();
      return data;
    },
    dispose() {
      kt.dispose();
      v.dispose();
      mask?.dispose();
      void session.release();
    },
  };
}

/**
 * `@tensorflow/tfjs-core` on the `cpu` backend (pure JS, one thread):
 * `softmax(matMul(q, k, false, true) · scale [+ mask])` then `matMul(p, v)`,
 * batched over KV heads; causal (with an additive mask) when there is more than
 * one query token.
 *
 * @param problem Keys, values, heads, query tokens.
 * @returns A baseline whose `run` feeds Q to the pre-uploaded K and V (and mask).
 */
export async function tfjsBaseline(problem: BaselineProblem): Promise<Baseline> {
  const tf = await import("npm:@tensorflow/tfjs-core@4.22.0");
  await import("npm:@tensorflow/tfjs-backend-cpu@4.22.0");
  await tf.setBackend("cpu");
  await tf.ready();
  const [tokens, kvHeads, d] = problem.key.shape as [number, number, number];
  const tq = problem.queryTokens, group = problem.heads / kvHeads, rows = tq * group;
  const scale = problem.scale ?? 1 / Math.sqrt(d);
  const k = tf.tensor3d(headMajor(problem.key), [kvHeads, tokens, d]);
  const v = tf.tensor3d(headMajor(problem.value), [kvHeads, tokens, d]);
  const mask = tq > 1 ? tf.tensor2d(causalMask(tq, group, tokens), [rows, tokens]) : undefined;
  const qData = new Float32Array(kvHeads * rows * d);
  return {
    name: `tfjs-core ${tf.version_core} (cpu backend)`,
    threads: 1,
    async run(query) {
      const out = tf.tidy(() => {
        const q = tf.tensor3d(queryRows(query, kvHeads, qData), [kvHeads, rows, d]);
        const z = tf.mul(tf.matMul(q, k, false, true), scale);
        const p = tf.softmax(mask === undefined ? z : tf.add(z, mask));
        return tf.matMul(p, v);
      });
      const data = await out.data() as Float32Array;
      out.dispose();
      return data;
    },
    dispose() {
      k.dispose();
      v.dispose();
      mask?.dispose();
    },
  };
}
