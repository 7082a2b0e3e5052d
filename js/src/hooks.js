// What tests and benchmarks read: the root's data-alw-* attributes and the `root.alw` API (no
// globals). docs/widget-protocol.md lists them.
import { effectiveColorBy } from "./updates.js";

export function publishDataset(root, s, map, conn) {
  const d = root.dataset;
  d.alwReady = map.ready ? "1" : "0";
  d.alwVersion = String(s.version);
  d.alwNPoints = String(s.n);
  let n = 0;
  if (s.label) for (const l of s.label) if (l >= 0) n += 1;
  d.alwNLabelled = String(n);
  d.alwBatch = Array.from(s.batch).join(",");
  d.alwCoords = (s.status || {}).coords || "";
  d.alwColorBy = s.colorBy;
  d.alwColorShown = effectiveColorBy(s);
  d.alwSelected = String(s.selected.length);
  d.alwPaints = String(map.paints);
  d.alwError = (s.status || {}).error || "";
  d.alwConnection = (s.status || {}).closed_reason ? "closed" : s.connection.state;
  d.alwReview = s.review ? String(s.review.indices.length) : "";
  d.alwPending = String(s.pending.length);
  d.alwNotice = s.notice.text;
  d.alwFocus = String(s.focusPos);
  d.alwLod = map.timings.lod ? "1" : "0";
  if (conn) d.alwBytes = String(conn.bytes);
}

export function testApi({ root, canvas, store, map, conn, actions, timings }) {
  const client = (p) => {
    if (!p) return null;
    const rect = canvas.getBoundingClientRect();
    return [rect.left + p[0], rect.top + p[1]];
  };
  return {
    screenPosition: (i) => client(map.screenPosition(i)),
    /** Every point's viewport position as a flat Float64Array [x0, y0, x1, y1, ...]. */
    screenPositions() {
      const s = store.state;
      const t = map.transform();
      const rect = canvas.getBoundingClientRect();
      const out = new Float64Array(2 * s.n);
      for (let i = 0; i < s.n; i++) {
        out[2 * i] = rect.left + t.ax * s.x[i] + t.bx * s.y[i] + t.cx;
        out[2 * i + 1] = rect.top + t.ay * s.x[i] + t.by * s.y[i] + t.cy;
      }
      return Array.from(out);
    },
    pointsInRect(x0, y0, x1, y1) {
      const out = [];
      const s = store.state;
      for (let i = 0; i < s.n; i++) {
        const p = client(map.screenPosition(i));
        if (p && p[0] >= Math.min(x0, x1) && p[0] <= Math.max(x0, x1) && p[1] >= Math.min(y0, y1) &&
            p[1] <= Math.max(y0, y1)) out.push(i);
      }
      return out;
    },
    select: (indices) => actions.select(indices),
    send: (content) => conn.send(content),
    camera: () => map.camera(),
    get timings() {
      return { ...timings, ...map.timings, bytes: conn.bytes };
    },
    state() {
      const s = store.state;
      return {
        nPoints: s.n, version: s.version, batch: Array.from(s.batch), selected: s.selected.slice(),
        colorBy: s.colorBy, colorShown: effectiveColorBy(s), labels: s.label ? Array.from(s.label) : null,
        flags: s.flags ? Array.from(s.flags) : null, focusPos: s.focusPos, pending: s.pending.length,
        connection: s.connection.state, notice: s.notice.text,
        review: s.review ? { source: s.review.source, count: s.review.indices.length,
          included: Array.from(s.review.included), indices: Array.from(s.review.indices) } : null,
      };
    },
  };
}
