import { test } from "node:test";
import assert from "node:assert/strict";
import { clickTolerance, pathLength, pickRinged, ringRadius, settleCamera } from "../src/picking.js";

const rings = [
  { index: 10, x: 100, y: 100 },
  { index: 11, x: 130, y: 100 },
];

test("a click near a ring selects that ringed point, even with neighbours under the cursor", () => {
  // the cursor is 5 px off the ring's centre, where another (unringed) point is drawn
  assert.equal(pickRinged([104, 103], rings, clickTolerance(4)), 10);
});

test("between two rings the nearer one wins", () => {
  assert.equal(pickRinged([118, 100], rings, 15), 11);
  assert.equal(pickRinged([112, 100], rings, 15), 10);
});

test("outside the tolerance nothing is preferred (the map's own pick stands)", () => {
  assert.equal(pickRinged([100, 125], rings, clickTolerance(4)), -1);
  assert.equal(pickRinged([0, 0], [], 20), -1);
});

test("the tolerance covers the ring drawn around the point", () => {
  assert.ok(clickTolerance(3) > ringRadius(3));
});

test("path length adds the segments of a drag", () => {
  assert.equal(pathLength([[0, 0], [3, 4], [3, 10]]), 11);
  assert.equal(pathLength([[5, 5]]), 0);
});

// dom-2d-camera's step: while the button is down, pan by the pointer's move since the last step
function fakeCamera() {
  const c = { mouse: 0, prev: 0, pressed: false, pan: 0, pending: false, view: new Float32Array(16) };
  c.tick = () => {
    if (c.pressed) c.pan += c.mouse - c.prev;
    c.prev = c.mouse;
    const changed = c.pending;
    c.pending = false;
    return changed;
  };
  return c;
}

test("a pointer that jumps and presses within one frame does not pan the map", () => {
  const press = (settle) => {
    const c = fakeCamera();
    c.mouse = 300; // moved from 0 to 300 px, no frame since
    if (settle) settleCamera(c, () => {});
    c.pressed = true; // the camera's mousedown
    c.tick(); // the next frame, button still down
    return c.pan;
  };
  assert.equal(press(false), 300, "the fake reproduces the camera's jump");
  assert.equal(press(true), 0);
});

test("a view change the early step consumed is set again for the frame", () => {
  const c = fakeCamera();
  c.pending = true;
  const set = [];
  settleCamera(c, (v) => set.push(v));
  assert.equal(set.length, 1);
  c.pending = false;
  settleCamera(c, (v) => set.push(v));
  assert.equal(set.length, 1, "no change, nothing set");
  settleCamera(null, () => set.push(0)); // before the map has a camera
  assert.equal(set.length, 1);
});

