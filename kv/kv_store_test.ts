// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import { DEFAULT_KV_PAGE_SIZE, KvStore, type KvStoreOptions, MAX_KV_POSITION } from "./kv_store.ts";
import { permute, randn, Rng, selectAxis, tensor, zeros } from "../tensor/mod.ts";
import type { Tensor } from "../tensor/types.ts";

// ---------------------------------------------------------------- reference model

/** One stored token as the test expects it: key, value (already rounded to the storage dtype), position. */
interface Row {
  k: number[];
  v: number[];
  pos: number;
}

function read(t: Tensor, ...index: number[]): number {
  let o = t.offset;
  for (let a = 0; a < index.length; a++) o += index[a]! * t.strides[a]!;
  return t.data[o]!;
}

function roundFor(store: KvStore): (x: number) => number {
  return store.dtype === "f16" ? Math.f16round : Math.fround;
}

/** Rows of head h of a [t, kvHeads, d] chunk. */
function rowsOf(
  store: KvStore,
  keys: Tensor,
  values: Tensor,
  h: number,
  positions: ArrayLike<number>,
): Row[] {
  const r = roundFor(store);
  const rows: Row[] = [];
  for (let i = 0; i < keys.shape[0]!; i++) {
    const k: number[] = [], v: number[] = [];
    for (let j = 0; j < store.headDim; j++) {
      k.push(r(read(keys, i, h, j)));
      v.push(r(read(values, i, h, j)));
    }
    rows.push({ k, v, pos: positions[i]! });
  }
  return rows;
}

/** Rows of a [t, d] single-head chunk. */
function rowsOfHead(store: KvStore, keys: Tensor, values: Tensor, positions: ArrayLike<number>) {
  const r = roundFor(store);
  const rows: Row[] = [];
  for (let i = 0; i < keys.shape[0]!; i++) {
    const k: number[] = [], v: number[] = [];
    for (let j = 0; j < store.headDim; j++) {
      k.push(r(read(keys, i, j)));
      v.push(r(read(values, i, j)));
    }
    rows.push({ k, v, pos: positions[i]! });
  }
  return rows;
}

function range(start: number, end: number): number[] {
  return Array.from({ length: end - start }, (_, i) => start + i);
}

function flat(rows: Row[], field: "k" | "v"): number[] {
  return rows.flatMap((r) => r[field]);
}

/** Checks every read path of one (layer, head) against the expected rows. */
function assertHead(store: KvStore, layer: number, head: number, rows: Row[], label = ""): void {
  const n = rows.length, d = store.headDim, p = store.pageSize;
  const at = `${label} layer ${layer} head ${head}`;
  assert.equal(store.length(layer, head), n, `${at} length`);
  assert.equal(store.pageCount(layer, head), Math.ceil(n / p), `${at} pageCount`);
  const wantK = flat(rows, "k"), wantV = flat(rows, "v"), wantP = rows.map((r) => r.pos);
  assert.deepEqual([...store.positions(layer, head)], wantP, `${at} positions`);

  const g = store.gather(layer, head, range(0, n));
  assert.deepEqual(g.keys.shape, [n, d]);
  assert.equal(g.keys.layout, "td");
  assert.deepEqual([...g.keys.data], wantK, `${at} gather keys`);
  assert.deepEqual([...g.values.data], wantV, `${at} gather values`);
  assert.deepEqual([...g.positions], wantP, `${at} gather positions`);

  const s = store.gatherSpans(layer, head, [[0, n]]);
  assert.deepEqual([...s.keys.data], wantK, `${at} gatherSpans keys`);
  assert.deepEqual([...s.values.data], wantV, `${at} gatherSpans values`);
  assert.deepEqual([...s.positions], wantP, `${at} gatherSpans positions`);

  const k: number[] = [], v: number[] = [], pos: number[] = [];
  let next = 0;
  store.forEachRun(layer, head, 0, n, (keys, values, positions, row, count, token) => {
    assert.equal(token, next, `${at} forEachRun token`);
    assert.ok(count >= 1 && row + count <= p, `${at} forEachRun run inside a page`);
    for (let r = row; r < row + count; r++) {
      for (let j = 0; j < d; j++) {
        k.push(keys[r * d + j]!);
        v.push(values[r * d + j]!);
      }
      pos.push(positions[r]!);
    }
    next += count;
  });
  assert.equal(next, n);
  assert.deepEqual(k, wantK, `${at} forEachRun keys`);
  assert.deepEqual(v, wantV, `${at} forEachRun values`);
  assert.deepEqual(pos, wantP, `${at} forEachRun positions`);

  for (let i = 0; i < store.pageCount(layer, head); i++) {
    const page = store.page(layer, head, i);
    assert.equal(page.length, Math.min(p, n - i * p), `${at} page ${i} length`);
    assert.equal(page.keys.length, p * d);
    assert.equal(page.positions.length, p);
  }
  for (const i of [0, n >> 1, n - 1]) {
    if (i >= 0 && i < n) assert.equal(store.position(layer, head, i), wantP[i], `${at} position`);
  }
}

// ---------------------------------------------------------------- appends

Deno.test("KvStore.append() stores every head of [t, kvHeads, headDim] chunks exactly across page boundaries", () => {
  const chunks = [1, 3, 19, 1, 97, 1, 1, 1003, 1];
  let seed = 1;
  for (const pageSize of [1, 3, 7, 256]) {
    const store = new KvStore({ layers: 2, kvHeads: 3, headDim: 5, pageSize });
    const want: Row[][] = [[], [], []];
    let pos = 0;
    for (const t of chunks) {
      const keys = randn([t, 3, 5], { seed: seed++ });
      const values = randn([t, 3, 5], { seed: seed++ });
      store.append(1, keys, values);
      for (let h = 0; h < 3; h++) {
        want[h]!.push(...rowsOf(store, keys, values, h, range(pos, pos + t)));
      }
      pos += t;
    }
    for (let h = 0; h < 3; h++) {
      assertHead(store, 1, h, want[h]!, `pageSize ${pageSize}`);
      assert.equal(store.length(0, h), 0);
    }
  }
});

Deno.test("KvStore.append() continues positions by default, or takes an array or a start number", () => {
  const store = new KvStore({ layers: 1, kvHeads: 2, headDim: 3, pageSize: 3 });
  const chunk = (t: number, seed: number) => randn([t, 2, 3], { seed });
  store.append(0, chunk(2, 1), chunk(2, 2)); // 0, 1
  store.append(0, chunk(3, 3), chunk(3, 4), 10); // 10, 11, 12
  store.append(0, chunk(1, 5), chunk(1, 6)); // 13
  store.append(0, chunk(4, 7), chunk(4, 8), new Int32Array([50, 40, 60, 0])); // as given
  store.append(0, chunk(2, 9), chunk(2, 10), [7, 7]); // repeats allowed
  store.append(0, chunk(1, 11), chunk(1, 12)); // 8
  store.append(0, chunk(0, 13), chunk(0, 14)); // nothing
  for (let h = 0; h < 2; h++) {
    assert.deepEqual([...store.positions(0, h)], [0, 1, 10, 11, 12, 13, 50, 40, 60, 0, 7, 7, 8]);
  }
  // Default continuation is per head: a head that holds fewer tokens continues from its own last.
  store.appendHead(0, 1, zeros("f32", [2, 3]), zeros("f32", [2, 3]), 100);
  store.append(0, chunk(1, 15), chunk(1, 16));
  assert.equal(store.position(0, 0, 13), 9);
  assert.equal(store.position(0, 1, 15), 102);
  // After evicting the tail, positions continue after the last token still stored.
  store.evict(0, 0, 5, 14);
  store.append(0, chunk(1, 17), chunk(1, 18));
  assert.deepEqual([...store.positions(0, 0)], [0, 1, 10, 11, 12, 13]);
});

Deno.test("KvStore.append() reads strided views and converts f16 input exactly into f32 storage", () => {
  // A [kvHeads, t, d] buffer seen as [t, kvHeads, d] through permute: non-contiguous strides.
  const htd = randn([2, 19, 4], { seed: 3, layout: "htd" });
  const keys = permute(htd, [1, 0, 2], "thd");
  const values = permute(randn([2, 19, 4], { seed: 4 }), [1, 0, 2]);
  const f16 = randn([19, 2, 4], { seed: 5, dtype: "f16" });
  const store = new KvStore({ layers: 1, kvHeads: 2, headDim: 4, pageSize: 7 });
  store.append(0, keys, values);
  store.append(0, f16, f16);
  for (let h = 0; h < 2; h++) {
    assertHead(store, 0, h, [
      ...rowsOf(store, keys, values, h, range(0, 19)),
      ...rowsOf(store, f16, f16, h, range(19, 38)),
    ]);
  }
  // Reversed token order through a negative stride on a one-head view.
  const base = randn([5, 4], { seed: 6 });
  const reversed: Tensor = { ...base, strides: [-4, 1], offset: 16 };
  store.appendHead(0, 0, reversed, reversed, 0);
  assert.deepEqual(
    [...store.gather(0, 0, [38]).keys.data],
    [...base.data.subarray(16, 20)],
  );
});

Deno.test("KvStore stores f16 within f16 rounding and f32 exactly", () => {
  const keys = randn([97, 2, 16], { seed: 11, std: 3 });
  const values = randn([97, 2, 16], { seed: 12, std: 100 });
  for (const dtype of ["f32", "f16"] as const) {
    const store = new KvStore({ layers: 1, kvHeads: 2, headDim: 16, dtype, pageSize: 7 });
    store.append(0, keys, values);
    assert.ok(store.page(0, 0, 0).keys instanceof (dtype === "f16" ? Float16Array : Float32Array));
    for (let h = 0; h < 2; h++) {
      const g = store.gather(0, h, range(0, 97));
      for (let i = 0; i < 97; i++) {
        for (let j = 0; j < 16; j++) {
          const k = read(keys, i, h, j), v = read(values, i, h, j);
          const gk = g.keys.data[i * 16 + j]!, gv = g.values.data[i * 16 + j]!;
          if (dtype === "f32") {
            assert.equal(gk, k);
            assert.equal(gv, v);
          } else {
            assert.equal(gk, Math.f16round(k));
            assert.equal(gv, Math.f16round(v));
            // Round to nearest: half an ulp relative, or half the smallest subnormal.
            assert.ok(Math.abs(gk - k) <= Math.abs(k) * 2 ** -11 + 2 ** -25);
            assert.ok(Math.abs(gv - v) <= Math.abs(v) * 2 ** -11 + 2 ** -25);
          }
        }
      }
    }
  }
});

Deno.test("KvStore.appendHead() keeps ragged per-head lengths", () => {
  const rng = new Rng(21);
  const store = new KvStore({ layers: 2, kvHeads: 4, headDim: 6, pageSize: 3 });
  const want: Row[][] = Array.from({ length: 8 }, () => []);
  const next = new Array<number>(8).fill(0);
  for (let step = 0; step < 60; step++) {
    const layer = rng.int(2), head = rng.int(4), t = [1, 1, 3, 19][rng.int(4)]!;
    const keys = randn([t, 6], { rng }), values = randn([t, 6], { rng, layout: "td" });
    const slot = layer * 4 + head;
    if (step % 3 === 0) {
      const pos = range(0, t).map(() => rng.int(1000));
      store.appendHead(layer, head, keys, values, pos);
      want[slot]!.push(...rowsOfHead(store, keys, values, pos));
      next[slot] = pos[t - 1]! + 1;
    } else {
      store.appendHead(layer, head, keys, values);
      want[slot]!.push(...rowsOfHead(store, keys, values, range(next[slot]!, next[slot]! + t)));
      next[slot]! += t;
    }
  }
  const lengths = new Set<number>();
  for (let l = 0; l < 2; l++) {
    for (let h = 0; h < 4; h++) {
      assertHead(store, l, h, want[l * 4 + h]!, "ragged");
      lengths.add(store.length(l, h));
    }
  }
  assert.ok(lengths.size > 1, "heads should end with different lengths");

  // A head view of a [t, kvHeads, d] tensor goes in through appendHead as well.
  const chunk = randn([3, 4, 6], { seed: 22, layout: "thd" });
  const view = selectAxis(chunk, 1, 2);
  const before = store.length(1, 2);
  store.appendHead(1, 2, view, view, 500);
  assert.deepEqual(
    [...store.gather(1, 2, [before + 1]).keys.data],
    range(0, 6).map((j) => read(chunk, 1, 2, j)),
  );
});

Deno.test("KvStore.forEachRun() visits [start, end) as runs inside pages, in order", () => {
  for (const pageSize of [1, 3, 7]) {
    const store = new KvStore({ layers: 1, kvHeads: 1, headDim: 2, pageSize });
    const t = 40;
    const data = Float32Array.from({ length: t * 2 }, (_, i) => i);
    store.appendHead(0, 0, tensor(data, [t, 2]), tensor(data, [t, 2]), 1000);
    const rng = new Rng(pageSize);
    for (let trial = 0; trial < 30; trial++) {
      const a = rng.int(t + 1), b = rng.int(t + 1);
      const start = Math.min(a, b), end = Math.max(a, b);
      const tokens: number[] = [];
      let calls = 0;
      store.forEachRun(0, 0, start, end, (keys, _values, positions, row, count, token) => {
        calls++;
        assert.equal(row, token % pageSize);
        assert.ok(row === 0 || token === start, "only the first run may start mid-page");
        for (let r = 0; r < count; r++) {
          assert.equal(keys[(row + r) * 2], (token + r) * 2);
          assert.equal(positions[row + r], 1000 + token + r);
          tokens.push(token + r);
        }
      });
      assert.deepEqual(tokens, range(start, end));
      const pages = end === start
        ? 0
        : Math.floor((end - 1) / pageSize) - Math.floor(start / pageSize) + 1;
      assert.equal(calls, pages);
    }
  }
});

Deno.test("KvStore.gather() and gatherSpans() copy any order, repeats and overlapping spans", () => {
  const store = new KvStore({ layers: 1, kvHeads: 2, headDim: 3, pageSize: 7 });
  const keys = randn([19, 2, 3], { seed: 31 }), values = randn([19, 2, 3], { seed: 32 });
  store.append(0, keys, values, 5);
  const rows = rowsOf(store, keys, values, 1, range(5, 24));
  const pick = [18, 0, 7, 7, 6, 13];
  const g = store.gather(0, 1, pick);
  const want = pick.map((i) => rows[i]!);
  assert.deepEqual([...g.keys.data], flat(want, "k"));
  assert.deepEqual([...g.values.data], flat(want, "v"));
  assert.deepEqual([...g.positions], want.map((r) => r.pos));

  const spans: Array<[number, number]> = [[12, 19], [0, 4], [3, 9], [5, 5]];
  const s = store.gatherSpans(0, 1, spans);
  const wantS = spans.flatMap(([a, b]) => rows.slice(a, b));
  assert.deepEqual(s.keys.shape, [wantS.length, 3]);
  assert.deepEqual([...s.keys.data], flat(wantS, "k"));
  assert.deepEqual([...s.values.data], flat(wantS, "v"));
  assert.deepEqual([...s.positions], wantS.map((r) => r.pos));

  const empty = store.gather(0, 0, []);
  assert.deepEqual(empty.keys.shape, [0, 3]);
  assert.equal(store.gatherSpans(0, 0, []).positions.length, 0);
});

// ---------------------------------------------------------------- retain / evict

Deno.test("KvStore.retain() keeps exactly the given tokens and recycles freed pages", () => {
  for (const pageSize of [1, 3, 7, 256]) {
    const rng = new Rng(40 + pageSize);
    const store = new KvStore({ layers: 1, kvHeads: 2, headDim: 4, pageSize });
    let rows: Row[][] = [[], []];
    let next = 0;
    for (let round = 0; round < 12; round++) {
      const t = [1, 3, 19, 97][round % 4]!;
      const keys = randn([t, 2, 4], { rng }), values = randn([t, 2, 4], { rng });
      store.append(0, keys, values, next); // default would continue after a dropped tail
      for (let h = 0; h < 2; h++) {
        rows[h]!.push(...rowsOf(store, keys, values, h, range(next, next + t)));
      }
      next += t;
      const h = round % 2;
      const n = store.length(0, h);
      const keep = range(0, n).filter(() => rng.uniform() < 0.6);
      store.retain(0, h, new Int32Array(keep));
      rows = rows.map((r, i) => (i === h ? keep.map((k) => r[k]!) : r));
      for (let hh = 0; hh < 2; hh++) assertHead(store, 0, hh, rows[hh]!, `pageSize ${pageSize}`);
      const inUse = store.pageCount(0, 0) + store.pageCount(0, 1);
      assert.equal(store.bytesHeldBy(0), inUse * store.pageBytes);
      assert.ok(store.bytesHeld() >= store.bytesHeldBy(0));
    }
    // Keeping everything changes nothing; keeping nothing frees every page of the head.
    store.retain(0, 0, range(0, store.length(0, 0)));
    assertHead(store, 0, 0, rows[0]!);
    const held = store.bytesHeld();
    store.retain(0, 0, []);
    assert.equal(store.length(0, 0), 0);
    assert.equal(store.pageCount(0, 0), 0);
    assert.equal(store.bytesHeld(), held, "freed pages stay on the free list");
    assert.equal(store.bytesHeldBy(0, 0), 0);
  }
});

Deno.test("KvStore.evict() drops [start, end) and returns emptied tail pages to the free list", () => {
  const store = new KvStore({ layers: 1, kvHeads: 1, headDim: 3, pageSize: 7 });
  const keys = randn([97, 3], { seed: 51 }), values = randn([97, 3], { seed: 52 });
  store.appendHead(0, 0, keys, values);
  let rows = rowsOfHead(store, keys, values, range(0, 97));
  for (const [s, e] of [[4, 5], [0, 3], [10, 60], [30, 30], [20, 33], [0, 1]] as const) {
    store.evict(0, 0, s, e);
    rows = [...rows.slice(0, s), ...rows.slice(e)];
    assertHead(store, 0, 0, rows, `evict [${s}, ${e})`);
  }
  const pagesBefore = store.bytesHeld() / store.pageBytes;
  assert.equal(store.pageCount(0, 0), Math.ceil(rows.length / 7));
  assert.equal(pagesBefore, 14, "high-water mark: ceil(97 / 7) pages");
  // Appends take pages from the free list before allocating.
  store.appendHead(0, 0, zeros("f32", [97 - rows.length, 3]), zeros("f32", [97 - rows.length, 3]));
  assert.equal(store.bytesHeld(), pagesBefore * store.pageBytes);
  store.evict(0, 0, 0, store.length(0, 0));
  assert.equal(store.pageCount(0, 0), 0);
  assert.equal(store.bytesUsed(), 0);
});

Deno.test("KvStore holds constant memory while a StreamingLLM window slides over 20k steps", () => {
  const sinks = 4, window = 64, steps = 20_000, d = 8, hkv = 2;
  for (const pageSize of [1, 4, 7, 16, 69]) {
    const store = new KvStore({ layers: 1, kvHeads: hkv, headDim: d, pageSize, dtype: "f16" });
    const rng = new Rng(pageSize);
    const one = zeros("f32", [1, hkv, d]);
    let held = -1;
    for (let step = 0; step < steps; step++) {
      one.data[0] = step; // key[0] of head 0 and ...
      one.data[d] = -step; // ... of head 1 remember the step (exact in f16 up to 2048)
      rng.fillNormal(one.data.subarray(1, d), 0, 1);
      store.append(0, one, one);
      if (store.length(0, 0) > sinks + window) {
        for (let h = 0; h < hkv; h++) store.evict(0, h, sinks, sinks + 1);
      }
      if (step === 1000) held = store.bytesHeld();
      if (step > 1000) assert.equal(store.bytesHeld(), held, `pageSize ${pageSize} step ${step}`);
    }
    const wantPos = [...range(0, sinks), ...range(steps - window, steps)];
    for (let h = 0; h < hkv; h++) {
      assert.deepEqual([...store.positions(0, h)], wantPos);
      const first = store.gather(0, h, range(0, sinks + window)).keys.data;
      for (let i = 0; i < sinks; i++) assert.equal(first[i * d], h === 0 ? i : -i);
    }
    // Two heads of (sinks + window + 1) rows at the peak: at most one spare page each.
    const peakPages = hkv * Math.ceil((sinks + window + 1) / pageSize);
    assert.equal(held, peakPages * store.pageBytes);
    assert.equal(store.bytesUsed(), hkv * (sinks + window) * (2 * d * 2 + 4));
  }
});

// ---------------------------------------------------------------- capacity and bytes

Deno.test("KvStore.append() throws at capacity and writes nothing", () => {
  const store = new KvStore({ layers: 1, kvHeads: 2, headDim: 2, capacity: 10, pageSize: 4 });
  store.append(0, zeros("f32", [9, 2, 2]), zeros("f32", [9, 2, 2]));
  store.appendHead(0, 1, zeros("f32", [1, 2]), zeros("f32", [1, 2]));
  assert.throws(
    () => store.append(0, zeros("f32", [1, 2, 2]), zeros("f32", [1, 2, 2])),
    {
      name: "RangeError",
      message:
        "Cannot append to KvStore: layer 0 head 1 holds 10 tokens and capacity is 10, got 1 more",
    },
  );
  assert.equal(store.length(0, 0), 9, "head 0 had room but nothing was written");
  assert.throws(
    () => store.appendHead(0, 0, zeros("f32", [3, 2]), zeros("f32", [3, 2])),
    /layer 0 head 0 holds 9 tokens and capacity is 10, got 3 more/,
  );
  store.appendHead(0, 0, zeros("f32", [1, 2]), zeros("f32", [1, 2]));
  assert.equal(store.length(0, 0), 10);
  store.evict(0, 0, 0, 1);
  store.appendHead(0, 0, zeros("f32", [1, 2]), zeros("f32", [1, 2]));
  assert.equal(store.bytesHeldBy(0, 0), 3 * store.pageBytes, "never more than ceil(10 / 4) pages");
  // The default page size shrinks to a smaller capacity.
  assert.equal(new KvStore({ layers: 1, kvHeads: 1, headDim: 1, capacity: 100 }).pageSize, 100);
  assert.equal(new KvStore({ layers: 1, kvHeads: 1, headDim: 1 }).pageSize, DEFAULT_KV_PAGE_SIZE);
  assert.equal(new KvStore({ layers: 1, kvHeads: 1, headDim: 1 }).capacity, Infinity);
});

Deno.test("KvStore.bytesHeld() and bytesUsed() count pages and tokens exactly", () => {
  // 2 layers × 3 heads × 100 tokens × headDim 8, f32: a token is 8·4 (key) + 8·4 (value) + 4 (position) = 68 bytes.
  const opts = { layers: 2, kvHeads: 3, headDim: 8 };
  const chunk = () => zeros("f32", [100, 3, 8]);
  const big = new KvStore(opts);
  for (let l = 0; l < 2; l++) big.append(l, chunk(), chunk());
  assert.equal(big.bytesUsed(), 40_800); // 600 tokens × 68
  assert.equal(big.bytesHeld(), 104_448); // 6 pages × 256 rows × 68
  assert.equal(big.bytesHeldBy(1), 52_224);
  assert.equal(big.bytesHeldBy(0, 2), 17_408);

  const small = new KvStore({ ...opts, pageSize: 7 });
  for (let l = 0; l < 2; l++) small.append(l, chunk(), chunk());
  assert.equal(small.bytesUsed(), 40_800);
  assert.equal(small.bytesHeld(), 42_840); // 6 heads × 15 pages × 7 rows × 68

  const half = new KvStore({ ...opts, pageSize: 7, dtype: "f16" });
  for (let l = 0; l < 2; l++) half.append(l, chunk(), chunk());
  assert.equal(half.bytesUsed(), 21_600); // 600 × (8·2 + 8·2 + 4)
  assert.equal(half.bytesHeld(), 22_680); // 90 pages × 7 × 36
  half.evict(1, 0, 0, 100);
  assert.equal(half.bytesUsed(), 18_000);
  assert.equal(half.bytesHeld(), 22_680);
  assert.equal(half.bytesHeldBy(1), 7_560);
});

Deno.test("KvStore.clear() keeps pages for reuse and trim() releases them", () => {
  const store = new KvStore({ layers: 2, kvHeads: 2, headDim: 4, pageSize: 3 });
  for (let l = 0; l < 2; l++) store.append(l, randn([10, 2, 4], { seed: l }), randn([10, 2, 4]));
  const held = store.bytesHeld();
  assert.equal(held, 16 * store.pageBytes);
  store.clear();
  assert.equal(store.bytesUsed(), 0);
  assert.equal(store.bytesHeld(), held);
  for (let l = 0; l < 2; l++) for (let h = 0; h < 2; h++) assert.equal(store.pageCount(l, h), 0);
  // Refilling reuses pages; positions restart at 0; stale rows never show.
  const keys = randn([10, 2, 4], { seed: 9 }), values = randn([10, 2, 4], { seed: 10 });
  store.append(1, keys, values);
  assert.equal(store.bytesHeld(), held);
  for (let h = 0; h < 2; h++) assertHead(store, 1, h, rowsOf(store, keys, values, h, range(0, 10)));
  assert.equal(store.trim(), 8 * store.pageBytes);
  assert.equal(store.bytesHeld(), 8 * store.pageBytes);
  assert.equal(store.trim(), 0);
});

Deno.test("KvStore records its options", () => {
  const store = new KvStore({
    layers: 3,
    kvHeads: 2,
    headDim: 5,
    dtype: "f16",
    pageSize: 9,
    capacity: 1000,
    keyForm: "post-rope",
  });
  assert.deepEqual(
    [store.layers, store.kvHeads, store.headDim, store.dtype, store.pageSize, store.capacity],
    [3, 2, 5, "f16", 9, 1000],
  );
  assert.equal(store.keyForm, "post-rope");
  assert.equal(store.pageBytes, 9 * (2 * 5 * 2 + 4));
  assert.equal(new KvStore({ layers: 1, kvHeads: 1, headDim: 1 }).keyForm, "pre-rope");
  assert.equal(new KvStore({ layers: 1, kvHeads: 1, headDim: 1 }).dtype, "f32");
});

// ---------------------------------------------------------------- bad input

function throwsWith(fn: () => unknown, cls: typeof TypeError | typeof RangeError, message: RegExp) {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e}`);
    assert.match((e as Error).message, /^Cannot [a-z]/);
    assert.match((e as Error).message, message);
    return true;
  });
}

Deno.test("new KvStore() rejects bad options with the right class and a message naming them", () => {
  const ok: KvStoreOptions = { layers: 1, kvHeads: 2, headDim: 4 };
  const make = (o: unknown) => () => new KvStore(o as KvStoreOptions);
  throwsWith(make(undefined), TypeError, /options must be an object, got undefined/);
  throwsWith(
    make({ ...ok, layers: 0 }),
    RangeError,
    /create KvStore: layers must be a positive integer, got 0/,
  );
  throwsWith(
    make({ ...ok, kvHeads: 1.5 }),
    RangeError,
    /kvHeads must be a positive integer, got 1\.5/,
  );
  throwsWith(
    make({ ...ok, headDim: "8" }),
    RangeError,
    /headDim must be a positive integer, got "8"/,
  );
  throwsWith(
    make({ ...ok, headDim: NaN }),
    RangeError,
    /headDim must be a positive integer, got NaN/,
  );
  throwsWith(
    make({ ...ok, pageSize: -1 }),
    RangeError,
    /pageSize must be a positive integer, got -1/,
  );
  throwsWith(
    make({ ...ok, capacity: 0 }),
    RangeError,
    /capacity must be a positive integer or Infinity, got 0/,
  );
  throwsWith(make({ ...ok, capacity: -Infinity }), RangeError, /capacity .* got -Infinity/);
  throwsWith(
    make({ ...ok, dtype: "f64" }),
    TypeError,
    /dtype must be one of "f32", "f16", got "f64"/,
  );
  throwsWith(
    make({ ...ok, keyForm: "rope" }),
    TypeError,
    /keyForm must be one of "pre-rope", "post-rope", got "rope"/,
  );
});

Deno.test("KvStore.append() and appendHead() reject bad layers, heads, tensors and positions", () => {
  const store = new KvStore({ layers: 2, kvHeads: 2, headDim: 4, pageSize: 3 });
  const k3 = (t: number, h = 2, d = 4) => zeros("f32", [t, h, d]);
  const k2 = (t: number, d = 4) => zeros("f32", [t, d]);
  const A = "Cannot append to KvStore: ";
  throwsWith(
    () => store.append(2, k3(1), k3(1)),
    RangeError,
    new RegExp(A + "layer must be an integer in \\[0, 2\\), got 2"),
  );
  throwsWith(() => store.append(-1, k3(1), k3(1)), RangeError, /layer .* got -1/);
  throwsWith(() => store.append(0.5, k3(1), k3(1)), RangeError, /layer .* got 0\.5/);
  throwsWith(
    () => store.appendHead(0, 2, k2(1), k2(1)),
    RangeError,
    /head must be an integer in \[0, 2\), got 2/,
  );
  throwsWith(
    () => store.append(0, k3(1, 3), k3(1)),
    TypeError,
    /keys must have shape \[tokens, kvHeads=2, headDim=4\], got \[1, 3, 4\]/,
  );
  throwsWith(
    () => store.append(0, k3(1), k3(1, 2, 5)),
    TypeError,
    /values must have shape \[tokens, kvHeads=2, headDim=4\], got \[1, 2, 5\]/,
  );
  throwsWith(
    () => store.append(0, k3(3), k3(2)),
    TypeError,
    /values must have as many tokens as keys \(3\), got 2/,
  );
  throwsWith(
    () => store.append(0, k2(1), k2(1)),
    TypeError,
    /keys must have rank 3 \[tokens, kvHeads, headDim\], got shape \[1, 4\]/,
  );
  throwsWith(
    () => store.appendHead(0, 0, k3(1), k3(1)),
    TypeError,
    /keys must have rank 2 \[tokens, headDim\], got shape \[1, 2, 4\]/,
  );
  throwsWith(
    () => store.appendHead(0, 0, k2(2, 5), k2(2, 5)),
    TypeError,
    /keys must have shape \[tokens, headDim=4\], got \[2, 5\]/,
  );
  throwsWith(
    () => store.appendHead(0, 0, k2(2), k2(3)),
    TypeError,
    /values must have as many tokens as keys \(2\), got 3/,
  );
  throwsWith(
    () => store.append(0, zeros("i8", [1, 2, 4]), k3(1)),
    TypeError,
    /keys dtype must be "f32" or "f16", got "i8"/,
  );
  throwsWith(
    () => store.append(0, new Float32Array(8) as unknown as Tensor, k3(1)),
    TypeError,
    /keys must be a Tensor \[tokens, kvHeads, headDim\], got \[0, 0/,
  );
  throwsWith(
    () =>
      store.append(0, zeros("f32", [1, 2, 4], { layout: "thd" }), permute(k3(1), [1, 0, 2], "htd")),
    TypeError,
    /values layout must be "thd" .*, got "htd"/,
  );
  const outside: Tensor = { ...k3(2), offset: 1 };
  throwsWith(
    () => store.append(0, outside, k3(2)),
    RangeError,
    /keys view must lie inside its data of length 16, got offset 1/,
  );
  throwsWith(
    () => store.append(0, k3(2), k3(2), [1]),
    TypeError,
    /positions must have one entry per token \(2\), got length 1/,
  );
  throwsWith(
    () => store.append(0, k3(2), k3(2), [1, 2.5]),
    RangeError,
    /positions\[1\] must be an integer in \[0, 2147483647\], got 2\.5/,
  );
  throwsWith(() => store.append(0, k3(2), k3(2), [-1, 0]), RangeError, /positions\[0\] .* got -1/);
  throwsWith(
    () => store.append(0, k3(2), k3(2), [0, NaN]),
    RangeError,
    /positions\[1\] .* got NaN/,
  );
  throwsWith(
    () => store.append(0, k3(2), k3(2), -3),
    RangeError,
    /positions \(the first position of 2 tokens\) must be an integer in \[0, 2147483646\], got -3/,
  );
  throwsWith(() => store.append(0, k3(2), k3(2), MAX_KV_POSITION), RangeError, /got 2147483647/);
  throwsWith(
    () => store.append(0, k3(1), k3(1), "0" as unknown as number),
    TypeError,
    /positions must be an array of integers, a number or undefined, got "0"/,
  );
  store.append(0, k3(1), k3(1), MAX_KV_POSITION);
  throwsWith(
    () => store.append(0, k3(1), k3(1)),
    RangeError,
    /positions continuing from 2147483648 must stay <= 2147483647, got 1 more tokens/,
  );
  // Nothing above wrote anything except the one valid append.
  for (let l = 0; l < 2; l++) {
    for (let h = 0; h < 2; h++) assert.equal(store.length(l, h), l === 0 ? 1 : 0);
  }
});

Deno.test("KvStore readers, retain() and evict() reject bad indices, keeps and spans", () => {
  const store = new KvStore({ layers: 1, kvHeads: 2, headDim: 2, pageSize: 3 });
  store.append(0, zeros("f32", [5, 2, 2]), zeros("f32", [5, 2, 2]));
  const cb = () => {};
  throwsWith(
    () => store.length(1, 0),
    RangeError,
    /read KvStore length: layer must be an integer in \[0, 1\), got 1/,
  );
  throwsWith(
    () => store.pageCount(0, -1),
    RangeError,
    /head must be an integer in \[0, 2\), got -1/,
  );
  throwsWith(
    () => store.page(0, 0, 2),
    RangeError,
    /read KvStore page: index must be an integer in \[0, 2\), got 2/,
  );
  throwsWith(
    () => store.position(0, 0, 5),
    RangeError,
    /index must be an integer in \[0, 5\), got 5/,
  );
  throwsWith(() => store.positions(0, 2), RangeError, /head .* got 2/);
  throwsWith(() => store.bytesHeldBy(3), RangeError, /measure KvStore bytes: layer .* got 3/);
  throwsWith(() => store.bytesHeldBy(0, 9), RangeError, /head .* got 9/);
  throwsWith(
    () => store.forEachRun(0, 0, 3, 2, cb),
    RangeError,
    /iterate KvStore: range must satisfy 0 <= start <= end <= 5, got \[3, 2\)/,
  );
  throwsWith(() => store.forEachRun(0, 0, 0, 6, cb), RangeError, /got \[0, 6\)/);
  throwsWith(
    () => store.forEachRun(0, 0, 0, 1, null as unknown as () => void),
    TypeError,
    /callback must be a function, got null/,
  );
  throwsWith(
    () => store.gather(0, 0, [0, 5]),
    RangeError,
    /gather from KvStore: indices\[1\] must be an integer in \[0, 5\), got 5/,
  );
  throwsWith(() => store.gather(0, 0, [1.5]), RangeError, /indices\[0\] .* got 1\.5/);
  throwsWith(
    () => store.gather(0, 0, 3 as unknown as number[]),
    TypeError,
    /indices must be an array of token indices, got 3/,
  );
  throwsWith(
    () => store.gatherSpans(0, 0, [[0, 2], [4, 3]]),
    RangeError,
    /spans\[1\] must satisfy 0 <= start <= end <= 5, got \[4, 3\)/,
  );
  throwsWith(() => store.gatherSpans(0, 0, [[0, 6]]), RangeError, /spans\[0\] .* got \[0, 6\)/);
  throwsWith(() => store.gatherSpans(0, 0, [[-1, 2]]), RangeError, /got \[-1, 2\)/);
  throwsWith(
    () => store.gatherSpans(0, 0, [[1]] as unknown as [number, number][]),
    TypeError,
    /spans\[0\] must be a \[start, end\) pair, got \[1\]/,
  );
  throwsWith(
    () => store.gatherSpans(0, 0, null as unknown as [number, number][]),
    TypeError,
    /spans must be an array of \[start, end\) pairs, got null/,
  );
  throwsWith(
    () => store.retain(0, 0, [0, 2, 2]),
    RangeError,
    /retain in KvStore: keep must be strictly increasing, got keep\[1\] = 2 then keep\[2\] = 2/,
  );
  throwsWith(() => store.retain(0, 0, [3, 1]), RangeError, /keep\[0\] = 3 then keep\[1\] = 1/);
  throwsWith(
    () => store.retain(0, 0, [0, 5]),
    RangeError,
    /keep\[1\] must be an integer in \[0, 5\), got 5/,
  );
  throwsWith(() => store.retain(0, 0, [-1]), RangeError, /keep\[0\] .* got -1/);
  throwsWith(
    () => store.retain(0, 0, "01" as unknown as number[]),
    TypeError,
    /keep must be an array of token indices, got "01"/,
  );
  throwsWith(
    () => store.evict(0, 0, 4, 2),
    RangeError,
    /evict from KvStore: range must satisfy 0 <= start <= end <= 5, got \[4, 2\)/,
  );
  throwsWith(() => store.evict(0, 0, 0, 6), RangeError, /got \[0, 6\)/);
  throwsWith(() => store.evict(0, 1, NaN, 1), RangeError, /got \[NaN, 1\)/);
  assert.equal(store.length(0, 0), 5, "failed retain/evict change nothing");
  assert.equal(store.length(0, 1), 5);
});
