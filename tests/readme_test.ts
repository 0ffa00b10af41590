// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";

Deno.test("README example runs as written", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const block = readme.match(/```ts\n([\s\S]*?)```/);
  assert.ok(block, "README has a ts example");
  const code = block[1]!.replaceAll(
    '"@longctx/longctx"',
    JSON.stringify(new URL("../mod.ts", import.meta.url).href),
  );
  const file = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(file, code);
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-check", "-A", file],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(r.stdout);
    assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    assert.match(out, /\[ 1, 8, 64 \] 1028/);
  } finally {
    await Deno.remove(file);
  }
});
