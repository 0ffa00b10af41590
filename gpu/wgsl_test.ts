// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import { type KernelConfig, tryRequestGpu } from "./device.ts";
import type { WgslStorage } from "./_wgsl/common.ts";
import { denseDecodeWgsl } from "./_wgsl/dense_decode.ts";
import { densePrefillWgsl, prefillTiles } from "./_wgsl/dense_prefill.ts";
import { kvWriteWgsl } from "./_wgsl/kv_write.ts";
import { mergeWgsl } from "./_wgsl/merge.ts";
import { scoreWgsl } from "./_wgsl/score.ts";
import { sparseAttendWgsl } from "./_wgsl/sparse_attend.ts";
import { topKWgsl } from "./_wgsl/topk.ts";

const probe = await tryRequestGpu();
const gpu = probe.gpu;
if (gpu === undefined) {
  console.log(`gpu/wgsl_test.ts: skipping WGSL compile checks: ${probe.reason}`);
}
const ignore = gpu === undefined;
const storages: WgslStorage[] = gpu?.features.shaderF16 === false
  ? ["f32", "f16-packed"]
  : ["f32", "f16", "f16-packed"];

/** Compiles `build(config)` for every config and fails with the first compiler error. */
async function compileAll<C extends KernelConfig>(
  kernel: string,
  configs: C[],
  build: (c: C) => string,
): Promise<void> {
  for (const c of configs) {
    const messages = await gpu!.compileMessages(kernel, c, build);
    const errors = messages.filter((m) => m.type === "error");
    assert.equal(errors.length, 0, `${kernel} ${JSON.stringify(c)}: ${errors[0]?.message}`);
  }
  console.log(`  ${kernel}: ${configs.length} configs compiled`);
}

function* product<T extends Record<string, readonly unknown[]>>(
  axes: T,
): Generator<{ [K in keyof T]: T[K][number] }> {
  const keys = Object.keys(axes) as (keyof T)[];
  const idx = keys.map(() => 0);
  while (true) {
    yield Object.fromEntries(keys.map((k, i) => [k, axes[k]![idx[i]!]])) as {
      [K in keyof T]: T[K][number];
    };
    let a = keys.length - 1;
    while (a >= 0 && ++idx[a]! === axes[keys[a]!]!.length) idx[a--] = 0;
    if (a < 0) return;
  }
}

Deno.test({
  name: "every WGSL builder compiles for every config of the test matrix",
  ignore,
  fn: async () => {
    await compileAll(
      "kv-write",
      [...product({ src: storages, dst: storages, workgroupSize: [64] })],
      kvWriteWgsl,
    );
    await compileAll(
      "merge-states",
      [...product({
        headDim: [1, 8, 24, 64, 128, 130],
        workgroupSize: [64],
        planned: [false, true],
      })],
      mergeWgsl,
    );
    await compileAll(
      "dense-decode",
      [...product({
        headDim: [8, 24, 64, 128, 256],
        rows: [1, 2, 4, 16],
        workgroupSize: [64],
        query: storages,
        kv: storages,
      })],
      denseDecodeWgsl,
    );
    const prefill = [];
    for (const c of product({ headDim: [8, 24, 64, 128, 256], query: storages, kv: storages })) {
      for (const limit of [16384, 32768]) {
        prefill.push({ ...c, workgroupSize: 64, ...prefillTiles(c.headDim, c.kv, limit) });
      }
    }
    await compileAll("dense-prefill", prefill, densePrefillWgsl);
    await compileAll(
      "sparse-attend",
      [...product({
        headDim: [8, 16, 64, 128],
        rows: [1, 4, 16],
        workgroupSize: [64],
        query: storages,
        kv: storages,
        rope: ["none", "halves", "adjacent"] as const,
      })],
      sparseAttendWgsl,
    );
    await compileAll(
      "score-keys",
      [...product({
        headDim: [8, 24, 128],
        rows: [1, 16],
        workgroupSize: [64],
        query: storages,
        keys: storages,
        mode: ["dot", "bound"] as const,
      })],
      scoreWgsl,
    );
    await compileAll(
      "top-k",
      [...product({
        workgroupSize: [256],
        sortSize: [1, 2, 64, 1024],
        order: ["score", "index"] as const,
      })],
      topKWgsl,
    );
  },
});
