// The map: regl-scatterplot drawing the store's points. It redraws only what changed (new
// coordinates, or new looks: labels, predictions, batch, colour mode), shares one frame between
// updates that arrive together, and above LOD_MIN_POINTS draws one point per occupied 2-px cell
// (software WebGL spends its frame on vertices: 1M points cost ~0.5-0.8 s a frame there).
import createScatterplot, { createRenderer } from "regl-scatterplot";
import { batchMask, basePointSize, encodingProps, fillPoints, priorityOf } from "./encoding.js";
import { bounds, cellWinners, padded, pointsInPolygon, representatives, toScreen, viewTransform } from "./lod.js";
import { effectiveColorBy } from "./updates.js";
import { dimOf } from "./find.js";
import { settleCamera } from "./picking.js";

export const LOD_MIN_POINTS = 250000;
const LOD_CELL_PX = 2;
const TRANSITION_MAX_POINTS = 200000;

/**
 * @param {object} o
 * @param {HTMLCanvasElement} o.canvas
 * @param {object} o.store
 * @param {object} o.theme colours (colors.js themeColors)
 * @param {object} o.events {hover(i), pick(i), lasso(indices, type), view(), painted(), error(text)}
 */
export function createMap({ canvas, width, height, store, theme, events }) {
  const renderer = createRenderer({ canvas: document.createElement("canvas") });
  // Our own renderer sized to the map: the default renders a window-sized buffer every frame.
  renderer.resize(width, height);
  const scatter = createScatterplot({
    renderer, canvas, width, height,
    backgroundColor: theme.background, pointColor: theme.unlabelled, pointColorActive: theme.accent,
    pointColorHover: theme.hover, pointSize: 5, pointOutlineWidth: 2, lassoColor: theme.accent,
    lassoInitiator: false, deselectOnDblClick: false, deselectOnEscape: false,
  });
  const m = {
    theme, width, height, drawn: null, shown: null, cellOf: null, lod: false, pts: [],
    coordsV: -1, lookKey: "", encodingKey: "", spatialIndex: null, drawing: false, pending: false, autoCamera: null,
    frame: null, paints: 0, ready: false, fitted: false, lassoing: false, lodTimer: null,
    updateT0: null, timings: { firstPaintMs: null, lastRecolourMs: null, buildMs: null, drawCallMs: null },
  };

  const pointOf = (slot) => (m.shown && slot >= 0 && slot < m.shown.length ? m.shown[slot] : -1);

  function transform() {
    return viewTransform(scatter.get("cameraView"), m.width, m.height);
  }

  function lookKey(s) {
    return [s.labelsV, s.modelV, s.batchV, effectiveColorBy(s), s.classes.length, m.theme.dark, s.findV].join("|");
  }

  function layout(s) {
    // Which points are drawn (all, or a representative per occupied cell) for these coordinates.
    m.lod = s.n >= LOD_MIN_POINTS;
    if (m.lod) {
      const r = representatives(s.x, s.y, transform(), m.width, m.height, LOD_CELL_PX);
      m.drawn = r.drawn;
      m.cellOf = r.cellOf;
    } else if (!m.drawn || m.drawn.length !== s.n || m.cellOf) {
      m.drawn = Int32Array.from({ length: s.n }, (_v, i) => i);
      m.cellOf = null;
    }
    m.pts = [];
    m.spatialIndex = null;
  }

  function applyEncoding(s, dim) {
    const K = s.classes.length + 1;
    const props = encodingProps(K, s.n, m.theme, effectiveColorBy(s), !!dim);
    const key = JSON.stringify(props);
    if (key !== m.encodingKey) {
      m.encodingKey = key; // set() rebuilds textures and costs a frame: only when it differs
      scatter.set(props);
    }
    return K;
  }

  function build(s, coords) {
    const dim = dimOf(s);
    const K = applyEncoding(s, dim);
    const inBatch = batchMask(s.n, s.batch);
    m.shown = m.lod ? cellWinners(m.drawn, m.cellOf, priorityOf(s, inBatch, dim)) : m.drawn;
    const byPred = effectiveColorBy(s) === "prediction";
    return fillPoints(m.pts, s, { drawn: m.drawn, shown: m.shown, inBatch, byPred, K, coords, dim });
  }

  function selectedSlots(s) {
    if (!s.selected.length || !m.drawn) return [];
    if (!m.lod) return s.selected;
    const slots = new Set();
    for (const i of s.selected) if (m.cellOf[i] >= 0) slots.add(m.cellOf[i]);
    return [...slots];
  }

  async function drawNow() {
    if (m.frame != null) {
      cancelAnimationFrame(m.frame);
      m.frame = null;
    }
    const s = store.state;
    if (!s.n || !s.x || !s.y) return;
    if (m.drawing) {
      m.pending = true;
      return;
    }
    m.drawing = true;
    try {
      const coords = s.coordsV !== m.coordsV || !m.drawn;
      if (coords) {
        // The first view spans the points; new coordinates (the UMAP layout replacing its preview)
        // are fitted again unless the user has moved the camera since the last automatic fit.
        if (!m.fitted || (m.drawn && untouched())) fit(false);
        layout(s);
      }
      const opts = { zDataType: "categorical", wDataType: "continuous", preventFilterReset: true };
      const sel = selectedSlots(s);
      if (sel.length) opts.select = sel;
      if (!coords && m.spatialIndex) opts.spatialIndex = m.spatialIndex;
      if (coords && m.paints > 0 && !m.lod && s.n <= TRANSITION_MAX_POINTS) {
        opts.transition = true;
        opts.transitionDuration = 400;
      }
      const tb = performance.now();
      const pts = build(s, coords);
      const td = performance.now();
      m.coordsV = s.coordsV;
      m.lookKey = lookKey(s);
      await scatter.draw(pts, opts);
      m.timings.buildMs = td - tb;
      m.timings.drawCallMs = performance.now() - td;
      m.spatialIndex = scatter.get("spatialIndex");
      if (!m.pending) painted(performance.now()); // a newer update waiting is counted with its own frame
      events.view();
    } catch (err) {
      events.error(`map: ${err && err.message ? err.message : err}`);
    } finally {
      m.drawing = false;
    }
    if (m.pending) {
      m.pending = false;
      drawNow();
    }
  }

  function painted(now) {
    if (!m.ready) {
      m.ready = true;
      m.timings.firstPaintMs = m.updateT0 != null ? now - m.updateT0 : null;
    }
    if (m.updateT0 != null) {
      m.timings.lastRecolourMs = now - m.updateT0;
      m.updateT0 = null;
      m.paints += 1;
    }
    events.painted();
  }

  /** Draw at the next animation frame, so updates arriving together share one frame. */
  function drawSoon() {
    if (m.frame == null) m.frame = requestAnimationFrame(() => drawNow());
  }

  /** Called on every store change: redraw when the points or their looks changed. */
  function sync(s, prev, { soon = false } = {}) {
    const needs = s.coordsV !== m.coordsV || lookKey(s) !== m.lookKey;
    const selection = prev && prev.selected !== s.selected;
    if (needs) {
      if (m.updateT0 == null) m.updateT0 = performance.now();
      soon ? drawSoon() : drawNow();
    } else if (selection && m.drawn) {
      const sel = selectedSlots(s);
      if (sel.length) scatter.select(sel, { preventEvent: true });
      else scatter.deselect({ preventEvent: true });
    }
  }

  function cameraNow() {
    return [...scatter.get("cameraTarget"), Number(scatter.get("cameraDistance"))];
  }

  /** True while the camera is where the last automatic fit put it (the user has not moved it). */
  function untouched() {
    const now = cameraNow();
    return !!m.autoCamera && now.every((v, k) => Math.abs(v - m.autoCamera[k]) < 1e-9);
  }

  function fit(transition = true) {
    const s = store.state;
    if (!s.x) return;
    const box = bounds(s.x, s.y);
    if (!box) return;
    m.fitted = true;
    scatter.zoomToArea(padded(box), transition ? { transition: true, transitionDuration: 300 } : {});
    m.autoCamera = transition ? null : cameraNow(); // lookAt is immediate without a transition
  }

  function zoomTo(indices) {
    const s = store.state;
    const box = s.x && indices.length ? bounds(s.x, s.y, indices) : null;
    if (box) scatter.zoomToArea(padded(box, 0.5, 0.08), { transition: true, transitionDuration: 300 });
    return !!box;
  }

  // ------------------------------------------------------------------ events from the map
  // dom-2d-camera pans, once per frame, by the pointer's move since the previous frame while the
  // button is down. A pointer that jumps and presses within one frame (a tap, a quick hand on a
  // busy machine) would pan the map by the whole jump, and the click or lasso would miss: take the
  // camera's frame step before the press (pointerdown comes before the camera's mousedown).
  const onPress = () => settleCamera(scatter.get("camera"), (view) => scatter.view(view));
  canvas.addEventListener("pointerdown", onPress, { capture: true });
  scatter.subscribe("pointOver", (slot) => events.hover(pointOf(slot)));
  scatter.subscribe("pointOut", () => events.hover(-1));
  scatter.subscribe("lassoStart", () => {
    m.lassoing = true;
  });
  scatter.subscribe("select", ({ points }) => {
    if (!m.lassoing && points.length === 1) events.pick(pointOf(points[0]));
  });
  scatter.subscribe("lassoEnd", ({ coordinates }) => {
    m.lassoing = false;
    const s = store.state;
    const flat = [];
    for (const [a, b] of coordinates || []) flat.push(a, b);
    const inside = s.x ? pointsInPolygon(s.x, s.y, flat) : [];
    scatter.deselect({ preventEvent: true }); // the store's selection is drawn on the next sync
    events.lasso(inside, scatter.get("lassoType"));
  });
  scatter.subscribe("view", () => {
    events.view();
    if (m.lod) {
      clearTimeout(m.lodTimer); // re-pick the drawn points once the camera rests
      m.lodTimer = setTimeout(() => {
        m.coordsV = -1;
        m.updateT0 = performance.now();
        drawNow();
      }, 200);
    }
  });
  scatter.subscribe("transitionEnd", () => events.view());

  return {
    scatter,
    sync,
    drawNow,
    fit,
    zoomTo,
    pointOf,
    /** Viewport-free position of point i on the canvas (CSS px), or null. */
    screenPosition(i) {
      const s = store.state;
      if (!s.x || !(i >= 0 && i < s.n)) return null;
      return toScreen(transform(), s.x[i], s.y[i]);
    },
    /** Every point's canvas position at once (for hit tests over many points). */
    transform,
    resize(w, h) {
      if (w === m.width && h === m.height) return;
      const refit = !m.ready || untouched(); // the automatic fit follows the size until the user moves
      m.width = w;
      m.height = h;
      renderer.resize(w, h);
      // regl-scatterplot takes the new aspect ratio at its next frame (set() resolves then): fit
      // after that, or the view keeps the old proportions (points spanning ~80 % of the canvas).
      const sized = Promise.resolve(scatter.set({ width: w, height: h }));
      if (refit) {
        m.fitted = false;
        sized.then(() => { if (m.width === w && m.height === h) fit(false); });
      }
      if (m.lod) m.coordsV = -1;
    },
    setTheme(theme) {
      m.theme = theme;
      m.encodingKey = "";
      m.lookKey = "";
      scatter.set({ backgroundColor: theme.background, lassoColor: theme.accent });
    },
    setMode(mode) {
      if (mode === "pan") scatter.set({ mouseMode: "panZoom", lassoType: "freeform" });
      else scatter.set({ mouseMode: "lasso", lassoType: mode === "box" ? "rectangle" : "freeform" });
    },
    markUpdate(t0) {
      if (m.updateT0 == null) m.updateT0 = t0;
    },
    camera: () => ({ target: Array.from(scatter.get("cameraTarget")), distance: Number(scatter.get("cameraDistance")) }),
    basePointSize: () => basePointSize(store.state.n),
    get timings() {
      return { ...m.timings, drawn: m.drawn ? m.drawn.length : 0, lod: m.lod };
    },
    get paints() {
      return m.paints;
    },
    get ready() {
      return m.ready;
    },
    destroy() {
      canvas.removeEventListener("pointerdown", onPress, { capture: true });
      clearTimeout(m.lodTimer);
      if (m.frame != null) cancelAnimationFrame(m.frame);
      scatter.destroy();
      renderer.destroy();
    },
  };
}
