// Copyright 2026 the longctx authors. MIT license.

/**
 * Host-side helpers the kernels share (private): how an operand is read,
 * shape checks of GPU tensors, binding-size checks.
 *
 * @module
 */

import { describeValue } from "../tensor/validate.ts";
import type { GpuContext } from "./device.ts";
import type { GpuDType, GpuTensor } from "./tensor.ts";
import { requireContiguous } from "./tensor.ts";
import type { WgslStorage } from "./_wgsl/common.ts";

/** How kernels read a float dtype on this device: native f16 needs `shader-f16`. */
export function storageOf(gpu: GpuContext, dtype: GpuDType): WgslStorage {
  if (dtype === "f16") return gpu.features.shaderF16 ? "f16" : "f16-packed";
  return "f32";
}

/** Checks a contiguous f32/f16 GPU tensor of shape `[tokens, heads, headDim]`. */
export function requireGpuThd(action: string, name: string, t: GpuTensor): void {
  requireContiguous(action, name, t);
  if (t.shape.length !== 3) {
    throw new TypeError(
      `Cannot ${action}: ${name} must have shape [tokens, heads, headDim], got shape ${
        describeValue(t.shape)
      }`,
    );
  }
  if (t.dtype !== "f32" && t.dtype !== "f16") {
    throw new TypeError(
      `Cannot ${action}: ${name} dtype must be "f32" or "f16", got ${describeValue(t.dtype)}`,
    );
  }
}

/** Checks that a buffer can be bound whole as one storage binding. */
export function requireBindable(
  gpu: GpuContext,
  action: string,
  name: string,
  buffer: GPUBuffer,
): void {
  const limit = gpu.limits.maxStorageBufferBindingSize;
  if (buffer.size > limit) {
    throw new RangeError(
      `Cannot ${action}: ${name} needs a ${buffer.size}-byte binding, but maxStorageBufferBindingSize is ${limit} (keep large caches in a GpuKvStore, which splits pages across buffers)`,
    );
  }
}
