// Copyright 2026 the longctx authors. MIT license.

import assert from "node:assert/strict";
import { randomCheckpoint } from "./checkpoint.ts";
import { Llama } from "./llama.ts";
import { calibrateDuoHeads, passkeyHeadProfile, topRetrievalHeads } from "./duo_calibration.ts";
import type { LongHeads } from "../attention/long_heads.ts";
import {
  contextFactor,
  describeNamedPipeline,
  duoRecent,
  namedPipeline,
  PIPELINE_NAMES,
} from "./pipelines.ts";
import { assertClose } from "../tests/_util.ts";

const SHAPE = {
  dim: 32,
  hiddenDim: 48,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  vocabSize: 29,
  seqLen: 256,
};

Deno.test("namedPipeline() sizes each technique from the target / trained context ratio", () => {
  const c = randomCheckpoint(SHAPE).config;
  assert.equal(contextFactor(c, 1024), 4);
  assert.equal(contextFactor(c, 100), 1);
  const at = (name: (typeof PIPELINE_NAMES)[number]) =>
    namedPipeline(name, c, { targetContext: 1024, duoRetrieval: [[true, false], [false, true]] });
  assert.deepEqual(at("pi").rope!.scaling, { type: "linear", factor: 4 });
  assert.deepEqual(at("ntk").rope!.scaling, { type: "ntk", factor: 4 });
  assert.deepEqual(at("yarn").rope!.scaling, { type: "yarn", factor: 4, originalMaxPosition: 256 });
  assert.equal(at("yarn").rope!.attentionFactor, 0.1 * Math.log(4) + 1);
  const dyn = at("dynamic-ntk");
  assert.equal(dyn.store.keyForm, "pre-rope");
  assert.equal(dyn.rope!.forSequenceLength(256), dyn.rope); // plain up to the trained context
  for (const name of PIPELINE_NAMES) {
    const p = at(name);
    assert.equal(p.rope!.layout, "adjacent", name);
    assert.ok(describeNamedPipeline(name, c, { targetContext: 1024 }).length > 0);
  }
  const s = at("streaming").plan(0, 0);
  assert.equal(s.selector.name, "streaming-llm");
  assert.deepEqual(s.policy.keeps, { kind: "sink-window", sinks: 4, window: 252 });
  assert.deepEqual(at("lm-infinite").plan(1, 1).policy.keeps, {
    kind: "sink-window",
    sinks: 10,
    window: 256,
  });
  assert.equal(at("longheads").plan(0, 1).selector.name, "long-heads");
  const kb = at("longheads-kb").plan(0, 1).selector as LongHeads;
  assert.equal(kb.chunkScore, "key-bound");
  assert.equal(kb.chunkSize, 64);
  assert.equal((at("longheads").plan(0, 1).selector as LongHeads).chunkScore, "summary");
  const duoKb = at("duo-longheads-kb");
  assert.equal((duoKb.plan(0, 0).selector as LongHeads).chunkScore, "key-bound");
  assert.equal(duoKb.plan(0, 1).policy.name, "sink-window");
  const duo = at("duo-longheads");
  assert.equal(duo.plan(0, 0).selector.name, "long-heads");
  assert.equal(duo.plan(0, 1).policy.name, "sink-window");
  assert.equal(duoRecent(256), 64);
  assert.throws(() => namedPipeline("duo", c), /needs duoRetrieval/);
  assert.throws(() => namedPipeline("bogus" as "dense", c), /name must be one of/);
  assert.throws(() => namedPipeline("pi", c, { targetContext: 0 }), RangeError);
});

Deno.test("DuoAttention pipelines: all-retrieval is dense; streaming heads differ past their window", () => {
  const ckpt = randomCheckpoint(SHAPE, { seed: 21 });
  const tokens = Array.from({ length: 120 }, (_, i) => (i * 11 + (i % 7)) % SHAPE.vocabSize);
  const logits = (m: Llama): Float32Array => Float32Array.from(m.forward(tokens));
  const dense = logits(new Llama(ckpt));
  const all = [[true, true], [true, true]];
  const duo = new Llama(ckpt, {
    pipeline: (c) => namedPipeline("duo", c, { targetContext: 1024, duoRetrieval: all }),
  });
  assertClose(logits(duo), dense, { atol: 1e-4, rtol: 1e-4 });
  // Window 4 sinks + 65 recent < 120 tokens: a streaming head changes the output.
  const mixed = new Llama(ckpt, {
    pipeline: (c) =>
      namedPipeline("duo", c, { targetContext: 1024, duoRetrieval: [[true, false], [true, true]] }),
  });
  const got = logits(mixed);
  assert.ok(got.some((x, i) => Math.abs(x - dense[i]!) > 1e-3));
});

Deno.test("calibrateDuoHeads() ranks heads by the mass outside the window; a wider window drops less", () => {
  const ckpt = randomCheckpoint(SHAPE, { seed: 5 });
  const tokens = Array.from({ length: 60 }, (_, i) => (i * 7 + 1) % SHAPE.vocabSize);
  const model = new Llama(ckpt);
  const cal = calibrateDuoHeads(model, tokens, { sinks: 2, recent: 10, retrievalRatio: 0.25 });
  assert.equal(cal.scores.length, 4);
  assert.equal(cal.retrieval.flat().filter(Boolean).length, 1);
  const best = cal.scores.indexOf(Math.max(...cal.scores));
  assert.equal(cal.retrieval[Math.floor(best / 2)]![best % 2], true);
  // A larger window drops less mass for every head.
  const wide = calibrateDuoHeads(model, tokens, { sinks: 2, recent: 40 });
  for (let i = 0; i < 4; i++) assert.ok(wide.scores[i]! <= cal.scores[i]! + 1e-12);
  assert.throws(() => calibrateDuoHeads(model, tokens, { sinks: 2, recent: 60 }), /longer than/);
  assert.throws(
    () => calibrateDuoHeads(model, tokens, { sinks: 2, recent: 4, retrievalRatio: 2 }),
    /retrievalRatio/,
  );
});

Deno.test("topRetrievalHeads() keeps the top fraction, ties to the lower index; rejects bad sizes", () => {
  assert.deepEqual(topRetrievalHeads([0.5, 0.5, 0.1, 0.9], 2, 2, 0.5), [[true, false], [
    false,
    true,
  ]]);
  assert.deepEqual(topRetrievalHeads([1, 2, 3], 1, 3, 0), [[false, false, false]]);
  assert.deepEqual(topRetrievalHeads([1, 2, 3], 3, 1, 1), [[true], [true], [true]]);
  assert.throws(() => topRetrievalHeads([1, 2, 3], 2, 2, 0.5), {
    name: "RangeError",
    message: /scores must hold layers · kvHeads = 4 values, got 3/,
  });
  assert.throws(() => topRetrievalHeads([1, 2], 1, 2, 1.5), /ratio must be in \[0, 1\], got 1.5/);
});

Deno.test("passkeyHeadProfile(): a fact spanning the whole prompt gets every head's full attention", () => {
  const ckpt = randomCheckpoint(SHAPE, { seed: 8 });
  const model = new Llama(ckpt);
  const tokens = Array.from({ length: 40 }, (_, i) => (i * 5 + 2) % SHAPE.vocabSize);
  const answer = [3, 4, 5];
  // The answering queries are the prompt's last token and the first two answer tokens; a "fact"
  // covering tokens 0 … 39 leaves them only their own (answer) keys outside it.
  const whole = passkeyHeadProfile(model, [{ tokens, answer, factPosition: 0, factTokens: 40 }]);
  const part = passkeyHeadProfile(model, [{ tokens, answer, factPosition: 10, factTokens: 5 }]);
  assert.equal(whole.queryHeads.length, SHAPE.layers * SHAPE.heads);
  assert.equal(whole.kvHeads.length, SHAPE.layers * SHAPE.kvHeads);
  for (let i = 0; i < whole.queryHeads.length; i++) {
    assert.ok(whole.queryHeads[i]! > 0.9 && whole.queryHeads[i]! <= 1);
    assert.ok(part.queryHeads[i]! > 0 && part.queryHeads[i]! < whole.queryHeads[i]!);
  }
  // KV-head shares are the means of their query groups.
  const g = SHAPE.heads / SHAPE.kvHeads;
  for (let k = 0; k < whole.kvHeads.length; k++) {
    let m = 0;
    for (let r = 0; r < g; r++) m += part.queryHeads[k * g + r]! / g;
    assert.ok(Math.abs(part.kvHeads[k]! - m) < 1e-12);
  }
  // With no answer tokens beyond the first, only the last prompt token asks: a fact that is
  // the whole prompt takes all of its attention.
  const one = passkeyHeadProfile(model, [{ tokens, answer: [3], factPosition: 0, factTokens: 40 }]);
  for (const x of one.queryHeads) assert.ok(Math.abs(x - 1) < 1e-12);
  assert.throws(() => passkeyHeadProfile(model, []), /prompts must not be empty/);
  assert.throws(
    () => passkeyHeadProfile(model, [{ tokens, answer, factPosition: 38, factTokens: 5 }]),
    /prompts\[0\]'s fact \[38, 43\) must lie inside its 40 tokens/,
  );
});
