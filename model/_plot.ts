// Copyright 2026 the longctx authors. MIT license.
// @internal-entry: plotting for the CLI (npm packages), not re-exported by model/mod.ts.

/**
 * SVG plots of pass-key results with `@observablehq/plot` rendered in a
 * `linkedom` document (no browser needed), and PNG rendering with
 * `@resvg/resvg-js` for checking a plot by eye. Loaded by `model/cli.ts` only
 * when `--svg` is given, so the library and the other commands need none of
 * these packages.
 *
 * @module
 */

import * as Plot from "npm:@observablehq/plot@0.6";
import { parseHTML } from "npm:linkedom@0.18";
import { Resvg } from "npm:@resvg/resvg-js@2";
import type { PasskeyCell } from "./passkey.ts";

function render(options: Plot.PlotOptions, title: string): string {
  const { document } = parseHTML("<!doctype html><html><body></body></html>") as unknown as {
    document: unknown;
  };
  // A title mark rather than Plot's `title` option, which wraps the SVG in an HTML <figure>.
  const marks = [
    ...(options.marks ?? []),
    Plot.text([title], {
      frameAnchor: "top-left",
      dy: -50,
      dx: -40,
      textAnchor: "start",
      fontSize: 13,
      fontWeight: "bold",
    }),
  ];
  const svg = Plot.plot(
    { ...options, marks, marginTop: 64, marginBottom: 46, document } as Plot.PlotOptions,
  ) as unknown as {
    setAttribute(name: string, value: string): void;
    outerHTML: string;
  };
  svg.setAttribute("xmlns", "http://www.w3.org/2000/svg");
  // resvg does not resolve CSS custom properties or currentColor from a stylesheet: make them explicit.
  return svg.outerHTML
    .replaceAll("currentColor", "black")
    .replace(/<style>[\s\S]*?<\/style>/, "") + "\n";
}

/**
 * Needle-in-a-haystack heatmap of one pipeline: x = length, y = depth (top =
 * start of the context), colour = exact-match accuracy, the value printed in
 * each cell.
 *
 * @param cells Cells of one pipeline.
 * @param title Plot title.
 * @returns An SVG document.
 */
export function passkeyHeatmapSvg(cells: readonly PasskeyCell[], title: string): string {
  const data = cells.map((c) => ({
    length: String(c.length),
    depth: String(c.depth),
    accuracy: c.accuracy,
    label: `${Math.round(c.accuracy * 100)}%`,
  }));
  return render({
    width: 120 + 110 * new Set(data.map((d) => d.length)).size,
    height: 60 + 44 * new Set(data.map((d) => d.depth)).size,
    marginLeft: 60,
    style: { background: "white", fontSize: "12px", fontFamily: "sans-serif" },
    x: {
      label: "context length (tokens)",
      labelAnchor: "center",
      labelOffset: 38,
      domain: [...new Set(data.map((d) => d.length))],
    },
    y: { label: "fact depth", domain: [...new Set(data.map((d) => d.depth))] },
    color: { type: "linear", domain: [0, 1], range: ["#d73027", "#1a9850"], legend: false },
    marks: [
      Plot.cell(data, { x: "length", y: "depth", fill: "accuracy", inset: 1 }),
      Plot.text(data, { x: "length", y: "depth", text: "label", fill: "white", fontSize: 13 }),
    ],
  }, title);
}

/**
 * Accuracy (mean over depths) against length, one line per pipeline.
 *
 * @param cells Cells of every pipeline.
 * @param title Plot title.
 * @returns An SVG document.
 */
export function passkeySummarySvg(cells: readonly PasskeyCell[], title: string): string {
  const keys = new Map<string, { pipeline: string; length: number; sum: number; n: number }>();
  for (const c of cells) {
    const k = `${c.pipeline}@${c.length}`;
    const e = keys.get(k) ?? { pipeline: c.pipeline, length: c.length, sum: 0, n: 0 };
    e.sum += c.accuracy;
    e.n++;
    keys.set(k, e);
  }
  const data = [...keys.values()].map((e) => ({
    pipeline: e.pipeline,
    length: e.length,
    accuracy: e.sum / e.n,
  }));
  const lengths = [...new Set(data.map((d) => d.length))].sort((a, b) => a - b);
  const names = [...new Set(data.map((d) => d.pipeline))];
  // Lines that coincide (e.g. several at 0%) stay visible: each pipeline is offset by a few
  // pixels vertically, and a legend lists them in the right margin.
  const marks: Plot.Markish[] = [Plot.ruleY([0])];
  names.forEach((name, i) => {
    const rows = data.filter((d) => d.pipeline === name);
    const dy = (i - (names.length - 1) / 2) * 2;
    marks.push(
      Plot.lineY(rows, { x: "length", y: "accuracy", stroke: "pipeline", strokeWidth: 2, dy }),
      Plot.dot(rows, { x: "length", y: "accuracy", fill: "pipeline", r: 4, dy }),
      Plot.text([name], {
        frameAnchor: "top-right",
        dx: 14,
        dy: 18 * i,
        text: (d: string) => d,
        fill: () => name,
        textAnchor: "start",
      }),
    );
  });
  return render({
    width: 680,
    height: 380,
    marginRight: 130,
    style: { background: "white", fontSize: "12px", fontFamily: "sans-serif" },
    x: {
      type: "log",
      base: 2,
      label: "context length (tokens)",
      labelAnchor: "center",
      labelOffset: 38,
      ticks: lengths,
    },
    y: {
      domain: [0, 1],
      grid: true,
      label: "exact-match accuracy",
      labelAnchor: "center",
      labelOffset: 42,
    },
    marginLeft: 60,
    // Tableau 10 plus two, so up to 12 pipelines get distinct colours.
    color: { domain: names, range: [...TABLEAU10, "#222222", "#17becf"] },
    marks,
  }, title);
}

/** Observable Plot's `tableau10` scheme. */
const TABLEAU10 = [
  "#4e79a7",
  "#f28e2c",
  "#e15759",
  "#76b7b2",
  "#59a14f",
  "#edc949",
  "#af7aa1",
  "#ff9da7",
  "#9c755f",
  "#bab0ab",
];

/**
 * Renders an SVG document to PNG.
 *
 * @param svg The SVG text.
 * @returns PNG bytes.
 */
export function svgToPng(svg: string): Uint8Array {
  return new Resvg(svg, { background: "white", fitTo: { mode: "zoom", value: 1.5 } })
    .render().asPng();
}
