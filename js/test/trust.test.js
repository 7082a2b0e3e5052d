import { test } from "node:test";
import assert from "node:assert/strict";
import { createActions } from "../src/actions.js";
import { createConnection } from "../src/protocol.js";
import { commitPlan, setOwnClass, applyClassKey, summary, toggle } from "../src/review.js";
import { createStore } from "../src/store.js";
import { buttonStates, createTrust, isTestRequest, recheckReview, trustOf } from "../src/trust.js";
import { UPDATES, initialState } from "../src/updates.js";
import { fakeModel } from "./fake-model.js";

const CLASSES = ["T-shirt", "Trouser", "Bag"];
const ITEMS = [
  { index: 40, name: "a.png", label: "Bag", suggested: "Trouser", score: 0.2, flagged: true },
  { index: 41, name: "b.png", label: "Trouser", suggested: "Trouser", score: 0.4, flagged: false },
  { index: 42, name: "c.png", label: "T-shirt", suggested: "Bag", score: 0.5, flagged: false },
];

function setup(trust = {}) {
  const model = fakeModel();
  const store = createStore(initialState(), UPDATES);
  store.dispatch("classes", CLASSES);
  store.dispatch("status", { trust });
  store.dispatch("arrays", { reset: true, n: 50, version: 1, arrays: new Map([
    ["x", new Float32Array(50)], ["y", new Float32Array(50)], ["batch", Int32Array.from([3, 7, 9])]]) });
  const conn = createConnection({ model, store });
  const map = { fit() {}, zoomTo: () => true, markUpdate() {}, setMode() {} };
  const actions = createActions({ store, conn, map, thumbs: { name: (i) => `#${i}` }, model, gridCols: () => 4 });
  return { store, conn, model, actions, trust: createTrust({ store, conn }), sent: () => model.sent.map((m) => m.content) };
}

test("test requests are the kernel's list; nothing is a test before the first status", () => {
  const { store } = setup({ on: true, tests: [7] });
  assert.equal(isTestRequest(store.state, 7), true);
  assert.equal(isTestRequest(store.state, 3), false);
  assert.equal(isTestRequest(initialState(), 7), false);
  assert.deepEqual(trustOf(initialState()), {});
});

test("the toggle sends check_model with the opposite of the kernel's switch and says what tests are", () => {
  const off = setup({ on: false });
  off.trust.toggleCheck();
  assert.deepEqual(off.sent().map(({ type, on }) => [type, on]), [["check_model", true]]);
  assert.match(off.store.state.notice.text, /measure it and never train it/);
  const on = setup({ on: true });
  on.trust.toggleCheck();
  assert.equal(on.sent()[0].on, false);
  const b = buttonStates(on.store.state);
  assert.equal(b.check.pressed, true);
  assert.match(buttonStates(off.store.state).check.title, /never train/);
});

test("Re-check is refused with the kernel's reason until it is available, then asks for 20", () => {
  const no = setup({ can_recheck: false, recheck_reason: "Re-check needs at least 2 labels in each of 2 classes" });
  no.trust.recheck();
  assert.deepEqual(no.sent(), []);
  assert.match(no.store.state.notice.text, /needs at least 2 labels/);
  assert.equal(buttonStates(no.store.state).recheck.disabled, true);
  const yes = setup({ can_recheck: true });
  yes.trust.recheck();
  assert.deepEqual(yes.sent().map(({ type, k }) => [type, k]), [["recheck", 20]]);
});

test("the answer opens a grid that keeps every label; Enter without a change sends nothing", () => {
  const { store, trust, actions, sent } = setup({ can_recheck: true });
  trust.onRecheck({ type: "recheck", items: ITEMS });
  const r = store.state.review;
  assert.equal(r.source, "recheck");
  assert.deepEqual(Array.from(r.indices), [40, 41, 42]);
  assert.deepEqual(Array.from(r.current), [2, 1, 0]);
  assert.equal(r.notes[0], "suggested: Trouser");
  assert.equal(r.notes[1], "suggested: same, unsure");
  const s = summary(r, CLASSES);
  assert.equal(s.ready, false);
  assert.match(s.text, /Nothing relabelled: every label stays/);
  assert.equal(commitPlan(r).groups.size, 0);
  actions.gridCommit();
  assert.deepEqual(sent(), [], "no automatic relabelling");
  assert.equal(store.state.review, null);
  assert.match(store.state.notice.text, /every label stays/);
});

test("a relabelled card goes through the normal label path; the others are not touched", () => {
  const { store, trust, actions, sent } = setup({ can_recheck: true });
  trust.onRecheck({ type: "recheck", items: ITEMS });
  store.dispatch("openReview", setOwnClass(store.state.review, 0, 1));
  assert.match(summary(store.state.review, CLASSES).text, /^Relabel 1 image\(s\) as Trouser; the others keep/);
  actions.gridCommit();
  const [msg] = sent();
  assert.equal(msg.type, "label_groups");
  assert.deepEqual(msg.groups, [{ class: 1, indices: [40] }]);
});

test("a class key for every card relabels only those whose label differs; a left-out card is kept", () => {
  const r = toggle(applyClassKey(recheckReview(ITEMS, CLASSES), 1), 2);
  const plan = commitPlan(r);
  assert.deepEqual([...plan.groups.entries()], [[1, [40]]]);
  assert.equal(plan.unchanged, 1);
  assert.equal(plan.excluded, 1);
});

test("an error or an empty answer says so and opens nothing; unknown classes are left out", () => {
  const { store, trust } = setup();
  trust.onRecheck({ type: "recheck", items: [], error: "Re-check failed: boom" });
  assert.equal(store.state.review, null);
  assert.match(store.state.notice.text, /boom/);
  trust.onRecheck({ type: "recheck", items: [] });
  assert.match(store.state.notice.text, /No label stands out/);
  assert.equal(recheckReview([{ index: 1, label: "gone", suggested: "Bag" }], CLASSES), null);
});
