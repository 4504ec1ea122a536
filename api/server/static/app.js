// runtrack dashboard: no build step (ES modules). Live data comes from EventSource on the SSE
// streams; JSON reads only fill in a run when the stream says it changed.
import { board } from "./board.js";
import { PageLeft, closeAll, currentPage, el, main, startPage } from "./common.js";
import { conversationPage } from "./conversation_page.js";
import { runPage } from "./run_page.js";

async function route() {
  const shown = startPage();
  closeAll();
  const [path, search] = location.hash.split("?");
  const [, page, id] = path.split("/");
  try {
    if (page === "runs" && id) await runPage(decodeURIComponent(id));
    else if (page === "conversations" && id) await conversationPage(decodeURIComponent(id));
    else await board(search || "");
  } catch (error) {
    if (error instanceof PageLeft || shown !== currentPage()) return;
    main.replaceChildren(el("section", { role: "alert", text: String(error.message || error) }));
  }
  if (shown === currentPage()) main.focus();
}

window.addEventListener("hashchange", route);
route();
