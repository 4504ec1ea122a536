// A run's status panel: what it is doing, cancel, answer, recovery handoff.
import { ACTIVE, ENDED, LABELS, api, el } from "./common.js";

// ``cancelPath`` is what Cancel posts to: the run's own cancel, or (on the conversation page)
// the conversation's, which cancels whichever run holds the conversation when it is clicked.
export function panelFor(run, refresh, cancelPath = `/v1/runs/${run.id}/cancel`) {
  const section = el("section", { class: "panel", "aria-label": "status panel", "data-status": run.status });
  const label = (LABELS[run.status] || run.status) + (run.cancel_requested && !ENDED[run.status] ? " (cancel requested)" : "");
  section.append(el("h2", { class: `status s-${run.status}`, title: run.status, text: label }));
  if (run.detail) section.append(el("p", { text: run.detail }));
  const bar = progressBar(run.metadata || {});
  if (bar) section.append(bar);
  if (ACTIVE.has(run.status) && !run.cancel_requested) {
    section.append(el("button", { class: "danger", onclick: async () => { await api(cancelPath, { method: "POST", body: "{}" }); refresh(); }, text: "Cancel" }));
  }
  if (run.status === "waiting_on_human") section.append(answerForm(run, refresh));
  if (ENDED[run.status]) {
    const journal = run.journal || {};
    const handoff = el("div", { class: "handoff", "aria-label": "recovery handoff" }, el("h3", { text: "Recovery handoff" }));
    if (run.error) handoff.append(el("p", { text: `Error: ${run.error}` }));
    if (journal.handoff_next_action) handoff.append(el("p", { class: "next", text: `Next: ${journal.handoff_next_action}` }));
    if (Object.keys(journal).length) handoff.append(el("details", {}, el("summary", { text: "Last known state" }), el("pre", { text: JSON.stringify(journal, null, 2) })));
    if (run.resume_available && run.status !== "cancelled") {
      handoff.append(el("button", { class: "primary", onclick: async () => { await api(`/v1/runs/${run.id}/resume`, { method: "POST" }); refresh(); }, text: "Resume from last checkpoint" }));
    }
    section.append(handoff);
  }
  return section;
}

// A bar when the run's metadata has numeric ``progress`` and ``total`` (metadata_updated).
export function progressBar(metadata) {
  const { progress, total } = metadata;
  if (typeof progress !== "number" || typeof total !== "number" || total <= 0) return null;
  const shown = `${progress} / ${total}`;
  return el("div", { class: "progress" },
    el("progress", { value: String(Math.min(progress, total)), max: String(total), "aria-label": `progress ${shown}` }),
    el("span", { text: ` ${shown}` }));
}

// The question a waiting run asks and a field for the answer (sent as a string), or one button
// per offered choice; POST /v1/runs/{id}/input moves the run on.
export function answerForm(run, refresh) {
  const question = run.question;
  const form = el("form", { class: "answer", "aria-label": "answer" });
  const send = async (response) => {
    await api(`/v1/runs/${run.id}/input`, { method: "POST", body: JSON.stringify({ response, question_id: question ? question.question_id : null }) });
    refresh();
  };
  if (question) form.append(el("p", { class: "question", text: question.question }));
  for (const choice of (question && question.choices) || []) {
    form.append(el("button", { type: "button", onclick: () => send(choice), text: choice }), " ");
  }
  const field = el("textarea", { "aria-label": "your answer", rows: "2" });
  keepDraft(field, `${run.id}/${question ? question.question_id : ""}`);
  form.append(el("label", {}, "Your answer ", field), el("button", { class: "primary", type: "submit", text: "Send answer" }));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (field.value.trim()) { drafts.clear(); send(field.value); }
  });
  return form;
}

// The panel is redrawn on every event of the run; a half-typed answer (and the focus and caret
// in it) carries over to the new field for the same question instead of being wiped.
const drafts = new Map();
let focusedDraft = null;
function keepDraft(field, draftKey) {
  const kept = drafts.get(draftKey);
  if (kept) {
    field.value = kept.text;
    if (focusedDraft === draftKey) {
      requestAnimationFrame(() => { field.focus(); field.setSelectionRange(kept.start, kept.end); });
    }
  }
  const save = () => drafts.set(draftKey, { text: field.value, start: field.selectionStart, end: field.selectionEnd });
  field.addEventListener("input", save);
  field.addEventListener("keyup", save);
  field.addEventListener("focus", () => { focusedDraft = draftKey; });
  field.addEventListener("blur", () => { if (field.isConnected) focusedDraft = null; });
}

