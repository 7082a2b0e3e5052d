// Every key the widget knows, in one table: the key handler (input.js) resolves keys through
// it and the `?` overlay lists it, so the help can never miss a key.

/** [keys shown, what it does, where it works ("map" or "grid")]. */
export const KEY_HELP = [
  ["1 … 9, 0", "label the selected image with class 1 … 10 (nothing selected: nothing happens)", "map"],
  ["u", "answer “unsure” for the selected image (kept, not trained on, listed for review)", "map"],
  ["Space", "skip the selected image (it comes back later)", "map"],
  ["← →", "previous / next suggested image", "map"],
  ["a or Enter", "review the batch as predicted (needs labels in 2 classes)", "map"],
  ["n", "a new batch of suggestions", "map"],
  ["Backspace", "undo the last answer", "map"],
  ["c", "next colouring: prediction, given label, uncertainty", "map"],
  ["f", "fit the map to the view", "map"],
  ["z", "zoom to the selection", "map"],
  ["m", "more like this: the images nearest the hovered or selected one, in the review grid", "map"],
  ["Shift + drag", "lasso: review the images inside before labelling them", "map"],
  ["Escape", "clear the selection", "map"],
  ["?", "show or hide this list of keys", "map"],
  ["1 … 9, 0", "class for every image not set one by one (or for the focused card only)", "grid"],
  ["← → ↑ ↓", "move the card focus", "grid"],
  ["Space or click", "leave the focused / clicked image out (again: back in)", "grid"],
  ["Enter", "label the images kept, as shown", "grid"],
  ["Escape", "drop the card focus; with none, cancel (nothing is labelled)", "grid"],
];

/** The class id a digit key stands for (1 -> 0, ..., 9 -> 8, 0 -> 9), or -1. */
export function classOfKey(key) {
  if (!/^[0-9]$/.test(key)) return -1;
  return key === "0" ? 9 : Number(key) - 1;
}

const MAP_KEYS = {
  u: "unsure",
  " ": "skip",
  ArrowRight: "next",
  ArrowLeft: "prev",
  a: "accept",
  Enter: "accept",
  n: "newBatch",
  Backspace: "undo",
  c: "cycleColor",
  f: "fit",
  z: "zoomSelection",
  m: "moreLikeThis",
  Escape: "escape",
  "?": "help",
};

const GRID_KEYS = {
  ArrowRight: "gridRight",
  ArrowLeft: "gridLeft",
  ArrowDown: "gridDown",
  ArrowUp: "gridUp",
  " ": "gridToggle",
  Enter: "gridCommit",
  Escape: "gridEscape",
  "?": "help",
};

/**
 * The action for a key event, or null: {action, classId?}.
 * ev: {key, ctrlKey, metaKey, altKey}; ctx: {gridOpen, helpOpen}.
 */
export function actionFor(ev, ctx = {}) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return null;
  const cls = classOfKey(ev.key);
  if (ctx.helpOpen && (ev.key === "Escape" || ev.key === "?")) return { action: "help" };
  if (ctx.gridOpen) {
    if (cls >= 0) return { action: "gridClass", classId: cls };
    return GRID_KEYS[ev.key] ? { action: GRID_KEYS[ev.key] } : null;
  }
  if (cls >= 0) return { action: "label", classId: cls };
  return MAP_KEYS[ev.key] ? { action: MAP_KEYS[ev.key] } : null;
}
