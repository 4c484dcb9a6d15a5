// The deployment page's Test tab: the Form / JSON switch of a standard flow and the chat window of a
// chat flow. Requests go to the studio, which adds the endpoint's credential on the server.
"use strict";

(function () {
  const testForm = document.getElementById("test-form");
  const types = document.getElementById("flow-input-types");
  if (testForm && types) setUpEditors(testForm, JSON.parse(types.textContent));
  const chatForm = document.getElementById("chat-form");
  if (chatForm) setUpChat(chatForm);
})();

// --- standard flow: two editors kept in step ---------------------------------------------------

function setUpEditors(form, types) {
  const mode = document.getElementById("editor-mode");
  const json = document.getElementById("request-json");
  const notice = document.getElementById("editor-notice");

  form.querySelectorAll("[data-editor]").forEach((tab) => {
    tab.addEventListener("click", (event) => {
      event.preventDefault();
      switchTo(tab.dataset.editor);
    });
  });

  function switchTo(editor) {
    if (editor === mode.value) return;
    notice.textContent = "";
    if (editor === "json") {
      json.value = JSON.stringify(formValues(), null, 2);
    } else {
      let values;
      try {
        values = JSON.parse(json.value);
      } catch (error) {
        notice.textContent = `The JSON does not parse (${error.message}); the form kept its earlier values.`;
      }
      if (values !== undefined && (values === null || typeof values !== "object" || Array.isArray(values))) {
        notice.textContent = "The JSON is not an object of inputs; the form kept its earlier values.";
      } else if (values !== undefined) {
        fillForm(values);
      }
    }
    mode.value = editor;
    form.querySelectorAll("[data-editor-panel]").forEach((panel) => {
      const active = panel.dataset.editorPanel === editor;
      panel.hidden = !active;
      panel.disabled = !active;
    });
    form.querySelectorAll("[data-editor]").forEach((tab) => {
      const active = tab.dataset.editor === editor;
      tab.classList.toggle("active", active);
      tab.setAttribute("aria-selected", String(active));
    });
  }

  function field(name) {
    const element = form.elements.namedItem(name);
    return element instanceof Element && element.closest("#form-editor") ? element : null;
  }

  function formValues() {
    const values = {};
    for (const [name, type] of Object.entries(types)) {
      const element = field(name);
      if (!element) continue;
      const raw = element.value;
      if (type === "bool") {
        values[name] = element.checked;
      } else if (type === "int" || type === "double") {
        values[name] = raw.trim() === "" ? null : Number(raw);
      } else if (type === "list" || type === "object") {
        try {
          values[name] = raw.trim() === "" ? null : JSON.parse(raw);
        } catch {
          values[name] = raw; // the server names the input if it is not valid JSON
        }
      } else {
        values[name] = raw;
      }
    }
    return values;
  }

  function fillForm(values) {
    for (const [name, type] of Object.entries(types)) {
      const element = field(name);
      if (!element || !(name in values)) continue;
      const value = values[name];
      if (type === "bool") {
        element.checked = value === true || value === "true";
      } else if (value === null || value === undefined) {
        element.value = "";
      } else if (type === "list" || type === "object") {
        element.value = typeof value === "string" ? value : JSON.stringify(value, null, 2);
      } else {
        element.value = typeof value === "string" ? value : JSON.stringify(value);
      }
    }
  }
}

// --- chat flow: chat_history kept here, answers streamed ---------------------------------------
// The conversation is kept in sessionStorage under the deployment's key, so it survives a switch to another
// tab of the page (or a reload) in this browser tab; Clear chat forgets it.

function setUpChat(form) {
  const chatWindow = document.getElementById("chat-window");
  const input = document.getElementById("chat-input");
  const send = document.getElementById("chat-send");
  const emptyNote = document.getElementById("chat-empty").cloneNode(true);
  const historyField = form.dataset.historyField;
  const storageKey = form.dataset.chatKey;
  const saved = loadChat(storageKey);
  const history = saved.history; // promptflow's chat_history: {inputs, outputs} per completed turn
  const shown = saved.shown; // what the window shows: {question, answer | error, meta} per finished turn
  let current = null; // the turn being answered: its AbortController
  shown.forEach(showSaved);

  function remember(entry) {
    shown.push(entry);
    saveChat(storageKey, history, shown);
  }

  function showSaved(entry) {
    const turn = addTurn(entry.question);
    if (typeof entry.error === "string") {
      showError(turn, entry.error, entry.meta || "");
    } else {
      turn.answer.textContent = entry.answer || "";
      turn.answer.classList.remove("streaming", "waiting");
      turn.meta.textContent = entry.meta || "";
      linkTrace(turn, entry.requestId);
    }
  }

  // With Application Insights diagnostics on, each answer links to its request's trace (the Monitoring tab).
  function linkTrace(turn, requestId) {
    if (!form.dataset.traceUrl || !requestId) return;
    const link = document.createElement("a");
    link.href = `${form.dataset.traceUrl}?request_id=${encodeURIComponent(requestId)}`;
    link.textContent = "View trace";
    link.className = "trace-link";
    turn.meta.append(" · ", link);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!current) sendTurn();
  });

  document.getElementById("clear-chat").addEventListener("click", () => {
    if (current) current.abort();
    current = null;
    history.length = 0;
    shown.length = 0;
    forgetChat(storageKey);
    chatWindow.replaceChildren(emptyNote.cloneNode(true));
    setBusy(false);
    input.focus();
  });

  async function sendTurn() {
    const question = input.value;
    if (!question.trim()) {
      input.focus();
      return;
    }
    const body = new FormData(form);
    body.set(historyField, JSON.stringify(history));
    const turn = addTurn(question);
    const controller = new AbortController();
    current = controller;
    input.value = "";
    setBusy(true);
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body,
        headers: { Accept: "text/event-stream" },
        credentials: "same-origin",
        signal: controller.signal,
      });
      const type = response.headers.get("content-type") || "";
      if (!type.startsWith("text/event-stream")) {
        fail(turn, await errorMessage(response));
        return;
      }
      let finished = false;
      await readEvents(response, async (event, data) => {
        if (controller.signal.aborted) return;
        if (event === "delta") {
          turn.answer.textContent += data.text;
          turn.answer.classList.remove("waiting");
          scrollDown();
          await painted(); // each chunk gets its own frame, so the answer is seen growing
        } else if (event === "done") {
          finished = true;
          turn.answer.textContent = data.answer;
          turn.answer.classList.remove("streaming", "waiting");
          turn.meta.textContent = describe(data);
          history.push(data.turn);
          remember({ question, answer: data.answer, meta: turn.meta.textContent, requestId: data.request_id });
          linkTrace(turn, data.request_id);
        } else if (event === "error") {
          finished = true;
          fail(turn, data.message, describe(data));
        }
      });
      if (!finished && !controller.signal.aborted) fail(turn, "The answer stopped before it was complete.");
    } catch (error) {
      if (error.name !== "AbortError") fail(turn, `The studio did not answer: ${error.message}`);
    } finally {
      if (current === controller) {
        current = null;
        setBusy(false);
        input.focus();
      }
    }
  }

  function addTurn(question) {
    chatWindow.querySelector(".empty-chat")?.remove();
    const element = document.createElement("div");
    element.className = "turn";
    const user = document.createElement("div");
    user.className = "bubble user";
    user.textContent = question;
    const answer = document.createElement("div");
    answer.className = "bubble assistant streaming waiting";
    answer.setAttribute("data-role", "answer");
    const meta = document.createElement("div");
    meta.className = "turn-meta small muted";
    element.append(user, answer, meta);
    chatWindow.append(element);
    scrollDown();
    return { element, answer, meta, question };
  }

  function fail(turn, message, about = "") {
    if (!turn.element.isConnected) return; // the chat was cleared meanwhile
    showError(turn, message, about);
    remember({ question: turn.question, error: message, meta: about });
  }

  function showError(turn, message, about) {
    turn.answer.className = "bubble error";
    turn.answer.setAttribute("role", "alert");
    turn.answer.textContent = message;
    turn.meta.textContent = about;
    scrollDown();
  }

  function setBusy(busy) {
    send.disabled = busy;
    form.setAttribute("aria-busy", String(busy));
  }

  function scrollDown() {
    chatWindow.scrollTop = chatWindow.scrollHeight;
  }
}

function loadChat(key) {
  try {
    const saved = JSON.parse(sessionStorage.getItem(key) || "null");
    if (saved && Array.isArray(saved.history) && Array.isArray(saved.shown)) return saved;
  } catch {
    // storage unavailable or not ours: start afresh
  }
  return { history: [], shown: [] };
}

function saveChat(key, history, shown) {
  try {
    sessionStorage.setItem(key, JSON.stringify({ history, shown }));
  } catch {
    // storage full or unavailable: the chat still works, it is just not kept
  }
}

function forgetChat(key) {
  try {
    sessionStorage.removeItem(key);
  } catch {
    // nothing kept
  }
}

function describe(data) {
  const parts = [];
  if (data.deployment) parts.push(`Deployment ${data.deployment}`);
  parts.push(`status ${data.status}`);
  if (typeof data.latency_ms === "number") parts.push(`${Math.round(data.latency_ms)} ms`);
  return parts.join(" · ");
}

async function errorMessage(response) {
  if (response.redirected) return "You were signed out: reload the page and sign in again.";
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch {
    // not JSON: fall back to the status line
  }
  return `The studio answered ${response.status} ${response.statusText}.`;
}

// Server-sent events from a fetch() body: "event:" and "data:" lines, a blank line ends each event.
async function readEvents(response, handle) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) await handle(event, JSON.parse(data.join("\n")));
    }
  }
}

function painted() {
  if (document.hidden) return Promise.resolve(); // no frames in a hidden tab: do not stall the chat
  return new Promise((resolve) => requestAnimationFrame(() => resolve()));
}
