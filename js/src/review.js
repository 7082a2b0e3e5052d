// The review grid's model, pure: every multi-image action (lasso, box, accepting the batch)
// shows its images with the class each will get before anything is labelled. The user leaves
// images out, relabels single ones, then commits; the commit becomes one group per class.

/**
 * A new review.
 * @param {object} o
 * @param {string} o.source "lasso" | "box" | "accept" | "select"
 * @param {ArrayLike<number>} o.indices the images
 * @param {ArrayLike<number>} [o.proposed] a class id per image (-1: none yet), e.g. predictions
 * @param {ArrayLike<number>} [o.conf] confidence per image in [0, 1] (NaN: unknown)
 * @param {ArrayLike<number>} [o.current] the label each image has now (a re-check): a commit
 *   sends only the images whose class differs from it
 * @param {string[]} [o.notes] a line per card (e.g. what the model suggests)
 */
export function createReview({ source, indices, proposed = null, conf = null, current = null, notes = null }) {
  const n = indices.length;
  const prop = new Int16Array(n).fill(-1);
  if (proposed) for (let k = 0; k < n; k++) prop[k] = proposed[k];
  return {
    source,
    indices: Int32Array.from(indices),
    proposed: prop, // the class proposed per image (a prediction), -1 none
    own: new Int16Array(n).fill(-1), // the class the user gave this image alone, -1 none
    conf: conf ? Float32Array.from(conf) : null,
    current: current ? Int16Array.from(current) : null,
    notes: notes ? Array.from(notes, String) : null,
    included: new Uint8Array(n).fill(1),
    groupClass: -1, // class for every image without its own, chosen with a number key
    focus: -1, // the card with keyboard focus, -1 none
  };
}

function copy(r, patch) {
  return { ...r, ...patch };
}

/** Leave image k out (or take it back). */
export function toggle(r, k) {
  if (k < 0 || k >= r.indices.length) return r;
  const included = r.included.slice();
  included[k] = included[k] ? 0 : 1;
  return copy(r, { included });
}

/** Give image k its own class. */
export function setOwnClass(r, k, cls) {
  if (k < 0 || k >= r.indices.length) return r;
  const own = r.own.slice();
  own[k] = cls;
  return copy(r, { own });
}

/** A number key: the focused card's class, or the class of every image not set one by one. */
export function applyClassKey(r, cls) {
  if (r.focus >= 0) return setOwnClass(r, r.focus, cls);
  return copy(r, { groupClass: cls });
}

/** The class image k gets on commit: its own, else the group's, else the proposal (-1: none). */
export function classOf(r, k) {
  if (r.own[k] >= 0) return r.own[k];
  return r.groupClass >= 0 ? r.groupClass : r.proposed[k];
}

/** Move the keyboard focus by (dx, dy) cards in a grid of `cols` columns. */
export function moveFocus(r, dx, dy, cols) {
  const n = r.indices.length;
  if (!n) return r;
  if (r.focus < 0) return copy(r, { focus: 0 });
  const next = Math.min(n - 1, Math.max(0, r.focus + dx + dy * Math.max(1, cols)));
  return next === r.focus ? r : copy(r, { focus: next });
}

export function clearFocus(r) {
  return r.focus < 0 ? r : copy(r, { focus: -1 });
}

/** What a commit would do: {groups: Map(class -> indices[]), kept, missing, excluded, unchanged}. */
export function commitPlan(r) {
  const groups = new Map();
  let kept = 0;
  let missing = 0;
  let unchanged = 0; // a re-check: images that keep the label they have
  for (let k = 0; k < r.indices.length; k++) {
    if (!r.included[k]) continue;
    kept += 1;
    const c = classOf(r, k);
    if (c < 0) {
      missing += 1;
      continue;
    }
    if (r.current && c === r.current[k]) {
      unchanged += 1;
      continue;
    }
    if (!groups.has(c)) groups.set(c, []);
    groups.get(c).push(r.indices[k]);
  }
  return { groups, kept, missing, excluded: r.indices.length - kept, unchanged };
}

/** The header sentence: count and class(es) before commit, e.g. "Label 93 of 95 as Bag". */
export function summary(r, classNames) {
  const plan = commitPlan(r);
  const name = (c) => classNames[c] ?? `class ${c + 1}`;
  const total = r.indices.length;
  const of = plan.kept === total ? `${total}` : `${plan.kept} of ${total}`;
  if (!plan.kept) return { ready: false, text: `Every image is left out: Enter does nothing, Escape closes.` };
  if (r.current) return recheckSummary(plan, name);
  if (plan.missing) {
    const what = plan.groups.size ? `${plan.missing} image(s) still have no class` : "No class chosen yet";
    return { ready: false, text: `${of} image(s) kept. ${what}: press 1–9 to choose.` };
  }
  const parts = [...plan.groups].map(([c, idx]) => [c, idx.length]).sort((a, b) => b[1] - a[1]);
  if (parts.length === 1) return { ready: true, text: `Label ${of} image(s) as ${name(parts[0][0])}` };
  return { ready: true, text: `Label ${of} image(s): ${parts.map(([c, k]) => `${k} ${name(c)}`).join(", ")}` };
}

/** A re-check's header: only images given another class are relabelled. */
function recheckSummary(plan, name) {
  const parts = [...plan.groups].map(([c, idx]) => [c, idx.length]).sort((a, b) => b[1] - a[1]);
  const n = parts.reduce((a, [, k]) => a + k, 0);
  if (!n) {
    return { ready: false, text: "Nothing relabelled: every label stays as it is. Give a card another class "
      + "(its menu, or focus it and press 1–9) only if it is wrong; Escape closes." };
  }
  if (parts.length === 1) return { ready: true, text: `Relabel ${n} image(s) as ${name(parts[0][0])}; the others keep their label` };
  return { ready: true, text: `Relabel ${n} image(s): ${parts.map(([c, k]) => `${k} ${name(c)}`).join(", ")}; the others keep their label` };
}

/**
 * Rows to render in a virtualised grid: [first, last) card indices for the visible rows plus
 * `overscan` rows above and below.
 */
export function visibleRange({ scrollTop, viewport, rowHeight, count, cols, overscan = 2 }) {
  cols = Math.max(1, cols);
  const rows = Math.ceil(count / cols);
  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - overscan);
  const last = Math.min(rows, Math.ceil((scrollTop + viewport) / rowHeight) + overscan);
  return { first: first * cols, last: Math.min(count, last * cols), rows };
}
