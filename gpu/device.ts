// Copyright 2026 the longctx authors. MIT license.

/**
 * The WebGPU runtime: acquiring a device with feature probing and raised
 * limits, choosing a backend, and {@linkcode GpuContext}, the small API every
 * fast path is written against:
 *
 * | step | call |
 * | --- | --- |
 * | get a device | {@linkcode requestGpu} / {@linkcode tryRequestGpu} / {@linkcode chooseBackend} |
 * | compile (cached) | `gpu.pipeline(kernel, config, buildWgsl)` |
 * | uniforms, storage | `gpu.uniform(bytes)`, `gpu.storage(bytes)` (pooled) |
 * | dispatch | `gpu.submit(label, [{ kind: "dispatch", pipeline, bindings, workgroups }], { release })` |
 * | read back | `await gpu.read(buffer, offset, bytes)` (or `download` in `tensor.ts`) |
 * | check | `await gpu.checkErrors()`; `await gpu.profile(fn)` for timestamp-query GPU time |
 *
 * ## Backend rule (`backend: "auto" | "cpu" | "webgpu"`)
 *
 * - `"cpu"`: always the pure-TS reference.
 * - `"webgpu"`: a WebGPU device, or a {@linkcode WebGpuUnavailableError}.
 * - `"auto"` (default) picks WebGPU only when all hold, else the CPU, and
 *   says why in {@linkcode BackendChoice.reason}:
 *   1. the problem is at least `minWork` multiply-adds (default
 *      {@linkcode GPU_MIN_WORK}, a heuristic not yet measured on hardware: for
 *      tiny problems the latency of a dispatch and a read-back dominates);
 *   2. `navigator.gpu` exists and returns an adapter (none is normal, not an error);
 *   3. the adapter is hardware, or `allowSoftware` is set: software
 *      rasterisers (Mesa lavapipe/llvmpipe, SwiftShader) run the kernels
 *      slower than the CPU reference (see the WebGPU section of bench/README.md);
 *   4. the device was not lost.
 *
 * @module
 */

import { describeValue } from "../tensor/validate.ts";
import { BufferPool } from "./pool.ts";

/**
 * Thrown when WebGPU is required (`backend: "webgpu"`, {@linkcode requestGpu})
 * but there is no `navigator.gpu`, no adapter, or the device request fails.
 * `backend: "auto"` never throws it: it falls back to the CPU.
 */
export class WebGpuUnavailableError extends Error {
  /**
   * Creates the error.
   *
   * @param message What was missing.
   */
  constructor(message: string) {
    super(message);
    this.name = "WebGpuUnavailableError";
  }
}

/**
 * Thrown by every GPU operation after the device was lost (driver reset,
 * `destroy()`, out of memory). Create a new context with {@linkcode requestGpu};
 * {@linkcode chooseBackend} treats a lost context as "no GPU".
 */
export class GpuDeviceLostError extends Error {
  /** `GPUDeviceLostReason`: `"destroyed"` or `"unknown"`. */
  readonly reason: string;
  /**
   * Creates the error.
   *
   * @param message What failed.
   * @param reason The loss reason reported by the device.
   */
  constructor(message: string, reason: string) {
    super(message);
    this.name = "GpuDeviceLostError";
    this.reason = reason;
  }
}

/** Thrown by {@linkcode GpuContext.checkErrors} when the device reported validation errors. */
export class GpuValidationError extends Error {
  /** The messages, oldest first. */
  readonly messages: readonly string[];
  /**
   * Creates the error.
   *
   * @param messages The device's error messages.
   */
  constructor(messages: readonly string[]) {
    super(
      `GPU reported ${messages.length} error(s): ${messages.slice(0, 3).join(" | ")}`,
    );
    this.name = "GpuValidationError";
    this.messages = messages;
  }
}

/** Optional features the kernels use, as probed on the device. */
export interface GpuFeatures {
  /** `shader-f16`: native `f16` in WGSL (f16 KV storage reads `array<f16>`). */
  readonly shaderF16: boolean;
  /** `subgroups` (not used by the kernels yet; reported for fast paths that will). */
  readonly subgroups: boolean;
  /** `timestamp-query`: GPU time of compute passes ({@linkcode GpuContext.profile}). */
  readonly timestampQuery: boolean;
}

/** What the adapter says about itself. */
export interface GpuAdapterSummary {
  /** `GPUAdapterInfo.vendor` (may be empty or numeric). */
  readonly vendor: string;
  /** `GPUAdapterInfo.architecture`. */
  readonly architecture: string;
  /** `GPUAdapterInfo.device`. */
  readonly device: string;
  /** `GPUAdapterInfo.description`, e.g. `"llvmpipe (LLVM 15.0.6, 256 bits)"`. */
  readonly description: string;
  /**
   * A software rasteriser: `isFallbackAdapter`, or a description naming
   * llvmpipe, lavapipe, SwiftShader or softpipe. Timings on it are not GPU timings.
   */
  readonly software: boolean;
}

/** Something that hands out adapters: `navigator.gpu`, or a stand-in for tests. */
export interface GpuProvider {
  /** As `GPU.requestAdapter`. */
  requestAdapter(options?: GPURequestAdapterOptions): Promise<GPUAdapter | null>;
}

/** Options of {@linkcode requestGpu}. */
export interface RequestGpuOptions {
  /** Passed to `requestAdapter`. @default {"high-performance"} */
  powerPreference?: GPUPowerPreference;
  /**
   * Limits to request: `"adapter"` asks for the adapter's maxima of the limits
   * the kernels use (buffer and binding sizes, workgroup storage and size,
   * storage buffers per stage, workgroups per dimension); `"default"` takes
   * WebGPU's defaults.
   * @default {"adapter"}
   */
  limits?: "adapter" | "default";
  /** Where adapters come from. @default {navigator.gpu} */
  provider?: GpuProvider;
  /** Device label. @default {"longctx"} */
  label?: string;
  /**
   * Optional features to request when the adapter offers them; `false` leaves
   * one off (e.g. `{ shaderF16: false }` makes f16 kernels read packed halves,
   * as on adapters without `shader-f16`).
   * @default {{ shaderF16: true, timestampQuery: true, subgroups: true }}
   */
  features?: { shaderF16?: boolean; timestampQuery?: boolean; subgroups?: boolean };
}

/** Limits raised to the adapter's maxima when `limits: "adapter"`. */
const RAISED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupsPerDimension",
] as const;

const SOFTWARE_ADAPTER = /llvmpipe|lavapipe|swiftshader|softpipe/i;

/** Default `minWork` of {@linkcode chooseBackend}: 2^20 multiply-adds. */
export const GPU_MIN_WORK = 1 << 20;

/** A buffer bound at one binding: a whole buffer or a range of it. */
export type GpuBinding = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

/** One command of {@linkcode GpuContext.submit}. */
export type GpuCommand =
  | {
    /** A compute dispatch (consecutive dispatches share one compute pass). */
    kind: "dispatch";
    /** A pipeline from {@linkcode GpuContext.pipeline}. */
    pipeline: GPUComputePipeline;
    /** Binding `i` of group 0 gets `bindings[i]`. */
    bindings: readonly GpuBinding[];
    /** Workgroup counts `[x, y?, z?]`. */
    workgroups: readonly [number, number?, number?];
  }
  | {
    /** `copyBufferToBuffer` (ends the current compute pass). */
    kind: "copy";
    src: GPUBuffer;
    srcOffset: number;
    dst: GPUBuffer;
    dstOffset: number;
    /** Bytes, a multiple of 4. */
    size: number;
  };

/** Options of {@linkcode GpuContext.submit}. */
export interface SubmitOptions {
  /** Pooled buffers to release once the commands are submitted. */
  release?: readonly GPUBuffer[];
}

/** Result of {@linkcode GpuContext.profile}. */
export interface GpuProfile<T> {
  /** What `fn` returned (awaited). */
  result: T;
  /** Summed GPU time of the compute passes `fn` submitted, in ns; `undefined` without `timestamp-query`. */
  gpuNs: number | undefined;
  /** Compute passes timed. */
  passes: number;
}

/** Compile-time configuration of a kernel: part of the pipeline cache key. */
export type KernelConfig = Readonly<Record<string, string | number | boolean>>;

/** Timestamp pairs one {@linkcode GpuContext.profile} call can record. */
const MAX_TIMED_PASSES = 512;

/**
 * A WebGPU device with what the kernels need around it: probed features and
 * limits, a {@linkcode BufferPool}, a pipeline cache keyed by kernel name and
 * compile-time config, command submission, read-back, error collection,
 * device-loss detection and timestamp profiling.
 *
 * Create one with {@linkcode requestGpu}; call {@linkcode GpuContext.destroy}
 * when done. Every method throws {@linkcode GpuDeviceLostError} once the
 * device is lost.
 *
 * @example Compile, dispatch, read back (skipped without a GPU)
 * ```ts
 * import { tryRequestGpu } from "@longctx/longctx/gpu";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const pipeline = gpu.pipeline("double", { n: 4 }, () => `
 *     @group(0) @binding(0) var<storage, read_write> x: array<f32>;
 *     @compute @workgroup_size(4) fn main(@builtin(global_invocation_id) g: vec3u) { x[g.x] *= 2.0; }`);
 *   const x = gpu.storage(new Float32Array([1, 2, 3, 4]), "x");
 *   gpu.submit("double", [{ kind: "dispatch", pipeline, bindings: [x], workgroups: [1] }]);
 *   assert.deepEqual([...new Float32Array(await gpu.read(x, 0, 16))], [2, 4, 6, 8]);
 *   assert.equal(gpu.pipeline("double", { n: 4 }, () => ""), pipeline); // cached
 *   await gpu.checkErrors();
 *   gpu.pool.release(x);
 *   gpu.destroy();
 * }
 * ```
 */
export class GpuContext {
  /** The device. */
  readonly device: GPUDevice;
  /** The adapter's self-description. */
  readonly adapter: GpuAdapterSummary;
  /** Optional features enabled on the device. */
  readonly features: GpuFeatures;
  /** The device's limits (raised to the adapter's maxima by default). */
  readonly limits: GPUSupportedLimits;
  /** Pooled buffers for temporaries and results. */
  readonly pool: BufferPool;

  #pipelines = new Map<string, GPUComputePipeline>();
  #pipelineHits = 0;
  #errors: string[] = [];
  #lost: { reason: string; message: string } | undefined = undefined;
  #profiling: { count: number } | undefined = undefined;
  #querySet: GPUQuerySet | undefined = undefined;

  /**
   * Wraps a device. Prefer {@linkcode requestGpu}, which probes and requests
   * features and limits.
   *
   * @param device The device.
   * @param adapter The adapter's self-description.
   */
  constructor(device: GPUDevice, adapter: GpuAdapterSummary) {
    this.device = device;
    this.adapter = adapter;
    this.limits = device.limits;
    this.features = {
      shaderF16: device.features.has("shader-f16"),
      subgroups: device.features.has("subgroups"),
      timestampQuery: device.features.has("timestamp-query"),
    };
    this.pool = new BufferPool(device);
    device.lost.then((info) => {
      this.#lost ??= { reason: info.reason ?? "unknown", message: info.message };
    });
    device.addEventListener("uncapturederror", (e: Event) => {
      const err = (e as GPUUncapturedErrorEvent).error;
      this.#errors.push(String(err?.message ?? err).trim());
    });
  }

  /** The loss reason and message once the device is lost, else `undefined`. */
  get lost(): { readonly reason: string; readonly message: string } | undefined {
    return this.#lost;
  }

  /** Pipelines compiled so far. */
  get pipelinesCompiled(): number {
    return this.#pipelines.size;
  }

  /** {@linkcode GpuContext.pipeline} calls served from the cache. */
  get pipelineCacheHits(): number {
    return this.#pipelineHits;
  }

  /**
   * Throws {@linkcode GpuDeviceLostError} if the device is lost.
   *
   * @param action What was about to be done, for the message.
   * @throws {GpuDeviceLostError} If the device is lost.
   */
  checkAlive(action: string): void {
    const lost = this.#lost;
    if (lost !== undefined) {
      throw new GpuDeviceLostError(
        `Cannot ${action}: the GPU device was lost (${lost.reason})${
          lost.message ? `: ${lost.message}` : ""
        }`,
        lost.reason,
      );
    }
  }

  /**
   * The compute pipeline of `kernel` for `config`, compiled on first use and
   * cached under `kernel` + the config's sorted entries. Module and pipeline
   * are labelled `longctx <kernel> <config>`; entry point `main`.
   *
   * @param kernel Kernel name (the technique step, e.g. `"dense-decode"`).
   * @param config Compile-time values (head dim, workgroup size, dtypes).
   * @param build Returns the WGSL for `config`; called only on a cache miss.
   * @returns The cached pipeline.
   * @throws {GpuDeviceLostError} If the device is lost.
   */
  pipeline<C extends KernelConfig>(
    kernel: string,
    config: C,
    build: (config: C) => string,
  ): GPUComputePipeline {
    const key = pipelineKey(kernel, config);
    const hit = this.#pipelines.get(key);
    if (hit !== undefined) {
      this.#pipelineHits++;
      return hit;
    }
    this.checkAlive(`compile ${kernel}`);
    const label = `longctx ${key}`;
    const module = this.device.createShaderModule({ label, code: build(config) });
    const pipeline = this.device.createComputePipeline({
      label,
      layout: "auto",
      compute: { module, entryPoint: "main" },
    });
    this.#pipelines.set(key, pipeline);
    return pipeline;
  }

  /**
   * Compiles `build(config)` into a fresh (uncached) module and returns the
   * compiler's messages, for tests that check every builder output.
   *
   * @param kernel Kernel name (for the label).
   * @param config Compile-time values.
   * @param build The WGSL builder.
   * @returns `getCompilationInfo()` messages as `{ type, message, line }`.
   * @throws {GpuDeviceLostError} If the device is lost.
   */
  async compileMessages<C extends KernelConfig>(
    kernel: string,
    config: C,
    build: (config: C) => string,
  ): Promise<{ type: string; message: string; line: number }[]> {
    this.checkAlive(`compile ${kernel}`);
    const module = this.device.createShaderModule({
      label: `longctx ${pipelineKey(kernel, config)} (check)`,
      code: build(config),
    });
    const info = await module.getCompilationInfo();
    return info.messages.map((m) => ({ type: m.type, message: m.message, line: m.lineNum }));
  }

  /**
   * A pooled `UNIFORM | COPY_DST` buffer holding `bytes`. Release it (e.g. via
   * `submit`'s `release`) after the commands that read it are submitted.
   *
   * @param bytes Uniform data (its byte length a multiple of 4).
   * @returns The buffer.
   */
  uniform(bytes: ArrayBuffer): GPUBuffer {
    this.checkAlive("write uniforms");
    const b = this.pool.acquire(
      bytes.byteLength,
      GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      "longctx uniforms",
    );
    this.device.queue.writeBuffer(b, 0, bytes);
    return b;
  }

  /**
   * A pooled `STORAGE | COPY_SRC | COPY_DST` buffer holding a copy of `data`
   * (padded with zeros to a multiple of 4 bytes).
   *
   * @param data Bytes to upload.
   * @param label Label of a newly created buffer.
   * @returns The buffer (release it to the pool when done).
   */
  storage(data: ArrayBufferView, label = "longctx storage"): GPUBuffer {
    this.checkAlive("upload data");
    const b = this.pool.acquire(data.byteLength, STORAGE_USAGE, label);
    this.write(b, 0, data);
    return b;
  }

  /**
   * `queue.writeBuffer` that accepts any byte length and offset: an unaligned
   * tail is padded with zeros up to 4 bytes (so the destination must have room).
   *
   * @param buffer Destination (`COPY_DST`).
   * @param byteOffset Destination offset, a multiple of 4.
   * @param data Bytes to write.
   */
  write(buffer: GPUBuffer, byteOffset: number, data: ArrayBufferView): void {
    const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    const aligned = bytes.byteLength & ~3;
    if (aligned > 0) this.device.queue.writeBuffer(buffer, byteOffset, bytes, 0, aligned);
    if (aligned < bytes.byteLength) {
      const tail = new Uint8Array(4);
      tail.set(bytes.subarray(aligned));
      this.device.queue.writeBuffer(buffer, byteOffset + aligned, tail);
    }
  }

  /**
   * Encodes `commands` into one command buffer and submits it. Consecutive
   * dispatches share one compute pass (WebGPU orders their storage accesses);
   * a copy ends the pass. Inside {@linkcode GpuContext.profile}, each pass
   * writes begin/end timestamps.
   *
   * @param label Label of the command encoder.
   * @param commands Dispatches and copies, in order.
   * @param options Pooled buffers to release after submission.
   * @throws {GpuDeviceLostError} If the device is lost.
   * @throws {RangeError} If a workgroup count exceeds `maxComputeWorkgroupsPerDimension`.
   */
  submit(label: string, commands: readonly GpuCommand[], options: SubmitOptions = {}): void {
    this.checkAlive(`run ${label}`);
    const maxDim = this.limits.maxComputeWorkgroupsPerDimension;
    const enc = this.device.createCommandEncoder({ label: `longctx ${label}` });
    let pass: GPUComputePassEncoder | undefined;
    for (const c of commands) {
      if (c.kind === "copy") {
        pass?.end();
        pass = undefined;
        enc.copyBufferToBuffer(c.src, c.srcOffset, c.dst, c.dstOffset, c.size);
        continue;
      }
      const [x, y = 1, z = 1] = c.workgroups;
      if (x > maxDim || y > maxDim || z > maxDim) {
        throw new RangeError(
          `Cannot run ${label}: workgroup counts must be at most maxComputeWorkgroupsPerDimension (${maxDim}), got [${x}, ${y}, ${z}]`,
        );
      }
      if (x === 0 || y === 0 || z === 0) continue;
      if (pass === undefined) pass = enc.beginComputePass(this.#passDescriptor(label));
      const bindGroup = this.device.createBindGroup({
        label: `longctx ${label}`,
        layout: c.pipeline.getBindGroupLayout(0),
        entries: c.bindings.map((b, i) => ({
          binding: i,
          resource: "buffer" in b ? b : { buffer: b },
        })),
      });
      pass.setPipeline(c.pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(x, y, z);
    }
    pass?.end();
    this.device.queue.submit([enc.finish()]);
    for (const b of options.release ?? []) this.pool.release(b);
  }

  #passDescriptor(label: string): GPUComputePassDescriptor {
    const p = this.#profiling;
    if (p === undefined || this.#querySet === undefined || p.count + 2 > 2 * MAX_TIMED_PASSES) {
      return { label: `longctx ${label}` };
    }
    const begin = p.count;
    p.count += 2;
    return {
      label: `longctx ${label}`,
      timestampWrites: {
        querySet: this.#querySet,
        beginningOfPassWriteIndex: begin,
        endOfPassWriteIndex: begin + 1,
      },
    };
  }

  /**
   * Copies `byteLength` bytes at `byteOffset` of `buffer` (`COPY_SRC`) back to
   * the host, after all submitted work.
   *
   * @param buffer Source buffer.
   * @param byteOffset First byte.
   * @param byteLength Bytes to read.
   * @returns A new `ArrayBuffer` of `byteLength` bytes.
   * @throws {GpuDeviceLostError} If the device is lost.
   */
  async read(buffer: GPUBuffer, byteOffset: number, byteLength: number): Promise<ArrayBuffer> {
    this.checkAlive("read GPU buffer");
    if (byteLength === 0) return new ArrayBuffer(0);
    const start = byteOffset & ~3;
    const end = Math.min(buffer.size, (byteOffset + byteLength + 3) & ~3);
    const staging = this.pool.acquire(
      end - start,
      GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      "longctx staging",
    );
    const enc = this.device.createCommandEncoder({ label: "longctx read" });
    enc.copyBufferToBuffer(buffer, start, staging, 0, end - start);
    this.device.queue.submit([enc.finish()]);
    try {
      await staging.mapAsync(GPUMapMode.READ, 0, end - start);
    } catch (e) {
      this.checkAlive("read GPU buffer");
      throw e;
    }
    const out = staging.getMappedRange(0, end - start).slice(
      byteOffset - start,
      byteOffset - start + byteLength,
    );
    staging.unmap();
    this.pool.release(staging);
    return out;
  }

  /**
   * Waits for submitted work, then throws if the device reported errors since
   * the last call (validation errors, shader compile errors, out-of-memory).
   *
   * @throws {GpuValidationError} With the collected messages.
   * @throws {GpuDeviceLostError} If the device is lost.
   */
  async checkErrors(): Promise<void> {
    this.checkAlive("check GPU errors");
    await this.device.queue.onSubmittedWorkDone();
    // Uncaptured-error events are delivered as tasks; let them arrive.
    await new Promise((r) => setTimeout(r, 0));
    if (this.#errors.length > 0) {
      const messages = this.#errors;
      this.#errors = [];
      throw new GpuValidationError(messages);
    }
  }

  /**
   * Runs `fn`, timing every compute pass it submits with timestamp queries.
   * Profiling calls do not nest.
   *
   * @param fn Work that submits GPU commands (may be async).
   * @returns `fn`'s result with the summed GPU time of its passes
   *   (`gpuNs` is `undefined` without `timestamp-query`).
   * @throws {GpuDeviceLostError} If the device is lost.
   */
  async profile<T>(fn: () => T | Promise<T>): Promise<GpuProfile<T>> {
    this.checkAlive("profile GPU work");
    if (!this.features.timestampQuery) {
      const result = await fn();
      await this.device.queue.onSubmittedWorkDone();
      return { result, gpuNs: undefined, passes: 0 };
    }
    this.#querySet ??= this.device.createQuerySet({
      label: "longctx timestamps",
      type: "timestamp",
      count: 2 * MAX_TIMED_PASSES,
    });
    const state = { count: 0 };
    this.#profiling = state;
    let result: T;
    try {
      result = await fn();
    } finally {
      this.#profiling = undefined;
    }
    if (state.count === 0) return { result, gpuNs: 0, passes: 0 };
    const bytes = state.count * 8;
    const resolve = this.pool.acquire(
      bytes,
      GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      "longctx timestamps",
    );
    const enc = this.device.createCommandEncoder({ label: "longctx resolve timestamps" });
    enc.resolveQuerySet(this.#querySet, 0, state.count, resolve, 0);
    this.device.queue.submit([enc.finish()]);
    const ticks = new BigUint64Array(await this.read(resolve, 0, bytes));
    this.pool.release(resolve);
    let ns = 0;
    for (let i = 0; i < state.count; i += 2) {
      const d = Number(ticks[i + 1]! - ticks[i]!);
      if (d > 0) ns += d;
    }
    return { result, gpuNs: ns, passes: state.count / 2 };
  }

  /** Destroys the pool's free buffers and the device; later calls throw {@linkcode GpuDeviceLostError}. */
  destroy(): void {
    if (this.#lost !== undefined) return;
    this.pool.trim();
    this.#querySet?.destroy();
    this.#lost = { reason: "destroyed", message: "GpuContext.destroy() was called" };
    this.device.destroy();
  }
}

/**
 * `GPUBufferUsage.STORAGE | COPY_SRC | COPY_DST` (`0x8c`): the usage of every
 * storage buffer the runtime creates. Spelled as a number so that importing
 * this module needs no WebGPU globals.
 */
export const STORAGE_USAGE: number = 0x80 | 0x4 | 0x8;

function pipelineKey(kernel: string, config: KernelConfig): string {
  const entries = Object.keys(config).sort().map((k) => `${k}=${config[k]}`);
  return `${kernel}{${entries.join(",")}}`;
}

function summarize(adapter: GPUAdapter): GpuAdapterSummary {
  const info = adapter.info ?? ({} as GPUAdapterInfo);
  const text = (v: unknown): string => (v === undefined || v === null ? "" : String(v));
  const vendor = text(info.vendor), architecture = text(info.architecture);
  const device = text(info.device), description = text(info.description);
  const fallback = Boolean(
    (info as { isFallbackAdapter?: boolean }).isFallbackAdapter ??
      (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter,
  );
  return {
    vendor,
    architecture,
    device,
    description,
    software: fallback ||
      SOFTWARE_ADAPTER.test(`${vendor} ${architecture} ${device} ${description}`),
  };
}

function providerOf(options: RequestGpuOptions): GpuProvider | string {
  if (options.provider !== undefined) return options.provider;
  const nav = (globalThis as { navigator?: { gpu?: GpuProvider } }).navigator;
  if (nav?.gpu === undefined) {
    return 'navigator.gpu is undefined (in Deno, run with --unstable-webgpu or set "unstable": ["webgpu"])';
  }
  return nav.gpu;
}

async function requestAdapter(
  options: RequestGpuOptions,
): Promise<{ adapter: GPUAdapter; summary: GpuAdapterSummary } | string> {
  const provider = providerOf(options);
  if (typeof provider === "string") return provider;
  let adapter: GPUAdapter | null;
  try {
    adapter = await provider.requestAdapter({
      powerPreference: options.powerPreference ?? "high-performance",
    });
  } catch (e) {
    return `requestAdapter() failed: ${e instanceof Error ? e.message : describeValue(e)}`;
  }
  if (adapter === null || adapter === undefined) {
    return "requestAdapter() returned no adapter (no GPU driver, or no Vulkan/Metal/D3D12 ICD)";
  }
  return { adapter, summary: summarize(adapter) };
}

async function openDevice(
  adapter: GPUAdapter,
  summary: GpuAdapterSummary,
  options: RequestGpuOptions,
): Promise<GpuContext | string> {
  const f = options.features ?? {};
  const wanted: GPUFeatureName[] = [];
  if (f.shaderF16 !== false) wanted.push("shader-f16");
  if (f.timestampQuery !== false) wanted.push("timestamp-query");
  if (f.subgroups !== false) wanted.push("subgroups" as GPUFeatureName);
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  const requiredLimits: Record<string, number> = {};
  if ((options.limits ?? "adapter") === "adapter") {
    for (const name of RAISED_LIMITS) {
      const v = (adapter.limits as unknown as Record<string, number | undefined>)[name];
      if (typeof v === "number") requiredLimits[name] = v;
    }
  }
  try {
    const device = await adapter.requestDevice({
      label: options.label ?? "longctx",
      requiredFeatures,
      requiredLimits,
    });
    return new GpuContext(device, summary);
  } catch (e) {
    return `requestDevice() failed: ${e instanceof Error ? e.message : describeValue(e)}`;
  }
}

/**
 * Acquires a WebGPU device: requests the adapter (high-performance), enables
 * `shader-f16`, `timestamp-query` and `subgroups` where offered, and raises
 * the limits the kernels use to the adapter's maxima.
 *
 * @param options Power preference, limits policy, adapter provider, label.
 * @returns A ready {@linkcode GpuContext}.
 * @throws {WebGpuUnavailableError} With the reason when there is no
 *   `navigator.gpu`, no adapter, or the device request fails.
 *
 * @example Require a GPU, or say why there is none
 * ```ts
 * import { requestGpu, WebGpuUnavailableError } from "@longctx/longctx/gpu";
 * import assert from "node:assert/strict";
 * try {
 *   const gpu = await requestGpu();
 *   console.log(gpu.adapter.description, gpu.features, gpu.limits.maxStorageBufferBindingSize);
 *   assert.ok(gpu.limits.maxStorageBufferBindingSize >= 128 << 20); // WebGPU's default minimum
 *   gpu.destroy();
 *   assert.equal(gpu.lost?.reason, "destroyed");
 * } catch (e) {
 *   assert.ok(e instanceof WebGpuUnavailableError, String(e));
 *   console.log("no GPU:", e.message);
 * }
 * ```
 */
export async function requestGpu(options: RequestGpuOptions = {}): Promise<GpuContext> {
  const r = await tryRequestGpu(options);
  if (r.gpu === undefined) throw new WebGpuUnavailableError(`Cannot request GPU: ${r.reason}`);
  return r.gpu;
}

/** Result of {@linkcode tryRequestGpu}: a context, or why there is none. */
export type GpuProbe =
  | { readonly gpu: GpuContext; readonly reason: string }
  | { readonly gpu: undefined; readonly reason: string };

/**
 * {@linkcode requestGpu} that never throws: no WebGPU is a normal outcome.
 *
 * @param options As {@linkcode requestGpu}.
 * @returns `{ gpu, reason }`; `gpu` is `undefined` when unavailable and
 *   `reason` says why (or names the adapter when available).
 *
 * @example Skip GPU work when there is none
 * ```ts
 * import { tryRequestGpu } from "@longctx/longctx/gpu";
 * import assert from "node:assert/strict";
 * const none = await tryRequestGpu({ provider: { requestAdapter: () => Promise.resolve(null) } });
 * assert.equal(none.gpu, undefined);
 * assert.match(none.reason, /no adapter/);
 * ```
 */
export async function tryRequestGpu(options: RequestGpuOptions = {}): Promise<GpuProbe> {
  const a = await requestAdapter(options);
  if (typeof a === "string") return { gpu: undefined, reason: a };
  const gpu = await openDevice(a.adapter, a.summary, options);
  if (typeof gpu === "string") return { gpu: undefined, reason: gpu };
  return { gpu, reason: `adapter ${describeAdapter(a.summary)}` };
}

/**
 * One line naming an adapter, marked `(software)` for software rasterisers.
 *
 * @param a An adapter summary (e.g. `gpu.adapter`).
 * @returns E.g. `"llvmpipe (LLVM 15.0.6, 256 bits) [vendor 65541] (software)"`.
 */
export function describeAdapter(a: GpuAdapterSummary): string {
  const name = a.description || a.device || a.architecture || "unnamed adapter";
  const vendor = a.vendor ? ` [vendor ${a.vendor}]` : "";
  return `${name}${vendor}${a.software ? " (software)" : ""}`;
}

/** Where attention runs. See the module doc for `"auto"`'s rule. */
export type Backend = "auto" | "cpu" | "webgpu";

/** Options of {@linkcode chooseBackend}. */
export interface ChooseBackendOptions {
  /** Requested backend. @default {"auto"} */
  backend?: Backend;
  /** Multiply-adds of the problem (e.g. `2 · queryTokens · keyTokens · heads · headDim`). @default {Infinity} */
  work?: number;
  /** `"auto"` keeps problems below this on the CPU. @default {GPU_MIN_WORK} */
  minWork?: number;
  /** Let `"auto"` use a software adapter (lavapipe, SwiftShader). @default {false} */
  allowSoftware?: boolean;
  /** A context to use instead of requesting one (it is never destroyed here). */
  gpu?: GpuContext;
  /** Options for requesting a device when `gpu` is not given. */
  request?: RequestGpuOptions;
}

/** The outcome of {@linkcode chooseBackend}. */
export interface BackendChoice {
  /** Where to run. */
  readonly backend: "cpu" | "webgpu";
  /** The device to use when `backend` is `"webgpu"`, else `undefined`. */
  readonly gpu: GpuContext | undefined;
  /** Why, in one line (print it: "auto" must say which it chose). */
  readonly reason: string;
}

/**
 * Resolves `backend: "auto" | "cpu" | "webgpu"` to a concrete backend by the
 * rule in the module doc.
 *
 * @param options Requested backend, problem size, software policy, device.
 * @returns The choice and its reason.
 * @throws {WebGpuUnavailableError} Only for `backend: "webgpu"` without a usable device.
 * @throws {TypeError} If `backend` is not one of the three names.
 *
 * @example No adapter is a normal outcome for "auto"
 * ```ts
 * import { chooseBackend } from "@longctx/longctx/gpu";
 * import assert from "node:assert/strict";
 * const none = { requestAdapter: () => Promise.resolve(null) };
 * const c = await chooseBackend({ backend: "auto", request: { provider: none } });
 * assert.equal(c.backend, "cpu");
 * assert.match(c.reason, /no adapter/);
 * const small = await chooseBackend({ work: 100 });
 * assert.equal(small.backend, "cpu");
 * ```
 */
export async function chooseBackend(options: ChooseBackendOptions = {}): Promise<BackendChoice> {
  const backend = options.backend ?? "auto";
  if (backend === "cpu") {
    return { backend: "cpu", gpu: undefined, reason: 'backend "cpu" requested' };
  }
  if (backend !== "webgpu" && backend !== "auto") {
    throw new TypeError(
      `Cannot choose backend: backend must be one of "auto", "cpu", "webgpu", got ${
        describeValue(backend)
      }`,
    );
  }
  const given = options.gpu;
  if (backend === "webgpu") {
    if (given !== undefined) {
      if (given.lost !== undefined) {
        throw new WebGpuUnavailableError(
          `Cannot choose backend "webgpu": the given device was lost (${given.lost.reason})`,
        );
      }
      return { backend: "webgpu", gpu: given, reason: `backend "webgpu" requested` };
    }
    const gpu = await requestGpu(options.request);
    return {
      backend: "webgpu",
      gpu,
      reason: `backend "webgpu" requested: ${describeAdapter(gpu.adapter)}`,
    };
  }
  const work = options.work ?? Infinity;
  const minWork = options.minWork ?? GPU_MIN_WORK;
  if (work < minWork) {
    return {
      backend: "cpu",
      gpu: undefined,
      reason: `auto: ${work} multiply-adds is below minWork ${minWork}`,
    };
  }
  if (given !== undefined) {
    if (given.lost !== undefined) {
      return {
        backend: "cpu",
        gpu: undefined,
        reason: `auto: the GPU device was lost (${given.lost.reason})`,
      };
    }
    if (given.adapter.software && !options.allowSoftware) {
      return {
        backend: "cpu",
        gpu: undefined,
        reason: `auto: ${describeAdapter(given.adapter)} is slower than the CPU reference`,
      };
    }
    return { backend: "webgpu", gpu: given, reason: `auto: ${describeAdapter(given.adapter)}` };
  }
  const request = options.request ?? {};
  const a = await requestAdapter(request);
  if (typeof a === "string") return { backend: "cpu", gpu: undefined, reason: `auto: ${a}` };
  if (a.summary.software && !options.allowSoftware) {
    return {
      backend: "cpu",
      gpu: undefined,
      reason: `auto: ${describeAdapter(a.summary)} is slower than the CPU reference`,
    };
  }
  const gpu = await openDevice(a.adapter, a.summary, request);
  if (typeof gpu === "string") return { backend: "cpu", gpu: undefined, reason: `auto: ${gpu}` };
  return { backend: "webgpu", gpu, reason: `auto: ${describeAdapter(gpu.adapter)}` };
}
