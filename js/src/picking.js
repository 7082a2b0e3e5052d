// Which point a click means. Ringed batch points sit in dense clusters (they are the typical
// images), so the point under the cursor is often a neighbour: a click prefers the nearest
// ringed point within a tolerance of the cursor, and only otherwise takes what the map picked.

/** Ring radius and click tolerance (px) for the map's base point size. */
export function ringRadius(basePointSize) {
  return basePointSize + 6;
}

export function clickTolerance(basePointSize) {
  return ringRadius(basePointSize) + 3;
}

/**
 * The ringed point a click at `cursor` [x, y] selects, or -1.
 * @param {Array<{index: number, x: number, y: number}>} rings screen positions of ringed points
 */
export function pickRinged(cursor, rings, tolerance) {
  let best = -1;
  let bestD = tolerance * tolerance;
  for (const r of rings) {
    const dx = r.x - cursor[0];
    const dy = r.y - cursor[1];
    const d = dx * dx + dy * dy;
    if (d <= bestD) {
      bestD = d;
      best = r.index;
    }
  }
  return best;
}

/** Path length of a pointer drag [[x, y], ...]: a drag longer than a few px is never a click. */
export function pathLength(points) {
  let len = 0;
  for (let k = 1; k < points.length; k++) {
    len += Math.hypot(points[k][0] - points[k - 1][0], points[k][1] - points[k - 1][1]);
  }
  return len;
}

export const CLICK_MAX_PATH_PX = 8;

/**
 * Step the camera now, while no button is down, so that its next frame pans only by what the
 * pointer moves after the press. A change the step consumed (a wheel zoom, a programmatic view)
 * is set again so that the frame still redraws and reports it.
 * @param {{tick: () => boolean, view: Float32Array}} camera dom-2d-camera
 * @param {(view: Float32Array) => void} setView
 */
export function settleCamera(camera, setView) {
  if (camera && camera.tick()) setView(Float32Array.from(camera.view));
}
