// Copyright 2026 the longctx authors. MIT license.
/**
 * Fails when a public source file is not re-exported by its folder's mod.ts,
 * when a folder mod.ts is missing from deno.json's exports, or when the README
 * technique table names a module file that does not exist.
 *
 * Public = a `.ts` file in a library folder whose name does not start with `_`
 * and is not a test, bench or mod.ts. Files whose first 20 lines carry
 * `@internal-entry` are exempt (e.g. worker entry points).
 *
 * Usage: deno run -A _tools/check_mod_exports.ts
 */
import { join } from "node:path";

const LIB = ["tensor", "attention", "kv", "positional", "memory", "gpu", "model"];
const root = new URL("..", import.meta.url).pathname;
const problems: string[] = [];
const config = JSON.parse(Deno.readTextFileSync(join(root, "deno.json")));
const exportsMap: Record<string, string> = config.exports;
const exported = new Set(Object.values(exportsMap).map((p) => p.replace(/^\.\//, "")));

for (const dir of LIB) {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(join(root, dir))];
  } catch {
    continue;
  }
  const modPath = join(root, dir, "mod.ts");
  let mod = "";
  try {
    mod = Deno.readTextFileSync(modPath);
  } catch {
    problems.push(`${dir}/mod.ts is missing`);
    continue;
  }
  if (!exported.has(`${dir}/mod.ts`)) problems.push(`deno.json exports lack ./${dir}/mod.ts`);
  for (const e of entries) {
    if (!e.isFile || !e.name.endsWith(".ts")) continue;
    if (e.name.startsWith("_") || e.name === "mod.ts") continue;
    if (/_test\.ts$|_bench\.ts$/.test(e.name)) continue;
    const head = Deno.readTextFileSync(join(root, dir, e.name)).split("\n").slice(0, 20).join("\n");
    if (head.includes("@internal-entry")) continue;
    if (!mod.includes(`"./${e.name}"`)) {
      problems.push(`${dir}/mod.ts does not re-export ./${e.name}`);
    }
  }
}

const rootMod = Deno.readTextFileSync(join(root, "mod.ts"));
for (const dir of LIB) {
  try {
    Deno.statSync(join(root, dir, "mod.ts"));
  } catch {
    continue;
  }
  if (dir === "gpu") continue; // GPU types stay out of the pure-TS entry (STYLE item 9).
  if (!rootMod.includes(`"./${dir}/mod.ts"`)) {
    problems.push(`mod.ts does not re-export ./${dir}/mod.ts`);
  }
}

// README technique table: every `module/file.ts` it links must exist.
const readme = Deno.readTextFileSync(join(root, "README.md"));
for (const m of readme.matchAll(/\]\(\.\/([a-z_/]+\.ts)\)/g)) {
  try {
    Deno.statSync(join(root, m[1]!));
  } catch {
    problems.push(`README links ${m[1]}, which does not exist`);
  }
}

if (problems.length > 0) {
  console.error(problems.map((p) => `check_mod_exports: ${p}`).join("\n"));
  Deno.exit(1);
}
console.log("check_mod_exports: ok");
