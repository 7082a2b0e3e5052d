import { test } from "node:test";
import assert from "node:assert/strict";
import { createConnection } from "../src/protocol.js";
import { createStore } from "../src/store.js";
import { UPDATES, initialState } from "../src/updates.js";
import { fakeKernel, fakeModel, view } from "./fake-model.js";

function setup(opts = {}) {
  const model = fakeModel({}, opts);
  const store = createStore(initialState(), UPDATES);
  const got = { thumbs: [], proposals: [] };
  const conn = createConnection({ model, store, onThumbs: (c) => got.thumbs.push(c), onProposal: (c) => got.proposals.push(c) });
  return { model, store, conn, got };
}

function reset(conn, n) {
  const x = Float32Array.from({ length: n }, (_v, i) => i);
  conn.handle({ type: "array", version: 1, name: "x", dtype: "float32", total: n, offset: 0 }, [view(x)]);
  conn.handle({ type: "array", version: 1, name: "y", dtype: "float32", total: n, offset: 0 }, [view(x)]);
  conn.handle({ type: "array", version: 1, name: "batch", dtype: "int32", total: 2, offset: 0 }, [view(Int32Array.of(2, 4))]);
  return conn.handle({ type: "commit", version: 1, names: ["x", "y", "batch"], n_points: n, reset: true }, []);
}

test("arrays arrive in chunks and apply together at their commit", () => {
  const { conn, store } = setup();
  assert.equal(reset(conn, 5), "reset");
  assert.equal(store.state.n, 5);
  assert.deepEqual(Array.from(store.state.batch), [2, 4]);
  assert.equal(store.state.x[3], 3);
});

test("every intent gets a request id; a pending answer clears when its labels arrive", () => {
  const { conn, store, model } = setup();
  reset(conn, 5);
  const id = conn.send({ type: "label", indices: [2], class: 0 }, { pending: { text: "#2 → a", indices: [2] } });
  assert.ok(id > 0);
  assert.equal(model.sent.at(-1).content.request, id);
  assert.equal(store.state.pending.length, 1);
  conn.handle({ type: "labels", version: 2, request: id }, [view(Int32Array.of(2)), view(Int16Array.of(0)), view(Uint8Array.of(0))]);
  assert.equal(store.state.pending.length, 0);
  assert.equal(store.state.label[2], 0);
});

test("big selections travel as one Int32Array buffer", () => {
  const { conn } = setup();
  const small = conn.withIndices({ class: 1 }, [1, 2]);
  assert.deepEqual(small.content.indices, [1, 2]);
  const many = Array.from({ length: 1000 }, (_v, i) => i);
  const big = conn.withIndices({ class: 1 }, many);
  assert.equal(big.content.indices, undefined);
  assert.equal(big.buffers[0].byteLength, 4000);
});

test("a closed comm greys the view: later sends are refused and say so; pending answers stay listed", () => {
  const { conn, store, model } = setup();
  reset(conn, 5);
  conn.watch();
  conn.send({ type: "label", indices: [2], class: 0 }, { pending: { text: "#2 → a", indices: [2] } });
  model.trigger("comm:close");
  assert.equal(store.state.connection.state, "disconnected");
  const before = model.sent.length;
  assert.equal(conn.send({ type: "label", indices: [4], class: 0 }), 0);
  assert.equal(model.sent.length, before, "nothing was sent");
  assert.match(store.state.notice.text, /Not sent: disconnected — run the cell again/);
  assert.equal(store.state.pending.length, 1, "the unacknowledged label is still shown");
});

test("a kernel that dies or restarts disconnects the view", () => {
  const kernel = fakeKernel("idle");
  const { conn, store } = setup({ kernel });
  const stop = conn.watch();
  kernel.emit("busy");
  assert.equal(store.state.connection.state, "connected");
  kernel.emit("autorestarting");
  assert.equal(store.state.connection.state, "disconnected");
  assert.match(store.state.connection.reason, /restarted/);
  stop();
});

test("comm_live going false with a dead kernel disconnects; with a live kernel it does not", () => {
  const kernel = fakeKernel("idle");
  const { conn, store, model } = setup({ kernel });
  conn.watch();
  model.trigger("comm_live_update");
  assert.equal(store.state.connection.state, "connected");
  kernel.status = "dead";
  model.trigger("comm_live_update");
  assert.equal(store.state.connection.state, "disconnected");
});

test("a send that throws is a disconnection, not a lost message", () => {
  const { conn, store } = setup({ sendThrows: "Kernel is dead" });
  assert.equal(conn.send({ type: "undo" }, { pending: { text: "undo" } }), 0);
  assert.equal(store.state.connection.state, "disconnected");
  assert.match(store.state.connection.reason, /Kernel is dead/);
  assert.equal(store.state.pending.length, 1);
});

test("a widget replaced by a newer one refuses input with the kernel's sentence, but still draws", () => {
  const { conn, store, model } = setup();
  store.dispatch("status", { closed_reason: "this session was closed: a newer Session took over labels.sqlite" });
  assert.equal(conn.send({ type: "undo" }), 0);
  assert.match(store.state.notice.text, /a newer Session took over/);
  assert.ok(conn.send({ type: "hello" }) > 0, "a reloaded page of the old view still gets its map");
  assert.ok(conn.send({ type: "thumbs", indices: [1] }) > 0);
  assert.deepEqual(model.sent.map((m) => m.content.type), ["hello", "thumbs"]);
});

test("thumbs, proposals and acks are routed", () => {
  const { conn, got, store } = setup();
  conn.handle({ type: "thumbs", items: [] }, []);
  conn.handle({ type: "proposal", items: [{ index: 1 }] }, []);
  store.dispatch("pending", { request: 9, text: "x", time: 0 });
  conn.handle({ type: "ack", request: 9, ok: true }, []);
  assert.equal(got.thumbs.length, 1);
  assert.equal(got.proposals.length, 1);
  assert.equal(store.state.pending.length, 0);
  assert.equal(conn.handle({ type: "later" }, []), "unknown");
});
