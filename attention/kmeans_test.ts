// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import {
  type ClusterSet,
  crc32,
  decodeClusterSet,
  encodeClusterSet,
  hierarchicalKmeans,
  type KeyClusters,
  kmeans,
} from "./kmeans.ts";
import { randn, Rng, selectAxis, type Tensor, tensor } from "../tensor/mod.ts";

/** Random points [n, d] as a plain f32 tensor. */
function points(n: number, d: number, seed: number): Tensor<"f32"> {
  return randn([n, d], { seed }) as Tensor<"f32">;
}

/** Points drawn around `blobs` random centres (norm ≈ √d·spread), noise std `noise`. */
function blobs(
  n: number,
  d: number,
  blobCount: number,
  noise: number,
  seed: number,
): { x: Tensor<"f32">; truth: Int32Array } {
  const rng = new Rng(seed);
  const centres = rng.fillNormal(new Float32Array(blobCount * d), 0, 3);
  const data = new Float32Array(n * d);
  const truth = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const b = i % blobCount;
    truth[i] = b;
    for (let e = 0; e < d; e++) data[i * d + e] = centres[b * d + e]! + noise * rng.normal();
  }
  return { x: tensor(data, [n, d]), truth };
}

/**
 * Textbook Lloyd, independent of the library: direct squared distances in f64,
 * lowest index wins ties, empty clusters keep their centre, centres stored in
 * f32 like the library's. Runs until assignments stop changing or `maxIter`
 * centre updates.
 */
function plainLloyd(
  x: Float32Array,
  n: number,
  d: number,
  init: Float32Array,
  k: number,
  maxIter: number,
): Int32Array {
  const c = Float32Array.from(init);
  const label = new Int32Array(n);
  const assign = (): number => {
    let changed = 0;
    for (let i = 0; i < n; i++) {
      let best = Infinity, at = 0;
      for (let j = 0; j < k; j++) {
        let s = 0;
        for (let e = 0; e < d; e++) s += (x[i * d + e]! - c[j * d + e]!) ** 2;
        if (s < best) {
          best = s;
          at = j;
        }
      }
      if (label[i] !== at) changed++;
      label[i] = at;
    }
    return changed;
  };
  assign();
  for (let it = 0; it < maxIter; it++) {
    const sums = new Float64Array(k * d), counts = new Int32Array(k);
    for (let i = 0; i < n; i++) {
      counts[label[i]!]!++;
      for (let e = 0; e < d; e++) sums[label[i]! * d + e]! += x[i * d + e]!;
    }
    for (let j = 0; j < k; j++) {
      if (counts[j]! > 0) {
        for (let e = 0; e < d; e++) c[j * d + e] = sums[j * d + e]! / counts[j]!;
      }
    }
    if (assign() === 0) break;
  }
  return label;
}

function normalizeRows(x: Float32Array, n: number, d: number): Float32Array {
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let e = 0; e < d; e++) s += x[i * d + e]! ** 2;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let e = 0; e < d; e++) out[i * d + e] = x[i * d + e]! * inv;
  }
  return out;
}

Deno.test("kmeans() assignments equal plain Lloyd's from the same initial centres", () => {
  for (
    const [n, d, k] of [[1, 3, 1], [19, 5, 3], [503, 8, 12], [1177, 16, 40], [
      2000,
      6,
      150,
    ]] as const
  ) {
    for (const geometry of ["euclidean", "cosine"] as const) {
      const x = points(n, d, n + d);
      const init = new Float32Array(k * d);
      for (let j = 0; j < k; j++) init.set(x.data.subarray(j * d, j * d + d), j * d);
      const space = geometry === "cosine" ? normalizeRows(x.data, n, d) : x.data;
      const initSpace = geometry === "cosine" ? normalizeRows(init, k, d) : init;
      for (const iterations of [0, 1, 3, 300]) {
        const got = kmeans(x, { clusters: k, geometry, iterations, tolerance: 0, init });
        const want = plainLloyd(space, n, d, initSpace, k, iterations);
        assert.deepEqual(
          got.assignments,
          want,
          `n=${n} d=${d} k=${k} ${geometry} iterations=${iterations}`,
        );
      }
    }
  }
});

Deno.test("kmeans() is deterministic for a seed and reports consistent plain data", () => {
  const x = points(400, 8, 1);
  const a = kmeans(x, { clusters: 20, seed: 7 });
  const b = kmeans(x, { clusters: 20, seed: 7 });
  assert.deepEqual(a.assignments, b.assignments);
  assert.deepEqual(a.centroids, b.centroids);
  const c = kmeans(x, { clusters: 20, seed: 8 });
  assert.notDeepEqual(a.assignments, c.assignments, "another seed, another seeding");
  // Sizes count assignments; centroids are the means of the raw points.
  const counts = new Int32Array(20);
  const sums = new Float64Array(20 * 8);
  for (let i = 0; i < 400; i++) {
    counts[a.assignments[i]!]!++;
    for (let e = 0; e < 8; e++) sums[a.assignments[i]! * 8 + e]! += x.data[i * 8 + e]!;
  }
  assert.deepEqual(a.sizes, counts);
  for (let j = 0; j < 20; j++) {
    for (let e = 0; e < 8; e++) {
      const want = counts[j]! > 0 ? sums[j * 8 + e]! / counts[j]! : 0;
      assert.ok(Math.abs(a.centroids[j * 8 + e]! - want) < 1e-5);
    }
  }
  assert.ok(a.converged && a.iterations >= 1 && a.inertia > 0);
});

Deno.test("kmeans() recovers well-separated planted clusters", () => {
  const { x, truth } = blobs(600, 16, 6, 0.3, 3);
  for (const geometry of ["cosine", "euclidean"] as const) {
    const r = kmeans(x, { clusters: 6, geometry, seed: 0 });
    const map = new Map<number, number>();
    for (let i = 0; i < 600; i++) {
      const t = truth[i]!, a = r.assignments[i]!;
      if (!map.has(t)) map.set(t, a);
      assert.equal(a, map.get(t), `${geometry}: blob ${t} split`);
    }
    assert.equal(new Set(map.values()).size, 6, `${geometry}: two blobs merged`);
  }
});

Deno.test("kmeans() handles duplicates, one cluster per point, and empty clusters", () => {
  // All points equal: one non-empty cluster; empty clusters report size 0 and a zero centroid.
  const same = tensor(Float32Array.from({ length: 10 * 3 }, (_, i) => [1, -2, 0.5][i % 3]!), [
    10,
    3,
  ]);
  const r = kmeans(same, { clusters: 3, seed: 1 });
  assert.deepEqual([...r.sizes].sort(), [0, 0, 10]);
  for (let j = 0; j < 3; j++) {
    const c = [...r.centroids.subarray(j * 3, j * 3 + 3)];
    assert.deepEqual(c, r.sizes[j] === 10 ? [1, -2, 0.5] : [0, 0, 0]);
  }
  // k = n with distinct points: every point alone.
  const x = points(40, 4, 2);
  const one = kmeans(x, { clusters: 40, seed: 3 });
  assert.ok(one.sizes.every((s) => s === 1));
  assert.equal(one.inertia, 0);
  // k = 1: the mean.
  const all = kmeans(x, { clusters: 1 });
  for (let e = 0; e < 4; e++) {
    let s = 0;
    for (let i = 0; i < 40; i++) s += x.data[i * 4 + e]!;
    assert.ok(Math.abs(all.centroids[e]! - s / 40) < 1e-5);
  }
});

Deno.test("kmeans() cosine geometry groups by direction, ignoring each point's length", () => {
  const { x } = blobs(300, 8, 5, 0.4, 11);
  const scaled = Float32Array.from(x.data);
  const rng = new Rng(5);
  for (let i = 0; i < 300; i++) {
    const f = 0.1 + 10 * rng.uniform();
    for (let e = 0; e < 8; e++) scaled[i * 8 + e]! *= f;
  }
  const a = kmeans(x, { clusters: 5, seed: 2 });
  const b = kmeans(tensor(scaled, [300, 8]), { clusters: 5, seed: 2 });
  assert.deepEqual(a.assignments, b.assignments);
});

Deno.test("kmeans() reads a strided head view of [tokens, kvHeads, headDim] keys", () => {
  const keys = randn([50, 3, 4], { seed: 9 });
  const head = selectAxis(keys, 1, 2); // [50, 4], stride 12
  const copy = new Float32Array(50 * 4);
  for (let i = 0; i < 50; i++) {
    for (let e = 0; e < 4; e++) copy[i * 4 + e] = keys.data[i * 12 + 8 + e]!;
  }
  assert.deepEqual(
    kmeans(head, { clusters: 5 }).assignments,
    kmeans(tensor(copy, [50, 4]), { clusters: 5 }).assignments,
  );
});

Deno.test("hierarchicalKmeans() nests coarse clusters over fine ones", () => {
  const { x } = blobs(800, 8, 8, 0.6, 4);
  const h = hierarchicalKmeans(x, { clusters: 40, coarseClusters: 8, seed: 1 });
  const fine = h.fine, coarse = h.coarse;
  assert.equal(coarse.parent.length, 40);
  const expectSizes = new Int32Array(8);
  for (let j = 0; j < 800; j++) {
    assert.equal(coarse.assignments[j], coarse.parent[fine.assignments[j]!]);
    expectSizes[coarse.assignments[j]!]!++;
  }
  assert.deepEqual(coarse.sizes, expectSizes);
  // A coarse centroid is the unweighted mean of its (non-empty) fine centroids.
  for (let c = 0; c < 8; c++) {
    const kids = [...Array(40).keys()].filter((f) => coarse.parent[f] === c && fine.sizes[f]! > 0);
    for (let e = 0; e < 8; e++) {
      const mean = kids.reduce((s, f) => s + fine.centroids[f * 8 + e]!, 0) / kids.length;
      assert.ok(Math.abs(coarse.centroids[c * 8 + e]! - mean) < 1e-5);
    }
  }
});

Deno.test("kmeans() and hierarchicalKmeans() reject bad input with clear errors", () => {
  const x = points(10, 4, 1);
  assert.throws(
    () => kmeans(x, { clusters: 11 }),
    new RangeError(
      "Cannot run k-means: clusters must be at most the number of points (10), got 11",
    ),
  );
  assert.throws(() => kmeans(x, { clusters: 0 }), /clusters must be a positive integer, got 0/);
  assert.throws(() => kmeans(x, { clusters: 1.5 }), RangeError);
  const bad = Float32Array.from(x.data);
  bad[2 * 4 + 3] = NaN;
  assert.throws(
    () => kmeans(tensor(bad, [10, 4]), { clusters: 2 }),
    new RangeError("Cannot run k-means: points must be finite, got NaN at row 2, column 3"),
  );
  bad[2 * 4 + 3] = -Infinity;
  assert.throws(() => kmeans(tensor(bad, [10, 4]), { clusters: 2 }), /got -Infinity/);
  assert.throws(
    () => kmeans(tensor(new Float32Array(0), [0, 4]), { clusters: 1 }),
    /at least one row, got 0 rows/,
  );
  assert.throws(() => kmeans(randn([2, 2, 2]), { clusters: 1 }), TypeError);
  assert.throws(() => kmeans(tensor(new Int32Array(4), [2, 2]), { clusters: 1 }), TypeError);
  assert.throws(() => kmeans(x, { clusters: 2, iterations: -1 }), RangeError);
  assert.throws(
    () => kmeans(x, { clusters: 2, tolerance: -1 }),
    /tolerance must be a non-negative/,
  );
  assert.throws(
    () => kmeans(x, { clusters: 2, geometry: "manhattan" as "cosine" }),
    TypeError,
  );
  assert.throws(() => kmeans(x, { clusters: 2, init: new Float32Array(7) }), /init must hold/);
  assert.throws(
    () => hierarchicalKmeans(x, { clusters: 3, coarseClusters: 4 }),
    /coarseClusters must be at most the number of non-empty fine clusters \(3\), got 4/,
  );
});

// ---------------------------------------------------------------------------
// Binary format.

function sampleSet(coarse: boolean): ClusterSet {
  const heads: KeyClusters[] = [];
  for (let i = 0; i < 3 * 2; i++) {
    const x = points(97, 6, 100 + i);
    heads.push(
      coarse ? hierarchicalKmeans(x, { clusters: 9, coarseClusters: 3, seed: i }) : {
        fine: kmeans(x, { clusters: 9, seed: i }),
      },
    );
  }
  return { layers: 3, kvHeads: 2, headDim: 6, points: 97, heads, meta: { note: "test", n: 1 } };
}

/** Re-seals a modified buffer with a valid checksum (to reach the invariant checks). */
function reseal(bytes: Uint8Array): Uint8Array {
  const out = Uint8Array.from(bytes);
  new DataView(out.buffer).setUint32(out.length - 4, crc32(out.subarray(0, out.length - 4)), true);
  return out;
}

Deno.test("encodeClusterSet()/decodeClusterSet() round-trip one and two levels", () => {
  for (const coarse of [false, true]) {
    const set = sampleSet(coarse);
    const back = decodeClusterSet(encodeClusterSet(set));
    assert.equal(back.layers, 3);
    assert.equal(back.kvHeads, 2);
    assert.deepEqual(back.meta, { note: "test", n: 1 });
    set.heads.forEach((h, i) => {
      const b = back.heads[i]!;
      assert.deepEqual(b.fine.centroids, h.fine.centroids);
      assert.deepEqual(b.fine.sizes, h.fine.sizes);
      assert.deepEqual(b.fine.assignments, h.fine.assignments);
      assert.equal(b.coarse === undefined, !coarse);
      if (coarse) {
        assert.deepEqual(b.coarse!.parent, h.coarse!.parent);
        assert.deepEqual(b.coarse!.centroids, h.coarse!.centroids);
        assert.deepEqual(b.coarse!.assignments, h.coarse!.assignments);
      }
    });
  }
});

Deno.test("decodeClusterSet() rejects corrupted, truncated and inconsistent files", () => {
  const bytes = encodeClusterSet(sampleSet(true));
  const flipped = Uint8Array.from(bytes);
  flipped[Math.floor(bytes.length / 2)]! ^= 0x10;
  assert.throws(() => decodeClusterSet(flipped), /checksum mismatch .*truncated or corrupted/);
  assert.throws(() => decodeClusterSet(bytes.subarray(0, bytes.length - 100)), /checksum/);
  assert.throws(() => decodeClusterSet(bytes.subarray(0, 10)), /magic "LCKM" missing/);
  const magic = Uint8Array.from(bytes);
  magic[0] = 0x50;
  assert.throws(() => decodeClusterSet(magic), /not a longctx cluster file/);
  const version = Uint8Array.from(bytes);
  new DataView(version.buffer).setUint32(4, 2, true);
  assert.throws(
    () => decodeClusterSet(reseal(version)),
    new TypeError("Cannot load cluster set: format version must be 1, got 2"),
  );
  // Valid checksum, broken invariants: find the first head's first assignment and break it.
  const headerLen = new DataView(bytes.buffer).getUint32(8, true);
  const base = 12 + Math.ceil(headerLen / 4) * 4;
  const firstAssignment = base + 4 * (9 * 6 + 9);
  const outOfRange = Uint8Array.from(bytes);
  new DataView(outOfRange.buffer).setInt32(firstAssignment, 9, true);
  assert.throws(
    () => decodeClusterSet(reseal(outOfRange)),
    /fine\.assignments\[0\] must be in \[0, 9\), got 9/,
  );
  const sizes = Uint8Array.from(bytes);
  const dv = new DataView(sizes.buffer);
  dv.setInt32(base + 4 * 9 * 6, dv.getInt32(base + 4 * 9 * 6, true) + 1, true);
  assert.throws(() => decodeClusterSet(reseal(sizes)), /fine\.sizes\[0\] must equal/);
  const nan = Uint8Array.from(bytes);
  new DataView(nan.buffer).setFloat32(base, NaN, true);
  assert.throws(() => decodeClusterSet(reseal(nan)), /centroids must be finite, got NaN/);
  // A header that promises more data than the file holds.
  const header = new TextDecoder().decode(bytes.subarray(12, 12 + headerLen));
  const longer = header.replace('"points":97', '"points":98');
  assert.equal(longer.length, header.length);
  const promised = Uint8Array.from(bytes);
  promised.set(new TextEncoder().encode(longer), 12);
  assert.throws(() => decodeClusterSet(reseal(promised)), /describes a \d+-byte file/);
});

Deno.test("encodeClusterSet() validates the set it writes", () => {
  const set = sampleSet(false);
  assert.throws(
    () => encodeClusterSet({ ...set, heads: set.heads.slice(1) }),
    /heads must hold layers × kvHeads \(3 × 2\) entries, got 5/,
  );
  assert.throws(
    () => encodeClusterSet({ ...set, points: 96 }),
    /assignments must be an Int32Array of 96/,
  );
});
