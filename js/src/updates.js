// The named updates of the view state (store.js). Each is pure: (state, ...args) -> new state.
// Per-point arrays are shared between states; an update that changes one copies it first and
// bumps a version counter (coordsV, labelsV, modelV, batchV) so views redraw only what changed.

export const COLOR_MODES = ["label", "prediction", "uncertainty"];
export const FLAG_UNSURE = 1;
export const FLAG_SKIPPED = 2;

export function initialState(colorBy = "prediction") {
  return {
    n: 0,
    version: -1,
    x: null,
    y: null,
    label: null,
    flags: null,
    pred: null,
    uncert: null,
    batch: new Int32Array(0),
    coordsV: 0,
    labelsV: 0,
    modelV: 0,
    batchV: 0,
    selected: [],
    selectionSource: null,
    hovered: -1,
    focusPos: -1, // position in the batch of the focused gallery card
    colorBy: COLOR_MODES.includes(colorBy) ? colorBy : "prediction",
    mode: "pan",
    classes: [],
    status: {},
    recent: [],
    connection: { state: "connected", reason: "" },
    pending: [], // requests sent and not yet acknowledged: {request, text, count, time}
    notice: { text: "", seq: 0 },
    review: null, // the open review grid (review.js), or null
    helpOpen: false,
  };
}

/** True when point i is neither labelled nor answered unsure/skipped. */
export function isOpen(state, i) {
  return !!state.label && state.label[i] < 0 && !(state.flags && state.flags[i]);
}

/** Position of the first open batch card at or after `from` (wrapping), skipping `exclude`; -1 if none. */
export function nextOpenPos(state, from, exclude = -1) {
  const B = state.batch.length;
  for (let k = 0; k < B; k++) {
    const pos = (((from + k) % B) + B) % B;
    const i = state.batch[pos];
    if (i !== exclude && isOpen(state, i) && !isPending(state, i)) return pos;
  }
  return -1;
}

/** True while point i has an answer on its way to the kernel. */
export function isPending(state, i) {
  return state.pending.some((p) => p.indices && p.indices.includes(i));
}

/** The colour mode actually drawn: predictions need a model trained on two classes. */
export function effectiveColorBy(state) {
  if (state.colorBy === "prediction" && !(state.status && state.status.has_model)) return "label";
  return state.colorBy;
}

function sameArray(a, b) {
  if (a.length !== b.length) return false;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
  return true;
}

/** A commit of arrays from the kernel: {reset, n, version, arrays: Map(name -> typed array)}. */
function arrays(state, { reset, n, version, arrays: got }) {
  let s = { ...state, version };
  if (reset) {
    s = {
      ...s,
      n,
      label: new Int16Array(n).fill(-1),
      flags: new Uint8Array(n),
      pred: new Int16Array(n).fill(-1),
      uncert: new Uint8Array(n),
      selected: [],
      hovered: -1,
      review: null,
      coordsV: s.coordsV + 1,
      labelsV: s.labelsV + 1,
      modelV: s.modelV + 1,
    };
  }
  for (const [name, arr] of got) {
    if (name === "batch") {
      if (!sameArray(arr, s.batch)) s = withBatch(s, arr);
    } else if (arr.length !== s.n) {
      continue; // a stale array of another size: ignore rather than draw garbage
    } else if (name === "x" || name === "y") {
      s = { ...s, [name]: arr, coordsV: s.coordsV + 1 };
    } else if (name === "label" || name === "flags") {
      s = { ...s, [name]: arr, labelsV: s.labelsV + 1 };
    } else if (name === "pred" || name === "uncert") {
      s = { ...s, [name]: arr, modelV: s.modelV + 1 };
    }
  }
  return s;
}

function withBatch(state, batch) {
  // The focus stays on the same image when it is still in the batch (the order is stable).
  const focused = state.focusPos >= 0 ? state.batch[state.focusPos] : -1;
  let focusPos = focused >= 0 ? Array.prototype.indexOf.call(batch, focused) : -1;
  const s = { ...state, batch, batchV: state.batchV + 1, focusPos };
  if (focusPos < 0 && state.selected.length === 1 && state.selectionSource === "card") {
    focusPos = nextOpenPos(s, 0);
    return { ...s, focusPos, selected: focusPos >= 0 ? [batch[focusPos]] : [] };
  }
  return s;
}

/** Label changes: {idx Int32Array, cls Int16Array, flags Uint8Array|null, request}. */
function labels(state, { idx, cls, flags, request }) {
  if (!state.label) return state;
  const label = state.label.slice();
  const flg = state.flags.slice();
  for (let k = 0; k < idx.length; k++) {
    const i = idx[k];
    if (i < 0 || i >= state.n) continue;
    label[i] = cls[k];
    flg[i] = flags ? flags[k] : 0;
  }
  const s = { ...state, label, flags: flg, labelsV: state.labelsV + 1 };
  return request == null ? s : ack(s, { request, ok: true });
}

function select(state, { indices, source = "click" }) {
  const selected = Array.from(indices);
  let focusPos = state.focusPos;
  if (selected.length === 1) {
    const pos = Array.prototype.indexOf.call(state.batch, selected[0]);
    focusPos = pos;
  }
  return { ...state, selected, selectionSource: selected.length ? source : null, focusPos };
}

function clearSelection(state) {
  if (!state.selected.length && state.focusPos < 0) return state;
  return { ...state, selected: [], selectionSource: null, focusPos: -1 };
}

/** Focus batch card `pos` (it becomes the selection); -1 clears. */
function focusCard(state, pos) {
  if (pos < 0 || pos >= state.batch.length) return clearSelection(state);
  return { ...state, focusPos: pos, selected: [state.batch[pos]], selectionSource: "card" };
}

function hover(state, i) {
  return i === state.hovered ? state : { ...state, hovered: i };
}

function colorBy(state, mode) {
  return COLOR_MODES.includes(mode) && mode !== state.colorBy ? { ...state, colorBy: mode } : state;
}

function setMode(state, mode) {
  return mode === state.mode ? state : { ...state, mode };
}

function status(state, st) {
  return { ...state, status: st || {} };
}

function classes(state, list) {
  return { ...state, classes: Array.from(list || []) };
}

function recent(state, list) {
  return { ...state, recent: Array.from(list || []) };
}

function connection(state, { connected, reason = "" }) {
  const next = connected ? "connected" : "disconnected";
  if (state.connection.state === next && state.connection.reason === reason) return state;
  if (state.connection.state === "disconnected" && connected) return state; // a dead comm stays dead
  return { ...state, connection: { state: next, reason } };
}

/** A request on its way: {request, text, indices?, time}. */
function pending(state, entry) {
  return { ...state, pending: [...state.pending, entry] };
}

function ack(state, { request, ok, error }) {
  if (!state.pending.some((p) => p.request === request)) return state;
  const s = { ...state, pending: state.pending.filter((p) => p.request !== request) };
  return ok ? s : notice(s, error || "the kernel refused the request");
}

function notice(state, text) {
  return { ...state, notice: { text: String(text || ""), seq: state.notice.seq + 1 } };
}

function openReview(state, review) {
  return { ...state, review };
}

function closeReview(state) {
  return state.review ? { ...state, review: null } : state;
}

function help(state, open) {
  const next = open === undefined ? !state.helpOpen : !!open;
  return next === state.helpOpen ? state : { ...state, helpOpen: next };
}

export const UPDATES = {
  arrays,
  labels,
  select,
  clearSelection,
  focusCard,
  hover,
  colorBy,
  setMode,
  status,
  classes,
  recent,
  connection,
  pending,
  ack,
  notice,
  openReview,
  closeReview,
  help,
};
