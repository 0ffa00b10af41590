// Copyright 2026 the longctx authors. MIT license.
// @internal-entry: a command-line program (reads files, uses Deno APIs), not re-exported by model/mod.ts.

/**
 * Command line for the model: generate text, measure perplexity, capture real
 * attention inputs, and sweep context-extension pipelines.
 *
 * ```sh
 * deno run -A model/cli.ts info
 * deno run -A model/cli.ts generate --temperature 0                      # run.c's greedy sample
 * deno run -A model/cli.ts generate --prompt "Once upon" --seed 7 --pipeline yarn --context 2048 --steps 2048
 * deno run -A model/cli.ts perplexity --text ../shared/data/tinystories/tinystories_validation_first1000.txt --context 1024 --pipeline ntk
 * deno run -A model/cli.ts capture --text FILE --out captures/ --tokens 512
 * deno run -A model/cli.ts sweep --contexts 512,1024,2048,4096 --out bench/results/model_context_extension
 * deno run -A model/cli.ts passkey --lengths 1024,2048 --keys 2 --pipelines dense,yarn --json out.json --svg out
 * ```
 *
 * `passkey` defaults to the tinystories-1k model (trained on the task) and its
 * held-out stories as filler (`--text`); see `model/passkey.ts`.
 *
 * Common options: `--model PATH` (default `../shared/models/stories260K/stories260K.bin`),
 * `--tokenizer PATH` (default `../shared/models/stories260K/tok512.bin`), both
 * checked against a `SHA256SUMS` beside them when one lists them; `--pipeline NAME`
 * (see `model/pipelines.ts`; default `dense`); `--context N` (the target
 * context the pipeline is sized for); `--chunk N` (prefill chunk, default 256).
 *
 * Text files are split into stories (`<|endoftext|>` or blank-line-pair
 * separated), each encoded with BOS as llama2.c trains, and concatenated.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { parseCheckpoint } from "./checkpoint.ts";
import { Tokenizer } from "./tokenizer.ts";
import { Llama } from "./llama.ts";
import { Sampler } from "./sampler.ts";
import { generate } from "./generate.ts";
import { perplexity, splitStories, tokenizeStories } from "./perplexity.ts";
import { captureAttention } from "./capture.ts";
import { calibrateDuoHeads, passkeyHeadProfile, topRetrievalHeads } from "./duo_calibration.ts";
import { encodeNpy } from "./npy.ts";
import {
  buildPasskeyPrompt,
  evaluatePasskey,
  type PasskeyCell,
  passkeyFiller,
  passkeyTable,
  passkeyTrials,
} from "./passkey.ts";
import {
  describeNamedPipeline,
  DUO_SINKS,
  duoRecent,
  namedPipeline,
  PIPELINE_NAMES,
  type PipelineName,
} from "./pipelines.ts";
import { DEFAULT_MODEL, DEFAULT_TOKENIZER, readChecked, sharedPath } from "./_files.ts";

/** Where the CLI writes. */
export interface CliIo {
  /** Standard output (results). */
  out: (text: string) => void;
  /** Standard error (progress, checksums). */
  err: (text: string) => void;
}

const encoder = new TextEncoder();
const STDIO: CliIo = {
  out: (t) => Deno.stdout.writeSync(encoder.encode(t)),
  err: (t) => Deno.stderr.writeSync(encoder.encode(t)),
};

const USAGE = `usage: deno run -A model/cli.ts <command> [options]

commands:
  info                               model and tokenizer summary
  generate   [--prompt T] [--steps N] [--temperature T] [--topp P] [--seed S]
  perplexity --text FILE [--tokens N|all] [--nll-out FILE.json]
             [--pipelines a,b,... [--contexts L0,2L0,4L0,8L0] [--out PREFIX]]  (one table, as sweep)
  capture    --text FILE --out DIR [--tokens N] [--no-stats]
  sweep      [--text FILE] [--contexts 512,1024,...] [--pipelines a,b,...] [--tokens N] [--out PREFIX]
  passkey    [--lengths 1024,2048,4096] [--depths 0.05,0.25,0.5,0.75,0.95] [--keys N] [--seed S]
             [--pipelines a,b,...] [--text FILLER] [--json PATH] [--svg PREFIX]
             (defaults: the tinystories-1k model, its held-out stories as filler, 4 keys, seed 0, dense)

common options:
  --model PATH --tokenizer PATH --pipeline NAME --context N --chunk N --quiet
  --duo-split passkey|window --duo-ratio R   (DuoAttention head split; see model/duo_calibration.ts)
pipelines: ${PIPELINE_NAMES.join(", ")}
`;

const DEFAULT_TEXT = sharedPath("data/tinystories/tinystories_validation_first1000.txt");

/**
 * Runs the CLI.
 *
 * @param args Arguments after the script name.
 * @param io Output sinks.
 * @returns The exit code.
 */
export async function main(args: string[], io: CliIo = STDIO): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        model: { type: "string" },
        tokenizer: { type: "string" },
        pipeline: { type: "string" },
        context: { type: "string" },
        chunk: { type: "string" },
        prompt: { type: "string" },
        steps: { type: "string" },
        temperature: { type: "string" },
        topp: { type: "string" },
        seed: { type: "string" },
        text: { type: "string" },
        tokens: { type: "string" },
        "nll-out": { type: "string" },
        out: { type: "string" },
        "no-stats": { type: "boolean" },
        contexts: { type: "string" },
        pipelines: { type: "string" },
        lengths: { type: "string" },
        depths: { type: "string" },
        keys: { type: "string" },
        json: { type: "string" },
        svg: { type: "string" },
        "duo-split": { type: "string" },
        "duo-ratio": { type: "string" },
        quiet: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    io.err(`error: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const { positionals } = parsed;
  const command = positionals[0];
  const v: Values = { ...parsed.values, command };
  if (v.help || command === undefined) {
    (v.help ? io.out : io.err)(USAGE);
    return v.help ? 0 : 2;
  }
  try {
    switch (command) {
      case "info":
        return await info(v, io);
      case "generate":
        return await runGenerate(v, io);
      case "perplexity":
        return await runPerplexity(v, io);
      case "capture":
        return await runCapture(v, io);
      case "sweep":
        return await runSweep(v, io);
      case "passkey":
        return await runPasskeyGrid(v, io);
      default:
        io.err(`error: unknown command ${JSON.stringify(command)}\n${USAGE}`);
        return 2;
    }
  } catch (e) {
    io.err(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}

type Values = Record<string, string | boolean | undefined>;

function intOption(v: Values, name: string, fallback: number): number {
  const s = v[name];
  if (s === undefined) return fallback;
  const n = Number(s);
  if (typeof s !== "string" || !Number.isSafeInteger(n)) {
    throw new RangeError(`--${name} must be an integer, got ${JSON.stringify(s)}`);
  }
  return n;
}

function numberOption(v: Values, name: string, fallback: number): number {
  const s = v[name];
  if (s === undefined) return fallback;
  const n = Number(s);
  if (typeof s !== "string" || s.trim() === "" || !Number.isFinite(n)) {
    throw new RangeError(`--${name} must be a number, got ${JSON.stringify(s)}`);
  }
  return n;
}

function pipelineName(s: string): PipelineName {
  if (!(PIPELINE_NAMES as readonly string[]).includes(s)) {
    throw new TypeError(
      `--pipeline must be one of ${PIPELINE_NAMES.join(", ")}, got ${JSON.stringify(s)}`,
    );
  }
  return s as PipelineName;
}

interface Loaded {
  ckpt: ReturnType<typeof parseCheckpoint>;
  tokenizer: Tokenizer;
  modelPath: string;
  modelSha256: string;
  tokenizerPath: string;
  /** DuoAttention head split, computed on first use. */
  duo?: DuoSplit;
}

async function load(v: Values, io: CliIo): Promise<Loaded> {
  const modelPath = (v.model as string | undefined) ?? DEFAULT_MODEL;
  const tokPath = (v.tokenizer as string | undefined) ?? DEFAULT_TOKENIZER;
  const m = await readChecked(modelPath);
  const t = await readChecked(tokPath);
  const say = (f: typeof m): string =>
    f.check === "verified"
      ? "sha256 verified (SHA256SUMS)"
      : f.check === "unlisted"
      ? "not listed in SHA256SUMS"
      : "no SHA256SUMS";
  if (!v.quiet) {
    io.err(`model ${modelPath}: ${say(m)}\ntokenizer ${tokPath}: ${say(t)}\n`);
  }
  const ckpt = parseCheckpoint(m.bytes);
  const tokenizer = Tokenizer.parse(t.bytes, { vocabSize: ckpt.config.vocabSize });
  return { ckpt, tokenizer, modelPath, modelSha256: m.sha256, tokenizerPath: tokPath };
}

/** DuoAttention's head split as the CLI computed it (written to JSON as plain data). */
interface DuoSplit {
  /** `"passkey-profile"` (attention share on the fact at L₀) or `"window-mass"` (mass outside Λ). */
  method: "passkey-profile" | "window-mass";
  /** Per `(layer, kvHead)` score, row-major. */
  scores: Float64Array;
  /** The mask the router consumes. */
  retrieval: boolean[][];
  /** Fraction of KV heads kept. */
  ratio: number;
  /** One sentence for reports: what it was measured on. */
  source: string;
}

/** Seed of the pass-key profile's keys, far from evaluation seeds so calibration and test keys differ. */
const DUO_PROFILE_SEED = 1_000_003;

async function makeModel(
  v: Values,
  io: CliIo,
  l: Loaded,
  targetContext: number,
  name?: PipelineName,
): Promise<Llama> {
  const pipe = name ?? pipelineName((v.pipeline as string | undefined) ?? "dense");
  const duoRetrieval = pipe.startsWith("duo") ? (await duoSplit(v, io, l)).retrieval : undefined;
  return new Llama(l.ckpt, {
    pipeline: (config) =>
      namedPipeline(pipe, config, {
        targetContext,
        ...(duoRetrieval !== undefined ? { duoRetrieval } : {}),
      }),
    prefillChunk: intOption(v, "chunk", 256),
  });
}

/**
 * DuoAttention's head split for this model (see duo_calibration.ts), computed once per run.
 * `--duo-split passkey` (the default of the `passkey` command): each KV head's attention share
 * on the fact, from the answering queries of pass-key prompts at the trained context (keys from
 * a seed of their own, filler from `--text` or the held-out stories). `--duo-split window` (the
 * default elsewhere): attention mass outside the streaming window on the trained context's worth
 * of tokens from the **last** stories of the text (evaluations read the first ones). The top
 * `--duo-ratio` of KV heads become retrieval heads (default 0.25 for the pass-key split, whose
 * retrieval is concentrated in few heads, 0.5 for the window split).
 */
async function duoSplit(v: Values, io: CliIo, l: Loaded): Promise<DuoSplit> {
  if (l.duo !== undefined) return l.duo;
  const c = l.ckpt.config, L0 = c.seqLen;
  const method = (v["duo-split"] as string | undefined) ??
    (v.command === "passkey" ? "passkey" : "window");
  const ratio = numberOption(v, "duo-ratio", method === "passkey" ? 0.25 : 0.5);
  if (!(ratio >= 0 && ratio <= 1)) {
    throw new RangeError(`--duo-ratio must be in [0, 1], got ${ratio}`);
  }
  if (method === "passkey") {
    const path = (v.text as string | undefined) ?? PASSKEY_FILLER;
    const stories = splitStories(new TextDecoder().decode((await readChecked(path)).bytes));
    const filler = passkeyFiller(l.tokenizer, stories);
    const prompts = [0.05, 0.25, 0.5, 0.75, 0.95].flatMap((depth) =>
      passkeyTrials(2, DUO_PROFILE_SEED, filler.length).map((t) =>
        buildPasskeyPrompt(l.tokenizer, filler, {
          length: L0,
          depth,
          key: t.key,
          startStory: t.startStory,
        })
      )
    );
    const profile = passkeyHeadProfile(new Llama(l.ckpt), prompts);
    l.duo = {
      method: "passkey-profile",
      scores: profile.kvHeads,
      retrieval: topRetrievalHeads(profile.kvHeads, c.layers, c.kvHeads, ratio),
      ratio,
      source: `pass-key attention profile: each KV head's dense attention share on the fact ` +
        `sentence from the answering queries, ${prompts.length} prompts of ${L0} tokens (5 depths × 2 keys, ` +
        `seed ${DUO_PROFILE_SEED}, filler ${path.split("/").pop()})`,
    };
  } else if (method === "window") {
    const path = (v.text as string | undefined) ?? DEFAULT_TEXT;
    const stories = splitStories(new TextDecoder().decode((await readChecked(path)).bytes));
    const tokens = tokenizeStories(l.tokenizer, stories.reverse(), L0);
    const cal = calibrateDuoHeads(new Llama(l.ckpt), tokens, {
      sinks: DUO_SINKS,
      recent: duoRecent(L0),
      retrievalRatio: ratio,
    });
    l.duo = {
      method: "window-mass",
      scores: cal.scores,
      retrieval: cal.retrieval,
      ratio,
      source:
        `training-free calibration (attention mass outside the streaming window) on the last ` +
        `${tokens.length} tokens of ${path.split("/").pop()}`,
    };
  } else {
    throw new TypeError(`--duo-split must be "passkey" or "window", got ${JSON.stringify(method)}`);
  }
  if (!v.quiet) {
    io.err(
      `DuoAttention heads (${l.duo.source}): retrieval ${
        l.duo.retrieval.map((row) => row.map((x) => (x ? "R" : "s")).join("")).join(" ")
      }, scores ${Array.from(l.duo.scores, (x) => x.toFixed(3)).join(" ")}\n`,
    );
  }
  return l.duo;
}

/** The split as plain JSON. */
function duoJson(d: DuoSplit): Record<string, unknown> {
  return {
    method: d.method,
    source: d.source,
    ratio: d.ratio,
    scores: Array.from(d.scores, (x) => Number(x.toFixed(5))),
    retrieval: d.retrieval,
  };
}

async function readTokens(v: Values, l: Loaded, fallbackMax: number): Promise<Int32Array> {
  const path = v.text as string | undefined;
  if (path === undefined) throw new TypeError("--text FILE is required");
  const text = new TextDecoder().decode((await readChecked(path)).bytes);
  const max = v.tokens === "all" ? Infinity : intOption(v, "tokens", fallbackMax);
  if (!(max >= 2)) throw new RangeError(`--tokens must be at least 2, got ${max}`);
  return tokenizeStories(l.tokenizer, splitStories(text), max);
}

async function info(v: Values, io: CliIo): Promise<number> {
  const l = await load(v, io);
  const c = l.ckpt.config;
  io.out(
    `model: ${l.modelPath} (llama2.c version ${l.ckpt.version}, sha256 ${l.modelSha256})\n` +
      `dim ${c.dim}, hidden ${c.hiddenDim}, layers ${c.layers}, heads ${c.heads}, kv heads ${c.kvHeads}, ` +
      `head dim ${c.headDim}, vocab ${c.vocabSize}${
        c.sharedClassifier ? " (shared classifier)" : ""
      }, context ${c.seqLen}\n` +
      `tokenizer: ${l.tokenizerPath} (${l.tokenizer.vocabSize} tokens, max piece ${l.tokenizer.maxTokenLength} bytes)\n`,
  );
  return 0;
}

async function runGenerate(v: Values, io: CliIo): Promise<number> {
  const l = await load(v, io);
  const steps = intOption(v, "steps", 256);
  const temperature = numberOption(v, "temperature", 1);
  const seed = intOption(v, "seed", Date.now() % 2 ** 31);
  if (!v.quiet && temperature > 0) io.err(`seed ${seed}\n`);
  const target = intOption(v, "context", Math.max(l.ckpt.config.seqLen, steps));
  const model = await makeModel(v, io, l, target);
  const sampler = new Sampler(l.ckpt.config.vocabSize, {
    temperature,
    topP: numberOption(v, "topp", 0.9),
    seed,
  });
  const t0 = performance.now();
  const r = generate(model, l.tokenizer, sampler, {
    prompt: (v.prompt as string | undefined) ?? "",
    steps,
    onText: io.out,
  });
  io.out("\n");
  if (!v.quiet) {
    const s = (performance.now() - t0) / 1000;
    io.err(`${r.tokens.length} tokens, ${(r.tokens.length / s).toFixed(1)} tokens/s\n`);
  }
  return 0;
}

async function runPerplexity(v: Values, io: CliIo): Promise<number> {
  // With --pipelines: one table of pipelines × contexts (the sweep, on --text).
  if (v.pipelines !== undefined) {
    if (v.text === undefined) throw new TypeError("--text FILE is required");
    return await runSweep(v, io);
  }
  const l = await load(v, io);
  const tokens = await readTokens(v, l, 16384);
  const context = intOption(v, "context", l.ckpt.config.seqLen);
  const name = pipelineName((v.pipeline as string | undefined) ?? "dense");
  const model = await makeModel(v, io, l, context, name);
  const t0 = performance.now();
  const r = perplexity(model, tokens, {
    context,
    onProgress: progress(v, io, `${name} @ ${context}`),
  });
  const seconds = (performance.now() - t0) / 1000;
  if (!v.quiet) io.err("\n");
  io.out(`tokens: ${r.tokens}\nwindows: ${r.windows}\nperplexity: ${r.perplexity.toFixed(4)}\n`);
  const nllOut = v["nll-out"] as string | undefined;
  if (nllOut !== undefined) {
    await Deno.writeTextFile(
      nllOut,
      JSON.stringify({
        model: l.modelPath,
        pipeline: name,
        context,
        tokens: r.tokens,
        windows: r.windows,
        meanNll: r.meanNll,
        perplexity: r.perplexity,
        seconds,
        nll: Array.from(r.nll, (x) => Number(x.toFixed(6))),
      }) + "\n",
    );
  }
  return 0;
}

function progress(v: Values, io: CliIo, label: string): (done: number, total: number) => void {
  if (v.quiet) return () => {};
  const t0 = performance.now();
  let last = 0;
  return (done, total) => {
    const now = performance.now();
    if (now - last < 1000 && done < total) return;
    last = now;
    const rate = done / ((now - t0) / 1000);
    io.err(`\r${label}: ${done}/${total} tokens, ${rate.toFixed(0)} tokens/s   `);
  };
}

async function runCapture(v: Values, io: CliIo): Promise<number> {
  const l = await load(v, io);
  const out = v.out as string | undefined;
  if (out === undefined) throw new TypeError("--out DIR is required");
  const tokens = await readTokens(v, l, l.ckpt.config.seqLen);
  const name = pipelineName((v.pipeline as string | undefined) ?? "dense");
  const model = await makeModel(v, io, l, intOption(v, "context", tokens.length), name);
  const r = captureAttention(model, tokens, { statistics: !v["no-stats"] });
  await Deno.mkdir(out, { recursive: true });
  const files: Record<string, { descr: string; shape: readonly number[] }> = {};
  for (const [key, a] of r.arrays) {
    await Deno.writeFile(join(out, `${key}.npy`), encodeNpy(a.data, a.shape));
    files[`${key}.npy`] = { descr: a.descr, shape: a.shape };
  }
  const meta = {
    model: l.modelPath,
    modelSha256: l.modelSha256,
    tokenizer: l.tokenizerPath,
    text: v.text,
    pipeline: name,
    config: l.ckpt.config,
    tokens: tokens.length,
    files,
    heads: r.heads,
  };
  await Deno.writeTextFile(join(out, "meta.json"), JSON.stringify(meta, null, 1) + "\n");
  io.out(`tokens: ${tokens.length}\nfiles: ${r.arrays.size + 1}\nout: ${out}\n`);
  return 0;
}

/** One cell of the sweep. */
interface SweepCell {
  pipeline: PipelineName;
  context: number;
  description: string;
  tokens: number;
  windows: number;
  perplexity: number;
  meanNll: number;
  seconds: number;
}

async function runSweep(v: Values, io: CliIo): Promise<number> {
  const l = await load(v, io);
  const textPath = (v.text as string | undefined) ?? DEFAULT_TEXT;
  const vv = { ...v, text: textPath };
  const budget = intOption(v, "tokens", 16384);
  const tokens = await readTokens({ ...vv, tokens: String(budget) }, l, budget);
  const L0 = l.ckpt.config.seqLen;
  const contexts = ((v.contexts as string | undefined) ?? `${L0},${2 * L0},${4 * L0},${8 * L0}`)
    .split(",").map((s) => Number(s.trim()));
  if (contexts.some((c) => !Number.isSafeInteger(c) || c < 2)) {
    throw new RangeError(`--contexts must be integers >= 2, got ${JSON.stringify(v.contexts)}`);
  }
  const names = ((v.pipelines as string | undefined) ?? PIPELINE_NAMES.join(","))
    .split(",").map((s) => pipelineName(s.trim()));
  if (tokens.length < Math.max(...contexts)) {
    throw new RangeError(
      `--tokens (${tokens.length} read) must be at least each context (${Math.max(...contexts)})`,
    );
  }
  const cells: SweepCell[] = [];
  for (const name of names) {
    for (const context of contexts) {
      if (tokens.length < context) {
        throw new RangeError(
          `--tokens (${tokens.length}) must be at least each context (${context})`,
        );
      }
      const model = await makeModel(v, io, l, context, name);
      const t0 = performance.now();
      const r = perplexity(model, tokens, {
        context,
        onProgress: progress(v, io, `${name} @ ${context}`),
      });
      const seconds = (performance.now() - t0) / 1000;
      if (!v.quiet) io.err(`  ppl ${r.perplexity.toFixed(3)} (${seconds.toFixed(1)} s)\n`);
      cells.push({
        pipeline: name,
        context,
        description: describeNamedPipeline(name, l.ckpt.config, {
          targetContext: context,
          ...(l.duo ? { duoRetrieval: l.duo.retrieval } : {}),
        }),
        tokens: r.tokens,
        windows: r.windows,
        perplexity: r.perplexity,
        meanNll: r.meanNll,
        seconds,
      });
    }
  }
  const table = sweepTable(cells, names, contexts);
  io.out(table);
  const out = v.out as string | undefined;
  if (out !== undefined) {
    const meta = {
      model: l.modelPath,
      modelSha256: l.modelSha256,
      config: l.ckpt.config,
      text: textPath,
      streamTokens: tokens.length,
      date: new Date().toISOString(),
      deno: Deno.version.deno,
      ...(l.duo ? { duoCalibration: duoJson(l.duo) } : {}),
      cells,
    };
    await Deno.writeTextFile(`${out}.json`, JSON.stringify(meta, null, 1) + "\n");
    await Deno.writeTextFile(
      `${out}.md`,
      `# Context extension: perplexity by pipeline and context\n\n` +
        `Model \`${l.modelPath.split("/").pop()}\` (trained context ${l.ckpt.config.seqLen}), ` +
        `text \`${textPath.split("/").pop()}\`: the first ${tokens.length} tokens of its stories ` +
        `(each encoded with BOS, paragraph breaks collapsed to one newline), cut into non-overlapping ` +
        `windows of the context length; each window starts from an empty cache and every token after ` +
        `its first is scored. Each pipeline is sized for the column's context (see model/pipelines.ts). ` +
        `Produced by \`deno run -A model/cli.ts ${v.command} ${
          [
            ...(v.model ? [`--model ${v.model}`] : []),
            `--text ${textPath}`,
            `--contexts ${contexts.join(",")}`,
            `--pipelines ${names.join(",")}`,
            `--tokens ${budget}`,
          ].join(" ")
        } --out …\` on ${meta.date.slice(0, 10)}.\n\n` + table +
        `\n| pipeline | at the largest context |\n| --- | --- |\n` +
        names.map((n) =>
          `| ${n} | ${
            describeNamedPipeline(n, l.ckpt.config, {
              targetContext: Math.max(...contexts),
              ...(l.duo ? { duoRetrieval: l.duo.retrieval } : {}),
            })
          } |`
        ).join("\n") + "\n" +
        (l.duo
          ? `\nDuoAttention head split (R = retrieval, s = streaming; layers separated by spaces): ` +
            `${
              l.duo.retrieval.map((row) => row.map((x) => (x ? "R" : "s")).join("")).join(" ")
            }, ` +
            `from a ${l.duo.source} (model/duo_calibration.ts), not the paper's learned gates.\n`
          : ""),
    );
    if (!v.quiet) io.err(`wrote ${out}.md and ${out}.json\n`);
  }
  return 0;
}

function sweepTable(cells: SweepCell[], names: PipelineName[], contexts: number[]): string {
  const head = `| pipeline | ${contexts.map((c) => `ppl @ ${c}`).join(" | ")} |\n` +
    `| --- |${contexts.map(() => " ---: |").join("")}\n`;
  const rows = names.map((n) =>
    `| ${n} | ${
      contexts.map((c) => {
        const cell = cells.find((x) => x.pipeline === n && x.context === c)!;
        return cell.perplexity.toFixed(3);
      }).join(" | ")
    } |`
  );
  const scored = `| tokens scored | ${
    contexts.map((c) => String(cells.find((x) => x.context === c)!.tokens)).join(" | ")
  } |`;
  return head + rows.join("\n") + "\n" + scored + "\n";
}

const PASSKEY_MODEL = sharedPath("models/tinystories-1k/tinystories1k.bin");
const PASSKEY_FILLER = sharedPath("models/tinystories-1k/heldout_stories.txt");

function listOption(v: Values, name: string, fallback: string, integer: boolean): number[] {
  const s = (v[name] as string | undefined) ?? fallback;
  const xs = s.split(",").map((x) => Number(x.trim()));
  if (
    xs.length === 0 ||
    xs.some((x, i) =>
      s.split(",")[i]!.trim() === "" || !(integer ? Number.isSafeInteger(x) : Number.isFinite(x))
    )
  ) {
    throw new RangeError(
      `--${name} must be a comma-separated list of ${integer ? "integers" : "numbers"}, got ${
        JSON.stringify(s)
      }`,
    );
  }
  return xs;
}

/** The plotting module, loaded only for `--svg` (its npm packages are not library dependencies). */
interface PlotModule {
  passkeyHeatmapSvg(cells: readonly PasskeyCell[], title: string): string;
  passkeySummarySvg(cells: readonly PasskeyCell[], title: string): string;
}

async function runPasskeyGrid(v: Values, io: CliIo): Promise<number> {
  const l = await load({ ...v, model: (v.model as string | undefined) ?? PASSKEY_MODEL }, io);
  const lengths = listOption(v, "lengths", "1024,2048,4096", true);
  const depths = listOption(v, "depths", "0.05,0.25,0.5,0.75,0.95", false);
  if (depths.some((d) => d < 0 || d > 1)) {
    throw new RangeError(`--depths must be in [0, 1], got ${JSON.stringify(v.depths)}`);
  }
  const keys = intOption(v, "keys", 4);
  const seed = intOption(v, "seed", 0);
  const names = ((v.pipelines as string | undefined) ?? (v.pipeline as string | undefined) ??
    "dense").split(",").map((s) => pipelineName(s.trim()));
  const fillerPath = (v.text as string | undefined) ?? PASSKEY_FILLER;
  const stories = splitStories(new TextDecoder().decode((await readChecked(fillerPath)).bytes));
  const filler = passkeyFiller(l.tokenizer, stories);
  const trials = passkeyTrials(keys, seed, filler.length);
  const cells: PasskeyCell[] = [];
  const t0 = performance.now();
  for (const name of names) {
    const models = new Map<number, Llama>();
    for (const length of lengths) models.set(length, await makeModel(v, io, l, length, name));
    const got = evaluatePasskey({
      pipeline: name,
      model: (length) => models.get(length)!,
      tokenizer: l.tokenizer,
      filler,
      lengths,
      depths,
      trials,
      now: () => performance.now(),
      onTrial: (c, t) => {
        if (!v.quiet) {
          io.err(
            `${name} @ ${c.length} depth ${c.depth} key ${t.key}: ${JSON.stringify(t.text)} ${
              t.correct ? "ok" : "miss"
            } (${t.seconds.toFixed(1)} s)\n`,
          );
        }
      },
    });
    cells.push(...got);
    io.out(
      `\n${name}: ${
        describeNamedPipeline(name, l.ckpt.config, {
          targetContext: Math.max(...lengths),
          ...(l.duo ? { duoRetrieval: l.duo.retrieval } : {}),
        })
      } (at the largest length)\n\n${passkeyTable(got)}`,
    );
  }
  const seconds = (performance.now() - t0) / 1000;
  if (!v.quiet) io.err(`${cells.length} cells, ${keys} keys each, ${seconds.toFixed(0)} s\n`);
  const meta = {
    task: "pass-key retrieval (exact match, greedy decoding)",
    model: l.modelPath,
    modelSha256: l.modelSha256,
    config: l.ckpt.config,
    filler: fillerPath,
    lengths,
    depths,
    keys,
    seed,
    trials,
    prefillChunk: intOption(v, "chunk", 256),
    pipelines: names.map((n) => ({
      name: n,
      byLength: lengths.map((length) => ({
        length,
        description: describeNamedPipeline(n, l.ckpt.config, {
          targetContext: length,
          ...(l.duo ? { duoRetrieval: l.duo.retrieval } : {}),
        }),
      })),
    })),
    date: new Date().toISOString(),
    deno: Deno.version.deno,
    seconds,
    cells,
  };
  const json = v.json as string | undefined;
  if (json !== undefined) {
    await Deno.writeTextFile(json, JSON.stringify(meta, null, 1) + "\n");
    if (!v.quiet) io.err(`wrote ${json}\n`);
  }
  const svg = v.svg as string | undefined;
  if (svg !== undefined) {
    // A computed specifier keeps the npm packages out of the module graph of the library.
    const spec = new URL(["_plot", "ts"].join("."), import.meta.url).href;
    const plot = (await import(spec)) as PlotModule;
    const model = l.modelPath.split("/").pop();
    for (const name of names) {
      const path = `${svg}_${name}.svg`;
      await Deno.writeTextFile(
        path,
        plot.passkeyHeatmapSvg(
          cells.filter((c) => c.pipeline === name),
          `pass-key accuracy: ${name} (${model}, ${keys} keys per cell)`,
        ),
      );
      if (!v.quiet) io.err(`wrote ${path}\n`);
    }
    const path = `${svg}_summary.svg`;
    await Deno.writeTextFile(
      path,
      plot.passkeySummarySvg(cells, `pass-key accuracy (mean over depths) by length, ${model}`),
    );
    if (!v.quiet) io.err(`wrote ${path}\n`);
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
