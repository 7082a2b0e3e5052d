// Thumbnails and names of points, fetched from the kernel on demand (never by path), kept as
// blob URLs in a bounded cache. Views ask with want(indices) and redraw when notified.

const CACHE_MAX = 3000;
const REQUEST_MAX = 64;
const BATCH_MS = 40; // requests made within this time travel together (a scrolling grid asks often)

/** send(content) sends a thumbs request; returns {want, get, has, onItems, subscribe, destroy}. */
export function createThumbs(send) {
  const cache = new Map(); // index -> {url, name, label, pred, conf, unsure, error}
  const inFlight = new Set();
  const listeners = new Set();
  let request = 0;

  let queued = new Set();
  let timer = null;

  function flush() {
    timer = null;
    const todo = [...queued].filter((i) => !cache.has(i) && !inFlight.has(i));
    queued = new Set();
    for (let k = 0; k < todo.length; k += REQUEST_MAX) {
      const part = todo.slice(k, k + REQUEST_MAX);
      for (const i of part) inFlight.add(i);
      request += 1;
      if (!send({ type: "thumbs", request, indices: part })) for (const i of part) inFlight.delete(i);
    }
  }

  function want(indices) {
    for (const i of indices) if (i >= 0 && !cache.has(i) && !inFlight.has(i)) queued.add(i);
    if (queued.size && timer == null) timer = setTimeout(flush, BATCH_MS);
  }

  function onItems(content, buffers) {
    let b = 0;
    for (const item of content.items || []) {
      inFlight.delete(item.index);
      let url = null;
      if (item.image && b < buffers.length) {
        url = URL.createObjectURL(new Blob([buffers[b++]], { type: item.mime || "image/jpeg" }));
      }
      const old = cache.get(item.index);
      if (old && old.url) URL.revokeObjectURL(old.url);
      cache.delete(item.index);
      cache.set(item.index, {
        url,
        name: String(item.name ?? `#${item.index}`),
        conf: item.conf ?? null,
        error: item.error || null,
      });
    }
    while (cache.size > CACHE_MAX) {
      const [k, v] = cache.entries().next().value; // Map keeps insertion order: oldest first
      if (v.url) URL.revokeObjectURL(v.url);
      cache.delete(k);
    }
    for (const fn of listeners) fn();
  }

  return {
    want,
    onItems,
    get: (i) => cache.get(i) || null,
    name: (i) => (cache.get(i) ? cache.get(i).name : `#${i}`),
    subscribe(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    destroy() {
      clearTimeout(timer);
      for (const v of cache.values()) if (v.url) URL.revokeObjectURL(v.url);
      cache.clear();
      listeners.clear();
    },
  };
}
