// Copyright 2026 the longctx authors. MIT license.

/**
 * Squeezed Attention's online step on WebGPU: centroid scoring
 * ({@linkcode scoreKeysWebGpu}), the estimated softmax mass per cluster, the
 * kept clusters (threshold or top-k budget), their keys compacted into sorted
 * spans, and the exact attend over those keys ∪ the observation window ∪ the
 * dynamic tokens ({@linkcode sparseAttendWebGpu}) — the GPU path of
 * `squeezedAttention` (`attention/squeezed.ts`). The index is built offline
 * by the CPU reference (`buildSqueezedIndex`) and uploaded once per layer.
 *
 * | piece | export |
 * | --- | --- |
 * | index on the GPU | {@linkcode uploadSqueezedLayer}, {@linkcode releaseSqueezedLayer}, {@linkcode SqueezedGpuLayer} |
 * | estimated mass per cluster | {@linkcode squeezedMassWebGpu} |
 * | kept clusters → spans | {@linkcode squeezedSelectWebGpu} |
 * | lookup + attend | {@linkcode squeezedAttentionWebGpu} |
 *
 * Without `rope`, queries and keys are used as given (post-RoPE, as
 * `squeezedAttention` takes them). With `rope`, queries arrive raw: each is
 * rotated to its position for the lookup (the lookup scale gets
 * `attentionFactor²`) and the attend applies RoPE on read from a
 * `GpuKvStore` view — a decode step then equals an `AttentionPipeline` with a
 * `SqueezedAttention` selector (one selection per query token:
 * `share: "token"`). One- and two-level lookups both run on the GPU
 * (two-level: coarse clusters first, then only the fine clusters under the
 * kept ones, as the CPU reference).
 *
 * @module
 */

import type { AttendStats } from "../attention/sparse_attend.ts";
import type { HeadSelection, Selection } from "../attention/selection.ts";
import { unionSelections } from "../attention/selection.ts";
import { validateKeyClusters } from "../attention/kmeans.ts";
import { tensor } from "../tensor/tensor.ts";
import type { SqueezedIndex, SqueezedSelectionOptions } from "../attention/squeezed.ts";
import {
  describeValue,
  requireFinite,
  requireInt,
  requireNonNegativeInt,
  requireOneOf,
} from "../tensor/validate.ts";
import { type GpuContext, STORAGE_USAGE } from "./device.ts";
import type { GpuKvView } from "./kv_store.ts";
import { scoreKeysWebGpu } from "./score.ts";
import { type GpuRotary, sparseAttendWebGpu } from "./sparse_attend.ts";
import {
  createGpuTensor,
  download,
  type GpuAttentionState,
  type GpuTensor,
  releaseTensor,
  upload,
} from "./tensor.ts";
import { requireBindable, requireGpuThd, storageOf } from "./_kernel.ts";
import { grid2d } from "./_wgsl/common.ts";
import {
  SQUEEZED_KEEP_PARAMS,
  SQUEEZED_MASS_PARAMS,
  SQUEEZED_ROTATE_PARAMS,
  SQUEEZED_SPANS_PARAMS,
  SQUEEZED_WORKGROUP,
  squeezedKeepWgsl,
  squeezedMassWgsl,
  squeezedRotateWgsl,
  squeezedSpansWgsl,
} from "./_wgsl/squeezed.ts";

/**
 * One layer of a {@linkcode SqueezedIndex} on the GPU (fine level). Heads
 * with fewer clusters than the largest are padded with empty clusters (size
 * 0, zero centroid), which the lookup ignores as the CPU ignores empty ones.
 */
export interface SqueezedGpuLayer {
  /** Layer of the index. */
  readonly layer: number;
  /** KV heads. */
  readonly kvHeads: number;
  /** Elements per key. */
  readonly headDim: number;
  /** Clusters per head (the largest head's count). */
  readonly clusters: number;
  /** Clustered keys per head (`N − observationWindow`). */
  readonly clustered: number;
  /** Tokens of the fixed context `N`. */
  readonly fixedLength: number;
  /** The coarse level of a two-level index. */
  readonly coarse?: SqueezedGpuCoarse;
  /** Centroids, f32 `[clusters, kvHeads, headDim]` (the layout {@linkcode scoreKeysWebGpu} reads). */
  readonly centroids: GpuTensor<"f32">;
  /** Cluster sizes, i32 `[kvHeads, clusters]`. */
  readonly sizes: GpuTensor<"i32">;
  /** Cluster of each clustered key, i32 `[kvHeads, clustered]`. */
  readonly assignments: GpuTensor<"i32">;
}

/** The coarse level of a {@linkcode SqueezedGpuLayer} (padded like the fine level). */
export interface SqueezedGpuCoarse {
  /** Coarse clusters per head (the largest head's count). */
  readonly clusters: number;
  /** Coarse centroids, f32 `[clusters, kvHeads, headDim]`. */
  readonly centroids: GpuTensor<"f32">;
  /** Coarse sizes (keys per coarse cluster), i32 `[kvHeads, clusters]`. */
  readonly sizes: GpuTensor<"i32">;
  /** Coarse cluster of each fine cluster, i32 `[kvHeads, fineClusters]`. */
  readonly parent: GpuTensor<"i32">;
}

/**
 * Uploads one layer of a Squeezed index (validated first).
 *
 * | cost | |
 * | --- | --- |
 * | host | O(kvHeads · (C·d + clustered)) validation and packing |
 * | transfer | `4·kvHeads·(C·(d + 1) + clustered)` bytes |
 *
 * @param gpu The context.
 * @param index From `buildSqueezedIndex` or `loadSqueezedIndex`.
 * @param layer Layer to upload. @default {0}
 * @returns The layer's GPU tensors (release with {@linkcode releaseSqueezedLayer}).
 * @throws {TypeError} If the index is malformed.
 * @throws {RangeError} If `layer` is out of range.
 *
 * @example Upload layer 0 of an index (skipped without a GPU)
 * ```ts
 * import { download, releaseSqueezedLayer, tryRequestGpu, uploadSqueezedLayer } from "@longctx/longctx/gpu";
 * import { buildSqueezedIndex } from "@longctx/longctx/attention";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const index = buildSqueezedIndex([randn([200, 2, 16], { seed: 1 })], { observationWindow: 40 }); // 160 clustered keys
 *   const layer0 = uploadSqueezedLayer(gpu, index, 0);
 *   assert.deepEqual(layer0.centroids.shape, [layer0.clusters, 2, 16]);
 *   const sizes = (await download(gpu, layer0.sizes)).data; // [kvHeads, clusters]
 *   const head1 = index.heads[1].fine.sizes;
 *   assert.deepEqual([...sizes.subarray(layer0.clusters, layer0.clusters + head1.length)], [...head1]);
 *   releaseSqueezedLayer(gpu, layer0);
 *   gpu.destroy();
 * }
 * ```
 */
export function uploadSqueezedLayer(
  gpu: GpuContext,
  index: SqueezedIndex,
  layer = 0,
): SqueezedGpuLayer {
  const action = "upload Squeezed index layer";
  if (index === null || typeof index !== "object" || !Array.isArray(index.heads)) {
    throw new TypeError(
      `Cannot ${action}: index must be a SqueezedIndex, got ${describeValue(index)}`,
    );
  }
  requireNonNegativeInt(action, "layer", layer);
  const { kvHeads, headDim: d, clustered } = index;
  if (layer >= index.layers) {
    throw new RangeError(`Cannot ${action}: layer must be in [0, ${index.layers}), got ${layer}`);
  }
  if (index.heads.length !== index.layers * kvHeads) {
    throw new TypeError(
      `Cannot ${action}: index.heads must hold layers × kvHeads (${
        index.layers * kvHeads
      }) entries, got ${index.heads.length}`,
    );
  }
  let k = 1, ck = 1, withCoarse = 0;
  for (let kh = 0; kh < kvHeads; kh++) {
    const head = index.heads[layer * kvHeads + kh]!;
    validateKeyClusters(`${action} (layer ${layer}, kvHead ${kh})`, head, d, clustered);
    k = Math.max(k, head.fine.sizes.length);
    if (head.coarse !== undefined) {
      withCoarse++;
      ck = Math.max(ck, head.coarse.sizes.length);
    }
  }
  if (withCoarse !== 0 && withCoarse !== kvHeads) {
    throw new TypeError(
      `Cannot ${action}: either every KV head of layer ${layer} has a coarse level or none, got ${withCoarse} of ${kvHeads}`,
    );
  }
  const cent = new Float32Array(k * kvHeads * d);
  const sizes = new Int32Array(kvHeads * k);
  const assign = new Int32Array(Math.max(kvHeads * clustered, 1));
  for (let kh = 0; kh < kvHeads; kh++) {
    const fine = index.heads[layer * kvHeads + kh]!.fine;
    const kc = fine.sizes.length;
    for (let c = 0; c < kc; c++) {
      cent.set(fine.centroids.subarray(c * d, c * d + d), (c * kvHeads + kh) * d);
    }
    sizes.set(fine.sizes, kh * k);
    assign.set(fine.assignments, kh * clustered);
  }
  let coarse: SqueezedGpuCoarse | undefined;
  if (withCoarse > 0) {
    const cc = new Float32Array(ck * kvHeads * d);
    const cs = new Int32Array(kvHeads * ck);
    const parent = new Int32Array(kvHeads * k);
    for (let kh = 0; kh < kvHeads; kh++) {
      const co = index.heads[layer * kvHeads + kh]!.coarse!;
      for (let c = 0; c < co.sizes.length; c++) {
        cc.set(co.centroids.subarray(c * d, c * d + d), (c * kvHeads + kh) * d);
      }
      cs.set(co.sizes, kh * ck);
      parent.set(co.parent, kh * k);
    }
    coarse = {
      clusters: ck,
      centroids: upload(gpu, tensor(cc, [ck, kvHeads, d])) as GpuTensor<"f32">,
      sizes: upload(gpu, tensor(cs, [kvHeads, ck])) as GpuTensor<"i32">,
      parent: upload(gpu, tensor(parent, [kvHeads, k])) as GpuTensor<"i32">,
    };
  }
  return {
    layer,
    kvHeads,
    headDim: d,
    clusters: k,
    clustered,
    fixedLength: index.fixedLength,
    ...(coarse !== undefined ? { coarse } : {}),
    centroids: upload(gpu, tensor(cent, [k, kvHeads, d])) as GpuTensor<"f32">,
    sizes: upload(gpu, tensor(sizes, [kvHeads, k])) as GpuTensor<"i32">,
    assignments: upload(gpu, tensor(assign, [kvHeads, Math.max(clustered, 1)])) as GpuTensor<"i32">,
  };
}

/**
 * Gives a layer's buffers back to the pool.
 *
 * @param gpu The context.
 * @param layer From {@linkcode uploadSqueezedLayer}; not usable afterwards.
 */
export function releaseSqueezedLayer(gpu: GpuContext, layer: SqueezedGpuLayer): void {
  releaseTensor(gpu, layer.centroids);
  releaseTensor(gpu, layer.sizes);
  releaseTensor(gpu, layer.assignments);
  if (layer.coarse !== undefined) {
    releaseTensor(gpu, layer.coarse.centroids);
    releaseTensor(gpu, layer.coarse.sizes);
    releaseTensor(gpu, layer.coarse.parent);
  }
}

/** Options of {@linkcode squeezedMassWebGpu}. */
export interface SqueezedMassWebGpuOptions {
  /** Multiplies q·centroid. @default {1 / Math.sqrt(headDim)} */
  scale?: number;
  /** `"kv-head"`: one unit per KV head (its group's rows averaged); `"query-head"`: one per query head. @default {"kv-head"} */
  gqa?: "kv-head" | "query-head";
  /** `"call"`: one unit per head for all query tokens (averaged); `"token"`: per query token. @default {"call"} */
  share?: "call" | "token";
}

/** How query rows form units (see {@linkcode SqueezedGpuSelection}). */
interface UnitPlan {
  units: number;
  rowsPerUnit: number;
  tokensPerUnit: number;
  unitsPerToken: number;
  heads: number;
  group: number;
  tq: number;
}

function planUnits(
  action: string,
  layer: SqueezedGpuLayer,
  query: GpuTensor,
  gqa: unknown,
  share: unknown,
): UnitPlan {
  requireGpuThd(action, "query", query);
  const [tq, heads, d] = query.shape as [number, number, number];
  if (d !== layer.headDim || heads % layer.kvHeads !== 0) {
    throw new TypeError(
      `Cannot ${action}: query [${tq}, ${heads}, ${d}] does not fit the index (kvHeads ${layer.kvHeads}, headDim ${layer.headDim})`,
    );
  }
  const g = requireOneOf(action, "gqa", gqa ?? "kv-head", ["kv-head", "query-head"] as const);
  const s = requireOneOf(action, "share", share ?? "call", ["call", "token"] as const);
  const group = heads / layer.kvHeads;
  const rowsPerUnit = g === "kv-head" ? group : 1;
  const tokensPerUnit = s === "call" ? tq : 1;
  const unitsPerToken = heads / rowsPerUnit;
  const units = (tokensPerUnit === 0 ? 0 : tq / tokensPerUnit) * unitsPerToken;
  return { units, rowsPerUnit, tokensPerUnit, unitsPerToken, heads, group, tq };
}

function unitFields(p: UnitPlan, clusters: number, coarseClusters: number): Record<string, number> {
  return {
    units: p.units,
    clusters,
    heads: p.heads,
    group: p.group,
    rowsPerUnit: p.rowsPerUnit,
    unitsPerToken: p.unitsPerToken,
    tokensPerUnit: p.tokensPerUnit,
    coarseClusters,
  };
}

/** One level of clusters as the lookup kernels read it. */
interface Level {
  clusters: number;
  centroids: GpuTensor;
  sizes: GPUBuffer;
}

/** Level 2 of a two-level lookup: the candidates are the children of the kept coarse clusters. */
interface Candidates {
  parent: GPUBuffer;
  coarseKeep: GPUBuffer;
  coarseClusters: number;
}

/** Scores a level's centroids and computes the mass tensor `[units, clusters]`. */
function massOf(
  gpu: GpuContext,
  level: Level,
  query: GpuTensor,
  plan: UnitPlan,
  scale: number,
  cand?: Candidates,
): GpuTensor<"f32"> {
  const logits = scoreKeysWebGpu(gpu, { query, keys: level.centroids }, { scale });
  const mass = createGpuTensor(gpu, "f32", [plan.units, level.clusters]);
  if (plan.units === 0) {
    releaseTensor(gpu, logits);
    return mass;
  }
  const pipeline = gpu.pipeline("squeezed-mass", { masked: cand !== undefined }, squeezedMassWgsl);
  const u = gpu.uniform(
    SQUEEZED_MASS_PARAMS.pack(unitFields(plan, level.clusters, cand?.coarseClusters ?? 0)),
  );
  const bindings = [u, logits.buffer, level.sizes, mass.buffer];
  if (cand !== undefined) bindings.push(cand.parent, cand.coarseKeep);
  gpu.submit("squeezed-mass", [{
    kind: "dispatch",
    pipeline,
    bindings,
    workgroups: grid2d(plan.units, gpu.limits.maxComputeWorkgroupsPerDimension),
  }], { release: [u, logits.buffer] });
  return mass;
}

/** The keep mask u32 `[units, clusters]` of one level (a pooled buffer; `mass` is released). */
function keepOf(
  gpu: GpuContext,
  level: Level,
  mass: GpuTensor<"f32">,
  plan: UnitPlan,
  rule: { mode: 0 | 1 | 2; threshold: number; budgetKeys: number },
  cand?: Candidates,
): GPUBuffer {
  const keep = gpu.pool.acquire(4 * plan.units * level.clusters, STORAGE_USAGE, "squeezed keep");
  const u = gpu.uniform(SQUEEZED_KEEP_PARAMS.pack({
    ...unitFields(plan, level.clusters, cand?.coarseClusters ?? 0),
    mode: rule.mode,
    threshold: rule.mode === 0 ? rule.threshold : 0,
    budgetKeys: rule.budgetKeys,
  }));
  const bindings = [u, mass.buffer, level.sizes, keep];
  if (cand !== undefined) bindings.push(cand.parent, cand.coarseKeep);
  gpu.submit("squeezed-keep", [{
    kind: "dispatch",
    pipeline: gpu.pipeline("squeezed-keep", { masked: cand !== undefined }, squeezedKeepWgsl),
    bindings,
    workgroups: grid2d(
      Math.ceil(plan.units * level.clusters / SQUEEZED_WORKGROUP),
      gpu.limits.maxComputeWorkgroupsPerDimension,
    ),
  }], { release: [u, mass.buffer] });
  return keep;
}

function checkLayer(action: string, gpu: GpuContext, layer: SqueezedGpuLayer): void {
  if (layer === null || typeof layer !== "object" || layer.centroids?.buffer === undefined) {
    throw new TypeError(
      `Cannot ${action}: layer must come from uploadSqueezedLayer, got ${describeValue(layer)}`,
    );
  }
  requireBindable(gpu, action, "centroids", layer.centroids.buffer);
  requireBindable(gpu, action, "assignments", layer.assignments.buffer);
}

/**
 * The estimated per-key softmax probability of every fine cluster, averaged
 * over each unit's query rows, on the GPU — `centroidLookup` on the fine
 * level (every cluster a candidate) for every unit at once: centroid logits `u_c = scale · ⟨q, centroid_c⟩`
 * ({@linkcode scoreKeysWebGpu}), then per row
 * `p̂_c = exp(u_c − max) / Σ_c' n_c' · exp(u_c' − max)` over the non-empty
 * clusters, averaged over the unit's rows, in f32 (the CPU reference: f64).
 *
 * Unit `u` covers query tokens `⌊u / unitsPerToken⌋ · tokensPerUnit …` and
 * query heads `(u mod unitsPerToken) · rowsPerUnit …`, where `rowsPerUnit` is
 * the group size (`"kv-head"`) or 1, and `tokensPerUnit` is all query tokens
 * (`share: "call"`) or 1.
 *
 * | cost | |
 * | --- | --- |
 * | scoring | O(queryTokens · heads · C · d) |
 * | mass | O(queryTokens · heads · C), one workgroup per unit |
 *
 * @param gpu The context.
 * @param layer The index layer ({@linkcode uploadSqueezedLayer}).
 * @param query Queries (post-RoPE when the keys are), contiguous `[queryTokens, heads, headDim]`, f32 or f16.
 * @param options Scale, GQA mode, sharing.
 * @returns f32 `[units, clusters]` on the GPU (pooled).
 * @throws {TypeError} If the query does not fit the index or an option is unknown.
 * @throws {RangeError} If `scale` is not finite.
 *
 * @example The CPU lookup `centroidLookup`, per head (skipped without a GPU)
 * ```ts
 * import { download, squeezedMassWebGpu, tryRequestGpu, upload, uploadSqueezedLayer } from "@longctx/longctx/gpu";
 * import { buildSqueezedIndex, centroidLookup } from "@longctx/longctx/attention";
 * import { randn, selectAxis, sliceAxis } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const index = buildSqueezedIndex([randn([200, 2, 16], { seed: 1 })], { observationWindow: 40 });
 *   const q = randn([1, 2, 16], { seed: 2 }); // MHA, one query token: one unit per head
 *   const layer = uploadSqueezedLayer(gpu, index);
 *   const mass = await download(gpu, squeezedMassWebGpu(gpu, layer, upload(gpu, q))); // [units, clusters]
 *   for (let h = 0; h < 2; h++) {
 *     const want = centroidLookup(index.heads[h].fine, sliceAxis(selectAxis(q, 0, 0), 0, h, h + 1));
 *     want.forEach((p, c) => assert.ok(Math.abs(mass.data[h * layer.clusters + c] - p) <= 1e-4 * p + 1e-9));
 *   }
 *   gpu.destroy();
 * }
 * ```
 */
export function squeezedMassWebGpu(
  gpu: GpuContext,
  layer: SqueezedGpuLayer,
  query: GpuTensor,
  options: SqueezedMassWebGpuOptions = {},
): GpuTensor<"f32"> {
  const action = "estimate Squeezed cluster mass on GPU";
  checkLayer(action, gpu, layer);
  const plan = planUnits(action, layer, query, options.gqa, options.share);
  const scale = options.scale === undefined
    ? 1 / Math.sqrt(layer.headDim)
    : requireFinite(action, "scale", options.scale);
  gpu.checkAlive(action);
  return massOf(
    gpu,
    { clusters: layer.clusters, centroids: layer.centroids, sizes: layer.sizes.buffer },
    query,
    plan,
    scale,
  );
}

/** Options of {@linkcode squeezedSelectWebGpu}. */
export interface SqueezedSelectWebGpuOptions extends SqueezedSelectionOptions {
  /** `"call"`: one key set per head for all query tokens; `"token"`: per token. @default {"call"} */
  share?: "call" | "token";
  /**
   * Queries arrive raw (pre-RoPE): each is rotated to its position before the
   * lookup (float64 angles), and the lookup scale gets `attentionFactor²`, as
   * the `SqueezedAttention` selector does. A `Rope` works.
   * @default {undefined} (queries used as given)
   */
  rope?: GpuRotary;
  /**
   * Original position of each query token, `[queryTokens]` (with `rope`).
   * @default {keyTokens − queryTokens + t in squeezedAttentionWebGpu; required by squeezedSelectWebGpu with rope}
   */
  queryPositions?: ArrayLike<number>;
}

/** Result of {@linkcode squeezedSelectWebGpu}. */
export interface SqueezedGpuSelection {
  /** Selections: `units = (queryTokens / tokensPerUnit) · (heads / rowsPerUnit)`. */
  readonly units: number;
  /** Query heads per unit (the GQA group, or 1). */
  readonly rowsPerUnit: number;
  /** Query tokens per unit (all, or 1). */
  readonly tokensPerUnit: number;
  /**
   * Kept clustered keys of each unit as sorted `[start, end)` spans of cache
   * indices in `[0, clustered)`, `[units]`.
   */
  readonly spans: readonly Int32Array[];
  /** Clustered keys kept per unit, `[units]`. */
  readonly keysKept: Int32Array;
}

interface Resolved {
  mode: 0 | 1 | 2;
  threshold: number;
  budget: number;
  coarseMode: 0 | 1 | 2;
  coarseThreshold: number;
  coarseBudget: number;
  hierarchical: boolean;
  scale: number | undefined;
  gqa: "kv-head" | "query-head";
  share: "call" | "token";
}

/** The same option rules as the CPU reference's selection options. */
function resolve(action: string, o: SqueezedSelectWebGpuOptions): Resolved {
  if (o === null || typeof o !== "object") {
    throw new TypeError(`Cannot ${action}: options must be an object, got ${describeValue(o)}`);
  }
  const byThreshold = o.threshold !== undefined || o.calibration !== undefined;
  if (byThreshold === (o.budget !== undefined)) {
    throw new TypeError(
      `Cannot ${action}: give either a threshold (threshold or calibration) or a budget, got ${
        byThreshold ? "both" : "none of them"
      }`,
    );
  }
  const hierarchical = o.hierarchical ?? true;
  if (typeof hierarchical !== "boolean") {
    throw new TypeError(
      `Cannot ${action}: hierarchical must be a boolean, got ${describeValue(hierarchical)}`,
    );
  }
  const gqa = requireOneOf(action, "gqa", o.gqa ?? "kv-head", ["kv-head", "query-head"] as const);
  const share = requireOneOf(action, "share", o.share ?? "call", ["call", "token"] as const);
  const scale = o.scale === undefined ? undefined : requireFinite(action, "scale", o.scale);
  const base = { hierarchical, scale, gqa, share };
  if (byThreshold) {
    const num = (name: string, v: unknown): number => {
      if (typeof v !== "number" || Number.isNaN(v) || v === Infinity) {
        throw new RangeError(
          `Cannot ${action}: ${name} must be a number below Infinity, got ${describeValue(v)}`,
        );
      }
      return v;
    };
    const cal = o.calibration;
    const t = num("threshold", o.threshold ?? cal?.threshold ?? NaN);
    const ct = num("coarseThreshold", o.coarseThreshold ?? cal?.coarseThreshold ?? -Infinity);
    return {
      ...base,
      mode: t === -Infinity ? 2 : 0,
      threshold: t,
      budget: 1,
      coarseMode: ct === -Infinity ? 2 : 0,
      coarseThreshold: ct,
      coarseBudget: 1,
    };
  }
  const fraction = (name: string, v: unknown): number => {
    const f = requireFinite(action, name, v);
    if (!(f > 0 && f <= 1)) {
      throw new RangeError(`Cannot ${action}: ${name} must be in (0, 1], got ${describeValue(f)}`);
    }
    return f;
  };
  const budget = fraction("budget", o.budget);
  const coarseBudget = fraction("coarseBudget", o.coarseBudget ?? Math.min(1, 4 * budget));
  return {
    ...base,
    mode: 1,
    threshold: 0,
    budget,
    coarseMode: 1,
    coarseThreshold: 0,
    coarseBudget,
  };
}

/**
 * Squeezed Attention's selection on the GPU: the mass per cluster
 * ({@linkcode squeezedMassWebGpu}), the kept clusters — threshold mode
 * `p̂ > threshold` (strict, non-empty clusters; `-Infinity` keeps all),
 * budget mode the best clusters in the order (p̂ descending, index ascending)
 * until they hold `⌈budget · clustered⌉` keys, as `SqueezedAttention` keeps
 * them — and the stream compaction of their keys into sorted spans with a
 * count per unit. One read-back of `units · (clustered + 2)` ints brings the
 * spans to the host, where the attend's work list is planned.
 *
 * With a two-level index (and `hierarchical` not false) the coarse level is
 * looked up first — kept by `coarseThreshold` (default: every coarse cluster)
 * or `coarseBudget` — and the fine lookup and its threshold or budget consider
 * only the children of the kept coarse clusters (their mass normalised over
 * those candidates), as `SqueezedAttention` does.
 *
 * The kept set equals the CPU reference's except where a cluster's mass lies
 * within f32 rounding (≈1e-6 relative) of the threshold, or two masses tie
 * that closely at the budget's cut.
 *
 * | cost | |
 * | --- | --- |
 * | lookup | as {@linkcode squeezedMassWebGpu} |
 * | keep | O(units · C) (threshold) or O(units · C²) (budget); two-level adds the coarse level's lookup and keep |
 * | compaction | O(units · clustered), one workgroup per unit |
 * | read-back | `4 · units · (clustered + 2)` bytes |
 *
 * @param gpu The context.
 * @param layer The index layer ({@linkcode uploadSqueezedLayer}).
 * @param query Queries, contiguous `[queryTokens, heads, headDim]`: post-RoPE when the keys are, or raw with `rope`.
 * @param options Threshold (or calibration) or budget, GQA mode, scale, sharing, RoPE and query positions.
 * @returns The kept spans and counts per unit.
 * @throws {TypeError} If neither or both of threshold and budget are given, shapes do not fit, or `rope` comes without `queryPositions`.
 * @throws {RangeError} On an out-of-range option.
 *
 * @example Keep 10% of the clustered keys: as many as `squeezedAttention` reads (skipped without a GPU)
 * ```ts
 * import { squeezedSelectWebGpu, tryRequestGpu, upload, uploadSqueezedLayer } from "@longctx/longctx/gpu";
 * import { buildSqueezedIndex, squeezedAttention } from "@longctx/longctx/attention";
 * import { randn, sliceAxis } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const [key, value] = [1, 2].map((seed) => randn([200, 2, 16], { seed }));
 *   const query = randn([1, 4, 16], { seed: 3 });
 *   const index = buildSqueezedIndex([sliceAxis(key, 0, 0, 180)], { observationWindow: 20 }); // 160 clustered
 *   const sel = await squeezedSelectWebGpu(gpu, uploadSqueezedLayer(gpu, index), upload(gpu, query), { budget: 0.1 });
 *   assert.equal(sel.units, 2); // "kv-head": one key set per GQA group
 *   const spans = sel.spans[0]; // [start, end) pairs of clustered-key indices
 *   let kept = 0;
 *   for (let i = 0; i < spans.length; i += 2) kept += spans[i + 1] - spans[i];
 *   assert.equal(kept, sel.keysKept[0]);
 *   const cpu = squeezedAttention({ query, key, value }, { index, budget: 0.1 });
 *   for (let h = 0; h < 4; h++) assert.equal(sel.keysKept[h >> 1] + 20, cpu.fixedKeysRead[h]); // + the window
 *   gpu.destroy();
 * }
 * ```
 */
export async function squeezedSelectWebGpu(
  gpu: GpuContext,
  layer: SqueezedGpuLayer,
  query: GpuTensor,
  options: SqueezedSelectWebGpuOptions,
): Promise<SqueezedGpuSelection> {
  const action = "select with Squeezed Attention on GPU";
  checkLayer(action, gpu, layer);
  const o = resolve(action, options);
  const plan = planUnits(action, layer, query, o.gqa, o.share);
  if (options.rope !== undefined && options.queryPositions === undefined) {
    throw new TypeError(`Cannot ${action}: rope needs queryPositions, got none`);
  }
  const lookup = lookupQuery(action, gpu, query, options.rope, options.queryPositions);
  try {
    return await selectResolved(gpu, layer, lookup.query, plan, o, lookup.factor);
  } finally {
    if (lookup.query !== query) releaseTensor(gpu, lookup.query);
  }
}

/**
 * The queries the lookup scores with: `query` itself, or rotated to its
 * token's position (a new f32 tensor) with the scale factor `attentionFactor²`.
 */
function lookupQuery(
  action: string,
  gpu: GpuContext,
  query: GpuTensor,
  rope: GpuRotary | undefined,
  positions: ArrayLike<number> | undefined,
): { query: GpuTensor; factor: number } {
  if (rope === undefined) return { query, factor: 1 };
  const [tq, heads, d] = query.shape as [number, number, number];
  if (rope === null || typeof rope !== "object" || rope.headDim !== d) {
    throw new TypeError(
      `Cannot ${action}: rope must be a rotary encoding of headDim ${d}, got ${
        describeValue(rope?.headDim)
      }`,
    );
  }
  if (positions === undefined || positions.length !== tq) {
    throw new TypeError(
      `Cannot ${action}: queryPositions must have one entry per query token (${tq}), got ${
        describeValue(positions?.length)
      }`,
    );
  }
  const half = d / 2;
  const cs = new Float32Array(Math.max(tq * half * 2, 2));
  for (let t = 0; t < tq; t++) {
    const p = requireFinite(action, `queryPositions[${t}]`, positions[t]);
    for (let i = 0; i < half; i++) {
      const a = p * rope.invFreq[i]!;
      cs[(t * half + i) * 2] = Math.cos(a);
      cs[(t * half + i) * 2 + 1] = Math.sin(a);
    }
  }
  const out = createGpuTensor(gpu, "f32", [tq, heads, d]);
  const total = tq * heads * d;
  if (total === 0) return { query: out, factor: rope.attentionFactor ** 2 };
  requireBindable(gpu, action, "query", query.buffer);
  const table = gpu.storage(cs, "squeezed rope");
  const u = gpu.uniform(SQUEEZED_ROTATE_PARAMS.pack({ total, heads, qBase: query.offset }));
  gpu.submit("squeezed-rotate", [{
    kind: "dispatch",
    pipeline: gpu.pipeline("squeezed-rotate", {
      headDim: d,
      layout: rope.layout,
      query: storageOf(gpu, query.dtype),
    }, squeezedRotateWgsl),
    bindings: [u, query.buffer, table, out.buffer],
    workgroups: grid2d(
      Math.ceil(total / SQUEEZED_WORKGROUP),
      gpu.limits.maxComputeWorkgroupsPerDimension,
    ),
  }], { release: [u, table] });
  return { query: out, factor: rope.attentionFactor ** 2 };
}

async function selectResolved(
  gpu: GpuContext,
  layer: SqueezedGpuLayer,
  query: GpuTensor,
  plan: UnitPlan,
  o: Resolved,
  factor: number,
): Promise<SqueezedGpuSelection> {
  const action = "select with Squeezed Attention on GPU";
  gpu.checkAlive(action);
  const { units } = plan;
  const clustered = layer.clustered;
  const base = { units, rowsPerUnit: plan.rowsPerUnit, tokensPerUnit: plan.tokensPerUnit };
  if (units === 0) return { ...base, spans: [], keysKept: new Int32Array(0) };
  const scale = (o.scale ?? 1 / Math.sqrt(layer.headDim)) * factor;
  const fine: Level = {
    clusters: layer.clusters,
    centroids: layer.centroids,
    sizes: layer.sizes.buffer,
  };
  let cand: Candidates | undefined;
  const coarse = o.hierarchical ? layer.coarse : undefined;
  if (coarse !== undefined) {
    // Level 1 over every coarse cluster; level 2 only over the children of the kept ones.
    const level: Level = {
      clusters: coarse.clusters,
      centroids: coarse.centroids,
      sizes: coarse.sizes.buffer,
    };
    const coarseKeep = keepOf(gpu, level, massOf(gpu, level, query, plan, scale), plan, {
      mode: o.coarseMode,
      threshold: o.coarseThreshold,
      budgetKeys: Math.ceil(o.coarseBudget * clustered),
    });
    cand = { parent: coarse.parent.buffer, coarseKeep, coarseClusters: coarse.clusters };
  }
  const keep = keepOf(gpu, fine, massOf(gpu, fine, query, plan, scale, cand), plan, {
    mode: o.mode,
    threshold: o.threshold,
    budgetKeys: Math.ceil(o.budget * clustered),
  }, cand);
  const stride = clustered + 2;
  const out = createGpuTensor(gpu, "i32", [units, stride]);
  const us = gpu.uniform(SQUEEZED_SPANS_PARAMS.pack({
    ...unitFields(plan, layer.clusters, 0),
    clustered,
    stride,
    pad0: 0,
  }));
  const release = [us, keep];
  if (cand !== undefined) release.push(cand.coarseKeep);
  gpu.submit("squeezed-spans", [{
    kind: "dispatch",
    pipeline: gpu.pipeline("squeezed-spans", {}, squeezedSpansWgsl),
    bindings: [us, keep, layer.assignments.buffer, out.buffer],
    workgroups: grid2d(units, gpu.limits.maxComputeWorkgroupsPerDimension),
  }], { release });
  let host: Int32Array;
  try {
    host = (await download(gpu, out)).data as Int32Array;
  } finally {
    releaseTensor(gpu, out);
  }
  const spans: Int32Array[] = [];
  const keysKept = new Int32Array(units);
  for (let u = 0; u < units; u++) {
    const count = host[u * stride]!;
    const s = host.slice(u * stride + 1, u * stride + 1 + count);
    let kept = 0;
    for (let i = 0; i < count; i += 2) kept += s[i + 1]! - s[i]!;
    spans.push(s);
    keysKept[u] = kept;
  }
  return { ...base, spans, keysKept };
}

/** Options of {@linkcode squeezedAttentionWebGpu}. */
export interface SqueezedAttentionWebGpuOptions extends SqueezedSelectWebGpuOptions {
  /**
   * Index on the key axis of query 0; queries must follow the fixed context
   * (`queryOffset ≥ N`). @default {keyTokens − queryTokens}
   */
  queryOffset?: number;
  /** Accumulates what the attend read, as `sparseAttend` counts it. */
  stats?: AttendStats;
}

/** Result of {@linkcode squeezedAttentionWebGpu}. */
export interface SqueezedAttentionWebGpuResult extends GpuAttentionState {
  /** Fixed-context keys read per query token and head (kept + observation window), `[queryTokens · heads]`. */
  readonly fixedKeysRead: Int32Array;
  /** The selections the attend executed, one per query token. */
  readonly selections: readonly Selection[];
}

/**
 * `squeezedAttention` on the GPU: the selection of
 * {@linkcode squeezedSelectWebGpu}, then one exact softmax per query over the
 * kept clustered keys ∪ the observation window `[clustered, N)` ∪ the
 * dynamic keys `[N, queryOffset + t]` (causal), with
 * {@linkcode sparseAttendWebGpu}. The two key sets are disjoint, so this
 * single softmax equals the CPU reference's sparse fixed part merged with
 * its dense causal dynamic part by log-sum-exp. With `threshold: -Infinity`
 * every key is read: dense causal attention.
 *
 * Heads of a GQA group share one selection object in `"kv-head"` mode, so
 * the attend reads each key once per group. With `rope` the queries arrive
 * raw and `kv` must be a `GpuKvStore` view (original positions, post- or
 * pre-RoPE keys): the lookup scores the rotated queries and the attend
 * rotates on read, as the pipeline's `SqueezedAttention` selector and
 * `sparseAttend` do; the index must be built from the post-RoPE keys
 * (`buildSqueezedIndex(store, { rope })`).
 *
 * | cost | |
 * | --- | --- |
 * | selection | as {@linkcode squeezedSelectWebGpu} |
 * | attend | (kept + obs + dynamic) keys per query token and row group |
 *
 * @param gpu The context.
 * @param layer The index layer ({@linkcode uploadSqueezedLayer}).
 * @param query Queries, contiguous `[queryTokens, heads, headDim]`, f32 or f16: post-RoPE, or raw with `rope`.
 * @param kv Keys and values, `[0, N)` the indexed fixed context (`kvViewOfTensors`, or a `GpuKvStore` view).
 * @param options Threshold or budget, GQA, scale, sharing, query offset and positions, RoPE, stats.
 * @returns `{ out: [queryTokens, heads, headDim], lse: [queryTokens, heads] }` on the GPU, plus what was read.
 * @throws {TypeError} If shapes do not fit each other or the index, or the options conflict.
 * @throws {RangeError} If the cache is shorter than `N`, queries precede its end, or an option is out of range.
 *
 * @example Tensors as attention sees them, vs `squeezedAttention` (skipped without a GPU)
 * ```ts
 * import { downloadState, kvViewOfTensors, squeezedAttentionWebGpu, tryRequestGpu, upload, uploadSqueezedLayer } from "@longctx/longctx/gpu";
 * import { buildSqueezedIndex, squeezedAttention } from "@longctx/longctx/attention";
 * import { randn, sliceAxis } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const [key, value] = [1, 2].map((seed) => randn([200, 2, 16], { seed }));
 *   const query = randn([1, 4, 16], { seed: 3 });
 *   const index = buildSqueezedIndex([sliceAxis(key, 0, 0, 180)], { observationWindow: 20 }); // N = 180
 *   const kv = kvViewOfTensors(gpu, upload(gpu, key), upload(gpu, value));
 *   const st = await squeezedAttentionWebGpu(gpu, uploadSqueezedLayer(gpu, index), upload(gpu, query), kv, { budget: 0.1 });
 *   const { out } = await downloadState(gpu, st);
 *   const cpu = squeezedAttention({ query, key, value }, { index, budget: 0.1 });
 *   out.data.forEach((x, i) => assert.ok(Math.abs(x - cpu.out.data[i]) < 1e-4));
 *   gpu.destroy();
 * }
 * ```
 *
 * @example A decode step over a GpuKvStore with RoPE on read (skipped without a GPU)
 * ```ts
 * import { downloadState, GpuKvStore, squeezedAttentionWebGpu, tryRequestGpu, upload, uploadSqueezedLayer } from "@longctx/longctx/gpu";
 * import { buildSqueezedIndex, squeezedAttention } from "@longctx/longctx/attention";
 * import { KvStore } from "@longctx/longctx/kv";
 * import { Rope } from "@longctx/longctx/positional";
 * import { randn, sliceAxis } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const [rope, q] = [new Rope({ headDim: 16 }), randn([1, 4, 16], { seed: 3 })];
 *   const [key, value] = [1, 2].map((seed) => randn([200, 2, 16], { seed }));
 *   const store = new GpuKvStore(gpu, { layers: 1, kvHeads: 2, headDim: 16, capacity: 256, dtype: "f32" }); // pre-RoPE keys
 *   store.append(0, key, value);
 *   const cpuStore = new KvStore({ layers: 1, kvHeads: 2, headDim: 16 });
 *   cpuStore.append(0, sliceAxis(key, 0, 0, 180), sliceAxis(value, 0, 0, 180)); // the fixed context
 *   const index = buildSqueezedIndex(cpuStore, { rope, observationWindow: 20 }); // from the rotated keys
 *   const layer0 = uploadSqueezedLayer(gpu, index, 0);
 *   const st = await squeezedAttentionWebGpu(gpu, layer0, upload(gpu, q), store.view(0), {
 *     budget: 0.1,
 *     rope,
 *     queryPositions: [store.length(0) - 1],
 *   });
 *   const { out } = await downloadState(gpu, st);
 *   const cpu = squeezedAttention({ query: rope.apply(q, 199), key: rope.apply(key, 0), value }, { index, budget: 0.1 });
 *   out.data.forEach((x, i) => assert.ok(Math.abs(x - cpu.out.data[i]) < 1e-4));
 *   store.destroy();
 *   gpu.destroy();
 * }
 * ```
 */
export async function squeezedAttentionWebGpu(
  gpu: GpuContext,
  layer: SqueezedGpuLayer,
  query: GpuTensor,
  kv: GpuKvView,
  options: SqueezedAttentionWebGpuOptions,
): Promise<SqueezedAttentionWebGpuResult> {
  const action = "compute Squeezed attention on GPU";
  checkLayer(action, gpu, layer);
  const o = resolve(action, options);
  const plan = planUnits(action, layer, query, o.gqa, o.share);
  if (kv === null || typeof kv !== "object" || !Array.isArray(kv.segments)) {
    throw new TypeError(`Cannot ${action}: kv must be a GpuKvView, got ${describeValue(kv)}`);
  }
  if (kv.kvHeads !== layer.kvHeads || kv.headDim !== layer.headDim) {
    throw new TypeError(
      `Cannot ${action}: the index has kvHeads ${layer.kvHeads} and headDim ${layer.headDim}, but the keys have kvHeads ${kv.kvHeads} and headDim ${kv.headDim}`,
    );
  }
  const N = layer.fixedLength, tk = kv.length, tq = plan.tq;
  if (tk < N) {
    throw new RangeError(
      `Cannot ${action}: keys must hold the ${N} fixed-context tokens, got ${tk}`,
    );
  }
  const queryOffset = requireInt(action, "queryOffset", options.queryOffset ?? tk - tq);
  if (queryOffset < N) {
    throw new RangeError(
      `Cannot ${action}: queries must follow the fixed context (queryOffset ≥ ${N}), got ${queryOffset}`,
    );
  }
  const positions = options.queryPositions ??
    Array.from({ length: tq }, (_, t) => queryOffset + t);
  const lookup = lookupQuery(action, gpu, query, options.rope, positions);
  let sel: SqueezedGpuSelection;
  try {
    sel = await selectResolved(gpu, layer, lookup.query, plan, o, lookup.factor);
  } finally {
    if (lookup.query !== query) releaseTensor(gpu, lookup.query);
  }
  const { heads, rowsPerUnit, unitsPerToken, tokensPerUnit } = plan;
  const clustered = layer.clustered;
  const fixedKeysRead = new Int32Array(tq * heads);
  const selections: Selection[] = [];
  for (let t = 0; t < tq; t++) {
    const end = Math.min(tk, queryOffset + t + 1);
    const always: HeadSelection = {
      spans: end > clustered ? Int32Array.of(clustered, end) : new Int32Array(0),
    };
    const heads_: HeadSelection[] = new Array<HeadSelection>(heads);
    const ub = Math.floor(t / tokensPerUnit) * unitsPerToken;
    for (let j = 0; j < unitsPerToken; j++) {
      const u = ub + j;
      const hs = unionSelections({ spans: sel.spans[u]! }, always);
      for (let r = 0; r < rowsPerUnit; r++) {
        heads_[j * rowsPerUnit + r] = hs;
        fixedKeysRead[t * heads + j * rowsPerUnit + r] = sel.keysKept[u]! + (N - clustered);
      }
    }
    selections.push(heads_);
  }
  const state = sparseAttendWebGpu(gpu, query, kv, selections, {
    queryPositions: positions,
    ...(options.rope !== undefined ? { rope: options.rope } : {}),
    scale: o.scale ?? 1 / Math.sqrt(layer.headDim),
    ...(options.stats !== undefined ? { stats: options.stats } : {}),
  });
  return { ...state, fixedKeysRead, selections };
}
