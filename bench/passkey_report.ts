// Copyright 2026 the longctx authors. MIT license.

/**
 * Merges pass-key grid runs (`deno task model passkey … --json F`) into one
 * report: `<out>.md` (accuracy by pipeline × length, per-pipeline depth
 * tables, misses, seconds per trial), `<out>.json` (every run's command and
 * every cell), `<out>_<pipeline>.svg` heatmaps and `<out>_summary.svg`.
 * Inputs may also be an earlier report's JSON (its runs are kept). Where two
 * inputs hold the same (pipeline, length, depth), the later one wins.
 *
 * ```sh
 * deno run -A bench/passkey_report.ts --out bench/results/passkey_tinystories1k \
 *   [--png DIR] [--notes FILE.md] run1.json run2.json …
 * ```
 *
 * `--png DIR` also renders every SVG to PNG (to look at them); `--notes`
 * inserts a hand-written analysis after the summary table.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type PasskeyCell, passkeyTable } from "../model/passkey.ts";
import { PIPELINE_NAMES } from "../model/pipelines.ts";
import { passkeyHeatmapSvg, passkeySummarySvg, svgToPng } from "../model/_plot.ts";

interface Run {
  command: string;
  lengths: number[];
  keys: number;
  trials: unknown;
  pipelines: { name: string; byLength: { length: number; description: string }[] }[];
  seconds: number;
  date: string;
  deno: string;
  duoCalibration?: unknown;
}

interface CliJson {
  task: string;
  model: string;
  modelSha256: string;
  config: { seqLen: number };
  filler: string;
  lengths: number[];
  depths: number[];
  keys: number;
  seed: number;
  trials: unknown;
  prefillChunk: number;
  pipelines: Run["pipelines"];
  date: string;
  deno: string;
  seconds: number;
  cells: PasskeyCell[];
  runs?: Run[];
  duoCalibration?: unknown;
}

const { values: v, positionals: files } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: { out: { type: "string" }, png: { type: "string" }, notes: { type: "string" } },
});
if (v.out === undefined || files.length === 0) {
  console.error("usage: deno run -A bench/passkey_report.ts --out PREFIX [--png DIR] in.json …");
  Deno.exit(2);
}
const shared = (p: string): string => p.replace(/^.*\/shared\//, "../shared/");
const commandOf = (r: CliJson): string =>
  `deno task model passkey --model ${shared(r.model)} --lengths ${r.lengths.join(",")} ` +
  `--depths ${r.depths.join(",")} --keys ${r.keys} --seed ${r.seed} --pipelines ${
    r.pipelines.map((p) => p.name).join(",")
  } --json …`;

const inputs: CliJson[] = [];
for (const f of files) inputs.push(JSON.parse(await Deno.readTextFile(f)) as CliJson);
const runs: Run[] = inputs.flatMap((r) =>
  r.runs ?? [{
    command: commandOf(r),
    lengths: r.lengths,
    keys: r.keys,
    trials: r.trials,
    pipelines: r.pipelines,
    seconds: r.seconds,
    date: r.date,
    deno: r.deno,
    ...(r.duoCalibration ? { duoCalibration: r.duoCalibration } : {}),
  }]
);
const byCell = new Map<string, PasskeyCell>();
for (const r of inputs) {
  for (const c of r.cells) byCell.set(`${c.pipeline}@${c.length}@${c.depth}`, c);
}
const cells = [...byCell.values()];
const order = PIPELINE_NAMES as readonly string[];
const names = [...new Set(cells.map((c) => c.pipeline))]
  .sort((a, b) => order.indexOf(a) - order.indexOf(b));
const lengths = [...new Set(cells.map((c) => c.length))].sort((a, b) => a - b);
const depths = [...new Set(cells.map((c) => c.depth))].sort((a, b) => a - b);
const descr = new Map<string, string>();
for (const r of runs) {
  for (const p of r.pipelines) {
    for (const b of p.byLength) descr.set(`${p.name}@${b.length}`, b.description);
  }
}
const r0 = inputs[0]!;
const sorted = (xs: PasskeyCell[]): PasskeyCell[] =>
  [...xs].sort((a, b) => a.length - b.length || a.depth - b.depth);
const L0 = r0.config.seqLen;
const trialsOf = (n: string, l: number) =>
  cells.filter((c) => c.pipeline === n && c.length === l).flatMap((c) => c.trials);

let md = `# Pass-key retrieval on tinystories-1k by pipeline and length\n\n` +
  `Model \`${r0.model.split("/").pop()}\` (sha256 ${
    r0.modelSha256.slice(0, 16)
  }…, trained context ${L0}), ` +
  `filler from its held-out stories (\`${
    r0.filler.split("/").pop()
  }\`). Prompt as in PROVENANCE.md: ` +
  `BOS, filler, \`The secret number is NNNNN. Remember it.\` at the sentence end nearest the depth, ` +
  `more filler, \`What is the secret number? The secret number is\`; the length counts prompt plus the ` +
  `6 answer tokens (a space and five digits). Prefill in chunks of ${r0.prefillChunk}, then greedy ` +
  `decoding from the KV cache; a trial counts only if every answer token is the model's top choice ` +
  `(exact match). Keys and filler start stories drawn with seed ${r0.seed} (\`passkeyTrials\`), the ` +
  `same for every pipeline and depth, so a cell with fewer keys holds the first of them. Each pipeline ` +
  `is sized for the column's length (model/pipelines.ts). Pure-TypeScript reference kernels on a 2-core ` +
  `machine shared with other jobs: the seconds are wall time under contention.\n\n` +
  `Made by \`deno run -A bench/passkey_report.ts\` from these runs (processes in parallel):\n\n` +
  runs.map((r) =>
    `- \`${r.command}\` — ${r.pipelines.length} pipeline(s) × ${r.lengths.length} length(s), ${
      r.seconds.toFixed(0)
    } s (${r.date.slice(0, 16)}Z)`
  ).join("\n") + "\n\n";
md +=
  `## Accuracy (exact match, mean over ${depths.length} depths unless noted; correct/trials)\n\n` +
  `| pipeline | ${lengths.map((l) => `${l} (${l / L0}×)`).join(" | ")} |\n| --- |${
    lengths.map(() => " ---: |").join("")
  }\n`;
for (const n of names) {
  md += `| ${n} | ${
    lengths.map((l) => {
      const t = trialsOf(n, l);
      if (t.length === 0) return "—";
      const ok = t.filter((x) => x.correct).length;
      const nd = cells.filter((c) => c.pipeline === n && c.length === l).length;
      return `${(ok / t.length).toFixed(2)} (${ok}/${t.length}${
        nd < depths.length ? `, ${nd} depths` : ""
      })`;
    }).join(" | ")
  } |\n`;
}
md += `\n— = not run (see the notes). PROVENANCE.md's dense baseline (PyTorch, 8 keys per cell): ` +
  `1.00 at 1024 at every depth, 0.00–0.12 at 2048, 0.00 at 4096.\n`;
if (v.notes) md += `\n${(await Deno.readTextFile(v.notes)).trim()}\n`;
for (const n of names) {
  const mine = sorted(cells.filter((c) => c.pipeline === n));
  const ls = lengths.filter((l) => mine.some((c) => c.length === l));
  md += `\n## ${n}\n\n${ls.map((l) => `- ${l}: ${descr.get(`${n}@${l}`) ?? "?"}`).join("\n")}\n\n${
    passkeyTable(mine)
  }`;
  const misses = mine.flatMap((c) =>
    c.trials.filter((t) => !t.correct).map((t) =>
      `${c.length}/${c.depth}: ${t.key} → ${JSON.stringify(t.text)}`
    )
  );
  if (misses.length) {
    md += `\nMisses (length/depth: key → greedy continuation): ${misses.slice(0, 12).join("; ")}${
      misses.length > 12 ? `; … (${misses.length} in all)` : ""
    }\n`;
  }
  md += `\nSeconds per trial (prefill + decode, contended): ${
    ls.map((l) => {
      const t = trialsOf(n, l);
      return `${l}: ${(t.reduce((a, x) => a + x.seconds, 0) / t.length).toFixed(1)}`;
    }).join(", ")
  }\n`;
}
const out = v.out;
const prefixName = out.split("/").pop();
md += `\nPlots: \`${prefixName}_<pipeline>.svg\` (depth × length heatmaps) and ` +
  `\`${prefixName}_summary.svg\` (mean accuracy vs length; each line is offset by a couple of pixels so ` +
  `coinciding ones stay visible).\n`;
await Deno.writeTextFile(`${out}.md`, md);
await Deno.writeTextFile(
  `${out}.json`,
  JSON.stringify(
    {
      task: r0.task,
      model: shared(r0.model),
      modelSha256: r0.modelSha256,
      config: r0.config,
      filler: shared(r0.filler),
      depths,
      seed: r0.seed,
      prefillChunk: r0.prefillChunk,
      runs,
      cells: sorted(cells).sort((a, b) => order.indexOf(a.pipeline) - order.indexOf(b.pipeline)),
    },
    null,
    1,
  ) + "\n",
);
const svgs: [string, string][] = names.map((n) => [
  `${out}_${n}.svg`,
  passkeyHeatmapSvg(sorted(cells.filter((c) => c.pipeline === n)), `pass-key accuracy: ${n}`),
]);
svgs.push([
  `${out}_summary.svg`,
  passkeySummarySvg(
    cells,
    `pass-key accuracy on tinystories-1k (mean over ${depths.length} depths)`,
  ),
]);
for (const [path, svg] of svgs) {
  await Deno.writeTextFile(path, svg);
  if (v.png) {
    await Deno.writeFile(
      `${v.png}/${path.split("/").pop()!.replace(/\.svg$/, ".png")}`,
      svgToPng(svg),
    );
  }
}
console.log(md);
