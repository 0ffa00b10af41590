// Copyright 2026 the longctx authors. MIT license.

import assert from "node:assert/strict";
import { decodeNpy, encodeNpy } from "./npy.ts";

const header = (bytes: Uint8Array): string => {
  const n = new DataView(bytes.buffer, bytes.byteOffset).getUint16(8, true);
  return new TextDecoder().decode(bytes.subarray(10, 10 + n));
};

Deno.test("encodeNpy() writes a version 1.0 header padded to 64 bytes, little-endian data", () => {
  const data = new Float32Array([1.5, -2, 3.25, 0, 1e-8, -Infinity]);
  const bytes = encodeNpy(data, [2, 1, 3]);
  assert.deepEqual([...bytes.subarray(0, 8)], [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  const h = header(bytes);
  assert.equal((10 + h.length) % 64, 0);
  assert.ok(h.endsWith("\n"));
  assert.equal(h.trimEnd(), "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1, 3), }");
  const view = new DataView(bytes.buffer, 10 + h.length);
  for (let i = 0; i < data.length; i++) assert.equal(view.getFloat32(4 * i, true), data[i]);
});

Deno.test("encodeNpy() writes Python tuple syntax for 1-D and scalar shapes", () => {
  assert.match(
    header(encodeNpy(new Int32Array([1, 2, 3]), [3])),
    /'descr': '<i4'.*'shape': \(3,\), }/,
  );
  assert.match(header(encodeNpy(new Float64Array([7]), [])), /'descr': '<f8'.*'shape': \(\), }/);
  assert.match(header(encodeNpy(new Float32Array(0), [0, 4])), /'shape': \(0, 4\)/);
});

Deno.test("decodeNpy() reads back every dtype and shape", () => {
  const cases = [
    { data: new Float32Array([1, 2, 3, 4, 5, 6]), shape: [3, 2] },
    { data: new Int32Array([-1, 2147483647, -2147483648]), shape: [3] },
    { data: new Float64Array([Math.PI]), shape: [] },
    { data: new Float32Array(0), shape: [0] },
  ];
  for (const c of cases) {
    const back = decodeNpy(encodeNpy(c.data, c.shape));
    assert.deepEqual(back.shape, c.shape);
    assert.deepEqual(back.data, c.data);
  }
  // A header written by numpy itself (shape (2,), '<f4'), with its own padding.
  const npHeader = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const h = npHeader.padEnd(117, " ") + "\n";
  const bytes = new Uint8Array(128 + 8);
  bytes.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, h.length, 0]);
  bytes.set(new TextEncoder().encode(h), 10);
  new DataView(bytes.buffer).setFloat32(128, 0.5, true);
  new DataView(bytes.buffer).setFloat32(132, -4, true);
  assert.deepEqual([...decodeNpy(bytes).data], [0.5, -4]);
});

Deno.test("encodeNpy()/decodeNpy() reject what they do not support", () => {
  assert.throws(() => encodeNpy(new Float32Array(6), [4, 2]), /product is data.length \(6\)/);
  assert.throws(() => encodeNpy(new Uint8Array(2) as unknown as Float32Array, [2]), TypeError);
  const good = encodeNpy(new Float32Array([1, 2]), [2]);
  const bad = good.slice();
  bad[1] = 0;
  assert.throws(() => decodeNpy(bad), /magic must be/);
  assert.throws(() => decodeNpy(good.subarray(0, good.length - 1)), /data must be 8 bytes/);
  const v9 = good.slice();
  v9[6] = 9;
  assert.throws(() => decodeNpy(v9), /version must be 1, 2 or 3, got 9/);
  const fortran = good.slice();
  const at = header(good).indexOf("False");
  fortran.set(new TextEncoder().encode("True "), 10 + at);
  assert.throws(() => decodeNpy(fortran), /fortran_order must be False, got True/);
  const u1 = good.slice();
  u1.set(new TextEncoder().encode("<u1"), 10 + "{'descr': '".length);
  assert.throws(() => decodeNpy(u1), /descr must be/);
  assert.throws(() => decodeNpy(new Uint8Array(4)), /at least 10 bytes/);
});
