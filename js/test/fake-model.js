// A stand-in for the anywidget model (get/set/save_changes/send/on/off) and, optionally, the
// JupyterLab kernel behind its widget manager (status + a statusChanged signal).

export function fakeKernel(status = "idle") {
  const slots = new Set();
  const kernel = {
    status,
    connectionStatus: "connected",
    statusChanged: {
      connect: (fn) => slots.add(fn),
      disconnect: (fn) => slots.delete(fn),
    },
    emit(next) {
      kernel.status = next;
      for (const fn of [...slots]) fn(kernel, next);
    },
  };
  return kernel;
}

export function fakeModel(values = {}, { kernel = null, sendThrows = null } = {}) {
  const handlers = new Map();
  const data = { classes: [], status: {}, color_by: "prediction", recent: [], ...values };
  const model = {
    sent: [],
    saved: 0,
    get: (k) => data[k],
    set: (k, v) => {
      data[k] = v;
    },
    save_changes: () => {
      model.saved += 1;
    },
    send(content, _callbacks, buffers) {
      if (sendThrows) throw new Error(sendThrows);
      model.sent.push({ content, buffers: buffers || [] });
    },
    on(ev, fn) {
      if (!handlers.has(ev)) handlers.set(ev, new Set());
      handlers.get(ev).add(fn);
    },
    off(ev, fn) {
      if (handlers.has(ev)) handlers.get(ev).delete(fn);
    },
    trigger(ev, ...args) {
      for (const fn of [...(handlers.get(ev) || [])]) fn(...args);
    },
    listeners: (ev) => (handlers.get(ev) ? handlers.get(ev).size : 0),
    widget_manager: kernel ? { kernel } : {},
  };
  return model;
}

/** A DataView over a typed array, as anywidget hands binary buffers to the front end. */
export function view(typed) {
  return new DataView(typed.buffer, typed.byteOffset, typed.byteLength);
}
