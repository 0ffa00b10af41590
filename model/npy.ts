// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * NumPy `.npy` files, format version 1.0, written and read without NumPy.
 *
 * | bytes | content |
 * | --- | --- |
 * | 6 | magic `\x93NUMPY` |
 * | 2 | version `1, 0` |
 * | 2 | header length `H`, uint16 little-endian |
 * | H | ASCII Python dict literal `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`, padded with spaces and ended by `\n` so that `10 + H` is a multiple of 64 |
 * | rest | the data, C order, little-endian |
 *
 * Supported dtypes: `'<f4'` (`Float32Array`), `'<i4'` (`Int32Array`), and
 * `'<f8'` (`Float64Array`); `numpy.load` reads what {@linkcode encodeNpy}
 * writes.
 *
 * @see https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
 *
 * @module
 */

import { describeValue } from "../tensor/validate.ts";

/** An array read from or written to `.npy`. */
export interface NpyArray {
  /** NumPy dtype descriptor. */
  readonly descr: "<f4" | "<i4" | "<f8";
  /** Shape (C order). */
  readonly shape: readonly number[];
  /** The values. */
  readonly data: Float32Array | Int32Array | Float64Array;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const ALIGN = 64;

function descrOf(data: unknown): NpyArray["descr"] {
  if (data instanceof Float32Array) return "<f4";
  if (data instanceof Int32Array) return "<i4";
  if (data instanceof Float64Array) return "<f8";
  throw new TypeError(
    `Cannot encode npy: data must be a Float32Array, Int32Array or Float64Array, got ${
      describeValue(data)
    }`,
  );
}

/**
 * Encodes an array as a version 1.0 `.npy` file.
 *
 * @param data Values in C order.
 * @param shape Shape; its product must equal `data.length` (`[]` is a scalar).
 * @returns The file's bytes.
 * @throws {TypeError} On an unsupported array type or a shape that does not match.
 *
 * @example Header layout
 * ```ts
 * import { decodeNpy, encodeNpy } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * const bytes = encodeNpy(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
 * assert.equal(bytes.length, 128 + 24); // magic + version + length + dict, padded to 64-byte blocks
 * const header = new TextDecoder().decode(bytes.subarray(10, 128));
 * assert.ok(header.startsWith("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
 * assert.deepEqual(decodeNpy(bytes).shape, [2, 3]);
 * ```
 */
export function encodeNpy(
  data: Float32Array | Int32Array | Float64Array,
  shape: readonly number[],
): Uint8Array {
  const descr = descrOf(data);
  if (
    !Array.isArray(shape) || shape.some((n) => !Number.isSafeInteger(n) || n < 0) ||
    shape.reduce((a, b) => a * b, 1) !== data.length
  ) {
    throw new TypeError(
      `Cannot encode npy: shape must be non-negative integers whose product is data.length (${data.length}), got ${
        describeValue(shape)
      }`,
    );
  }
  const dims = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${dims}, }`;
  const total = Math.ceil((10 + header.length + 1) / ALIGN) * ALIGN;
  header = header.padEnd(total - 10 - 1, " ") + "\n";
  const out = new Uint8Array(total + data.byteLength);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  const view = new DataView(out.buffer, total);
  const w = data.BYTES_PER_ELEMENT;
  for (let i = 0; i < data.length; i++) {
    if (descr === "<f4") view.setFloat32(i * w, data[i]!, true);
    else if (descr === "<i4") view.setInt32(i * w, data[i]!, true);
    else view.setFloat64(i * w, data[i]!, true);
  }
  return out;
}

/**
 * Decodes a `.npy` file (versions 1.0–3.0 headers; C order; the dtypes of
 * the module doc).
 *
 * @param bytes The file's bytes.
 * @returns Descriptor, shape and a fresh typed array.
 * @throws {RangeError} On a bad magic, an unsupported version, dtype or
 *   Fortran order, a malformed header, or a data size that does not match.
 *
 * @example
 * ```ts
 * import { decodeNpy, encodeNpy } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * const a = decodeNpy(encodeNpy(new Int32Array([7, 8, 9]), [3]));
 * assert.equal(a.descr, "<i4");
 * assert.deepEqual([...a.data], [7, 8, 9]);
 * ```
 */
export function decodeNpy(bytes: Uint8Array): NpyArray {
  const action = "decode npy";
  if (!(bytes instanceof Uint8Array) || bytes.length < 10) {
    throw new RangeError(
      `Cannot ${action}: file must hold at least 10 bytes, got ${bytes?.length}`,
    );
  }
  for (let i = 0; i < 6; i++) {
    if (bytes[i] !== MAGIC[i]) {
      throw new RangeError(
        `Cannot ${action}: magic must be \\x93NUMPY, got ${
          describeValue([...bytes.subarray(0, 6)])
        }`,
      );
    }
  }
  const major = bytes[6]!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let hlen: number, hstart: number;
  if (major === 1) {
    hlen = view.getUint16(8, true);
    hstart = 10;
  } else if (major === 2 || major === 3) {
    hlen = view.getUint32(8, true);
    hstart = 12;
  } else {
    throw new RangeError(`Cannot ${action}: version must be 1, 2 or 3, got ${major}`);
  }
  if (hstart + hlen > bytes.length) {
    throw new RangeError(
      `Cannot ${action}: header of ${hlen} bytes runs past the file end (${bytes.length} bytes)`,
    );
  }
  const header = new TextDecoder().decode(bytes.subarray(hstart, hstart + hlen));
  const descr = /'descr':\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new RangeError(
      `Cannot ${action}: header must hold descr, fortran_order and shape, got ${
        JSON.stringify(header)
      }`,
    );
  }
  if (descr !== "<f4" && descr !== "<i4" && descr !== "<f8") {
    throw new RangeError(`Cannot ${action}: descr must be '<f4', '<i4' or '<f8', got '${descr}'`);
  }
  if (fortran !== "False") {
    throw new RangeError(`Cannot ${action}: fortran_order must be False, got ${fortran}`);
  }
  const shape = shapeText.split(",").map((s) => s.trim()).filter((s) => s !== "").map(Number);
  if (shape.some((n) => !Number.isSafeInteger(n) || n < 0)) {
    throw new RangeError(
      `Cannot ${action}: shape must be non-negative integers, got (${shapeText})`,
    );
  }
  const count = shape.reduce((a, b) => a * b, 1);
  const width = descr === "<f8" ? 8 : 4;
  const start = hstart + hlen;
  if (bytes.length - start !== count * width) {
    throw new RangeError(
      `Cannot ${action}: data must be ${count * width} bytes for shape (${shape.join(", ")}), got ${
        bytes.length - start
      }`,
    );
  }
  const data = descr === "<f4"
    ? new Float32Array(count)
    : descr === "<i4"
    ? new Int32Array(count)
    : new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const o = start + i * width;
    data[i] = descr === "<f4"
      ? view.getFloat32(o, true)
      : descr === "<i4"
      ? view.getInt32(o, true)
      : view.getFloat64(o, true);
  }
  return { descr, shape, data };
}
