// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import { kmeans } from "../attention/kmeans.ts";
import { randn } from "../tensor/random.ts";
import { tensor } from "../tensor/tensor.ts";
import { tryRequestGpu } from "./device.ts";
import { kmeansAssignWebGpu } from "./kmeans.ts";
import { download, releaseTensor, upload } from "./tensor.ts";
import type { WgslStorage } from "./_wgsl/common.ts";
import { kmeansAssignTile, kmeansAssignWgsl, kmeansSumsWgsl } from "./_wgsl/kmeans.ts";

const probe = await tryRequestGpu();
const gpu = probe.gpu;
if (gpu === undefined) {
  console.log(`gpu/kmeans_test.ts: skipping WebGPU parity tests: ${probe.reason}`);
}
const ignore = gpu === undefined;

/**
 * Near-tie tolerance: where the GPU (f32 distances) and the float64 oracle
 * pick different centroids, the two float64 distances must differ by less
 * than this, relative to the larger. Exact ties (identical distances, e.g.
 * duplicated centroids) must go to the lowest index on both.
 */
const TIE_RTOL = 1e-6;

/** Points as `kmeans` prepares them: unit length via f64 `1/|p|` rounded to f32 per element (cosine). */
function prepare(raw: Float32Array, n: number, d: number, cosine: boolean): Float32Array {
  if (!cosine) return raw;
  const x = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let e = 0; e < d; e++) s += raw[i * d + e]! * raw[i * d + e]!;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let e = 0; e < d; e++) x[i * d + e] = raw[i * d + e]! * inv;
  }
  return x;
}

/** float64 squared distances of point `i` to every centroid. */
function distancesOf(x: Float32Array, i: number, c: Float32Array, k: number, d: number): number[] {
  const out: number[] = [];
  for (let j = 0; j < k; j++) {
    let s = 0;
    for (let e = 0; e < d; e++) {
      const u = x[i * d + e]! - c[j * d + e]!;
      s += u * u;
    }
    out.push(s);
  }
  return out;
}

/**
 * Compares GPU labels with the float64 argmin (lowest index on ties):
 * returns the near-tie disagreements (each checked against
 * {@linkcode TIE_RTOL}); any other disagreement fails.
 */
function compareLabels(
  got: Int32Array,
  x: Float32Array,
  c: Float32Array,
  n: number,
  k: number,
  d: number,
): number {
  let ties = 0;
  for (let i = 0; i < n; i++) {
    const dist = distancesOf(x, i, c, k, d);
    let best = 0;
    for (let j = 1; j < k; j++) if (dist[j]! < dist[best]!) best = j;
    const g = got[i]!;
    if (g === best) continue;
    const a = dist[g]!, b = dist[best]!;
    assert.ok(
      Math.abs(a - b) <= TIE_RTOL * Math.max(a, b, 1e-30),
      `point ${i}: GPU chose ${g} (d² ${a}), oracle ${best} (d² ${b})`,
    );
    ties++;
  }
  return ties;
}

Deno.test({
  name:
    "kmeansAssignWebGpu() picks the float64 nearest centroid on awkward sizes, both geometries, f32 and f16",
  ignore,
  async fn() {
    const g = gpu!;
    let ties = 0;
    for (
      const [n, k, d, geometry, dtype] of [
        [157, 23, 37, "cosine", "f32"],
        [157, 23, 37, "euclidean", "f32"],
        [1, 1, 5, "cosine", "f32"],
        [65, 70, 64, "euclidean", "f32"],
        [300, 129, 129, "cosine", "f32"],
        [93, 11, 24, "cosine", "f16"],
        [93, 11, 24, "euclidean", "f16"],
      ] as const
    ) {
      const pts = randn([n, d], { seed: n + k + d });
      const cen = randn([k, d], { seed: 7 * k + 1 });
      // Zero point: unit-scaled stays zero (F.normalize); its nearest is the smallest centroid.
      if (n > 3) pts.data.fill(0, 3 * d, 4 * d);
      if (dtype === "f16") {
        pts.data.forEach((v, i) => pts.data[i] = Math.f16round(v));
        cen.data.forEach((v, i) => cen.data[i] = Math.f16round(v));
      }
      // Centroids near the unit sphere for cosine, so distances are comparable.
      if (geometry === "cosine") {
        cen.data.forEach((v, i) => cen.data[i] = dtype === "f16" ? Math.f16round(v / 6) : v / 6);
      }
      const gp = upload(g, pts, { dtype }), gc = upload(g, cen, { dtype });
      const r = kmeansAssignWebGpu(g, gp, gc, { geometry });
      const got = (await download(g, r.assignments)).data as Int32Array;
      const dist = (await download(g, r.distances)).data as Float32Array;
      const x = prepare(pts.data as Float32Array, n, d, geometry === "cosine");
      ties += compareLabels(got, x, cen.data as Float32Array, n, k, d);
      for (let i = 0; i < n; i++) {
        const want = distancesOf(x, i, cen.data as Float32Array, k, d)[got[i]!]!;
        assert.ok(Math.abs(dist[i]! - want) <= 1e-5 * (1 + want), `distance of point ${i}`);
      }
      for (const t of [gp, gc, r.assignments, r.distances]) releaseTensor(g, t);
    }
    console.log(`near-tie disagreements allowed (|Δd²| ≤ ${TIE_RTOL} relative): ${ties}`);
    await g.checkErrors();
  },
});

Deno.test({
  name: "kmeansAssignWebGpu() breaks exact ties to the lowest index, as the CPU reference",
  ignore,
  async fn() {
    const g = gpu!;
    const d = 19, k = 9;
    const cen = randn([k, d], { seed: 3 });
    // Centroids 2, 5 and 8 coincide; points at that centroid are equidistant from all three.
    cen.data.copyWithin(5 * d, 2 * d, 3 * d);
    cen.data.copyWithin(8 * d, 2 * d, 3 * d);
    const pts = randn([70, d], { seed: 4, std: 0.01 });
    for (let i = 0; i < 70; i++) {
      for (let e = 0; e < d; e++) pts.data[i * d + e]! += cen.data[2 * d + e]!;
    }
    const r = kmeansAssignWebGpu(g, upload(g, pts), upload(g, cen), { geometry: "euclidean" });
    const got = (await download(g, r.assignments)).data as Int32Array;
    assert.deepEqual([...got], new Array(70).fill(2));
    // Duplicated centroids under cosine with normalizeCentroids: scaled copies tie exactly too.
    const r2 = kmeansAssignWebGpu(g, upload(g, pts), upload(g, cen), {
      geometry: "cosine",
      normalizeCentroids: true,
    });
    assert.deepEqual([...(await download(g, r2.assignments)).data], new Array(70).fill(2));
    await g.checkErrors();
  },
});

Deno.test({
  name: "kmeansAssignWebGpu() reproduces kmeans()'s converged assignments (euclidean and cosine)",
  ignore,
  async fn() {
    const g = gpu!;
    let ties = 0;
    for (const geometry of ["euclidean", "cosine"] as const) {
      const n = 333, d = 21, k = 17;
      const pts = randn([n, d], { seed: 11 });
      const res = kmeans(pts, { clusters: k, geometry, tolerance: 0, seed: 5 });
      assert.ok(res.converged);
      // The centres Lloyd's last assignment step used: means of the points as compared.
      const x = prepare(pts.data as Float32Array, n, d, geometry === "cosine");
      const centres = new Float32Array(k * d);
      const acc = new Float64Array(k * d);
      for (let i = 0; i < n; i++) {
        for (let e = 0; e < d; e++) acc[res.assignments[i]! * d + e]! += x[i * d + e]!;
      }
      for (let c = 0; c < k; c++) {
        for (let e = 0; e < d; e++) centres[c * d + e] = acc[c * d + e]! / res.sizes[c]!;
      }
      if (geometry === "euclidean") {
        // …which for euclidean are the reported centroids.
        res.centroids.forEach((v, i) => assert.ok(Math.abs(v - centres[i]!) < 1e-6));
      }
      const r = kmeansAssignWebGpu(g, upload(g, pts), upload(g, tensor(centres, [k, d])), {
        geometry,
        sums: true,
      });
      const got = (await download(g, r.assignments)).data as Int32Array;
      for (let i = 0; i < n; i++) {
        if (got[i] === res.assignments[i]) continue;
        const dist = distancesOf(x, i, centres, k, d);
        const a = dist[got[i]!]!, b = dist[res.assignments[i]!]!;
        assert.ok(Math.abs(a - b) <= TIE_RTOL * Math.max(a, b), `point ${i}`);
        ties++;
      }
      // The update step's sums and counts.
      const counts = (await download(g, r.counts!)).data as Int32Array;
      const sums = (await download(g, r.sums!)).data as Float32Array;
      const want = new Float64Array(k * d);
      const wantCounts = new Int32Array(k);
      for (let i = 0; i < n; i++) {
        wantCounts[got[i]!]!++;
        for (let e = 0; e < d; e++) want[got[i]! * d + e]! += x[i * d + e]!;
      }
      assert.deepEqual([...counts], [...wantCounts]);
      sums.forEach((v, i) => assert.ok(Math.abs(v - want[i]!) <= 1e-5 * (1 + Math.abs(want[i]!))));
    }
    console.log(`converged k-means: near-tie disagreements ${ties}`);
    await g.checkErrors();
  },
});

Deno.test({
  name: "kmeansAssignWebGpu() with normalizeCentroids assigns by largest cosine similarity",
  ignore,
  async fn() {
    const g = gpu!;
    const n = 211, k = 31, d = 48;
    const pts = randn([n, d], { seed: 21 });
    const cen = randn([k, d], { seed: 22 });
    cen.data.forEach((v, i) => cen.data[i] = v * (1 + (Math.floor(i / d) % 5))); // varied norms
    const r = kmeansAssignWebGpu(g, upload(g, pts), upload(g, cen), {
      geometry: "cosine",
      normalizeCentroids: true,
    });
    const got = (await download(g, r.assignments)).data as Int32Array;
    const x = prepare(pts.data as Float32Array, n, d, true);
    const c = prepare(cen.data as Float32Array, k, d, true);
    let ties = 0;
    for (let i = 0; i < n; i++) {
      const cos = (j: number): number => {
        let s = 0;
        for (let e = 0; e < d; e++) s += x[i * d + e]! * c[j * d + e]!;
        return s;
      };
      let best = 0;
      for (let j = 1; j < k; j++) if (cos(j) > cos(best)) best = j;
      if (got[i] === best) continue;
      assert.ok(Math.abs(cos(got[i]!) - cos(best)) <= TIE_RTOL, `point ${i}`);
      ties++;
    }
    assert.ok(ties <= 2);
    await g.checkErrors();
  },
});

Deno.test({
  name: "kmeansAssignWebGpu() validates its arguments and accepts zero points",
  ignore,
  async fn() {
    const g = gpu!;
    const p = upload(g, randn([4, 8], { seed: 1 }));
    assert.throws(
      () => kmeansAssignWebGpu(g, p, upload(g, randn([3, 7], { seed: 2 }))),
      /centroids headDim \(7\) does not match points headDim \(8\)/,
    );
    assert.throws(
      () => kmeansAssignWebGpu(g, p, upload(g, randn([0, 8], { seed: 2 }))),
      RangeError,
    );
    assert.throws(
      () => kmeansAssignWebGpu(g, p, p, { geometry: "manhattan" as "cosine" }),
      /geometry/,
    );
    assert.throws(
      () => kmeansAssignWebGpu(g, upload(g, randn([4, 2, 8], { seed: 1 })), p),
      /points must have shape \[rows, headDim\]/,
    );
    // No points: empty labels, zero counts and sums.
    const r = kmeansAssignWebGpu(g, upload(g, randn([0, 8], { seed: 1 })), p, { sums: true });
    assert.equal((await download(g, r.assignments)).data.length, 0);
    assert.deepEqual([...(await download(g, r.counts!)).data], [0, 0, 0, 0]);
    assert.ok((await download(g, r.sums!)).data.every((x) => x === 0));
    await g.checkErrors();
  },
});

Deno.test({
  name: "the k-means WGSL builders compile for every config of the matrix",
  ignore,
  async fn() {
    const g = gpu!;
    const storages: WgslStorage[] = g.features.shaderF16
      ? ["f32", "f16", "f16-packed"]
      : ["f32", "f16-packed"];
    let n = 0;
    for (const headDim of [1, 37, 128, 4096]) {
      for (const points of storages) {
        for (const centroids of storages) {
          for (const [normalizePoints, normalizeCentroids] of [[true, false], [false, true]]) {
            const c = {
              headDim,
              workgroupSize: 64,
              tile: kmeansAssignTile(headDim, 16384),
              normalizePoints: normalizePoints!,
              normalizeCentroids: normalizeCentroids!,
              points,
              centroids,
            };
            const errors = (await g.compileMessages("kmeans-assign", c, kmeansAssignWgsl))
              .filter((m) => m.type === "error");
            assert.equal(errors.length, 0, `${JSON.stringify(c)}: ${errors[0]?.message}`);
            n++;
          }
        }
      }
    }
    for (const points of storages) {
      const c = { workgroupSize: 64, points };
      const errors = (await g.compileMessages("kmeans-sums", c, kmeansSumsWgsl))
        .filter((m) => m.type === "error");
      assert.equal(errors.length, 0, `${JSON.stringify(c)}: ${errors[0]?.message}`);
      n++;
    }
    console.log(`k-means kernels: ${n} configs compiled`);
  },
});
