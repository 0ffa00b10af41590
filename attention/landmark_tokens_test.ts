// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import {
  dropLandmarkRows,
  insertLandmarks,
  isLandmarkIndex,
  LANDMARK_PRESETS,
  landmarkChunkLength,
  LandmarkInserter,
  landmarkMask,
  removeLandmarks,
} from "./landmark_tokens.ts";
import { permute, Rng, tensor } from "../tensor/mod.ts";

Deno.test("insertLandmarks puts a landmark after every blockSize content tokens, none after a partial block", () => {
  for (const bs of [1, 2, 3, 50, 63]) {
    for (const n of [0, 1, 3, 19, 99, 1177]) {
      const tokens = Int32Array.from({ length: n }, (_, i) => 100 + i);
      const s = insertLandmarks(tokens, { landmarkId: -7, blockSize: bs });
      assert.equal(s.length, n + Math.floor(n / bs), `bs=${bs} n=${n}`);
      for (let i = 0; i < s.length; i++) {
        assert.equal(s[i] === -7, isLandmarkIndex(i, bs), `bs=${bs} n=${n} i=${i}`);
      }
      assert.deepEqual([...removeLandmarks(s, { blockSize: bs })], [...tokens]);
      // The stream never ends with content that should have been closed by a landmark.
      if (n > 0 && n % bs === 0) assert.equal(s[s.length - 1], -7);
    }
  }
});

Deno.test("LandmarkInserter gives the batch stream for any split of prompt and generated tokens", () => {
  const rng = new Rng(4);
  for (const bs of [1, 3, 7, 63]) {
    const n = 300;
    const tokens = Int32Array.from({ length: n }, () => rng.int(1000));
    const want = insertLandmarks(tokens, { landmarkId: 5000, blockSize: bs });
    const ins = new LandmarkInserter({ landmarkId: 5000, blockSize: bs });
    const got: number[] = [];
    let i = 0;
    while (i < n) {
      const len = i === 0 ? 1 + rng.int(2 * bs) : (rng.int(4) === 0 ? 1 + rng.int(9) : 1);
      const part = tokens.subarray(i, Math.min(n, i + len));
      const feed = ins.feed(part);
      assert.equal(feed.start, got.length, "start is the stream index");
      // contentRows point at the fed tokens, in order; every other row is a landmark.
      assert.deepEqual([...feed.contentRows].map((r) => feed.tokens[r]), [...part]);
      for (let r = 0; r < feed.tokens.length; r++) {
        const isContent = feed.contentRows.includes(r);
        assert.equal(!isContent, isLandmarkIndex(feed.start + r, bs));
      }
      assert.equal(feed.predictRow, feed.contentRows[feed.contentRows.length - 1]);
      got.push(...feed.tokens);
      i += part.length;
    }
    assert.deepEqual(got, [...want]);
    assert.equal(ins.contentLength, n);
    assert.equal(ins.streamLength, want.length);
  }
});

Deno.test("LandmarkInserter: a generated token that completes a block is run with its landmark, whose logits are dropped", () => {
  const ins = new LandmarkInserter({ landmarkId: 9, blockSize: 2 });
  assert.deepEqual([...ins.feed([1]).tokens], [1]);
  const f = ins.feed([2]);
  assert.deepEqual([...f.tokens], [2, 9]);
  assert.equal(f.predictRow, 0);
  assert.deepEqual([...f.contentRows], [0]);
  assert.equal(ins.feed([]).predictRow, -1);
  ins.reset();
  assert.equal(ins.streamLength, 0);
});

Deno.test("dropLandmarkRows keeps content rows of strided tensors of any rank, honouring start", () => {
  // [tokens=9, heads=2, d=3] viewed through a permutation: strides are not row-major.
  const base = tensor(Float32Array.from({ length: 54 }, (_, i) => i), [2, 9, 3]);
  const x = permute(base, [1, 0, 2]); // [9, 2, 3]
  const kept = dropLandmarkRows(x, { blockSize: 2, start: 1 }); // landmarks at stream 2, 5, 8 → rows 1, 4, 7
  assert.deepEqual(kept.shape, [6, 2, 3]);
  const rows = [0, 2, 3, 5, 6, 8];
  rows.forEach((r, k) => {
    for (let h = 0; h < 2; h++) {
      for (let i = 0; i < 3; i++) {
        assert.equal(kept.data[(k * 2 + h) * 3 + i], base.data[h * 27 + r * 3 + i]);
      }
    }
  });
  const logits = tensor(new Float16Array([1, 2, 3, 4]), [4]);
  const k16 = dropLandmarkRows(logits, { blockSize: 1 });
  assert.ok(k16.data instanceof Float16Array);
  assert.deepEqual([...k16.data], [1, 3]);
});

Deno.test("landmarkMask marks the landmark slots of a chunk in the middle of a stream", () => {
  const m = landmarkMask(130, { blockSize: 63, start: 60 });
  const idx = [...m.keys()].filter((i) => m[i] === 1);
  assert.deepEqual(idx, [3, 67]); // stream 63 and 127
  assert.equal(landmarkMask(0).length, 0);
});

Deno.test("presets and chunk length follow the authors' settings", () => {
  assert.equal(LANDMARK_PRESETS["lm-benchmark"].blockSize, 50);
  assert.equal(LANDMARK_PRESETS["llama-7b"].blockSize, 63);
  assert.equal(LANDMARK_PRESETS["llama-7b"].landmarkId, 32001);
  assert.equal(landmarkChunkLength({ blockSize: 50, topK: 5, trainLength: 512 }), 204);
  assert.equal(landmarkChunkLength(LANDMARK_PRESETS["lm-benchmark"]), 510 - 5 * 51);
  assert.throws(
    () => landmarkChunkLength({ blockSize: 63, topK: 7, trainLength: 512 }),
    /must leave room in trainLength 512, got topK 7/,
  );
});

Deno.test("landmark token helpers reject bad input with the argument and value in the message", () => {
  assert.throws(
    () => insertLandmarks([1, 2], { landmarkId: 0, blockSize: 0 }),
    /blockSize must be a positive integer, got 0/,
  );
  assert.throws(
    () => insertLandmarks([1, 2.5], { landmarkId: 0 }),
    /tokens\[1\] must be an integer, got 2.5/,
  );
  assert.throws(
    () => new LandmarkInserter({ landmarkId: NaN }),
    /landmarkId must be an integer, got NaN/,
  );
  assert.throws(() => removeLandmarks([1], { start: -1 }), /start must be non-negative, got -1/);
  assert.throws(() => isLandmarkIndex(-1, 3), RangeError);
  assert.throws(() => dropLandmarkRows(tensor(new Float32Array(1), []), {}), TypeError);
});
