// The find bar under the toolbar: a text search box (disabled, with the kernel's sentence, when
// the embeddings have no text tower), "More like this", the map filters (predicted class,
// uncertainty range, labelled or not, file name, near-duplicates, outliers), a near-duplicate
// group opener and Clear. The rules are in find.js; this file draws and sends.
import { h } from "./dom.js";
import { filterIntent, similarRows } from "./find.js";

const K = 100;

export function createFindBar({ store, model, conn, openGrid }) {
  const mine = new Set(); // request ids sent from here: their refusals show in the bar
  const send = (content) => {
    const r = conn.send(content);
    if (r) mine.add(r);
    return r;
  };
  const stopKeys = (el) => el.addEventListener("keydown", (ev) => ev.stopPropagation()); // typing never labels
  const text = h("input", { class: "alw-find-text", type: "search", placeholder: "Search by text, e.g. a red dress",
    "aria-label": "search the images by text" });
  const go = h("button", { class: "alw-find-search", text: "Search" });
  const why = h("span", { class: "alw-find-why" });
  const similar = h("button", { class: "alw-find-similar", text: "More like this",
    title: "The images nearest the selected or hovered one (or the images kept in the open grid)" });
  const pred = h("select", { class: "alw-filter-pred", "aria-label": "filter by predicted class" });
  const lo = h("input", { class: "alw-filter-lo", type: "number", min: "0", max: "1", step: "0.05",
    placeholder: "0", "aria-label": "uncertainty from", title: "Uncertainty from (0 = sure)" });
  const hi = h("input", { class: "alw-filter-hi", type: "number", min: "0", max: "1", step: "0.05",
    placeholder: "1", "aria-label": "uncertainty to", title: "Uncertainty up to (1 = unsure)" });
  const labelled = h("select", { class: "alw-filter-labelled", "aria-label": "filter by answer" });
  for (const [value, t] of [["any", "labelled or not"], ["unlabelled", "unlabelled"], ["labelled", "labelled"]]) {
    labelled.appendChild(h("option", { value, text: t }));
  }
  const name = h("input", { class: "alw-filter-name", type: "text", placeholder: "file name contains",
    "aria-label": "filter by file name" });
  const dups = h("input", { class: "alw-filter-dups", type: "checkbox" });
  const outl = h("input", { class: "alw-filter-outliers", type: "checkbox" });
  const group = h("button", { class: "alw-find-group", text: "Duplicate group",
    title: "Open a group of near-duplicates in the grid: the selected image's, else the next one" });
  const clear = h("button", { class: "alw-find-clear", text: "Clear", title: "Show every point again" });
  const message = h("span", { class: "alw-find-message" });
  const toggle = h("button", { class: "alw-find-filters", text: "Filters…", "aria-expanded": "false",
    title: "Dim the map but for a class, an uncertainty range, unlabelled images, a file name, duplicates, outliers" });
  for (const el of [text, lo, hi, name]) stopKeys(el);
  // one row while the filters are folded away: the map keeps its place on the page
  const filterRow = h("div", { class: "alw-find-row alw-filter-row" }, [h("span", { text: "Show:" }), pred,
    h("span", { text: "uncertainty" }), lo, h("span", { text: "–" }), hi, labelled, name,
    h("label", {}, [dups, h("span", { text: " near-duplicates" })]),
    h("label", {}, [outl, h("span", { text: ` ${K} outliers` })]), group]);
  const node = h("div", { class: "alw-findbar" }, [
    h("div", { class: "alw-find-row" }, [text, go, similar, toggle, clear, why, message]),
    filterRow,
  ]);
  let unfolded = false;
  toggle.addEventListener("click", () => {
    unfolded = !unfolded;
    update(store.state);
  });

  const say = (t) => store.dispatch("findError", t);
  const search = () => {
    const q = text.value.trim();
    if (!q) return say("Type what to look for, e.g. a red dress.");
    return send({ type: "search", text: q, k: K });
  };
  go.addEventListener("click", search);
  text.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") search();
  });
  const moreLikeThis = () => {
    const rows = similarRows(store.state);
    if (!rows.length) return say("Select or hover an image first: More like this starts from it.");
    const { content, buffers } = conn.withIndices({ type: "similar", k: K }, rows);
    const r = conn.send(content, { buffers });
    if (r) mine.add(r);
    return r;
  };
  similar.addEventListener("click", moreLikeThis);
  const applyFilter = () => {
    const msg = filterIntent({ predicted: Number(pred.value), lo: lo.value, hi: hi.value, labelled: labelled.value,
      name: name.value, duplicates: dups.checked, outliers: outl.checked && K });
    if (msg.error) return say(msg.error);
    return send(msg);
  };
  for (const el of [pred, lo, hi, labelled, name, dups, outl]) el.addEventListener("change", applyFilter);
  name.addEventListener("keydown", (ev) => ev.key === "Enter" && applyFilter());
  let nextGroup = 0;
  group.addEventListener("click", () => {
    const s = store.state;
    if (s.selected.length === 1) return send({ type: "duplicate_group", index: s.selected[0] });
    const r = send({ type: "duplicate_group", group: nextGroup });
    nextGroup += 1;
    return r;
  });
  clear.addEventListener("click", () => {
    pred.value = "-1";
    lo.value = hi.value = name.value = "";
    labelled.value = "any";
    dups.checked = outl.checked = false;
    nextGroup = 0;
    store.dispatch("findDropResults");
    send({ type: "clear_find" });
  });

  function update(s) {
    const fs = model.get("find_state") || {};
    const on = !!fs.text_search;
    text.disabled = go.disabled = !on;
    text.title = fs.text_reason || "";
    why.textContent = on ? "" : fs.text_reason || "";
    why.title = why.textContent; // the line is cut to the bar's width; the whole sentence on hover
    if (pred.options.length !== s.classes.length + 1) {
      pred.replaceChildren(h("option", { value: "-1", text: "any prediction" }),
        ...s.classes.map((c, k) => h("option", { value: String(k), text: `predicted ${c}` })));
    }
    const f = s.find;
    const open = unfolded || f.filterActive;
    filterRow.style.display = open ? "flex" : "none";
    toggle.setAttribute("aria-expanded", String(open));
    clear.disabled = !f.filterActive && !f.results;
    const lines = [f.error, f.message, f.filterMessage].filter(Boolean);
    message.textContent = lines.join(" · ");
    message.classList.toggle("alw-find-error", !!f.error);
    const d = node.closest(".alw-root");
    if (d) {
      d.dataset.alwFindShown = f.shown >= 0 ? String(f.shown) : "";
      d.dataset.alwFindResults = f.results ? String(f.results.length) : "";
      d.dataset.alwFindMessage = message.textContent;
    }
  }

  return {
    node,
    update,
    /** A message from the kernel that the find tools handle (after conn.handle). */
    mine: (request) => mine.has(request),
    moreLikeThis,
    openGrid,
  };
}
