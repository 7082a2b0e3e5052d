// Geometry of the map, pure: data -> screen transform from regl-scatterplot's camera, fitting
// bounds, point-in-lasso tests over all points, and the level of detail used for big maps
// (one drawn point per occupied screen cell; software WebGL spends its frame on vertices).

/**
 * The data -> screen (CSS px) transform of regl-scatterplot: screen = projection * view * model.
 * view: the camera's 4x4 column-major matrix; width/height: the canvas size in CSS px.
 * Returns {ax, bx, cx, ay, by, cy}: sx = ax*x + bx*y + cx, sy = ay*x + by*y + cy.
 */
export function viewTransform(view, width, height, dataAspect = 1) {
  const aspect = width / height;
  // clip x = (v0*x*da + v4*y + v12) / aspect, clip y = v1*x*da + v5*y + v13
  const kx = width / 2 / aspect;
  const ky = -height / 2;
  return {
    ax: view[0] * dataAspect * kx,
    bx: view[4] * kx,
    cx: view[12] * kx + width / 2,
    ay: view[1] * dataAspect * ky,
    by: view[5] * ky,
    cy: view[13] * ky + height / 2,
  };
}

export function toScreen(t, x, y) {
  return [t.ax * x + t.bx * y + t.cx, t.ay * x + t.by * y + t.cy];
}

/** Bounding box {x, y, width, height} of the given points (all when `indices` is null). */
export function bounds(x, y, indices = null) {
  let x0 = Infinity;
  let x1 = -Infinity;
  let y0 = Infinity;
  let y1 = -Infinity;
  const count = indices ? indices.length : x.length;
  for (let k = 0; k < count; k++) {
    const i = indices ? indices[k] : k;
    const a = x[i];
    const b = y[i];
    if (a < x0) x0 = a;
    if (a > x1) x1 = a;
    if (b < y0) y0 = b;
    if (b > y1) y1 = b;
  }
  if (!(x1 >= x0)) return null;
  return { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
}

/** The rectangle to zoom to for `box` with `pad` (a fraction) around it, never degenerate. */
export function padded(box, pad = 0.06, min = 0.05) {
  const w = Math.max(box.width, min);
  const hgt = Math.max(box.height, min);
  const cx = box.x + box.width / 2;
  const cy = box.y + box.height / 2;
  return { x: cx - (w * (1 + pad)) / 2, y: cy - (hgt * (1 + pad)) / 2, width: w * (1 + pad), height: hgt * (1 + pad) };
}

/** Indices of the points inside a polygon (flat [x0, y0, x1, y1, ...] in data coordinates). */
export function pointsInPolygon(x, y, poly) {
  const m = poly.length / 2;
  if (m < 3) return [];
  let x0 = Infinity;
  let x1 = -Infinity;
  let y0 = Infinity;
  let y1 = -Infinity;
  for (let k = 0; k < m; k++) {
    x0 = Math.min(x0, poly[2 * k]);
    x1 = Math.max(x1, poly[2 * k]);
    y0 = Math.min(y0, poly[2 * k + 1]);
    y1 = Math.max(y1, poly[2 * k + 1]);
  }
  const out = [];
  for (let i = 0; i < x.length; i++) {
    const px = x[i];
    const py = y[i];
    if (px < x0 || px > x1 || py < y0 || py > y1) continue;
    let inside = false; // even-odd rule
    for (let a = 0, b = m - 1; a < m; b = a++) {
      const ya = poly[2 * a + 1];
      const yb = poly[2 * b + 1];
      if (ya > py !== yb > py) {
        const xa = poly[2 * a];
        const xb = poly[2 * b];
        if (px < ((xb - xa) * (py - ya)) / (yb - ya) + xa) inside = !inside;
      }
    }
    if (inside) out.push(i);
  }
  return out;
}

/**
 * Level of detail: one representative per occupied `cell` x `cell` px screen cell, over the view
 * and one view size of margin around it (so a pan shows points until the next update).
 * Points off that area are left out. Returns {drawn: Int32Array (sorted point indices),
 * cellOf: Int32Array (N,) the drawn slot of each point's cell, -1 outside}.
 */
export function representatives(x, y, t, width, height, cell = 2) {
  const cols = Math.ceil((3 * width) / cell);
  const rows = Math.ceil((3 * height) / cell);
  const slot = new Int32Array(cols * rows).fill(-1);
  const cellOf = new Int32Array(x.length).fill(-1);
  const drawn = [];
  for (let i = 0; i < x.length; i++) {
    const sx = t.ax * x[i] + t.bx * y[i] + t.cx + width;
    const sy = t.ay * x[i] + t.by * y[i] + t.cy + height;
    const c = Math.floor(sx / cell);
    const r = Math.floor(sy / cell);
    if (c < 0 || r < 0 || c >= cols || r >= rows) continue;
    const key = r * cols + c;
    let s = slot[key];
    if (s < 0) {
      s = drawn.length;
      slot[key] = s;
      drawn.push(i);
    }
    cellOf[i] = s;
  }
  return { drawn: Int32Array.from(drawn), cellOf };
}

/**
 * Per drawn slot, the point whose look it shows: the one with the highest priority (ties: the
 * higher index, which the full map would draw on top). priority(i) -> number.
 */
export function cellWinners(drawn, cellOf, priority) {
  const best = Int32Array.from(drawn);
  const bestP = new Float64Array(drawn.length);
  for (let s = 0; s < drawn.length; s++) bestP[s] = priority(drawn[s]);
  for (let i = 0; i < cellOf.length; i++) {
    const s = cellOf[i];
    if (s < 0 || best[s] === i) continue;
    const p = priority(i);
    if (p > bestP[s] || (p === bestP[s] && i > best[s])) {
      best[s] = i;
      bestP[s] = p;
    }
  }
  return best;
}
