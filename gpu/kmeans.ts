// Copyright 2026 the longctx authors. MIT license.

/**
 * The k-means steps on WebGPU: the assignment step of Lloyd's algorithm
 * (every point to its nearest centroid, in the geometry of
 * `attention/kmeans.ts`, lowest index on exact ties) and, optionally, the
 * per-cluster sums and counts the update step needs.
 *
 * | piece | export |
 * | --- | --- |
 * | assignment (+ update sums) | {@linkcode kmeansAssignWebGpu} |
 *
 * @module
 */

import type { KmeansGeometry } from "../attention/kmeans.ts";
import { describeValue, requireOneOf } from "../tensor/validate.ts";
import { type GpuContext, STORAGE_USAGE } from "./device.ts";
import { createGpuTensor, type GpuTensor, requireContiguous } from "./tensor.ts";
import { requireBindable, storageOf } from "./_kernel.ts";
import { grid2d } from "./_wgsl/common.ts";
import {
  KMEANS_ASSIGN_PARAMS,
  KMEANS_SUMS_PARAMS,
  kmeansAssignTile,
  kmeansAssignWgsl,
  kmeansSumsWgsl,
} from "./_wgsl/kmeans.ts";

/** Threads per workgroup (points per workgroup) of the assignment kernel. */
const ASSIGN_WORKGROUP = 64;
/** Threads per workgroup (elements per workgroup) of the sums kernel. */
const SUMS_WORKGROUP = 64;
/** Workgroup-memory budget of the centroid tile. */
const WORKGROUP_BUDGET = 16384;
/** Largest head dimension the assignment kernel tiles (one centroid row fits the budget). */
export const MAX_KMEANS_HEAD_DIM: number = WORKGROUP_BUDGET / 4;

/** Options of {@linkcode kmeansAssignWebGpu}. */
export interface KmeansAssignWebGpuOptions {
  /**
   * `"cosine"`: points are scaled to unit length (a zero point stays zero)
   * and compared with the centroids by squared Euclidean distance — the
   * assignment step `kmeans` runs on its internal centres; `"euclidean"`:
   * raw points. @default {"cosine"}
   */
  geometry?: KmeansGeometry;
  /**
   * Also scale each centroid to unit length (on the GPU, the input is not
   * changed). With unit points and unit centroids the nearest centroid is the
   * one of largest cosine similarity, so this assigns by
   * `max ⟨x/|x|, c/|c|⟩` — e.g. new keys to the raw-mean centroids
   * `kmeans` reports. @default {false}
   */
  normalizeCentroids?: boolean;
  /** Also compute the per-cluster sums and counts of the update step. @default {false} */
  sums?: boolean;
}

/** Result of {@linkcode kmeansAssignWebGpu}: GPU tensors from the pool (release them when done). */
export interface KmeansAssignWebGpuResult {
  /** Nearest centroid of each point, i32 `[n]`. */
  readonly assignments: GpuTensor<"i32">;
  /** Squared distance of each (scaled) point to that centroid, f32 `[n]`. */
  readonly distances: GpuTensor<"f32">;
  /**
   * With `sums`: per cluster the sum of its points as compared (unit length
   * for `"cosine"`), f32 `[clusters, headDim]`, summed in ascending point
   * order in f32. The update step's centre is `sums[c] / counts[c]`.
   */
  readonly sums?: GpuTensor<"f32">;
  /** With `sums`: points per cluster, i32 `[clusters]`. */
  readonly counts?: GpuTensor<"i32">;
}

/**
 * The assignment step of k-means on the GPU: for each of `n` points the
 * centroid `c` minimising `Σ_e (x_e − c_e)²`, where `x` is the point scaled to
 * unit length (`"cosine"`, as `kmeans` prepares it) or the raw point
 * (`"euclidean"`), and `c` the centroid as given (or scaled to unit length
 * with `normalizeCentroids`). Centroids are scanned in ascending index with a
 * strict comparison, so an exact tie goes to the lowest index, as the CPU
 * reference does. Distances are accumulated in f32 (the CPU reference ranks
 * by `|c|² − 2⟨x, c⟩` in f64), so two centroids whose distances differ by
 * less than about `1e-6` relative may be ranked differently.
 *
 * One thread per point; the centroids stream through workgroup memory in
 * tiles of up to 32 shared by 64 points, and each thread reads its point once
 * per tile, 16 elements at a time. With `sums`, a second kernel sums the
 * points of each cluster (one workgroup per cluster and 64 elements, members
 * found by a prefix sum over the labels and added in point order, so the
 * result is deterministic) and counts them.
 *
 * | cost (n points, C centroids, d dims) | |
 * | --- | --- |
 * | assignment | O(n · C · d) on the GPU; each centroid read once per 64 points, each point once per 32 centroids |
 * | sums | O(n · C · ⌈d/64⌉) label reads (64 at a time) + O(n · d) point reads |
 * | allocation | the results (`4n` bytes twice, plus `4n` scratch and `4C(d + 1)` with sums) |
 *
 * @param gpu The context.
 * @param points Points, contiguous `[n, headDim]`, f32 or f16.
 * @param centroids Centroids, contiguous `[clusters, headDim]`, f32 or f16.
 * @param options Geometry, centroid scaling, sums.
 * @returns Assignments and distances (and sums, counts), on the GPU.
 * @throws {TypeError} On shape or dtype mismatches or an unknown geometry.
 * @throws {RangeError} If there are no centroids or `headDim` exceeds {@linkcode MAX_KMEANS_HEAD_DIM}.
 * @throws {GpuDeviceLostError} If the device is lost.
 *
 * @example Assign 200 keys to 8 centroids (skipped without a GPU)
 * ```ts
 * import { download, kmeansAssignWebGpu, tryRequestGpu, upload } from "@longctx/longctx/gpu";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const p = randn([200, 16], { seed: 1 }), c = randn([8, 16], { seed: 2 });
 *   const r = kmeansAssignWebGpu(gpu, upload(gpu, p), upload(gpu, c), { geometry: "euclidean", sums: true });
 *   const labels = (await download(gpu, r.assignments)).data; // Int32Array [200]
 *   const counts = (await download(gpu, r.counts!)).data; // Int32Array [8]
 *   assert.equal(counts.reduce((a, b) => a + b, 0), 200);
 *   const d2 = (i: number, j: number): number => {
 *     let s = 0;
 *     for (let e = 0; e < 16; e++) s += (p.data[i * 16 + e] - c.data[j * 16 + e]) ** 2;
 *     return s;
 *   };
 *   labels.forEach((l, i) => { // the nearest centroid (up to f32 rounding)
 *     for (let j = 0; j < 8; j++) assert.ok(d2(i, l) <= d2(i, j) + 1e-4);
 *   });
 *   gpu.destroy();
 * }
 * ```
 */
export function kmeansAssignWebGpu(
  gpu: GpuContext,
  points: GpuTensor,
  centroids: GpuTensor,
  options: KmeansAssignWebGpuOptions = {},
): KmeansAssignWebGpuResult {
  const action = "assign k-means clusters on GPU";
  if (options === null || typeof options !== "object") {
    throw new TypeError(
      `Cannot ${action}: options must be an object, got ${describeValue(options)}`,
    );
  }
  const geometry = requireOneOf(
    action,
    "geometry",
    options.geometry ?? "cosine",
    [
      "cosine",
      "euclidean",
    ] as const,
  );
  const normalizeCentroids = options.normalizeCentroids ?? false;
  const wantSums = options.sums ?? false;
  for (const [name, v] of [["normalizeCentroids", normalizeCentroids], ["sums", wantSums]]) {
    if (typeof v !== "boolean") {
      throw new TypeError(`Cannot ${action}: ${name} must be a boolean, got ${describeValue(v)}`);
    }
  }
  requireMatrix(action, "points", points);
  requireMatrix(action, "centroids", centroids);
  requireBindable(gpu, action, "points", points.buffer);
  requireBindable(gpu, action, "centroids", centroids.buffer);
  const [n, d] = points.shape as [number, number];
  const [k, dc] = centroids.shape as [number, number];
  if (dc !== d) {
    throw new TypeError(
      `Cannot ${action}: centroids headDim (${dc}) does not match points headDim (${d})`,
    );
  }
  if (k === 0) {
    throw new RangeError(`Cannot ${action}: centroids must hold at least one row, got 0`);
  }
  if (d === 0 || d > MAX_KMEANS_HEAD_DIM) {
    throw new RangeError(
      `Cannot ${action}: headDim must be in [1, ${MAX_KMEANS_HEAD_DIM}], got ${d}`,
    );
  }
  gpu.checkAlive(action);
  const assignments = createGpuTensor(gpu, "i32", [n]);
  const distances = createGpuTensor(gpu, "f32", [n]);
  const sums = wantSums ? createGpuTensor(gpu, "f32", [k, d]) : undefined;
  const counts = wantSums ? createGpuTensor(gpu, "i32", [k]) : undefined;
  const result: KmeansAssignWebGpuResult = {
    assignments,
    distances,
    ...(sums !== undefined && counts !== undefined ? { sums, counts } : {}),
  };
  if (n === 0) {
    if (sums !== undefined) {
      gpu.write(sums.buffer, 0, new Float32Array(k * d));
      gpu.write(counts!.buffer, 0, new Int32Array(k));
    }
    return result;
  }
  const inv = gpu.pool.acquire(Math.max(4 * n, 4), STORAGE_USAGE, "kmeans point scales");
  const maxPerDim = gpu.limits.maxComputeWorkgroupsPerDimension;
  const assign = gpu.pipeline("kmeans-assign", {
    headDim: d,
    workgroupSize: ASSIGN_WORKGROUP,
    tile: kmeansAssignTile(d, WORKGROUP_BUDGET),
    normalizePoints: geometry === "cosine",
    normalizeCentroids,
    points: storageOf(gpu, points.dtype),
    centroids: storageOf(gpu, centroids.dtype),
  }, kmeansAssignWgsl);
  const ua = gpu.uniform(KMEANS_ASSIGN_PARAMS.pack({
    n,
    clusters: k,
    pointBase: points.offset,
    centroidBase: centroids.offset,
  }));
  const commands = [{
    kind: "dispatch" as const,
    pipeline: assign,
    bindings: [ua, points.buffer, centroids.buffer, assignments.buffer, distances.buffer, inv],
    workgroups: grid2d(Math.ceil(n / ASSIGN_WORKGROUP), maxPerDim),
  }];
  const release = [ua, inv];
  if (sums !== undefined) {
    const dimBlocks = Math.ceil(d / SUMS_WORKGROUP);
    const sumPipe = gpu.pipeline("kmeans-sums", {
      workgroupSize: SUMS_WORKGROUP,
      points: storageOf(gpu, points.dtype),
    }, kmeansSumsWgsl);
    const us = gpu.uniform(KMEANS_SUMS_PARAMS.pack({
      n,
      clusters: k,
      headDim: d,
      pointBase: points.offset,
      dimBlocks,
      pad0: 0,
      pad1: 0,
      pad2: 0,
    }));
    commands.push({
      kind: "dispatch",
      pipeline: sumPipe,
      bindings: [us, points.buffer, assignments.buffer, inv, sums.buffer, counts!.buffer],
      workgroups: grid2d(k * dimBlocks, maxPerDim),
    });
    release.push(us);
  }
  gpu.submit("kmeans-assign", commands, { release });
  return result;
}

/** Checks a contiguous f32/f16 GPU tensor of shape `[rows, headDim]`. */
function requireMatrix(action: string, name: string, t: GpuTensor): void {
  requireContiguous(action, name, t);
  if (t.shape.length !== 2) {
    throw new TypeError(
      `Cannot ${action}: ${name} must have shape [rows, headDim], got shape ${
        describeValue(t.shape)
      }`,
    );
  }
  if (t.dtype !== "f32" && t.dtype !== "f16") {
    throw new TypeError(
      `Cannot ${action}: ${name} dtype must be "f32" or "f16", got ${describeValue(t.dtype)}`,
    );
  }
}
