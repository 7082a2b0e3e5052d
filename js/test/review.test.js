import { test } from "node:test";
import assert from "node:assert/strict";
import {
  applyClassKey, classOf, clearFocus, commitPlan, createReview, moveFocus, setOwnClass, summary, toggle, visibleRange,
} from "../src/review.js";

const CLASSES = ["T-shirt", "Trouser", "Pullover", "Bag"];

test("a lasso of N, 2 left out, one class key: the commit labels N - 2 with that class", () => {
  const N = 12;
  let r = createReview({ source: "lasso", indices: Array.from({ length: N }, (_v, k) => 100 + k) });
  assert.equal(summary(r, CLASSES).ready, false, "no class chosen yet: nothing to commit");
  r = toggle(r, 3);
  r = toggle(r, 7);
  r = applyClassKey(r, 2);
  const plan = commitPlan(r);
  assert.equal(plan.kept, N - 2);
  assert.deepEqual([...plan.groups.keys()], [2]);
  assert.equal(plan.groups.get(2).length, N - 2);
  assert.ok(!plan.groups.get(2).includes(103) && !plan.groups.get(2).includes(107));
  assert.deepEqual(summary(r, CLASSES), { ready: true, text: `Label ${N - 2} of ${N} image(s) as Pullover` });
});

test("toggling twice takes an image back", () => {
  let r = createReview({ source: "box", indices: [1, 2, 3] });
  r = toggle(toggle(r, 1), 1);
  assert.equal(commitPlan(applyClassKey(r, 0)).kept, 3);
});

test("a focused card takes the number key alone; the others keep the group's class", () => {
  let r = createReview({ source: "lasso", indices: [5, 6, 7, 8] });
  r = applyClassKey(r, 0);
  r = moveFocus(r, 1, 0, 4); // first press focuses card 0
  r = moveFocus(r, 1, 0, 4); // then card 1
  r = applyClassKey(r, 3);
  r = clearFocus(r);
  assert.deepEqual([0, 1, 2, 3].map((k) => classOf(r, k)), [0, 3, 0, 0]);
  const plan = commitPlan(r);
  assert.deepEqual(plan.groups.get(3), [6]);
  assert.deepEqual(plan.groups.get(0), [5, 7, 8]);
  assert.match(summary(r, CLASSES).text, /Label 4 image\(s\): 3 T-shirt, 1 Bag/);
});

test("accepting the batch proposes each prediction; a relabel and a left-out image are honoured", () => {
  let r = createReview({ source: "accept", indices: [40, 41, 42], proposed: [3, 3, 1], conf: [0.9, 0.6, 0.8] });
  assert.equal(summary(r, CLASSES).ready, true);
  r = setOwnClass(r, 1, 0);
  r = toggle(r, 2);
  const plan = commitPlan(r);
  assert.deepEqual(plan.groups.get(3), [40]);
  assert.deepEqual(plan.groups.get(0), [41]);
  assert.equal(plan.groups.has(1), false);
  assert.equal(plan.excluded, 1);
});

test("an image with no class blocks the commit, and the summary says how many", () => {
  let r = createReview({ source: "accept", indices: [1, 2], proposed: [0, -1] });
  assert.deepEqual(commitPlan(r).missing, 1);
  assert.match(summary(r, CLASSES).text, /1 image\(s\) still have no class/);
  r = toggle(r, 1);
  assert.equal(summary(r, CLASSES).ready, true);
});

test("everything left out: nothing to commit", () => {
  const r = toggle(createReview({ source: "lasso", indices: [9] }), 0);
  assert.equal(summary(r, CLASSES).ready, false);
  assert.equal(commitPlan(r).kept, 0);
});

test("focus moves in rows and stays inside the grid", () => {
  let r = createReview({ source: "lasso", indices: Array.from({ length: 10 }, (_v, k) => k) });
  r = moveFocus(r, 0, 1, 4);
  assert.equal(r.focus, 0);
  r = moveFocus(r, 0, 1, 4);
  assert.equal(r.focus, 4);
  r = moveFocus(r, 0, 5, 4);
  assert.equal(r.focus, 9);
  r = moveFocus(r, -20, 0, 4);
  assert.equal(r.focus, 0);
});

test("the virtual window covers the visible rows plus overscan, for thousands of images", () => {
  const w = visibleRange({ scrollTop: 0, viewport: 400, rowHeight: 100, count: 5000, cols: 8, overscan: 1 });
  assert.deepEqual([w.first, w.last, w.rows], [0, 5 * 8, 625]);
  const mid = visibleRange({ scrollTop: 25000, viewport: 400, rowHeight: 100, count: 5000, cols: 8, overscan: 1 });
  assert.equal(mid.first, 249 * 8);
  assert.equal(mid.last, 255 * 8);
  const end = visibleRange({ scrollTop: 62300, viewport: 400, rowHeight: 100, count: 5000, cols: 8, overscan: 2 });
  assert.equal(end.last, 5000);
  assert.ok(mid.last - mid.first <= 64, "only a few rows exist in the DOM");
});
