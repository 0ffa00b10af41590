// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Offline clustering of cached keys: seeded k-means (k-means++ seeding,
 * Lloyd iterations accelerated with Yinyang bounds), a two-level
 * (hierarchical) variant, and a checksummed binary format for the result.
 *
 * The output is plain data — centroids, assignments, sizes — that an online
 * stage (Squeezed Attention's centroid lookup, `attention/squeezed.ts`) takes
 * as an option.
 *
 * ## Geometry
 *
 * `"cosine"` (the default, what Squeezed Attention's authors run): every
 * point is scaled to unit length and Lloyd's algorithm runs with Euclidean
 * distance on the unit vectors, so points are grouped by direction. The
 * **reported centroid of a cluster is the mean of its raw (un-normalized)
 * points**, a vector in the space the points came from, so ⟨q, centroid⟩ is
 * the mean of the member logits ⟨q, k⟩. `"euclidean"` clusters the raw points.
 *
 * ## Binary format (`encodeClusterSet` / `decodeClusterSet`), version 1
 *
 * All numbers little-endian.
 *
 * | offset | bytes | content |
 * | --- | --- | --- |
 * | 0 | 4 | magic `"LCKM"` |
 * | 4 | 4 | u32 format version (1) |
 * | 8 | 4 | u32 `J`, byte length of the JSON header |
 * | 12 | J, padded to a multiple of 4 with spaces | UTF-8 JSON header: `{ layers, kvHeads, headDim, points, clusters, coarseClusters, meta }` |
 * | … | per `(layer, kvHead)`, layer-major | f32 `centroids[clusters·headDim]`, i32 `sizes[clusters]`, i32 `assignments[points]`; when `coarseClusters > 0` also f32 `coarseCentroids[coarseClusters·headDim]`, i32 `coarseSizes[coarseClusters]`, i32 `coarseAssignments[points]`, i32 `parent[clusters]` |
 * | end − 4 | 4 | u32 CRC-32 (IEEE 802.3, as zlib) of every preceding byte |
 *
 * Decoding checks the magic, version, lengths and checksum, then every
 * invariant (assignments in range, sizes equal to the assignment counts,
 * finite centroids, parents consistent with both levels), so a truncated or
 * corrupted file fails with a `TypeError` that says what is wrong.
 *
 * @module
 */

import type { FloatDType, Tensor } from "../tensor/types.ts";
import { Rng } from "../tensor/random.ts";
import {
  describeValue,
  requireFinite,
  requireInt,
  requireNonNegativeInt,
  requireOneOf,
  requirePositiveInt,
} from "../tensor/validate.ts";

/** How points are compared while clustering (see the module doc). */
export type KmeansGeometry = "cosine" | "euclidean";

/** Default cap on Lloyd iterations (the Squeezed Attention authors' `max_iter`). */
export const DEFAULT_KMEANS_ITERATIONS = 300;

/** Default relative tolerance on the total squared centre shift (scikit-learn and cuML's `tol`). */
export const DEFAULT_KMEANS_TOLERANCE = 1e-4;

/**
 * One level of clusters over `points` vectors of `headDim` elements: plain
 * data, no methods.
 */
export interface Clusters {
  /** Elements per vector. */
  readonly headDim: number;
  /**
   * Centroids, `[clusters, headDim]` row-major: the mean of the raw points of
   * each cluster; a zero vector for an empty cluster.
   */
  readonly centroids: Float32Array;
  /** Points per cluster, `[clusters]`; sums to the number of points. */
  readonly sizes: Int32Array;
  /** Cluster of each point, `[points]`, in `[0, clusters)`. */
  readonly assignments: Int32Array;
}

/** A coarse level over fine clusters (two-level lookup). */
export interface CoarseClusters extends Clusters {
  /** Coarse cluster of each fine cluster, `[fineClusters]`. */
  readonly parent: Int32Array;
}

/**
 * The clusters of one head's keys: a fine level and, for two-level lookup, a
 * coarse level whose clusters are unions of fine clusters
 * (`coarse.assignments[j] == coarse.parent[fine.assignments[j]]`).
 */
export interface KeyClusters {
  /** The fine (or only) level. */
  readonly fine: Clusters;
  /** The coarse level, if hierarchical. */
  readonly coarse?: CoarseClusters;
}

/** Options of {@linkcode kmeans}. */
export interface KmeansOptions {
  /** Number of clusters `k`, in `[1, points]`. */
  clusters: number;
  /** Geometry. @default {"cosine"} */
  geometry?: KmeansGeometry;
  /** Most Lloyd iterations (centre updates). @default {300} */
  iterations?: number;
  /**
   * Stop when the total squared centre shift of an iteration is at most
   * `tolerance × mean per-dimension variance` of the (normalized) points
   * (scikit-learn's rule); 0 runs until assignments stop changing.
   * @default {1e-4}
   */
  tolerance?: number;
  /** Seed of the k-means++ sampling. @default {0} */
  seed?: number;
  /**
   * Initial centres instead of k-means++ seeding, `[clusters, headDim]`
   * row-major, in the input space (scaled to unit length for `"cosine"`).
   */
  init?: Float32Array;
}

/** Result of {@linkcode kmeans}. */
export interface KmeansResult extends Clusters {
  /** Lloyd iterations run (centre updates). */
  readonly iterations: number;
  /** Whether it stopped by convergence rather than the iteration cap. */
  readonly converged: boolean;
  /** Sum of squared distances of the (normalized) points to their k-means centre. */
  readonly inertia: number;
}

/** Points as the algorithm sees them. */
interface Prepared {
  /** Raw points, `[n, d]` f32. */
  raw: Float32Array;
  /** Points in the clustering geometry (unit length for cosine), `[n, d]` f32. */
  x: Float32Array;
  /** Squared norm of each row of `x`, `[n]`. */
  norm2: Float64Array;
  n: number;
  d: number;
}

/** Copies a rank-2 float tensor into contiguous rows, checking finiteness. */
function preparePoints(action: string, points: Tensor, geometry: KmeansGeometry): Prepared {
  if (points === null || typeof points !== "object" || !Array.isArray(points.shape)) {
    throw new TypeError(`Cannot ${action}: points must be a tensor, got ${describeValue(points)}`);
  }
  if (points.shape.length !== 2) {
    throw new TypeError(
      `Cannot ${action}: points must have shape [points, headDim], got shape ${
        describeValue(points.shape)
      }`,
    );
  }
  if (points.dtype !== "f32" && points.dtype !== "f16") {
    throw new TypeError(
      `Cannot ${action}: points dtype must be "f32" or "f16", got ${describeValue(points.dtype)}`,
    );
  }
  const [n, d] = points.shape as [number, number];
  if (n === 0) {
    throw new RangeError(`Cannot ${action}: points must hold at least one row, got 0 rows`);
  }
  if (d === 0) throw new RangeError(`Cannot ${action}: headDim must be positive, got 0`);
  const [s0, s1] = points.strides as [number, number];
  const src = points.data as Float32Array | Float16Array;
  const raw = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    const o = points.offset + i * s0;
    for (let c = 0; c < d; c++) {
      const v = src[o + c * s1]!;
      if (!Number.isFinite(v)) {
        throw new RangeError(
          `Cannot ${action}: points must be finite, got ${
            describeValue(v)
          } at row ${i}, column ${c}`,
        );
      }
      raw[i * d + c] = v;
    }
  }
  const x = geometry === "cosine" ? new Float32Array(n * d) : raw;
  const norm2 = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const o = i * d;
    let s = 0;
    for (let c = 0; c < d; c++) s += raw[o + c]! * raw[o + c]!;
    if (geometry === "cosine") {
      // F.normalize: a zero row stays zero.
      const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
      s = 0;
      for (let c = 0; c < d; c++) {
        const v = Math.fround(raw[o + c]! * inv);
        x[o + c] = v;
        s += v * v;
      }
    }
    norm2[i] = s;
  }
  return { raw, x, norm2, n, d };
}

/** Squared Euclidean distance between row `i` of `a` and row `j` of `b`. */
function dist2(a: Float32Array, i: number, b: Float32Array, j: number, d: number): number {
  let s0 = 0, s1 = 0;
  const ao = i * d, bo = j * d;
  let c = 0;
  for (; c + 2 <= d; c += 2) {
    const u = a[ao + c]! - b[bo + c]!, v = a[ao + c + 1]! - b[bo + c + 1]!;
    s0 += u * u;
    s1 += v * v;
  }
  for (; c < d; c++) {
    const u = a[ao + c]! - b[bo + c]!;
    s0 += u * u;
  }
  return s0 + s1;
}

/**
 * k-means++ seeding (Arthur & Vassilvitskii, 2007): the first centre is a
 * uniform point, each next one a point drawn with probability ∝ D(x)², its
 * squared distance to the nearest centre so far. A point is skipped when the
 * new centre `c` is at least `2·D(x)` from its current nearest centre (the
 * triangle inequality then says `c` cannot be nearer), which leaves the draws
 * unchanged and avoids most distance computations in later steps.
 */
function seedPlusPlus(p: Prepared, k: number, rng: Rng): Float32Array {
  const { x, n, d } = p;
  const centers = new Float32Array(k * d);
  const near = new Float64Array(n); // D(x)²
  const owner = new Int32Array(n); // index of the nearest centre so far
  const cc = new Float64Array(k); // squared distance new centre → centre j
  let first = rng.int(n);
  centers.set(x.subarray(first * d, first * d + d), 0);
  for (let i = 0; i < n; i++) near[i] = dist2(x, i, centers, 0, d);
  for (let c = 1; c < k; c++) {
    let total = 0;
    for (let i = 0; i < n; i++) total += near[i]!;
    if (total > 0) {
      const r = rng.uniform() * total;
      let acc = 0;
      first = n - 1;
      for (let i = 0; i < n; i++) {
        acc += near[i]!;
        if (acc > r && near[i]! > 0) {
          first = i;
          break;
        }
      }
      // Rounding may leave r ≥ acc at the end: take the last point with mass.
      while (near[first]! === 0 && first > 0) first--;
    } else {
      // Every point coincides with a centre (duplicates): any point will do.
      first = rng.int(n);
    }
    centers.set(x.subarray(first * d, first * d + d), c * d);
    for (let j = 0; j < c; j++) cc[j] = dist2(centers, c, centers, j, d);
    for (let i = 0; i < n; i++) {
      const di = near[i]!;
      if (cc[owner[i]!]! >= 4 * di) continue;
      const nd = dist2(x, i, centers, c, d);
      if (nd < di) {
        near[i] = nd;
        owner[i] = c;
      }
    }
  }
  return centers;
}

/** Stores a lower bound in f32 without rounding it up (a bound must stay a bound). */
function down(v: number): number {
  return Math.fround(v > 0 ? v * (1 - 1e-6) : v * (1 + 1e-6));
}

/** Centre groups for the Yinyang bounds: `order[start[g], start[g + 1])` are group g's centres. */
interface Groups {
  count: number;
  of: Int32Array;
  start: Int32Array;
  order: Int32Array;
}

/**
 * Groups the `k` initial centres into `t = ⌊k / 10⌋` groups (1 below 20
 * centres) with five Lloyd steps on the centres themselves, seeded by the
 * first `t` (which k-means++ spreads out), as Yinyang k-means does.
 */
function groupCenters(centers: Float32Array, k: number, d: number): Groups {
  const t = k >= 20 ? Math.floor(k / 10) : 1;
  const of = new Int32Array(k);
  if (t > 1) {
    const g = centers.slice(0, t * d);
    const sums = new Float64Array(t * d), counts = new Int32Array(t);
    for (let it = 0; it < 5; it++) {
      for (let c = 0; c < k; c++) {
        let best = Infinity;
        for (let j = 0; j < t; j++) {
          const v = dist2(centers, c, g, j, d);
          if (v < best) {
            best = v;
            of[c] = j;
          }
        }
      }
      sums.fill(0);
      counts.fill(0);
      for (let c = 0; c < k; c++) {
        counts[of[c]!]!++;
        for (let e = 0; e < d; e++) sums[of[c]! * d + e]! += centers[c * d + e]!;
      }
      for (let j = 0; j < t; j++) {
        if (counts[j]! === 0) continue;
        for (let e = 0; e < d; e++) g[j * d + e] = sums[j * d + e]! / counts[j]!;
      }
    }
  }
  const start = new Int32Array(t + 1);
  for (let c = 0; c < k; c++) start[of[c]! + 1]!++;
  for (let j = 0; j < t; j++) start[j + 1]! += start[j]!;
  const fill = start.slice(0, t);
  const order = new Int32Array(k);
  for (let c = 0; c < k; c++) order[fill[of[c]!]!++] = c;
  return { count: t, of, start, order };
}

/** Per-point state of the assignment step (Yinyang bounds). */
interface AssignState {
  /** Current cluster of each point, `[n]`. */
  label: Int32Array;
  /** Upper bound on the distance to the own centre, `[n]`. */
  upper: Float64Array;
  /** Lower bound on the distance to every other centre of each group, `[n, groups]`. */
  lower: Float32Array;
}

/**
 * First assignment: every point against every centre, four points at a time
 * so each centre row is read once per four points. With `v = |c|² − 2·x·c`
 * (the squared distance minus `|x|²`), keeps per point the nearest centre
 * (lowest index on exact ties, as textbook Lloyd) and per group the smallest
 * and second smallest `v`, from which the bounds follow.
 */
function scanAll(
  p: Prepared,
  centers: Float32Array,
  cnorm: Float64Array,
  gr: Groups,
  st: AssignState,
): void {
  const { x, n, d } = p;
  const t = gr.count;
  const m1 = new Float64Array(4 * t), m2 = new Float64Array(4 * t);
  const bv = new Float64Array(4), bc = new Int32Array(4);
  for (let i0 = 0; i0 < n; i0 += 4) {
    const rows = Math.min(4, n - i0);
    // Rows past n repeat row i0 (their results are dropped).
    const o0 = i0 * d;
    const o1 = rows > 1 ? o0 + d : o0, o2 = rows > 2 ? o0 + 2 * d : o0;
    const o3 = rows > 3 ? o0 + 3 * d : o0;
    let v0b = Infinity, v1b = Infinity, v2b = Infinity, v3b = Infinity;
    let c0b = 0, c1b = 0, c2b = 0, c3b = 0;
    for (let g = 0; g < t; g++) {
      let a0 = Infinity, a1 = Infinity, a2 = Infinity, a3 = Infinity;
      let b0 = Infinity, b1 = Infinity, b2 = Infinity, b3 = Infinity;
      for (let s = gr.start[g]!; s < gr.start[g + 1]!; s++) {
        const c = gr.order[s]!;
        const co = c * d;
        let d0 = 0, d1 = 0, d2 = 0, d3 = 0;
        for (let e = 0; e < d; e++) {
          const cv = centers[co + e]!;
          d0 += x[o0 + e]! * cv;
          d1 += x[o1 + e]! * cv;
          d2 += x[o2 + e]! * cv;
          d3 += x[o3 + e]! * cv;
        }
        const cn = cnorm[c]!;
        const v0 = cn - 2 * d0, v1 = cn - 2 * d1, v2 = cn - 2 * d2, v3 = cn - 2 * d3;
        if (v0 < a0) {
          b0 = a0;
          a0 = v0;
        } else if (v0 < b0) b0 = v0;
        if (v1 < a1) {
          b1 = a1;
          a1 = v1;
        } else if (v1 < b1) b1 = v1;
        if (v2 < a2) {
          b2 = a2;
          a2 = v2;
        } else if (v2 < b2) b2 = v2;
        if (v3 < a3) {
          b3 = a3;
          a3 = v3;
        } else if (v3 < b3) b3 = v3;
        if (v0 < v0b || (v0 === v0b && c < c0b)) {
          v0b = v0;
          c0b = c;
        }
        if (v1 < v1b || (v1 === v1b && c < c1b)) {
          v1b = v1;
          c1b = c;
        }
        if (v2 < v2b || (v2 === v2b && c < c2b)) {
          v2b = v2;
          c2b = c;
        }
        if (v3 < v3b || (v3 === v3b && c < c3b)) {
          v3b = v3;
          c3b = c;
        }
      }
      m1[g] = a0;
      m2[g] = b0;
      m1[t + g] = a1;
      m2[t + g] = b1;
      m1[2 * t + g] = a2;
      m2[2 * t + g] = b2;
      m1[3 * t + g] = a3;
      m2[3 * t + g] = b3;
    }
    bv[0] = v0b;
    bv[1] = v1b;
    bv[2] = v2b;
    bv[3] = v3b;
    bc[0] = c0b;
    bc[1] = c1b;
    bc[2] = c2b;
    bc[3] = c3b;
    for (let r = 0; r < rows; r++) {
      const i = i0 + r;
      const xn = p.norm2[i]!;
      const best = bc[r]!, bg = gr.of[best]!;
      st.label[i] = best;
      st.upper[i] = Math.sqrt(Math.max(0, xn + bv[r]!));
      for (let g = 0; g < t; g++) {
        const v = g === bg ? m2[r * t + g]! : m1[r * t + g]!;
        st.lower[i * t + g] = v === Infinity ? Infinity : down(Math.sqrt(Math.max(0, xn + v)));
      }
    }
  }
}

/**
 * Re-assigns point `i`, whose own centre `a` is at exact distance `u`,
 * scanning only the groups whose lower bound is below `u` (the others cannot
 * hold a nearer centre). Returns whether the label changed.
 */
function rescan(
  p: Prepared,
  i: number,
  u: number,
  centers: Float32Array,
  cnorm: Float64Array,
  gr: Groups,
  st: AssignState,
  m1: Float64Array,
  m2: Float64Array,
): boolean {
  const { x, d } = p;
  const t = gr.count;
  const a = st.label[i]!;
  const xn = p.norm2[i]!;
  const o = i * d;
  const lo = i * t;
  // Best so far: the own centre, in v units.
  const va = u * u - xn;
  let bestV = va, best = a;
  for (let g = 0; g < t; g++) {
    if (!(st.lower[lo + g]! < u)) {
      m1[g] = NaN; // not scanned
      continue;
    }
    let a1 = Infinity, b1 = Infinity;
    for (let s = gr.start[g]!; s < gr.start[g + 1]!; s++) {
      const c = gr.order[s]!;
      const co = c * d;
      let d0 = 0, d1 = 0;
      let e = 0;
      for (; e + 2 <= d; e += 2) {
        d0 += x[o + e]! * centers[co + e]!;
        d1 += x[o + e + 1]! * centers[co + e + 1]!;
      }
      for (; e < d; e++) d0 += x[o + e]! * centers[co + e]!;
      const v = c === a ? va : cnorm[c]! - 2 * (d0 + d1);
      if (v < a1) {
        b1 = a1;
        a1 = v;
      } else if (v < b1) b1 = v;
      if (v < bestV || (v === bestV && c < best)) {
        bestV = v;
        best = c;
      }
    }
    m1[g] = a1;
    m2[g] = b1;
  }
  const bg = gr.of[best]!;
  for (let g = 0; g < t; g++) {
    const scanned = !Number.isNaN(m1[g]!);
    if (scanned) {
      const v = g === bg ? m2[g]! : m1[g]!;
      st.lower[lo + g] = v === Infinity ? Infinity : down(Math.sqrt(Math.max(0, xn + v)));
    } else if (best !== a && g === gr.of[a]!) {
      // The old centre becomes one of the "other" centres of its (unscanned) group.
      st.lower[lo + g] = Math.min(st.lower[lo + g]!, down(u));
    }
  }
  st.label[i] = best;
  st.upper[i] = best === a ? u : Math.sqrt(Math.max(0, xn + bestV));
  return best !== a;
}

/**
 * Lloyd's algorithm from the given centres, accelerated with Yinyang bounds
 * (Ding et al., 2015): the centres are split into groups of about ten; each
 * point keeps an upper bound on the distance to its own centre and, per
 * group, a lower bound on the distance to the group's other centres. After
 * the centres move, the bounds move by the drift of the own centre and of
 * each group's fastest centre; a point whose upper bound stays below every
 * group bound cannot change cluster and is not scanned, and otherwise only
 * the groups whose bound it exceeds are. The assignments are the ones
 * textbook Lloyd makes (lowest index on exact ties).
 */
function lloyd(
  p: Prepared,
  centers: Float32Array,
  k: number,
  maxIter: number,
  tolerance: number,
): { label: Int32Array; iterations: number; converged: boolean } {
  const { x, n, d } = p;
  const cnorm = new Float64Array(k);
  const computeNorms = (): void => {
    for (let c = 0; c < k; c++) {
      let s = 0;
      for (let e = 0; e < d; e++) s += centers[c * d + e]! * centers[c * d + e]!;
      cnorm[c] = s;
    }
  };
  computeNorms();
  const gr = groupCenters(centers, k, d);
  const t = gr.count;
  const st: AssignState = {
    label: new Int32Array(n),
    upper: new Float64Array(n),
    lower: new Float32Array(n * t),
  };
  scanAll(p, centers, cnorm, gr, st);

  // scikit-learn's tolerance: tol × mean per-dimension variance of the data.
  let tol = 0;
  if (tolerance > 0) {
    let v = 0;
    for (let e = 0; e < d; e++) {
      let m = 0, m2 = 0;
      for (let i = 0; i < n; i++) {
        const xv = x[i * d + e]!;
        m += xv;
        m2 += xv * xv;
      }
      m /= n;
      v += Math.max(0, m2 / n - m * m);
    }
    tol = tolerance * (v / d);
  }

  const sums = new Float64Array(k * d);
  const counts = new Int32Array(k);
  const shift = new Float64Array(k);
  const groupShift = new Float64Array(t);
  const m1 = new Float64Array(t), m2 = new Float64Array(t);
  let iterations = 0;
  let converged = false;
  while (iterations < maxIter) {
    // M-step: centres = means of their points; an empty cluster keeps its centre.
    sums.fill(0);
    counts.fill(0);
    for (let i = 0; i < n; i++) {
      const a = st.label[i]!;
      counts[a]!++;
      const so = a * d, xo = i * d;
      for (let e = 0; e < d; e++) sums[so + e]! += x[xo + e]!;
    }
    let total = 0;
    groupShift.fill(0);
    for (let c = 0; c < k; c++) {
      const cnt = counts[c]!;
      let s2 = 0;
      if (cnt > 0) {
        const inv = 1 / cnt;
        for (let e = 0; e < d; e++) {
          const nv = Math.fround(sums[c * d + e]! * inv);
          const dv = nv - centers[c * d + e]!;
          s2 += dv * dv;
          centers[c * d + e] = nv;
        }
      }
      total += s2;
      // Rounded up a little, so the moved bounds stay bounds.
      const sh = Math.sqrt(s2) * (1 + 1e-9);
      shift[c] = sh;
      const g = gr.of[c]!;
      if (sh > groupShift[g]!) groupShift[g] = sh;
    }
    iterations++;
    computeNorms();
    // E-step with bounds.
    let changed = 0;
    for (let i = 0; i < n; i++) {
      const a = st.label[i]!;
      let u = st.upper[i]! + shift[a]!;
      let low = Infinity;
      const lo = i * t;
      for (let g = 0; g < t; g++) {
        const v = down(st.lower[lo + g]! - groupShift[g]!);
        st.lower[lo + g] = v;
        if (v < low) low = v;
      }
      if (u <= low) {
        st.upper[i] = u;
        continue;
      }
      u = Math.sqrt(dist2(x, i, centers, a, d));
      st.upper[i] = u;
      if (u <= low) continue;
      if (rescan(p, i, u, centers, cnorm, gr, st, m1, m2)) changed++;
    }
    if (changed === 0 || total <= tol) {
      converged = true;
      break;
    }
  }
  return { label: st.label, iterations, converged };
}

/** Raw-point means per cluster (zero for empty clusters), sizes, and inertia in `x` space. */
function summarize(
  p: Prepared,
  label: Int32Array,
  k: number,
): { centroids: Float32Array; sizes: Int32Array; inertia: number } {
  const { raw, x, n, d } = p;
  const sums = new Float64Array(k * d);
  const xsum = new Float64Array(k * d);
  const sizes = new Int32Array(k);
  for (let i = 0; i < n; i++) {
    const a = label[i]!;
    sizes[a]!++;
    for (let e = 0; e < d; e++) {
      sums[a * d + e]! += raw[i * d + e]!;
      xsum[a * d + e]! += x[i * d + e]!;
    }
  }
  const centroids = new Float32Array(k * d);
  for (let c = 0; c < k; c++) {
    const cnt = sizes[c]!;
    if (cnt === 0) continue;
    for (let e = 0; e < d; e++) {
      centroids[c * d + e] = sums[c * d + e]! / cnt;
      xsum[c * d + e]! /= cnt;
    }
  }
  let inertia = 0;
  for (let i = 0; i < n; i++) {
    const a = label[i]!;
    for (let e = 0; e < d; e++) {
      const v = x[i * d + e]! - xsum[a * d + e]!;
      inertia += v * v;
    }
  }
  return { centroids, sizes, inertia };
}

/**
 * Seeded k-means: k-means++ seeding, then Lloyd iterations until the
 * assignments stop changing, the centres shift less than the tolerance, or
 * the iteration cap. Deterministic for a given seed on every runtime.
 *
 * Lloyd's steps are accelerated with Yinyang bounds (per point, a lower
 * bound per group of about ten centres; a point whose own centre is provably
 * nearer than every other group is not re-scanned), which changes the cost,
 * not the result. An empty cluster keeps its centre during
 * the iterations and is reported with size 0 and a zero centroid.
 *
 * The reported `centroids` are the means of the **raw** points (see the
 * module doc on geometry); `inertia` is measured in the clustering geometry.
 *
 * | cost (n points, k clusters, d dims) | |
 * | --- | --- |
 * | seeding | O(n·k·d) worst case, far less once the skip test bites |
 * | first assignment | O(n·k·d) |
 * | each later iteration | O(n·(d + k/10)) + O(10·d) per centre group a point's bound does not clear |
 * | memory | 2 copies of the points (cosine) + `n·⌊k/10⌋` f32 bounds + O(k·d) |
 *
 * @see https://theory.stanford.edu/~sergei/papers/kMeansPP-soda.pdf (k-means++)
 * @see https://proceedings.mlr.press/v37/ding15.html (Yinyang k-means)
 *
 * @param points Points, `[points, headDim]` f32 or f16, last stride 1 not
 *   required (a head view of `[tokens, kvHeads, headDim]` keys works).
 * @param options Cluster count, geometry, iteration cap, tolerance, seed.
 * @returns Centroids, sizes, assignments, and run statistics.
 * @throws {TypeError} If `points` is not a rank-2 float tensor, or `init` has the wrong length.
 * @throws {RangeError} If there are no points, a point is not finite, `clusters`
 *   is not in `[1, points]`, or an option is out of range.
 *
 * @example Two well-separated groups, cosine geometry
 * ```ts
 * import { kmeans } from "@longctx/longctx/attention";
 * import { tensor } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const points = tensor(new Float32Array([1, 0.1, 2, 0.1, 0.1, 1, 0.2, 3]), [4, 2]);
 * const r = kmeans(points, { clusters: 2, seed: 1 });
 * assert.equal(r.assignments[0], r.assignments[1]);
 * assert.equal(r.assignments[2], r.assignments[3]);
 * assert.notEqual(r.assignments[0], r.assignments[2]);
 * assert.deepEqual([...r.sizes].sort(), [2, 2]);
 * const c = r.assignments[0];
 * assert.ok(Math.abs(r.centroids[c * 2] - 1.5) < 1e-6); // mean of the raw points 1 and 2
 * ```
 */
export function kmeans(points: Tensor, options: KmeansOptions): KmeansResult {
  const action = "run k-means";
  const o = checkKmeansOptions(action, options);
  const p = preparePoints(action, points, o.geometry);
  if (o.clusters > p.n) {
    throw new RangeError(
      `Cannot ${action}: clusters must be at most the number of points (${p.n}), got ${o.clusters}`,
    );
  }
  return runKmeans(action, p, o);
}

interface ResolvedKmeansOptions {
  clusters: number;
  geometry: KmeansGeometry;
  iterations: number;
  tolerance: number;
  seed: number;
  init: Float32Array | undefined;
}

function checkKmeansOptions(action: string, options: KmeansOptions): ResolvedKmeansOptions {
  if (options === null || typeof options !== "object") {
    throw new TypeError(
      `Cannot ${action}: options must be an object, got ${describeValue(options)}`,
    );
  }
  const clusters = requirePositiveInt(action, "clusters", options.clusters);
  const geometry = requireOneOf(
    action,
    "geometry",
    options.geometry ?? "cosine",
    [
      "cosine",
      "euclidean",
    ] as const,
  );
  const iterations = requireNonNegativeInt(
    action,
    "iterations",
    options.iterations ?? DEFAULT_KMEANS_ITERATIONS,
  );
  const tolerance = requireFinite(
    action,
    "tolerance",
    options.tolerance ?? DEFAULT_KMEANS_TOLERANCE,
  );
  if (tolerance < 0) {
    throw new RangeError(
      `Cannot ${action}: tolerance must be a non-negative number, got ${describeValue(tolerance)}`,
    );
  }
  const seed = requireInt(action, "seed", options.seed ?? 0);
  const init = options.init;
  if (init !== undefined && !(init instanceof Float32Array)) {
    throw new TypeError(
      `Cannot ${action}: init must be a Float32Array of initial centres, got ${
        describeValue(init)
      }`,
    );
  }
  return { clusters, geometry, iterations, tolerance, seed, init };
}

function runKmeans(action: string, p: Prepared, o: ResolvedKmeansOptions): KmeansResult {
  const k = o.clusters, d = p.d;
  let centers: Float32Array;
  if (o.init !== undefined) {
    if (o.init.length !== k * d) {
      throw new TypeError(
        `Cannot ${action}: init must hold clusters × headDim (${k} × ${d} = ${
          k * d
        }) values, got ${o.init.length}`,
      );
    }
    centers = Float32Array.from(o.init);
    for (let c = 0; c < k; c++) {
      let s = 0;
      for (let e = 0; e < d; e++) {
        const v = centers[c * d + e]!;
        if (!Number.isFinite(v)) {
          throw new RangeError(
            `Cannot ${action}: init must be finite, got ${describeValue(v)} at centre ${c}`,
          );
        }
        s += v * v;
      }
      if (o.geometry === "cosine" && s > 0) {
        const inv = 1 / Math.sqrt(s);
        for (let e = 0; e < d; e++) centers[c * d + e] = centers[c * d + e]! * inv;
      }
    }
  } else {
    centers = seedPlusPlus(p, k, new Rng(o.seed));
  }
  const run = lloyd(p, centers, k, o.iterations, o.tolerance);
  const s = summarize(p, run.label, k);
  return {
    headDim: d,
    centroids: s.centroids,
    sizes: s.sizes,
    assignments: run.label,
    iterations: run.iterations,
    converged: run.converged,
    inertia: s.inertia,
  };
}

/** Options of {@linkcode hierarchicalKmeans}. */
export interface HierarchicalKmeansOptions extends Omit<KmeansOptions, "clusters" | "init"> {
  /** Fine (level-2) clusters of the points, in `[1, points]`. */
  clusters: number;
  /** Coarse (level-1) clusters of the fine centroids, in `[1, non-empty fine clusters]`. */
  coarseClusters: number;
}

/** Result of {@linkcode hierarchicalKmeans}. */
export interface HierarchicalKmeansResult extends KeyClusters {
  /** The fine level (with its run statistics). */
  readonly fine: KmeansResult;
  /** The coarse level. */
  readonly coarse: CoarseClusters;
}

/**
 * Two-level k-means as in Squeezed Attention's hierarchical lookup: cluster
 * the points into `clusters` fine clusters, then cluster the fine centroids
 * (scaled to unit length for `"cosine"`) into `coarseClusters` coarse
 * clusters. A coarse centroid is the **unweighted** mean of its fine
 * centroids; a point's coarse cluster is its fine cluster's parent, so
 * coarse sizes count points.
 *
 * Deviation: empty fine clusters (zero centroids) are left out of the coarse
 * clustering and its means, and get coarse cluster 0 as parent; they hold no
 * points, so lookups are unaffected (the authors' code clusters their zero
 * vectors too, which pulls coarse means toward 0).
 *
 * @see https://arxiv.org/abs/2411.09688
 *
 * @param points Points, `[points, headDim]`, as {@linkcode kmeans}.
 * @param options Fine and coarse cluster counts, and the {@linkcode kmeans} options.
 * @returns Both levels; `coarse.parent[f]` is fine cluster `f`'s coarse cluster.
 * @throws {TypeError} / {RangeError} As {@linkcode kmeans}, and if
 *   `coarseClusters` exceeds the number of non-empty fine clusters.
 *
 * @example Four points, two fine clusters per coarse cluster
 * ```ts
 * import { hierarchicalKmeans } from "@longctx/longctx/attention";
 * import { tensor } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const pts = tensor(new Float32Array([1, 0, 1, 0.3, 0, 1, 0.3, 1]), [4, 2]);
 * const h = hierarchicalKmeans(pts, { clusters: 4, coarseClusters: 2 });
 * for (let j = 0; j < 4; j++) {
 *   assert.equal(h.coarse.assignments[j], h.coarse.parent[h.fine.assignments[j]]);
 * }
 * assert.equal(h.coarse.assignments[0], h.coarse.assignments[1]);
 * assert.notEqual(h.coarse.assignments[0], h.coarse.assignments[2]);
 * ```
 */
export function hierarchicalKmeans(
  points: Tensor,
  options: HierarchicalKmeansOptions,
): HierarchicalKmeansResult {
  const action = "run hierarchical k-means";
  const o = checkKmeansOptions(action, { ...options, clusters: options?.clusters });
  const coarseK = requirePositiveInt(action, "coarseClusters", options.coarseClusters);
  const p = preparePoints(action, points, o.geometry);
  if (o.clusters > p.n) {
    throw new RangeError(
      `Cannot ${action}: clusters must be at most the number of points (${p.n}), got ${o.clusters}`,
    );
  }
  const fine = runKmeans(action, p, o);
  return { fine, coarse: coarsen(action, fine, coarseK, o) };
}

/** Clusters fine centroids into `coarseK` coarse clusters (see {@linkcode hierarchicalKmeans}). */
function coarsen(
  action: string,
  fine: Clusters,
  coarseK: number,
  o: ResolvedKmeansOptions,
): CoarseClusters {
  const d = fine.headDim;
  const k = fine.sizes.length;
  const live: number[] = [];
  for (let c = 0; c < k; c++) if (fine.sizes[c]! > 0) live.push(c);
  if (coarseK > live.length) {
    throw new RangeError(
      `Cannot ${action}: coarseClusters must be at most the number of non-empty fine clusters (${live.length}), got ${coarseK}`,
    );
  }
  const rows = new Float32Array(live.length * d);
  live.forEach((c, i) => rows.set(fine.centroids.subarray(c * d, c * d + d), i * d));
  const p = preparePoints(action, {
    dtype: "f32",
    shape: [live.length, d],
    strides: [d, 1],
    offset: 0,
    data: rows,
  } as Tensor<FloatDType>, o.geometry);
  const top = runKmeans(action, p, { ...o, clusters: coarseK, init: undefined });
  const parent = new Int32Array(k);
  live.forEach((c, i) => parent[c] = top.assignments[i]!);
  // Empty fine clusters (no points) keep parent 0: they never contribute to a lookup.
  const n = fine.assignments.length;
  const assignments = new Int32Array(n);
  const sizes = new Int32Array(coarseK);
  for (let j = 0; j < n; j++) {
    const a = parent[fine.assignments[j]!]!;
    assignments[j] = a;
    sizes[a]!++;
  }
  return { headDim: d, centroids: top.centroids, sizes, assignments, parent };
}

// ---------------------------------------------------------------------------
// Validation and the binary format.

/**
 * Checks that clusters are well-formed plain data for `points` vectors of
 * `headDim` elements: lengths, finite centroids, assignments in range, sizes
 * equal to the assignment counts, and for a coarse level, parents in range
 * and consistent with both levels' assignments.
 *
 * @param action What was being done, for the message (e.g. `"load clusters"`).
 * @param clusters The clusters of one head.
 * @param headDim Expected elements per vector.
 * @param points Expected number of clustered points.
 * @throws {TypeError} Naming the first inconsistency found.
 *
 * @example
 * ```ts
 * import { validateKeyClusters } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * const fine = { headDim: 1, centroids: new Float32Array([2]), sizes: Int32Array.of(2), assignments: Int32Array.of(0, 0) };
 * validateKeyClusters("check", { fine }, 1, 2);
 * assert.throws(() => validateKeyClusters("check", { fine }, 1, 3), TypeError);
 * ```
 */
export function validateKeyClusters(
  action: string,
  clusters: KeyClusters,
  headDim: number,
  points: number,
): void {
  if (clusters === null || typeof clusters !== "object" || clusters.fine === undefined) {
    throw new TypeError(
      `Cannot ${action}: clusters must be an object with a fine level, got ${
        describeValue(clusters)
      }`,
    );
  }
  checkLevel(action, "fine", clusters.fine, headDim, points);
  const coarse = clusters.coarse;
  if (coarse === undefined) return;
  checkLevel(action, "coarse", coarse, headDim, points);
  const k = clusters.fine.sizes.length;
  const ck = coarse.sizes.length;
  if (!(coarse.parent instanceof Int32Array) || coarse.parent.length !== k) {
    throw new TypeError(
      `Cannot ${action}: coarse.parent must be an Int32Array with one entry per fine cluster (${k}), got ${
        describeValue(coarse.parent)
      }`,
    );
  }
  for (let c = 0; c < k; c++) {
    const a = coarse.parent[c]!;
    if (a < 0 || a >= ck) {
      throw new TypeError(
        `Cannot ${action}: coarse.parent[${c}] must be in [0, ${ck}), got ${a}`,
      );
    }
  }
  for (let j = 0; j < points; j++) {
    if (coarse.assignments[j] !== coarse.parent[clusters.fine.assignments[j]!]) {
      throw new TypeError(
        `Cannot ${action}: coarse.assignments[${j}] (${
          coarse.assignments[j]
        }) must equal the parent of its fine cluster (${
          coarse.parent[clusters.fine.assignments[j]!]
        })`,
      );
    }
  }
}

function checkLevel(
  action: string,
  name: string,
  c: Clusters,
  headDim: number,
  points: number,
): void {
  if (c === null || typeof c !== "object") {
    throw new TypeError(`Cannot ${action}: ${name} must be an object, got ${describeValue(c)}`);
  }
  if (c.headDim !== headDim) {
    throw new TypeError(
      `Cannot ${action}: ${name}.headDim must be ${headDim}, got ${describeValue(c.headDim)}`,
    );
  }
  if (!(c.sizes instanceof Int32Array)) {
    throw new TypeError(
      `Cannot ${action}: ${name}.sizes must be an Int32Array, got ${describeValue(c.sizes)}`,
    );
  }
  const k = c.sizes.length;
  if (!(c.centroids instanceof Float32Array) || c.centroids.length !== k * headDim) {
    throw new TypeError(
      `Cannot ${action}: ${name}.centroids must be a Float32Array of clusters × headDim (${k} × ${headDim}) values, got ${
        describeValue(c.centroids?.length)
      }`,
    );
  }
  if (!(c.assignments instanceof Int32Array) || c.assignments.length !== points) {
    throw new TypeError(
      `Cannot ${action}: ${name}.assignments must be an Int32Array of ${points} entries, got ${
        describeValue(c.assignments?.length)
      }`,
    );
  }
  if (k === 0 && points > 0) {
    throw new TypeError(
      `Cannot ${action}: ${name} must have at least one cluster for ${points} points, got 0`,
    );
  }
  for (let i = 0; i < c.centroids.length; i++) {
    if (!Number.isFinite(c.centroids[i]!)) {
      throw new TypeError(
        `Cannot ${action}: ${name}.centroids must be finite, got ${
          describeValue(c.centroids[i])
        } at cluster ${Math.floor(i / headDim)}`,
      );
    }
  }
  const counts = new Int32Array(k);
  for (let j = 0; j < points; j++) {
    const a = c.assignments[j]!;
    if (a < 0 || a >= k) {
      throw new TypeError(
        `Cannot ${action}: ${name}.assignments[${j}] must be in [0, ${k}), got ${a}`,
      );
    }
    counts[a]!++;
  }
  for (let i = 0; i < k; i++) {
    if (counts[i] !== c.sizes[i]) {
      throw new TypeError(
        `Cannot ${action}: ${name}.sizes[${i}] must equal the number of points assigned to it (${
          counts[i]
        }), got ${c.sizes[i]}`,
      );
    }
  }
}

/**
 * The clusters of every `(layer, kvHead)` of a model, with uniform sizes:
 * every head clusters `points` keys into `clusters` fine (and `coarseClusters`
 * coarse, or none) clusters.
 */
export interface ClusterSet {
  /** Layers. */
  readonly layers: number;
  /** KV heads per layer. */
  readonly kvHeads: number;
  /** Elements per key. */
  readonly headDim: number;
  /** Clustered keys per head. */
  readonly points: number;
  /** Clusters of each head, `[layers · kvHeads]`, layer-major (`heads[layer · kvHeads + kvHead]`). */
  readonly heads: readonly KeyClusters[];
  /** Free-form JSON metadata stored in the header (e.g. Squeezed thresholds). */
  readonly meta?: Readonly<Record<string, unknown>>;
}

const MAGIC = [0x4c, 0x43, 0x4b, 0x4d]; // "LCKM"
const FORMAT_VERSION = 1;

let crcTable: Uint32Array | undefined;

/**
 * CRC-32 (IEEE 802.3 polynomial, reflected; the checksum of zlib and PNG).
 *
 * @param bytes Data.
 * @returns The unsigned 32-bit checksum.
 *
 * @example
 * ```ts
 * import { crc32 } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
 * ```
 */
export function crc32(bytes: Uint8Array): number {
  if (crcTable === undefined) {
    crcTable = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[i] = c >>> 0;
    }
  }
  const t = crcTable;
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = t[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Checks a cluster set's geometry and every head; returns the coarse cluster count (0 = one level). */
function checkSet(action: string, set: ClusterSet): { clusters: number; coarseClusters: number } {
  if (set === null || typeof set !== "object") {
    throw new TypeError(`Cannot ${action}: set must be an object, got ${describeValue(set)}`);
  }
  const layers = requirePositiveInt(action, "layers", set.layers);
  const kvHeads = requirePositiveInt(action, "kvHeads", set.kvHeads);
  const headDim = requirePositiveInt(action, "headDim", set.headDim);
  const points = requireNonNegativeInt(action, "points", set.points);
  if (!Array.isArray(set.heads) || set.heads.length !== layers * kvHeads) {
    throw new TypeError(
      `Cannot ${action}: heads must hold layers × kvHeads (${layers} × ${kvHeads}) entries, got ${
        describeValue((set.heads as unknown[])?.length)
      }`,
    );
  }
  const first = set.heads[0]!;
  const clusters = first?.fine?.sizes?.length ?? 0;
  const coarseClusters = first?.coarse?.sizes?.length ?? 0;
  set.heads.forEach((h, i) => {
    const where = `${action} (layer ${Math.floor(i / kvHeads)}, kvHead ${i % kvHeads})`;
    validateKeyClusters(where, h, headDim, points);
    if (h.fine.sizes.length !== clusters || (h.coarse?.sizes.length ?? 0) !== coarseClusters) {
      throw new TypeError(
        `Cannot ${where}: every head must have ${clusters} fine and ${coarseClusters} coarse clusters, got ${h.fine.sizes.length} and ${
          h.coarse?.sizes.length ?? 0
        }`,
      );
    }
  });
  return { clusters, coarseClusters };
}

/**
 * Serializes a {@linkcode ClusterSet} to the checksummed binary format in the
 * module doc.
 *
 * @param set Clusters of every head, validated first.
 * @returns The file's bytes.
 * @throws {TypeError} / {RangeError} If the set is malformed, or `meta` is not JSON-serializable.
 *
 * @example Round trip
 * ```ts
 * import { decodeClusterSet, encodeClusterSet } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * const fine = { headDim: 2, centroids: new Float32Array([1, 2]), sizes: Int32Array.of(3), assignments: Int32Array.of(0, 0, 0) };
 * const bytes = encodeClusterSet({ layers: 1, kvHeads: 1, headDim: 2, points: 3, heads: [{ fine }], meta: { note: "x" } });
 * const back = decodeClusterSet(bytes);
 * assert.deepEqual([...back.heads[0].fine.centroids], [1, 2]);
 * assert.equal(back.meta?.note, "x");
 * ```
 */
export function encodeClusterSet(set: ClusterSet): Uint8Array {
  const action = "encode cluster set";
  const { clusters, coarseClusters } = checkSet(action, set);
  const { layers, kvHeads, headDim, points } = set;
  let json: string;
  try {
    json = JSON.stringify({
      layers,
      kvHeads,
      headDim,
      points,
      clusters,
      coarseClusters,
      meta: set.meta ?? {},
    });
  } catch (e) {
    throw new TypeError(`Cannot ${action}: meta must be JSON-serializable, got error ${e}`);
  }
  const header = new TextEncoder().encode(json);
  const padded = Math.ceil(header.length / 4) * 4;
  const perHead = 4 * (clusters * headDim + clusters + points) +
    (coarseClusters > 0 ? 4 * (coarseClusters * headDim + coarseClusters + points + clusters) : 0);
  const total = 12 + padded + perHead * layers * kvHeads + 4;
  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  bytes.set(MAGIC, 0);
  view.setUint32(4, FORMAT_VERSION, true);
  view.setUint32(8, header.length, true);
  bytes.set(header, 12);
  bytes.fill(0x20, 12 + header.length, 12 + padded);
  let o = 12 + padded;
  const putF32 = (a: Float32Array): void => {
    for (let i = 0; i < a.length; i++, o += 4) view.setFloat32(o, a[i]!, true);
  };
  const putI32 = (a: Int32Array): void => {
    for (let i = 0; i < a.length; i++, o += 4) view.setInt32(o, a[i]!, true);
  };
  for (const h of set.heads) {
    putF32(h.fine.centroids);
    putI32(h.fine.sizes);
    putI32(h.fine.assignments);
    if (h.coarse !== undefined) {
      putF32(h.coarse.centroids);
      putI32(h.coarse.sizes);
      putI32(h.coarse.assignments);
      putI32(h.coarse.parent);
    }
  }
  view.setUint32(o, crc32(bytes.subarray(0, o)), true);
  return bytes;
}

/**
 * Parses and validates the binary format written by {@linkcode encodeClusterSet}.
 *
 * @param bytes The file's bytes.
 * @returns The cluster set (fresh arrays).
 * @throws {TypeError} If the bytes are not this format (magic), of another
 *   version, truncated, fail the checksum, or hold clusters that break an
 *   invariant; the message says which.
 *
 * @example A flipped byte is caught by the checksum
 * ```ts
 * import { decodeClusterSet, encodeClusterSet } from "@longctx/longctx/attention";
 * import assert from "node:assert/strict";
 * const fine = { headDim: 1, centroids: new Float32Array([5]), sizes: Int32Array.of(1), assignments: Int32Array.of(0) };
 * const bytes = encodeClusterSet({ layers: 1, kvHeads: 1, headDim: 1, points: 1, heads: [{ fine }] });
 * bytes[bytes.length - 9] ^= 1;
 * assert.throws(() => decodeClusterSet(bytes), /checksum/);
 * ```
 */
export function decodeClusterSet(bytes: Uint8Array): ClusterSet {
  const action = "load cluster set";
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(
      `Cannot ${action}: bytes must be a Uint8Array, got ${describeValue(bytes)}`,
    );
  }
  if (bytes.length < 16 || MAGIC.some((m, i) => bytes[i] !== m)) {
    throw new TypeError(
      `Cannot ${action}: not a longctx cluster file (magic "LCKM" missing), got ${bytes.length} bytes starting ${
        describeValue([...bytes.subarray(0, 4)])
      }`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(4, true);
  if (version !== FORMAT_VERSION) {
    throw new TypeError(
      `Cannot ${action}: format version must be ${FORMAT_VERSION}, got ${version}`,
    );
  }
  const stored = view.getUint32(bytes.length - 4, true);
  const computed = crc32(bytes.subarray(0, bytes.length - 4));
  if (stored !== computed) {
    throw new TypeError(
      `Cannot ${action}: checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${
        computed.toString(16)
      }): the file is truncated or corrupted`,
    );
  }
  const jsonBytes = view.getUint32(8, true);
  const padded = Math.ceil(jsonBytes / 4) * 4;
  if (12 + padded + 4 > bytes.length) {
    throw new TypeError(
      `Cannot ${action}: header length ${jsonBytes} runs past the end of the ${bytes.length}-byte file`,
    );
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(
      bytes.subarray(12, 12 + jsonBytes),
    ));
  } catch (e) {
    throw new TypeError(`Cannot ${action}: header is not valid UTF-8 JSON (${e})`);
  }
  const int = (name: string, positive: boolean): number => {
    const v = header?.[name];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < (positive ? 1 : 0)) {
      throw new TypeError(
        `Cannot ${action}: header field ${name} must be a ${
          positive ? "positive" : "non-negative"
        } integer, got ${describeValue(v)}`,
      );
    }
    return v;
  };
  const layers = int("layers", true), kvHeads = int("kvHeads", true);
  const headDim = int("headDim", true), points = int("points", false);
  const clusters = int("clusters", false), coarseClusters = int("coarseClusters", false);
  const meta = header.meta;
  if (meta === null || typeof meta !== "object" || Array.isArray(meta)) {
    throw new TypeError(
      `Cannot ${action}: header field meta must be an object, got ${describeValue(meta)}`,
    );
  }
  const perHead = 4 * (clusters * headDim + clusters + points) +
    (coarseClusters > 0 ? 4 * (coarseClusters * headDim + coarseClusters + points + clusters) : 0);
  const expected = 12 + padded + perHead * layers * kvHeads + 4;
  if (expected !== bytes.length) {
    throw new TypeError(
      `Cannot ${action}: the header describes a ${expected}-byte file, got ${bytes.length} bytes`,
    );
  }
  let o = 12 + padded;
  const getF32 = (n: number): Float32Array => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++, o += 4) a[i] = view.getFloat32(o, true);
    return a;
  };
  const getI32 = (n: number): Int32Array => {
    const a = new Int32Array(n);
    for (let i = 0; i < n; i++, o += 4) a[i] = view.getInt32(o, true);
    return a;
  };
  const heads: KeyClusters[] = [];
  for (let i = 0; i < layers * kvHeads; i++) {
    const fine: Clusters = {
      headDim,
      centroids: getF32(clusters * headDim),
      sizes: getI32(clusters),
      assignments: getI32(points),
    };
    if (coarseClusters > 0) {
      const coarse: CoarseClusters = {
        headDim,
        centroids: getF32(coarseClusters * headDim),
        sizes: getI32(coarseClusters),
        assignments: getI32(points),
        parent: getI32(clusters),
      };
      heads.push({ fine, coarse });
    } else {
      heads.push({ fine });
    }
  }
  const set: ClusterSet = {
    layers,
    kvHeads,
    headDim,
    points,
    heads,
    meta: meta as Record<string, unknown>,
  };
  checkSet(action, set);
  return set;
}
