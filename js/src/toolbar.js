// The toolbar: colour mode, strategy, drag mode (pan / lasso / box), view (fit, zoom to the
// selection), answers (undo, accept the batch, new batch) and the `?` key list. A button that
// cannot act now is disabled and its tooltip says why.
import { h } from "./dom.js";

const HELP_LINE = "1–9 label · u unsure · Space skip · a review batch · Shift+drag lasso · f fit · ? all keys";

export function createToolbar({ store, model, actions, conn, extra = [] }) {
  const color = h("select", { class: "alw-color-by", title: "Colour points by (key c)" });
  for (const [value, text] of [["prediction", "Colour: predicted class"], ["label", "Colour: given label"],
    ["uncertainty", "Colour: uncertainty"]]) color.appendChild(h("option", { value, text }));
  color.addEventListener("change", () => actions.setColor(color.value));
  const strategy = h("select", { class: "alw-strategy", title: "Active learning strategy" });
  strategy.addEventListener("change", () => conn.send({ type: "set_strategy", name: strategy.value }));
  const modes = {};
  for (const [mode, text, title] of [["pan", "Pan", "Drag pans; Shift+drag draws a lasso"],
    ["lasso", "Lasso", "Drag draws a lasso"], ["box", "Box", "Drag draws a box"]]) {
    modes[mode] = h("button", { class: "alw-mode", "data-mode": mode, title, text });
    modes[mode].addEventListener("click", () => store.dispatch("setMode", mode));
  }
  const button = (cls, text, title, fn) => {
    const b = h("button", { class: cls, text, title });
    b.addEventListener("click", fn);
    return b;
  };
  const fit = button("alw-fit", "Fit", "Fit the map to the view (f)", () => actions.fit());
  const zoom = button("alw-zoom-selection", "Zoom to selection", "Zoom to the selected image(s) (z)",
    () => actions.zoomSelection());
  const undo = button("alw-undo", "Undo", "Undo the last answer (Backspace)", () => actions.undo());
  const accept = button("alw-accept", "Accept batch…", "", () => actions.accept());
  const fresh = button("alw-new-batch", "New batch", "Other suggestions (n)", () => actions.newBatch());
  const unsure = button("alw-review-unsure", "Unsure (0)", "Give the images answered unsure a class",
    () => actions.reviewUnsure());
  const help = button("alw-help-button", "?", "Every key (?)", () => actions.help());
  const node = h("div", { class: "alw-toolbar" }, [color, strategy, ...Object.values(modes), fit, zoom, undo, accept,
    fresh, unsure, ...extra, help, h("span", { class: "alw-help", text: HELP_LINE })]);
  let mode = null;

  return {
    node,
    update(s) {
      const names = model.get("strategies") || [];
      if (strategy.options.length !== names.length) {
        strategy.replaceChildren(...names.map((v) => h("option", { value: v, text: `Strategy: ${v}` })));
      }
      const current = (s.status || {}).strategy_name || "";
      if (current && strategy.value !== current) strategy.value = current;
      if (color.value !== s.colorBy) color.value = s.colorBy;
      if (s.mode !== mode) {
        mode = s.mode;
        for (const [m, b] of Object.entries(modes)) b.setAttribute("aria-pressed", String(m === s.mode));
        actions.setMode(s.mode);
      }
      const st = s.status || {};
      accept.disabled = !st.can_accept;
      accept.title = st.can_accept ? `${st.accept_reason || ""} (a or Enter)` : st.accept_reason || "";
      zoom.disabled = !s.selected.length;
      const nUnsure = st.n_unsure || 0;
      unsure.textContent = `Unsure (${nUnsure})`;
      unsure.disabled = !nUnsure;
    },
  };
}
