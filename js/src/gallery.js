// The batch gallery (the suggested images, in a stable order: a card keeps its place until it
// is answered) and the strip of the last 10 answers, where a click selects an image to fix it.
import { h } from "./dom.js";
import { markCard } from "./trust.js";
import { isOpen, isPending } from "./updates.js";

export function createGallery({ store, thumbs, className, onCard, onRecent }) {
  const gallery = h("div", { class: "alw-gallery", "aria-label": "suggested images to label" });
  const recentList = h("div", { class: "alw-recent-list" });
  const recentTitle = h("span", { class: "alw-recent-title", text: "Last answers: none yet" });
  const recent = h("div", { class: "alw-recent" }, [recentTitle, recentList]);

  function describe(i) {
    const s = store.state;
    const info = thumbs.get(i);
    const l = s.label ? s.label[i] : -1;
    const p = s.pred ? s.pred[i] : -1;
    let text = "";
    if (l >= 0) text = className(l);
    else if (s.flags && s.flags[i] & 1) text = "unsure";
    else if (s.flags && s.flags[i] & 2) text = "skipped";
    else if (p >= 0) text = `predicted: ${className(p)}`;
    return { name: info ? info.name : `#${i}`, url: info ? info.url : null, text };
  }

  function card(i, pos) {
    const s = store.state;
    const d = describe(i);
    const img = h("img", { alt: "" });
    if (d.url) img.src = d.url;
    const el = h("div", { class: "alw-card", "data-index": i, "data-pos": pos, title: d.name,
      "data-filled": thumbs.get(i) ? "1" : null }, [
      img,
      // the end of a file name tells images apart: CSS truncates at the start; the title has it all
      h("div", { class: "alw-card-name" }, [h("span", { text: d.name })]),
      h("div", { class: "alw-card-pred", text: d.text }),
    ]);
    if (!isOpen(s, i)) el.classList.add("alw-done");
    if (isPending(s, i)) el.classList.add("alw-pending");
    if (pos === s.focusPos) el.classList.add("alw-focus");
    markCard(el, s, i);
    el.addEventListener("click", () => onCard(pos));
    return el;
  }

  function drawGallery() {
    const s = store.state;
    gallery.replaceChildren(...Array.from(s.batch, (i, pos) => card(i, pos)));
    thumbs.want(s.batch);
    const focused = gallery.children[s.focusPos];
    if (focused && focused.scrollIntoView) focused.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  function drawRecent() {
    const s = store.state;
    const items = s.recent || [];
    recentTitle.textContent = items.length ? "Last answers (click to fix):" : "Last answers: none yet";
    recentList.replaceChildren(
      ...items.map((r) => {
        const info = thumbs.get(r.index);
        const img = h("img", { alt: "" });
        if (info && info.url) img.src = info.url;
        const what = r.unsure ? "unsure" : r.label == null ? "skipped" : String(r.label);
        const el = h("button", { class: "alw-recent-item", "data-index": r.index, title: `${r.name || `#${r.index}`}: ${what}`,
          "data-filled": info ? "1" : null },
          [img, h("span", { text: what })]);
        el.addEventListener("click", () => onRecent(r.index));
        return el;
      }),
    );
    thumbs.want(items.map((r) => r.index));
  }

  return {
    gallery,
    recent,
    update(s, prev) {
      const all = !prev || s.batchV !== prev.batchV || s.labelsV !== prev.labelsV || s.modelV !== prev.modelV ||
        s.focusPos !== prev.focusPos || s.pending !== prev.pending || s.classes !== prev.classes;
      if (all) drawGallery();
      if (!prev || s.recent !== prev.recent) drawRecent();
    },
    redraw() {
      drawGallery();
      drawRecent();
    },
    /** Thumbnails arrived: redraw only when a card or an answer on screen was waiting for one. */
    fillThumbs() {
      const waiting = (el) => !el.dataset.filled && thumbs.get(Number(el.dataset.index));
      if ([...gallery.children].some(waiting)) drawGallery();
      if ([...recentList.children].some(waiting)) drawRecent();
    },
  };
}
