// The legend: one button per class (key, colour, name, count; a click labels the selection) and
// a colour key for the mode in use: class colours (and why predictions are not shown yet), or a
// colour bar for uncertainty.
import { categoricalColors, uncertaintyRamp } from "./colors.js";
import { h } from "./dom.js";
import { effectiveColorBy } from "./updates.js";

const css = ([r, g, b]) => `rgb(${Math.round(r * 255)}, ${Math.round(g * 255)}, ${Math.round(b * 255)})`;

export function keyOfClass(k) {
  return k < 9 ? String(k + 1) : k === 9 ? "0" : "";
}

export function createLegend({ store, getTheme, onClass }) {
  const buttons = h("div", { class: "alw-legend" });
  const key = h("div", { class: "alw-colorkey" });

  function counts(s) {
    const out = new Array(s.classes.length).fill(0);
    if (s.label) for (const l of s.label) if (l >= 0 && l < out.length) out[l] += 1;
    return out;
  }

  function drawButtons(s) {
    const cats = categoricalColors(s.classes.length, getTheme());
    const n = counts(s);
    buttons.replaceChildren(
      ...s.classes.map((name, k) => {
        const swatch = h("span", { class: "alw-swatch" });
        swatch.style.background = css(cats[k]);
        const b = h("button", { class: "alw-class", "data-class-id": k, title: `Label the selection as ${name}` }, [
          swatch,
          h("span", { class: "alw-key", text: keyOfClass(k) }),
          h("span", { class: "alw-class-name", text: String(name) }),
          h("span", { class: "alw-count", text: String(n[k]) }),
        ]);
        b.addEventListener("click", () => onClass(k));
        return b;
      }),
    );
    return n.reduce((a, b) => a + b, 0);
  }

  function drawKey(s) {
    const mode = effectiveColorBy(s);
    const theme = getTheme();
    key.dataset.mode = mode;
    if (mode === "uncertainty") {
      const ramp = uncertaintyRamp(theme);
      const bar = h("div", { class: "alw-colorbar" });
      bar.style.background = `linear-gradient(to right, ${ramp.map(css).join(", ")})`;
      key.replaceChildren(
        h("div", { class: "alw-colorkey-title", text: "Colour: how unsure the model is" }),
        bar,
        h("div", { class: "alw-colorbar-ends" }, [h("span", { text: "sure" }), h("span", { text: "unsure" })]),
      );
      return;
    }
    const lines = [];
    if (mode === "prediction" && s.status && s.status.guess) {
      lines.push("Colour: a zero-shot guess from the class names (a guess, not an answer) until every class has 2 labels.");
    } else if (mode === "prediction") {
      lines.push("Colour: class; answered images bright, open ones faded in their predicted class.");
    } else {
      lines.push("Colour: given label; open images grey.");
      if (s.colorBy === "prediction") {
        const have = (s.status && s.status.n_label_classes) || 0;
        lines.push(`Predictions are shown once two classes have labels (now ${have}).`);
      }
    }
    lines.push("Large rings: images suggested for labelling.");
    if (s.find && s.find.dim) lines.push("Small faint points: left out by the search or filter (Clear shows them).");
    key.replaceChildren(...lines.map((t) => h("div", { text: t })));
  }

  return {
    buttons,
    key,
    update(s) {
      const n = drawButtons(s);
      drawKey(s);
      return n;
    },
  };
}
