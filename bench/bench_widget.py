"""Benchmark: the labelling map in a real browser, alwidget vs a plotly FigureWidget (scattergl).

What runs: a JupyterLab server on 127.0.0.1 and Debian's headless Chromium (software WebGL,
SwiftShader), driven by Playwright through the same harness as the browser tests
(tests/browser/labharness.py). Each (widget, N) gets its own notebook and kernel. Nothing is
shimmed: both widgets go through Jupyter's websocket, the widget manager and anywidget exactly as
a user's would.

Measured in the browser (performance.now(), an init script wraps WebSocket and watches the DOM):

- display: the display cell is run (its execute_request leaves the browser) -> first paint of
  the points (alwidget: `data-alw-ready`; plotly: its `plotlywidget-after-render` event), plus one
  animation frame so the frame is on screen. alwidget's cell only displays a Labeller built in
  an untimed cell before: its arrays travel on the view's `hello`. plotly's cell builds and
  displays the FigureWidget: its arrays travel with the widget's creation. Both therefore time
  "send the points and draw them".
- render after data: first paint minus the arrival of the last large (>= 4 kB) websocket frame
  before it; for alwidget also its own `timings.firstPaintMs` (reset commit -> drawn).
- bytes: websocket bytes received by the browser between the execute request and the paint.
- label -> recoloured: both maps show predictions of the same alwidget Session (same probe,
  same random strategy, 2 labels per class given before). alwidget: click an isolated point,
  press its class's number key; time from the keydown to the first paint after the retrained
  predictions arrived (the label's own message usually lands in the same frame). plotly: hover
  + click a point; its on_click callback labels it in the Session, waits for the retrain and
  sets `marker.color` to the new predictions and `marker.size` (labelled points larger); time from the mousedown to one frame after
  plotly's `plotly_update` (or `plotly_restyle`) event.

Plus the review grid (bench_widget_grid.py): 5,000 images opened and scrolled, against a plain
grid with every card in the DOM.

    .venv/bin/python bench/bench_widget.py --quick        # N = 10k only: a smoke run (a few minutes)
    .venv/bin/python bench/bench_widget.py                # display 10k/100k/1M, recolour 10k/100k
"""
from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

import _common as C

sys.path.insert(0, str(C.REPO_DIR / "tests" / "browser"))
from labharness import LabServer, launch_chromium, local_only, wait_notebook_ready  # noqa: E402

import bench_widget_grid as G  # noqa: E402

CLASSES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]

# The same synthetic points in the kernel (exec'd from the notebook) and in this process.
DATA_CODE = '''
import numpy as np
def bench_data(n, d=16, seed=0):
    """(X (n, d) float32 features, xy (n, 2) float32 map coordinates, y (n,) int64 classes)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, d)).astype(np.float32) * 2.5
    y = rng.integers(0, 10, size=n)
    X = centres[y] + rng.normal(size=(n, d)).astype(np.float32)
    xy = (X[:, :2] + rng.normal(scale=0.3, size=(n, 2))).astype(np.float32)
    return X.astype(np.float32), xy, y
'''

SETUP_ALWIDGET = '''
{data}
import time
from alwidget.widget import Labeller
X, xy, y = bench_data({n}, {dim})
CLASSES = {classes!r}
t = time.perf_counter()
w = Labeller(X, coords=xy, classes=CLASSES, store=":memory:", strategy="random", batch_size=10, height=600)
rng = np.random.default_rng(1)
for c in range(10):  # two labels per class: the probe has something to learn from
    w.handle_message({{"type": "label", "indices": rng.choice(np.flatnonzero(y == c), 2, replace=False).tolist(), "class": c}})
w.session.wait()
print(f"setup {{time.perf_counter() - t:.2f}} s")
'''

SETUP_PLOTLY = '''
{data}
import time
import plotly.graph_objects as go
from alwidget.session import Session
X, xy, y = bench_data({n}, {dim})
CLASSES = {classes!r}
SCALE = [[k / 9, c] for k, c in enumerate(["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"])]
t = time.perf_counter()
sess = Session(X, classes=CLASSES, store=":memory:", strategy="random", batch_size=10)
rng = np.random.default_rng(1)
for c in range(10):
    sess.label_many(rng.choice(np.flatnonzero(y == c), 2, replace=False), CLASSES[c])
sess.wait()
pred0 = sess.predict_proba().argmax(axis=1).astype(np.float32)
print(f"setup {{time.perf_counter() - t:.2f}} s")
'''

DISPLAY_ALWIDGET = "w"

DISPLAY_PLOTLY = '''
size = np.full(len(xy), 3, dtype=np.float32)
fig = go.FigureWidget(
    [go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers",
                  marker=dict(size=size, color=pred0, colorscale=SCALE, cmin=0, cmax=9))],
    layout=dict(height=600, hovermode="closest", margin=dict(l=40, r=10, t=10, b=30)))
def on_click(trace, points, state):  # the obvious alternative: label, retrain, recolour
    if not points.point_inds:
        return
    i = int(points.point_inds[0])
    sess.label(i, CLASSES[int(y[i])])
    sess.wait()
    size[i] = 7  # labelled points drawn larger: the map changes even when no prediction does
    with fig.batch_update():  # plotly only sends what differs from its Python-side copy
        trace.marker.color = sess.predict_proba().argmax(axis=1).astype(np.float32)
        trace.marker.size = size
fig.data[0].on_click(on_click)
fig
'''

# Browser-side instrumentation, installed before any page script runs.
INIT_JS = r"""
(() => {
  const rec = window.__bench = { recv: [], exec: null, paint: null, paints: [], restyles: [],
                                 keyT: null, downT: null, cards: [] };
  const next = (fn) => requestAnimationFrame((t) => fn(performance.now()));
  const Native = window.WebSocket;
  class Counting extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (ev) => {
        const d = ev.data;
        const n = typeof d === "string" ? d.length : (d.byteLength ?? d.size ?? 0);
        rec.recv.push([performance.now(), n]);
      });
    }
    send(data) {
      try {
        let head = "";
        if (typeof data === "string") head = data.slice(0, 4096);
        else {
          const u8 = ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
                                              : new Uint8Array(data);
          head = new TextDecoder().decode(u8.subarray(0, 4096));
        }
        if (head.includes('"execute_request"')) rec.exec = performance.now();
      } catch (e) { /* never break the socket */ }
      return super.send(data);
    }
  }
  window.WebSocket = Counting;
  document.addEventListener("plotlywidget-after-render", () => next((t) => { if (rec.paint === null) rec.paint = t; }));
  document.addEventListener("keydown", () => { rec.keyT = performance.now(); }, true);
  document.addEventListener("mousedown", () => { rec.downT = performance.now(); }, true);
  const watch = () => new MutationObserver((muts) => {
    for (const m of muts) {
      const el = m.target;
      if (m.attributeName === "data-alw-ready" && el.dataset.alwReady === "1")
        next((t) => { if (rec.paint === null) rec.paint = t; });
      if (m.attributeName === "data-alw-paints") {
        const v = Number(el.dataset.alwVersion || 0), p = Number(el.dataset.alwPaints || 0);
        next((t) => rec.paints.push([t, p, v]));
      }
    }
  }).observe(document.documentElement, { attributes: true, subtree: true,
                                         attributeFilter: ["data-alw-ready", "data-alw-paints"] });
  // batch cards as they appear ([frame time, row]): "the next batch is on screen"
  const watchCards = () => new MutationObserver((muts) => {
    for (const m of muts) for (const el of m.addedNodes) {
      if (el.classList && el.classList.contains("alw-card") && el.closest(".alw-gallery"))
        next((t) => rec.cards.push([t, Number(el.dataset.index)]));
    }
  }).observe(document.documentElement, { childList: true, subtree: true });
  const both = () => { watch(); watchCards(); };
  if (document.documentElement) both(); else document.addEventListener("DOMContentLoaded", both);
})();
"""

RUN_CELL_JS = """(k) => {
  const panel = window.jupyterapp.shell.currentWidget;
  panel.content.activeCellIndex = k;
  window.__cellDone = false;
  window.jupyterapp.commands.execute('notebook:run-cell').then(() => { window.__cellDone = true; },
                                                              () => { window.__cellDone = 'error'; });
}"""


def write_notebook(path: Path, cells: list[str]):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


def shutdown_kernels(server: LabServer):
    for k in server.api("/api/kernels"):
        req = urllib.request.Request(f"{server.url}/api/kernels/{k['id']}", method="DELETE",
                                     headers={"Authorization": f"token {server.token}"})
        urllib.request.urlopen(req, timeout=30).close()


def run_cell(page, k: int, timeout_s: float):
    page.evaluate(RUN_CELL_JS, k)
    page.wait_for_function("() => window.__cellDone !== false", timeout=timeout_s * 1000, polling=100)
    errors = page.evaluate(f"""() => window.jupyterapp.shell.currentWidget.content.widgets[{k}]
        .model.outputs.toJSON().filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue)""")
    if errors:
        raise RuntimeError(f"cell {k} failed: {errors}")


def cell_text(page, k: int) -> str:
    return page.evaluate(f"""() => window.jupyterapp.shell.currentWidget.content.widgets[{k}]
        .model.outputs.toJSON().map(o => [].concat(o.text || '').join('')).join('')""")


def display_metrics(page) -> dict:
    """Timings of the display step from the instrumentation (ms, bytes)."""
    return page.evaluate("""() => {
        const r = window.__bench;
        const inWindow = r.recv.filter(([t]) => t >= r.exec && t <= r.paint);
        const big = inWindow.filter(([, n]) => n >= 4096);
        const lastBig = big.length ? big[big.length - 1][0] : null;
        return { displayMs: r.paint - r.exec, bytes: inWindow.reduce((s, [, n]) => s + n, 0),
                 renderAfterDataMs: lastBig === null ? null : r.paint - lastBig, frames: inWindow.length };
    }""")


def isolated(px: np.ndarray, candidates: np.ndarray, box: dict, gap: float, k: int, seed: int) -> list[int]:
    """Up to k candidate points inside `box` whose nearest other point is >= gap px away."""
    from scipy.spatial import cKDTree

    finite = np.isfinite(px).all(axis=1)
    tree = cKDTree(px[finite])
    inside = candidates[(px[candidates, 0] > box["x"] + 15) & (px[candidates, 0] < box["x"] + box["width"] - 15)
                        & (px[candidates, 1] > box["y"] + 15) & (px[candidates, 1] < box["y"] + box["height"] - 15)]
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.permutation(inside):
        d, _ = tree.query(px[i], k=2)
        if d[1] >= gap:
            out.append(int(i))
            if len(out) == k:
                break
    return out


def time_display(page, timeout_s: float) -> dict:
    """Run the setup cell (untimed), then the display cell until its first paint; the display metrics."""
    run_cell(page, 0, timeout_s)
    setup = cell_text(page, 0).strip()
    page.evaluate("() => { window.__bench.exec = null; window.__bench.paint = null; }")
    page.evaluate(RUN_CELL_JS, 1)
    page.wait_for_function("() => window.__bench.paint !== null", timeout=timeout_s * 1000, polling=50)
    return {"setup": setup, **display_metrics(page)}


def bench_alwidget(page, n: int, y: np.ndarray, reps: int, recolour: bool, timeout_s: float) -> dict:
    out = time_display(page, timeout_s)
    out["esm_bytes"] = 0  # sent with the Labeller's creation in the untimed cell
    out["own"] = page.evaluate("() => document.querySelector('.alw-root').alw.timings")
    if not recolour:
        return out
    root = page.locator(".alw-root")
    root.scroll_into_view_if_needed()
    page.select_option("select.alw-color-by", "prediction")
    time.sleep(1.0)
    px = np.asarray(page.evaluate("""() => { const r = document.querySelector('.alw-root'); const n = +r.dataset.alwNPoints;
        const o = new Array(n); for (let i = 0; i < n; i++) { const p = r.alw.screenPosition(i); o[i] = p || [NaN, NaN]; }
        return o; }"""), dtype=float)
    labelled = np.asarray(page.evaluate("() => Array.from(document.querySelector('.alw-root').alw.state().labels)"))
    box = page.locator(".alw-canvas").first.bounding_box()
    recoloured, own, missed = [], [], 0
    for i in isolated(px, np.flatnonzero(labelled < 0), box, gap=6.0, k=4 * reps, seed=n):
        if len(recoloured) == reps:
            break
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] - 20)  # off the map: the hover card hides
        time.sleep(0.3)
        if not page.evaluate("([x, y]) => document.elementFromPoint(x, y)?.classList.contains('alw-canvas')",
                             [float(px[i, 0]), float(px[i, 1])]):
            missed += 1  # under the legend
            continue
        page.mouse.click(*px[i])
        try:
            page.wait_for_function(f"""() => {{ const r = document.querySelector('.alw-root');
                return r.dataset.alwSelected === '1' && r.alw.state().selected[0] === {i}; }}""", timeout=5000)
        except Exception:
            missed += 1
            continue
        v0 = int(page.get_attribute(".alw-root", "data-alw-version"))
        page.evaluate("() => { window.__bench.paints = []; }")
        page.keyboard.press(str((int(y[i]) + 1) % 10))
        # the label's own message is version v0+1; the retrained predictions come with a later commit
        page.wait_for_function(f"() => window.__bench.paints.some(([t, p, v]) => v >= {v0 + 2})",
                               timeout=timeout_s * 1000, polling=50)
        r = page.evaluate(f"""() => {{ const b = window.__bench;
            const first = (vmin) => b.paints.find(([t, p, v]) => v >= vmin);
            return {{ recoloured: first({v0 + 2})[0] - b.keyT,
                      own: document.querySelector('.alw-root').alw.timings.lastRecolourMs }}; }}""")
        recoloured.append(r["recoloured"])
        own.append(r["own"])
        time.sleep(0.5)
    out.update(recoloured_ms=recoloured, own_recolour_ms=own, click_missed=missed,
               batch_ms=time_next_batch(page, y, reps, timeout_s))
    return out


def time_next_batch(page, y: np.ndarray, reps: int, timeout_s: float) -> list:
    """Label suggested images as a user does (→ selects the next card, a digit labels it); ms from
    the keydown to the first frame with a card of a row not shown before: the answered card's slot
    refilled by the next batch."""
    out = []
    for _ in range(reps):
        page.keyboard.press("Escape")
        page.keyboard.press("ArrowRight")
        page.wait_for_function("() => document.querySelector('.alw-root').alw.state().selected.length === 1",
                               timeout=5000)
        i = int(page.evaluate("() => document.querySelector('.alw-root').alw.state().selected[0]"))
        page.evaluate("""() => { const b = window.__bench; b.cards = [];
            b.shown = new Set(Array.from(document.querySelectorAll('.alw-gallery .alw-card'), (e) => Number(e.dataset.index))); }""")
        page.keyboard.press(str((int(y[i]) + 1) % 10))
        page.wait_for_function("() => window.__bench.cards.some(([t, i]) => !window.__bench.shown.has(i))",
                               timeout=timeout_s * 1000, polling=50)
        out.append(page.evaluate("""() => { const b = window.__bench;
            return b.cards.find(([t, i]) => !b.shown.has(i))[0] - b.keyT; }"""))
        time.sleep(1.0)  # as a user looks at the new card: the map's scores and the look-ahead finish
    return out


def bench_plotly(page, n: int, reps: int, recolour: bool, timeout_s: float, dim: int = 16) -> dict:
    out = time_display(page, timeout_s)
    out["esm_bytes"] = esm_bytes("plotly")
    if not recolour:
        return out
    gd = page.locator(".js-plotly-plot").first
    gd.scroll_into_view_if_needed()
    time.sleep(1.0)
    page.evaluate("""() => { const gd = document.querySelector('.js-plotly-plot');
        const done = () => requestAnimationFrame(() => window.__bench.restyles.push(performance.now()));
        gd.on('plotly_restyle', done); gd.on('plotly_update', done); }""")
    # pixel positions of every point from plotly's own axes
    geo = page.evaluate("""() => { const gd = document.querySelector('.js-plotly-plot'); const L = gd._fullLayout;
        const r = gd.getBoundingClientRect(); const xa = L.xaxis, ya = L.yaxis;
        return { left: r.left + xa._offset, top: r.top + ya._offset, w: xa._length, h: ya._length,
                 xr: xa.range, yr: ya.range }; }""")
    ns = {}
    exec(DATA_CODE, ns)
    _, xy, _ = ns["bench_data"](n, dim)
    px = np.empty((n, 2))
    px[:, 0] = geo["left"] + (xy[:, 0] - geo["xr"][0]) / (geo["xr"][1] - geo["xr"][0]) * geo["w"]
    px[:, 1] = geo["top"] + (geo["yr"][1] - xy[:, 1]) / (geo["yr"][1] - geo["yr"][0]) * geo["h"]
    box = {"x": geo["left"], "y": geo["top"], "width": geo["w"], "height": geo["h"]}
    recoloured, missed = [], 0
    for i in isolated(px, np.arange(n), box, gap=6.0, k=4 * reps, seed=n):
        if len(recoloured) == reps:
            break
        # plotly clicks the point under hover: hover it first and check that plotly found it
        page.mouse.move(px[i, 0] + 3, px[i, 1] + 3)
        page.mouse.move(*px[i], steps=3)
        try:
            page.wait_for_function(f"""() => {{ const h = document.querySelector('.js-plotly-plot')._hoverdata;
                return h && h.length && h[0].pointNumber === {i}; }}""", timeout=3000, polling=50)
        except Exception:
            missed += 1
            continue
        count = page.evaluate("() => window.__bench.restyles.length")
        page.mouse.down()
        page.mouse.up()
        page.wait_for_function(f"() => window.__bench.restyles.length > {count}", timeout=timeout_s * 1000, polling=50)
        recoloured.append(page.evaluate(f"() => window.__bench.restyles[{count}] - window.__bench.downT"))
        time.sleep(0.5)
    out["hover_missed"] = missed
    out.update(recoloured_ms=recoloured)
    return out


def esm_code(widget: str) -> bytes:
    """The JavaScript module a widget ships to the browser (anywidget's `_esm`)."""
    if widget == "alwidget":
        return (C.REPO_DIR / "alwidget" / "static" / "widget.js").read_bytes()
    import plotly.graph_objects as go

    esm = go.FigureWidget._esm
    return Path(esm).read_bytes() if isinstance(esm, (str, Path)) and Path(str(esm)).is_file() else str(esm).encode()


def esm_bytes(widget: str) -> int:
    return len(esm_code(widget))


def bundle_sizes() -> dict:
    ours, theirs = esm_code("alwidget"), esm_code("plotly")
    return {"alwidget_kb": len(ours) / 1e3, "alwidget_gz_kb": len(gzip.compress(ours)) / 1e3,
            "plotly_kb": len(theirs) / 1e3, "plotly_gz_kb": len(gzip.compress(theirs)) / 1e3}


def run_grid(browser, server, root: Path, blocked: list, args) -> dict:
    """The review grid benchmark (bench_widget_grid.py) in its own notebook and kernel."""
    name = "bench_grid.ipynb"
    write_notebook(root / name, [G.SETUP_GRID.format(n=args.grid_n), "w"])
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    local_only(context, blocked)
    page = context.new_page()
    try:
        page.goto(server.notebook_url(name))
        wait_notebook_ready(page, 180)
        r = G.bench_grid(page, args.grid_items, args.timeout, run_cell)
        G.check(r)
        r["status"] = "ok"
    except Exception as exc:
        r = {"status": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}", "items": args.grid_items}
    finally:
        context.close()
        shutdown_kernels(server)
    g, pl = r.get("grid") or {}, r.get("plain") or {}
    print(f"  grid {args.grid_items:,} images: {r['status']}; open {C.fmt(r.get('openMs'), 0)} ms, scroll frame "
          f"p50 {C.fmt(g.get('p50'), 0)} / p95 {C.fmt(g.get('p95'), 0)} ms ({g.get('cards')} cards); plain grid: open "
          f"{C.fmt(r.get('plainOpenMs'), 0)} ms, p50 {C.fmt(pl.get('p50'), 0)} / p95 {C.fmt(pl.get('p95'), 0)} ms",
          flush=True)
    return r


def median(values):
    vals = [v for v in values or [] if v is not None]
    return float(np.median(vals)) if vals else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=C.parse_ints, default=[10_000, 100_000, 1_000_000], help="display sizes")
    p.add_argument("--recolour-n", type=C.parse_ints, default=[10_000, 100_000], help="label->recolour sizes")
    p.add_argument("--reps", type=int, default=7, help="timed labels per (widget, N)")
    p.add_argument("--dim", type=int, default=16, help="feature dimension (512: image embeddings, whose "
                   "rescore dominates a label at 1M)")
    p.add_argument("--widgets", type=C.parse_names, default=["alwidget", "plotly"])
    p.add_argument("--timeout", type=float, default=600, help="seconds per step before it is reported as a timeout")
    p.add_argument("--grid-items", type=int, default=5000, help="images in the review grid benchmark (0: skip it)")
    p.add_argument("--grid-n", type=int, default=10_000, help="points of the map behind the grid benchmark")
    p.add_argument("--grid-only", action="store_true", help="only the review grid benchmark")
    p.add_argument("--quick", action="store_true", help="N = 10k only, 3 labels: a smoke run")
    p.add_argument("--out", default="bench_widget", help="results name under bench/results/")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.recolour_n, args.reps, args.timeout = [10_000], [10_000], 3, 300
    if args.grid_only:
        args.n, args.recolour_n = [], []

    from playwright.sync_api import sync_playwright

    info = C.machine_info()
    print(C.machine_line(info))
    sizes = bundle_sizes()
    print(f"bundles: alwidget {sizes['alwidget_gz_kb']:.0f} kB gz, plotly FigureWidget {sizes['plotly_gz_kb']:.0f} kB gz")
    ns = {}
    exec(DATA_CODE, ns)
    records, rows = [], []
    with tempfile.TemporaryDirectory(prefix="alwidget-bench-widget-") as tmp:
        root, base = Path(tmp, "root"), Path(tmp, "jupyter")
        root.mkdir()
        server = LabServer(root, base, {"ALWIDGET_CACHE_DIR": str(Path(tmp, "cache"))})
        blocked: list[str] = []
        try:
            with sync_playwright() as pw:
                browser = launch_chromium(pw)
                for n in sorted(set(args.n) | set(args.recolour_n)):
                    _, _, y = ns["bench_data"](n, args.dim)
                    for widget in args.widgets:
                        recolour = n in args.recolour_n
                        name = f"bench_{widget}_{n}.ipynb"
                        setup = (SETUP_ALWIDGET if widget == "alwidget" else SETUP_PLOTLY).format(
                            data=DATA_CODE, n=n, dim=args.dim, classes=CLASSES)
                        write_notebook(root / name, [setup, DISPLAY_ALWIDGET if widget == "alwidget" else DISPLAY_PLOTLY])
                        context = browser.new_context(viewport={"width": 1400, "height": 1000})
                        local_only(context, blocked)
                        context.add_init_script(INIT_JS)
                        page = context.new_page()
                        t = time.perf_counter()
                        try:
                            page.goto(server.notebook_url(name))
                            wait_notebook_ready(page, 180)
                            if widget == "alwidget":
                                r = bench_alwidget(page, n, y, args.reps, recolour, args.timeout)
                            else:
                                r = bench_plotly(page, n, args.reps, recolour, args.timeout, args.dim)
                            r["status"] = "ok"
                        except Exception as exc:  # a timeout or crash at 1M is a result, not a bench failure
                            r = {"status": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
                        finally:
                            context.close()
                            shutdown_kernels(server)
                        r.update(widget=widget, n=n, wall_s=time.perf_counter() - t)
                        records.append(r)
                        row = {"n": f"{n:,}", "widget": widget, "status": r["status"],
                               "display": r.get("displayMs"), "render": r.get("renderAfterDataMs"),
                               "own_paint": (r.get("own") or {}).get("firstPaintMs"),
                               "mb": (r["bytes"] - r["esm_bytes"]) / 1e6 if "bytes" in r else None,
                               "recol": median(r.get("recoloured_ms")), "batch": median(r.get("batch_ms")),
                               "own_recol": median(r.get("own_recolour_ms"))}
                        rows.append(row)
                        print(f"  N={n:>9,} {widget:<8} {r['status']:<4} display {C.fmt(row['display'], 0)} ms, "
                              f"render after data {C.fmt(row['render'], 0)} ms, {C.fmt(row['mb'], 2)} MB; "
                              f"label->recoloured p50 {C.fmt(row['recol'], 0)} ms, "
                              f"label->next batch shown p50 {C.fmt(row['batch'], 0)} ms", flush=True)
                if args.grid_items:
                    grid = run_grid(browser, server, root, blocked, args)
                    records.append({"grid": grid})
                browser.close()
        finally:
            server.stop()
    cols = [("n", "N"), ("widget", "widget"), ("display", "run cell → first paint (ms)"),
            ("render", "render after data (ms)"), ("own_paint", "alwidget commit → drawn (ms)"),
            ("mb", "MB received (data)"), ("recol", "label → recoloured p50 (ms)"), ("own_recol", "alwidget update → drawn p50 (ms)"),
            ("batch", "label → a new card of the next batch shown p50 (ms)"),
            ("status", "status")]
    settings = (f"synthetic {args.dim}-d Gaussian blobs, 10 classes, given 2-D coordinates; Session strategy random, "
                f"2 labels per class before timing; {args.reps} timed labels per size; headless Chromium "
                f"(SwiftShader WebGL) + JupyterLab on 127.0.0.1" + ("; QUICK smoke run" if args.quick else ""))
    notes = [f"bundle: alwidget widget.js {sizes['alwidget_kb']:.0f} kB ({sizes['alwidget_gz_kb']:.0f} kB gzipped); "
             f"plotly FigureWidget ESM {sizes['plotly_kb']:.0f} kB ({sizes['plotly_gz_kb']:.0f} kB gzipped)",
             "run cell → first paint: alwidget displays a Labeller built in an earlier cell (arrays travel on "
             "the view's hello); plotly builds and displays the FigureWidget in the timed cell (arrays travel "
             "with its creation).",
             "MB received: websocket bytes from the run of the display cell to the first paint, minus the "
             "widget's JavaScript module when it travelled in that window (plotly's ESM does; alwidget's travelled "
             "earlier); the display time does include loading that module.",
             "label → recoloured includes the same Session retrain + rescore for both; plotly's callback "
             "waits for it and restyles marker.color (new predictions) and marker.size (labelled points larger); "
             "plotly sends only the properties whose values changed.",
             f"requests outside 127.0.0.1 blocked during the run: {len(blocked)}"]
    tables = [("", C.markdown_table(rows, cols))] if rows else []
    if args.grid_items:
        tables.append((f"Review grid: {args.grid_items:,} images of a {args.grid_n:,}-point map, opened and scrolled "
                       "160 px per frame", C.markdown_table(G.grid_rows(grid), G.GRID_COLUMNS)))
    path = C.write_results(args.out, title="Widget in the browser: alwidget vs plotly FigureWidget", settings=settings,
                           info=info, tables=tables,
                           records=records + [{"bundles": sizes}], notes=notes)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
