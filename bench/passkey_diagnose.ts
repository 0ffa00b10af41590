// Copyright 2026 the longctx authors. MIT license.

/**
 * Why LongHeads misses the pass-key on tinystories-1k: for the query that
 * predicts the answer (the prompt's last token), which chunks does each
 * `(layer, query head)` select, and is the fact's chunk among them?
 * Beside it, each head's share of dense attention on the fact at 1k (where
 * dense retrieves), i.e. which heads do the retrieval when it works.
 *
 * ```sh
 * deno run -A bench/passkey_diagnose.ts [--lengths 2048,4096] [--keys 2] [--chunk 64] [--gqa query-head]
 * deno run -A bench/passkey_diagnose.ts --profile dense,pi,ntk,yarn,dynamic-ntk [--lengths 2048,4096] [--depths 0.5]
 * ```
 *
 * `--profile` instead measures, for dense-attention pipelines (RoPE scalings),
 * how much of the retrieval heads' attention lands on the fact at longer
 * lengths (exact softmax at the pipeline's RoPE), beside whether the trial
 * answers: the mechanism behind each scaling's pass-key result.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { AttentionPipeline } from "../attention/pipeline.ts";
import { LongHeads } from "../attention/long_heads.ts";
import type { SelectContext, Selector } from "../attention/stages.ts";
import type { HeadSelection } from "../attention/selection.ts";
import type { HistoryNeed } from "../kv/types.ts";
import { Rope } from "../positional/rope.ts";
import { parseCheckpoint } from "../model/checkpoint.ts";
import { Llama } from "../model/llama.ts";
import { Tokenizer } from "../model/tokenizer.ts";
import { splitStories } from "../model/perplexity.ts";
import { buildPasskeyPrompt, passkeyFiller, passkeyTrials, runPasskey } from "../model/passkey.ts";
import { passkeyHeadProfile } from "../model/duo_calibration.ts";
import { readChecked, sharedPath } from "../model/_files.ts";
import { namedPipeline, type PipelineName } from "../model/pipelines.ts";

const { values: v } = parseArgs({
  args: Deno.args,
  options: {
    lengths: { type: "string", default: "2048,4096" },
    depths: { type: "string", default: "0.05,0.25,0.5,0.75,0.95" },
    keys: { type: "string", default: "1" },
    chunk: { type: "string", default: "64" },
    gqa: { type: "string", default: "query-head" },
    score: { type: "string", default: "summary" },
    profile: { type: "string" },
    out: { type: "string" },
  },
});

/** Wraps a selector and records what it returns for one query position. */
class Recording implements Selector {
  readonly name: string;
  readonly positions: "original" | "remapped";
  readonly needs: HistoryNeed;
  target = -1;
  seen = new Map<
    string,
    { sel: HeadSelection; query: Float32Array; length: number; maxLogit: Float64Array }
  >();
  chunk = 64;
  constructor(readonly inner: Selector) {
    this.name = inner.name;
    this.positions = inner.positions;
    this.needs = inner.needs;
  }
  select(ctx: SelectContext): HeadSelection | readonly HeadSelection[] {
    const s = this.inner.select(ctx);
    if (ctx.queryPosition === this.target) {
      const rows = Array.isArray(s) ? s as readonly HeadSelection[] : [s as HeadSelection];
      for (let r = 0; r < ctx.group; r++) {
        const sel = rows[Math.min(r, rows.length - 1)]!;
        const d = ctx.store.headDim;
        // Per chunk, the largest distance-0 logit q_raw · k_raw over its tokens (keys un-rotated).
        const w = this.chunk, n = ctx.length;
        const maxLogit = new Float64Array(Math.ceil(n / w)).fill(-Infinity);
        const raw = new Float32Array(d);
        const q = ctx.query.subarray(r * d, (r + 1) * d);
        for (let j = 0; j < n; j++) {
          const pg = ctx.store.page(ctx.layer, ctx.kvHead, Math.floor(j / ctx.store.pageSize));
          const row = j % ctx.store.pageSize;
          if (ctx.store.keyForm === "pre-rope") raw.set(pg.keys.subarray(row * d, row * d + d));
          else ctx.rope!.rotateRow(pg.keys, row * d, raw, 0, -pg.positions[row]!);
          let x = 0;
          for (let i = 0; i < d; i++) x += q[i]! * raw[i]!;
          const ch = Math.floor(j / w);
          if (x > maxLogit[ch]!) maxLogit[ch] = x;
        }
        this.seen.set(`${ctx.layer}/${ctx.kvHead * ctx.group + r}`, {
          sel,
          query: ctx.query.slice(r * d, (r + 1) * d),
          length: ctx.length,
          maxLogit,
        });
      }
    }
    return s;
  }
  reset(): void {
    this.inner.reset?.();
    this.seen.clear();
  }
}

const modelPath = sharedPath("models/tinystories-1k/tinystories1k.bin");
const ckpt = parseCheckpoint((await readChecked(modelPath)).bytes);
const tokenizer = Tokenizer.parse(
  (await readChecked(sharedPath("models/stories260K/tok512.bin"))).bytes,
  { vocabSize: ckpt.config.vocabSize },
);
const stories = splitStories(
  new TextDecoder().decode(
    (await readChecked(sharedPath("models/tinystories-1k/heldout_stories.txt"))).bytes,
  ),
);
const filler = passkeyFiller(tokenizer, stories);
const c = ckpt.config;
const depths = v.depths!.split(",").map(Number);
const trials = passkeyTrials(Number(v.keys), 0, filler.length);
const lines: string[] = [];
const say = (s: string): void => {
  console.log(s);
  lines.push(s);
};

// 1. Which heads retrieve when dense works (1k): share of attention on the fact.
const profilePrompts = depths.flatMap((depth) =>
  trials.map((t) =>
    buildPasskeyPrompt(tokenizer, filler, {
      length: c.seqLen,
      depth,
      key: t.key,
      startStory: t.startStory,
    })
  )
);
const profile = passkeyHeadProfile(new Llama(ckpt), profilePrompts);
say(`# LongHeads on the pass-key: what the answering query selects\n`);
say(
  `Dense attention share on the fact sentence at ${c.seqLen} tokens, from the queries that predict the answer ` +
    `(mean over ${profilePrompts.length} prompts), per layer × query head:\n`,
);
say(`| layer | ${Array.from({ length: c.heads }, (_, h) => `q${h}`).join(" | ")} |`);
say(`| --- | ${Array.from({ length: c.heads }, () => "---:").join(" | ")} |`);
for (let l = 0; l < c.layers; l++) {
  const row = Array.from(
    { length: c.heads },
    (_, h) => profile.queryHeads[l * c.heads + h]!.toFixed(3),
  );
  say(`| ${l} | ${row.join(" | ")} |`);
}

if (v.profile !== undefined) {
  // Retrieval heads = the top KV head of the 1k profile; its share on the fact per pipeline × length.
  const kv = Array.from(profile.kvHeads);
  const top = kv.indexOf(Math.max(...kv));
  const tl = Math.floor(top / c.kvHeads), th = top % c.kvHeads;
  const lengths = v.lengths!.split(",").map(Number);
  say(
    `\n## Retrieval head (layer ${tl}, KV head ${th}) share on the fact by pipeline and length\n\n` +
      `Exact softmax of the answering queries at the pipeline's RoPE (mean of the group's query heads), ` +
      `depths ${depths.join(", ")}, ${trials.length} key(s); in brackets the trials answered.\n`,
  );
  say(`| pipeline | ${c.seqLen} | ${lengths.join(" | ")} |`);
  say(`| --- | ---: |${lengths.map(() => " ---: |").join("")}`);
  for (const name of v.profile.split(",") as PipelineName[]) {
    const cells = [kv[top]!.toFixed(3)];
    for (const length of lengths) {
      const model = new Llama(ckpt, {
        pipeline: (config) => namedPipeline(name, config, { targetContext: length }),
      });
      let share = 0, ok = 0, n = 0;
      for (const depth of depths) {
        for (const t of trials) {
          const p = buildPasskeyPrompt(tokenizer, filler, {
            length,
            depth,
            key: t.key,
            startStory: t.startStory,
          });
          share += passkeyHeadProfile(model, [p]).kvHeads[top]!;
          if (runPasskey(model, tokenizer, p).correct) ok++;
          n++;
        }
      }
      cells.push(`${(share / n).toFixed(3)} (${ok}/${n})`);
      console.error(`${name} @ ${length}: ${cells.at(-1)}`);
    }
    say(`| ${name} | ${cells.join(" | ")} |`);
  }
  if (v.out) await Deno.writeTextFile(v.out, lines.join("\n") + "\n");
  Deno.exit(0);
}

// 2. LongHeads at longer lengths: per head, is the fact chunk selected, and its score rank.
const w = Number(v.chunk);
for (const length of v.lengths!.split(",").map(Number)) {
  let rec!: Recording;
  let lh!: LongHeads;
  const model = new Llama(ckpt, {
    pipeline: (config) => {
      lh = new LongHeads({
        chunkSize: w,
        attentionLength: Math.floor(config.seqLen / w) * w,
        gqa: v.gqa as "query-head" | "kv-head",
        chunkScore: v.score as "summary" | "key-bound",
      });
      rec = new Recording(lh);
      rec.chunk = w;
      return new AttentionPipeline({
        layers: config.layers,
        heads: config.heads,
        kvHeads: config.kvHeads,
        headDim: config.headDim,
        rope: new Rope({ headDim: config.headDim, base: config.ropeBase, layout: "adjacent" }),
        selector: rec,
      });
    },
  });
  say(
    `\n## ${length} tokens, chunk ${w}, attention length ${
      Math.floor(c.seqLen / w) * w
    }, gqa ${v.gqa}, chunk score ${v.score}\n`,
  );
  say(
    `Per trial: the fact's chunk(s), then per layer the query heads that read the whole fact ` +
      `(✓), part of it (½) or none (·), with the fact chunk's rank among the candidates ` +
      `(1 = best; "f" = forced) by the selector's chunk score, then by the chunk's largest ` +
      `distance-0 logit q_raw·k_raw.\n`,
  );
  for (const depth of depths) {
    for (const t of trials) {
      const p = buildPasskeyPrompt(tokenizer, filler, {
        length,
        depth,
        key: t.key,
        startStory: t.startStory,
      });
      rec.target = p.tokens.length - 1;
      const outcome = runPasskey(model, tokenizer, p);
      const f0 = p.factPosition, f1 = p.factPosition + p.factTokens;
      const factChunks = [...new Set([Math.floor(f0 / w), Math.floor((f1 - 1) / w)])];
      const perLayer: string[] = [];
      let fullHeads = 0;
      for (let l = 0; l < c.layers; l++) {
        const cells: string[] = [];
        for (let h = 0; h < c.heads; h++) {
          const r = rec.seen.get(`${l}/${h}`)!;
          let covered = 0;
          for (let i = 0; i < r.sel.spans.length; i += 2) {
            covered += Math.max(
              0,
              Math.min(f1, r.sel.spans[i + 1]!) - Math.max(f0, r.sel.spans[i]!),
            );
          }
          const mark = covered === f1 - f0 ? "✓" : covered > 0 ? "½" : "·";
          if (covered === f1 - f0) fullHeads++;
          // Rank of the first fact chunk among candidates 1 … a−2 by ⟨q_raw, c⟩.
          const a = Math.floor((r.length - 1) / w);
          const fc = factChunks[0]!;
          let rank = "f", maxRank = "f";
          if (fc >= 1 && fc <= a - 2) {
            const kvHead = Math.floor(h / (c.heads / c.kvHeads));
            const row = v.gqa === "query-head" ? h % (c.heads / c.kvHeads) : 0;
            const score = (chunk: number): number => lh.scoreChunk(l, kvHead, row, chunk, r.query)!;
            const mine = score(fc);
            let better = 0;
            for (let ch = 1; ch <= a - 2; ch++) if (ch !== fc && score(ch) > mine) better++;
            rank = String(better + 1);
            let above = 0;
            for (let ch = 1; ch <= a - 2; ch++) {
              if (
                ch !== fc && r.maxLogit[ch]! > Math.max(...factChunks.map((f) => r.maxLogit[f]!))
              ) {
                above++;
              }
            }
            maxRank = String(above + 1);
          }
          cells.push(`${mark}${rank}/${maxRank}`);
        }
        perLayer.push(`L${l} ${cells.join(" ")}`);
      }
      say(
        `- depth ${depth}, key ${t.key}: ${outcome.correct ? "correct" : "miss"} (${
          JSON.stringify(outcome.text)
        }); fact tokens ${f0}–${f1 - 1} in chunk ${factChunks.join("+")} of ${
          Math.ceil(p.tokens.length / w)
        }; ${fullHeads}/${c.layers * c.heads} heads read it: ${perLayer.join(" | ")}`,
      );
    }
  }
}

if (v.out) await Deno.writeTextFile(v.out, lines.join("\n") + "\n");
