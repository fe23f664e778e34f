// dts dashboard: auto-refresh of the server-rendered page and actions
// through the JSON API (the browser sends the page's Basic credentials).
"use strict";

const REFRESH_MS = 5000;

function showError(id, message) {
  const box = document.getElementById(id);
  if (!box) { window.alert(message); return; }
  box.textContent = message;
  box.hidden = false;
}

// Absolute URLs from the origin: a page opened with credentials in its
// URL (http://user:pw@host/) cannot fetch URLs resolved against it.
function here(path) {
  return window.location.origin + path;
}

async function call(method, path, body) {
  const init = { method, headers: { "Accept": "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = body;
  }
  const res = await fetch(here(path), init);
  let envelope;
  try {
    envelope = await res.json();
  } catch (e) {
    throw new Error("HTTP " + res.status + " without a JSON answer");
  }
  if (envelope.code !== 0) {
    throw new Error(envelope.message + " (code " + envelope.code + ")");
  }
  return envelope.data;
}

const actions = {
  async stop(el) { await call("POST", "/v1/dispatch/stop/" + el.dataset.id); },
  async start(el) { await call("POST", "/v1/dispatch/start/" + el.dataset.id); },
  async delete(el) {
    if (!window.confirm("Delete task " + el.dataset.id + "? Its checkpoint is lost.")) { return false; }
    await call("DELETE", "/v1/task/" + el.dataset.id);
    window.location.assign(here("/"));
    return false;
  },
  async alter(el) {
    const text = document.getElementById("spec-editor").value;
    try {
      JSON.parse(text);
    } catch (e) {
      showError("alter-error", "Not valid JSON: " + e.message);
      return false;
    }
    try {
      await call("PUT", "/v1/dispatch/alter/" + el.dataset.id, text);
    } catch (e) {
      showError("alter-error", e.message);
      return false;
    }
    const box = document.getElementById("alter-error");
    if (box) { box.hidden = true; }
    delete document.getElementById("spec-editor").dataset.dirty;
  },
  async drain(el) { await call("POST", "/v1/workers/" + encodeURIComponent(el.dataset.worker) + "/drain"); },
  async activate(el) { await call("POST", "/v1/workers/" + encodeURIComponent(el.dataset.worker) + "/activate"); },
};

document.addEventListener("click", async (event) => {
  const el = event.target.closest("button[data-action]");
  if (!el) { return; }
  const run = actions[el.dataset.action];
  if (!run) { return; }
  el.disabled = true;
  try {
    if ((await run(el)) !== false) { await refresh(); }
  } catch (e) {
    showError("action-error", e.message);
  } finally {
    el.disabled = false;
  }
});

// Edits in the spec editor survive refreshes, and so do shown errors.
document.addEventListener("input", (event) => {
  if (event.target.id === "spec-editor") { event.target.dataset.dirty = "1"; }
});

// Replaces the page's content with a fresh rendering, keeping the parts
// the operator is working with.
async function refresh() {
  const res = await fetch(here(window.location.pathname + window.location.search), {
    credentials: "same-origin",
    headers: { "Accept": "text/html" },
  });
  if (!res.ok) { return; }
  const doc = new DOMParser().parseFromString(await res.text(), "text/html");
  const fresh = doc.getElementById("content");
  const current = document.getElementById("content");
  if (!fresh || !current) { return; }
  const editor = document.getElementById("spec-editor");
  const alter = document.getElementById("alter");
  const freshAlter = fresh.querySelector("#alter");
  if (alter && freshAlter && editor && (editor.dataset.dirty || document.activeElement === editor)) {
    freshAlter.replaceWith(alter);
  }
  const shown = document.getElementById("action-error");
  const freshShown = fresh.querySelector("#action-error");
  if (shown && freshShown && !shown.hidden) { freshShown.replaceWith(shown); }
  current.replaceWith(fresh);
}

window.setInterval(() => {
  const box = document.getElementById("auto-refresh");
  if (!box || box.checked) { refresh().catch(() => {}); }
}, REFRESH_MS);
