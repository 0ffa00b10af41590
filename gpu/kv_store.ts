// Copyright 2026 the longctx authors. MIT license.

/**
 * The GPU KV cache: fixed capacity, allocated once, written in place, with
 * pages split across buffers so that a 128k-token cache fits the binding
 * limits; and {@linkcode GpuKvView}, the one description of "where the keys
 * and values are" that every attention kernel reads (a store layer, or plain
 * `[tokens, kvHeads, headDim]` tensors through {@linkcode kvViewOfTensors}).
 *
 * ## Layout
 *
 * A page holds `pageSize` tokens of every KV head of one layer, head-major:
 * element `(token, head, i)` of a layer is at
 *
 * ```
 * page = ⌊token / pageSize⌋, row = token mod pageSize
 * segment s = ⌊page / pagesPerSegment⌋      (one GPUBuffer each for keys and values)
 * index = (page mod pagesPerSegment)·pageStride + head·headStride + row·rowStride + i
 * pageStride = kvHeads·pageSize·rowStride, headStride = pageSize·rowStride
 * ```
 *
 * so one KV head's rows inside a page are contiguous (a GQA group reads them
 * in order), and `pagesPerSegment` is the most pages whose bytes fit
 * `maxStorageBufferBindingSize` (128 MiB on many adapters: a 128k × 8 × 128
 * f16 cache is 256 MiB per layer for keys, so two segments). Kernels dispatch
 * once per segment and merge the partial softmax states.
 *
 * `rowStride` is `headDim` for f32 and `headDim` rounded up to even for f16,
 * so every row starts on a 4-byte boundary (`writeBuffer` and packed-f16
 * reads need that); the padding element is written as 0.
 *
 * Positions are kept per layer (shared by the KV heads) on the device (for
 * RoPE on read) and mirrored on the host (for planning sparse reads).
 *
 * @module
 */

import { MAX_KV_POSITION } from "../kv/kv_store.ts";
import { tensor } from "../tensor/tensor.ts";
import type { FloatArray, FloatDType, Tensor } from "../tensor/types.ts";
import {
  describeValue,
  requireNonNegativeInt,
  requireOneOf,
  requirePositiveInt,
} from "../tensor/validate.ts";
import { type GpuContext, STORAGE_USAGE } from "./device.ts";
import type { GpuTensor } from "./tensor.ts";
import { requireBindable, requireGpuThd, storageOf } from "./_kernel.ts";
import { grid2d } from "./_wgsl/common.ts";
import { KV_WRITE_PARAMS, kvWriteWgsl } from "./_wgsl/kv_write.ts";

/** One pair of buffers of a {@linkcode GpuKvView}: tokens `[tokenStart, tokenStart + tokenCount)`. */
export interface GpuKvSegment {
  /** Key storage. */
  readonly keys: GPUBuffer;
  /** Value storage. */
  readonly values: GPUBuffer;
  /** Element index in `keys` of the segment's token 0, head 0. */
  readonly keyBase: number;
  /** Element index in `values` of the segment's token 0, head 0. */
  readonly valueBase: number;
  /** Global index of the segment's first token. */
  readonly tokenStart: number;
  /** Tokens the segment can hold. */
  readonly tokenCount: number;
}

/**
 * Where one layer's keys and values are, for the kernels: the addressing rule
 * of the module doc plus the buffers. Produced by {@linkcode GpuKvStore.view}
 * and {@linkcode kvViewOfTensors}; valid until the next append.
 */
export interface GpuKvView {
  /** KV heads. */
  readonly kvHeads: number;
  /** Elements per key/value vector. */
  readonly headDim: number;
  /** Storage dtype. */
  readonly dtype: FloatDType;
  /** Tokens per page (a dense tensor is one page). */
  readonly pageSize: number;
  /** Elements from one page to the next inside a segment. */
  readonly pageStride: number;
  /** Elements from one KV head to the next inside a page. */
  readonly headStride: number;
  /** Elements from one token row to the next inside a page. */
  readonly rowStride: number;
  /** Valid tokens. */
  readonly length: number;
  /** Buffers, in token order. */
  readonly segments: readonly GpuKvSegment[];
  /** Whether keys are already rotated (store views only; tensors are taken as they are). */
  readonly keyForm?: "pre-rope" | "post-rope";
  /**
   * Original positions of the valid tokens (store views only): on the device
   * (`buffer`, i32), on the host (`host`), and `runStart[j]`, the first index
   * of the run of consecutive positions that holds token `j` (so tokens
   * `[a, b)` have consecutive positions iff `runStart[b − 1] <= a`).
   */
  readonly positions?: {
    readonly buffer: GPUBuffer;
    readonly host: Int32Array;
    readonly runStart: Int32Array;
  };
}

/**
 * A {@linkcode GpuKvView} over contiguous GPU tensors `[tokens, kvHeads, headDim]`
 * (one page, one segment).
 *
 * @param gpu The context (for the binding-size check).
 * @param key Keys, shape `[tokens, kvHeads, headDim]`, f32 or f16, contiguous.
 * @param value Values, same shape and dtype.
 * @returns The view.
 * @throws {TypeError} If shapes or dtypes differ or are not `[tokens, kvHeads, headDim]`.
 * @throws {RangeError} If a buffer exceeds `maxStorageBufferBindingSize`.
 */
export function kvViewOfTensors(gpu: GpuContext, key: GpuTensor, value: GpuTensor): GpuKvView {
  const action = "view KV tensors";
  requireGpuThd(action, "key", key);
  requireGpuThd(action, "value", value);
  if (key.shape.some((d, i) => d !== value.shape[i]) || key.dtype !== value.dtype) {
    throw new TypeError(
      `Cannot ${action}: value (${value.dtype} ${
        describeValue(value.shape)
      }) must match key (${key.dtype} ${describeValue(key.shape)})`,
    );
  }
  requireBindable(gpu, action, "key", key.buffer);
  requireBindable(gpu, action, "value", value.buffer);
  const [tokens, kvHeads, headDim] = key.shape as [number, number, number];
  return {
    kvHeads,
    headDim,
    dtype: key.dtype as FloatDType,
    pageSize: Math.max(tokens, 1),
    pageStride: 0,
    headStride: headDim,
    rowStride: kvHeads * headDim,
    length: tokens,
    segments: [{
      keys: key.buffer,
      values: value.buffer,
      keyBase: key.offset,
      valueBase: value.offset,
      tokenStart: 0,
      tokenCount: tokens,
    }],
  };
}

/** Options of {@linkcode GpuKvStore}. */
export interface GpuKvStoreOptions {
  /** Transformer layers. */
  layers: number;
  /** KV heads per layer. */
  kvHeads: number;
  /** Elements per key and value vector. */
  headDim: number;
  /** Most tokens per layer; everything is allocated up front. */
  capacity: number;
  /** Storage dtype. @default {"f16" when the device has shader-f16, else "f32"} */
  dtype?: FloatDType;
  /** Tokens per page. @default {Math.min(256, capacity)} */
  pageSize?: number;
  /** Whether appended keys are already rotated by RoPE. @default {"pre-rope"} */
  keyForm?: "pre-rope" | "post-rope";
  /**
   * Largest buffer, in bytes, one segment may use.
   * @default {min(maxStorageBufferBindingSize, maxBufferSize)}
   */
  maxSegmentBytes?: number;
}

/** Resolved layout of a {@linkcode GpuKvStore} (see {@linkcode GpuKvStore.plan}). */
export interface GpuKvStorePlan {
  /** Layers. */
  readonly layers: number;
  /** KV heads per layer. */
  readonly kvHeads: number;
  /** Elements per key/value vector. */
  readonly headDim: number;
  /** Tokens per layer. */
  readonly capacity: number;
  /** Storage dtype. */
  readonly dtype: FloatDType;
  /** Tokens per page. */
  readonly pageSize: number;
  /** Whether stored keys are rotated. */
  readonly keyForm: "pre-rope" | "post-rope";
  /** Elements between token rows. */
  readonly rowStride: number;
  /** Pages per segment buffer. */
  readonly pagesPerSegment: number;
  /** Segment buffers per layer, for keys (the same again for values). */
  readonly segmentsPerLayer: number;
  /** Bytes of a full segment buffer. */
  readonly segmentBytes: number;
  /** Bytes of every buffer of the store (keys, values, positions). */
  readonly totalBytes: number;
}

function planStore(
  action: string,
  options: GpuKvStoreOptions,
  limits: { maxStorageBufferBindingSize: number; maxBufferSize: number },
  shaderF16: boolean,
): GpuKvStorePlan {
  if (options === null || typeof options !== "object") {
    throw new TypeError(
      `Cannot ${action}: options must be an object, got ${describeValue(options)}`,
    );
  }
  const layers = requirePositiveInt(action, "layers", options.layers);
  const kvHeads = requirePositiveInt(action, "kvHeads", options.kvHeads);
  const headDim = requirePositiveInt(action, "headDim", options.headDim);
  const capacity = requirePositiveInt(action, "capacity", options.capacity);
  const dtype = requireOneOf(
    action,
    "dtype",
    options.dtype ?? (shaderF16 ? "f16" : "f32"),
    ["f32", "f16"] as const,
  );
  const pageSize = requirePositiveInt(
    action,
    "pageSize",
    options.pageSize ?? Math.min(256, capacity),
  );
  const keyForm = requireOneOf(
    action,
    "keyForm",
    options.keyForm ?? "pre-rope",
    ["pre-rope", "post-rope"] as const,
  );
  const elem = dtype === "f16" ? 2 : 4;
  const rowStride = dtype === "f16" ? headDim + (headDim & 1) : headDim;
  const pageBytes = kvHeads * pageSize * rowStride * elem;
  const limit = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  const maxSegment = options.maxSegmentBytes === undefined
    ? limit
    : Math.min(limit, requirePositiveInt(action, "maxSegmentBytes", options.maxSegmentBytes));
  if (pageBytes > maxSegment) {
    throw new RangeError(
      `Cannot ${action}: one page needs ${pageBytes} bytes (kvHeads ${kvHeads} × pageSize ${pageSize} × ${rowStride} × ${elem}), but a segment may hold ${maxSegment}`,
    );
  }
  const positionBytes = capacity * 4;
  if (positionBytes > limit) {
    throw new RangeError(
      `Cannot ${action}: positions need ${positionBytes} bytes, but maxStorageBufferBindingSize is ${limit}`,
    );
  }
  const pages = Math.ceil(capacity / pageSize);
  const pagesPerSegment = Math.min(pages, Math.floor(maxSegment / pageBytes));
  const segmentsPerLayer = Math.ceil(pages / pagesPerSegment);
  const layerBytes = 2 * pages * pageBytes + Math.max(16, positionBytes);
  return {
    layers,
    kvHeads,
    headDim,
    capacity,
    dtype,
    pageSize,
    keyForm,
    rowStride,
    pagesPerSegment,
    segmentsPerLayer,
    segmentBytes: pagesPerSegment * pageBytes,
    totalBytes: layers * layerBytes,
  };
}

interface LayerState {
  length: number;
  segments: GpuKvSegment[];
  positions: GPUBuffer;
  host: Int32Array;
  runStart: Int32Array;
}

/**
 * A fixed-capacity KV cache in GPU memory for one sequence.
 *
 * Every buffer is created by the constructor; appends write rows in place
 * (`writeBuffer` from the host, or a scatter kernel from GPU tensors), so
 * decoding never reallocates. Capacity is per layer; all KV heads of a layer
 * hold the same tokens.
 *
 * | operation | cost |
 * | --- | --- |
 * | constructor | `2 · layers · segments` buffers + one positions buffer per layer |
 * | `append` of `t` tokens | `2 · kvHeads` `writeBuffer` calls per page touched, O(t · kvHeads · headDim) host conversion |
 * | `appendGpu` of `t` tokens | one dispatch per segment touched |
 * | `view`, `length` | O(1), no allocation |
 *
 * @example Decode over a paged f16 cache filled in two appends (skipped without a GPU)
 * ```ts
 * import { denseDecodeWebGpu, downloadState, GpuKvStore, tryRequestGpu, upload } from "@longctx/longctx/gpu";
 * import { denseAttention } from "@longctx/longctx/attention";
 * import { contiguous, randn, sliceAxis } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const store = new GpuKvStore(gpu, { layers: 1, kvHeads: 2, headDim: 32, capacity: 256, pageSize: 64, dtype: "f16" });
 *   const [key, value] = [1, 2].map((seed) => contiguous(randn([150, 2, 32], { seed }), "f16"));
 *   store.append(0, sliceAxis(key, 0, 0, 100), sliceAxis(value, 0, 0, 100));
 *   store.append(0, sliceAxis(key, 0, 100, 150), sliceAxis(value, 0, 100, 150)); // crosses a page
 *   const query = randn([1, 8, 32], { seed: 3 });
 *   const { out } = await downloadState(gpu, denseDecodeWebGpu(gpu, { query: upload(gpu, query), kv: store.view(0) }));
 *   const cpu = denseAttention({ query, key, value });
 *   out.data.forEach((x, i) => assert.ok(Math.abs(x - cpu.out.data[i]) < 1e-4));
 *   store.destroy();
 *   gpu.destroy();
 * }
 * ```
 */
export class GpuKvStore {
  /** Layers. */
  readonly layers: number;
  /** KV heads per layer. */
  readonly kvHeads: number;
  /** Elements per key/value vector. */
  readonly headDim: number;
  /** Tokens per layer. */
  readonly capacity: number;
  /** Storage dtype. */
  readonly dtype: FloatDType;
  /** Tokens per page. */
  readonly pageSize: number;
  /** Elements between token rows (headDim, rounded up to even for f16). */
  readonly rowStride: number;
  /** Pages per segment buffer. */
  readonly pagesPerSegment: number;
  /** Whether stored keys are rotated. */
  readonly keyForm: "pre-rope" | "post-rope";
  /** Bytes of every buffer the store created. */
  readonly bytesHeld: number;

  #gpu: GpuContext;
  #layers: LayerState[];
  #destroyed = false;

  /**
   * Allocates the whole cache.
   *
   * @param gpu The context.
   * @param options Geometry, capacity, dtype, page size, key form, segment size.
   * @throws {TypeError} On an unknown dtype or key form.
   * @throws {RangeError} If a size is not a positive integer, or one page does
   *   not fit `maxSegmentBytes` (checked before touching the driver).
   */
  constructor(gpu: GpuContext, options: GpuKvStoreOptions) {
    const action = "create GpuKvStore";
    if (options === null || typeof options !== "object") {
      throw new TypeError(
        `Cannot ${action}: options must be an object, got ${describeValue(options)}`,
      );
    }
    gpu.checkAlive(action);
    this.#gpu = gpu;
    const plan = planStore(action, options, gpu.limits, gpu.features.shaderF16);
    this.layers = plan.layers;
    this.kvHeads = plan.kvHeads;
    this.headDim = plan.headDim;
    this.capacity = plan.capacity;
    this.dtype = plan.dtype;
    this.pageSize = plan.pageSize;
    this.keyForm = plan.keyForm;
    this.rowStride = plan.rowStride;
    this.pagesPerSegment = plan.pagesPerSegment;
    const pages = Math.ceil(this.capacity / this.pageSize);
    const elem = this.dtype === "f16" ? 2 : 4;
    const positionBytes = this.capacity * 4;
    const pageStride = this.kvHeads * this.pageSize * this.rowStride;
    const usage = STORAGE_USAGE;
    let bytes = 0;
    this.#layers = [];
    for (let l = 0; l < this.layers; l++) {
      const segments: GpuKvSegment[] = [];
      for (let p0 = 0; p0 < pages; p0 += this.pagesPerSegment) {
        const n = Math.min(this.pagesPerSegment, pages - p0);
        const size = n * pageStride * elem;
        const s = segments.length;
        segments.push({
          keys: gpu.device.createBuffer({ label: `longctx kv L${l} keys seg${s}`, size, usage }),
          values: gpu.device.createBuffer({
            label: `longctx kv L${l} values seg${s}`,
            size,
            usage,
          }),
          keyBase: 0,
          valueBase: 0,
          tokenStart: p0 * this.pageSize,
          tokenCount: n * this.pageSize,
        });
        bytes += 2 * size;
      }
      const positions = gpu.device.createBuffer({
        label: `longctx kv L${l} positions`,
        size: Math.max(16, positionBytes),
        usage,
      });
      bytes += positions.size;
      this.#layers.push({
        length: 0,
        segments,
        positions,
        host: new Int32Array(this.capacity),
        runStart: new Int32Array(this.capacity),
      });
    }
    this.bytesHeld = bytes;
  }

  /**
   * The layout a store with these options would have on a device with these
   * limits, computed without allocating anything: use it to check that a
   * cache fits before creating it.
   *
   * @param options As the constructor.
   * @param limits The device's `maxStorageBufferBindingSize` and `maxBufferSize`.
   * @param shaderF16 Whether the device has `shader-f16` (the default dtype). @default {true}
   * @returns Resolved geometry, the segment size and count per layer, and total bytes.
   * @throws {TypeError} / {RangeError} As the constructor.
   *
   * @example A 128k-token f16 cache of 8 KV heads × 128 needs two 128 MiB buffers per layer for keys
   * ```ts
   * import { GpuKvStore } from "@longctx/longctx/gpu";
   * import assert from "node:assert/strict";
   * const plan = GpuKvStore.plan(
   *   { layers: 1, kvHeads: 8, headDim: 128, capacity: 131072 },
   *   { maxStorageBufferBindingSize: 2 ** 27, maxBufferSize: 2 ** 31 - 1 },
   * );
   * assert.equal(plan.segmentsPerLayer, 2);
   * assert.equal(plan.segmentBytes, 2 ** 27);
   * ```
   */
  static plan(
    options: GpuKvStoreOptions,
    limits: { maxStorageBufferBindingSize: number; maxBufferSize: number },
    shaderF16 = true,
  ): GpuKvStorePlan {
    return planStore("plan GpuKvStore", options, limits, shaderF16);
  }

  /**
   * Tokens held by a layer.
   *
   * @param layer Layer index.
   * @returns The count.
   */
  length(layer: number): number {
    return this.#layer("read GpuKvStore", layer).length;
  }

  /**
   * The kernels' view of one layer (valid until the next append or clear).
   *
   * @param layer Layer index.
   * @returns Buffers, addressing and positions of the layer.
   * @throws {RangeError} If `layer` is out of range.
   */
  view(layer: number): GpuKvView {
    const st = this.#layer("view GpuKvStore", layer);
    return {
      kvHeads: this.kvHeads,
      headDim: this.headDim,
      dtype: this.dtype,
      pageSize: this.pageSize,
      pageStride: this.kvHeads * this.pageSize * this.rowStride,
      headStride: this.pageSize * this.rowStride,
      rowStride: this.rowStride,
      length: st.length,
      segments: st.segments,
      keyForm: this.keyForm,
      positions: {
        buffer: st.positions,
        host: st.host.subarray(0, st.length),
        runStart: st.runStart.subarray(0, st.length),
      },
    };
  }

  /**
   * Appends `t` tokens of every KV head of one layer from host tensors,
   * converting to the storage dtype on the host and writing the rows in place.
   *
   * @param layer Layer index.
   * @param keys Keys, shape `[t, kvHeads, headDim]`, f32 or f16, any strides.
   * @param values Values, same shape.
   * @param positions Original positions: `t` integers, or the first of `t`
   *   consecutive ones. @default {continue after the last stored position (0 when empty)}
   * @throws {TypeError} On a wrong shape or dtype, or positions of the wrong length.
   * @throws {RangeError} If `layer` is out of range, a position is invalid, or
   *   the layer would exceed `capacity`. Nothing is written when it throws.
   */
  append(
    layer: number,
    keys: Tensor,
    values: Tensor,
    positions?: ArrayLike<number> | number,
  ): void {
    const action = "append to GpuKvStore";
    const st = this.#layer(action, layer);
    this.#gpu.checkAlive(action);
    const t = this.#checkHostTensor(action, "keys", keys);
    const tv = this.#checkHostTensor(action, "values", values);
    if (tv !== t) {
      throw new TypeError(
        `Cannot ${action}: keys and values must have the same number of tokens, got ${t} and ${tv}`,
      );
    }
    const pos = this.#resolvePositions(action, st, t, positions);
    const d = this.headDim, rs = this.rowStride;
    const stage = this.dtype === "f16" ? new Float16Array(this.pageSize * rs) : new Float32Array(
      this.pageSize * rs,
    );
    const elem = this.dtype === "f16" ? 2 : 4;
    let j = 0;
    while (j < t) {
      const token = st.length + j;
      const page = Math.floor(token / this.pageSize);
      const row = token - page * this.pageSize;
      const count = Math.min(t - j, this.pageSize - row);
      const seg = st.segments[Math.floor(page / this.pagesPerSegment)]!;
      const pageInSeg = page % this.pagesPerSegment;
      for (let h = 0; h < this.kvHeads; h++) {
        const base = pageInSeg * this.kvHeads * this.pageSize * rs + h * this.pageSize * rs +
          row * rs;
        for (const [src, dst] of [[keys, seg.keys], [values, seg.values]] as const) {
          const [s0, s1, s2] = src.strides as [number, number, number];
          const data = src.data as FloatArray;
          for (let r = 0; r < count; r++) {
            const so = src.offset + (j + r) * s0 + h * s1;
            for (let i = 0; i < d; i++) stage[r * rs + i] = data[so + i * s2]!;
          }
          this.#gpu.write(dst, base * elem, stage.subarray(0, count * rs));
        }
      }
      j += count;
    }
    this.#commitPositions(st, pos);
  }

  /**
   * Appends `t` tokens of every KV head of one layer from GPU tensors with a
   * scatter kernel (one dispatch per segment touched), converting to the
   * storage dtype on the device.
   *
   * @param layer Layer index.
   * @param keys Keys, contiguous GPU tensor `[t, kvHeads, headDim]`, f32 or f16.
   * @param values Values, same shape and dtype.
   * @param positions As {@linkcode GpuKvStore.append}.
   * @throws {TypeError} / {RangeError} As {@linkcode GpuKvStore.append}.
   */
  appendGpu(
    layer: number,
    keys: GpuTensor,
    values: GpuTensor,
    positions?: ArrayLike<number> | number,
  ): void {
    const action = "append to GpuKvStore";
    const st = this.#layer(action, layer);
    const gpu = this.#gpu;
    gpu.checkAlive(action);
    requireGpuThd(action, "keys", keys);
    requireGpuThd(action, "values", values);
    const [t, hkv, d] = keys.shape as [number, number, number];
    if (hkv !== this.kvHeads || d !== this.headDim) {
      throw new TypeError(
        `Cannot ${action}: keys must have shape [tokens, kvHeads=${this.kvHeads}, headDim=${this.headDim}], got ${
          describeValue(keys.shape)
        }`,
      );
    }
    if (values.shape.some((x, i) => x !== keys.shape[i]) || values.dtype !== keys.dtype) {
      throw new TypeError(
        `Cannot ${action}: values (${values.dtype} ${
          describeValue(values.shape)
        }) must match keys (${keys.dtype} ${describeValue(keys.shape)})`,
      );
    }
    requireBindable(gpu, action, "keys", keys.buffer);
    requireBindable(gpu, action, "values", values.buffer);
    const pos = this.#resolvePositions(action, st, t, positions);
    const src = storageOf(gpu, keys.dtype);
    const dst = storageOf(gpu, this.dtype);
    const wg = 64;
    const pipeline = gpu.pipeline("kv-write", { src, dst, workgroupSize: wg }, kvWriteWgsl);
    const units = dst === "f16-packed" ? this.rowStride / 2 : this.rowStride;
    const uniforms: GPUBuffer[] = [];
    let j = 0;
    const commands = [];
    while (j < t) {
      const token = st.length + j;
      const s = Math.floor(Math.floor(token / this.pageSize) / this.pagesPerSegment);
      const seg = st.segments[s]!;
      const count = Math.min(t - j, seg.tokenStart + seg.tokenCount - token);
      const u = gpu.uniform(KV_WRITE_PARAMS.pack({
        tokens: count,
        kvHeads: this.kvHeads,
        headDim: d,
        units,
        srcKeyBase: keys.offset + j * hkv * d,
        srcValueBase: values.offset + j * hkv * d,
        firstLocal: token - seg.tokenStart,
        pad0: 0,
        pageSize: this.pageSize,
        pageStride: this.kvHeads * this.pageSize * this.rowStride,
        headStride: this.pageSize * this.rowStride,
        rowStride: this.rowStride,
      }));
      uniforms.push(u);
      commands.push({
        kind: "dispatch" as const,
        pipeline,
        bindings: [u, keys.buffer, values.buffer, seg.keys, seg.values],
        workgroups: grid2d(
          Math.ceil(count * this.kvHeads * units / wg),
          gpu.limits.maxComputeWorkgroupsPerDimension,
        ),
      });
      j += count;
    }
    gpu.submit("kv-write", commands, { release: uniforms });
    this.#commitPositions(st, pos);
  }

  /**
   * Forgets every token of one layer, or of all layers (no GPU work; buffers stay).
   *
   * @param layer Layer index; all layers when omitted.
   */
  clear(layer?: number): void {
    if (layer === undefined) { for (const st of this.#layers) st.length = 0; }
    else this.#layer("clear GpuKvStore", layer).length = 0;
  }

  /**
   * Reads tokens `[start, end)` of a layer back to the host, as f32 (for tests
   * and inspection; not a hot path).
   *
   * @param layer Layer index.
   * @param start First token. @default {0}
   * @param end One past the last token. @default {length(layer)}
   * @returns Keys and values `[end − start, kvHeads, headDim]` and positions.
   * @throws {RangeError} If the range is outside `[0, length]`.
   */
  async read(
    layer: number,
    start = 0,
    end?: number,
  ): Promise<{ keys: Tensor<"f32">; values: Tensor<"f32">; positions: Int32Array }> {
    const action = "read GpuKvStore";
    const st = this.#layer(action, layer);
    const stop = end ?? st.length;
    requireNonNegativeInt(action, "start", start);
    requireNonNegativeInt(action, "end", stop);
    if (start > stop || stop > st.length) {
      throw new RangeError(
        `Cannot ${action}: range must satisfy 0 <= start <= end <= ${st.length}, got [${start}, ${stop})`,
      );
    }
    const n = stop - start, hkv = this.kvHeads, d = this.headDim, rs = this.rowStride;
    const keys = new Float32Array(n * hkv * d), values = new Float32Array(n * hkv * d);
    const elem = this.dtype === "f16" ? 2 : 4;
    for (const seg of st.segments) {
      const a = Math.max(start, seg.tokenStart),
        b = Math.min(stop, seg.tokenStart + seg.tokenCount);
      if (a >= b) continue;
      const p0 = Math.floor((a - seg.tokenStart) / this.pageSize);
      const p1 = Math.ceil((b - seg.tokenStart) / this.pageSize);
      const pageElems = hkv * this.pageSize * rs;
      const off = p0 * pageElems * elem, len = (p1 - p0) * pageElems * elem;
      for (const [buf, out] of [[seg.keys, keys], [seg.values, values]] as const) {
        const raw = await this.#gpu.read(buf, off, len);
        const arr = this.dtype === "f16" ? new Float16Array(raw) : new Float32Array(raw);
        for (let tok = a; tok < b; tok++) {
          const local = tok - seg.tokenStart;
          const page = Math.floor(local / this.pageSize) - p0;
          const row = local % this.pageSize;
          for (let h = 0; h < hkv; h++) {
            const src = page * pageElems + h * this.pageSize * rs + row * rs;
            const dst = ((tok - start) * hkv + h) * d;
            for (let i = 0; i < d; i++) out[dst + i] = arr[src + i]!;
          }
        }
      }
    }
    return {
      keys: tensor(keys, [n, hkv, d], { layout: "thd" }),
      values: tensor(values, [n, hkv, d], { layout: "thd" }),
      positions: st.host.slice(start, stop),
    };
  }

  /** Destroys every buffer of the store; later calls throw. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const st of this.#layers) {
      for (const s of st.segments) {
        s.keys.destroy();
        s.values.destroy();
      }
      st.positions.destroy();
    }
  }

  #layer(action: string, layer: number): LayerState {
    if (this.#destroyed) {
      throw new TypeError(`Cannot ${action}: the store was destroyed`);
    }
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.layers) {
      throw new RangeError(
        `Cannot ${action}: layer must be an integer in [0, ${this.layers}), got ${
          describeValue(layer)
        }`,
      );
    }
    return this.#layers[layer]!;
  }

  #checkHostTensor(action: string, name: string, t: Tensor): number {
    if (
      t === null || typeof t !== "object" || !Array.isArray(t.shape) ||
      !(t.data instanceof Float32Array || t.data instanceof Float16Array)
    ) {
      throw new TypeError(
        `Cannot ${action}: ${name} must be an f32 or f16 tensor [tokens, kvHeads, headDim], got ${
          describeValue(t)
        }`,
      );
    }
    if (t.shape.length !== 3 || t.shape[1] !== this.kvHeads || t.shape[2] !== this.headDim) {
      throw new TypeError(
        `Cannot ${action}: ${name} must have shape [tokens, kvHeads=${this.kvHeads}, headDim=${this.headDim}], got ${
          describeValue(t.shape)
        }`,
      );
    }
    return t.shape[0]!;
  }

  #resolvePositions(
    action: string,
    st: LayerState,
    t: number,
    positions: ArrayLike<number> | number | undefined,
  ): Int32Array {
    if (st.length + t > this.capacity) {
      throw new RangeError(
        `Cannot ${action}: layer holds ${st.length} of ${this.capacity} tokens, got ${t} more`,
      );
    }
    const out = new Int32Array(t);
    if (positions === undefined || typeof positions === "number") {
      const first = positions ?? (st.length === 0 ? 0 : st.host[st.length - 1]! + 1);
      const last = MAX_KV_POSITION - Math.max(t, 1) + 1;
      if (!Number.isSafeInteger(first) || first < 0 || first > last) {
        throw new RangeError(
          `Cannot ${action}: positions (the first position of ${t} tokens) must be an integer in [0, ${last}], got ${
            describeValue(first)
          }`,
        );
      }
      for (let i = 0; i < t; i++) out[i] = first + i;
      return out;
    }
    if (typeof positions !== "object" || typeof positions.length !== "number") {
      throw new TypeError(
        `Cannot ${action}: positions must be an array of integers, a number or undefined, got ${
          describeValue(positions)
        }`,
      );
    }
    if (positions.length !== t) {
      throw new TypeError(
        `Cannot ${action}: positions must have one entry per token (${t}), got length ${positions.length}`,
      );
    }
    for (let i = 0; i < t; i++) {
      const p = positions[i];
      if (typeof p !== "number" || !Number.isInteger(p) || p < 0 || p > MAX_KV_POSITION) {
        throw new RangeError(
          `Cannot ${action}: positions[${i}] must be an integer in [0, ${MAX_KV_POSITION}], got ${
            describeValue(p)
          }`,
        );
      }
      out[i] = p;
    }
    return out;
  }

  #commitPositions(st: LayerState, pos: Int32Array): void {
    st.host.set(pos, st.length);
    for (let j = st.length; j < st.length + pos.length; j++) {
      st.runStart[j] = j > 0 && st.host[j] === st.host[j - 1]! + 1 ? st.runStart[j - 1]! : j;
    }
    this.#gpu.write(st.positions, st.length * 4, pos);
    st.length += pos.length;
  }
}
