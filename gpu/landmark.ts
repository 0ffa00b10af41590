// Copyright 2026 the longctx authors. MIT license.

/**
 * Landmark Attention decode on WebGPU: landmark scoring at the retrieval slot
 * positions, the aggregation of scores into retrieval sets, top-k blocks and
 * the grouped-softmax attend over the retrieved blocks and the local section
 * all run on the GPU, with no read-back between them. The fast path of
 * `LandmarkRetrieval.selectChunk` followed by `landmarkAttend`
 * (`attention/landmark.ts`, spec `core-four.md` §2), for one decode token or
 * a short chunk at the end of the cache.
 *
 * | piece | export |
 * | --- | --- |
 * | decode step (or chunk) | {@linkcode landmarkDecodeWebGpu} |
 * | configuration it reads | {@linkcode LandmarkWebGpuConfig} (a `LandmarkRetrieval` satisfies it) |
 *
 * The landmark keys are read straight from the GPU KV store (one row per
 * block, rotated on read), so no landmark-key cache is kept on the host.
 *
 * @module
 */

import type { AttendStats } from "../attention/sparse_attend.ts";
import { resolveScale } from "../attention/_validate.ts";
import { describeValue, requireInt, requireOneOf, requirePositiveInt } from "../tensor/validate.ts";
import { type GpuCommand, type GpuContext, STORAGE_USAGE } from "./device.ts";
import type { GpuKvView } from "./kv_store.ts";
import { mergeCommands } from "./_merge.ts";
import type { GpuRotary } from "./sparse_attend.ts";
import {
  createGpuTensor,
  type GpuAttentionState,
  type GpuTensor,
  releaseTensor,
} from "./tensor.ts";
import { MAX_TOP_K, topKWebGpu } from "./topk.ts";
import { requireBindable, requireGpuThd, storageOf } from "./_kernel.ts";
import { ropeTableBuffer } from "./_rope_tables.ts";
import { grid2d } from "./_wgsl/common.ts";
import {
  LANDMARK_AGGREGATE_PARAMS,
  LANDMARK_ATTEND_PARAMS,
  LANDMARK_GROUP_FIELDS,
  LANDMARK_ITEM_FIELDS,
  LANDMARK_SCORE_PARAMS,
  landmarkAggregateWgsl,
  landmarkAttendWgsl,
  landmarkAttendWorkgroupBytes,
  landmarkScoreWgsl,
} from "./_wgsl/landmark.ts";

/** Threads per workgroup of the landmark kernels (keys per tile, blocks per scoring workgroup). */
const WORKGROUP = 64;
/** Workgroup-memory budget of one workgroup. */
const WORKGROUP_BUDGET = 16384;
/** Most query rows one workgroup serves. */
const MAX_ROWS = 16;
/** Largest |position| the GPU path rotates to (positions are i32 on the device). */
const MAX_GPU_POSITION = 2 ** 31 - 1;

/**
 * The Landmark retrieval configuration the GPU path follows; a
 * `LandmarkRetrieval` instance (`attention/landmark.ts`) satisfies it.
 */
export interface LandmarkWebGpuConfig {
  /** Content tokens per block; blocks are `blockSize + 1` tokens, the landmark last. */
  readonly blockSize: number;
  /** Blocks retrieved per set, `k` (`min(k, blocks)` when fewer are cached). */
  readonly topK: number;
  /** Score aggregation (`LandmarkAggregate` of `attention/landmark.ts`). */
  readonly aggregate: "per-token-and-head" | "max-over-heads" | "max-over-tokens";
  /** GQA handling (`LandmarkGqa` of `attention/landmark.ts`). */
  readonly gqa: "kv-head" | "query-head";
}

/** Options of {@linkcode landmarkDecodeWebGpu}. */
export interface LandmarkDecodeWebGpuOptions {
  /** Cache index of query token 0; the chunk's keys are cached. @default {kv.length - queryTokens} */
  start?: number;
  /**
   * Position of query token 0 (token `t` is at `queryPosition + t`, cache
   * index `i` at `queryPosition − start + i`); an integer.
   * @default {start}
   */
  queryPosition?: number;
  /** RoPE applied on read (queries arrive raw); a `Rope` works. Needs a store view. */
  rope?: GpuRotary;
  /** Multiplies q·k (scores and attend); `attentionFactor²` is applied on top. @default {1 / Math.sqrt(headDim)} */
  scale?: number;
  /** Accumulates what the attend read, as `landmarkAttend` counts it. */
  stats?: AttendStats;
}

/** Result of {@linkcode landmarkDecodeWebGpu}: the attention state plus the retrieved blocks. */
export interface LandmarkDecodeWebGpuResult extends GpuAttentionState {
  /**
   * Retrieved block indices, i32 `[setTokens, sets, k]`, ascending within a
   * set (download to inspect); `undefined` when no complete block is cached
   * before the chunk (`k = 0`). Query token `t`, head `h` reads token row
   * `0` (`"max-over-tokens"`) or `t`, and set `0` (`sets = 1`), `h`
   * (`sets = heads`) or `⌊h / group⌋` (`sets = kvHeads`).
   */
  readonly blocks: GpuTensor<"i32"> | undefined;
  /** Blocks per set, `min(topK, memoryBlocks)`. */
  readonly k: number;
  /** Complete blocks cached before the chunk (the memory scored). */
  readonly memoryBlocks: number;
  /** Sets per token: 1 (`"max-over-heads"`), `heads` (per query head) or `kvHeads`. */
  readonly sets: number;
  /** Token rows of `blocks`: 1 for `"max-over-tokens"`, else the query tokens. */
  readonly setTokens: number;
}

/**
 * One Landmark Attention decode step (or a chunk of `c` tokens at the end of
 * the cache) on the GPU, equal to `LandmarkRetrieval.selectChunk` +
 * `landmarkAttend` on the CPU (the `LandmarkAttention.attend` call):
 *
 * 1. **scoring**: memory is the `Nb = ⌊start / Bℓ⌋` complete blocks before the
 *    chunk; every block's landmark key is read from the store and scored by
 *    every query head, `z = scale · ⟨R(qpos) q, R(slot) ℓ⟩` with the
 *    `k_eff = min(k, Nb)` most recent landmarks at their true positions and
 *    the older ones in slot 0 (one GEMV-like kernel, keys read once per GQA group);
 * 2. **aggregation**: per the config, the logits per head
 *    (`"per-token-and-head"` with `gqa: "query-head"`), or the softmax over
 *    blocks maxed over the GQA group (`"kv-head"`), over every head
 *    (`"max-over-heads"`) or over the chunk's tokens (`"max-over-tokens"`);
 * 3. **top-k**: {@linkcode topKWebGpu} in index order (ties to the earlier block);
 * 4. **grouped attend**: one workgroup per (row group, block): the `j`-th
 *    retrieved block (its index read on the GPU from step 3) seen in slot
 *    `j` (or `j + 1` if it is one of the `k_eff` most recent), its content
 *    softmaxed on its own and entered into the outer softmax with its
 *    landmark's logit; local complete blocks gated the same way at true
 *    positions; the own block up to the query ungated (its landmark masked);
 *    then one log-sum-exp merge per query head. Landmark values are never read.
 *
 * Blocks are key tiles: a block (≤ 64 content tokens per tile pass) is read
 * by one workgroup for the whole row group. A block may cross into the next
 * store segment, so every segment but the last must hold at least `Bℓ` tokens.
 * Soft-capping is not supported (the CPU runner does not use it).
 *
 * | cost per step (Nb blocks, c tokens) | |
 * | --- | --- |
 * | scoring | O(c · heads · Nb · headDim), each landmark row read once per row chunk |
 * | top-k | one workgroup per set |
 * | attend | ≤ (k + 1 + local blocks) · Bℓ keys per row group, one merge |
 * | host | O(c · heads · (k + local blocks)) planning; no read-back |
 *
 * @param gpu The context.
 * @param config Block size, top-k, aggregation, GQA handling (a `LandmarkRetrieval` works).
 * @param query Raw decode queries, contiguous `[c, heads, headDim]`, f32 or f16.
 * @param kv The store layer's view holding the cache, the chunk's keys last
 *   (cache index `i` is a landmark iff `i mod (blockSize + 1) == blockSize`).
 * @param options Chunk start, query position, RoPE, scale, stats.
 * @returns `{ out: [c, heads, headDim], lse: [c, heads] }` on the GPU (pooled), `lse` of the
 *   outer softmax, plus the retrieved blocks on the GPU.
 * @throws {TypeError} On shape mismatches, an unknown aggregation or GQA mode, or RoPE without store positions.
 * @throws {RangeError} On bad sizes or positions, a chunk outside the cache, `k` above 1024, or segments shorter than a block.
 * @throws {GpuDeviceLostError} If the device is lost.
 *
 * @example One decode step vs `selectChunk` + `landmarkAttend` (skipped without a GPU)
 * ```ts
 * import { download, downloadState, GpuKvStore, landmarkDecodeWebGpu, tryRequestGpu, upload } from "@longctx/longctx/gpu";
 * import { landmarkAttend, LandmarkRetrieval } from "@longctx/longctx/attention";
 * import { KvStore } from "@longctx/longctx/kv";
 * import { Rope } from "@longctx/longctx/positional";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const rope = new Rope({ headDim: 32 });
 *   const [key, value] = [rope.apply(randn([200, 2, 32], { seed: 1 }), 0), randn([200, 2, 32], { seed: 2 })];
 *   const store = new GpuKvStore(gpu, { layers: 1, kvHeads: 2, headDim: 32, capacity: 256, dtype: "f32", keyForm: "post-rope" });
 *   const cpuStore = new KvStore({ layers: 1, kvHeads: 2, headDim: 32, keyForm: "post-rope" });
 *   store.append(0, key, value);
 *   cpuStore.append(0, key, value);
 *   const config = new LandmarkRetrieval({ blockSize: 15, topK: 4 }); // 12 complete blocks of 16
 *   const query = randn([1, 8, 32], { seed: 3 });
 *   const step = landmarkDecodeWebGpu(gpu, config, upload(gpu, query), store.view(0), { rope });
 *   const blocks = await download(gpu, step.blocks!); // [1, 2, 4]: 4 blocks per KV head
 *   assert.deepEqual(blocks.shape, [1, 2, 4]);
 *   const sels = config.selectChunk({ store: cpuStore, layer: 0, query, start: 199, rope });
 *   const cpu = landmarkAttend(query, cpuStore, sels, { layer: 0, queryPositions: [199], rope });
 *   const { out } = await downloadState(gpu, step);
 *   out.data.forEach((x, i) => assert.ok(Math.abs(x - cpu.out.data[i]) < 1e-4));
 *   store.destroy();
 *   gpu.destroy();
 * }
 * ```
 */
export function landmarkDecodeWebGpu(
  gpu: GpuContext,
  config: LandmarkWebGpuConfig,
  query: GpuTensor,
  kv: GpuKvView,
  options: LandmarkDecodeWebGpuOptions = {},
): LandmarkDecodeWebGpuResult {
  const action = "run Landmark decode on GPU";
  if (config === null || typeof config !== "object") {
    throw new TypeError(`Cannot ${action}: config must be an object, got ${describeValue(config)}`);
  }
  const bs = requirePositiveInt(action, "config.blockSize", config.blockSize);
  const topK = requirePositiveInt(action, "config.topK", config.topK);
  const aggregate = requireOneOf(
    action,
    "config.aggregate",
    config.aggregate,
    [
      "per-token-and-head",
      "max-over-heads",
      "max-over-tokens",
    ] as const,
  );
  const gqa = requireOneOf(action, "config.gqa", config.gqa, ["kv-head", "query-head"] as const);
  requireGpuThd(action, "query", query);
  requireBindable(gpu, action, "query", query.buffer);
  const [tq, heads, d] = query.shape as [number, number, number];
  if (kv === null || typeof kv !== "object" || !Array.isArray(kv.segments)) {
    throw new TypeError(`Cannot ${action}: kv must be a GpuKvView, got ${describeValue(kv)}`);
  }
  const kvHeads = kv.kvHeads;
  if (kv.headDim !== d || kvHeads === 0 || heads % kvHeads !== 0) {
    throw new TypeError(
      `Cannot ${action}: query [${tq}, ${heads}, ${d}] does not fit the store (kvHeads ${kvHeads}, headDim ${kv.headDim})`,
    );
  }
  if (tq < 1) {
    throw new TypeError(`Cannot ${action}: query must hold at least one token, got shape [0, ...]`);
  }
  const group = heads / kvHeads;
  const length = kv.length;
  const start = requireInt(action, "start", options.start ?? length - tq);
  if (start < 0 || start + tq > length) {
    throw new RangeError(
      `Cannot ${action}: the cache must hold the chunk (cache indices ${start} … ${
        start + tq - 1
      }), but it holds ${length} tokens`,
    );
  }
  const qpos0 = requireInt(action, "queryPosition", options.queryPosition ?? start);
  const origin = qpos0 - start;
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
  const bl = bs + 1;
  kv.segments.forEach((seg, s) => {
    if (s + 1 < kv.segments.length && seg.tokenStart < length && seg.tokenCount < bl) {
      throw new RangeError(
        `Cannot ${action}: every store segment but the last must hold a whole block (${bl} tokens), got ${seg.tokenCount}`,
      );
    }
  });
  const factor = rope?.attentionFactor ?? 1;
  const scale = resolveScale(action, d, options.scale, undefined).scale * factor * factor;
  const nb = Math.floor(start / bl);
  const kEff = Math.min(topK, nb);
  if (kEff > MAX_TOP_K) {
    throw new RangeError(`Cannot ${action}: k must be at most ${MAX_TOP_K}, got ${kEff}`);
  }
  const prefix = origin + nb * bl - (kEff + 1) * bl;

  // Positions: every rotation angle is bounded by the query, slot and stored positions.
  let maxAbs = 0;
  let ropeMode = 0;
  if (rope !== undefined) {
    const host = kv.positions!.host;
    let stored = 0;
    for (let j = 0; j < length; j++) stored = Math.max(stored, Math.abs(host[j]!));
    const seenMax = Math.max(Math.abs(origin), Math.abs(prefix)) + (start + tq + 2 * bl);
    maxAbs = Math.abs(qpos0) + tq + seenMax + stored;
    if (maxAbs > MAX_GPU_POSITION) {
      throw new RangeError(
        `Cannot ${action}: rotation positions must be within ±${MAX_GPU_POSITION}, got one of magnitude up to ${maxAbs}`,
      );
    }
    const consecutive = length === 0 || kv.positions!.runStart[length - 1]! === 0;
    ropeMode = kv.keyForm === "pre-rope" ? 3 : consecutive ? 1 : 2;
  }
  gpu.checkAlive(action);
  const qStorage = storageOf(gpu, query.dtype);
  const kvStorage = storageOf(gpu, kv.dtype);
  const ropeKind = rope === undefined ? "none" : rope.layout;
  const tables = rope === undefined ? undefined : ropeTableBuffer(gpu, rope, maxAbs);
  const release: GPUBuffer[] = [];
  const commands: GpuCommand[] = [];

  // Sets: rows of the retrieval result, and which heads share one.
  const perHead = gqa === "query-head" && aggregate !== "max-over-heads";
  const overHeads = aggregate === "max-over-heads";
  const overTokens = aggregate === "max-over-tokens";
  const sets = overHeads ? 1 : perHead ? heads : kvHeads;
  const setTokens = overTokens ? 1 : tq;
  const setOf = (t: number, h: number): number =>
    (overTokens ? 0 : t) * sets + (overHeads ? 0 : perHead ? h : Math.floor(h / group));

  let blocks: GpuTensor<"i32"> | undefined;
  if (kEff > 0) {
    // 1. Scoring, one dispatch per segment holding landmarks.
    const scores = createGpuTensor(gpu, "f32", [tq, heads, nb]);
    let rows = Math.min(tq * group, MAX_ROWS);
    while (rows > 1 && rows * d * 4 > WORKGROUP_BUDGET) rows--;
    const rowChunks = Math.ceil(tq * group / rows);
    const tiles = Math.ceil(nb / WORKGROUP);
    const scorePipeline = gpu.pipeline("landmark-score", {
      headDim: d,
      rows,
      workgroupSize: WORKGROUP,
      query: qStorage,
      kv: kvStorage,
      rope: ropeKind,
    }, landmarkScoreWgsl);
    const lastLm = (nb - 1) * bl + bs;
    for (const seg of kv.segments) {
      if (seg.tokenStart > lastLm || seg.tokenStart + seg.tokenCount <= bs) continue;
      const u = gpu.uniform(LANDMARK_SCORE_PARAMS.pack({
        heads,
        group,
        tokens: tq,
        qBase: query.offset,
        qPos0: qpos0,
        nb,
        recent0: nb - kEff,
        oldSlot: prefix + bs,
        origin,
        blockLength: bl,
        blockSize: bs,
        rowChunks,
        tiles,
        segStart: seg.tokenStart,
        segEnd: seg.tokenStart + seg.tokenCount,
        postRope: kv.keyForm === "pre-rope" ? 0 : 1,
        scale,
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
      const bindings: GPUBuffer[] = [u, query.buffer, seg.keys, scores.buffer];
      if (tables !== undefined) bindings.push(kv.positions!.buffer, tables);
      commands.push({
        kind: "dispatch",
        pipeline: scorePipeline,
        bindings,
        workgroups: grid2d(
          kvHeads * rowChunks * tiles,
          gpu.limits.maxComputeWorkgroupsPerDimension,
        ),
      });
    }
    // 2. Aggregation (softmax over blocks, max over the set's members).
    const softmax = !(perHead && aggregate === "per-token-and-head");
    let ranked: GpuTensor<"f32"> = scores;
    if (softmax) {
      ranked = createGpuTensor(gpu, "f32", [setTokens, sets, nb]);
      const u = gpu.uniform(LANDMARK_AGGREGATE_PARAMS.pack({
        nb,
        heads,
        group,
        tokens: tq,
        sets,
        headMode: overHeads ? 2 : perHead ? 1 : 0,
        overTokens: overTokens ? 1 : 0,
        outRows: setTokens * sets,
      }));
      release.push(u);
      commands.push({
        kind: "dispatch",
        pipeline: gpu.pipeline(
          "landmark-aggregate",
          { workgroupSize: WORKGROUP },
          landmarkAggregateWgsl,
        ),
        bindings: [u, scores.buffer, ranked.buffer],
        workgroups: grid2d(setTokens * sets, gpu.limits.maxComputeWorkgroupsPerDimension),
      });
    }
    gpu.submit("landmark-score", commands.splice(0), { release: release.splice(0) });
    // 3. Top-k in index order.
    const top = topKWebGpu(gpu, ranked, kEff, { order: "index" });
    releaseTensor(gpu, top.values);
    releaseTensor(gpu, scores);
    if (ranked !== scores) releaseTensor(gpu, ranked);
    blocks = top.indices;
  }

  // 4. Grouped attend: row groups (heads of a KV head sharing a set), items (blocks), merge plan.
  const shared = perHead ? 1 : group;
  let rows = Math.min(shared, MAX_ROWS);
  while (rows > 1 && landmarkAttendWorkgroupBytes(d, rows, WORKGROUP) > WORKGROUP_BUDGET) rows--;
  const groups: number[] = [];
  const items: number[] = [];
  const plan: number[] = [];
  let slots = 0;
  const stats = options.stats;
  const elem = kv.dtype === "f16" ? 2 : 4;
  for (let t = 0; t < tq; t++) {
    const qi = start + t;
    const own = Math.floor(qi / bl);
    const ownEnd = Math.min(qi + 1, own * bl + bs);
    const gates = kEff + (own - nb);
    const read = kEff * bs + (own - nb) * bs + (ownEnd - own * bl);
    for (let kh = 0; kh < kvHeads; kh++) {
      for (let g0 = 0; g0 < group; g0 += shared) {
        const h0 = kh * group + g0;
        if (stats !== undefined) {
          for (let h = h0; h < h0 + shared; h++) stats.tokensPerHead[h]! += read;
          stats.rowsRead += read;
          stats.bytesRead += read * 2 * d * elem + gates * d * elem;
        }
        for (let c0 = 0; c0 < shared; c0 += rows) {
          const n = Math.min(rows, shared - c0);
          const gi = groups.length / LANDMARK_GROUP_FIELDS;
          groups.push(t, h0 + c0, n, kh, setOf(t, h0), origin + qi, 0, 0);
          const slotStart = slots;
          for (let j = 0; j < kEff; j++) items.push(gi, 0, j, 0, 0, slots++, 0, 0);
          for (let c = nb; c < own; c++) items.push(gi, 1, c, 0, origin + c * bl, slots++, 0, 0);
          items.push(gi, 2, own * bl, ownEnd, origin + own * bl, slots++, 0, 0);
          for (let r = 0; r < n; r++) {
            plan.push(t * heads + h0 + c0 + r, slotStart * rows + r, rows, slots - slotStart);
          }
        }
      }
    }
  }
  const result: GpuAttentionState = {
    out: createGpuTensor(gpu, "f32", [tq, heads, d], { layout: "thd" }),
    lse: createGpuTensor(gpu, "f32", [tq, heads]),
  };
  const meta = Int32Array.from([...groups, ...items]);
  const itemCount = items.length / LANDMARK_ITEM_FIELDS;
  const metaBuf = gpu.storage(meta, "longctx landmark work list");
  const planBuf = gpu.storage(Uint32Array.from(plan), "longctx landmark merge plan");
  const idxBuf = blocks?.buffer ?? gpu.storage(new Int32Array(4), "longctx landmark no blocks");
  const partialOut = gpu.pool.acquire(
    slots * rows * d * 4,
    STORAGE_USAGE,
    "longctx landmark partials",
  );
  const partialLse = gpu.pool.acquire(slots * rows * 4, STORAGE_USAGE, "longctx landmark partials");
  release.push(metaBuf, planBuf, partialOut, partialLse);
  if (blocks === undefined) release.push(idxBuf);
  const pipeline = gpu.pipeline("landmark-attend", {
    headDim: d,
    rows,
    workgroupSize: WORKGROUP,
    query: qStorage,
    kv: kvStorage,
    rope: ropeKind,
  }, landmarkAttendWgsl);
  const segs = kv.segments;
  segs.forEach((seg, s) => {
    if (seg.tokenStart >= length) return;
    const next = segs[Math.min(s + 1, segs.length - 1)]!;
    const u = gpu.uniform(LANDMARK_ATTEND_PARAMS.pack({
      heads,
      qBase: query.offset,
      qTokenStride: heads * d,
      itemsBase: groups.length,
      itemCount,
      scale,
      blockSize: bs,
      blockLength: bl,
      nb,
      k: kEff,
      prefix,
      ropeMode,
      segStart: seg.tokenStart,
      seg2Start: seg.tokenStart + seg.tokenCount,
      key2Base: next.keyBase,
      value2Base: next.valueBase,
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
      next.keys,
      next.values,
      metaBuf,
      idxBuf,
      partialOut,
      partialLse,
    ];
    if (tables !== undefined) bindings.push(kv.positions!.buffer, tables);
    commands.push({
      kind: "dispatch",
      pipeline,
      bindings,
      workgroups: grid2d(itemCount, gpu.limits.maxComputeWorkgroupsPerDimension),
    });
  });
  commands.push(...mergeCommands(gpu, {
    inOut: partialOut,
    inLse: partialLse,
    out: result.out.buffer,
    lse: result.lse.buffer,
    headDim: d,
    rows: plan.length / 4,
    plan: planBuf,
    release,
  }));
  gpu.submit("landmark-attend", commands, { release });
  return { ...result, blocks, k: kEff, memoryBlocks: nb, sets, setTokens };
}
