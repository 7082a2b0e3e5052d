// DOM helpers. Text is always set with textContent: names come from users' files.

export function h(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c) node.appendChild(c);
  return node;
}

export const SVG_NS = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

/** A listener registry: add() returns nothing, dispose() removes every listener added. */
export function listeners() {
  const off = [];
  return {
    add(target, type, fn, opts) {
      target.addEventListener(type, fn, opts);
      off.push(() => target.removeEventListener(type, fn, opts));
    },
    onDispose(fn) {
      off.push(fn);
    },
    dispose() {
      for (const fn of off.reverse()) {
        try {
          fn();
        } catch (_err) {
          // the view is going away; nothing left to clean
        }
      }
      off.length = 0;
    },
  };
}
