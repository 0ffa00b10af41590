// Copyright 2026 the longctx authors. MIT license.

/**
 * File helpers for the CLI, tests and benches (Deno only, not exported):
 * reading a file checked against the `SHA256SUMS` beside it, and locating the
 * project's read-only `../shared` artefacts.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { sha256Hex } from "./checkpoint.ts";

/** The project's shared artefacts folder (`<repo>/../shared`). */
export const SHARED_DIR: string = fileURLToPath(new URL("../../shared/", import.meta.url));

/** Path of a file under {@linkcode SHARED_DIR}. */
export function sharedPath(relative: string): string {
  return join(SHARED_DIR, relative);
}

/** Default model of the CLI: stories260K. */
export const DEFAULT_MODEL: string = sharedPath("models/stories260K/stories260K.bin");
/** Default tokenizer of the CLI: stories260K's tok512 (also tinystories-1k's). */
export const DEFAULT_TOKENIZER: string = sharedPath("models/stories260K/tok512.bin");

/** A file's bytes and how its checksum was checked. */
export interface CheckedFile {
  path: string;
  bytes: Uint8Array;
  sha256: string;
  /** `"verified"`: listed in SHA256SUMS and equal; `"unlisted"`: SHA256SUMS lacks it; `"no-sums"`: no SHA256SUMS. */
  check: "verified" | "unlisted" | "no-sums";
}

/** Parses `sha256sum` output lines (`<hex>  <name>` or `<hex> *<name>`). */
export function parseSha256Sums(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split("\n")) {
    const r = /^([0-9a-fA-F]{64}) [ *](.+)$/.exec(line.trim());
    if (r) m.set(r[2]!, r[1]!.toLowerCase());
  }
  return m;
}

/**
 * Reads `path`; when a `SHA256SUMS` beside it lists the file, checks the
 * digest and throws a `RangeError` on mismatch.
 */
export async function readChecked(path: string): Promise<CheckedFile> {
  const bytes = await Deno.readFile(path);
  const sha256 = await sha256Hex(bytes);
  let sums: Map<string, string> | undefined;
  try {
    sums = parseSha256Sums(await Deno.readTextFile(join(dirname(path), "SHA256SUMS")));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (sums === undefined) return { path, bytes, sha256, check: "no-sums" };
  const want = sums.get(basename(path));
  if (want === undefined) return { path, bytes, sha256, check: "unlisted" };
  if (want !== sha256) {
    throw new RangeError(
      `Cannot read ${path}: sha256 must be ${want} (SHA256SUMS), got ${sha256}`,
    );
  }
  return { path, bytes, sha256, check: "verified" };
}

/**
 * For tests: a shared artefact's bytes, verified against its folder's
 * `SHA256SUMS`, or the reason it cannot be used (absent folder, missing file,
 * unlisted or mismatching checksum).
 */
export async function loadSharedArtefact(
  relative: string,
): Promise<{ bytes: Uint8Array; reason?: undefined } | { bytes?: undefined; reason: string }> {
  const path = sharedPath(relative);
  try {
    const f = await readChecked(path);
    if (f.check !== "verified") {
      return { reason: `${path}: not listed in a SHA256SUMS beside it (${f.check})` };
    }
    return { bytes: f.bytes };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { reason: `${path} is absent` };
    if (e instanceof RangeError) return { reason: e.message };
    throw e;
  }
}
