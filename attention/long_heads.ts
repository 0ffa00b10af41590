// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * LongHeads: training-free chunk selection per head, so every head attends
 * within its pretraining length while the model as a whole covers a long
 * context.
 *
 * @module
 */

import { describeValue, requirePositiveInt } from "../tensor/validate.ts";
import type { HistoryNeed } from "../kv/types.ts";
import type { HeadSelection } from "./selection.ts";
import { longHeadsWindow } from "./_long_heads_window.ts";
import type { SelectContext, Selector } from "./stages.ts";

/** Options of {@linkcode LongHeads}. */
export interface LongHeadsOptions {
  /** Chunk size `w` in tokens. @default {256} */
  chunkSize?: number;
  /** Attention length `A` per head; a multiple of `chunkSize`, at most the pretraining length. `k = A / w` chunks. @default {4096} */
  attentionLength?: number;
  /** Queries whose cache holds at most this many tokens attend densely (`begin_selective_length`). @default {attentionLength} */
  selectiveThreshold?: number;
  /**
   * GQA handling. `"query-head"` (default, faithful to the per-head MHA
   * method): each query head scores chunks with its own query against its own
   * chunk summaries and reads its own window (g times the gather traffic).
   * `"kv-head"` (a deviation, cheaper): the group shares one window, scored with
   * the sum of the group's queries against summaries built from the group-mean query.
   * @default {"query-head"}
   */
  gqa?: "query-head" | "kv-head";
  /**
   * The official prefill path lets a query read its current chunk's tokens
   * strictly before it (not its own key), while decode includes self. `true`
   * reproduces that in multi-token calls; `false` (default) includes self
   * everywhere, so prefill and decode agree.
   * @default {false}
   */
  excludeSelfInPrefill?: boolean;
  /**
   * How chunks are ranked. `"summary"` (default, the paper): `⟨q_raw, c⟩`
   * with the two-stage representative key `c`. `"key-bound"` (a deviation,
   * Quest's page criterion applied to LongHeads chunks): per chunk the
   * element-wise minimum and maximum of its un-rotated keys, and the score
   * `Σ_x max(q_x · min_x, q_x · max_x)`, an upper bound on the chunk's largest
   * distance-0 logit `q_raw · k_raw`. It needs no queries and finds a chunk
   * by its single best-matching token, where the summary averages a chunk's
   * 64–256 tokens into one key (see the pass-key trace in `bench/results/`).
   * The window, positions and attend are the same in both modes.
   * @default {"summary"}
   */
  chunkScore?: "summary" | "key-bound";
}

interface Scratch {
  /** Locally rotated keys, values and queries of one chunk, [w, d]. */
  kt: Float32Array;
  vt: Float32Array;
  qt: Float32Array;
  /** The chunk query, [d]. */
  qc: Float32Array;
  /** One softmax row, [w]. */
  p: Float64Array;
  /** Scores of four query rows, [4, w]. */
  scores: Float32Array;
  /** Column means of the in-chunk attention matrix, [w]. */
  colMean: Float64Array;
}

interface HeadState {
  /** Chunk summary keys c, [chunks, d] per query row (kv-head mode: one row); key-bound mode: empty. */
  summaries: Float32Array[];
  /** Key-bound mode: per chunk the element-wise min then max of its raw keys, [chunks, 2d]. */
  bounds: Float32Array;
  /** Complete chunks summarised. */
  built: number;
  /** Raw queries of the current chunk, [w, rows, d], and which rows were observed. */
  queries: Float32Array;
  observed: Uint8Array;
  /** The chunk the query buffer belongs to (−1: none). */
  bufferChunk: number;
  /** Head dimension. */
  d: number;
  /** Summaries built with keys standing in for unobserved queries. */
  fallbacks: number;
}

/**
 * LongHeads as a selector (Lu et al., 2024). The context is cut into chunks of
 * `w` tokens; each complete chunk gets a representative key per head, built
 * once: local RoPE inside the chunk, bidirectional in-chunk attention, the
 * mean-pooled output as a chunk query, and the attention-weighted average of
 * the chunk's locally rotated keys as the chunk key `c`. A query scores
 * chunks by `⟨q_raw, c⟩` (pre-RoPE query, as the authors' code does), and
 * reads the first chunk, the previous chunk, its own (partial) chunk up to
 * itself, and the top `k − 3` other chunks, in chronological order,
 * re-numbered contiguously from position 0 so no distance exceeds `A`.
 *
 * One rule serves prefill and decode: for the query at cache index `q`, in
 * chunk `a = ⌊q / w⌋`, chunks `0`, `a − 1` and `a` are forced and the top
 * `k − 3` of `1 … a − 2` are added. With a partial current chunk this is the
 * official decode rule exactly; at the step that completes a chunk it keeps
 * the previous chunk as the official prefill does (k chunks, ≤ A keys).
 *
 * With `chunkScore: "key-bound"` chunks are ranked instead by Quest's bound
 * on their un-rotated keys (see {@linkcode LongHeadsOptions.chunkScore}): a
 * deviation that finds a chunk by its best-matching key, measured to matter
 * on a real model (the pass-key trace in `bench/results/`).
 *
 * Summaries need the chunk's queries; the selector records them as queries
 * pass through `select`. Chunks cached without queries (`AttentionPipeline.append`)
 * are summarised with their keys standing in for the queries, counted in
 * {@linkcode LongHeads.fallbackSummaries}.
 *
 * Oracles: a cache of at most `selectiveThreshold` tokens is dense; with
 * `attentionLength` ≥ context every chunk is selected in order, a uniform
 * position shift, so the output equals dense attention.
 *
 * | cost per query and head (G = complete chunks) | |
 * | --- | --- |
 * | scoring | O(G·d) + top-(k−3) selection |
 * | attend | ≤ A keys |
 * | summary | O(w²·d) once per chunk (amortised O(w·d) per token) |
 * | memory | G·d floats per query head (kv-head mode: per KV head) + w·g·d buffered queries; key-bound ranking: 2·G·d floats per KV head, no queries |
 *
 * @see https://arxiv.org/abs/2402.10685
 *
 * @example Planted needle far beyond the attention length is retrieved
 * ```ts
 * import { AttentionPipeline, LongHeads } from "@longctx/longctx/attention";
 * import { Rope } from "@longctx/longctx/positional";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const lh = new LongHeads({ chunkSize: 8, attentionLength: 32 });
 * const pipe = new AttentionPipeline({ layers: 1, heads: 1, kvHeads: 1, headDim: 8, rope: new Rope({ headDim: 8 }), selector: lh, record: true });
 * pipe.attend(0, randn([200, 1, 8], { seed: 1 }), randn([200, 1, 8], { seed: 2 }), randn([200, 1, 8], { seed: 3 }));
 * assert.ok(pipe.lastRead![0].length <= 32);
 * ```
 */
export class LongHeads implements Selector {
  /** `"long-heads"`. */
  readonly name: string = "long-heads";
  /** Positions are re-numbered. */
  readonly positions = "remapped" as const;
  /** The full history. */
  readonly needs: HistoryNeed = { kind: "all" };
  /** Chunk size `w`. */
  readonly chunkSize: number;
  /** Attention length `A`. */
  readonly attentionLength: number;
  /** Chunks per window `k = A / w`. */
  readonly chunks: number;
  /** Dense below this cache length. */
  readonly selectiveThreshold: number;
  /** GQA variant. */
  readonly gqa: "query-head" | "kv-head";
  /** Whether multi-token calls exclude the query's own key (official prefill). */
  readonly excludeSelfInPrefill: boolean;
  /** How chunks are ranked (see {@linkcode LongHeadsOptions.chunkScore}). */
  readonly chunkScore: "summary" | "key-bound";

  #state = new Map<number, HeadState>();
  #scores = new Float64Array(0);
  #buildScratch: Scratch | undefined;
  #groupQuery = new Float32Array(0);
  #order = new Int32Array(0);

  /**
   * Creates the selector from its options.
   *
   * @param options Chunk size, attention length, threshold, GQA variant.
   * @throws {RangeError} If sizes are not positive integers, `attentionLength`
   *   is not a multiple of `chunkSize`, or fewer than 3 chunks fit.
   */
  constructor(options: LongHeadsOptions = {}) {
    const action = "create LongHeads";
    this.chunkSize = requirePositiveInt(action, "chunkSize", options.chunkSize ?? 256);
    this.attentionLength = requirePositiveInt(
      action,
      "attentionLength",
      options.attentionLength ?? 4096,
    );
    if (this.attentionLength % this.chunkSize !== 0) {
      throw new RangeError(
        `Cannot ${action}: attentionLength must be a multiple of chunkSize (${this.chunkSize}), got ${this.attentionLength}`,
      );
    }
    this.chunks = this.attentionLength / this.chunkSize;
    if (this.chunks < 3) {
      throw new RangeError(
        `Cannot ${action}: attentionLength / chunkSize must be at least 3 (first, previous and current chunk), got ${this.chunks}`,
      );
    }
    this.selectiveThreshold = requirePositiveInt(
      action,
      "selectiveThreshold",
      options.selectiveThreshold ?? this.attentionLength,
    );
    const gqa = options.gqa ?? "query-head";
    if (gqa !== "query-head" && gqa !== "kv-head") {
      throw new TypeError(
        `Cannot ${action}: gqa must be "query-head" or "kv-head", got ${describeValue(gqa)}`,
      );
    }
    this.gqa = gqa;
    this.excludeSelfInPrefill = options.excludeSelfInPrefill ?? false;
    const chunkScore = options.chunkScore ?? "summary";
    if (chunkScore !== "summary" && chunkScore !== "key-bound") {
      throw new TypeError(
        `Cannot ${action}: chunkScore must be "summary" or "key-bound", got ${
          describeValue(chunkScore)
        }`,
      );
    }
    this.chunkScore = chunkScore;
  }

  /** Chunk summaries built with keys standing in for unobserved queries, over all heads. */
  get fallbackSummaries(): number {
    let n = 0;
    for (const s of this.#state.values()) n += s.fallbacks;
    return n;
  }

  /** Forgets all summaries and buffered queries (a new sequence). */
  reset(): void {
    this.#state.clear();
  }

  /**
   * The summary key `c` of one chunk for one query row (a copy), for
   * inspection and tests.
   *
   * @param layer Layer index.
   * @param kvHead KV head index.
   * @param row Query head within the group (0 in kv-head mode).
   * @param chunk Complete chunk index.
   * @returns `[headDim]` summary key, or `undefined` if not built yet.
   */
  summary(layer: number, kvHead: number, row: number, chunk: number): Float32Array | undefined {
    const s = this.#state.get(layer * 65536 + kvHead);
    if (
      this.chunkScore !== "summary" || s === undefined || chunk >= s.built ||
      s.summaries[row] === undefined
    ) return undefined;
    const d = s.d;
    return s.summaries[row]!.slice(chunk * d, (chunk + 1) * d);
  }

  /**
   * Key-bound mode: one chunk's element-wise minimum then maximum of its
   * un-rotated keys (a copy), for inspection and the GPU path.
   *
   * @param layer Layer index.
   * @param kvHead KV head index.
   * @param chunk Complete chunk index.
   * @returns `[2 · headDim]`: min in `[0, d)`, max in `[d, 2d)`; `undefined` in summary mode or if not built yet.
   */
  keyBound(layer: number, kvHead: number, chunk: number): Float32Array | undefined {
    const s = this.#state.get(layer * 65536 + kvHead);
    if (this.chunkScore !== "key-bound" || s === undefined || chunk >= s.built) return undefined;
    return s.bounds.slice(chunk * 2 * s.d, (chunk + 1) * 2 * s.d);
  }

  /**
   * The score one query row gives one complete chunk, as the selector ranks
   * chunks (either {@linkcode LongHeadsOptions.chunkScore} mode), for
   * inspection and diagnostics.
   *
   * @param layer Layer index.
   * @param kvHead KV head index.
   * @param row Query head within the group (0 in kv-head mode).
   * @param chunk Complete chunk index.
   * @param query `[headDim]` raw (pre-RoPE) query; in kv-head mode the group's summed query.
   * @returns The score, or `undefined` if the chunk is not summarised yet.
   */
  scoreChunk(
    layer: number,
    kvHead: number,
    row: number,
    chunk: number,
    query: ArrayLike<number>,
  ): number | undefined {
    const s = this.#state.get(layer * 65536 + kvHead);
    if (s === undefined || chunk >= s.built) return undefined;
    const d = s.d;
    if (this.chunkScore === "key-bound") return boundScore(query, 0, s.bounds, chunk * 2 * d, d);
    const sum = s.summaries[row];
    if (sum === undefined) return undefined;
    let x = 0;
    for (let i = 0; i < d; i++) x += query[i]! * sum[chunk * d + i]!;
    return x;
  }

  /**
   * Chooses the chunks one query reads for one KV head (per query head in
   * `"query-head"` mode).
   *
   * @param ctx The selection context; `ctx.rope` is needed to build summaries.
   * @returns The window, re-numbered contiguously.
   */
  select(ctx: SelectContext): HeadSelection | readonly HeadSelection[] {
    const n = ctx.length;
    const q = n - 1; // the query's own cache index
    const w = this.chunkSize, k = this.chunks;
    const d = ctx.store.headDim;
    const rows = this.gqa === "query-head" ? ctx.group : 1;
    const st = this.#head(ctx, rows, d);
    this.#observe(st, ctx, q, rows, d);
    const a = Math.floor(q / w);
    // Build summaries of every chunk completed so far (the current one too when q closes it).
    const complete = Math.floor(n / w);
    while (st.built < complete) this.#build(st, ctx, st.built, rows, d);

    const excludeSelf = this.excludeSelfInPrefill && ctx.callTokens > 1;
    const end = excludeSelf ? q : n; // exclusive end of the current chunk's keys
    if (n <= this.selectiveThreshold || a + 1 <= k) {
      // Dense (below the threshold), or every chunk fits: read all at original positions.
      if (excludeSelf && n > this.selectiveThreshold) {
        return { spans: end > 0 ? Int32Array.of(0, end) : new Int32Array(0) };
      }
      return { spans: Int32Array.of(0, n) };
    }
    // Candidates 1 … a−2; take the top k−3 by ⟨q_raw, c⟩ per row.
    const cand = a - 2;
    const take = Math.min(k - 3, cand);
    const out: HeadSelection[] = [];
    for (let r = 0; r < rows; r++) {
      const chosen = this.#topChunks(st, ctx, r, rows, d, cand, take);
      out.push(longHeadsWindow(chosen, a, w, end, excludeSelf));
    }
    return rows === 1 ? out[0]! : out;
  }

  #head(ctx: SelectContext, rows: number, d: number): HeadState {
    const key = ctx.layer * 65536 + ctx.kvHead;
    let st = this.#state.get(key);
    if (st === undefined) {
      const bound = this.chunkScore === "key-bound";
      st = {
        summaries: bound ? [] : Array.from({ length: rows }, () => new Float32Array(16 * d)),
        bounds: new Float32Array(bound ? 32 * d : 0),
        built: 0,
        queries: new Float32Array(this.chunkSize * rows * d),
        observed: new Uint8Array(this.chunkSize),
        bufferChunk: -1,
        d,
        fallbacks: 0,
      };
      this.#state.set(key, st);
    }
    return st;
  }

  /** Records the raw query rows of cache index q into the current chunk's buffer. */
  #observe(st: HeadState, ctx: SelectContext, q: number, rows: number, d: number): void {
    if (this.chunkScore === "key-bound") return; // bounds need keys only
    const i = q % this.chunkSize;
    const chunk = Math.floor(q / this.chunkSize);
    if (chunk !== st.bufferChunk) {
      st.observed.fill(0);
      st.bufferChunk = chunk;
    }
    const g = ctx.group;
    const base = i * rows * d;
    if (rows === g) {
      st.queries.set(ctx.query.subarray(0, g * d), base);
    } else {
      // kv-head mode: the group-mean query.
      for (let c = 0; c < d; c++) {
        let s = 0;
        for (let r = 0; r < g; r++) s += ctx.query[r * d + c]!;
        st.queries[base + c] = s / g;
      }
    }
    st.observed[i] = 1;
  }

  /** Builds chunk `c`'s summary key for every row (spec §1.5). */
  #build(st: HeadState, ctx: SelectContext, c: number, rows: number, d: number): void {
    const w = this.chunkSize;
    if (this.chunkScore === "key-bound") {
      this.#buildBound(st, ctx, c, d);
      return;
    }
    const rope = ctx.rope;
    const scale = 1 / Math.sqrt(d);
    const preRope = ctx.store.keyForm === "pre-rope";
    const sc = this.#scratch(w, d);
    const { kt, vt, qt, qc, p } = sc;
    // Locally rotated keys k~_i = rope(k_i, i) and the values of the chunk: [w, d].
    for (let i = 0; i < w; i++) {
      const idx = c * w + i;
      const pg = ctx.store.page(ctx.layer, ctx.kvHead, Math.floor(idx / ctx.store.pageSize));
      const row = idx % ctx.store.pageSize;
      const orig = pg.positions[row]!;
      if (rope === undefined) {
        for (let j = 0; j < d; j++) kt[i * d + j] = pg.keys[row * d + j]!;
      } else {
        rope.rotateRow(pg.keys, row * d, kt, i * d, preRope ? i : i - orig);
      }
      for (let j = 0; j < d; j++) vt[i * d + j] = pg.values[row * d + j]!;
    }
    // Queries of the chunk, or keys where unobserved (the buffer belongs to chunk ⌊q/w⌋, so
    // earlier chunks cached by `append` use keys throughout: then every row gets the same summary).
    const current = c === st.bufferChunk;
    let observed = 0;
    if (current) { for (let i = 0; i < w; i++) observed += st.observed[i]!; }
    if (observed < w) st.fallbacks++;
    for (let r = 0; r < rows; r++) {
      const buf = ensure(st, r, c + 1, d);
      if (observed === 0 && r > 0) {
        buf.set(st.summaries[0]!.subarray(c * d, (c + 1) * d), c * d);
        continue;
      }
      for (let i = 0; i < w; i++) {
        if (current && st.observed[i]) {
          const src = (i * rows + r) * d;
          if (rope === undefined) qt.set(st.queries.subarray(src, src + d), i * d);
          else rope.rotateRow(st.queries, src, qt, i * d, i);
        } else {
          qt.set(kt.subarray(i * d, (i + 1) * d), i * d);
        }
      }
      // qc = mean_i softmax(s · q~_i K~ᵀ) V  (bidirectional, no causal mask)
      //    = Σ_j (mean_i P_ij) v_j: column means of P first, then one pass over V.
      chunkQuery(qt, kt, vt, w, d, scale, sc.scores, sc.colMean, qc);
      // c = Σ_i softmax(s · qc K~ᵀ)_i k~_i
      softmaxRow(qc, 0, kt, w, d, scale, p);
      const off = c * d;
      buf.fill(0, off, off + d);
      for (let j = 0; j < w; j++) {
        const pj = p[j]!;
        for (let x = 0; x < d; x++) buf[off + x]! += pj * kt[j * d + x]!;
      }
    }
    st.built = c + 1;
  }

  /** Key-bound mode: element-wise min and max of chunk `c`'s un-rotated keys. */
  #buildBound(st: HeadState, ctx: SelectContext, c: number, d: number): void {
    const w = this.chunkSize;
    if (st.bounds.length < (c + 1) * 2 * d) {
      const nb = new Float32Array(Math.max(c + 1, st.bounds.length / d) * 2 * d);
      nb.set(st.bounds);
      st.bounds = nb;
    }
    const sc = this.#scratch(w, d);
    const raw = sc.qc; // [d] scratch
    const lo = c * 2 * d, hi = lo + d;
    st.bounds.fill(Infinity, lo, hi);
    st.bounds.fill(-Infinity, hi, hi + d);
    const preRope = ctx.store.keyForm === "pre-rope" || ctx.rope === undefined;
    for (let i = 0; i < w; i++) {
      const idx = c * w + i;
      const pg = ctx.store.page(ctx.layer, ctx.kvHead, Math.floor(idx / ctx.store.pageSize));
      const row = idx % ctx.store.pageSize;
      if (preRope) raw.set(pg.keys.subarray(row * d, (row + 1) * d));
      else ctx.rope!.rotateRow(pg.keys, row * d, raw, 0, -pg.positions[row]!);
      for (let x = 0; x < d; x++) {
        const v = raw[x]!;
        if (v < st.bounds[lo + x]!) st.bounds[lo + x] = v;
        if (v > st.bounds[hi + x]!) st.bounds[hi + x] = v;
      }
    }
    st.built = c + 1;
  }

  /** Scratch buffers of the summary build, reused across chunks. */
  #scratch(w: number, d: number): Scratch {
    let sc = this.#buildScratch;
    if (sc === undefined || sc.kt.length !== w * d) {
      sc = {
        kt: new Float32Array(w * d),
        vt: new Float32Array(w * d),
        qt: new Float32Array(w * d),
        qc: new Float32Array(d),
        p: new Float64Array(w),
        scores: new Float32Array(4 * w),
        colMean: new Float64Array(w),
      };
      this.#buildScratch = sc;
    }
    return sc;
  }

  /** Top-`take` chunk indices among 1 … cand (ascending), by ⟨q_raw, c⟩ for one row. */
  #topChunks(
    st: HeadState,
    ctx: SelectContext,
    r: number,
    rows: number,
    d: number,
    cand: number,
    take: number,
  ): Int32Array {
    if (this.#scores.length < cand + 1) {
      this.#scores = new Float64Array(2 * (cand + 1));
      this.#order = new Int32Array(2 * (cand + 1));
    }
    const sum = st.summaries[r];
    const g = ctx.group;
    let q: Float32Array, qo = 0;
    if (rows === g) {
      q = ctx.query;
      qo = r * d;
    } else {
      // kv-head mode: the summed group query.
      if (this.#groupQuery.length < d) this.#groupQuery = new Float32Array(d);
      q = this.#groupQuery;
      for (let x = 0; x < d; x++) {
        let qx = 0;
        for (let h = 0; h < g; h++) qx += ctx.query[h * d + x]!;
        q[x] = qx;
      }
    }
    if (sum === undefined) {
      for (let c = 1; c <= cand; c++) this.#scores[c] = boundScore(q, qo, st.bounds, c * 2 * d, d);
    } else {
      for (let c = 1; c <= cand; c++) {
        let s = 0;
        for (let x = 0; x < d; x++) s += q[qo + x]! * sum[c * d + x]!;
        this.#scores[c] = s;
      }
    }
    // Partial selection: keep the best `take` in a small sorted buffer (ties: earlier chunk).
    const best = this.#order;
    let m = 0;
    for (let c = 1; c <= cand; c++) {
      const s = this.#scores[c]!;
      if (m === take && !(s > this.#scores[best[m - 1]!]!)) continue;
      let i = m < take ? m++ : m - 1;
      while (i > 0 && this.#scores[best[i - 1]!]! < s) {
        best[i] = best[i - 1]!;
        i--;
      }
      best[i] = c;
    }
    return best.slice(0, m).sort();
  }
}

/** `Σ_x max(q_x · min_x, q_x · max_x)` with min at `bounds[off…]`, max at `bounds[off + d…]`. */
function boundScore(
  q: ArrayLike<number>,
  qo: number,
  bounds: Float32Array,
  off: number,
  d: number,
): number {
  let s = 0;
  for (let x = 0; x < d; x++) {
    const qx = q[qo + x]!;
    s += qx >= 0 ? qx * bounds[off + d + x]! : qx * bounds[off + x]!;
  }
  return s;
}

/** Summary buffer of row r grown to hold `chunks` chunks. */
function ensure(st: HeadState, r: number, chunks: number, d: number): Float32Array {
  let b = st.summaries[r]!;
  if (b.length < chunks * d) {
    const nb = new Float32Array(Math.max(chunks, 2 * (b.length / d)) * d);
    nb.set(b);
    st.summaries[r] = b = nb;
  }
  return b;
}

/**
 * The chunk query `qc = Σ_j (mean_i P_ij) v_j` with `P = softmax(scale · Q Kᵀ)`
 * row-wise over the `w × w` chunk (no mask). Four query rows share each key
 * load.
 */
function chunkQuery(
  qt: Float32Array,
  kt: Float32Array,
  vt: Float32Array,
  w: number,
  d: number,
  scale: number,
  scores: Float32Array,
  colMean: Float64Array,
  qc: Float32Array,
): void {
  colMean.fill(0);
  for (let i0 = 0; i0 < w; i0 += 4) {
    const rows = Math.min(4, w - i0);
    const a0 = i0 * d, a1 = (i0 + Math.min(1, rows - 1)) * d;
    const a2 = (i0 + Math.min(2, rows - 1)) * d, a3 = (i0 + Math.min(3, rows - 1)) * d;
    for (let j = 0; j < w; j++) {
      const kj = j * d;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let x = 0; x < d; x++) {
        const kx = kt[kj + x]!;
        s0 += qt[a0 + x]! * kx;
        s1 += qt[a1 + x]! * kx;
        s2 += qt[a2 + x]! * kx;
        s3 += qt[a3 + x]! * kx;
      }
      scores[j] = s0 * scale;
      scores[w + j] = s1 * scale;
      scores[2 * w + j] = s2 * scale;
      scores[3 * w + j] = s3 * scale;
    }
    for (let r = 0; r < rows; r++) {
      const o = r * w;
      let m = -Infinity;
      for (let j = 0; j < w; j++) if (scores[o + j]! > m) m = scores[o + j]!;
      let z = 0;
      for (let j = 0; j < w; j++) z += Math.exp(scores[o + j]! - m);
      const inv = 1 / (z * w);
      for (let j = 0; j < w; j++) colMean[j]! += Math.exp(scores[o + j]! - m) * inv;
    }
  }
  qc.fill(0);
  for (let j = 0; j < w; j++) {
    const c = colMean[j]!;
    for (let x = 0; x < d; x++) qc[x]! += c * vt[j * d + x]!;
  }
}

/** p = softmax(scale · x·K[j]) over j < w, x at xs[xo..]. */
function softmaxRow(
  xs: Float32Array,
  xo: number,
  keys: Float32Array,
  w: number,
  d: number,
  scale: number,
  p: Float64Array,
): void {
  let m = -Infinity;
  for (let j = 0; j < w; j++) {
    let s = 0;
    for (let x = 0; x < d; x++) s += xs[xo + x]! * keys[j * d + x]!;
    p[j] = s * scale;
    if (p[j]! > m) m = p[j]!;
  }
  let z = 0;
  for (let j = 0; j < w; j++) z += p[j] = Math.exp(p[j]! - m);
  for (let j = 0; j < w; j++) p[j]! /= z;
}
