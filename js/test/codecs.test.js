import { test } from "node:test";
import assert from "node:assert/strict";
import { ArrayAssembler, toTyped } from "../src/codecs.js";
import { view } from "./fake-model.js";

test("chunks of one version assemble into one typed array, in any order", () => {
  const a = new ArrayAssembler();
  const full = Float32Array.from({ length: 10 }, (_v, i) => i * 0.5);
  a.add({ version: 3, name: "x", dtype: "float32", total: 10, offset: 6 }, view(full.subarray(6)));
  a.add({ version: 3, name: "x", dtype: "float32", total: 10, offset: 0 }, view(full.subarray(0, 6)));
  const got = a.take(3);
  assert.deepEqual(Array.from(got.get("x")), Array.from(full));
});

test("take() forgets the version and older ones, keeps newer ones", () => {
  const a = new ArrayAssembler();
  a.add({ version: 1, name: "batch", dtype: "int32", total: 2, offset: 0 }, view(Int32Array.of(4, 5)));
  a.add({ version: 2, name: "batch", dtype: "int32", total: 1, offset: 0 }, view(Int32Array.of(9)));
  a.add({ version: 3, name: "pred", dtype: "int16", total: 1, offset: 0 }, view(Int16Array.of(2)));
  assert.deepEqual(Array.from(a.take(2).get("batch")), [9]);
  assert.equal(a.take(1).size, 0, "version 1 was dropped with 2");
  assert.deepEqual(Array.from(a.take(3).get("pred")), [2]);
});

test("an unaligned buffer is copied, not misread", () => {
  const bytes = new Uint8Array(9);
  new DataView(bytes.buffer).setInt32(1, 123456, true);
  new DataView(bytes.buffer).setInt32(5, -7, true);
  const got = toTyped(new DataView(bytes.buffer, 1, 8), "int32");
  assert.deepEqual(Array.from(got), [123456, -7]);
});

test("an unknown dtype is refused with its name", () => {
  assert.throws(() => toTyped(new DataView(new ArrayBuffer(8)), "int64"), /int64/);
});
