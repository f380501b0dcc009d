import assert from "node:assert/strict";
import { test } from "node:test";
import { ModelRuntimeError } from "./errors.ts";
import { Rng } from "./rng.ts";
import { floatToHalf, halfToFloat, parseSafetensors, serializeSafetensors } from "./safetensors.ts";

test("f32 round-trips bit for bit, header is 8-byte aligned", () => {
  const data = new Rng(3).fillUniform(new Float32Array(6 * 5), 2);
  const bytes = serializeSafetensors({
    w: { shape: [6, 5], data },
    b: { shape: [3], data: Float32Array.of(1, 2, 3) },
  });
  const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(headerLen % 8, 0);
  const file = parseSafetensors(bytes);
  assert.deepEqual(file.tensors.get("w")?.shape, [6, 5]);
  assert.deepEqual(file.tensors.get("w")?.data, data);
  assert.deepEqual([...(file.tensors.get("b")?.data ?? [])], [1, 2, 3]);
});

test("f16 and bf16 are widened to f32 on load", () => {
  const values = Float32Array.of(0, 1, -2.5, 0.333, 65504, 1e-6, -0.0001);
  for (const dtype of ["F16", "BF16"] as const) {
    const file = parseSafetensors(serializeSafetensors({ x: { shape: [7], data: values } }, { dtype }));
    const got = file.tensors.get("x")!.data;
    const tol = dtype === "F16" ? 1e-3 : 8e-3;
    values.forEach((v, i) => {
      assert.ok(Math.abs(got[i]! - v) <= tol * Math.max(1, Math.abs(v)), `${dtype} ${v} -> ${got[i]}`);
    });
  }
  // exact known encodings
  assert.equal(floatToHalf(1), 0x3c00);
  assert.equal(halfToFloat(0xc000), -2);
  assert.equal(halfToFloat(0x7bff), 65504);
});

test("corrupt files are rejected with SAFETENSORS_INVALID", () => {
  const bytes = serializeSafetensors({ w: { shape: [4], data: new Float32Array(4) } });
  assert.throws(
    () => parseSafetensors(bytes.subarray(0, bytes.length - 4)),
    (e: unknown) => e instanceof ModelRuntimeError && e.code === "SAFETENSORS_INVALID",
  );
  assert.throws(() => parseSafetensors(new Uint8Array(3)), ModelRuntimeError);
});

test("lazy reading gives the same tensors as reading the whole file, from disk on each access", async () => {
  const { mkdtemp, rm, writeFile } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const { readSafetensors, readSafetensorsLazy } = await import("./safetensors.ts");
  const dir = await mkdtemp(join(tmpdir(), "st-lazy-"));
  try {
    const rng = new Rng(9);
    const tensors = {
      a: { shape: [4, 6], data: rng.fillUniform(new Float32Array(24), 1) },
      b: { shape: [5], data: rng.fillUniform(new Float32Array(5), 1) },
    };
    for (const dtype of ["F32", "BF16"] as const) {
      const path = join(dir, `${dtype}.safetensors`);
      await writeFile(path, serializeSafetensors(tensors, { dtype, metadata: { format: "pt" } }));
      const eager = await readSafetensors(path);
      const lazy = await readSafetensorsLazy(path);
      assert.deepEqual(lazy.metadata, { format: "pt" });
      for (const name of ["a", "b"]) {
        assert.deepEqual(lazy.tensors.get(name)!.shape, eager.tensors.get(name)!.shape);
        assert.deepEqual(lazy.tensors.get(name)!.data, eager.tensors.get(name)!.data);
        // Not cached: each access is a fresh array read from the file.
        assert.notEqual(lazy.tensors.get(name)!.data, lazy.tensors.get(name)!.data);
      }
    }
    await writeFile(join(dir, "bad.safetensors"), Uint8Array.of(255, 255, 0, 0, 0, 0, 0, 0, 1));
    await assert.rejects(readSafetensorsLazy(join(dir, "bad.safetensors")), ModelRuntimeError);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
