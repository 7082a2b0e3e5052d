import { test } from "node:test";
import assert from "node:assert/strict";
import { bounds, cellWinners, padded, pointsInPolygon, representatives, toScreen, viewTransform } from "../src/lod.js";

// gl-matrix column-major 2-D camera: scale s, translation (tx, ty)
const camera = (s, tx, ty) => [s, 0, 0, 0, 0, s, 0, 0, 0, 0, 1, 0, tx, ty, 0, 1];

test("the transform matches regl-scatterplot's projection * view * model", () => {
  const W = 800;
  const H = 400;
  const t = viewTransform(camera(2, 0.1, -0.2), W, H);
  const ref = (x, y) => {
    const cx = (2 * x + 0.1) / (W / H);
    const cy = 2 * y - 0.2;
    return [(W * (cx + 1)) / 2, H * (0.5 - cy / 2)];
  };
  for (const [x, y] of [[0, 0], [0.5, -0.25], [-1, 1]]) {
    const got = toScreen(t, x, y);
    const want = ref(x, y);
    assert.ok(Math.abs(got[0] - want[0]) < 1e-9 && Math.abs(got[1] - want[1]) < 1e-9, `${got} vs ${want}`);
  }
});

test("points in a polygon: a concave L shape, edges and outside", () => {
  const x = Float32Array.of(0.5, 1.5, 1.5, 0.5, 3, -1);
  const y = Float32Array.of(0.5, 0.5, 1.5, 1.5, 0.5, 0);
  // L: the unit squares (0..2, 0..1) and (0..1, 1..2)
  const L = [0, 0, 2, 0, 2, 1, 1, 1, 1, 2, 0, 2];
  assert.deepEqual(pointsInPolygon(x, y, L), [0, 1, 3]);
  assert.deepEqual(pointsInPolygon(x, y, [0, 0, 1, 1]), [], "fewer than 3 vertices select nothing");
});

test("bounds and padding never collapse to a point", () => {
  const b = bounds(Float32Array.of(0, 2, 1), Float32Array.of(1, 1, 3));
  assert.deepEqual(b, { x: 0, y: 1, width: 2, height: 2 });
  const one = padded(bounds(Float32Array.of(0.3), Float32Array.of(0.3)));
  assert.ok(one.width > 0 && one.height > 0);
  assert.equal(bounds(new Float32Array(0), new Float32Array(0)), null);
});

test("level of detail: one drawn point per occupied cell, the batch point shows through", () => {
  const W = 100;
  const H = 100;
  // identity-like camera: x in [-1, 1] spans the 100 px
  const t = viewTransform(camera(1, 0, 0), W, H);
  // three points in one 2-px cell near the centre, one far away
  const x = Float32Array.of(0, 0.001, 0.002, 0.6);
  const y = Float32Array.of(0, -0.001, -0.002, 0.6); // screen y grows downwards
  const { drawn, cellOf } = representatives(x, y, t, W, H, 2);
  assert.deepEqual(Array.from(drawn), [0, 3]);
  assert.deepEqual(Array.from(cellOf), [0, 0, 0, 1]);
  const inBatch = [0, 1, 0, 0];
  const winners = cellWinners(drawn, cellOf, (i) => (inBatch[i] ? 3 : 0));
  assert.deepEqual(Array.from(winners), [1, 3], "the batch point's look is drawn for its cell");
  const ties = cellWinners(drawn, cellOf, () => 0);
  assert.deepEqual(Array.from(ties), [2, 3], "ties: the higher index, as the full map draws it on top");
});

test("level of detail keeps a margin of one view around the canvas and drops the rest", () => {
  const t = viewTransform(camera(1, 0, 0), 100, 100);
  const x = Float32Array.of(0, 2.5, 3.5); // on screen, within one view to the right, beyond it
  const y = Float32Array.of(0, 0, 0);
  const { drawn, cellOf } = representatives(x, y, t, 100, 100, 2);
  assert.deepEqual(Array.from(drawn), [0, 1]);
  assert.equal(cellOf[2], -1);
});
