// alwidget front end: the anywidget entry. It builds the view from modules around one store:
// protocol (wire), map (WebGL), overlays, gallery, legend, statusbar, review grid, input, actions.
// The kernel owns labels; this view renders its state and sends intents (docs/widget-protocol.md).
import css from "./style.css";
import panelsCss from "./panels.css";
import trustCss from "./trust.css";
import findCss from "./find.css";
import { createActions } from "./actions.js";
import { themeColors } from "./colors.js";
import { h, listeners } from "./dom.js";
import { createGallery } from "./gallery.js";
import { createGrid } from "./grid.js";
import { attachInput } from "./input.js";
import { createLegend } from "./legend.js";
import { createMap } from "./map.js";
import { createOverlays } from "./overlays.js";
import { createConnection } from "./protocol.js";
import { createStatusBar } from "./statusbar.js";
import { createStore } from "./store.js";
import { createThumbs } from "./thumbs.js";
import { createToolbar } from "./toolbar.js";
import { createTrust, createTrustButtons, markCards, trustOf } from "./trust.js";
import { FIND_UPDATES, findInitial, handleFind } from "./find.js";
import { createFindBar } from "./findbar.js";
import { UPDATES, effectiveColorBy, initialState } from "./updates.js";
import { publishDataset, testApi } from "./hooks.js";

function render({ model, el }) {
  const t0 = performance.now();
  const listen = listeners();
  el.classList.add("alw-host");
  const root = h("div", { class: "alw-root", tabindex: "0", "data-lm-suppress-shortcuts": "true" });
  root.appendChild(h("style", { text: `${css}\n${panelsCss}\n${trustCss}\n${findCss}` }));
  const store = createStore({ ...initialState(model.get("color_by")), ...findInitial() }, { ...UPDATES, ...FIND_UPDATES });
  store.dispatch("classes", model.get("classes"));
  store.dispatch("status", model.get("status"));
  store.dispatch("recent", model.get("recent"));
  let theme = themeColors(root);
  const timings = { dataMs: null, domMs: null };

  const canvas = h("canvas", { class: "alw-canvas" });
  const mapBox = h("div", { class: "alw-map" }, [canvas]);
  const mapHeight = () => model.get("height") || 520;
  mapBox.style.height = `${mapHeight()}px`;
  const width0 = Math.max(200, Math.floor(el.getBoundingClientRect().width || 700) - 220);

  let actions = null;
  const thumbs = createThumbs((content) => conn.send(content, { quiet: true }));
  const conn = createConnection({
    model, store, onThumbs: (c, b) => thumbs.onItems(c, b), onProposal: (c) => actions.proposal(c),
  });
  const className = (k) => store.state.classes[k] ?? null;
  const map = createMap({
    canvas, width: width0, height: mapHeight(), store, theme,
    events: {
      hover: (i) => store.dispatch("hover", i),
      pick: (i) => actions.pick(i),
      lasso: (indices, type) => actions.lasso(indices, type),
      view: () => overlays.update(),
      painted: () => publish(),
      error: (text) => store.dispatch("notice", text),
    },
  });
  listen.onDispose(() => map.destroy());
  const overlays = createOverlays({ mapBox, map, store, thumbs, className });
  const grid = createGrid({
    store, thumbs,
    onToggle: (k) => actions.toggleCard(k),
    onClass: (k, c) => actions.cardClass(k, c),
    onCommit: () => actions.gridCommit(),
    onCancel: () => store.dispatch("closeReview"),
  });
  actions = createActions({ store, conn, map, thumbs, model, gridCols: () => grid.cols() });
  const trust = createTrust({ store, conn });
  const trustButtons = createTrustButtons(trust);
  const toolbar = createToolbar({ store, model, actions, conn, extra: trustButtons.nodes });
  const findbar = createFindBar({ store, model, conn, openGrid: (r) => {
    store.dispatch("clearSelection");
    store.dispatch("openReview", r);
  } });
  actions.moreLikeThis = () => findbar.moreLikeThis(); // key m (keys.js)
  const legend = createLegend({ store, getTheme: () => theme, onClass: (k) => actions.label(k) });
  const gallery = createGallery({
    store, thumbs, className,
    onCard: (pos) => {
      store.dispatch("focusCard", pos);
      root.focus({ preventScroll: true });
    },
    onRecent: (i) => {
      store.dispatch("select", { indices: [i], source: "recent" });
      store.dispatch("notice", `Selected ${thumbs.name(i)}: press a number key to give it another class, u for unsure.`);
      root.focus({ preventScroll: true });
    },
  });
  const bar = createStatusBar({ store });
  const addInput = h("input", { type: "text", placeholder: "new class", "aria-label": "new class name" });
  const addButton = h("button", { text: "Add" });
  const addClass = () => {
    const name = addInput.value.trim();
    if (name && conn.send({ type: "add_class", name })) addInput.value = "";
  };
  addButton.addEventListener("click", addClass);
  addInput.addEventListener("keydown", (ev) => {
    ev.stopPropagation(); // typing a class name must not label images
    if (ev.key === "Enter") addClass();
  });
  const side = h("div", { class: "alw-side" }, [legend.buttons, h("div", { class: "alw-add-class" }, [addInput, addButton]),
    legend.key]);
  const main = h("div", { class: "alw-main" }, [mapBox, side, grid.panel]);
  const n = bar.nodes;
  root.append(toolbar.node, findbar.node, main, gallery.gallery, gallery.recent, n.status, n.store, n.pending, n.notice, n.error,
    n.banner, n.keys);
  el.appendChild(root);

  attachInput({
    root, mapBox, canvas, listen, actions,
    context: () => ({ gridOpen: !!store.state.review, helpOpen: store.state.helpOpen, mode: store.state.mode }),
    ringed: () => overlays.ringed(),
    basePointSize: () => map.basePointSize(),
  });

  function publish() {
    publishDataset(root, store.state, map, conn);
  }

  store.subscribe((s, name, prev) => {
    const td = performance.now();
    map.sync(s, prev, { soon: name === "labels" });
    if (s.labelsV !== prev.labelsV || s.classes !== prev.classes || s.status !== prev.status ||
        s.colorBy !== prev.colorBy || effectiveColorBy(s) !== effectiveColorBy(prev) || s.findV !== prev.findV) legend.update(s);
    gallery.update(s, prev);
    if (trustOf(s).tests !== trustOf(prev).tests) markCards(gallery.gallery, s);
    grid.update(s, prev);
    overlays.update();
    toolbar.update(s);
    trustButtons.update(s);
    findbar.update(s);
    bar.update(s);
    root.classList.toggle("alw-disconnected", s.connection.state !== "connected" || !!(s.status || {}).closed_reason);
    if (name === "arrays" || name === "labels") timings.domMs = performance.now() - td;
    publish();
  });
  thumbs.subscribe(() => {
    gallery.fillThumbs();
    grid.fillThumbs();
    overlays.update();
  });

  const onCustom = (content, buffers) => {
    try {
      // the update's clock starts before the store redraws (markUpdate keeps the earliest time)
      if (content && (content.type === "commit" || content.type === "labels")) map.markUpdate(performance.now());
      if (content && content.type === "recheck") return trust.onRecheck(content);
      const kind = conn.handle(content, buffers || []);
      handleFind(store, content, buffers || [], { openGrid: findbar.openGrid, mine: findbar.mine });
      if (kind === "reset" && timings.dataMs == null) timings.dataMs = performance.now() - t0;
    } catch (err) {
      store.dispatch("notice", `front end: ${err && err.message ? err.message : err}`);
    }
  };
  const modelEvents = {
    "msg:custom": onCustom,
    "change:classes": () => store.dispatch("classes", model.get("classes")),
    "change:status": () => store.dispatch("status", model.get("status")),
    "change:recent": () => store.dispatch("recent", model.get("recent")),
    "change:color_by": () => store.dispatch("colorBy", model.get("color_by")),
    "change:strategies": () => toolbar.update(store.state),
    "change:find_state": () => findbar.update(store.state),
    "change:height": () => {
      mapBox.style.height = `${mapHeight()}px`;
      resize();
    },
  };
  for (const [ev, fn] of Object.entries(modelEvents)) model.on(ev, fn);
  listen.onDispose(() => {
    for (const [ev, fn] of Object.entries(modelEvents)) model.off(ev, fn);
  });
  listen.onDispose(conn.watch());

  let themeResolved = false;
  function resize() {
    const rect = mapBox.getBoundingClientRect();
    if (!(rect.width > 0 && rect.height > 0)) return;
    if (!themeResolved) {
      themeResolved = true; // computed styles exist only once the view is in the document
      setTheme();
    }
    map.resize(Math.floor(rect.width), Math.floor(rect.height));
    map.drawNow();
    overlays.update();
  }
  function setTheme() {
    theme = themeColors(root);
    map.setTheme(theme);
    legend.update(store.state);
    map.drawNow();
  }
  const ro = new ResizeObserver(resize);
  ro.observe(mapBox);
  listen.onDispose(() => ro.disconnect());
  const themeObserver = new MutationObserver(setTheme);
  themeObserver.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "data-jp-theme-name", "class"] });
  listen.onDispose(() => themeObserver.disconnect());
  const tick = setInterval(() => store.state.pending.length && bar.update(store.state), 2000);
  listen.onDispose(() => clearInterval(tick));

  const api = testApi({ root, canvas, store, map, conn, actions, timings });
  root.alw = api;
  el.alw = api;
  toolbar.update(store.state);
  trustButtons.update(store.state);
  findbar.update(store.state);
  legend.update(store.state);
  gallery.redraw();
  bar.update(store.state);
  publish();
  conn.send({ type: "hello" });

  return () => {
    listen.dispose();
    thumbs.destroy();
    bar.destroy();
    grid.destroy();
    delete el.alw;
    root.remove();
  };
}

export default { render };
