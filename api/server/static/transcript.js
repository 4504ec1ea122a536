// A conversation's messages as a chat: one bubble per message, its role named in words (not by
// colour alone), kept in the order of the log however the messages arrived.
import { el } from "./common.js";

const ROLE_NAMES = { user: "User", assistant: "Assistant", tool: "Tool", system: "System" };

// ``found`` is a message of ``/v1/runs/{id}/messages`` or a ``message_created`` event's payload
// with the event's id.
export function bubble(found) {
  const role = ROLE_NAMES[found.role] ? found.role : "system";
  const item = el("li", { class: `msg msg-${role}`, "data-role": found.role, "data-event-id": String(found.id) },
    el("span", { class: "msg-role", text: ROLE_NAMES[found.role] || found.role }),
    el("div", { class: "msg-text", text: found.content }));
  if (isLong(found.content)) item.append(unfold(item));
  return item;
}

// A long message (a tool's output, a pasted file) is folded to a few lines until asked for:
// one message must not make the page long.
const LONG_CHARS = 400;
const LONG_LINES = 6;

function isLong(content) { return content.length > LONG_CHARS || content.split("\n").length > LONG_LINES; }

function unfold(item) {
  item.classList.add("folded");
  const button = el("button", { type: "button", class: "msg-unfold", "aria-expanded": "false", text: "Show the whole message" });
  button.addEventListener("click", () => {
    const folded = item.classList.toggle("folded");
    button.setAttribute("aria-expanded", String(!folded));
    button.textContent = folded ? "Show the whole message" : "Fold the message";
  });
  return button;
}

// Put ``node`` (carrying ``data-event-id``) into ``list`` by event id, once: a message or event
// read from the JSON API and again from the stream is shown once, in the log's order.
export function placeInOrder(list, node) {
  const id = Number(node.dataset.eventId);
  if (list.querySelector(`:scope > [data-event-id="${id}"]`)) return false;
  let after = list.lastElementChild;
  while (after && Number(after.dataset.eventId) > id) after = after.previousElementSibling;
  if (after) after.after(node); else list.prepend(node);
  return true;
}
