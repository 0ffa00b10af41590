// Copyright 2026 the longctx authors. MIT license.

/**
 * The sparse attend kernel on WebGPU: executes any {@linkcode Selection}
 * over a {@linkcode GpuKvStore} layer with an exact softmax over exactly the
 * selected keys, at the positions the selection names — the fast path of
 * `sparseAttend` (`attention/sparse_attend.ts`), with the same position rules.
 *
 * @module
 */

import type { AttendStats } from "../attention/sparse_attend.ts";
import type { HeadSelection, Selection } from "../attention/selection.ts";
import { resolveScale } from "../attention/_validate.ts";
import type { RopeLayout } from "../positional/rope.ts";
import { describeValue, requirePositiveInt } from "../tensor/validate.ts";
import { type GpuCommand, type GpuContext, STORAGE_USAGE } from "./device.ts";
import type { GpuKvView } from "./kv_store.ts";
import { mergeCommands } from "./_merge.ts";
import { createGpuTensor, type GpuAttentionState, type GpuTensor } from "./tensor.ts";
import { requireBindable, requireGpuThd, storageOf } from "./_kernel.ts";
import { ropeTableBuffer } from "./_rope_tables.ts";
import { grid2d } from "./_wgsl/common.ts";
import {
  GROUP_FIELDS,
  ITEM_FIELDS,
  SPARSE_ATTEND_PARAMS,
  sparseAttendWgsl,
  sparseAttendWorkgroupBytes,
} from "./_wgsl/sparse_attend.ts";

/** Threads per workgroup (keys per tile) of the sparse kernel. */
const SPARSE_WORKGROUP = 64;
/** Workgroup-memory budget of one sparse workgroup. */
const WORKGROUP_BUDGET = 16384;
/** Most query heads one workgroup serves. */
const MAX_ROWS = 16;
/** Largest |position| the GPU path rotates to (positions are i32 on the device). */
const MAX_GPU_POSITION = 2 ** 31 - 1;

/**
 * The RoPE a GPU kernel can apply on read: what `Rope` (`positional/rope.ts`)
 * exposes. Frequencies are read from `invFreq`; `attentionFactor²` scales the
 * logits, as on the CPU.
 */
export interface GpuRotary {
  /** Head dimension (even). */
  readonly headDim: number;
  /** Pairing of dimensions. */
  readonly layout: RopeLayout;
  /** Inverse frequencies after scaling, `[headDim / 2]`. */
  readonly invFreq: Float64Array;
  /** Multiplies q and k (YaRN's mscale). */
  readonly attentionFactor: number;
}

/** Options of {@linkcode sparseAttendWebGpu}. */
export interface SparseAttendWebGpuOptions {
  /** Original position of each query token (integers when `rope` is given), `[queryTokens]`. */
  queryPositions: ArrayLike<number>;
  /** RoPE to apply (queries always arrive raw). Needs a store view (positions). */
  rope?: GpuRotary;
  /** Multiplies q·k; `attentionFactor²` is applied on top. @default {1 / Math.sqrt(headDim)} */
  scale?: number;
  /** Logit soft-cap. @default {undefined} (none) */
  softCap?: number;
  /** Accumulates what was read, exactly as `sparseAttend` counts it. */
  stats?: AttendStats;
  /** Most cache indices one workgroup reads (a long span is split-K'd). @default {512} */
  chunkTokens?: number;
}

/**
 * {@linkcode sparseAttend} on the GPU: for each query token and head, exact
 * softmax attention over exactly the spans of its {@linkcode HeadSelection},
 * seen at the positions it names, returning `{ out, lse }`.
 *
 * The host turns the selections into a work list: query heads of a KV head
 * that share one `HeadSelection` object form a *row group* (≤ 16 heads, the
 * GQA group reading each key once); each span is cut into *work items* of at
 * most `chunkTokens` cache indices that stay inside one store buffer. One
 * workgroup per item runs the decode tile loop and writes a partial state;
 * the LSE merge reduces the items of each row group (split-K). Positions
 * follow the CPU kernel's rule exactly:
 *
 * - no `rope`: keys and queries as stored;
 * - post-RoPE keys at original positions: the query is rotated to its position;
 * - post-RoPE keys seen with a constant shift δ (consecutive original
 *   positions): the query is rotated to `queryAt − δ`, keys read as stored;
 * - post-RoPE keys whose positions have gaps: each key is rotated by
 *   `seen − original` on read;
 * - pre-RoPE keys: each key is rotated to its seen position on read, the query to `queryAt`.
 *
 * Rotations read cos/sin from two f32 tables computed in float64 on the host
 * (`cos((a·4096 + b)θ)` by angle addition), so large positions lose nothing
 * to an f32 angle.
 *
 * | cost | |
 * | --- | --- |
 * | reads | each selected K/V row once per row group, plus one position per rotated key |
 * | host | O(spans + queryTokens · heads) planning, one small upload |
 * | dispatches | one per store buffer holding selected keys, plus one merge |
 *
 * @param gpu The context.
 * @param query Raw (pre-RoPE) queries, contiguous `[queryTokens, heads, headDim]`, f32 or f16.
 * @param kv A store layer's view (`store.view(layer)`); a tensor view works without `rope`.
 * @param selections One {@linkcode Selection} per query token (`selections[t][h]`).
 * @param options Query positions, RoPE, scale, soft-cap, stats, chunk size.
 * @returns `{ out: [queryTokens, heads, headDim], lse: [queryTokens, heads] }` on the GPU (pooled).
 * @throws {TypeError} On shape mismatches between query, cache and selections.
 * @throws {RangeError} On spans beyond the cache length, non-integer or out-of-range positions.
 * @throws {GpuDeviceLostError} If the device is lost.
 *
 * @example StreamingLLM positions with RoPE on read, vs `sparseAttend` (skipped without a GPU)
 * ```ts
 * import { downloadState, GpuKvStore, sparseAttendWebGpu, tryRequestGpu, upload } from "@longctx/longctx/gpu";
 * import { headSelection, sparseAttend } from "@longctx/longctx/attention";
 * import { KvStore } from "@longctx/longctx/kv";
 * import { Rope } from "@longctx/longctx/positional";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const [key, value] = [1, 2].map((seed) => randn([200, 2, 32], { seed }));
 *   const query = randn([1, 8, 32], { seed: 3 });
 *   const store = new GpuKvStore(gpu, { layers: 1, kvHeads: 2, headDim: 32, capacity: 256, dtype: "f32" });
 *   const cpuStore = new KvStore({ layers: 1, kvHeads: 2, headDim: 32 });
 *   store.append(0, key, value);
 *   cpuStore.append(0, key, value);
 *   const sel = headSelection([[0, 4], [150, 200]], { seenAt: [0, 4], queryAt: 54 }); // sinks + window
 *   const options = { queryPositions: [199], rope: new Rope({ headDim: 32 }) };
 *   const st = await downloadState(gpu, sparseAttendWebGpu(gpu, upload(gpu, query), store.view(0), [Array(8).fill(sel)], options));
 *   const cpu = sparseAttend(query, cpuStore, [Array(8).fill(sel)], { layer: 0, ...options });
 *   st.out.data.forEach((x, i) => assert.ok(Math.abs(x - cpu.out.data[i]) < 1e-4));
 *   store.destroy();
 *   gpu.destroy();
 * }
 * ```
 */
export function sparseAttendWebGpu(
  gpu: GpuContext,
  query: GpuTensor,
  kv: GpuKvView,
  selections: readonly Selection[],
  options: SparseAttendWebGpuOptions,
): GpuAttentionState {
  const action = "attend sparsely on GPU";
  requireGpuThd(action, "query", query);
  requireBindable(gpu, action, "query", query.buffer);
  const [tq, heads, d] = query.shape as [number, number, number];
  if (kv === null || typeof kv !== "object" || !Array.isArray(kv.segments)) {
    throw new TypeError(`Cannot ${action}: kv must be a GpuKvView, got ${describeValue(kv)}`);
  }
  if (kv.headDim !== d) {
    throw new TypeError(
      `Cannot ${action}: query headDim (${d}) does not match store headDim (${kv.headDim})`,
    );
  }
  const kvHeads = kv.kvHeads;
  if (heads % kvHeads !== 0) {
    throw new RangeError(
      `Cannot ${action}: query heads (${heads}) must be a multiple of kvHeads, got kvHeads ${kvHeads}`,
    );
  }
  const group = heads / kvHeads;
  if (!Array.isArray(selections) || selections.length !== tq) {
    throw new TypeError(
      `Cannot ${action}: selections must have one entry per query token (${tq}), got ${
        describeValue((selections as unknown[])?.length)
      }`,
    );
  }
  const qpos = options?.queryPositions;
  if (qpos === undefined || qpos.length !== tq) {
    throw new TypeError(
      `Cannot ${action}: queryPositions must have one entry per query token (${tq}), got ${
        describeValue(qpos?.length)
      }`,
    );
  }
  const rope = options.rope;
  if (rope !== undefined) {
    if (rope.headDim !== d) {
      throw new TypeError(
        `Cannot ${action}: rope headDim (${rope.headDim}) does not match query headDim (${d})`,
      );
    }
    if (kv.positions === undefined) {
      throw new TypeError(
        `Cannot ${action}: rope needs the original positions of a GpuKvStore view, got a view without positions`,
      );
    }
  }
  const base = resolveScale(action, d, options.scale, options.softCap);
  const factor = rope?.attentionFactor ?? 1;
  const scale = base.scale * factor * factor;
  const chunk = requirePositiveInt(action, "chunkTokens", options.chunkTokens ?? 512);
  const stats = options.stats;
  const preRope = kv.keyForm === "pre-rope";
  const length = kv.length;
  const pos = kv.positions;
  const bytesPerRow = 2 * d * (kv.dtype === "f16" ? 2 : 4);

  // Pass 1: validate, and find the longest run of heads sharing a selection.
  let longest = 1;
  for (let t = 0; t < tq; t++) {
    const sel = selections[t]!;
    if (!Array.isArray(sel) || sel.length !== heads) {
      throw new TypeError(
        `Cannot ${action}: selections[${t}] must have one HeadSelection per query head (${heads}), got ${
          describeValue((sel as unknown[])?.length)
        }`,
      );
    }
    const p = qpos[t];
    if (typeof p !== "number" || !Number.isFinite(p)) {
      throw new RangeError(
        `Cannot ${action}: queryPositions[${t}] must be a finite number, got ${describeValue(p)}`,
      );
    }
    if (rope !== undefined) requireGpuPosition(action, `queryPositions[${t}]`, p);
    for (let h = 0; h < heads; h++) {
      const hs = sel[h]!;
      if (h % group === 0 || sel[h - 1] !== hs) validateSelection(action, hs, length, t, h, rope);
    }
    for (let kh = 0; kh < kvHeads; kh++) {
      let g0 = 0;
      while (g0 < group) {
        let g1 = g0 + 1;
        while (g1 < group && sel[kh * group + g1] === sel[kh * group + g0]) g1++;
        longest = Math.max(longest, g1 - g0);
        g0 = g1;
      }
    }
  }
  gpu.checkAlive(action);
  const wg = SPARSE_WORKGROUP;
  let rows = Math.min(longest, MAX_ROWS);
  while (rows > 1 && sparseAttendWorkgroupBytes(d, rows, wg) > WORKGROUP_BUDGET) rows--;

  // Pass 2: row groups, work items (bucketed by segment), slots, merge plan.
  const segEnds = kv.segments.map((s) => s.tokenStart + s.tokenCount);
  const groups: number[] = [];
  const itemsBySeg: number[][] = kv.segments.map(() => []);
  const plan = new Uint32Array(tq * heads * 4);
  let planRows = 0;
  let slots = 0;
  let maxAbs = 0;
  let maxStored = -1;
  const storedMax = (): number => {
    if (maxStored < 0) {
      maxStored = 0;
      for (let j = 0; j < length; j++) maxStored = Math.max(maxStored, Math.abs(pos!.host[j]!));
    }
    return maxStored;
  };
  for (let t = 0; t < tq; t++) {
    const sel = selections[t]!;
    const p = qpos[t]!;
    for (let kh = 0; kh < kvHeads; kh++) {
      let g0 = 0;
      while (g0 < group) {
        const hs = sel[kh * group + g0]!;
        let g1 = g0 + 1;
        while (g1 < group && sel[kh * group + g1] === hs) g1++;
        let read = 0;
        for (let i = 0; i < hs.spans.length; i += 2) read += hs.spans[i + 1]! - hs.spans[i]!;
        if (stats !== undefined) {
          for (let h = kh * group + g0; h < kh * group + g1; h++) stats.tokensPerHead[h]! += read;
          stats.rowsRead += read;
          stats.bytesRead += read * bytesPerRow;
        }
        const queryAt = hs.queryAt ?? p;
        for (let c0 = g0; c0 < g1; c0 += rows) {
          const n = Math.min(rows, g1 - c0);
          const gi = groups.length / GROUP_FIELDS;
          groups.push(t, kh * group + c0, n, kh, 0, 0, 0, 0);
          const slotStart = slots;
          for (let i = 0; i < hs.spans.length; i += 2) {
            const s = hs.spans[i]!, e = hs.spans[i + 1]!;
            const seen0 = hs.seenAt === undefined ? undefined : hs.seenAt[i >> 1]!;
            let seg = 0;
            for (let a = s; a < e;) {
              while (segEnds[seg]! <= a) seg++;
              const b = Math.min(e, a + chunk, segEnds[seg]!);
              let keyMode = 0, qMode = 0, qPos = 0, seenBase = 0;
              if (rope !== undefined) {
                qMode = 1;
                const seenA = seen0 === undefined ? undefined : seen0 + (a - s);
                if (!preRope && seenA === undefined) {
                  qPos = p;
                } else if (!preRope && pos!.runStart[b - 1]! <= a) {
                  qPos = queryAt - (seenA! - pos!.host[a]!);
                } else if (!preRope) {
                  qPos = queryAt;
                  keyMode = 3;
                  seenBase = seenA!;
                  maxAbs = Math.max(maxAbs, Math.abs(seenA!) + (b - a) + storedMax());
                } else {
                  qPos = queryAt;
                  if (seenA === undefined) {
                    keyMode = 2;
                    maxAbs = Math.max(maxAbs, storedMax());
                  } else {
                    keyMode = 1;
                    seenBase = seenA;
                    maxAbs = Math.max(maxAbs, Math.abs(seenA), Math.abs(seenA + (b - a - 1)));
                  }
                }
                requireGpuPosition(action, "a rotation position", qPos);
                maxAbs = Math.max(maxAbs, Math.abs(qPos));
              }
              itemsBySeg[seg]!.push(gi, a, b, seenBase, keyMode, qMode, qPos, slots++);
              a = b;
            }
          }
          for (let r = 0; r < n; r++) {
            const o = planRows++ * 4;
            plan[o] = t * heads + kh * group + c0 + r;
            plan[o + 1] = slotStart * rows + r;
            plan[o + 2] = rows;
            plan[o + 3] = slots - slotStart;
          }
        }
        g0 = g1;
      }
    }
  }
  if (maxAbs > MAX_GPU_POSITION) {
    throw new RangeError(
      `Cannot ${action}: rotation positions must be within ±${MAX_GPU_POSITION}, got one of magnitude ${maxAbs}`,
    );
  }

  const result: GpuAttentionState = {
    out: createGpuTensor(gpu, "f32", [tq, heads, d], { layout: "thd" }),
    lse: createGpuTensor(gpu, "f32", [tq, heads]),
  };
  const itemCount = itemsBySeg.reduce((n, l) => n + l.length / ITEM_FIELDS, 0);
  const meta = new Int32Array(groups.length + itemCount * ITEM_FIELDS);
  meta.set(groups);
  {
    let o = groups.length;
    for (const list of itemsBySeg) {
      meta.set(list, o);
      o += list.length;
    }
  }
  const release: GPUBuffer[] = [];
  const metaBuf = gpu.storage(meta, "longctx sparse work list");
  const planBuf = gpu.storage(plan.subarray(0, planRows * 4), "longctx sparse merge plan");
  const partialOut = gpu.pool.acquire(
    slots * rows * d * 4,
    STORAGE_USAGE,
    "longctx sparse partials",
  );
  const partialLse = gpu.pool.acquire(slots * rows * 4, STORAGE_USAGE, "longctx sparse partials");
  release.push(metaBuf, planBuf, partialOut, partialLse);
  const commands: GpuCommand[] = [];
  if (itemCount > 0) {
    const ropeKind = rope === undefined ? "none" : rope.layout;
    const pipeline = gpu.pipeline("sparse-attend", {
      headDim: d,
      rows,
      workgroupSize: wg,
      query: storageOf(gpu, query.dtype),
      kv: storageOf(gpu, kv.dtype),
      rope: ropeKind,
    }, sparseAttendWgsl);
    const tables = rope === undefined ? undefined : ropeTableBuffer(gpu, rope, maxAbs);
    let offset = 0;
    kv.segments.forEach((seg, s) => {
      const count = itemsBySeg[s]!.length / ITEM_FIELDS;
      if (count === 0) return;
      const u = gpu.uniform(SPARSE_ATTEND_PARAMS.pack({
        heads,
        qBase: query.offset,
        qTokenStride: heads * d,
        itemsBase: groups.length,
        itemOffset: offset,
        itemCount: count,
        segStart: seg.tokenStart,
        scale,
        softCap: base.softCap,
        pad0: 0,
        pad1: 0,
        pad2: 0,
        keyBase: seg.keyBase,
        valueBase: seg.valueBase,
        pageSize: kv.pageSize,
        pageStride: kv.pageStride,
        headStride: kv.headStride,
        rowStride: kv.rowStride,
      }));
      release.push(u);
      const bindings: GPUBuffer[] = [
        u,
        query.buffer,
        seg.keys,
        seg.values,
        metaBuf,
        partialOut,
        partialLse,
      ];
      if (tables !== undefined) bindings.push(pos!.buffer, tables);
      commands.push({
        kind: "dispatch",
        pipeline,
        bindings,
        workgroups: grid2d(count, gpu.limits.maxComputeWorkgroupsPerDimension),
      });
      offset += count;
    });
  }
  commands.push(...mergeCommands(gpu, {
    inOut: partialOut,
    inLse: partialLse,
    out: result.out.buffer,
    lse: result.lse.buffer,
    headDim: d,
    rows: planRows,
    plan: planBuf,
    release,
  }));
  gpu.submit("sparse-attend", commands, { release });
  return result;
}

function requireGpuPosition(action: string, name: string, p: number): void {
  if (!Number.isSafeInteger(p) || Math.abs(p) > MAX_GPU_POSITION) {
    throw new RangeError(
      `Cannot ${action}: ${name} must be an integer within ±${MAX_GPU_POSITION} for RoPE on the GPU, got ${
        describeValue(p)
      }`,
    );
  }
}

function validateSelection(
  action: string,
  hs: HeadSelection,
  length: number,
  t: number,
  h: number,
  rope: GpuRotary | undefined,
): void {
  if (hs === undefined || hs === null || !(hs.spans instanceof Int32Array)) {
    throw new TypeError(
      `Cannot ${action}: selections[${t}][${h}] must be a HeadSelection, got ${describeValue(hs)}`,
    );
  }
  const n = hs.spans.length;
  let prev = 0;
  for (let i = 0; i < n; i += 2) {
    const s = hs.spans[i]!, e = hs.spans[i + 1]!;
    if (s < prev || e < s || e > length) {
      throw new RangeError(
        `Cannot ${action}: selections[${t}][${h}] must hold sorted spans within the cache (${length} tokens), got [${s}, ${e})`,
      );
    }
    prev = e;
    if (rope !== undefined && hs.seenAt !== undefined) {
      requireGpuPosition(action, `selections[${t}][${h}].seenAt[${i >> 1}]`, hs.seenAt[i >> 1]!);
    }
  }
  if (rope !== undefined && hs.queryAt !== undefined) {
    requireGpuPosition(action, `selections[${t}][${h}].queryAt`, hs.queryAt);
  }
}
