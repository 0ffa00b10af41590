// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Squeezed Attention (Hooper et al., 2024): for a long **fixed context**
 * shared by many requests, cluster its keys offline; online, score the
 * centroids with the query, turn the scores into an estimated softmax mass
 * per cluster, and attend exactly only to the keys of the clusters that
 * matter, plus everything after the fixed context (user input and generated
 * tokens) densely.
 *
 * | step | function | when |
 * | --- | --- | --- |
 * | k-means of the fixed keys per (layer, KV head), one or two levels | {@linkcode buildSqueezedIndex} | offline, once per fixed context |
 * | global threshold from sample queries | {@linkcode calibrateSqueezed} | offline |
 * | save / load | {@linkcode saveSqueezedIndex}, {@linkcode loadSqueezedIndex} | offline |
 * | centroid lookup → selection → exact attention | {@linkcode SqueezedAttention} (a pipeline selector) or {@linkcode squeezedAttention} (tensors) | every query |
 *
 * ## Pre- or post-RoPE keys: post-RoPE
 *
 * The keys are clustered **as attention sees them: rotated at their original
 * positions** (the authors cluster the post-RoPE keys their attention module
 * returns), and a query is rotated to its own position before it scores the
 * centroids. Squeezed never re-positions a key (the user input starts at
 * position N, right after the fixed context), so under DESIGN §1 "Positions
 * are data" the stored position of every key is the position it is seen at,
 * and a centroid logit `⟨R(p)q, mean_j R(p_j)k_j⟩ = mean_j ⟨R(p)q, R(p_j)k_j⟩`
 * is the mean of the members' true logits. Clustering pre-RoPE keys would
 * group keys whose logits differ by their rotation, and a pre-RoPE centroid
 * has no position to be scored at. From a `"pre-rope"` store,
 * {@linkcode buildSqueezedIndex} rotates each key to its stored position first
 * (give it the pipeline's `rope`).
 *
 * ## One softmax over the union is the paper's LSE merge
 *
 * In an `AttentionPipeline`, {@linkcode SqueezedAttention} selects the kept
 * cluster members and the observation window of the fixed context **plus**
 * every token after it, as one sorted {@linkcode HeadSelection} at original
 * positions, and the pipeline's one exact softmax over that union equals the
 * authors' sparse attention over the fixed part merged by log-sum-exp with the
 * dense causal attention over the dynamic part (the two key sets are
 * disjoint). {@linkcode squeezedAttention} computes the two parts separately
 * and merges them with `mergeStates`, as the paper describes.
 *
 * @see https://arxiv.org/abs/2411.09688
 *
 * @module
 */

import type { FloatArray, Tensor } from "../tensor/types.ts";
import { sliceAxis, zeros } from "../tensor/tensor.ts";
import {
  describeValue,
  requireFinite,
  requireInt,
  requireNonNegativeInt,
  requireOneOf,
  requirePositiveInt,
} from "../tensor/validate.ts";
import type { HistoryNeed } from "../kv/types.ts";
import type { AttentionInput, AttentionState } from "./types.ts";
import { type HeadSelection, selectAll, unionSelections } from "./selection.ts";
import type { SelectContext, Selector } from "./stages.ts";
import type { KvSource, RotaryEncoding } from "./sparse_attend.ts";
import { checkQkv, requireThd } from "./_validate.ts";
import { denseAttention } from "./dense.ts";
import { mergeStates } from "./merge_states.ts";
import { ensureGroupWorkspace, finishRows, foldRun, resetRows } from "./_online_softmax.ts";
import {
  type Clusters,
  type ClusterSet,
  decodeClusterSet,
  encodeClusterSet,
  hierarchicalKmeans,
  type KeyClusters,
  kmeans,
  type KmeansGeometry,
  validateKeyClusters,
} from "./kmeans.ts";

/** Centroids as a fraction of the clustered keys (the authors' `percent_clusters = 5`). */
export const DEFAULT_SQUEEZED_CLUSTER_FRACTION = 0.05;

/** Last fixed-context tokens that are always attended and never clustered (`obs_window`). */
export const DEFAULT_SQUEEZED_OBSERVATION_WINDOW = 100;

/** Quantiles whose thresholds calibration reports (the authors store these four). */
export const DEFAULT_SQUEEZED_QUANTILES: readonly number[] = Object.freeze([0.5, 0.7, 0.8, 0.9]);

/**
 * The offline artefact of Squeezed Attention for one fixed context: the
 * clusters of every `(layer, kvHead)`'s fixed keys. Plain data.
 *
 * Cache indices `[0, clustered)` of each head are clustered,
 * `[clustered, fixedLength)` are the observation window (always attended),
 * and indices from `fixedLength` on are the dynamic part (always attended).
 */
export interface SqueezedIndex {
  /** Layers. */
  readonly layers: number;
  /** KV heads per layer. */
  readonly kvHeads: number;
  /** Elements per key. */
  readonly headDim: number;
  /** Tokens of the fixed context `N`. */
  readonly fixedLength: number;
  /** Observation window: the last `min(obs, N)` fixed tokens. */
  readonly observationWindow: number;
  /** Clustered keys per head, `N − observationWindow`. */
  readonly clustered: number;
  /** Clusters per head, `[layers · kvHeads]`, layer-major. */
  readonly heads: readonly KeyClusters[];
}

/** A KV store an index can be built from (implemented by `KvStore`). */
export interface SqueezedKeyStore extends KvSource {
  /** Layers. */
  readonly layers: number;
}

/** Options of {@linkcode buildSqueezedIndex}. */
export interface SqueezedIndexOptions {
  /** Centroids as a fraction of the clustered keys, `C = max(1, ⌊f · (N − obs)⌋)`. @default {0.05} */
  clusterFraction?: number;
  /** Explicit centroid count (overrides `clusterFraction`). */
  clusters?: number;
  /** Last fixed tokens never clustered and always attended. @default {100} */
  observationWindow?: number;
  /** One level, or two (coarse centroids over the fine ones). @default {1} */
  levels?: 1 | 2;
  /**
   * Two levels: coarse centroids as a fraction of the clustered keys
   * (`percent_clusters` of the authors' hierarchical script; a library
   * default, marked as a suggestion).
   * @default {clusterFraction / 5}
   */
  coarseFraction?: number;
  /** Explicit coarse centroid count (overrides `coarseFraction`). */
  coarseClusters?: number;
  /** k-means geometry (the authors: cosine, i.e. L2-normalized keys). @default {"cosine"} */
  geometry?: KmeansGeometry;
  /** Most Lloyd iterations per head. @default {300} */
  iterations?: number;
  /** k-means tolerance (see `KmeansOptions.tolerance`). @default {1e-4} */
  tolerance?: number;
  /** k-means++ seed (the authors' `random_state = 0`). @default {0} */
  seed?: number;
  /** Store source: tokens of the fixed context. @default {the store's length at layer 0, KV head 0} */
  fixedLength?: number;
  /**
   * Store source with `keyForm: "pre-rope"`: the RoPE its keys are rotated
   * with, to their stored positions, before clustering. Omit for a model
   * without rotary positions. Ignored for post-RoPE stores and tensors.
   */
  rope?: RotaryEncoding;
}

function checkFraction(action: string, name: string, v: unknown): number {
  const f = requireFinite(action, name, v);
  if (!(f > 0 && f <= 1)) {
    throw new RangeError(`Cannot ${action}: ${name} must be in (0, 1], got ${describeValue(f)}`);
  }
  return f;
}

function isStore(s: unknown): s is SqueezedKeyStore {
  return s !== null && typeof s === "object" && !Array.isArray(s) &&
    typeof (s as KvSource).page === "function" && typeof (s as KvSource).length === "function";
}

/**
 * Offline step: clusters the fixed context's keys of every `(layer, kvHead)`
 * with seeded k-means (k-means++ seeding, cosine geometry by default), one
 * or two levels, leaving the last `observationWindow` keys unclustered.
 *
 * `source` is either one key tensor per layer, `[N, kvHeads, headDim]`,
 * **post-RoPE** (rotated at their positions, as attention sees them), or a KV
 * store holding the fixed context in cache indices `[0, N)` (a pipeline's
 * `store` after `append`/`attend` of the fixed context).
 *
 * | cost per head | |
 * | --- | --- |
 * | time | k-means of `N − obs` keys into `C ≈ 0.05·(N − obs)` clusters: O(N·C·d) per full pass, see `kmeans` |
 * | memory | centroids `C·d` f32 + one i32 label per key (+ the coarse level) |
 *
 * @param source Post-RoPE keys per layer `[N, kvHeads, headDim]`, or a KV store.
 * @param options Cluster counts, observation window, levels, k-means options.
 * @returns The index (plain data).
 * @throws {TypeError} If layers disagree on shape (mismatched head dims), or the source is neither.
 * @throws {RangeError} If the fixed context is empty, a key is not finite, a
 *   cluster count exceeds the clustered keys, or an option is out of range.
 *
 * @example Index 200 fixed keys into 10 clusters per head
 * ```ts
 * import { buildSqueezedIndex } from "@longctx/longctx/attention";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const keys = randn([200, 2, 8], { seed: 1 }); // one layer, [N, kvHeads, headDim]
 * const index = buildSqueezedIndex([keys], { clusterFraction: 0.05, observationWindow: 0 });
 * assert.equal(index.clustered, 200);
 * assert.equal(index.heads[1].fine.sizes.length, 10);
 * assert.equal(index.heads[1].fine.sizes.reduce((a, b) => a + b, 0), 200);
 * ```
 */
export function buildSqueezedIndex(
  source: readonly Tensor[] | SqueezedKeyStore,
  options: SqueezedIndexOptions = {},
): SqueezedIndex {
  const action = "build Squeezed index";
  if (options === null || typeof options !== "object") {
    throw new TypeError(
      `Cannot ${action}: options must be an object, got ${describeValue(options)}`,
    );
  }
  const frac = checkFraction(
    action,
    "clusterFraction",
    options.clusterFraction ?? DEFAULT_SQUEEZED_CLUSTER_FRACTION,
  );
  const obsWanted = requireNonNegativeInt(
    action,
    "observationWindow",
    options.observationWindow ?? DEFAULT_SQUEEZED_OBSERVATION_WINDOW,
  );
  const levels = options.levels ?? 1;
  if (levels !== 1 && levels !== 2) {
    throw new RangeError(`Cannot ${action}: levels must be 1 or 2, got ${describeValue(levels)}`);
  }
  const coarseFrac = checkFraction(action, "coarseFraction", options.coarseFraction ?? frac / 5);
  // Gather the clustered keys of each head as a [clustered, headDim] f32 matrix.
  let layers: number, kvHeads: number, headDim: number, n: number;
  let headKeys: (layer: number, head: number, count: number) => Tensor<"f32">;
  if (Array.isArray(source)) {
    const list = source as readonly Tensor[];
    if (list.length === 0) {
      throw new TypeError(`Cannot ${action}: source must hold one key tensor per layer, got 0`);
    }
    list.forEach((t, l) => requireThd(action, `keys[${l}]`, t));
    [n, kvHeads, headDim] = list[0]!.shape as [number, number, number];
    list.forEach((t, l) => {
      if (t.shape[0] !== n || t.shape[1] !== kvHeads || t.shape[2] !== headDim) {
        throw new TypeError(
          `Cannot ${action}: keys[${l}] shape ${describeValue(t.shape)} must equal keys[0] shape ${
            describeValue(list[0]!.shape)
          } (mismatched tokens, kvHeads or headDim)`,
        );
      }
    });
    layers = list.length;
    headKeys = (l, h, count) => {
      const t = list[l]!;
      const out = new Float32Array(count * headDim);
      const [s0, s1] = t.strides as [number, number, number];
      for (let i = 0; i < count; i++) {
        const o = t.offset + i * s0 + h * s1;
        for (let c = 0; c < headDim; c++) out[i * headDim + c] = t.data[o + c]!;
      }
      return { dtype: "f32", shape: [count, headDim], strides: [headDim, 1], offset: 0, data: out };
    };
  } else if (isStore(source)) {
    const store = source;
    layers = requirePositiveInt(action, "store.layers", store.layers);
    kvHeads = store.kvHeads;
    headDim = store.headDim;
    n = requireNonNegativeInt(action, "fixedLength", options.fixedLength ?? store.length(0, 0));
    for (let l = 0; l < layers; l++) {
      for (let h = 0; h < kvHeads; h++) {
        if (store.length(l, h) < n) {
          throw new RangeError(
            `Cannot ${action}: every head must hold the fixed context of ${n} tokens, got ${
              store.length(l, h)
            } at layer ${l}, kvHead ${h}`,
          );
        }
      }
    }
    const rope = store.keyForm === "pre-rope" ? options.rope : undefined;
    if (rope !== undefined && rope.headDim !== headDim) {
      throw new TypeError(
        `Cannot ${action}: rope headDim (${rope.headDim}) does not match store headDim (${headDim})`,
      );
    }
    headKeys = (l, h, count) => {
      const out = new Float32Array(count * headDim);
      for (let i = 0; i < count;) {
        const pg = store.page(l, h, Math.floor(i / store.pageSize));
        const row0 = i % store.pageSize;
        const m = Math.min(count - i, pg.length - row0);
        for (let r = 0; r < m; r++) {
          const src = (row0 + r) * headDim, dst = (i + r) * headDim;
          if (rope !== undefined) rope.rotateRow(pg.keys, src, out, dst, pg.positions[row0 + r]!);
          else for (let c = 0; c < headDim; c++) out[dst + c] = pg.keys[src + c]!;
        }
        i += m;
      }
      return { dtype: "f32", shape: [count, headDim], strides: [headDim, 1], offset: 0, data: out };
    };
  } else {
    throw new TypeError(
      `Cannot ${action}: source must be an array of key tensors or a KV store, got ${
        describeValue(source)
      }`,
    );
  }
  if (n === 0) {
    throw new RangeError(`Cannot ${action}: the fixed context is empty (0 tokens)`);
  }
  if (headDim === 0) throw new RangeError(`Cannot ${action}: headDim must be positive, got 0`);
  const obs = Math.min(obsWanted, n);
  const clustered = n - obs;
  let k = 0, coarseK = 0;
  if (clustered > 0) {
    k = options.clusters === undefined
      ? Math.max(1, Math.floor(frac * clustered))
      : requirePositiveInt(action, "clusters", options.clusters);
    if (k > clustered) {
      throw new RangeError(
        `Cannot ${action}: clusters must be at most the number of clustered keys (${clustered} = ${n} fixed − ${obs} observation window), got ${k}`,
      );
    }
    if (levels === 2) {
      coarseK = options.coarseClusters === undefined
        ? Math.max(1, Math.floor(coarseFrac * clustered))
        : requirePositiveInt(action, "coarseClusters", options.coarseClusters);
      if (coarseK > k) {
        throw new RangeError(
          `Cannot ${action}: coarseClusters must be at most clusters (${k}), got ${coarseK}`,
        );
      }
    }
  }
  const kmOptions = {
    ...(options.geometry !== undefined ? { geometry: options.geometry } : {}),
    ...(options.iterations !== undefined ? { iterations: options.iterations } : {}),
    ...(options.tolerance !== undefined ? { tolerance: options.tolerance } : {}),
    ...(options.seed !== undefined ? { seed: options.seed } : {}),
  };
  const heads: KeyClusters[] = [];
  for (let l = 0; l < layers; l++) {
    for (let h = 0; h < kvHeads; h++) {
      if (clustered === 0) {
        heads.push({
          fine: {
            headDim,
            centroids: new Float32Array(0),
            sizes: new Int32Array(0),
            assignments: new Int32Array(0),
          },
        });
        continue;
      }
      const pts = headKeys(l, h, clustered);
      for (let i = 0; i < pts.data.length; i++) {
        if (!Number.isFinite(pts.data[i]!)) {
          throw new RangeError(
            `Cannot ${action}: keys must be finite, got ${
              describeValue(pts.data[i])
            } at layer ${l}, kvHead ${h}, token ${Math.floor(i / headDim)}, element ${i % headDim}`,
          );
        }
      }
      if (levels === 2) {
        const r = hierarchicalKmeans(pts, { ...kmOptions, clusters: k, coarseClusters: coarseK });
        heads.push({ fine: plainLevel(r.fine), coarse: r.coarse });
      } else {
        heads.push({ fine: plainLevel(kmeans(pts, { ...kmOptions, clusters: k })) });
      }
    }
  }
  return {
    layers,
    kvHeads,
    headDim,
    fixedLength: n,
    observationWindow: obs,
    clustered,
    heads,
  };
}

function plainLevel(c: Clusters): Clusters {
  return {
    headDim: c.headDim,
    centroids: c.centroids,
    sizes: c.sizes,
    assignments: c.assignments,
  };
}

/** Validates an index object (user-built or loaded). */
function checkIndex(action: string, index: SqueezedIndex): void {
  if (index === null || typeof index !== "object") {
    throw new TypeError(`Cannot ${action}: index must be an object, got ${describeValue(index)}`);
  }
  requirePositiveInt(action, "index.layers", index.layers);
  requirePositiveInt(action, "index.kvHeads", index.kvHeads);
  requirePositiveInt(action, "index.headDim", index.headDim);
  requirePositiveInt(action, "index.fixedLength", index.fixedLength);
  requireNonNegativeInt(action, "index.observationWindow", index.observationWindow);
  if (index.clustered !== index.fixedLength - index.observationWindow || index.clustered < 0) {
    throw new RangeError(
      `Cannot ${action}: index.clustered must equal fixedLength − observationWindow (${
        index.fixedLength - index.observationWindow
      }), got ${describeValue(index.clustered)}`,
    );
  }
  if (!Array.isArray(index.heads) || index.heads.length !== index.layers * index.kvHeads) {
    throw new TypeError(
      `Cannot ${action}: index.heads must hold layers × kvHeads (${index.layers} × ${index.kvHeads}) entries, got ${
        describeValue((index.heads as unknown[])?.length)
      }`,
    );
  }
}

const validated = new WeakSet<SqueezedIndex>();

function checkIndexOnce(action: string, index: SqueezedIndex): void {
  if (validated.has(index)) return;
  checkIndex(action, index);
  index.heads.forEach((h, i) =>
    validateKeyClusters(
      `${action} (layer ${Math.floor(i / index.kvHeads)}, kvHead ${i % index.kvHeads})`,
      h,
      index.headDim,
      index.clustered,
    )
  );
  validated.add(index);
}

// ---------------------------------------------------------------------------
// The centroid lookup.

/** Options of {@linkcode centroidLookup}. */
export interface CentroidLookupOptions {
  /** Multiplies q·centroid. @default {1 / Math.sqrt(headDim)} */
  scale?: number;
  /**
   * Clusters that count, `[clusters]` (nonzero = included); the others get
   * probability 0 and leave the denominator (two-level lookup under the
   * surviving coarse clusters). @default {every cluster}
   */
  include?: Uint8Array;
}

/**
 * The lookup kernel: estimated per-key softmax probability of each cluster,
 * averaged over query rows. For a query `q` with centroid logits
 * `u_c = scale · ⟨q, centroid_c⟩`, every cluster stands in for its `n_c`
 * keys: `D(q) = Σ_c n_c · exp(u_c)` and `p̂_c(q) = exp(u_c) / D(q)`, so
 * `Σ_c n_c · p̂_c = 1`. The result is `mean over rows of p̂_c`.
 *
 * With one cluster per key (`C = N`), `p̂` is the exact softmax over the
 * clustered keys.
 *
 * @param clusters One level of clusters.
 * @param queries Query rows, `[rows, headDim]` (post-RoPE when the keys are), f32 or f16.
 * @param options Scale, included clusters.
 * @returns `[clusters]` mean estimated per-key probabilities.
 * @throws {TypeError} If the head dims differ or shapes are wrong.
 *
 * @example Each key its own cluster: the estimate is the exact softmax
 * ```ts
 * import { centroidLookup } from "@longctx/longctx/attention";
 * import { tensor } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const clusters = { headDim: 1, centroids: new Float32Array([1, 2]), sizes: Int32Array.of(1, 1), assignments: Int32Array.of(0, 1) };
 * const p = centroidLookup(clusters, tensor(new Float32Array([3]), [1, 1]), { scale: 1 });
 * assert.ok(Math.abs(p[1] - Math.exp(6) / (Math.exp(3) + Math.exp(6))) < 1e-12);
 * ```
 */
export function centroidLookup(
  clusters: Clusters,
  queries: Tensor,
  options: CentroidLookupOptions = {},
): Float64Array {
  const action = "look up centroids";
  if (queries === null || typeof queries !== "object" || queries.shape?.length !== 2) {
    throw new TypeError(
      `Cannot ${action}: queries must have shape [rows, headDim], got shape ${
        describeValue(queries?.shape)
      }`,
    );
  }
  const [rows, d] = queries.shape as [number, number];
  if (d !== clusters.headDim) {
    throw new TypeError(
      `Cannot ${action}: query headDim (${d}) does not match centroid headDim (${clusters.headDim})`,
    );
  }
  const k = clusters.sizes.length;
  if (options.include !== undefined && options.include.length !== k) {
    throw new TypeError(
      `Cannot ${action}: include must have one entry per cluster (${k}), got ${options.include.length}`,
    );
  }
  const scale = options.scale === undefined
    ? 1 / Math.sqrt(d)
    : requireFinite(action, "scale", options.scale);
  const q = new Float32Array(rows * d);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < d; c++) {
      q[r * d + c] = queries
        .data[queries.offset + r * queries.strides[0]! + c * queries.strides[1]!]!;
    }
  }
  const cand = new Int32Array(k);
  let m = 0;
  for (let c = 0; c < k; c++) {
    if (options.include === undefined || options.include[c]) cand[m++] = c;
  }
  const out = new Float64Array(k);
  lookupInto(clusters, q, rows, scale, cand, m, out, new Float64Array(4 * k));
  return out;
}

/**
 * out[c] = mean over `rows` query rows of p̂_c, for the `m` candidate clusters
 * `cand[0, m)` (others untouched). Rows are `q[r·d ..]`; `u` is a
 * `[4, clusters]` scratch of logits. Rows go four at a time, so each centroid
 * is read once per four rows.
 */
function lookupInto(
  cl: Clusters,
  q: Float32Array,
  rows: number,
  scale: number,
  cand: Int32Array,
  m: number,
  out: Float64Array,
  u: Float64Array,
): void {
  const d = cl.headDim;
  const k = cl.sizes.length;
  const cent = cl.centroids, sizes = cl.sizes;
  for (let t = 0; t < m; t++) out[cand[t]!] = 0;
  for (let r0 = 0; r0 < rows; r0 += 4) {
    const nr = Math.min(4, rows - r0);
    // Rows past the end repeat row r0 (their logits are ignored).
    const q0 = r0 * d, q1 = nr > 1 ? q0 + d : q0, q2 = nr > 2 ? q0 + 2 * d : q0;
    const q3 = nr > 3 ? q0 + 3 * d : q0;
    for (let t = 0; t < m; t++) {
      const c = cand[t]!;
      const co = c * d;
      let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      for (let e = 0; e < d; e++) {
        const cv = cent[co + e]!;
        a0 += q[q0 + e]! * cv;
        a1 += q[q1 + e]! * cv;
        a2 += q[q2 + e]! * cv;
        a3 += q[q3 + e]! * cv;
      }
      u[c] = a0 * scale;
      u[k + c] = a1 * scale;
      u[2 * k + c] = a2 * scale;
      u[3 * k + c] = a3 * scale;
    }
    for (let r = 0; r < nr; r++) {
      const uo = r * k;
      let mx = -Infinity;
      for (let t = 0; t < m; t++) {
        const c = cand[t]!;
        if (sizes[c]! > 0 && u[uo + c]! > mx) mx = u[uo + c]!;
      }
      if (mx === -Infinity) continue; // no key under the candidates
      // Pass 1: D = Σ n_c exp(u_c − max); pass 2: p̂_c = exp(u_c − max) / D.
      let den = 0;
      for (let t = 0; t < m; t++) {
        const c = cand[t]!;
        const n = sizes[c]!;
        if (n > 0) den += n * Math.exp(u[uo + c]! - mx);
      }
      const w = 1 / (rows * den);
      for (let t = 0; t < m; t++) {
        const c = cand[t]!;
        if (sizes[c]! > 0) out[c] = out[c]! + Math.exp(u[uo + c]! - mx) * w;
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Selection: which clusters survive, and the spans of their keys.

/** Options that choose what Squeezed keeps (selector and function). */
export interface SqueezedSelectionOptions {
  /**
   * Threshold mode: keep a cluster when its estimated per-key probability
   * `p̂` is **strictly greater** (the authors' rule); `-Infinity` keeps every
   * key (the dense oracle). Calibrate it with {@linkcode calibrateSqueezed}.
   */
  threshold?: number;
  /**
   * Threshold mode, two-level index: the level-1 threshold on coarse
   * clusters. @default {calibration.coarseThreshold, else -Infinity (keep every coarse cluster)}
   */
  coarseThreshold?: number;
  /** Threshold mode with the thresholds of a calibration (explicit values win). */
  calibration?: SqueezedCalibration;
  /**
   * Top-k mode: keep the clusters with the largest `p̂`, in order, until they
   * hold at least `⌈budget · clustered⌉` keys (the last cluster may overshoot).
   * A fraction in `(0, 1]`.
   */
  budget?: number;
  /**
   * Top-k mode, two-level index: level 1 keeps the best coarse clusters until
   * they hold `⌈coarseBudget · clustered⌉` keys, level 2 ranks only their fine
   * clusters. A library choice (the authors only use thresholds).
   * @default {Math.min(1, 4 * budget)}
   */
  coarseBudget?: number;
  /** Use the coarse level of a two-level index (false: one-level lookup on its fine level). @default {true} */
  hierarchical?: boolean;
  /**
   * GQA (the authors' kernels are MHA only): `"kv-head"` ranks clusters by the
   * mean `p̂` of the group's query heads and shares one key set per KV head
   * (each key read once per group); `"query-head"` selects per query head.
   * Identical under MHA. @default {"kv-head"}
   */
  gqa?: "kv-head" | "query-head";
  /**
   * Multiplies q·centroid in the lookup. In a pipeline the RoPE
   * `attentionFactor²` is applied on top, as the attend kernel does.
   * @default {1 / Math.sqrt(headDim)}
   */
  scale?: number;
}

interface ResolvedSelection {
  mode: "threshold" | "budget";
  threshold: number;
  coarseThreshold: number;
  budget: number;
  coarseBudget: number;
  hierarchical: boolean;
  gqa: "kv-head" | "query-head";
  scale: number | undefined;
}

function resolveSelection(action: string, o: SqueezedSelectionOptions): ResolvedSelection {
  if (o === null || typeof o !== "object") {
    throw new TypeError(`Cannot ${action}: options must be an object, got ${describeValue(o)}`);
  }
  const byThreshold = o.threshold !== undefined || o.calibration !== undefined;
  if (byThreshold && o.budget !== undefined) {
    throw new TypeError(
      `Cannot ${action}: give either a threshold (threshold or calibration) or a budget, got both (budget ${o.budget})`,
    );
  }
  if (!byThreshold && o.budget === undefined) {
    throw new TypeError(
      `Cannot ${action}: give threshold, calibration or budget, got none of them`,
    );
  }
  const num = (name: string, v: number): number => {
    if (typeof v !== "number" || Number.isNaN(v) || v === Infinity) {
      throw new RangeError(
        `Cannot ${action}: ${name} must be a number below Infinity, got ${describeValue(v)}`,
      );
    }
    return v;
  };
  const gqa = requireOneOf(action, "gqa", o.gqa ?? "kv-head", ["kv-head", "query-head"] as const);
  const scale = o.scale === undefined ? undefined : requireFinite(action, "scale", o.scale);
  const hierarchical = o.hierarchical ?? true;
  if (typeof hierarchical !== "boolean") {
    throw new TypeError(
      `Cannot ${action}: hierarchical must be a boolean, got ${describeValue(hierarchical)}`,
    );
  }
  if (byThreshold) {
    const cal = o.calibration;
    const threshold = num("threshold", o.threshold ?? cal?.threshold ?? NaN);
    const coarseThreshold = num(
      "coarseThreshold",
      o.coarseThreshold ?? cal?.coarseThreshold ?? -Infinity,
    );
    return {
      mode: "threshold",
      threshold,
      coarseThreshold,
      budget: 1,
      coarseBudget: 1,
      hierarchical,
      gqa,
      scale,
    };
  }
  const budget = checkFraction(action, "budget", o.budget);
  const coarseBudget = checkFraction(
    action,
    "coarseBudget",
    o.coarseBudget ?? Math.min(1, 4 * budget),
  );
  return {
    mode: "budget",
    threshold: -Infinity,
    coarseThreshold: -Infinity,
    budget,
    coarseBudget,
    hierarchical,
    gqa,
    scale,
  };
}

/** Members of each cluster, ascending, as CSR: keys `order[start[c], start[c+1])`. */
interface Csr {
  start: Int32Array;
  order: Int32Array;
}

const csrCache = new WeakMap<Int32Array, Csr>();

/** Groups `[0, labels.length)` by label (counting sort, stable), cached per labels array. */
function csrOf(labels: Int32Array, k: number): Csr {
  let c = csrCache.get(labels);
  if (c !== undefined && c.start.length === k + 1) return c;
  const start = new Int32Array(k + 1);
  for (let j = 0; j < labels.length; j++) start[labels[j]! + 1]!++;
  for (let i = 0; i < k; i++) start[i + 1]! += start[i]!;
  const fill = start.slice(0, k);
  const order = new Int32Array(labels.length);
  for (let j = 0; j < labels.length; j++) order[fill[labels[j]!]!++] = j;
  c = { start, order };
  csrCache.set(labels, c);
  return c;
}

/** Per-call scratch, grown on demand (selection is synchronous). */
const scratch = {
  p: new Float64Array(0),
  u: new Float64Array(0),
  cand: new Int32Array(0),
  keep: new Uint8Array(0),
  coarseKeep: new Uint8Array(0),
  mark: new Uint8Array(0),
  runs: new Int32Array(0),
};

function grow(k: number, n: number): void {
  if (scratch.p.length < k) {
    scratch.p = new Float64Array(k);
    scratch.u = new Float64Array(4 * k);
    scratch.cand = new Int32Array(k);
    scratch.keep = new Uint8Array(k);
    scratch.coarseKeep = new Uint8Array(k);
  }
  if (scratch.mark.length < n) {
    scratch.mark = new Uint8Array(n);
    scratch.runs = new Int32Array(n + 2);
  }
}

/** What one lookup did, for accounting. */
interface LookupCount {
  centroids: number;
  keys: number;
}

/**
 * Sets `keep[c] = 1` for the best candidates `c` of `cand[0, m)` in the order
 * (p desc, index asc), until their sizes reach `target`: the prefix of that
 * order a sort would give, found by weighted quickselect in O(m) expected.
 * Permutes `cand[0, m)`.
 */
function keepTop(
  p: Float64Array,
  sizes: Int32Array,
  cand: Int32Array,
  m: number,
  target: number,
  keep: Uint8Array,
): void {
  const better = (a: number, b: number): boolean => p[a]! > p[b]! || (p[a] === p[b] && a < b);
  let lo = 0, hi = m, need = target;
  while (lo < hi && need > 0) {
    // Median of three as pivot, moved to lo.
    const mid = lo + ((hi - lo) >> 1), last = hi - 1;
    let pi = mid;
    const a = cand[lo]!, b = cand[mid]!, c = cand[last]!;
    if (better(a, b) !== better(a, c)) pi = lo;
    else if (better(b, a) !== better(b, c)) pi = mid;
    else pi = last;
    const pivot = cand[pi]!;
    cand[pi] = cand[lo]!;
    cand[lo] = pivot;
    // Partition (lo, hi): better than the pivot to the front.
    let i = lo + 1;
    let wBetter = 0;
    for (let j = lo + 1; j < hi; j++) {
      const x = cand[j]!;
      if (better(x, pivot)) {
        cand[j] = cand[i]!;
        cand[i] = x;
        wBetter += sizes[x]!;
        i++;
      }
    }
    // Put the pivot between the parts: [lo, i−1) better, i−1 pivot, [i, hi) worse.
    cand[lo] = cand[i - 1]!;
    cand[i - 1] = pivot;
    if (wBetter >= need) {
      hi = i - 1;
    } else {
      for (let j = lo; j < i; j++) keep[cand[j]!] = 1;
      need -= wBetter + sizes[pivot]!;
      lo = i;
    }
  }
}

/**
 * Chooses the clusters of one head for query rows `q[0, rows)` (averaged),
 * leaving `scratch.keep[c] = 1` for kept fine clusters. Returns the keys kept.
 */
function chooseClusters(
  head: KeyClusters,
  q: Float32Array,
  rows: number,
  scale: number,
  o: ResolvedSelection,
  clustered: number,
  count: LookupCount,
): number {
  const fine = head.fine;
  const k = fine.sizes.length;
  const { p, u, cand, keep } = scratch;
  keep.fill(0, 0, k);
  const coarse = o.hierarchical ? head.coarse : undefined;
  let m = 0;
  if (coarse === undefined) {
    for (let c = 0; c < k; c++) cand[m++] = c;
  } else {
    // Level 1 over every coarse cluster, then only the fine clusters under the survivors.
    const ck = coarse.sizes.length;
    const ckeep = scratch.coarseKeep;
    ckeep.fill(0, 0, ck);
    for (let c = 0; c < ck; c++) cand[c] = c;
    lookupInto(coarse, q, rows, scale, cand, ck, p, u);
    count.centroids += ck;
    if (o.mode === "threshold") {
      for (let c = 0; c < ck; c++) if (p[c]! > o.coarseThreshold) ckeep[c] = 1;
    } else {
      keepTop(p, coarse.sizes, cand, ck, Math.ceil(o.coarseBudget * clustered), ckeep);
    }
    const children = csrOf(coarse.parent, ck);
    for (let c = 0; c < ck; c++) {
      if (!ckeep[c]) continue;
      for (let t = children.start[c]!; t < children.start[c + 1]!; t++) {
        cand[m++] = children.order[t]!;
      }
    }
  }
  if (m === 0) return 0;
  lookupInto(fine, q, rows, scale, cand, m, p, u);
  count.centroids += m;
  let kept = 0;
  if (o.mode === "threshold") {
    for (let t = 0; t < m; t++) {
      const c = cand[t]!;
      if (p[c]! > o.threshold && fine.sizes[c]! > 0) {
        keep[c] = 1;
        kept += fine.sizes[c]!;
      }
    }
  } else {
    keepTop(p, fine.sizes, cand, m, Math.ceil(o.budget * clustered), keep);
    for (let c = 0; c < k; c++) if (keep[c]) kept += fine.sizes[c]!;
  }
  count.keys += kept;
  return kept;
}

/**
 * The selection: members of the kept fine clusters (sorted spans of cache
 * indices in `[0, clustered)`) ∪ `[clustered, length)` (observation window and
 * everything after the fixed context), at original positions.
 */
function spansOf(head: KeyClusters, clustered: number, length: number): HeadSelection {
  const fine = head.fine;
  const k = fine.sizes.length;
  const { keep, mark, runs } = scratch;
  const members = csrOf(fine.assignments, k);
  for (let c = 0; c < k; c++) {
    if (!keep[c]) continue;
    for (let t = members.start[c]!; t < members.start[c + 1]!; t++) mark[members.order[t]!] = 1;
  }
  let n = 0;
  let j = 0;
  while (j < clustered) {
    if (!mark[j]) {
      j++;
      continue;
    }
    const s = j;
    while (j < clustered && mark[j]) mark[j++] = 0;
    runs[n++] = s;
    runs[n++] = j;
  }
  const chosen: HeadSelection = { spans: runs.slice(0, n) };
  const always: HeadSelection = {
    spans: length > clustered ? Int32Array.of(clustered, length) : new Int32Array(0),
  };
  return unionSelections(chosen, always);
}

// ---------------------------------------------------------------------------
// Calibration.

/** Options of {@linkcode calibrateSqueezed}. */
export interface SqueezedCalibrationOptions {
  /**
   * Target sparsity of the fine (or only) level: the quantile whose threshold
   * is returned as `threshold` (the authors' `percentile`; `pred.py` default
   * 0.5, their example script 0.9). Prunes about this fraction of the
   * clustered keys on the calibration queries.
   * @default {0.5}
   */
  sparsity?: number;
  /** Two-level index: target sparsity of level 1 (`percentile_lower`). @default {0.7} */
  coarseSparsity?: number;
  /** Further quantiles to report thresholds for. @default {[0.5, 0.7, 0.8, 0.9]} */
  quantiles?: readonly number[];
  /** RoPE to rotate the raw queries with. Omit when the queries are already rotated (or no RoPE). */
  rope?: RotaryEncoding;
  /**
   * Position of each query token, or of the first one (the rest follow).
   * @default {fixedLength − queryTokens: the last tokens of the fixed context}
   */
  positions?: number | ArrayLike<number>;
  /** Multiplies q·centroid (× `rope.attentionFactor²` when a rope is given). @default {1 / Math.sqrt(headDim)} */
  scale?: number;
  /** Pool per query head, or per KV head on the group's mean `p̂`, as the selection does. @default {"kv-head"} */
  gqa?: "kv-head" | "query-head";
}

/** Result of {@linkcode calibrateSqueezed}: plain data. */
export interface SqueezedCalibration {
  /** Target sparsity of the fine level. */
  readonly sparsity: number;
  /** Fine-level threshold at `sparsity`. */
  readonly threshold: number;
  /** Level-1 target sparsity (two-level index only). */
  readonly coarseSparsity?: number;
  /** Level-1 threshold at `coarseSparsity` (two-level index only). */
  readonly coarseThreshold?: number;
  /** The reported quantiles. */
  readonly quantiles: readonly number[];
  /** Fine-level threshold at each quantile. */
  readonly thresholds: readonly number[];
  /** Level-1 threshold at each quantile (two-level index only). */
  readonly coarseThresholds?: readonly number[];
}

/**
 * Linear-interpolation quantiles (numpy's default) of a multiset given as
 * distinct-or-not values with integer weights (value `v[i]` repeated `w[i]` times).
 */
function weightedQuantiles(
  values: Float64Array,
  weights: Int32Array,
  qs: readonly number[],
): number[] {
  const n = values.length;
  const order = new Int32Array(n);
  let total = 0;
  let m = 0;
  for (let i = 0; i < n; i++) {
    if (weights[i]! > 0) {
      order[m++] = i;
      total += weights[i]!;
    }
  }
  const idx = order.subarray(0, m).sort((a, b) => values[a]! - values[b]!);
  const cum = new Float64Array(m);
  let acc = 0;
  for (let t = 0; t < m; t++) cum[t] = acc += weights[idx[t]!]!;
  // Value at 0-based rank r of the expanded multiset.
  const at = (r: number): number => {
    let lo = 0, hi = m - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cum[mid]! > r) hi = mid;
      else lo = mid + 1;
    }
    return values[idx[lo]!]!;
  };
  return qs.map((q) => {
    if (total === 0) return -Infinity;
    const h = q * (total - 1);
    const lo = Math.floor(h);
    const a = at(lo);
    return lo + 1 < total ? a + (h - lo) * (at(lo + 1) - a) : a;
  });
}

/**
 * Offline step: the global threshold(s) from sample queries, usually the
 * queries of the fixed context's observation window. Per head, every
 * clustered key gets the importance `I_j = mean over queries of p̂` of its
 * cluster (see {@linkcode centroidLookup}); the importances of every key of
 * every head and layer are pooled, and the quantiles of that pool are the
 * thresholds. Keeping keys with `p̂ > threshold(q)` then prunes about a
 * fraction `q` of the keys on these queries — globally: heads with flat
 * attention keep more keys, peaked ones fewer.
 *
 * For a two-level index, level 1 is calibrated on the coarse clusters and
 * level 2 on the fine clusters, each with full denominators (as the authors do).
 *
 * @param index The index of the fixed context.
 * @param queries One tensor per layer, `[queryTokens, heads, headDim]`, raw when `rope` is given.
 * @param options Target sparsity, quantiles, RoPE and positions, scale, GQA pooling.
 * @returns Thresholds (plain data).
 * @throws {TypeError} If the queries' head dim or head count does not fit the index.
 * @throws {RangeError} If a quantile is outside `[0, 1]` or a query is not finite.
 *
 * @example Calibrate for 90% sparsity on the last 20 fixed-context queries
 * ```ts
 * import { buildSqueezedIndex, calibrateSqueezed } from "@longctx/longctx/attention";
 * import { randn, sliceAxis } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const keys = randn([300, 1, 8], { seed: 1 }), queries = randn([300, 2, 8], { seed: 2 });
 * const index = buildSqueezedIndex([keys], { observationWindow: 20, clusterFraction: 0.1 });
 * const cal = calibrateSqueezed(index, [sliceAxis(queries, 0, 280, 300)], { sparsity: 0.9 });
 * assert.ok(cal.threshold >= cal.thresholds[0]); // the 0.9 quantile is above the median
 * ```
 */
export function calibrateSqueezed(
  index: SqueezedIndex,
  queries: readonly Tensor[],
  options: SqueezedCalibrationOptions = {},
): SqueezedCalibration {
  const action = "calibrate Squeezed";
  checkIndexOnce(action, index);
  const quantile = (name: string, v: unknown): number => {
    const x = requireFinite(action, name, v);
    if (x < 0 || x > 1) {
      throw new RangeError(`Cannot ${action}: ${name} must be in [0, 1], got ${describeValue(x)}`);
    }
    return x;
  };
  const sparsity = quantile("sparsity", options.sparsity ?? 0.5);
  const coarseSparsity = quantile("coarseSparsity", options.coarseSparsity ?? 0.7);
  const qs = [...(options.quantiles ?? DEFAULT_SQUEEZED_QUANTILES)].map((q, i) =>
    quantile(`quantiles[${i}]`, q)
  );
  const gqa = requireOneOf(
    action,
    "gqa",
    options.gqa ?? "kv-head",
    [
      "kv-head",
      "query-head",
    ] as const,
  );
  if (!Array.isArray(queries) || queries.length !== index.layers) {
    throw new TypeError(
      `Cannot ${action}: queries must hold one tensor per layer (${index.layers}), got ${
        describeValue((queries as unknown[])?.length)
      }`,
    );
  }
  const d = index.headDim;
  const rope = options.rope;
  if (rope !== undefined && rope.headDim !== d) {
    throw new TypeError(
      `Cannot ${action}: rope headDim (${rope.headDim}) does not match index headDim (${d})`,
    );
  }
  const factor = rope?.attentionFactor ?? 1;
  const scale =
    (options.scale === undefined
      ? 1 / Math.sqrt(d)
      : requireFinite(action, "scale", options.scale)) * factor * factor;
  const two = index.heads[0]?.coarse !== undefined;
  const fineVals: number[] = [], fineW: number[] = [];
  const coarseVals: number[] = [], coarseW: number[] = [];
  for (let l = 0; l < index.layers; l++) {
    const t = queries[l]!;
    requireThd(action, `queries[${l}]`, t);
    const [tq, heads, qd] = t.shape as [number, number, number];
    if (qd !== d) {
      throw new TypeError(
        `Cannot ${action}: queries[${l}] headDim (${qd}) does not match index headDim (${d})`,
      );
    }
    if (heads % index.kvHeads !== 0 || heads === 0) {
      throw new TypeError(
        `Cannot ${action}: queries[${l}] heads (${heads}) must be a multiple of the index kvHeads (${index.kvHeads})`,
      );
    }
    if (tq === 0) {
      throw new RangeError(`Cannot ${action}: queries[${l}] must hold at least one token, got 0`);
    }
    const positions = resolvePositions(action, options.positions, tq, index.fixedLength);
    const g = heads / index.kvHeads;
    const rowsPer = gqa === "kv-head" ? g : 1;
    for (let kh = 0; kh < index.kvHeads; kh++) {
      const head = index.heads[l * index.kvHeads + kh]!;
      for (let part = 0; part < g / rowsPer; part++) {
        const h0 = kh * g + part * rowsPer;
        const q = loadRows(action, t, 0, tq, h0, rowsPer, rope, positions);
        const add = (cl: Clusters, vals: number[], ws: number[]): void => {
          const k = cl.sizes.length;
          const cand = new Int32Array(k).map((_, i) => i);
          const p = new Float64Array(k);
          lookupInto(cl, q, tq * rowsPer, scale, cand, k, p, new Float64Array(4 * k));
          for (let c = 0; c < k; c++) {
            vals.push(p[c]!);
            ws.push(cl.sizes[c]!);
          }
        };
        add(head.fine, fineVals, fineW);
        if (two) add(head.coarse!, coarseVals, coarseW);
      }
    }
  }
  const fine = weightedQuantiles(
    Float64Array.from(fineVals),
    Int32Array.from(fineW),
    [sparsity, ...qs],
  );
  if (!two) {
    return { sparsity, threshold: fine[0]!, quantiles: qs, thresholds: fine.slice(1) };
  }
  const coarse = weightedQuantiles(
    Float64Array.from(coarseVals),
    Int32Array.from(coarseW),
    [coarseSparsity, ...qs],
  );
  return {
    sparsity,
    threshold: fine[0]!,
    coarseSparsity,
    coarseThreshold: coarse[0]!,
    quantiles: qs,
    thresholds: fine.slice(1),
    coarseThresholds: coarse.slice(1),
  };
}

function resolvePositions(
  action: string,
  positions: number | ArrayLike<number> | undefined,
  tq: number,
  fixedLength: number,
): Float64Array {
  const out = new Float64Array(tq);
  if (positions === undefined || typeof positions === "number") {
    const p0 = positions === undefined
      ? fixedLength - tq
      : requireFinite(action, "positions", positions);
    for (let i = 0; i < tq; i++) out[i] = p0 + i;
    return out;
  }
  if (positions.length !== tq) {
    throw new TypeError(
      `Cannot ${action}: positions must have one entry per query token (${tq}), got ${positions.length}`,
    );
  }
  for (let i = 0; i < tq; i++) out[i] = requireFinite(action, `positions[${i}]`, positions[i]);
  return out;
}

/**
 * Copies query rows (tokens `[t0, t0 + tn)` × heads `[h0, h0 + hn)`, token-major)
 * into a contiguous f32 buffer (`into`, or a new one), rotated to their
 * positions when a rope is given, checking finiteness.
 */
function loadRows(
  action: string,
  t: Tensor,
  t0: number,
  tn: number,
  h0: number,
  hn: number,
  rope: RotaryEncoding | undefined,
  positions: Float64Array | undefined,
  into?: Float32Array,
): Float32Array {
  const d = t.shape[2]!;
  const out = into ?? new Float32Array(tn * hn * d);
  const [s0, s1] = t.strides as [number, number, number];
  for (let i = 0; i < tn; i++) {
    for (let h = 0; h < hn; h++) {
      const src = t.offset + (t0 + i) * s0 + (h0 + h) * s1;
      const dst = (i * hn + h) * d;
      for (let c = 0; c < d; c++) {
        const v = t.data[src + c]!;
        if (!Number.isFinite(v)) {
          throw new RangeError(
            `Cannot ${action}: queries must be finite, got ${describeValue(v)} at token ${
              t0 + i
            }, head ${h0 + h}, element ${c}`,
          );
        }
      }
      if (rope !== undefined) {
        rope.rotateRow(t.data as FloatArray, src, out, dst, positions![t0 + i]!);
      } else {
        for (let c = 0; c < d; c++) out[dst + c] = t.data[src + c]!;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Save and load.

/**
 * Serializes an index (and optionally its calibration) with
 * `encodeClusterSet`'s checksummed binary format; the Squeezed fields
 * (`fixedLength`, `observationWindow`, the calibration) go in the header's
 * `meta` as `{ technique: "squeezed-attention", fixedLength, observationWindow, calibration }`.
 *
 * @param index The index.
 * @param options `calibration` to store with it.
 * @returns The file's bytes.
 * @throws {TypeError} / {RangeError} If the index is malformed.
 *
 * @example Save, load, same clusters
 * ```ts
 * import { buildSqueezedIndex, loadSqueezedIndex, saveSqueezedIndex } from "@longctx/longctx/attention";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const index = buildSqueezedIndex([randn([64, 1, 4], { seed: 1 })], { observationWindow: 4, clusters: 6 });
 * const { index: back } = loadSqueezedIndex(saveSqueezedIndex(index));
 * assert.deepEqual(back.heads[0].fine.assignments, index.heads[0].fine.assignments);
 * assert.equal(back.fixedLength, 64);
 * ```
 */
export function saveSqueezedIndex(
  index: SqueezedIndex,
  options: { calibration?: SqueezedCalibration } = {},
): Uint8Array {
  checkIndexOnce("save Squeezed index", index);
  const meta: Record<string, unknown> = {
    technique: "squeezed-attention",
    fixedLength: index.fixedLength,
    observationWindow: index.observationWindow,
  };
  if (options.calibration !== undefined) {
    // JSON has no ±Infinity: keep thresholds as strings when not finite.
    meta.calibration = JSON.parse(
      JSON.stringify(
        options.calibration,
        (_k, v) => typeof v === "number" && !Number.isFinite(v) ? String(v) : v,
      ),
    );
  }
  const set: ClusterSet = {
    layers: index.layers,
    kvHeads: index.kvHeads,
    headDim: index.headDim,
    points: index.clustered,
    heads: index.heads,
    meta,
  };
  return encodeClusterSet(set);
}

/**
 * Loads what {@linkcode saveSqueezedIndex} wrote, checking the checksum and
 * every invariant.
 *
 * @param bytes The file's bytes.
 * @returns The index, and the calibration when one was saved.
 * @throws {TypeError} If the file is not a Squeezed index, is truncated or
 *   corrupted, or its metadata is inconsistent; the message says which.
 *
 * @example A truncated file is rejected
 * ```ts
 * import { buildSqueezedIndex, loadSqueezedIndex, saveSqueezedIndex } from "@longctx/longctx/attention";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const bytes = saveSqueezedIndex(buildSqueezedIndex([randn([40, 1, 4], { seed: 1 })], { observationWindow: 0, clusters: 4 }));
 * assert.throws(() => loadSqueezedIndex(bytes.subarray(0, bytes.length - 8)), TypeError);
 * ```
 */
export function loadSqueezedIndex(
  bytes: Uint8Array,
): { index: SqueezedIndex; calibration?: SqueezedCalibration } {
  const action = "load Squeezed index";
  const set = decodeClusterSet(bytes);
  const meta = set.meta ?? {};
  if (meta.technique !== "squeezed-attention") {
    throw new TypeError(
      `Cannot ${action}: meta.technique must be "squeezed-attention", got ${
        describeValue(meta.technique)
      }`,
    );
  }
  const fixedLength = meta.fixedLength, obs = meta.observationWindow;
  if (
    typeof fixedLength !== "number" || typeof obs !== "number" || !Number.isSafeInteger(obs) ||
    obs < 0 || fixedLength !== set.points + obs || fixedLength < 1
  ) {
    throw new TypeError(
      `Cannot ${action}: meta.fixedLength (${
        describeValue(fixedLength)
      }) must equal the ${set.points} clustered keys + meta.observationWindow (${
        describeValue(obs)
      })`,
    );
  }
  const index: SqueezedIndex = {
    layers: set.layers,
    kvHeads: set.kvHeads,
    headDim: set.headDim,
    fixedLength,
    observationWindow: obs,
    clustered: set.points,
    heads: set.heads,
  };
  validated.add(index);
  const cal = meta.calibration;
  if (cal === undefined) return { index };
  const num = (v: unknown): number => typeof v === "string" ? Number(v) : v as number;
  const arr = (v: unknown): number[] | undefined =>
    Array.isArray(v) ? v.map(num) : v === undefined ? undefined : [NaN];
  const c = cal as Record<string, unknown>;
  const calibration = {
    sparsity: num(c.sparsity),
    threshold: num(c.threshold),
    quantiles: arr(c.quantiles) ?? [],
    thresholds: arr(c.thresholds) ?? [],
    ...(c.coarseThreshold !== undefined
      ? {
        coarseSparsity: num(c.coarseSparsity),
        coarseThreshold: num(c.coarseThreshold),
        coarseThresholds: arr(c.coarseThresholds) ?? [],
      }
      : {}),
  } as SqueezedCalibration;
  const all = [
    calibration.sparsity,
    calibration.threshold,
    ...calibration.quantiles,
    ...calibration.thresholds,
    ...(calibration.coarseThresholds ?? []),
  ];
  if (
    all.some((v) => typeof v !== "number" || Number.isNaN(v)) ||
    calibration.thresholds.length !== calibration.quantiles.length
  ) {
    throw new TypeError(
      `Cannot ${action}: meta.calibration must hold numeric sparsity, threshold, quantiles and thresholds, got ${
        JSON.stringify(cal)
      }`,
    );
  }
  return { index, calibration };
}

// ---------------------------------------------------------------------------
// Online: the pipeline selector.

/** Options of {@linkcode SqueezedAttention}. */
export interface SqueezedAttentionOptions extends SqueezedSelectionOptions {
  /** The index of the fixed context held in cache indices `[0, N)`; or set later with `useIndex`. */
  index?: SqueezedIndex;
}

/** Cumulative accounting of a {@linkcode SqueezedAttention} selector. */
export interface SqueezedStats {
  /** Lookups run (one per query token × KV head, or × query head in `"query-head"` mode). */
  lookups: number;
  /** Centroids scored (both levels), summed over lookups. */
  centroidsScored: number;
  /** Clustered keys kept, summed over lookups. */
  keysKept: number;
  /** Clustered keys considered (`clustered` per lookup), summed over lookups. */
  keysConsidered: number;
}

/**
 * Squeezed Attention as a pipeline {@linkcode Selector}. For a query after
 * the fixed context (cache indices `[0, N)`, indexed by
 * {@linkcode buildSqueezedIndex}), it rotates the query to its position,
 * scores the centroids (one or two levels, {@linkcode centroidLookup}),
 * keeps clusters by threshold or top-k budget, and selects the kept
 * clusters' keys ∪ the observation window ∪ every token after the fixed
 * context, at original positions. The pipeline's single exact softmax over
 * that union is the paper's sparse + dense LSE merge.
 *
 * Queries inside the fixed context (`length ≤ N`), and every query before an
 * index is set, read everything (dense). Prefill of the user input selects
 * per query token (the authors share one key set across the user input;
 * {@linkcode squeezedAttention} offers both).
 *
 * The store must keep the fixed context in place (`needs: "all"`, so a
 * pipeline rejects evicting cache policies).
 *
 * | cost per query token and KV head | |
 * | --- | --- |
 * | lookup | O(C·d·rows) (two-level: O((C₁ + surviving C)·d·rows)) |
 * | selection | O(N) byte scan + O(kept keys) |
 * | attend | kept keys + observation window + dynamic tokens |
 *
 * @see https://arxiv.org/abs/2411.09688
 *
 * @example Fixed context offline, user input online at a 25% budget
 * ```ts
 * import { AttentionPipeline, SqueezedAttention, buildSqueezedIndex } from "@longctx/longctx/attention";
 * import { Rope } from "@longctx/longctx/positional";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const squeezed = new SqueezedAttention({ budget: 0.25 });
 * const pipe = new AttentionPipeline({ layers: 1, heads: 4, kvHeads: 2, headDim: 8, rope: new Rope({ headDim: 8 }), selector: squeezed });
 * pipe.append(0, randn([400, 2, 8], { seed: 1 }), randn([400, 2, 8], { seed: 2 })); // the fixed context
 * squeezed.useIndex(buildSqueezedIndex(pipe.store, { observationWindow: 16 }));
 * pipe.attend(0, randn([5, 4, 8], { seed: 3 }), randn([5, 2, 8], { seed: 4 }), randn([5, 2, 8], { seed: 5 }));
 * const read = pipe.lastStats.tokensPerHead[0] / 5; // per query token
 * assert.ok(read < 0.4 * 405);
 * ```
 */
export class SqueezedAttention implements Selector {
  /** `"squeezed"`. */
  readonly name: string = "squeezed";
  /** Original positions. */
  readonly positions = "original" as const;
  /** The whole fixed context stays in place. */
  readonly needs: HistoryNeed = { kind: "all" };
  /** Accounting since construction or {@linkcode SqueezedAttention.resetStats}. */
  readonly stats: SqueezedStats = {
    lookups: 0,
    centroidsScored: 0,
    keysKept: 0,
    keysConsidered: 0,
  };

  #index: SqueezedIndex | undefined;
  #o: ResolvedSelection;
  #q = new Float32Array(0);

  /**
   * Creates the selector.
   *
   * @param options Index, threshold or budget, GQA mode, scale.
   * @throws {TypeError} If neither or both of threshold and budget are given, or the index is malformed.
   * @throws {RangeError} If a fraction or threshold is out of range.
   */
  constructor(options: SqueezedAttentionOptions) {
    this.#o = resolveSelection("create SqueezedAttention", options);
    if (options.index !== undefined) this.useIndex(options.index);
  }

  /** The index in use, if any. */
  get index(): SqueezedIndex | undefined {
    return this.#index;
  }

  /**
   * Sets the index of the fixed context now in the store (after the offline prefill).
   *
   * @param index From {@linkcode buildSqueezedIndex} or {@linkcode loadSqueezedIndex}.
   * @throws {TypeError} / {RangeError} If it is malformed.
   */
  useIndex(index: SqueezedIndex): void {
    checkIndexOnce("use Squeezed index", index);
    this.#index = index;
  }

  /** Zeroes {@linkcode SqueezedAttention.stats}. */
  resetStats(): void {
    this.stats.lookups = 0;
    this.stats.centroidsScored = 0;
    this.stats.keysKept = 0;
    this.stats.keysConsidered = 0;
  }

  /**
   * Chooses the tokens one query reads for one KV head.
   *
   * @param ctx The selection context.
   * @returns One selection for the group (`"kv-head"`) or one per query head.
   * @throws {TypeError} If the index does not fit the store (KV heads, head dim).
   * @throws {RangeError} If the layer is beyond the index.
   */
  select(ctx: SelectContext): HeadSelection | readonly HeadSelection[] {
    const index = this.#index;
    const n = ctx.length;
    if (index === undefined || n <= index.fixedLength) return selectAll(n);
    const action = "select with SqueezedAttention";
    const d = index.headDim;
    if (ctx.store.headDim !== d || ctx.store.kvHeads !== index.kvHeads) {
      throw new TypeError(
        `Cannot ${action}: the index has kvHeads ${index.kvHeads} and headDim ${d}, but the store has kvHeads ${ctx.store.kvHeads} and headDim ${ctx.store.headDim}`,
      );
    }
    if (ctx.layer >= index.layers) {
      throw new RangeError(
        `Cannot ${action}: the index covers layers [0, ${index.layers}), got layer ${ctx.layer}`,
      );
    }
    const head = index.heads[ctx.layer * index.kvHeads + ctx.kvHead]!;
    const g = ctx.group;
    if (this.#q.length < g * d) this.#q = new Float32Array(g * d);
    const q = this.#q;
    const rope = ctx.rope;
    for (let r = 0; r < g; r++) {
      if (rope !== undefined) rope.rotateRow(ctx.query, r * d, q, r * d, ctx.queryPosition);
      else q.set(ctx.query.subarray(r * d, r * d + d), r * d);
    }
    const factor = rope?.attentionFactor ?? 1;
    const scale = (this.#o.scale ?? 1 / Math.sqrt(d)) * factor * factor;
    const clustered = index.clustered;
    grow(Math.max(head.fine.sizes.length, head.coarse?.sizes.length ?? 0), clustered);
    const count: LookupCount = { centroids: 0, keys: 0 };
    let result: HeadSelection | HeadSelection[];
    if (this.#o.gqa === "kv-head" || g === 1) {
      chooseClusters(head, q, g, scale, this.#o, clustered, count);
      result = spansOf(head, clustered, n);
      this.stats.lookups++;
    } else {
      result = [];
      for (let r = 0; r < g; r++) {
        chooseClusters(head, q.subarray(r * d, r * d + d), 1, scale, this.#o, clustered, count);
        result.push(spansOf(head, clustered, n));
      }
      this.stats.lookups += g;
    }
    this.stats.centroidsScored += count.centroids;
    this.stats.keysKept += count.keys;
    this.stats.keysConsidered += clustered * (Array.isArray(result) ? g : 1);
    return result;
  }
}

// ---------------------------------------------------------------------------
// Online: the standalone function.

/** Options of {@linkcode squeezedAttention}. */
export interface SqueezedAttentionCallOptions extends SqueezedSelectionOptions {
  /** The index of the fixed context, keys `[0, N)` of `input.key`. */
  index: SqueezedIndex;
  /** Layer of the index. @default {0} */
  layer?: number;
  /**
   * `"call"`: one key set per head for all query tokens, from `p̂` averaged
   * over them (the authors' user-input prefill; identical for one token);
   * `"token"`: per query token. @default {"call"}
   */
  share?: "call" | "token";
  /**
   * Index on the key axis of query 0; queries must follow the fixed context
   * (`queryOffset ≥ N`). @default {keyTokens − queryTokens}
   */
  queryOffset?: number;
}

/** Result of {@linkcode squeezedAttention}. */
export interface SqueezedAttentionResult extends AttentionState {
  /** Fixed-context keys read per query token and head (kept clusters + observation window), `[queryTokens · heads]`. */
  readonly fixedKeysRead: Int32Array;
  /** The sparse attention over the selected fixed-context keys. */
  readonly fixedState: AttentionState;
  /** The dense causal attention over the dynamic keys `[N, keyTokens)`. */
  readonly dynamicState: AttentionState;
}

/**
 * Squeezed Attention on plain tensors, as the paper computes it: exact
 * attention of each query over the selected fixed-context keys, dense causal
 * attention over the dynamic keys after the fixed context, merged with
 * `mergeStates` (log-sum-exp).
 *
 * Queries and keys are used as given (rotate them with RoPE first, as for
 * `denseAttention`); keys `[0, N)` must be the fixed context the index was
 * built from.
 *
 * | cost | |
 * | --- | --- |
 * | lookup | O(C·d) per (query row, KV head); `share: "call"` averages the rows, one selection per head |
 * | attend | O((kept + obs)·d) per query row + dense over the dynamic part |
 *
 * @see https://arxiv.org/abs/2411.09688
 *
 * @param input Queries `[queryTokens, heads, headDim]`, keys and values
 *   `[keyTokens, kvHeads, headDim]` with `keyTokens ≥ N`.
 * @param options Index, layer, threshold or budget, sharing, offsets.
 * @returns `{ out, lse }` plus the two partial states and the keys read.
 * @throws {TypeError} If shapes do not fit each other or the index.
 * @throws {RangeError} If queries precede the end of the fixed context, or an option is out of range.
 *
 * @example Keep everything: equals dense attention
 * ```ts
 * import { buildSqueezedIndex, denseAttention, squeezedAttention } from "@longctx/longctx/attention";
 * import { randn, sliceAxis } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const key = randn([120, 1, 8], { seed: 1 }), value = randn([120, 1, 8], { seed: 2 });
 * const query = randn([3, 2, 8], { seed: 3 });
 * const index = buildSqueezedIndex([sliceAxis(key, 0, 0, 100)], { observationWindow: 10 });
 * const got = squeezedAttention({ query, key, value }, { index, threshold: -Infinity });
 * const want = denseAttention({ query, key, value });
 * got.out.data.forEach((x, i) => assert.ok(Math.abs(x - want.out.data[i]) < 1e-5));
 * ```
 */
export function squeezedAttention(
  input: AttentionInput,
  options: SqueezedAttentionCallOptions,
): SqueezedAttentionResult {
  const action = "compute Squeezed attention";
  const o = resolveSelection(action, options);
  const index = options.index;
  checkIndexOnce(action, index);
  const { query, key, value } = input;
  const g0 = checkQkv(action, query, key, value);
  const { queryTokens: tq, heads, headDim: d, keyTokens: tk, kvHeads, group } = g0;
  if (d !== index.headDim || kvHeads !== index.kvHeads) {
    throw new TypeError(
      `Cannot ${action}: the index has kvHeads ${index.kvHeads} and headDim ${index.headDim}, but the keys have kvHeads ${kvHeads} and headDim ${d}`,
    );
  }
  const layer = requireNonNegativeInt(action, "layer", options.layer ?? 0);
  if (layer >= index.layers) {
    throw new RangeError(
      `Cannot ${action}: layer must be in [0, ${index.layers}), got ${layer}`,
    );
  }
  const N = index.fixedLength;
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
  const share = requireOneOf(action, "share", options.share ?? "call", ["call", "token"] as const);
  const scale = o.scale ?? 1 / Math.sqrt(d);
  const clustered = index.clustered;

  // Fixed part: exact attention over the selected fixed keys (all precede every query).
  const fixed: AttentionState = {
    out: zeros("f32", [tq, heads, d], { layout: "thd" }),
    lse: zeros("f32", [tq, heads]),
  };
  const fixedKeysRead = new Int32Array(tq * heads);
  const perHead = o.gqa === "query-head" && group > 1;
  const rowsPerSel = perHead ? 1 : group;
  const w = ensureGroupWorkspace(group, d);
  const rowOut = new Int32Array(group), rowLse = new Int32Array(group);
  const [ks0, ks1] = key.strides as [number, number, number];
  const [vs0, vs1] = value.strides as [number, number, number];
  const count: LookupCount = { centroids: 0, keys: 0 };
  const qRows = new Float32Array(rowsPerSel * d);
  for (let kh = 0; kh < kvHeads; kh++) {
    const head = index.heads[layer * kvHeads + kh]!;
    grow(Math.max(head.fine.sizes.length, head.coarse?.sizes.length ?? 0), clustered);
    for (let part = 0; part < group / rowsPerSel; part++) {
      const h0 = kh * group + part * rowsPerSel;
      let shared: HeadSelection | undefined;
      if (share === "call") {
        const q = loadRows(action, query, 0, tq, h0, rowsPerSel, undefined, undefined);
        chooseClusters(head, q, tq * rowsPerSel, scale, o, clustered, count);
        shared = spansOf(head, clustered, N);
      }
      for (let t = 0; t < tq; t++) {
        let sel = shared;
        const q = loadRows(action, query, t, 1, h0, rowsPerSel, undefined, undefined, qRows);
        if (sel === undefined) {
          chooseClusters(head, q, rowsPerSel, scale, o, clustered, count);
          sel = spansOf(head, clustered, N);
        }
        resetRows(w, rowsPerSel, d);
        w.visible.fill(0x7fffffff, 0, rowsPerSel);
        w.q.set(q.subarray(0, rowsPerSel * d));
        let read = 0;
        for (let i = 0; i < sel.spans.length; i += 2) {
          const s = sel.spans[i]!, e = sel.spans[i + 1]!;
          read += e - s;
          foldRun(
            w,
            rowsPerSel,
            d,
            key.data as FloatArray,
            key.offset + s * ks0 + kh * ks1,
            value.data as FloatArray,
            value.offset + s * vs0 + kh * vs1,
            ks0,
            vs0,
            e - s,
            scale,
            0,
          );
        }
        for (let r = 0; r < rowsPerSel; r++) {
          rowOut[r] = (t * heads + h0 + r) * d;
          rowLse[r] = t * heads + h0 + r;
          fixedKeysRead[t * heads + h0 + r] = read;
        }
        finishRows(w, rowsPerSel, d, fixed.out.data, rowOut, fixed.lse.data, rowLse);
      }
    }
  }
  // Dynamic part: dense causal attention over [N, keyTokens).
  const dynamic = denseAttention(
    { query, key: sliceAxis(key, 0, N, tk), value: sliceAxis(value, 0, N, tk) },
    { causal: true, keyOffset: N, queryOffset, scale },
  );
  const merged = mergeStates([fixed, dynamic]);
  return { ...merged, fixedKeysRead, fixedState: fixed, dynamicState: dynamic };
}
