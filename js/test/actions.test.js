import { test } from "node:test";
import assert from "node:assert/strict";
import { createActions } from "../src/actions.js";
import { createConnection } from "../src/protocol.js";
import { createStore } from "../src/store.js";
import { UPDATES, initialState } from "../src/updates.js";
import { fakeModel } from "./fake-model.js";

function setup({ n = 8, batch = [1, 3, 5], classes = ["a", "b", "c"], status = {} } = {}) {
  const model = fakeModel();
  const store = createStore(initialState(), UPDATES);
  store.dispatch("classes", classes);
  store.dispatch("status", status);
  store.dispatch("arrays", { reset: true, n, version: 1, arrays: new Map([
    ["x", new Float32Array(n)], ["y", new Float32Array(n)], ["batch", Int32Array.from(batch)]]) });
  const conn = createConnection({ model, store });
  const map = { fit() {}, zoomTo: (idx) => idx.length > 0, markUpdate() {}, setMode() {} };
  const thumbs = { name: (i) => `img${i}.png` };
  const actions = createActions({ store, conn, map, thumbs, model, gridCols: () => 4 });
  const sent = () => model.sent.map((m) => m.content);
  return { store, actions, sent, model, conn };
}

test("a number key with nothing selected sends nothing and says why", () => {
  const { actions, sent, store } = setup();
  actions.label(0);
  assert.deepEqual(sent(), []);
  assert.match(store.state.notice.text, /Nothing selected/);
});

test("labelling a focused card sends it, lists it as pending and moves to the next open card", () => {
  const { actions, sent, store } = setup();
  store.dispatch("focusCard", 0);
  actions.label(1);
  assert.deepEqual(sent().map(({ type, indices, class: c }) => [type, indices, c]), [["label", [1], 1]]);
  assert.equal(store.state.pending.length, 1);
  assert.match(store.state.pending[0].text, /img1.png → b/);
  assert.deepEqual(store.state.selected, [3]);
  assert.equal(store.state.focusPos, 1);
});

test("a key for a class that does not exist says so", () => {
  const { actions, sent, store } = setup({ classes: ["a"] });
  store.dispatch("focusCard", 0);
  actions.label(4);
  assert.deepEqual(sent(), []);
  assert.match(store.state.notice.text, /No class on key 5/);
});

test("skip and unsure answer the selected image", () => {
  const { actions, sent, store } = setup();
  store.dispatch("focusCard", 2);
  actions.skip();
  store.dispatch("focusCard", 0);
  actions.unsure();
  assert.deepEqual(sent().map((m) => [m.type, m.indices]), [["skip", [5]], ["unsure", [1]]]);
});

test("accepting the batch is refused with the kernel's reason until it is available", () => {
  const { actions, sent, store } = setup({ status: { can_accept: false, accept_reason: "needs labels in 2 classes" } });
  actions.accept();
  assert.deepEqual(sent(), []);
  assert.equal(store.state.notice.text, "needs labels in 2 classes");
});

test("accepting asks for a proposal; the proposal opens the grid with predictions and confidences", () => {
  const { actions, sent, store } = setup({ status: { can_accept: true } });
  actions.accept();
  assert.equal(sent()[0].type, "propose_batch");
  actions.proposal({ items: [{ index: 1, pred: "c", conf: 0.8 }, { index: 3, pred: "a", conf: 0.55 }] });
  const r = store.state.review;
  assert.equal(r.source, "accept");
  assert.deepEqual(Array.from(r.proposed), [2, 0]);
  assert.ok(Math.abs(r.conf[0] - 0.8) < 1e-6);
});

test("a lasso opens the grid; leaving 2 of N out and committing labels N - 2 in one message", () => {
  const { actions, sent, store } = setup({ n: 20 });
  const inside = [2, 4, 6, 8, 10, 12];
  actions.lasso(inside, "freeform");
  assert.equal(store.state.review.indices.length, 6);
  actions.toggleCard(1);
  actions.toggleCard(4);
  actions.gridCommit();
  assert.deepEqual(sent(), [], "no class chosen: nothing sent");
  assert.match(store.state.notice.text, /Choose a class first/);
  actions.gridClass(2);
  actions.gridCommit();
  const msg = sent()[0];
  assert.equal(msg.type, "label_groups");
  assert.deepEqual(msg.groups, [{ class: 2, indices: [2, 6, 8, 12] }]);
  assert.equal(store.state.review, null, "the grid closes");
  assert.equal(store.state.pending[0].indices.length, 4);
});

test("huge grids travel as buffers, one per class", () => {
  const { actions, model } = setup({ n: 3000 });
  actions.lasso(Array.from({ length: 2000 }, (_v, i) => i), "rectangle");
  actions.gridClass(0);
  actions.gridCommit();
  const { content, buffers } = model.sent[0];
  assert.deepEqual(content.groups, [{ class: 0, buffer: 0 }]);
  assert.equal(buffers[0].byteLength, 2000 * 4);
  assert.equal(content.source, "box");
});

test("a lasso that caught one image selects it; none says so", () => {
  const { actions, store } = setup();
  actions.lasso([4], "freeform");
  assert.deepEqual(store.state.selected, [4]);
  assert.equal(store.state.review, null);
  actions.lasso([], "freeform");
  assert.match(store.state.notice.text, /caught no images/);
});

test("Escape in the grid drops the card focus first, then cancels", () => {
  const { actions, store } = setup();
  actions.lasso([1, 2, 3], "freeform");
  actions.gridRight();
  assert.equal(store.state.review.focus, 0);
  actions.gridEscape();
  assert.equal(store.state.review.focus, -1);
  actions.gridEscape();
  assert.equal(store.state.review, null);
});

test("after the kernel is gone every answer is refused visibly, selection or not", () => {
  const { actions, store, conn, sent } = setup();
  conn.disconnect("the kernel died");
  actions.label(0);
  assert.match(store.state.notice.text, /Not sent: disconnected — run the cell again/);
  store.dispatch("focusCard", 0);
  actions.skip();
  actions.accept();
  assert.deepEqual(sent(), []);
});

test("next and previous walk the open cards", () => {
  const { actions, store } = setup();
  store.dispatch("labels", { idx: Int32Array.of(3), cls: Int16Array.of(0), flags: null });
  actions.next();
  assert.equal(store.state.focusPos, 0);
  actions.next();
  assert.equal(store.state.focusPos, 2, "the answered card is skipped");
  actions.prev();
  assert.equal(store.state.focusPos, 0);
});

test("colour modes cycle and sync to the kernel's trait", () => {
  const { actions, store, model } = setup();
  actions.cycleColor();
  assert.equal(store.state.colorBy, "uncertainty");
  assert.equal(model.get("color_by"), "uncertainty");
  assert.equal(model.saved, 1);
});

test("the images answered unsure open in the grid to get a class", () => {
  const { actions, store, sent } = setup({ n: 10 });
  actions.reviewUnsure();
  assert.match(store.state.notice.text, /No image is answered unsure/);
  store.dispatch("labels", { idx: Int32Array.of(2, 7), cls: Int16Array.of(-1, -1), flags: Uint8Array.of(1, 1) });
  actions.reviewUnsure();
  assert.equal(store.state.review.source, "unsure");
  assert.deepEqual(Array.from(store.state.review.indices), [2, 7]);
  actions.gridClass(1);
  actions.gridCommit();
  assert.deepEqual(sent()[0].groups, [{ class: 1, indices: [2, 7] }]);
});
