// "Know when you are done" in the view: the Check my model toggle, the marks on test requests
// (cards and map rings), and the Re-check queue, which opens the labels worth a second look in
// the review grid. The kernel decides everything (status.trust, the `recheck` answer); this
// file words it and sends intents. Relabelling from the grid is an ordinary label_groups.
import { h } from "./dom.js";
import { createReview } from "./review.js";

export const TEST_TITLE = "A test image: label it like any other. Test labels measure the model and never train it.";
export const RECHECK_K = 20;
const CHECK_TITLE_OFF = "Check my model: now and then (1 per 5 labels) ask for a test label on a random sample of "
  + "unlabelled images set aside for it, to estimate how often the model is right. Test labels never train it.";
const CHECK_TITLE_ON = "Checking the model. Click to stop asking for test labels (the estimate so far stays).";

/** The kernel's trust fields (status.trust), or an empty object before the first status. */
export function trustOf(s) {
  return (s.status && s.status.trust) || {};
}

/** True when point i is an open test request of the shown batch. */
export function isTestRequest(s, i) {
  const tests = trustOf(s).tests;
  return Array.isArray(tests) && tests.includes(i);
}

/** How the two buttons look now: {check: {pressed, text, title}, recheck: {disabled, title}}. */
export function buttonStates(s) {
  const t = trustOf(s);
  const on = !!t.on;
  return {
    check: { pressed: on, text: on ? "Check my model ✓" : "Check my model", title: on ? CHECK_TITLE_ON : CHECK_TITLE_OFF },
    recheck: { disabled: !t.can_recheck, title: t.recheck_reason || "Labels worth a second look" },
  };
}

/**
 * The review of a `recheck` answer: each card keeps its current label unless the user gives it
 * another class; a note says what the model suggests. Items whose label is no longer a known
 * class are left out. Returns null when nothing is left.
 */
export function recheckReview(items, classes) {
  const kept = items.filter((it) => classes.indexOf(it.label) >= 0);
  if (!kept.length) return null;
  const current = kept.map((it) => classes.indexOf(it.label));
  // short: a card is 112 px wide (the grid's title says "worth a second look")
  const notes = kept.map((it) => (it.suggested === it.label ? "suggested: same, unsure" : `suggested: ${it.suggested}`));
  return createReview({ source: "recheck", indices: kept.map((it) => it.index), proposed: current, current, notes });
}

/** The toggle, the Re-check request and its answer, over the store and the connection. */
export function createTrust({ store, conn }) {
  const say = (text) => store.dispatch("notice", text);
  return {
    toggleCheck() {
      const on = !trustOf(store.state).on;
      if (conn.send({ type: "check_model", on })) {
        say(on ? "Checking the model: images marked “test” measure it and never train it."
          : "Stopped asking for test labels; the estimate so far stays.");
      }
    },
    recheck(k = RECHECK_K) {
      const t = trustOf(store.state);
      if (!t.can_recheck) return say(t.recheck_reason || "Re-check is not available yet.");
      if (conn.send({ type: "recheck", k })) say("Looking for labels worth a second look…");
      return undefined;
    },
    /** The kernel's answer: open the grid (nothing changes unless the user relabels). */
    onRecheck(content) {
      if (content.error) return say(content.error);
      const review = recheckReview(content.items || [], store.state.classes);
      if (!review) return say("No label stands out as worth a second look.");
      store.dispatch("clearSelection");
      store.dispatch("openReview", review);
      return say(`${review.indices.length} label(s) worth a second look: give a card another class only if it is wrong.`);
    },
  };
}

/** Mark a gallery card as a test request (or unmark it). */
export function markCard(el, s, i) {
  const test = isTestRequest(s, i);
  el.classList.toggle("alw-test", test);
  const pred = el.querySelector(".alw-card-pred");
  // the prediction is hidden on a test request: it must not sway the answer that measures the model
  if (test && pred && !el.querySelector(".alw-test-badge")) pred.textContent = "test image";
  let badge = el.querySelector(".alw-test-badge");
  if (test && !badge) {
    badge = h("span", { class: "alw-test-badge", text: "test", title: TEST_TITLE });
    el.appendChild(badge);
    el.title = `${el.title} · ${TEST_TITLE}`;
  } else if (!test && badge) badge.remove();
}

/** Re-mark every card of the gallery (the test list can change without the batch changing). */
export function markCards(gallery, s) {
  for (const el of gallery.querySelectorAll(".alw-card")) markCard(el, s, Number(el.dataset.index));
}

/** The toolbar buttons: [check, recheck] and update(s). */
export function createTrustButtons(trust) {
  const check = h("button", { class: "alw-check-model", "aria-pressed": "false" });
  check.addEventListener("click", () => trust.toggleCheck());
  const recheck = h("button", { class: "alw-recheck", text: "Re-check…" });
  recheck.addEventListener("click", () => trust.recheck());
  return {
    nodes: [check, recheck],
    update(s) {
      const b = buttonStates(s);
      check.setAttribute("aria-pressed", String(b.check.pressed));
      check.textContent = b.check.text;
      check.title = b.check.title;
      recheck.disabled = b.recheck.disabled;
      recheck.title = b.recheck.title;
    },
  };
}
