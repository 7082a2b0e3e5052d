import { test } from "node:test";
import assert from "node:assert/strict";
import { categoryOf, encodingProps, priorityOf } from "../src/encoding.js";
import { FIND_UPDATES, dimMask, dimOf, filterIntent, findInitial, handleFind, resultsReview, similarRows,
  unpackBits } from "../src/find.js";
import { createConnection } from "../src/protocol.js";
import { commitPlan, summary } from "../src/review.js";
import { createStore } from "../src/store.js";
import { UPDATES, initialState } from "../src/updates.js";
import { fakeModel } from "./fake-model.js";

function setup(n = 10) {
  const store = createStore({ ...initialState(), ...findInitial() }, { ...UPDATES, ...FIND_UPDATES });
  store.dispatch("classes", ["a", "b"]);
  store.dispatch("arrays", { reset: true, n, version: 1, arrays: new Map([
    ["x", new Float32Array(n)], ["y", new Float32Array(n)]]) });
  return store;
}

/** numpy.packbits(keep, bitorder="little") */
function pack(keep) {
  const out = new Uint8Array(Math.ceil(keep.length / 8));
  keep.forEach((v, i) => { if (v) out[i >> 3] |= 1 << (i & 7); });
  return out;
}

test("the filter's bits unpack to one flag per point, little bit order as numpy packs them", () => {
  const keep = [1, 0, 0, 1, 1, 0, 1, 0, 0, 1, 1];
  assert.deepEqual(Array.from(unpackBits(pack(keep), keep.length)), keep);
  assert.deepEqual(Array.from(unpackBits(pack(keep).buffer, 3)), [1, 0, 0]);
});

test("dimmed: what the filter leaves out and, while results are shown, everything else", () => {
  assert.equal(dimMask(4, null, null), null);
  assert.deepEqual(Array.from(dimMask(4, Uint8Array.of(1, 1, 0, 1), null)), [0, 0, 1, 0]);
  assert.deepEqual(Array.from(dimMask(4, Uint8Array.of(1, 1, 0, 1), [1, 2])), [1, 0, 1, 1]);
});

test("a found message highlights its results and opens them in the grid, answered ones left out", () => {
  const store = setup();
  store.dispatch("labels", { idx: Int32Array.of(4), cls: Int16Array.of(1), flags: null });
  const opened = [];
  const idx = Int32Array.of(7, 4, 2);
  const handled = handleFind(store, { type: "found", source: "search", query: "a red dress", message: "3 items",
    count: 3 }, [idx.buffer, Float32Array.of(0.3, 0.2, 0.1).buffer], { openGrid: (r) => opened.push(r) });
  assert.ok(handled);
  const s = store.state;
  assert.deepEqual(Array.from(s.find.results), [7, 4, 2]);
  assert.equal(dimOf(s).reduce((a, b) => a + b, 0), 7, "all but the three results are dimmed");
  assert.equal(s.find.shown, 3);
  assert.equal(opened.length, 1);
  const r = opened[0];
  assert.equal(r.title, "“a red dress”");
  assert.deepEqual(Array.from(r.indices), [7, 4, 2], "rank order");
  assert.deepEqual(Array.from(r.included), [1, 0, 1], "the labelled image starts left out");
  // a number key then Enter labels the rest as one group
  const plan = commitPlan({ ...r, groupClass: 0 });
  assert.deepEqual([...plan.groups], [[0, [7, 2]]]);
  assert.match(summary({ ...r, groupClass: 0 }, ["a", "b"]).text, /Label 2 of 3 image\(s\) as a/);
  // a view opened later: highlighted, the grid stays closed
  handleFind(store, { type: "found", source: "similar", open: false, message: "" }, [Int32Array.of(1).buffer],
    { openGrid: (x) => opened.push(x) });
  assert.equal(opened.length, 1);
  store.dispatch("findDropResults");
  assert.equal(dimOf(store.state), null);
});

test("a near-duplicate group whose labelled members agree proposes their class for the rest", () => {
  const store = setup();
  store.dispatch("labels", { idx: Int32Array.of(3), cls: Int16Array.of(1), flags: null });
  const r = resultsReview(store.state, { indices: [3, 5, 6], source: "duplicates" });
  assert.equal(r.title, "Near-duplicates");
  assert.match(summary(r, ["a", "b"]).text, /Label 3 image\(s\) as b/);
  store.dispatch("labels", { idx: Int32Array.of(5), cls: Int16Array.of(0), flags: null });
  const mixed = resultsReview(store.state, { indices: [3, 5, 6], source: "duplicates" });
  assert.deepEqual(Array.from(mixed.included), [0, 0, 1], "disagreeing labels: nothing proposed, answered left out");
});

test("filter messages set the mask; a stale one of another size draws nothing", () => {
  const store = setup(10);
  const keep = [1, 1, 0, 0, 1, 1, 1, 1, 1, 1];
  handleFind(store, { type: "filter", n_points: 10, active: true, message: "8 of 10 items shown: unlabelled." },
    [pack(keep)], {});
  assert.deepEqual(Array.from(dimOf(store.state)), keep.map((v) => 1 - v));
  assert.equal(store.state.find.filterMessage, "8 of 10 items shown: unlabelled.");
  handleFind(store, { type: "filter", n_points: 10, active: false, message: "" }, [pack(new Array(10).fill(1))], {});
  assert.equal(dimOf(store.state), null);
  handleFind(store, { type: "filter", n_points: 99, active: true, message: "" }, [pack(new Array(99).fill(0))], {});
  assert.equal(dimOf(store.state), null);
});

test("a refused find request shows its sentence in the find bar; others pass by", () => {
  const store = setup();
  const mine = (r) => r === 5;
  assert.ok(handleFind(store, { type: "ack", request: 5, ok: false, error: "Text search is off: ..." }, [], { mine }));
  assert.equal(store.state.find.error, "Text search is off: ...");
  assert.equal(handleFind(store, { type: "ack", request: 6, ok: false, error: "x" }, [], { mine }), false);
});

test("the filter intent from the bar's controls, and bad ranges refused in words", () => {
  assert.deepEqual(filterIntent({ predicted: -1, lo: "", hi: "", labelled: "any", name: "" }), { type: "filter" });
  assert.deepEqual(filterIntent({ predicted: 1, lo: "0.5", hi: "", labelled: "unlabelled", name: " cat ",
    duplicates: true, outliers: 100 }), { type: "filter", predicted: [1], uncertainty: [0.5, 1], labelled: false,
    name: "cat", duplicates: true, outliers: 100 });
  assert.match(filterIntent({ lo: "0.9", hi: "0.1" }).error, /low ≤ high/);
  assert.match(filterIntent({ lo: "2" }).error, /0 \(sure\) to 1/);
});

test("more like this starts from the grid's kept images, else the selection, else the hovered point", () => {
  const store = setup();
  assert.deepEqual(similarRows(store.state), []);
  store.dispatch("hover", 3);
  assert.deepEqual(similarRows(store.state), [3]);
  store.dispatch("select", { indices: [1, 2] });
  assert.deepEqual(similarRows(store.state), [1, 2]);
  const r = resultsReview(store.state, { indices: [5, 6, 7], source: "similar" });
  r.included[1] = 0;
  store.dispatch("openReview", r);
  assert.deepEqual(similarRows(store.state), [5, 7]);
});

test("dimmed points get a fifth block, small and faint, and lose every level-of-detail contest", () => {
  const s = { label: Int16Array.of(-1, 0), flags: Uint8Array.of(0, 0), pred: Int16Array.of(1, 0) };
  const K = 3;
  const dim = Uint8Array.of(1, 0);
  assert.equal(categoryOf(s, 0, 1, true, K, dim), 2 + K * 4);
  assert.equal(categoryOf(s, 1, 0, true, K, dim), 1 + K * 1);
  const theme = { dark: false, background: [1, 1, 1, 1], unlabelled: [0.5, 0.5, 0.5, 0.4], accent: [0, 0, 1, 1],
    hover: [0, 0, 0, 1] };
  const props = encodingProps(K, 100, theme, "prediction", true);
  assert.equal(props.pointColor.length, 5 * K);
  assert.ok(props.pointColor[4 * K + 1][3] < props.pointColor[1][3]);
  assert.ok(props.pointSize[4 * K] < props.pointSize[0]);
  assert.equal(encodingProps(K, 100, theme, "prediction").pointColor.length, 4 * K, "no filter: four blocks");
  const unc = encodingProps(K, 100, theme, "uncertainty", true);
  assert.equal(unc.opacityBy, "valueA");
  assert.ok(unc.opacity[4 * K] < unc.opacity[0]);
  const prio = priorityOf(s, Uint8Array.of(1, 0), dim);
  assert.ok(prio(0) < prio(1), "a dimmed batch point yields its cell");
});

test("the find intents travel with request ids through the connection", () => {
  const model = fakeModel();
  const store = setup();
  const conn = createConnection({ model, store });
  const { content, buffers } = conn.withIndices({ type: "similar", k: 100 }, [3]);
  assert.ok(conn.send(content, { buffers }) > 0);
  assert.deepEqual(model.sent[0].content, { type: "similar", k: 100, indices: [3], request: 1 });
});
