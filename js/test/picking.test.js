import { test } from "node:test";
import assert from "node:assert/strict";
import { clickTolerance, pathLength, pickRinged, ringRadius } from "../src/picking.js";

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
