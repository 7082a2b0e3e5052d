import { test } from "node:test";
import assert from "node:assert/strict";
import { KEY_HELP, actionFor, classOfKey } from "../src/keys.js";

test("digits label with classes 1..10 on the map and set the class in the grid", () => {
  assert.deepEqual(actionFor({ key: "3" }), { action: "label", classId: 2 });
  assert.deepEqual(actionFor({ key: "0" }), { action: "label", classId: 9 });
  assert.deepEqual(actionFor({ key: "3" }, { gridOpen: true }), { action: "gridClass", classId: 2 });
  assert.equal(classOfKey("x"), -1);
});

test("Enter accepts on the map but commits in the grid; Escape cancels there", () => {
  assert.equal(actionFor({ key: "Enter" }).action, "accept");
  assert.equal(actionFor({ key: "Enter" }, { gridOpen: true }).action, "gridCommit");
  assert.equal(actionFor({ key: "Escape" }, { gridOpen: true }).action, "gridEscape");
});

test("modifier keys are the notebook's, never ours", () => {
  assert.equal(actionFor({ key: "c", ctrlKey: true }), null);
  assert.equal(actionFor({ key: "1", metaKey: true }), null);
});

test("the ? list names every key the handler knows", () => {
  const listed = KEY_HELP.map(([k]) => k).join(" | ");
  for (const [key, words] of [["u", "u"], [" ", "Space"], ["ArrowRight", "→"], ["a", "a or Enter"], ["n", "n"],
    ["Backspace", "Backspace"], ["c", "c"], ["f", "f"], ["z", "z"], ["Escape", "Escape"], ["?", "?"]]) {
    assert.ok(actionFor({ key }), `${key} does something`);
    assert.ok(listed.includes(words), `${words} is in the key list`);
  }
  for (const key of ["ArrowUp", "ArrowDown", " ", "Enter", "Escape"]) {
    assert.ok(actionFor({ key }, { gridOpen: true }), `${key} works in the grid`);
  }
  assert.ok(KEY_HELP.some(([k, , where]) => where === "grid" && k.includes("↑")));
});

test("with the key list open, ? and Escape close it", () => {
  assert.equal(actionFor({ key: "Escape" }, { helpOpen: true }).action, "help");
  assert.equal(actionFor({ key: "?" }, { helpOpen: true, gridOpen: true }).action, "help");
});
