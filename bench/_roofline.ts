// Copyright 2026 the longctx authors. MIT license.

/**
 * A memory-bandwidth probe for the roofline columns of the benches: how fast
 * can this process stream a buffer far larger than the caches?
 *
 * Decode attention reads each key and value once, so its best possible time
 * is `bytes of K and V ÷ bandwidth`; the benches report each kernel's
 * effective GB/s as a fraction of the figure measured here, in the same
 * process, just before the kernels run.
 *
 * Sequential reads of a `≥ 256 MiB` buffer, best of several runs:
 *
 * - `wasm`: a WebAssembly SIMD loop, four independent 16-byte loads per
 *   64-byte line, the way the WASM attention kernel reads K and V. This is the
 *   closest a JS runtime gets to a C `read` loop.
 * - `line`: JS, one f64 load per 64-byte cache line (the prefetchers stream
 *   every line, so this is the memory system with a little JS overhead).
 * - `element`: JS, every f64 summed (4 accumulators): what a JS loop that
 *   touches every element reaches.
 *
 * `wasm` also runs on `threads` workers at once, each reading its own slice of
 * the one shared memory, since a pool of workers can draw more bandwidth than
 * one core.
 *
 * @module
 */

/** Result of {@linkcode measureReadBandwidth}. */
export interface BandwidthProbe {
  /** Bytes read per run. */
  bytes: number;
  /** Runs per method; the best is kept. */
  runs: number;
  /** One thread, WASM SIMD loads of every byte, GB/s (1e9 bytes/s). */
  wasmGBps: number;
  /** One thread, JS, one load per cache line, GB/s. */
  lineGBps: number;
  /** One thread, JS, every element, GB/s. */
  elementGBps: number;
  /** `threads` workers reading disjoint slices at once with the WASM loop, GB/s. */
  parallelGBps: number;
  /** Workers used for `parallelGBps`. */
  threads: number;
  /** The single-thread roofline: the best of the three one-thread figures, GB/s. */
  singleGBps: number;
  /** The roofline for `threads` threads: the best of every figure, GB/s. */
  peakGBps: number;
}

/** Options of {@linkcode measureReadBandwidth}. */
export interface BandwidthProbeOptions {
  /** Bytes read per run (rounded down to a multiple of 64 · threads). @default {256 * 2 ** 20} */
  bytes?: number;
  /** Runs per method. @default {5} */
  runs?: number;
  /** Workers for the parallel read. @default {navigator.hardwareConcurrency} */
  threads?: number;
}

// ---------------------------------------------------------------------------
// The WASM read loop, assembled by hand (about 150 bytes), so the bench needs no compiler:
//
// (module
//   (import "env" "memory" (memory 1 65536 shared))
//   (func (export "sum") (param $p i32) (param $end i32) (result f32)
//     (local $a v128) (local $b v128) (local $c v128) (local $d v128)
//     (loop $l
//       (local.set $a (f32x4.add (local.get $a) (v128.load offset=0 (local.get $p))))
//       … $b, $c, $d at offsets 16, 32, 48 …
//       (local.set $p (i32.add (local.get $p) (i32.const 64)))
//       (br_if $l (i32.lt_u (local.get $p) (local.get $end))))
//     (f32x4.extract_lane 0 (f32x4.add (f32x4.add $a $b) (f32x4.add $c $d)))))

/** Unsigned LEB128. */
function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

const F32X4_ADD = [0xfd, ...uleb(0xe4)];

/** The bytes of the read-loop module. */
export function readLoopModule(): Uint8Array<ArrayBuffer> {
  const name = (s: string) => [s.length, ...Array.from(s, (c) => c.charCodeAt(0))];
  // deno-fmt-ignore
  const accumulate = (local: number, offset: number) => [
    0x20, local,                     // local.get acc
    0x20, 0,                         // local.get p
    0xfd, 0x00, 4, ...uleb(offset),  // v128.load align=16 offset
    ...F32X4_ADD,                    // f32x4.add
    0x21, local,                     // local.set acc
  ];
  // deno-fmt-ignore
  const body = [
    1, 4, 0x7b,                                 // 4 locals of type v128
    0x03, 0x40,                                 // loop (no result)
    ...accumulate(2, 0),
    ...accumulate(3, 16),
    ...accumulate(4, 32),
    ...accumulate(5, 48),
    0x20, 0, 0x41, 0xc0, 0x00, 0x6a, 0x21, 0,   // p = p + 64
    0x20, 0, 0x20, 1, 0x49, 0x0d, 0,            // br_if 0 (p < end, unsigned)
    0x0b,                                       // end loop
    0x20, 2, 0x20, 3, ...F32X4_ADD,             // a + b
    0x20, 4, 0x20, 5, ...F32X4_ADD,             // c + d
    ...F32X4_ADD,
    0xfd, 0x1f, 0,                              // f32x4.extract_lane 0
    0x0b,                                       // end func
  ];
  // deno-fmt-ignore
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,                                // "\0asm", version 1
    ...section(1, [1, 0x60, 2, 0x7f, 0x7f, 1, 0x7d]),                              // type: (i32, i32) -> f32
    ...section(2, [1, ...name("env"), ...name("memory"), 0x02, 0x03, 1, ...uleb(65536)]), // shared memory import
    ...section(3, [1, 0]),                                                         // function 0 has type 0
    ...section(7, [1, ...name("sum"), 0x00, 0]),                                   // export "sum" = function 0
    ...section(10, [1, ...uleb(body.length), ...body]),                            // code
  ]);
}

/** Sums one f64 per 64-byte line of `a[start, end)`. */
function readLines(a: Float64Array, start: number, end: number): number {
  let s0 = 0, s1 = 0;
  let i = start;
  for (; i + 16 <= end; i += 16) {
    s0 += a[i]!;
    s1 += a[i + 8]!;
  }
  for (; i < end; i += 8) s0 += a[i]!;
  return s0 + s1;
}

/** Sums every f64 of `a`. */
function readElements(a: Float64Array): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  const n = a.length - (a.length & 3);
  for (let i = 0; i < n; i += 4) {
    s0 += a[i]!;
    s1 += a[i + 1]!;
    s2 += a[i + 2]!;
    s3 += a[i + 3]!;
  }
  return s0 + s1 + s2 + s3;
}

// The worker: instantiates the read loop over the shared memory, then reads its slice each
// time it is told to.
const WORKER_SOURCE = `
let sum;
self.onmessage = async (e) => {
  const m = e.data;
  if (m.memory) {
    const { instance } = await WebAssembly.instantiate(m.bytes, { env: { memory: m.memory } });
    sum = instance.exports.sum;
    self.postMessage(0);
    return;
  }
  self.postMessage(sum(m.start, m.end));
};
`;

function best(runs: number, f: () => unknown): number {
  let t = Infinity;
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    f();
    t = Math.min(t, performance.now() - t0);
  }
  return t;
}

/**
 * Measures sequential read bandwidth, single- and multi-threaded.
 *
 * @param options Buffer size, runs, threads.
 * @returns The measurements and the two rooflines (`singleGBps`, `peakGBps`).
 */
export async function measureReadBandwidth(
  options: BandwidthProbeOptions = {},
): Promise<BandwidthProbe> {
  const threads = Math.max(1, options.threads ?? (navigator.hardwareConcurrency || 1));
  const runs = Math.max(1, options.runs ?? 5);
  const unit = 64 * threads;
  const bytes = Math.max(unit, Math.floor((options.bytes ?? 256 * 2 ** 20) / unit) * unit);
  // One shared memory: the JS loops read it as f64, the WASM loop (here and in workers)
  // as v128. 64 KiB of headroom keeps the read loop's last 64 bytes inside the memory.
  const pages = Math.ceil(bytes / 65536) + 1;
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const a = new Float64Array(memory.buffer, 0, bytes / 8);
  a.fill(1.5); // touch every page, so no read hits the shared zero page
  let sink = 0;

  const moduleBytes = readLoopModule();
  const { instance } = await WebAssembly.instantiate(moduleBytes, { env: { memory } });
  const sum = instance.exports.sum as (start: number, end: number) => number;
  const wasmMs = best(runs, () => sink += sum(0, bytes));
  const lineMs = best(runs, () => sink += readLines(a, 0, a.length));
  const elementMs = best(runs, () => sink += readElements(a));

  const url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "text/javascript" }));
  const workers = Array.from({ length: threads }, () => new Worker(url, { type: "module" }));
  let parallelMs = Infinity;
  try {
    const all = (messages: unknown[]): Promise<number[]> =>
      Promise.all(workers.map((w, i) =>
        new Promise<number>((resolve, reject) => {
          w.onmessage = (e: MessageEvent<number>) => resolve(e.data);
          w.onerror = (e: ErrorEvent) => {
            e.preventDefault();
            reject(new Error(`Cannot measure bandwidth: probe worker failed: ${e.message}`));
          };
          w.postMessage(messages[i]);
        })
      ));
    await all(workers.map(() => ({ memory, bytes: moduleBytes })));
    const per = bytes / threads;
    const slices = workers.map((_, i) => ({ start: i * per, end: (i + 1) * per }));
    await all(slices); // warm-up
    for (let r = 0; r < runs; r++) {
      const t0 = performance.now();
      const sums = await all(slices);
      parallelMs = Math.min(parallelMs, performance.now() - t0);
      sink += sums.reduce((x, y) => x + y, 0);
    }
  } finally {
    for (const w of workers) w.terminate();
    URL.revokeObjectURL(url);
  }
  if (Number.isNaN(sink)) throw new Error("Cannot measure bandwidth: unreachable");

  const gbps = (ms: number): number => bytes / (ms * 1e6);
  const wasmGBps = gbps(wasmMs), lineGBps = gbps(lineMs), elementGBps = gbps(elementMs);
  const parallelGBps = gbps(parallelMs);
  const singleGBps = Math.max(wasmGBps, lineGBps, elementGBps);
  return {
    bytes,
    runs,
    wasmGBps,
    lineGBps,
    elementGBps,
    parallelGBps,
    threads,
    singleGBps,
    peakGBps: Math.max(singleGBps, parallelGBps),
  };
}

/**
 * The roofline time of a memory-bound kernel: the bytes it must read divided
 * by the measured bandwidth.
 *
 * @param bytes Bytes read.
 * @param gbps Bandwidth in GB/s (1e9 bytes/s).
 * @returns Milliseconds.
 */
export function rooflineMs(bytes: number, gbps: number): number {
  return bytes / (gbps * 1e6);
}
