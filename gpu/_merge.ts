// Copyright 2026 the longctx authors. MIT license.

/**
 * Encoding the merge kernel (private): the reduce step shared by
 * `mergeStatesWebGpu`, split-K decode, multi-segment prefill and sparse attend.
 *
 * @module
 */

import type { GpuCommand, GpuContext } from "./device.ts";
import { grid2d } from "./_wgsl/common.ts";
import { MERGE_PARAMS, mergeWgsl } from "./_wgsl/merge.ts";

/** Threads per workgroup of the merge kernel. */
const MERGE_WORKGROUP = 64;

/** What {@linkcode mergeCommands} merges . */
export interface MergeJob {
  /** Stacked input outputs, f32 rows of `headDim`. */
  inOut: GPUBuffer;
  /** Stacked input lse, one f32 (bits) per row. */
  inLse: GPUBuffer;
  /** Result outputs (row `r` at `r · headDim`). */
  out: GPUBuffer;
  /** Result lse. */
  lse: GPUBuffer;
  /** Head dimension. */
  headDim: number;
  /** Result rows (or plan entries). */
  rows: number;
  /** Strided mode: inputs per row. */
  count?: number;
  /** Strided mode: input rows between a result row's inputs. */
  inStride?: number;
  /** Planned mode: `(outRow, base, stride, count)` per result row. */
  plan?: GPUBuffer;
  /** Pooled temporaries are pushed here for release after submission. */
  release: GPUBuffer[];
}

/**
 * Commands of one merge dispatch (strided, or planned when `job.plan` is
 * given); the caller submits them, after the commands that fill the inputs.
 */
export function mergeCommands(gpu: GpuContext, job: MergeJob): GpuCommand[] {
  if (job.rows === 0) return [];
  const planned = job.plan !== undefined;
  const pipeline = gpu.pipeline(
    "merge-states",
    { headDim: job.headDim, workgroupSize: MERGE_WORKGROUP, planned },
    mergeWgsl,
  );
  const u = gpu.uniform(MERGE_PARAMS.pack({
    rows: job.rows,
    count: job.count ?? 0,
    inStride: job.inStride ?? 0,
    pad0: 0,
  }));
  job.release.push(u);
  const bindings = [u, job.inOut, job.inLse, job.out, job.lse];
  if (job.plan !== undefined) bindings.push(job.plan);
  return [{
    kind: "dispatch",
    pipeline,
    bindings,
    workgroups: grid2d(job.rows, gpu.limits.maxComputeWorkgroupsPerDimension),
  }];
}
