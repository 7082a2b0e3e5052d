import { test } from "node:test";
import assert from "node:assert/strict";
import { basePointSize, batchMask, categoryOf, encodingProps, fillPoints } from "../src/encoding.js";

const theme = { dark: false, background: [1, 1, 1, 1], unlabelled: [0.5, 0.5, 0.5, 0.4], accent: [0, 0, 1, 1], hover: [0, 0, 0, 1] };

function state() {
  return {
    x: Float32Array.of(0, 1, 2, 3), y: Float32Array.of(0, 0, 0, 0),
    label: Int16Array.of(-1, 1, -1, -1), flags: Uint8Array.of(0, 0, 1, 0),
    pred: Int16Array.of(0, 1, 1, -1), uncert: Uint8Array.of(0, 255, 128, 0),
  };
}

test("categories: class + K * block (answered, batch); predictions only when asked", () => {
  const s = state();
  const K = 3; // two classes + none
  const inBatch = batchMask(4, [0, 1]);
  assert.equal(categoryOf(s, 0, inBatch[0], true, K), 1 + K * 2, "open batch point in its predicted colour");
  assert.equal(categoryOf(s, 0, inBatch[0], false, K), 0 + K * 2, "by label: open points have no class colour");
  assert.equal(categoryOf(s, 1, inBatch[1], true, K), 2 + K * 3, "labelled batch point");
  assert.equal(categoryOf(s, 2, inBatch[2], true, K), 2 + K * 1, "unsure: answered block");
  assert.equal(categoryOf(s, 3, inBatch[3], true, K), 0, "no prediction: grey");
});

test("colour tables: class colours in the class modes, a ramp for uncertainty; sizes grow by block", () => {
  const byClass = encodingProps(3, 1000, theme, "prediction");
  assert.equal(byClass.colorBy, "valueA");
  assert.equal(byClass.pointColor.length, 12);
  assert.ok(byClass.pointColor[1][3] < byClass.pointColor[3 + 1][3], "open points are faded");
  const unc = encodingProps(3, 1000, theme, "uncertainty");
  assert.equal(unc.colorBy, "valueB");
  assert.ok(unc.pointColor.length >= 16);
  assert.ok(byClass.pointSize[0] < byClass.pointSize[3] && byClass.pointSize[3] < byClass.pointSize[6]);
  assert.ok(basePointSize(1e6) < basePointSize(1000));
});

test("fillPoints reuses arrays and writes the look of the shown point", () => {
  const s = state();
  const pts = [];
  const drawn = Int32Array.of(0, 3);
  const shown = Int32Array.of(1, 3); // slot 0 shows point 1 (its cell's winner)
  fillPoints(pts, s, { drawn, shown, inBatch: batchMask(4, []), byPred: true, K: 3, coords: true });
  assert.deepEqual(pts[0].slice(0, 2), [0, 0], "position of the drawn point");
  assert.equal(pts[0][2], 2 + 3, "look of the shown (labelled) point");
  assert.equal(pts[0][3], 1);
  const same = pts[1];
  fillPoints(pts, s, { drawn, shown, inBatch: batchMask(4, [3]), byPred: true, K: 3, coords: false });
  assert.equal(pts[1], same, "no new arrays when only looks change");
  assert.equal(pts.length, 2);
});
