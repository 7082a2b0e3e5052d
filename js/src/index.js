// alwidget front end: the labelling map as one anywidget module.
// The kernel owns all state (Session + store); this view renders it and sends
// intents. Protocol and DOM hooks: docs/widget-protocol.md.
import createScatterplot, { createRenderer } from "regl-scatterplot";
import css from "./style.css";
import { ArrayAssembler, toTyped } from "./codecs.js";
import { categoricalColors, uncertaintyRamp, themeColors } from "./colors.js";

const COLOR_MODES = ["label", "prediction", "uncertainty"];
const THUMB_CACHE_MAX = 3000;
const THUMB_REQUEST_MAX = 64;

function h(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v; // never innerHTML: names are untrusted
    else node.setAttribute(k, v);
  }
  for (const c of children) node.appendChild(c);
  return node;
}

function basePointSize(n) {
  if (n < 5000) return 6;
  if (n < 50000) return 4;
  if (n < 300000) return 3;
  return 2;
}

function render({ model, el }) {
  const t0 = performance.now();
  const disposers = [];
  const listen = (target, type, fn, opts) => {
    target.addEventListener(type, fn, opts);
    disposers.push(() => target.removeEventListener(type, fn, opts));
  };

  // ---------------------------------------------------------------- DOM
  el.classList.add("alw-host");
  const root = h("div", { class: "alw-root", tabindex: "0", "data-lm-suppress-shortcuts": "true" });
  root.appendChild(h("style", { text: css }));

  const colorSelect = h("select", { class: "alw-color-by", title: "Colour points by (key c)" });
  for (const [value, label] of [
    ["label", "Colour: given label"],
    ["prediction", "Colour: predicted class"],
    ["uncertainty", "Colour: uncertainty"],
  ]) {
    colorSelect.appendChild(h("option", { value, text: label }));
  }
  const modeButtons = {};
  for (const [mode, label, title] of [
    ["pan", "Pan", "Drag pans; shift+drag lassos"],
    ["lasso", "Lasso", "Drag draws a lasso"],
    ["box", "Box", "Drag draws a box"],
  ]) {
    modeButtons[mode] = h("button", { class: "alw-mode", "data-mode": mode, title, text: label });
  }
  const strategySelect = h("select", { class: "alw-strategy", title: "Active learning strategy" });
  const undoButton = h("button", { class: "alw-undo", title: "Undo the last label (Backspace)", text: "Undo" });
  const acceptButton = h("button", {
    class: "alw-accept",
    title: "Label the batch as predicted (Enter or a)",
    text: "Accept batch",
  });
  const skipButton = h("button", { class: "alw-skip", title: "Skip to the next batch item (Space)", text: "Skip" });
  const toolbar = h("div", { class: "alw-toolbar" }, [
    colorSelect,
    strategySelect,
    ...Object.values(modeButtons),
    undoButton,
    acceptButton,
    skipButton,
    h("span", {
      class: "alw-help",
      text: "1-9 label · Backspace undo · Space skip · Enter accept · shift+drag lasso",
    }),
  ]);

  const canvas = h("canvas", { class: "alw-canvas" });
  const svgNS = "http://www.w3.org/2000/svg";
  const rings = document.createElementNS(svgNS, "svg");
  rings.setAttribute("class", "alw-rings");
  const hoverBox = h("div", { class: "alw-hover" });
  const hoverImg = h("img", { alt: "" });
  const hoverName = h("div", { class: "alw-hover-name" });
  const hoverPred = h("div", { class: "alw-hover-pred" });
  hoverBox.append(hoverImg, hoverName, hoverPred);
  const confirmCount = h("span", { class: "alw-confirm-count" });
  const confirmText = h("span", { class: "alw-confirm-text" });
  const confirmBox = h("div", { class: "alw-confirm" }, [confirmCount, confirmText]);
  const mapBox = h("div", { class: "alw-map" }, [canvas, rings, hoverBox, confirmBox]);

  const legend = h("div", { class: "alw-legend" });
  const addInput = h("input", { type: "text", placeholder: "new class", "aria-label": "new class name" });
  const addButton = h("button", { text: "Add" });
  const addBox = h("div", { class: "alw-add-class" }, [addInput, addButton]);
  const side = h("div", { class: "alw-side" }, [legend, addBox]);
  const main = h("div", { class: "alw-main" }, [mapBox, side]);
  const gallery = h("div", { class: "alw-gallery", "aria-label": "batch to label" });
  const statusLine = h("div", { class: "alw-status" });
  const errorLine = h("div", { class: "alw-error", role: "alert" });
  root.append(toolbar, main, gallery, statusLine, errorLine);
  el.appendChild(root);

  // ---------------------------------------------------------------- state
  const S = {
    n: 0,
    version: -1,
    x: null,
    y: null,
    label: null,
    pred: null,
    uncert: null,
    batch: new Int32Array(0),
    selected: [],
    hovered: -1,
    focusPos: 0, // position in the batch of the focused gallery card
    colorBy: model.get("color_by") || "prediction",
    mode: "pan",
    coordsChanged: false,
    spatialIndex: null,
    drawing: false,
    drawPending: false,
    paints: 0,
    ready: false,
    bytes: 0,
    timings: { dataMs: null, firstPaintMs: null, lastRecolourMs: null, bytes: 0 },
    updateT0: null,
    encodingKey: null,
    points: null,
    drawFrame: null,
    theme: themeColors(root),
  };
  const assembler = new ArrayAssembler();
  const thumbs = new Map(); // index -> {url, name, label, pred, conf}
  const thumbsInFlight = new Set();
  let requestId = 0;

  // ---------------------------------------------------------------- map
  const mapHeight = () => model.get("height") || 520;
  mapBox.style.height = `${mapHeight()}px`;
  const initialWidth = Math.max(200, Math.floor(el.getBoundingClientRect().width || 700) - 220);
  // Our own renderer sized to the map: the default one renders a window-sized float buffer
  // every frame, which costs most of a frame under software WebGL.
  const renderer = createRenderer({ canvas: document.createElement("canvas") });
  renderer.resize(initialWidth, mapHeight());
  const scatter = createScatterplot({
    renderer,
    canvas,
    width: initialWidth,
    height: mapHeight(),
    backgroundColor: S.theme.background,
    pointColor: S.theme.unlabelled,
    pointColorActive: S.theme.accent,
    pointColorHover: S.theme.hover,
    pointSize: 5,
    pointOutlineWidth: 2,
    lassoColor: S.theme.accent,
    lassoInitiator: false,
    deselectOnDblClick: true,
    deselectOnEscape: false, // Escape is ours (cancels the confirm bar)
  });
  disposers.push(() => renderer.destroy()); // runs after scatter.destroy() (reversed order)
  disposers.push(() => scatter.destroy());

  let themeResolved = false;
  const resize = () => {
    const rect = mapBox.getBoundingClientRect();
    if (rect.width > 0 && rect.height > 0) {
      if (!themeResolved) {
        // Computed styles exist only once the view is in the document.
        themeResolved = true;
        S.theme = themeColors(root);
        scatter.set({ backgroundColor: S.theme.background, lassoColor: S.theme.accent });
        if (S.n) drawNow();
      }
      renderer.resize(Math.floor(rect.width), Math.floor(rect.height));
      scatter.set({ width: Math.floor(rect.width), height: Math.floor(rect.height) });
      updateRings();
    }
  };
  const ro = new ResizeObserver(resize);
  ro.observe(mapBox);
  disposers.push(() => ro.disconnect());

  function classCount() {
    return (model.get("classes") || []).length;
  }

  // One colour category per class (+1 for "none"), repeated in 4 blocks:
  // unlabelled, labelled, unlabelled batch, labelled batch. Blocks only change
  // alpha and size, so the batch stands out in every colour mode.
  function applyEncoding() {
    const K = classCount() + 1;
    const base = basePointSize(S.n);
    const cats = categoricalColors(K - 1, S.theme);
    const sizes = [];
    // unlabelled, labelled (larger: the user's own answers stay visible), batch (largest)
    const blockSize = [base, Math.round(base * 1.6 + 1), base * 2 + 3, base * 2 + 3];
    for (let b = 0; b < 4; b++) for (let k = 0; k < K; k++) sizes.push(blockSize[b]);
    const props = { sizeBy: "valueA", pointSize: sizes, pointColorActive: S.theme.accent };
    if (S.colorBy === "uncertainty") {
      props.colorBy = "valueB";
      props.pointColor = uncertaintyRamp(S.theme);
    } else {
      const colors = [];
      for (let b = 0; b < 4; b++) {
        for (let k = 0; k < K; k++) {
          const [r, g, bl, a] = k === 0 ? S.theme.unlabelled : cats[k - 1];
          colors.push([r, g, bl, b === 0 ? a * (k === 0 ? 1 : 0.55) : a]);
        }
      }
      props.colorBy = "valueA";
      props.pointColor = colors;
    }
    // set() rebuilds colour textures and schedules one more full frame: only when something differs.
    const key = JSON.stringify(props);
    if (key !== S.encodingKey) {
      S.encodingKey = key;
      scatter.set(props);
    }
  }

  // regl-scatterplot takes [x, y, z, w] per point; keep those arrays between draws and only
  // rewrite z (category) and w (uncertainty) when the coordinates did not change.
  function buildPoints(coordsChanged) {
    const n = S.n;
    const K = classCount() + 1;
    if (coordsChanged || !S.points || S.points.length !== n) {
      S.points = new Array(n);
      for (let i = 0; i < n; i++) S.points[i] = [S.x[i], S.y[i], 0, 0];
    }
    const pts = S.points;
    const inBatch = new Uint8Array(n);
    for (const i of S.batch) if (i >= 0 && i < n) inBatch[i] = 1;
    const byPred = S.colorBy === "prediction";
    const { label, pred, uncert } = S;
    for (let i = 0; i < n; i++) {
      const l = label[i];
      let c = l >= 0 ? l + 1 : byPred && pred[i] >= 0 ? pred[i] + 1 : 0;
      if (c >= K) c = 0; // a class the legend does not know yet
      const block = (inBatch[i] << 1) | (l >= 0 ? 1 : 0);
      const p = pts[i];
      p[2] = c + K * block;
      p[3] = uncert[i] / 255;
    }
    return pts;
  }

  // Draw at the next animation frame, so that updates arriving together share one frame
  // (a frame costs 100-300 ms under software WebGL).
  function drawSoon() {
    if (S.drawFrame == null) S.drawFrame = requestAnimationFrame(() => drawNow());
  }

  async function drawNow() {
    if (S.drawFrame != null) {
      cancelAnimationFrame(S.drawFrame);
      S.drawFrame = null;
    }
    if (!S.n || !S.x) return;
    if (S.drawing) {
      S.drawPending = true;
      return;
    }
    S.drawing = true;
    const coordsChanged = S.coordsChanged;
    S.coordsChanged = false;
    try {
      applyEncoding();
      const opts = { zDataType: "categorical", wDataType: "continuous", preventFilterReset: true };
      if (S.selected.length) opts.select = S.selected;
      if (!coordsChanged && S.spatialIndex) opts.spatialIndex = S.spatialIndex;
      if (coordsChanged && S.paints > 0 && S.n <= 200000) {
        opts.transition = true;
        opts.transitionDuration = 400;
      }
      const tb = performance.now();
      const pts = buildPoints(coordsChanged);
      const td = performance.now();
      await scatter.draw(pts, opts);
      S.timings.buildMs = td - tb;
      S.timings.drawCallMs = performance.now() - td;
      S.spatialIndex = scatter.get("spatialIndex");
      // draw() resolves on the frame that shows these points; a newer update waiting
      // (drawPending) is counted when its own draw resolves.
      if (!S.drawPending) markPainted(performance.now());
      updateRings();
    } catch (err) {
      showLocalError(`map: ${err && err.message ? err.message : err}`);
    } finally {
      S.drawing = false;
    }
    if (S.drawPending) {
      S.drawPending = false;
      drawNow();
    }
  }

  // Called when a draw() has resolved: its frame is on screen.
  function markPainted(now) {
    if (!S.ready && S.x) {
      S.ready = true;
      S.timings.firstPaintMs = S.updateT0 != null ? now - S.updateT0 : null;
      root.dataset.alwReady = "1";
    }
    if (S.updateT0 != null) {
      S.timings.lastRecolourMs = now - S.updateT0;
      S.updateT0 = null;
      S.paints += 1;
      root.dataset.alwPaints = String(S.paints);
    }
  }
  scatter.subscribe("view", () => updateRings());
  scatter.subscribe("transitionEnd", () => updateRings());

  // ---------------------------------------------------------------- overlays
  function screenPos(i) {
    if (!S.x || !(i >= 0 && i < S.n)) return null;
    try {
      return scatter.getScreenPosition(i) || null;
    } catch (_err) {
      return null;
    }
  }

  function updateRings() {
    while (rings.firstChild) rings.removeChild(rings.firstChild);
    if (!S.n) return;
    const r = basePointSize(S.n) + 6;
    S.batch.forEach((i, pos) => {
      if (S.label && S.label[i] >= 0) return;
      const p = screenPos(i);
      if (!p) return;
      const c = document.createElementNS(svgNS, "circle");
      c.setAttribute("cx", p[0].toFixed(1));
      c.setAttribute("cy", p[1].toFixed(1));
      c.setAttribute("r", String(r));
      if (pos === S.focusPos) c.setAttribute("class", "alw-ring-focus");
      rings.appendChild(c);
    });
  }

  function className(id) {
    const classes = model.get("classes") || [];
    return id != null && id >= 0 && id < classes.length ? classes[id] : null;
  }

  function describe(i) {
    const info = thumbs.get(i);
    const l = S.label ? S.label[i] : -1;
    const p = S.pred ? S.pred[i] : -1;
    let pred = "";
    if (l >= 0) pred = `label: ${className(l)}`;
    else if (p >= 0) pred = `predicted: ${className(p)}`;
    if (info && info.conf != null && l < 0 && p >= 0) pred += ` (${Math.round(info.conf * 100)}%)`;
    return { name: info ? info.name : `#${i}`, pred, url: info ? info.url : null };
  }

  function showHover(i) {
    const p = screenPos(i);
    if (!p) return;
    const d = describe(i);
    hoverName.textContent = d.name;
    hoverPred.textContent = d.pred;
    if (d.url) {
      hoverImg.src = d.url;
      hoverImg.style.display = "block";
    } else {
      hoverImg.removeAttribute("src");
      hoverImg.style.display = thumbs.has(i) ? "none" : "block";
    }
    const W = mapBox.clientWidth;
    const left = p[0] + 12 + 190 > W ? p[0] - 12 - 190 : p[0] + 12;
    hoverBox.style.left = `${Math.max(0, left)}px`;
    hoverBox.style.top = `${Math.max(0, p[1] - 20)}px`;
    hoverBox.style.display = "block";
  }

  function hideHover() {
    hoverBox.style.display = "none";
  }

  function requestThumbs(indices) {
    const want = [];
    for (const i of indices) {
      if (!thumbs.has(i) && !thumbsInFlight.has(i)) want.push(i);
      if (want.length >= THUMB_REQUEST_MAX) break;
    }
    if (!want.length) return;
    for (const i of want) thumbsInFlight.add(i);
    requestId += 1;
    model.send({ type: "thumbs", request: requestId, indices: want });
  }

  function onThumbs(content, buffers) {
    let b = 0;
    for (const item of content.items || []) {
      thumbsInFlight.delete(item.index);
      let url = null;
      if (item.image && b < buffers.length) {
        const view = buffers[b++];
        url = URL.createObjectURL(new Blob([view], { type: item.mime || "image/jpeg" }));
      }
      const old = thumbs.get(item.index);
      if (old && old.url) URL.revokeObjectURL(old.url);
      thumbs.set(item.index, { url, name: String(item.name ?? `#${item.index}`), conf: item.conf ?? null });
    }
    // Bound the cache: Map keeps insertion order, so the first keys are the oldest.
    while (thumbs.size > THUMB_CACHE_MAX) {
      const [k, v] = thumbs.entries().next().value;
      if (v.url) URL.revokeObjectURL(v.url);
      thumbs.delete(k);
    }
    renderGallery();
    if (S.hovered >= 0) showHover(S.hovered);
  }

  // ---------------------------------------------------------------- gallery, legend, status
  function renderGallery() {
    gallery.replaceChildren();
    S.batch.forEach((i, pos) => {
      const d = describe(i);
      const img = h("img", { alt: "" });
      if (d.url) img.src = d.url;
      const card = h("div", { class: "alw-card", "data-index": String(i), title: d.name }, [
        img,
        // The end of a file name tells images apart: the CSS truncates at the start (text only).
        h("div", { class: "alw-card-name" }, [h("span", { text: d.name })]),
        h("div", { class: "alw-card-pred", text: d.pred }),
      ]);
      if (S.label && S.label[i] >= 0) card.classList.add("alw-done");
      if (pos === S.focusPos) card.classList.add("alw-focus");
      card.addEventListener("click", () => {
        S.focusPos = pos;
        selectPoints([i]);
        root.focus({ preventScroll: true });
      });
      gallery.appendChild(card);
    });
    requestThumbs(S.batch);
    root.dataset.alwBatch = Array.from(S.batch).join(",");
  }

  function classCounts() {
    const counts = new Array(classCount()).fill(0);
    if (S.label) for (const l of S.label) if (l >= 0 && l < counts.length) counts[l] += 1;
    return counts;
  }

  function renderLegend() {
    legend.replaceChildren();
    const classes = model.get("classes") || [];
    const cats = categoricalColors(classes.length, S.theme);
    const counts = classCounts();
    classes.forEach((name, k) => {
      const [r, g, b] = cats[k];
      const swatch = h("span", { class: "alw-swatch" });
      swatch.style.background = `rgb(${Math.round(r * 255)}, ${Math.round(g * 255)}, ${Math.round(b * 255)})`;
      const key = k < 9 ? String(k + 1) : k === 9 ? "0" : "";
      const button = h("button", { class: "alw-class", "data-class-id": String(k), title: `Label as ${name}` }, [
        swatch,
        h("span", { class: "alw-key", text: key }),
        h("span", { class: "alw-class-name", text: String(name) }),
        h("span", { class: "alw-count", text: String(counts[k]) }),
      ]);
      button.addEventListener("click", () => labelTarget(k));
      legend.appendChild(button);
    });
    let n = 0;
    for (const c of counts) n += c;
    root.dataset.alwNLabelled = String(n);
  }

  function renderStrategies() {
    const names = model.get("strategies") || [];
    const current = (model.get("status") || {}).strategy_name || "";
    if (strategySelect.options.length !== names.length) {
      strategySelect.replaceChildren(...names.map((n) => h("option", { value: n, text: `Strategy: ${n}` })));
    }
    if (current && strategySelect.value !== current) strategySelect.value = current;
  }

  function renderStatus() {
    renderStrategies();
    const st = model.get("status") || {};
    statusLine.textContent = st.text || "";
    errorLine.textContent = st.error || "";
    root.dataset.alwError = st.error || "";
    root.dataset.alwCoords = st.coords || "";
  }

  let localErrorTimer = null;
  function showLocalError(text) {
    errorLine.textContent = text;
    root.dataset.alwError = text;
    clearTimeout(localErrorTimer);
    localErrorTimer = setTimeout(renderStatus, 6000);
  }

  // ---------------------------------------------------------------- selection and labelling
  function selectPoints(indices) {
    scatter.select(indices); // fires "select" -> onSelect
  }

  function onSelect(points) {
    S.selected = Array.from(points);
    root.dataset.alwSelected = String(S.selected.length);
    if (S.selected.length > 1) {
      confirmCount.textContent = String(S.selected.length);
      confirmText.textContent = " points selected: press 1-9 or a class button to label them all, Escape cancels";
      confirmBox.style.display = "block";
    } else {
      confirmBox.style.display = "none";
      if (S.selected.length === 1) {
        const pos = Array.from(S.batch).indexOf(S.selected[0]);
        if (pos >= 0) setFocus(pos);
        requestThumbs(S.selected);
      }
    }
  }

  function clearSelection() {
    S.selected = [];
    root.dataset.alwSelected = "0";
    confirmBox.style.display = "none";
    scatter.deselect({ preventEvent: true });
  }

  // regl-scatterplot treats a release within lassoMinDist (3 px) of the press point as a click,
  // which replaces a just-closed lasso selection with the point under the pointer. A drag whose
  // path was longer than that is a lasso or a pan, never a click: stop its click before the canvas.
  const drag = { down: false, x: 0, y: 0, path: 0 };
  listen(mapBox, "pointerdown", (ev) => Object.assign(drag, { down: true, x: ev.clientX, y: ev.clientY, path: 0 }), {
    capture: true,
  });
  listen(window, "pointermove", (ev) => {
    if (!drag.down) return;
    drag.path += Math.hypot(ev.clientX - drag.x, ev.clientY - drag.y);
    drag.x = ev.clientX;
    drag.y = ev.clientY;
  });
  listen(window, "pointerup", () => {
    drag.down = false;
  });
  listen(
    mapBox,
    "click",
    (ev) => {
      if (drag.path > 8) ev.stopPropagation();
      drag.path = 0;
    },
    { capture: true },
  );

  scatter.subscribe("select", ({ points }) => onSelect(points));
  scatter.subscribe("deselect", () => {
    S.selected = [];
    root.dataset.alwSelected = "0";
    confirmBox.style.display = "none";
  });
  scatter.subscribe("pointOver", (i) => {
    S.hovered = i;
    requestThumbs([i]);
    showHover(i);
  });
  scatter.subscribe("pointOut", () => {
    S.hovered = -1;
    hideHover();
  });
  // regl-scatterplot does not always report pointOut when the pointer leaves the canvas.
  listen(canvas, "mouseleave", () => {
    S.hovered = -1;
    hideHover();
  });

  function setFocus(pos) {
    S.focusPos = pos;
    for (const card of gallery.children) card.classList.remove("alw-focus");
    if (gallery.children[pos]) {
      gallery.children[pos].classList.add("alw-focus");
      gallery.children[pos].scrollIntoView({ block: "nearest", inline: "nearest" });
    }
    updateRings();
  }

  function nextUnlabelledBatchPos(from) {
    const B = S.batch.length;
    for (let k = 0; k < B; k++) {
      const pos = (from + k) % B;
      if (!S.label || S.label[S.batch[pos]] < 0) return pos;
    }
    return -1;
  }

  function currentTarget() {
    if (S.selected.length) return S.selected.slice();
    if (S.hovered >= 0) return [S.hovered];
    const pos = nextUnlabelledBatchPos(S.focusPos);
    if (pos >= 0) return [S.batch[pos]];
    return [];
  }

  function labelTarget(classId) {
    const target = currentTarget();
    if (!target.length) {
      showLocalError("Nothing to label: click a point or a batch card first.");
      return;
    }
    if (target.length > 256) {
      const buf = Int32Array.from(target);
      model.send({ type: "label", class: classId }, undefined, [buf.buffer]);
    } else {
      model.send({ type: "label", indices: target, class: classId });
    }
    const wasBatchFocus = !S.selected.length && S.hovered < 0;
    if (S.selected.length) clearSelection();
    if (wasBatchFocus || target.length === 1) {
      const pos = Array.from(S.batch).indexOf(target[0]);
      if (pos >= 0) {
        const next = nextUnlabelledBatchPos(pos + 1);
        if (next >= 0 && next !== pos) setFocus(next);
      }
    }
  }

  function skip() {
    const B = S.batch.length;
    if (!B) {
      model.send({ type: "next_batch" });
      return;
    }
    for (let k = S.focusPos + 1; k < B; k++) {
      if (!S.label || S.label[S.batch[k]] < 0) {
        setFocus(k);
        if (S.selected.length) clearSelection();
        return;
      }
    }
    model.send({ type: "next_batch" });
  }

  function setMode(mode) {
    S.mode = mode;
    for (const [m, b] of Object.entries(modeButtons)) b.setAttribute("aria-pressed", String(m === mode));
    if (mode === "pan") scatter.set({ mouseMode: "panZoom", lassoType: "freeform" });
    else scatter.set({ mouseMode: "lasso", lassoType: mode === "box" ? "rectangle" : "freeform" });
  }
  setMode("pan");
  for (const [m, b] of Object.entries(modeButtons)) b.addEventListener("click", () => setMode(m));

  function setColorBy(mode, sync) {
    if (!COLOR_MODES.includes(mode)) return;
    S.colorBy = mode;
    colorSelect.value = mode;
    root.dataset.alwColorBy = mode;
    if (sync && model.get("color_by") !== mode) {
      model.set("color_by", mode);
      model.save_changes();
    }
    S.updateT0 = performance.now();
    drawNow();
  }
  colorSelect.addEventListener("change", () => setColorBy(colorSelect.value, true));
  strategySelect.addEventListener("change", () => model.send({ type: "set_strategy", name: strategySelect.value }));
  undoButton.addEventListener("click", () => model.send({ type: "undo" }));
  acceptButton.addEventListener("click", () => model.send({ type: "accept_batch" }));
  skipButton.addEventListener("click", skip);
  const addClass = () => {
    const name = addInput.value.trim();
    if (!name) return;
    model.send({ type: "add_class", name });
    addInput.value = "";
  };
  addButton.addEventListener("click", addClass);
  addInput.addEventListener("keydown", (ev) => {
    ev.stopPropagation(); // typing a name must not label points
    if (ev.key === "Enter") addClass();
  });

  // Keys only reach this handler while focus is inside the widget.
  listen(root, "keydown", (ev) => {
    const tag = ev.target && ev.target.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    let handled = true;
    if (/^[0-9]$/.test(ev.key)) {
      const k = ev.key === "0" ? 9 : Number(ev.key) - 1;
      if (k < classCount()) labelTarget(k);
      else showLocalError(`No class on key ${ev.key}: add one with the box on the right.`);
    } else if (ev.key === "Backspace") {
      model.send({ type: "undo" });
    } else if (ev.key === " ") {
      skip();
    } else if (ev.key === "Enter" || ev.key === "a") {
      model.send({ type: "accept_batch" });
    } else if (ev.key === "Escape") {
      clearSelection();
    } else if (ev.key === "c") {
      setColorBy(COLOR_MODES[(COLOR_MODES.indexOf(S.colorBy) + 1) % COLOR_MODES.length], true);
    } else if (ev.key === "ArrowRight") {
      if (S.batch.length) setFocus((S.focusPos + 1) % S.batch.length);
    } else if (ev.key === "ArrowLeft") {
      if (S.batch.length) setFocus((S.focusPos - 1 + S.batch.length) % S.batch.length);
    } else {
      handled = false;
    }
    if (handled) {
      ev.preventDefault();
      ev.stopPropagation();
    }
  });
  // Clicking the map gives the widget keyboard focus (the canvas is not focusable).
  listen(
    root,
    "pointerdown",
    (ev) => {
      const tag = ev.target && ev.target.tagName;
      if (tag !== "INPUT" && tag !== "SELECT" && tag !== "BUTTON") root.focus({ preventScroll: true });
    },
    { capture: true },
  );

  // ---------------------------------------------------------------- kernel messages
  function applyArrays(content, arrays) {
    if (content.reset) {
      S.n = content.n_points;
      S.label = new Int16Array(S.n).fill(-1);
      S.pred = new Int16Array(S.n).fill(-1);
      S.uncert = new Uint8Array(S.n);
      S.spatialIndex = null;
      S.coordsChanged = true;
      S.selected = [];
    }
    for (const [name, arr] of arrays) {
      if (name === "x" || name === "y") {
        S[name] = arr;
        S.coordsChanged = true;
      } else if (name === "label" || name === "pred" || name === "uncert") {
        if (arr.length === S.n) S[name] = arr;
      } else if (name === "batch") {
        const changed = arr.length !== S.batch.length || arr.some((v, k) => v !== S.batch[k]);
        S.batch = arr;
        if (changed) S.focusPos = Math.max(0, nextUnlabelledBatchPos(0));
      }
    }
    S.version = content.version;
    root.dataset.alwVersion = String(S.version);
    root.dataset.alwNPoints = String(S.n);
    if (content.reset && S.timings.dataMs == null) S.timings.dataMs = performance.now() - t0;
    S.updateT0 = performance.now();
    renderLegend();
    renderGallery();
    S.timings.domMs = performance.now() - S.updateT0;
    drawNow();
  }

  function onLabels(content, buffers) {
    if (!S.label || buffers.length < 2) return;
    const idx = toTyped(buffers[0], "int32");
    const cls = toTyped(buffers[1], "int16");
    for (let k = 0; k < idx.length; k++) if (idx[k] >= 0 && idx[k] < S.n) S.label[idx[k]] = cls[k];
    S.updateT0 = performance.now();
    renderLegend();
    renderGallery();
    S.timings.domMs = performance.now() - S.updateT0;
    drawSoon();
  }

  const onCustom = (content, buffers) => {
    try {
      buffers = buffers || [];
      for (const b of buffers) S.bytes += b.byteLength;
      S.timings.bytes = S.bytes;
      if (content.type === "array") assembler.add(content, buffers[0]);
      else if (content.type === "commit") applyArrays(content, assembler.take(content.version));
      else if (content.type === "labels") onLabels(content, buffers);
      else if (content.type === "thumbs") onThumbs(content, buffers);
    } catch (err) {
      showLocalError(`front end: ${err && err.message ? err.message : err}`);
    }
  };
  model.on("msg:custom", onCustom);
  disposers.push(() => model.off("msg:custom", onCustom));

  const onClasses = () => {
    renderLegend();
    drawNow();
  };
  const onStatus = () => renderStatus();
  const onColorBy = () => setColorBy(model.get("color_by"), false);
  const onHeight = () => {
    mapBox.style.height = `${mapHeight()}px`;
    resize();
  };
  model.on("change:classes", onClasses);
  model.on("change:status", onStatus);
  model.on("change:color_by", onColorBy);
  model.on("change:height", onHeight);
  disposers.push(() => {
    model.off("change:classes", onClasses);
    model.off("change:status", onStatus);
    model.off("change:color_by", onColorBy);
    model.off("change:height", onHeight);
  });

  // Follow JupyterLab theme switches (light <-> dark).
  const themeObserver = new MutationObserver(() => {
    S.theme = themeColors(root);
    scatter.set({ backgroundColor: S.theme.background, lassoColor: S.theme.accent });
    renderLegend();
    drawNow();
  });
  themeObserver.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "data-jp-theme-name", "class"] });
  disposers.push(() => themeObserver.disconnect());

  // ---------------------------------------------------------------- test hooks (no globals)
  const api = {
    screenPosition(i) {
      const p = screenPos(i);
      if (!p) return null;
      const rect = canvas.getBoundingClientRect();
      return [rect.left + p[0], rect.top + p[1]];
    },
    pointsInRect(x0, y0, x1, y1) {
      const out = [];
      const rect = canvas.getBoundingClientRect();
      const [ax, bx] = [Math.min(x0, x1) - rect.left, Math.max(x0, x1) - rect.left];
      const [ay, by] = [Math.min(y0, y1) - rect.top, Math.max(y0, y1) - rect.top];
      for (let i = 0; i < S.n; i++) {
        const p = screenPos(i);
        if (p && p[0] >= ax && p[0] <= bx && p[1] >= ay && p[1] <= by) out.push(i);
      }
      return out;
    },
    select: (indices) => selectPoints(Array.from(indices)),
    camera: () => ({ target: Array.from(scatter.get("cameraTarget")), distance: Number(scatter.get("cameraDistance")) }),
    send: (content) => model.send(content),
    get timings() {
      return { ...S.timings };
    },
    state: () => ({
      nPoints: S.n,
      version: S.version,
      batch: Array.from(S.batch),
      selected: S.selected.slice(),
      colorBy: S.colorBy,
      labels: S.label ? S.label.slice() : null,
    }),
  };
  root.alw = api;
  el.alw = api;
  root.dataset.alwReady = "0";
  root.dataset.alwColorBy = S.colorBy;
  root.dataset.alwSelected = "0";
  root.dataset.alwPaints = "0";
  colorSelect.value = S.colorBy;

  renderStatus();
  renderLegend();
  model.send({ type: "hello" });

  return () => {
    for (const d of disposers.reverse()) {
      try {
        d();
      } catch (_err) {
        // the view is going away; nothing left to clean
      }
    }
    for (const v of thumbs.values()) if (v.url) URL.revokeObjectURL(v.url);
    clearTimeout(localErrorTimer);
    delete el.alw;
    root.remove();
  };
}

export default { render };
