// The wire: intents to the kernel (each with a request id, acknowledged by an `ack` or by the
// `labels` it caused), binary arrays from the kernel (chunked, assembled per version), and the
// connection state. Nothing is dropped silently: a request that cannot be sent, or is never
// acknowledged because the kernel went away, stays listed as not saved. docs/widget-protocol.md.
import { ArrayAssembler, toTyped } from "./codecs.js";

const DEAD_KERNEL = new Set(["dead", "restarting", "autorestarting", "terminating"]);
export const DISCONNECTED = "disconnected — run the cell again";
const BIG_SELECTION = 256; // more indices than this travel as an Int32Array buffer

/**
 * @param {object} o
 * @param {object} o.model the anywidget model (get/set/on/off/send, widget_manager)
 * @param {object} o.store the view's store (store.js)
 * @param {(content, buffers) => void} [o.onThumbs] thumbnails arrived
 * @param {(content) => void} [o.onProposal] the batch proposal for the review grid arrived
 * @param {() => number} [o.now] ms clock
 */
export function createConnection({ model, store, onThumbs = () => {}, onProposal = () => {}, now = () => Date.now() }) {
  const assembler = new ArrayAssembler();
  let nextRequest = 1;
  let bytes = 0;

  function disconnect(reason) {
    store.dispatch("connection", { connected: false, reason });
  }

  function connected() {
    return store.state.connection.state === "connected" && !store.state.status.closed_reason;
  }

  /** The sentence shown when input is refused (disconnected, or replaced by a newer widget). */
  function refusal() {
    return `Not sent: ${store.state.status.closed_reason || DISCONNECTED}.`;
  }

  /**
   * Send an intent. `pending` ({text, indices}) lists it until the kernel acknowledges it.
   * Returns the request id, or 0 when it was refused (the notice says why).
   */
  function send(content, { buffers = [], pending = null, quiet = false } = {}) {
    // a view closed by a newer widget still draws its map and thumbnails (greyed), nothing else
    const drawOnly = content.type === "hello" || content.type === "thumbs";
    if (!(connected() || (drawOnly && store.state.connection.state === "connected"))) {
      if (!quiet) store.dispatch("notice", refusal());
      return 0;
    }
    const request = nextRequest++;
    const msg = { ...content, request };
    if (pending) store.dispatch("pending", { request, time: now(), ...pending });
    try {
      model.send(msg, undefined, buffers);
    } catch (err) {
      disconnect(`the message could not be sent (${err && err.message ? err.message : err})`);
      return 0;
    }
    return request;
  }

  /** Indices in the content (small) or as one Int32Array buffer (big selections). */
  function withIndices(content, indices) {
    if (indices.length <= BIG_SELECTION) return { content: { ...content, indices: Array.from(indices) }, buffers: [] };
    return { content, buffers: [Int32Array.from(indices).buffer] };
  }

  function onLabels(content, buffers) {
    if (buffers.length < 2) return;
    store.dispatch("labels", {
      idx: toTyped(buffers[0], "int32"),
      cls: toTyped(buffers[1], "int16"),
      flags: buffers.length > 2 ? toTyped(buffers[2], "uint8") : null,
      request: content.request,
    });
  }

  /** One message from the kernel. Returns what it was, for the caller's timings. */
  function handle(content, buffers = []) {
    for (const b of buffers) bytes += b.byteLength;
    switch (content.type) {
      case "array":
        assembler.add(content, buffers[0]);
        return "array";
      case "commit":
        store.dispatch("arrays", {
          reset: !!content.reset,
          n: content.n_points,
          version: content.version,
          arrays: assembler.take(content.version),
        });
        return content.reset ? "reset" : "commit";
      case "labels":
        onLabels(content, buffers);
        return "labels";
      case "ack":
        store.dispatch("ack", content);
        return "ack";
      case "thumbs":
        onThumbs(content, buffers);
        return "thumbs";
      case "proposal":
        onProposal(content);
        return "proposal";
      default:
        return "unknown";
    }
  }

  /** Listen for the comm or the kernel going away; returns a function that stops listening. */
  function watch() {
    const offs = [];
    const onClose = () => disconnect("the kernel closed this widget");
    model.on("comm:close", onClose);
    offs.push(() => model.off("comm:close", onClose));
    const onLive = () => {
      // ipywidgets sets comm_live = false when the kernel restarts or dies (never true again).
      const k = kernelOf(model);
      if (!k || DEAD_KERNEL.has(k.status) || k.connectionStatus === "disconnected") disconnect("the kernel stopped");
    };
    model.on("comm_live_update", onLive);
    offs.push(() => model.off("comm_live_update", onLive));
    const k = kernelOf(model);
    if (k && k.statusChanged && k.statusChanged.connect) {
      const onStatus = (_k, status) => {
        if (DEAD_KERNEL.has(status)) disconnect(status === "dead" ? "the kernel died" : "the kernel restarted");
      };
      k.statusChanged.connect(onStatus);
      offs.push(() => k.statusChanged.disconnect(onStatus));
      if (DEAD_KERNEL.has(k.status)) disconnect("the kernel is not running");
    }
    return () => offs.forEach((f) => f());
  }

  return {
    send,
    withIndices,
    handle,
    watch,
    disconnect,
    connected,
    refusal,
    get bytes() {
      return bytes;
    },
  };
}

/** The kernel connection behind the widget manager (JupyterLab, Notebook 7), or null elsewhere. */
function kernelOf(model) {
  try {
    const k = model.widget_manager && model.widget_manager.kernel;
    return k && typeof k === "object" ? k : null;
  } catch (_err) {
    return null;
  }
}
