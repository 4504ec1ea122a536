// A conversation's messages as a chat: one bubble per message, its role named in words (not by
// colour alone), kept in the order of the log however the messages arrived.
import { el } from "./common.js";

const ROLE_NAMES = { user: "User", assistant: "Assistant", tool: "Tool", system: "System" };

// ``found`` is a message of ``/v1/runs/{id}/messages`` or a ``message_created`` event's payload
// with the event's id.
export function bubble(found) {
  const role = ROLE_NAMES[found.role] ? found.role : "system";
  return el("li", { class: `msg msg-${role}`, "data-role": found.role, "data-event-id": String(found.id) },
    el("span", { class: "msg-role", text: ROLE_NAMES[found.role] || found.role }),
    el("div", { class: "msg-text", text: found.content }));
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
