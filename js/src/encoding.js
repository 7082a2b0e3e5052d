// How a point looks, pure: its colour category (class), block (answered? in the batch?) and
// the colour/size tables handed to regl-scatterplot. One category per class plus "none",
// repeated in 4 blocks: open, answered, open batch, answered batch. Blocks change only size
// and alpha, so the batch stands out in every colour mode. While a filter or search results are
// shown (find.js) a fifth block holds what they leave out: small and faint.
import { categoricalColors, uncertaintyRamp } from "./colors.js";
import { FLAG_UNSURE } from "./updates.js";

export function basePointSize(n) {
  if (n < 5000) return 6;
  if (n < 50000) return 4;
  if (n < 300000) return 3;
  return 2;
}

/** Block sizes: open, answered (the user's own answers stay visible), batch (largest). */
export function blockSizes(n) {
  const base = basePointSize(n);
  return [base, Math.round(base * 1.6 + 1), base * 2 + 3, base * 2 + 3];
}

export const DIM_ALPHA = 0.12;

/** regl-scatterplot settings for K categories (classes + 1) in colour mode `mode`; `dimmed`:
 * the fifth block (points a filter leaves out) is in use. */
export function encodingProps(K, n, theme, mode, dimmed = false) {
  const sizes = [];
  const bs = blockSizes(n);
  const blocks = dimmed ? 5 : 4;
  bs[4] = Math.max(1, Math.round(bs[0] * 0.6));
  for (let b = 0; b < blocks; b++) for (let k = 0; k < K; k++) sizes.push(bs[b]);
  const props = { sizeBy: "valueA", pointSize: sizes, pointColorActive: theme.accent };
  if (mode === "uncertainty") {
    props.colorBy = "valueB";
    props.pointColor = uncertaintyRamp(theme);
    if (dimmed) {
      props.opacityBy = "valueA";
      props.opacity = sizes.map((_s, z) => (z >= 4 * K ? DIM_ALPHA : 1));
    }
    return props;
  }
  const cats = categoricalColors(K - 1, theme);
  const colors = [];
  for (let b = 0; b < blocks; b++) {
    for (let k = 0; k < K; k++) {
      const [r, g, bl, a] = k === 0 ? theme.unlabelled : cats[k - 1];
      // open points in prediction mode are faded: the colour is a guess, not an answer
      colors.push([r, g, bl, b === 4 ? DIM_ALPHA : b === 0 ? a * (k === 0 ? 1 : 0.55) : a]);
    }
  }
  props.colorBy = "valueA";
  props.pointColor = colors;
  return props;
}

/** A (N,) Uint8Array: 1 for points in the batch. */
export function batchMask(n, batch) {
  const m = new Uint8Array(n);
  for (const i of batch) if (i >= 0 && i < n) m[i] = 1;
  return m;
}

/**
 * The z value (category + K * block) of point i.
 * byPred: colour open points by their predicted class; K: classes + 1; dim: (N,) 1 = left out
 * by the filter (block 4), or null.
 */
export function categoryOf(state, i, inBatch, byPred, K, dim = null) {
  const l = state.label[i];
  let c = l >= 0 ? l + 1 : byPred && state.pred[i] >= 0 ? state.pred[i] + 1 : 0;
  if (c >= K) c = 0; // a class the legend does not know yet
  if (dim && dim[i]) return c + K * 4;
  const answered = l >= 0 || (state.flags[i] & FLAG_UNSURE) !== 0 ? 1 : 0;
  return c + K * ((inBatch << 1) | answered);
}

/** Priority for the level of detail: which point of a crowded cell is shown. */
export function priorityOf(state, inBatch, dim = null) {
  return (i) => (dim && dim[i] ? -1 : inBatch[i] ? 3 : state.label[i] >= 0 ? 2 : state.flags[i] ? 1 : 0);
}

/**
 * Write [x, y, z, w] for drawn slot s into pts[s]. `drawn[s]` gives the position, `shown[s]` the
 * point whose look is drawn (the same point unless the level of detail merges a cell).
 */
export function fillPoints(pts, state, { drawn, shown, inBatch, byPred, K, coords, dim = null }) {
  const { x, y, uncert } = state;
  for (let s = 0; s < drawn.length; s++) {
    let p = pts[s];
    if (!p || coords) {
      p = pts[s] = [x[drawn[s]], y[drawn[s]], 0, 0];
    }
    const i = shown[s];
    p[2] = categoryOf(state, i, inBatch[i], byPred, K, dim);
    p[3] = uncert[i] / 255;
  }
  pts.length = drawn.length;
  return pts;
}
