// Find what you need, the front end's model (pure): search and more-like-this results (shown
// on the map, everything else dimmed, and opened in the review grid for labelling), the filter
// (what it leaves out is dimmed), and the intents the find bar sends. The kernel does the
// searching (alwidget/widget_find.py); docs/widget-protocol.md lists the messages.
import { toTyped } from "./codecs.js";
import { createReview } from "./review.js";

const TITLES = { similar: "More like this", duplicates: "Near-duplicates", outliers: "Outliers" };

/** The store's find fields, merged into the initial state. */
export function findInitial() {
  return {
    find: { keep: null, filterActive: false, filterMessage: "", results: null, source: "", query: null,
      message: "", dim: null, shown: -1, error: "" },
    findV: 0,
  };
}

/** (n,) 0/1 from the kernel's packed bits (numpy packbits, bitorder little). */
export function unpackBits(bytes, n) {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes.buffer || bytes, bytes.byteOffset || 0,
    bytes.byteLength);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (b[i >> 3] >> (i & 7)) & 1;
  return out;
}

/** (n,) 1 for points to dim: left out by the filter, or not among the results shown; null: none. */
export function dimMask(n, keep, results) {
  if (!keep && !results) return null;
  const dim = new Uint8Array(n);
  if (keep) for (let i = 0; i < n; i++) dim[i] = keep[i] ? 0 : 1;
  if (results) {
    const hit = new Uint8Array(n);
    for (const i of results) if (i >= 0 && i < n) hit[i] = 1;
    for (let i = 0; i < n; i++) if (!hit[i]) dim[i] = 1;
  }
  return dim;
}

/** The dim mask the map draws for this state (null when nothing is dimmed or it is stale). */
export function dimOf(s) {
  const d = s.find && s.find.dim;
  return d && d.length === s.n ? d : null;
}

function withFind(state, patch) {
  const find = { ...state.find, ...patch };
  find.dim = dimMask(state.n, find.keep, find.results);
  let dimmed = 0;
  if (find.dim) for (let i = 0; i < find.dim.length; i++) dimmed += find.dim[i];
  find.shown = find.dim ? find.dim.length - dimmed : -1; // points not dimmed (-1: nothing dimmed)
  return { ...state, find, findV: state.findV + 1 };
}

/** The kernel's `filter` message, decoded: {keep (n,) 0/1 or null, active, message}. */
function findFilter(state, { keep, active, message }) {
  return withFind(state, { keep: active ? keep : null, filterActive: !!active, filterMessage: message || "", error: "" });
}

/** The kernel's `found` message: {indices Int32Array, scores, source, query, message}. */
function findResults(state, { indices, scores, source, query, message }) {
  return withFind(state, { results: indices, scores, source, query: query ?? null, message: message || "", error: "" });
}

/** Drop the highlighted results (the filter stays). */
function findDropResults(state) {
  return state.find.results ? withFind(state, { results: null, source: "", query: null, message: "" }) : state;
}

function findError(state, text) {
  return { ...state, find: { ...state.find, error: String(text || "") } }; // words only: the map stays
}

export const FIND_UPDATES = { findFilter, findResults, findDropResults, findError };

/**
 * The review grid for results: in rank order, images already answered start left out (a click
 * takes one back in); a near-duplicate group whose labelled members agree proposes their class.
 */
export function resultsReview(s, { indices, source, query }) {
  const answered = (i) => (s.label && s.label[i] >= 0) || (s.flags && s.flags[i] & 1);
  let proposed = null;
  if (source === "duplicates" && s.label) {
    const given = new Set();
    for (const i of indices) if (s.label[i] >= 0) given.add(s.label[i]);
    if (given.size === 1) proposed = new Array(indices.length).fill([...given][0]);
  }
  const r = createReview({ source, indices, proposed });
  if (!proposed) for (let k = 0; k < indices.length; k++) if (answered(indices[k])) r.included[k] = 0;
  r.title = source === "search" && query ? `“${query}”` : TITLES[source] || "Search";
  return r;
}

/** The rows "More like this" starts from: the open grid's kept images, the selection, or the hovered point. */
export function similarRows(s) {
  if (s.review) {
    const rows = [];
    for (let k = 0; k < s.review.indices.length; k++) if (s.review.included[k]) rows.push(s.review.indices[k]);
    return rows;
  }
  if (s.selected.length) return s.selected.slice();
  return s.hovered >= 0 ? [s.hovered] : [];
}

const num = (v) => (v === "" || v == null ? null : Number(v));

/**
 * The `filter` intent for the bar's controls, or {error} saying what is wrong.
 * controls: {predicted: class id or -1, lo, hi (text, "" = open end), labelled: "any" | "labelled" |
 * "unlabelled", name, duplicates (bool), outliers (bool or a count)}
 */
export function filterIntent(c) {
  const msg = { type: "filter" };
  if (c.predicted != null && Number(c.predicted) >= 0) msg.predicted = [Number(c.predicted)];
  const lo = num(c.lo);
  const hi = num(c.hi);
  if (lo != null || hi != null) {
    const range = [lo ?? 0, hi ?? 1];
    if (!range.every((v) => Number.isFinite(v) && v >= 0 && v <= 1) || range[0] > range[1]) {
      return { error: "Uncertainty goes from 0 (sure) to 1 (unsure): give low ≤ high." };
    }
    msg.uncertainty = range;
  }
  if (c.labelled === "labelled") msg.labelled = true;
  else if (c.labelled === "unlabelled") msg.labelled = false;
  if (c.name && c.name.trim()) msg.name = c.name.trim();
  if (c.duplicates) msg.duplicates = true;
  if (c.outliers) msg.outliers = c.outliers === true ? 100 : Number(c.outliers);
  return msg;
}

/**
 * Messages from the kernel that belong to the find tools. `openGrid(review)` opens the review
 * grid. Returns true when the message was one of ours.
 */
export function handleFind(store, content, buffers, { openGrid, mine = () => false } = {}) {
  const s = store.state;
  if (content.type === "filter") {
    const keep = buffers.length ? unpackBits(buffers[0], content.n_points) : null;
    store.dispatch("findFilter", { keep: content.n_points === s.n ? keep : null, active: content.active,
      message: content.message });
    return true;
  }
  if (content.type === "found") {
    const indices = buffers.length ? toTyped(buffers[0], "int32") : new Int32Array(0);
    const scores = buffers.length > 1 ? toTyped(buffers[1], "float32") : null;
    store.dispatch("findResults", { indices, scores, source: content.source, query: content.query,
      message: content.message });
    if (content.open !== false && indices.length) {
      openGrid(resultsReview(store.state, { indices: Array.from(indices), source: content.source,
        query: content.query }));
    }
    return true;
  }
  if (content.type === "ack" && !content.ok && mine(content.request)) {
    store.dispatch("findError", content.error);
    return true;
  }
  return false;
}
