// Drawn over the map without touching WebGL: rings around the open batch points (the focused
// one and the selected one stand out), and a card for the hovered or selected image.
import { h, svg } from "./dom.js";
import { ringRadius } from "./picking.js";
import { isTestRequest } from "./trust.js";
import { isOpen } from "./updates.js";

export function createOverlays({ mapBox, map, store, thumbs, className }) {
  const rings = svg("svg", { class: "alw-rings" });
  const hoverImg = h("img", { alt: "" });
  const hoverName = h("div", { class: "alw-hover-name" });
  const hoverPred = h("div", { class: "alw-hover-pred" });
  const hoverBox = h("div", { class: "alw-hover" }, [hoverImg, hoverName, hoverPred]);
  mapBox.append(rings, hoverBox);

  /** Screen positions of the open batch points: [{index, pos, x, y}]. */
  function ringed() {
    const s = store.state;
    const out = [];
    s.batch.forEach((i, pos) => {
      if (!isOpen(s, i)) return;
      const p = map.screenPosition(i);
      if (p && p[0] >= -20 && p[1] >= -20 && p[0] <= mapBox.clientWidth + 20 && p[1] <= mapBox.clientHeight + 20) {
        out.push({ index: i, pos, x: p[0], y: p[1] });
      }
    });
    return out;
  }

  function drawRings() {
    rings.replaceChildren();
    const s = store.state;
    if (!s.n) return;
    const r = ringRadius(map.basePointSize());
    for (const ring of ringed()) {
      const cls = [ring.pos === s.focusPos ? "alw-ring-focus" : "", isTestRequest(s, ring.index) ? "alw-ring-test" : ""]
        .filter(Boolean).join(" ") || null;
      const c = svg("circle", { cx: ring.x.toFixed(1), cy: ring.y.toFixed(1), r });
      if (cls) c.setAttribute("class", cls);
      rings.appendChild(c);
    }
    if (s.selected.length === 1) {
      const p = map.screenPosition(s.selected[0]);
      if (p) {
        // the selected image: a ring with cross hairs, unmistakable whatever is around it
        const g = svg("g", { class: "alw-ring-selected" });
        g.appendChild(svg("circle", { cx: p[0].toFixed(1), cy: p[1].toFixed(1), r: r + 4 }));
        for (const [dx, dy] of [[1, 0], [-1, 0], [0, 1], [0, -1]]) {
          g.appendChild(svg("line", { x1: p[0] + dx * (r + 6), y1: p[1] + dy * (r + 6),
            x2: p[0] + dx * (r + 12), y2: p[1] + dy * (r + 12) }));
        }
        rings.appendChild(g);
      }
    }
  }

  function describe(i) {
    const s = store.state;
    const info = thumbs.get(i);
    const l = s.label ? s.label[i] : -1;
    const p = s.pred ? s.pred[i] : -1;
    let text = "";
    if (l >= 0) text = `label: ${className(l)}`;
    else if (s.flags && s.flags[i] & 1) text = "answered: unsure";
    else if (p >= 0) text = `predicted: ${className(p)}`;
    if (info && info.conf != null && l < 0 && p >= 0) text += ` (${Math.round(info.conf * 100)}%)`;
    // a test request hides the prediction: it must not sway the answer that measures the model
    if (isTestRequest(s, i)) text = "test image: measures the model, never trains it";
    else if (s.flags && s.flags[i] & 4) text += " · test label";
    return { name: info ? info.name : `#${i}`, text, url: info ? info.url : null, known: !!info };
  }

  /** The card shows the hovered image, else the single selected one. */
  function drawHover() {
    const s = store.state;
    const i = s.hovered >= 0 ? s.hovered : s.selected.length === 1 ? s.selected[0] : -1;
    const p = i >= 0 ? map.screenPosition(i) : null;
    if (!p) {
      hoverBox.style.display = "none";
      hoverBox.dataset.index = "";
      return;
    }
    thumbs.want([i]);
    const d = describe(i);
    hoverName.textContent = d.name;
    hoverName.title = d.name;
    hoverPred.textContent = d.text;
    if (d.url) hoverImg.src = d.url;
    else hoverImg.removeAttribute("src");
    hoverImg.style.display = d.url || !d.known ? "block" : "none";
    hoverBox.classList.toggle("alw-hover-selected", s.hovered < 0);
    hoverBox.dataset.index = String(i);
    const W = mapBox.clientWidth;
    const left = p[0] + 14 + 190 > W ? p[0] - 14 - 190 : p[0] + 14;
    hoverBox.style.left = `${Math.max(0, left)}px`;
    hoverBox.style.top = `${Math.max(0, Math.min(mapBox.clientHeight - 150, p[1] - 20))}px`;
    hoverBox.style.display = "block";
  }

  return {
    ringed,
    update() {
      drawRings();
      drawHover();
    },
  };
}
