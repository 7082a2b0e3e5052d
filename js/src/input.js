// Keys and pointer gestures on the widget. Keys resolve through keys.js (the same table the `?`
// list shows). Pointer handling fixes three things the notebook and the map get wrong alone:
// the notebook's Shift-mousedown handler takes the lasso's mousemoves (so the map's mousedown
// stops here), a drag is never a click, and a click prefers the ringed point near the cursor.
import { actionFor } from "./keys.js";
import { CLICK_MAX_PATH_PX, clickTolerance, pickRinged } from "./picking.js";

const TYPING = new Set(["INPUT", "SELECT", "TEXTAREA"]);

/**
 * @param {object} o
 * @param {HTMLElement} o.root the widget root (keyboard focus)
 * @param {HTMLElement} o.mapBox the map's box (canvas + overlays)
 * @param {HTMLCanvasElement} o.canvas
 * @param {object} o.listen a listeners() registry (dom.js)
 * @param {object} o.actions name -> function (actions.js)
 * @param {() => object} o.context {gridOpen, helpOpen, mode}
 * @param {() => Array} o.ringed screen positions of the ringed points (overlays.js)
 * @param {() => number} o.basePointSize
 */
export function attachInput({ root, mapBox, canvas, listen, actions, context, ringed, basePointSize }) {
  listen.add(root, "keydown", (ev) => {
    if (ev.target && TYPING.has(ev.target.tagName)) return;
    const hit = actionFor(ev, context());
    if (!hit || !actions[hit.action]) return;
    ev.preventDefault();
    ev.stopPropagation();
    actions[hit.action](hit.classId);
  });

  // Clicking the map gives the widget keyboard focus (the canvas itself is not focusable).
  listen.add(root, "pointerdown", (ev) => {
    const tag = ev.target && ev.target.tagName;
    if (!TYPING.has(tag) && tag !== "BUTTON") root.focus({ preventScroll: true });
  }, { capture: true });

  // The map's mousedown must not reach the notebook: with Shift held, JupyterLab and Notebook 7
  // start a cell selection that swallows every mousemove until mouseup (no lasso). The canvas
  // has seen the event by now (target phase), so the map still starts its lasso or pan.
  listen.add(mapBox, "mousedown", (ev) => ev.stopPropagation());
  listen.add(mapBox, "pointerdown", (ev) => ev.stopPropagation());

  // A drag whose path is longer than a few px is a lasso or a pan, never a click.
  const drag = { down: false, x: 0, y: 0, path: 0 };
  listen.add(mapBox, "pointerdown", (ev) => Object.assign(drag, { down: true, x: ev.clientX, y: ev.clientY, path: 0 }),
    { capture: true });
  listen.add(window, "pointermove", (ev) => {
    if (!drag.down) return;
    drag.path += Math.hypot(ev.clientX - drag.x, ev.clientY - drag.y);
    drag.x = ev.clientX;
    drag.y = ev.clientY;
  });
  listen.add(window, "pointerup", () => {
    drag.down = false;
  });
  listen.add(mapBox, "click", (ev) => {
    const path = drag.path;
    drag.path = 0;
    if (path > CLICK_MAX_PATH_PX) {
      ev.stopPropagation();
      return;
    }
    if (ev.target !== canvas || ev.shiftKey || context().mode !== "pan") return;
    const rect = canvas.getBoundingClientRect();
    const i = pickRinged([ev.clientX - rect.left, ev.clientY - rect.top], ringed(), clickTolerance(basePointSize()));
    if (i >= 0) {
      ev.stopPropagation(); // the map would pick whichever neighbour is drawn under the cursor
      actions.pick(i);
    }
  }, { capture: true });
}
