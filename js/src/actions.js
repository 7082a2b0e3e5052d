// What each key, button and gesture does. Every action either sends one intent (listed as
// pending until the kernel acknowledges it) or says in the notice line why it did nothing.
import { applyClassKey, clearFocus, commitPlan, createReview, moveFocus, setOwnClass, toggle } from "./review.js";
import { COLOR_MODES, FLAG_UNSURE, isOpen, nextOpenPos } from "./updates.js";

const NOTHING_SELECTED =
  "Nothing selected, nothing labelled: click an image on the map or a card below (or press → for the next suggestion).";

/**
 * @param {object} o
 * @param {object} o.store
 * @param {object} o.conn the connection (protocol.js)
 * @param {object} o.map the map (map.js)
 * @param {object} o.thumbs the thumbnail cache
 * @param {object} o.model the anywidget model (color_by is a synced trait)
 * @param {() => number} o.gridCols columns of the review grid as drawn
 */
export function createActions({ store, conn, map, thumbs, model, gridCols }) {
  const S = () => store.state;
  const say = (text) => store.dispatch("notice", text);
  const className = (k) => S().classes[k] ?? `class ${k + 1}`;
  const nameOf = (i) => thumbs.name(i);

  /** After answering the selected batch card, the next open card is selected. */
  function advanceFrom(i) {
    const s = S();
    const pos = Array.prototype.indexOf.call(s.batch, i);
    if (pos < 0 || s.selectionSource !== "card") {
      store.dispatch("clearSelection");
      return;
    }
    const next = nextOpenPos(s, pos + 1, i);
    store.dispatch("focusCard", next);
  }

  /** The single selected image, or -1 after saying why there is none. */
  function single(what) {
    const s = S();
    if (s.selected.length === 1) return s.selected[0];
    say(s.selected.length ? `Select one image to ${what} (${s.selected.length} are selected).` : NOTHING_SELECTED);
    return -1;
  }

  function answer(type, i, text, extra = {}) {
    const sent = conn.send({ type, indices: [i], ...extra }, { pending: { text, indices: [i] } });
    if (sent) advanceFrom(i);
  }

  function label(k) {
    if (k >= S().classes.length) {
      say(`No class on key ${k === 9 ? 0 : k + 1}: add one with the box on the right.`);
      return;
    }
    const i = single("label");
    if (i >= 0) answer("label", i, `${nameOf(i)} → ${className(k)}`, { class: k });
  }

  function openReview(indices, source) {
    if (!indices.length) {
      say(`The ${source} caught no images.`);
      return;
    }
    if (indices.length === 1) {
      store.dispatch("select", { indices, source: "click" });
      return;
    }
    store.dispatch("clearSelection");
    store.dispatch("openReview", createReview({ source, indices }));
  }

  function commitReview() {
    const r = S().review;
    if (!r) return;
    const plan = commitPlan(r);
    if (!plan.kept) {
      say("Every image is left out: nothing to label (Escape closes the grid).");
      return;
    }
    if (plan.missing) {
      say(`Choose a class first: ${plan.missing} image(s) have none (press 1–9).`);
      return;
    }
    if (!plan.groups.size) { // a re-check where every label stays: nothing to send
      say("Nothing relabelled: every label stays as it is.");
      store.dispatch("closeReview");
      return;
    }
    const groups = [];
    const buffers = [];
    const all = [];
    for (const [c, idx] of plan.groups) {
      all.push(...idx);
      const { content, buffers: b } = conn.withIndices({ class: c }, idx);
      if (b.length) {
        groups.push({ class: c, buffer: buffers.length });
        buffers.push(...b);
      } else groups.push(content);
    }
    const text = [...plan.groups].map(([c, idx]) => `${idx.length} → ${className(c)}`).join(", ");
    if (conn.send({ type: "label_groups", source: r.source, groups }, { buffers, pending: { text, indices: all } })) {
      store.dispatch("closeReview");
    }
  }

  function setReview(fn) {
    const r = S().review;
    if (r) store.dispatch("openReview", fn(r));
  }

  function setColor(mode) {
    store.dispatch("colorBy", mode);
    map.markUpdate(performance.now());
    if (model.get("color_by") !== mode) {
      model.set("color_by", mode);
      model.save_changes();
    }
  }

  // Answers refused up front when the kernel is gone: the notice says so, whatever is selected.
  const live = (fn) => (...args) => (conn.connected() ? fn(...args) : say(conn.refusal()));

  return {
    label: live(label),
    pick(i) {
      if (i < 0) store.dispatch("clearSelection");
      else store.dispatch("select", { indices: [i], source: Array.prototype.includes.call(S().batch, i) ? "card" : "click" });
    },
    unsure: live(() => {
      const i = single("answer unsure");
      if (i >= 0) answer("unsure", i, `${nameOf(i)} → unsure`);
    }),
    skip: live(() => {
      const i = single("skip");
      if (i >= 0) answer("skip", i, `${nameOf(i)} skipped`);
    }),
    next() {
      const s = S();
      if (!s.batch.length) return say("No suggestions yet: the strategy is still choosing.");
      const pos = nextOpenPos(s, s.focusPos + 1);
      if (pos < 0) say("Every suggestion is answered: press n for a new batch.");
      else store.dispatch("focusCard", pos);
    },
    prev() {
      const s = S();
      const B = s.batch.length;
      for (let k = 1; k <= B; k++) {
        const pos = (((s.focusPos < 0 ? 0 : s.focusPos) - k) % B + B) % B;
        if (isOpen(s, s.batch[pos])) return store.dispatch("focusCard", pos);
      }
      return say("No open suggestion to go back to.");
    },
    accept: live(() => {
      const st = S().status || {};
      if (!st.can_accept) return say(st.accept_reason || "Accepting predictions is not available yet.");
      return conn.send({ type: "propose_batch" });
    }),
    proposal(content) {
      if (content.error) return say(content.error);
      const items = content.items || [];
      if (!items.length) return say("No open image in this batch has a prediction.");
      const classes = S().classes;
      store.dispatch("clearSelection");
      return store.dispatch("openReview", createReview({
        source: "accept",
        indices: items.map((it) => it.index),
        proposed: items.map((it) => classes.indexOf(it.pred)),
        conf: items.map((it) => (it.conf == null ? NaN : it.conf)),
      }));
    },
    newBatch: () => conn.send({ type: "next_batch" }),
    undo: () => conn.send({ type: "undo" }, { pending: { text: "undo" } }),
    cycleColor: () => setColor(COLOR_MODES[(COLOR_MODES.indexOf(S().colorBy) + 1) % COLOR_MODES.length]),
    setColor,
    setMode: (mode) => map.setMode(mode),
    fit: () => map.fit(true),
    zoomSelection() {
      if (!map.zoomTo(S().selected)) say("Nothing selected to zoom to.");
    },
    escape() {
      if (S().helpOpen) store.dispatch("help", false);
      else store.dispatch("clearSelection");
    },
    help: () => store.dispatch("help"),
    /** The images answered "unsure", in the review grid, to give them a class now. */
    reviewUnsure: live(() => {
      const s = S();
      const idx = [];
      if (s.flags) for (let i = 0; i < s.n; i++) if (s.flags[i] & FLAG_UNSURE) idx.push(i);
      if (!idx.length) return say("No image is answered unsure.");
      store.dispatch("clearSelection");
      return store.dispatch("openReview", createReview({ source: "unsure", indices: idx }));
    }),
    lasso: live((indices, type) => openReview(indices, type === "rectangle" ? "box" : "lasso")),
    select: live((indices) => openReview(Array.from(indices), "select")),
    gridClass(k) {
      if (k >= S().classes.length) return say(`No class on key ${k === 9 ? 0 : k + 1}.`);
      return setReview((r) => applyClassKey(r, k));
    },
    gridToggle: () => setReview((r) => (r.focus >= 0 ? toggle(r, r.focus) : r)),
    toggleCard: (k) => setReview((r) => toggle(r, k)),
    cardClass: (k, c) => setReview((r) => setOwnClass(r, k, c)),
    gridRight: () => setReview((r) => moveFocus(r, 1, 0, gridCols())),
    gridLeft: () => setReview((r) => moveFocus(r, -1, 0, gridCols())),
    gridDown: () => setReview((r) => moveFocus(r, 0, 1, gridCols())),
    gridUp: () => setReview((r) => moveFocus(r, 0, -1, gridCols())),
    gridCommit: live(commitReview),
    gridEscape() {
      const r = S().review;
      if (r && r.focus >= 0) setReview(clearFocus);
      else store.dispatch("closeReview");
    },
  };
}
