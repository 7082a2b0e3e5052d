// A small state store: the whole view state in one plain object, changed only by named,
// pure updates (updates.js). Views subscribe and redraw what the change touched.

/**
 * @param {object} initial the first state
 * @param {Record<string, (state: object, ...args) => object>} updates named pure updates
 */
export function createStore(initial, updates) {
  let state = initial;
  const listeners = new Set();
  return {
    get state() {
      return state;
    },
    /** Apply update `name`; listeners hear (state, name, previous) when the state changed. */
    dispatch(name, ...args) {
      const fn = updates[name];
      if (!fn) throw new Error(`unknown update "${name}"`);
      const next = fn(state, ...args);
      if (next === state || next === undefined) return state;
      const prev = state;
      state = next;
      for (const listener of listeners) listener(state, name, prev);
      return state;
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
