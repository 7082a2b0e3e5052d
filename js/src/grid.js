// The review grid's view: the images of a lasso, box or batch proposal with the class each
// will get, virtualised (only the visible rows exist in the DOM, so 5,000 images scroll as
// smoothly as 50). The model and its rules are in review.js; this file only draws and
// forwards clicks.
import { h } from "./dom.js";
import { classOf, summary, visibleRange } from "./review.js";

const CARD_W = 118;
const CARD_H = 168;

const SOURCE_WORDS = {
  lasso: "Lasso",
  box: "Box",
  accept: "Accept the batch as predicted",
  unsure: "Answered unsure",
  select: "Selection",
  recheck: "Worth a second look (nothing changes unless you relabel)",
};

export function createGrid({ store, thumbs, onToggle, onClass, onCommit, onCancel }) {
  const title = h("div", { class: "alw-review-title" });
  const summaryLine = h("div", { class: "alw-review-summary" });
  const hint = h("div", {
    class: "alw-review-hint",
    text: "1–9: class for all (or the focused card) · click or Space: leave out · Enter: label · Esc: cancel",
  });
  const commit = h("button", { class: "alw-review-commit", text: "Label (Enter)" });
  const cancel = h("button", { class: "alw-review-cancel", text: "Cancel (Esc)" });
  const head = h("div", { class: "alw-review-head" }, [
    h("div", { class: "alw-review-words" }, [title, summaryLine, hint]),
    h("div", { class: "alw-review-buttons" }, [commit, cancel]),
  ]);
  const spacer = h("div", { class: "alw-review-spacer" });
  const body = h("div", { class: "alw-review-body", tabindex: "-1" }, [spacer]);
  const panel = h("div", { class: "alw-review", role: "dialog", "aria-label": "review before labelling" }, [head, body]);
  commit.addEventListener("click", () => onCommit());
  cancel.addEventListener("click", () => onCancel());

  let shown = null; // the review drawn last
  let frame = null;
  const cards = new Map(); // k -> element

  // sizes read once per resize, not per scroll frame (reading them forces a layout)
  const size = { width: 600, height: 400 };
  const measure = () => {
    size.width = body.clientWidth || size.width;
    size.height = body.clientHeight || size.height;
  };
  const ro = typeof ResizeObserver === "function" ? new ResizeObserver(() => {
    measure();
    if (store.state.review) redrawAll();
  }) : null;
  if (ro) ro.observe(body);
  const cols = () => Math.max(1, Math.floor(size.width / CARD_W));
  let spacerRows = -1;

  function classMenu(r, k, classNames) {
    const menu = h("select", { class: "alw-review-pick", "aria-label": "class of this image" });
    menu.appendChild(h("option", { value: "-1", text: "class…" }));
    classNames.forEach((name, id) => menu.appendChild(h("option", { value: id, text: String(name) })));
    menu.value = String(r.own[k] >= 0 ? r.own[k] : -1);
    menu.addEventListener("click", (ev) => ev.stopPropagation());
    menu.addEventListener("keydown", (ev) => ev.stopPropagation());
    menu.addEventListener("change", () => onClass(k, Number(menu.value)));
    return menu;
  }

  function cardFor(r, k, classNames) {
    const i = r.indices[k];
    const info = thumbs.get(i);
    const c = classOf(r, k);
    const img = h("img", { alt: "" });
    if (info && info.url) img.src = info.url;
    const conf = r.conf && Number.isFinite(r.conf[k]) && r.own[k] < 0 && r.groupClass < 0
      ? ` ${Math.round(r.conf[k] * 100)}%` : "";
    const cname = (id) => classNames[id] ?? `class ${id + 1}`;
    let what = c >= 0 ? `${cname(c)}${conf}` : "no class yet";
    if (r.current) what = c === r.current[k] ? `label: ${cname(c)}` : `${cname(r.current[k])} → ${cname(c)}`;
    const pick = h("button", { class: "alw-review-pick", text: r.own[k] >= 0 ? "own class ▾" : "class… ▾",
      title: "give this image its own class" });
    pick.addEventListener("click", (ev) => {
      ev.stopPropagation(); // a menu, built on demand: 5,000 cards need not carry one each
      pick.replaceWith(classMenu(r, k, classNames));
    });
    const name = info ? info.name : `#${i}`;
    const el = h("div", { class: "alw-review-card", "data-k": k, "data-index": i, title: name,
      "data-filled": info ? "1" : null }, [
      img,
      h("div", { class: "alw-card-name" }, [h("span", { text: name })]),
      h("div", { class: "alw-review-class", text: r.included[k] ? what : "left out" }),
      r.notes ? h("div", { class: "alw-review-note", text: r.notes[k], title: r.notes[k] }) : null,
      pick,
    ]);
    if (!r.included[k]) el.classList.add("alw-excluded");
    if (r.notes) el.classList.add("alw-review-noted");
    if (k === r.focus) el.classList.add("alw-review-focus");
    const nc = cols();
    el.style.transform = `translate(${(k % nc) * CARD_W}px, ${Math.floor(k / nc) * CARD_H}px)`;
    el.addEventListener("click", () => onToggle(k));
    return el;
  }

  function drawCards() {
    frame = null;
    const r = store.state.review;
    if (!r) return;
    const nc = cols();
    const range = visibleRange({ scrollTop: body.scrollTop, viewport: size.height, rowHeight: CARD_H,
      count: r.indices.length, cols: nc });
    if (range.rows !== spacerRows) {
      spacerRows = range.rows;
      spacer.style.height = `${range.rows * CARD_H}px`;
    }
    const classNames = store.state.classes;
    const keep = new Set();
    for (let k = range.first; k < range.last; k++) {
      keep.add(k);
      const old = cards.get(k);
      if (old && shown === r && old.dataset.cols === String(nc)) continue;
      const el = cardFor(r, k, classNames);
      el.dataset.cols = String(nc);
      if (old) old.replaceWith(el);
      else body.appendChild(el);
      cards.set(k, el);
    }
    for (const [k, el] of cards) {
      if (!keep.has(k)) {
        el.remove();
        cards.delete(k);
      }
    }
    shown = r;
    thumbs.want(Array.from(r.indices.subarray(range.first, range.last)));
    panel.dataset.first = String(range.first);
    panel.dataset.last = String(range.last);
  }

  function schedule() {
    if (frame == null) frame = requestAnimationFrame(drawCards);
  }
  body.addEventListener("scroll", schedule, { passive: true });

  function redrawAll() {
    shown = null;
    drawCards();
  }

  /** Thumbnails arrived: set the images of the cards on screen (nothing is rebuilt). */
  function fillThumbs() {
    for (const el of cards.values()) {
      if (el.dataset.filled) continue;
      const info = thumbs.get(Number(el.dataset.index));
      if (!info) continue;
      el.dataset.filled = "1";
      if (info.url) el.firstChild.src = info.url;
      el.title = info.name;
      el.querySelector(".alw-card-name > span").textContent = info.name;
    }
  }

  return {
    panel,
    body,
    cols,
    update(s, prev) {
      const r = s.review;
      panel.style.display = r ? "flex" : "none";
      if (r && (!prev || !prev.review)) measure(); // the panel just became visible
      if (!r) {
        if (prev && prev.review) {
          for (const el of cards.values()) el.remove();
          cards.clear();
          shown = null;
          body.scrollTop = 0;
        }
        return;
      }
      const sum = summary(r, s.classes);
      title.textContent = `${r.title || SOURCE_WORDS[r.source] || "Review"}: ${r.indices.length} image(s)`;
      summaryLine.textContent = sum.text;
      panel.dataset.count = String(r.indices.length);
      commit.disabled = !sum.ready;
      if (!prev || prev.review !== r || prev.classes !== s.classes) redrawAll();
      if (r.focus >= 0 && (!prev || !prev.review || prev.review.focus !== r.focus)) {
        const top = Math.floor(r.focus / cols()) * CARD_H;
        if (top < body.scrollTop || top + CARD_H > body.scrollTop + size.height) body.scrollTop = top;
      }
    },
    redraw: redrawAll,
    fillThumbs,
    destroy: () => ro && ro.disconnect(),
  };
}
