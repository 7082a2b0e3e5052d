"""Benchmark: the review grid with thousands of images, opened and scrolled in headless Chromium.

Part of bench/bench_widget.py (`--grid-items`), runnable alone. A Labeller over N points with
small synthetic images (28x28, like the demo's) is displayed in JupyterLab; `root.alw.select`
opens the review grid on `items` points (as a lasso over them would). Measured in the browser:

- open: the call -> the second animation frame after it (the grid is on screen);
- scroll: the grid body scrolled by 160 px per frame over its whole height; frame time = the
  interval between animation frames while scrolling (p50, p95, max), and the cards in the DOM;
- the same scroll over the obvious alternative in the same page: a plain grid with every card
  in the DOM (built by this benchmark with the same card markup, no virtualisation).

Thumbnails are requested for the visible cards while scrolling, as a user would see them.
"""
from __future__ import annotations

import numpy as np

SETUP_GRID = '''
import numpy as np
from alwidget.images import ImageSet
from alwidget.widget import Labeller
rng = np.random.default_rng(0)
n = {n}
X = rng.normal(size=(n, 16)).astype(np.float32)
pix = rng.integers(0, 255, size=(n, 28, 28), dtype=np.uint8)
w = Labeller(X, images=ImageSet.from_arrays(pix, names=[f"img_{{i:06d}}.png" for i in range(n)]), coords=X[:, :2],
             classes=[f"class {{k}}" for k in range(10)], store=":memory:", strategy="random", height=600)
w.session.wait()
print("setup done")
'''

# Opens the grid and scrolls it; returns timings (ms). `items` points, every (n // items)-th.
GRID_JS = """async ([items, step]) => {
  const r = document.querySelector('.alw-root');
  const n = Number(r.dataset.alwNPoints);
  const idx = Array.from({ length: items }, (_v, k) => Math.floor(k * n / items));
  const frame = () => new Promise((res) => requestAnimationFrame(res));
  const t0 = performance.now();
  r.alw.select(idx);
  await frame(); await frame();
  const openMs = performance.now() - t0;
  const body = r.querySelector('.alw-review-body');
  const out = { openMs, count: Number(r.dataset.alwReview) };
  out.grid = await scrollFrames(body, step, () => r.querySelectorAll('.alw-review-card').length);
  // the alternative: every card in the DOM (same markup, no virtualisation)
  const plain = document.createElement('div');
  plain.style.cssText = 'position:fixed; left:0; top:0; width:900px; height:600px; overflow-y:auto; ' +
    'display:flex; flex-wrap:wrap; gap:6px; background:#fff; z-index:1000';
  const tb = performance.now();
  for (const i of idx) {
    const card = document.createElement('div');
    card.className = 'alw-review-card';
    card.style.position = 'relative';
    const img = document.createElement('img');
    const name = document.createElement('div'); name.textContent = `img_${String(i).padStart(6, '0')}.png`;
    const cls = document.createElement('div'); cls.textContent = 'no class yet';
    const sel = document.createElement('select');
    for (let k = 0; k < 11; k++) { const o = document.createElement('option'); o.textContent = `class ${k}`; sel.appendChild(o); }
    card.append(img, name, cls, sel);
    plain.appendChild(card);
  }
  r.appendChild(plain);
  await frame(); await frame();
  out.plainOpenMs = performance.now() - tb;
  out.plain = await scrollFrames(plain, step, () => plain.children.length);
  plain.remove();
  return out;

  async function scrollFrames(el, dy, cards) {
    const times = [];
    let last = await frame();
    let maxCards = 0;
    const end = el.scrollHeight - el.clientHeight;
    for (let y = dy; y <= end + dy; y += dy) {
      el.scrollTop = Math.min(y, end);
      const t = await frame();
      times.push(t - last);
      last = t;
      maxCards = Math.max(maxCards, cards());
    }
    times.sort((a, b) => a - b);
    const q = (p) => times[Math.min(times.length - 1, Math.floor(p * times.length))];
    return { frames: times.length, p50: q(0.5), p95: q(0.95), max: times[times.length - 1], cards: maxCards };
  }
}"""


def bench_grid(page, items: int, timeout_s: float, run_cell, step_px: int = 160) -> dict:
    """Run the setup + display cells of a grid notebook on `page`, then open and scroll the grid."""
    run_cell(page, 0, timeout_s)
    run_cell(page, 1, timeout_s)
    page.wait_for_selector('.alw-root[data-alw-ready="1"]', timeout=timeout_s * 1000)
    page.locator(".alw-root").scroll_into_view_if_needed()
    out = page.evaluate(GRID_JS, [items, step_px])
    out["items"] = items
    return out


def grid_rows(r: dict) -> list[dict]:
    """Table rows (alwidget's grid, the plain grid) from one bench_grid result."""
    rows = []
    for key, who, open_key in (("grid", "alwidget review grid (virtualised)", "openMs"),
                               ("plain", "plain grid, every card in the DOM", "plainOpenMs")):
        s = r.get(key) or {}
        rows.append({"what": who, "items": f"{r.get('items', 0):,}", "open": r.get(open_key),
                     "p50": s.get("p50"), "p95": s.get("p95"), "max": s.get("max"),
                     "frames": s.get("frames"), "cards": s.get("cards")})
    return rows


GRID_COLUMNS = [("what", ""), ("items", "images"), ("open", "open → on screen (ms)"),
                ("p50", "scroll frame p50 (ms)"), ("p95", "scroll frame p95 (ms)"), ("max", "max (ms)"),
                ("frames", "frames"), ("cards", "cards in the DOM")]


def check(r: dict) -> None:
    """Sanity: the grid opened on every item and scrolled the whole way."""
    if r.get("count") != r.get("items"):
        raise AssertionError(f"the grid shows {r.get('count')} images, {r.get('items')} were selected")
    if not r.get("grid", {}).get("frames"):
        raise AssertionError("the grid did not scroll")
    assert np.isfinite(r["grid"]["p50"])
