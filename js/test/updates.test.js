import { test } from "node:test";
import assert from "node:assert/strict";
import { createStore } from "../src/store.js";
import { UPDATES, effectiveColorBy, initialState, nextOpenPos } from "../src/updates.js";

function loaded(n = 6, batch = [1, 3, 5]) {
  const store = createStore(initialState(), UPDATES);
  store.dispatch("arrays", { reset: true, n, version: 1, arrays: new Map([
    ["x", new Float32Array(n)], ["y", new Float32Array(n)], ["batch", Int32Array.from(batch)]]) });
  return store;
}

test("named updates notify listeners with the name and the previous state", () => {
  const store = loaded();
  const seen = [];
  store.subscribe((s, name, prev) => seen.push([name, prev.hovered, s.hovered]));
  store.dispatch("hover", 4);
  store.dispatch("hover", 4); // unchanged: no notification
  assert.deepEqual(seen, [["hover", -1, 4]]);
  assert.throws(() => store.dispatch("nope"), /unknown update/);
});

test("a reset sizes every per-point array; a stale array of another size is ignored", () => {
  const store = loaded(6);
  const s = store.state;
  assert.equal(s.label.length, 6);
  assert.ok(s.label.every((v) => v === -1));
  store.dispatch("arrays", { reset: false, n: 6, version: 2, arrays: new Map([["pred", new Int16Array(3)]]) });
  assert.equal(store.state.pred.length, 6);
  assert.equal(store.state.modelV, s.modelV);
});

test("label deltas copy the array (old states stay as they were) and acknowledge their request", () => {
  const store = loaded();
  store.dispatch("pending", { request: 7, text: "#1 → Bag", indices: [1], time: 0 });
  const before = store.state.label;
  store.dispatch("labels", { idx: Int32Array.of(1), cls: Int16Array.of(2), flags: Uint8Array.of(0), request: 7 });
  assert.equal(before[1], -1);
  assert.equal(store.state.label[1], 2);
  assert.equal(store.state.pending.length, 0);
});

test("a refused request leaves a notice saying why", () => {
  const store = loaded();
  store.dispatch("pending", { request: 3, text: "x", time: 0 });
  store.dispatch("ack", { request: 3, ok: false, error: "unknown class 'cat'" });
  assert.equal(store.state.notice.text, "unknown class 'cat'");
  assert.equal(store.state.pending.length, 0);
});

test("the focused card stays on its image when the batch changes around it", () => {
  const store = loaded(8, [1, 3, 5]);
  store.dispatch("focusCard", 1);
  assert.deepEqual(store.state.selected, [3]);
  store.dispatch("arrays", { reset: false, n: 8, version: 2, arrays: new Map([["batch", Int32Array.of(7, 3, 5)]]) });
  assert.equal(store.state.focusPos, 1);
  assert.deepEqual(store.state.selected, [3]);
});

test("when the focused card leaves the batch the next open card is selected", () => {
  const store = loaded(8, [1, 3, 5]);
  store.dispatch("focusCard", 1);
  store.dispatch("labels", { idx: Int32Array.of(3), cls: Int16Array.of(0), flags: null });
  store.dispatch("arrays", { reset: false, n: 8, version: 2, arrays: new Map([["batch", Int32Array.of(1, 6, 5)]]) });
  assert.equal(store.state.focusPos, 0);
  assert.deepEqual(store.state.selected, [1]);
});

test("next open card skips answered, unsure and pending images", () => {
  const store = loaded(8, [1, 3, 5, 6]);
  store.dispatch("labels", { idx: Int32Array.of(3, 5), cls: Int16Array.of(0, -1), flags: Uint8Array.of(0, 1) });
  store.dispatch("pending", { request: 1, text: "x", indices: [6], time: 0 });
  assert.equal(nextOpenPos(store.state, 1), 0);
  assert.equal(nextOpenPos(store.state, 1, 1), -1);
});

test("a dead connection stays dead (a new kernel does not have this widget)", () => {
  const store = loaded();
  store.dispatch("connection", { connected: false, reason: "the kernel died" });
  store.dispatch("connection", { connected: true });
  assert.equal(store.state.connection.state, "disconnected");
});

test("colour by prediction falls back to labels until a model on two classes exists", () => {
  const store = loaded();
  assert.equal(effectiveColorBy(store.state), "label");
  store.dispatch("status", { has_model: true });
  assert.equal(effectiveColorBy(store.state), "prediction");
  store.dispatch("colorBy", "uncertainty");
  assert.equal(effectiveColorBy(store.state), "uncertainty");
  store.dispatch("colorBy", "rainbow");
  assert.equal(store.state.colorBy, "uncertainty");
});
