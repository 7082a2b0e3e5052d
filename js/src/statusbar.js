// Words under the map: the status line (plain words; the details on hover), where the labels
// are saved, the answers not yet acknowledged by the kernel, a notice when a key did nothing
// (and why), the banner of a disconnected or replaced widget, and the `?` list of keys.
import { h } from "./dom.js";
import { KEY_HELP } from "./keys.js";
import { DISCONNECTED } from "./protocol.js";

const SLOW_MS = 8000; // an answer unacknowledged for this long: say the kernel is not answering

export function createStatusBar({ store, now = () => Date.now() }) {
  const status = h("div", { class: "alw-status" });
  const store_ = h("div", { class: "alw-store" });
  const error = h("div", { class: "alw-error", role: "alert" });
  const notice = h("div", { class: "alw-notice", role: "status", "aria-live": "polite" });
  const pending = h("div", { class: "alw-pending-list" });
  const bannerText = h("div", { class: "alw-banner-text" });
  const bannerPending = h("div", { class: "alw-banner-pending" });
  const bannerNotice = h("div", { class: "alw-banner-notice" });
  const banner = h("div", { class: "alw-banner", role: "alert" }, [bannerText, bannerPending, bannerNotice]);
  const keys = h("div", { class: "alw-keys", role: "dialog", "aria-label": "keys" }, [
    h("div", { class: "alw-keys-title", text: "Keys (press ? or Escape to close)" }),
    keyTable(),
  ]);

  function keyTable() {
    const table = h("table");
    let section = "";
    for (const [k, what, where] of KEY_HELP) {
      if (where !== section) {
        section = where;
        const title = where === "map" ? "On the map" : "In the review grid (lasso, box, accept)";
        table.appendChild(h("tr", {}, [h("th", { colspan: 2, text: title })]));
      }
      table.appendChild(h("tr", {}, [h("td", { class: "alw-keys-key", text: k }), h("td", { text: what })]));
    }
    return table;
  }

  function pendingText(s) {
    const t = now();
    return s.pending.map((p) => {
      const slow = t - p.time > SLOW_MS ? " (waiting for the kernel)" : "";
      return `${p.text}${slow}`;
    });
  }

  let noticeSeq = -1;
  let noticeTimer = null;

  return {
    nodes: { status, store: store_, error, notice, pending, banner, keys },
    update(s) {
      const st = s.status || {};
      status.textContent = st.text || "";
      status.title = st.details || "";
      const where = st.store && st.store !== ":memory:" ? st.store : "";
      store_.textContent = where ? `Labels are saved in ${where}` : "Labels are kept in memory only (store=':memory:')";
      store_.title = where;
      error.textContent = st.error || "";
      if (s.notice.seq !== noticeSeq) {
        noticeSeq = s.notice.seq;
        notice.textContent = s.notice.text;
        bannerNotice.textContent = s.notice.text;
        clearTimeout(noticeTimer);
        noticeTimer = setTimeout(() => {
          notice.textContent = "";
          bannerNotice.textContent = "";
        }, 8000);
      }
      const lines = pendingText(s);
      pending.textContent = lines.length ? `Saving: ${lines.join("; ")}` : "";
      const closed = st.closed_reason || "";
      const down = s.connection.state !== "connected";
      banner.style.display = closed || down ? "block" : "none";
      bannerText.textContent = closed
        ? `This view is closed: ${closed}. Its labels are saved; use the newer widget.`
        : down
          ? `${s.connection.reason ? `${s.connection.reason}: ` : ""}${DISCONNECTED}.`
          : "";
      bannerPending.textContent = lines.length && (closed || down)
        ? `Not saved (still shown so nothing is lost): ${lines.join("; ")}`
        : "";
      keys.style.display = s.helpOpen ? "block" : "none";
    },
    destroy() {
      clearTimeout(noticeTimer);
    },
  };
}
