// dropvec's page: upload into the inbox, watch each file's state, search and ask.
// No framework and nothing from the network; text is always set as text, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const files = new Map(); // path -> state
let token = sessionStorage.getItem("dropvec-token") || "";

function headers(extra = {}) {
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers || {}) });
  if (response.status === 401) {
    askForToken();
    throw new Error("the API token is needed");
  }
  return response;
}

function askForToken() {
  $("token-form").hidden = false;
  $("token").focus();
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value;
  sessionStorage.setItem("dropvec-token", token);
  $("token-form").hidden = true;
  follow();
});

// The event stream: fetch (not EventSource, which cannot send the token), read as it comes.
let following = false;
async function follow() {
  if (following) return;
  following = true;
  try {
    const response = await api("/events");
    if (!response.ok) throw new Error(`events: ${response.status}`);
    await records(response, "\n\n", onEvent);
  } catch (error) {
    $("totals").textContent = `Not connected: ${error.message}`;
  } finally {
    following = false;
  }
  if ($("token-form").hidden) setTimeout(follow, 2000);
}

function onEvent(block) {
  let name = "message";
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) name = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  const payload = JSON.parse(data || "{}");
  if (name === "files") {
    for (const f of payload.files) files.set(f.path, f);
    for (const gone of payload.gone) files.delete(gone);
    renderFiles();
  } else if (name === "status") {
    renderStatus(payload);
  }
}

function renderStatus(s) {
  if (s.error) {
    $("totals").textContent = s.error;
    return;
  }
  const f = s.files || {};
  const rate = s.chunks_per_second || {};
  const perSecond = (rate.embedded || 0) + (rate.reused || 0);
  $("totals").textContent =
    `${f.indexed || 0} indexed, ${(f.queued || 0) + (f.indexing || 0)} in progress, ` +
    `${f.skipped || 0} skipped, ${f.failed || 0} failed · ${s.entities} chunks stored · ` +
    `queue ${s.queue_depth} · ${s.workers} worker(s) · ${perSecond.toFixed(1)} chunks/s`;
}

function stateText(f) {
  if (f.status === "indexed") return `indexed`;
  if (f.status === "indexing" && f.chunks) {
    return `indexing ${f.chunks_embedded + f.chunks_reused}/${f.chunks}`;
  }
  return f.status;
}

function renderFiles() {
  const body = $("files");
  const rows = [...files.values()].sort((a, b) => a.path.localeCompare(b.path));
  body.replaceChildren(
    ...rows.map((f) => {
      const row = document.createElement("tr");
      row.dataset.path = f.relative || f.path;
      const path = cell(f.relative || f.path, "path");
      const state = cell(stateText(f), `state state-${f.status}`);
      if (f.reason && f.status !== "indexed") {
        const reason = document.createElement("span");
        reason.className = "reason";
        reason.textContent = f.reason;
        state.append(reason);
      }
      const chunks = cell(f.chunks ? String(f.chunks) : "", "chunks");
      const actions = cell("", "actions");
      if (f.relative) {
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "quiet";
        remove.textContent = "Delete";
        remove.setAttribute("aria-label", `Delete ${f.relative}`);
        remove.addEventListener("click", () => deleteFile(f.relative));
        actions.append(remove);
      }
      row.append(path, state, chunks, actions);
      return row;
    }),
  );
}

function cell(text, className) {
  const td = document.createElement("td");
  td.className = className;
  td.textContent = text;
  return td;
}

async function deleteFile(relative) {
  const path = relative.split("/").map(encodeURIComponent).join("/");
  const response = await api(`/files/${path}`, { method: "DELETE" });
  $("upload-status").textContent = response.ok ? `Deleted ${relative}` : `Could not delete ${relative}`;
}

$("retry").addEventListener("click", async () => {
  const response = await api("/files/retry", { method: "POST" });
  const body = await response.json();
  $("upload-status").textContent = `${body.retried} failed file(s) queued again`;
});

// Uploads: the pickers, and drops of files and whole folders.
async function upload(entries) {
  if (!entries.length) return;
  const form = new FormData();
  for (const [file, name] of entries) form.append("file", file, name);
  $("upload-status").textContent = `Uploading ${entries.length} file(s)…`;
  try {
    const response = await api("/files", { method: "POST", body: form });
    const body = await response.json();
    $("upload-status").textContent = response.ok
      ? `Added ${body.files.join(", ")}`
      : `Not added: ${body.detail}`;
  } catch (error) {
    $("upload-status").textContent = `Not added: ${error.message}`;
  }
}

$("pick-files").addEventListener("change", (event) => {
  upload([...event.target.files].map((f) => [f, f.name]));
  event.target.value = "";
});
$("pick-folder").addEventListener("change", (event) => {
  upload([...event.target.files].map((f) => [f, f.webkitRelativePath || f.name]));
  event.target.value = "";
});

const drop = $("drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", async (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const items = [...event.dataTransfer.items].map((i) => i.webkitGetAsEntry()).filter(Boolean);
  const found = [];
  for (const entry of items) await walk(entry, "", found);
  upload(found);
});
drop.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") $("pick-files").click();
});

async function walk(entry, prefix, found) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    found.push([file, prefix + entry.name]);
    return;
  }
  const reader = entry.createReader();
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    for (const child of batch) await walk(child, `${prefix}${entry.name}/`, found);
  }
}

// Search and ask.
$("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("answer").hidden = true;
  const query = $("query").value;
  const response = await api("/search", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ query, k: 5 }),
  });
  const body = await response.json();
  renderHits(response.ok ? body.hits : [], query, response.ok ? "" : body.detail);
});

$("ask-button").addEventListener("click", async () => {
  const question = $("query").value;
  if (!question) return;
  $("answer").hidden = false;
  $("answer-text").textContent = "";
  $("answer-notice").textContent = "";
  const response = await api("/ask", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ question, k: 5 }),
  });
  if (!response.ok) {
    $("answer-notice").textContent = (await response.json()).detail;
    return;
  }
  await records(response, "\n", (line) => {
    const item = JSON.parse(line);
    if (item.sources) renderHits(item.sources, question, "");
    if (item.text) $("answer-text").textContent += item.text;
    if (item.notice) $("answer-notice").textContent = item.notice;
    if (item.error) $("answer-notice").textContent = item.error;
    if (item.done) $("answer").dataset.done = "true";
  });
});

// A streamed response's records, each handed to onRecord as it arrives (separated by separator).
async function records(response, separator, onRecord) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf(separator)) >= 0) {
      onRecord(buffer.slice(0, end));
      buffer = buffer.slice(end + separator.length);
    }
  }
}

function renderHits(hits, query, error) {
  const list = $("results");
  if (error) {
    list.replaceChildren(Object.assign(document.createElement("li"), { textContent: error }));
    return;
  }
  const terms = query.toLowerCase().match(/[\p{L}\p{N}_-]{3,}/gu) || [];
  list.replaceChildren(
    ...hits.map((h) => {
      const item = document.createElement("li");
      const where = document.createElement("div");
      where.className = "where";
      const place = [h.page && `p. ${h.page}`, ...Object.entries(h.location || {}).map(([k, v]) => `${k} ${v}`),
        h.section && `§ ${h.section}`].filter(Boolean);
      where.textContent = `${h.file} ${place.join(" · ")} · score ${h.score.toFixed(3)}`;
      const passage = document.createElement("p");
      passage.className = "passage";
      passage.append(...marked(h.text, terms));
      item.append(where, passage);
      return item;
    }),
  );
}

// The passage as text nodes, with each query term in a <mark> (never through innerHTML).
function marked(text, terms) {
  if (!terms.length) return [document.createTextNode(text)];
  const escaped = terms.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const pattern = new RegExp(`(${escaped.join("|")})`, "giu");
  return text.split(pattern).map((piece, i) => {
    if (i % 2 === 0) return document.createTextNode(piece);
    const mark = document.createElement("mark");
    mark.textContent = piece;
    return mark;
  });
}

follow();
