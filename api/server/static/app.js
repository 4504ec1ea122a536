// runtrack dashboard: no build step (ES modules). Live data comes from EventSource on the SSE
// streams; JSON reads only fill in a run when the stream says it changed.
import { board } from "./board.js";
import { closeAll, el, main } from "./common.js";
import { conversationPage } from "./conversation_page.js";
import { runPage } from "./run_page.js";

async function route() {
  closeAll();
  const [path, search] = location.hash.split("?");
  const [, page, id] = path.split("/");
  try {
    if (page === "runs" && id) await runPage(decodeURIComponent(id));
    else if (page === "conversations" && id) await conversationPage(decodeURIComponent(id));
    else await board(search || "");
  } catch (error) {
    main.replaceChildren(el("section", { role: "alert", text: String(error.message || error) }));
  }
  main.focus();
}

window.addEventListener("hashchange", route);
route();
