// Colours for the map: a categorical palette per class, a ramp for uncertainty,
// and the theme (light/dark) read from JupyterLab's CSS variables.

// 20 distinguishable hues; beyond that they repeat with a lighter tint.
const PALETTE = [
  "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
  "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#17becf",
  "#8cd17d", "#b6992d", "#499894", "#d37295", "#a0cbe8",
  "#ffbe7d", "#86bcb6", "#f1ce63", "#d4a6c8", "#79706e",
];

function hexToRgba(hex, alpha = 1) {
  const v = parseInt(hex.slice(1), 16);
  return [((v >> 16) & 255) / 255, ((v >> 8) & 255) / 255, (v & 255) / 255, alpha];
}

/** n class colours as [r, g, b, a] floats in [0, 1]. */
export function categoricalColors(n, theme) {
  const out = [];
  for (let k = 0; k < n; k++) {
    const [r, g, b] = hexToRgba(PALETTE[k % PALETTE.length]);
    const round = Math.floor(k / PALETTE.length);
    const t = Math.min(0.6, round * 0.3); // later rounds mix towards the background
    const bg = theme.background;
    out.push([r * (1 - t) + bg[0] * t, g * (1 - t) + bg[1] * t, b * (1 - t) + bg[2] * t, 1]);
  }
  return out;
}

/** 32 colours from calm (certain) to hot (uncertain), readable on either background. */
export function uncertaintyRamp(theme) {
  const lo = theme.dark ? [0.25, 0.3, 0.45] : [0.78, 0.82, 0.9];
  const mid = [0.95, 0.7, 0.2];
  const hi = [0.85, 0.1, 0.1];
  const out = [];
  for (let k = 0; k < 32; k++) {
    const t = k / 31;
    const [a, b, u] = t < 0.5 ? [lo, mid, t * 2] : [mid, hi, (t - 0.5) * 2];
    out.push([a[0] + (b[0] - a[0]) * u, a[1] + (b[1] - a[1]) * u, a[2] + (b[2] - a[2]) * u, 1]);
  }
  return out;
}

function parseCssColor(text) {
  const m = /rgba?\(([^)]+)\)/.exec(text || "");
  if (!m) return null;
  const parts = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
  if (parts.length < 3 || parts.some((v) => Number.isNaN(v))) return null;
  const a = parts.length > 3 ? parts[3] : 1;
  if (a === 0) return null; // transparent: look further up
  return [parts[0] / 255, parts[1] / 255, parts[2] / 255, 1];
}

/** Resolved theme colours for an element inside (or outside) JupyterLab. */
export function themeColors(elem) {
  let bg = null;
  for (let node = elem; node && node.nodeType === 1 && !bg; node = node.parentElement) {
    bg = parseCssColor(getComputedStyle(node).backgroundColor);
  }
  if (!bg) bg = [1, 1, 1, 1];
  const luminance = 0.2126 * bg[0] + 0.7152 * bg[1] + 0.0722 * bg[2];
  const dark = luminance < 0.5;
  const accent = dark ? [0.35, 0.65, 1, 1] : [0.1, 0.46, 0.82, 1];
  return {
    dark,
    background: bg,
    unlabelled: dark ? [0.55, 0.55, 0.6, 0.45] : [0.55, 0.55, 0.58, 0.4],
    accent,
    hover: dark ? [1, 1, 1, 1] : [0, 0, 0, 1],
  };
}
