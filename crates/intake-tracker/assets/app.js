// The tracker's page: a payload search with filters, sort and paging (state in the URL), and a
// payload's timeline with per-service durations, updated live from the events stream. Plain DOM,
// no dependencies, only the tracker's own API.
"use strict";

const API = "/api/v1";
const ID_PATTERN = /^[A-Za-z0-9-]{1,64}$/;
const FILTERS = ["account", "org_id", "inventory_id", "system_id", "service", "status"];
const RANGES = { "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800 };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

// ---------------------------------------------------------------- identity
// Behind a gateway the identity header is added for the browser. Without one, a person pastes an
// x-rh-identity value; it stays in this tab (sessionStorage) and goes with every API call.

const IDENTITY_KEY = "intake.x-rh-identity";

function identity() {
  try { return sessionStorage.getItem(IDENTITY_KEY) || ""; } catch (_) { return ""; }
}

function apiHeaders(accept) {
  const headers = { accept };
  const id = identity();
  if (id) headers["x-rh-identity"] = id;
  return headers;
}

/** The header value for what was pasted: base64 as is, or the identity JSON encoded. Throws when
 * it is neither. */
function identityValue(text) {
  const t = text.trim();
  if (t.startsWith("{")) {
    JSON.parse(t);
    return btoa(String.fromCharCode(...new TextEncoder().encode(t)));
  }
  const decoded = JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(t), (c) => c.charCodeAt(0))));
  if (!decoded || typeof decoded.identity !== "object") throw new Error("no \"identity\" object");
  return t;
}

function showIdentity(reason) {
  $("identity-panel").hidden = false;
  $("identity-reason").textContent = reason || "";
  $("identity-input").value = identity();
  $("identity-input").focus();
}

function setupIdentity() {
  $("identity-button").classList.toggle("on", identity() !== "");
  $("identity-button").addEventListener("click", () => {
    if ($("identity-panel").hidden) showIdentity(""); else $("identity-panel").hidden = true;
  });
  $("identity-form").addEventListener("submit", (e) => {
    e.preventDefault();
    let value;
    try { value = identityValue($("identity-input").value); } catch (err) {
      $("identity-error").textContent = `Not an x-rh-identity value: ${err.message}`;
      return;
    }
    sessionStorage.setItem(IDENTITY_KEY, value);
    location.reload();
  });
  $("identity-clear").addEventListener("click", () => { sessionStorage.removeItem(IDENTITY_KEY); location.reload(); });
}

async function getJson(url) {
  const response = await fetch(url, { headers: apiHeaders("application/json") });
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (response.status === 401) {
    showIdentity(`${(body && body.message) || "This tracker needs an identity"}: paste an x-rh-identity value to continue.`);
  }
  return { status: response.status, body };
}

/** `2024-05-02T09:30:12.123456Z` → `2024-05-02 09:30:12.123456`. */
function when(iso) {
  return iso ? iso.replace("T", " ").replace("Z", "") : "";
}

/** A count for people, to the precision an estimate has: `2034567` → `2.0 M`, `48210` → `48.2 k`. */
function approximately(n) {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)} k`;
  return n.toLocaleString();
}

function ago(iso) {
  const secs = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (secs < 60) return `${secs}s ago`;
  if (secs < 3600) return `${Math.round(secs / 60)} min ago`;
  if (secs < 86400) return `${Math.round(secs / 3600)} h ago`;
  return `${Math.round(secs / 86400)} d ago`;
}

/** `HH:MM:SS.ffffff` → seconds. */
function seconds(span) {
  const m = /^(\d+):(\d\d):(\d\d(?:\.\d+)?)$/.exec(span || "");
  return m ? Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]) : 0;
}

/** A span for people: `00:00:05.625000` → `5.625 s`. */
function human(span) {
  const s = seconds(span);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(3).replace(/\.?0+$/, "")} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

function isBad(status) {
  return status === "error" || status === "rejected" || status.endsWith("_error") || status === "failed";
}

function pill(status) {
  return el("span", { class: `pill ${isBad(status) ? "error" : status}`, text: status });
}

// ---------------------------------------------------------------- search box

async function search(q) {
  q = q.trim();
  if (!q) return;
  if (ID_PATTERN.test(q)) {
    const { status } = await getJson(`${API}/payloads/${encodeURIComponent(q)}?verbosity=2`);
    if (status === 200) {
      location.assign(`/track?request_id=${encodeURIComponent(q)}`);
      return;
    }
  }
  for (const field of ["inventory_id", "system_id"]) {
    const { body } = await getJson(`${API}/payloads?${field}=${encodeURIComponent(q)}&page_size=1`);
    if (body && body.count > 0) {
      location.assign(`/?${field}=${encodeURIComponent(q)}`);
      return;
    }
  }
  location.assign(`/?not_found=${encodeURIComponent(q)}`);
}

// ---------------------------------------------------------------- list view

function listState() {
  const p = new URLSearchParams(location.search);
  return {
    params: p,
    sortBy: p.get("sort_by") || "created_at",
    sortDir: p.get("sort_dir") || "desc",
    page: Math.max(0, Number(p.get("page") || 0)),
    pageSize: Number(p.get("page_size") || 25),
    range: p.get("range") || "",
  };
}

function go(params) {
  for (const [k, v] of [...params.entries()]) if (v === "") params.delete(k);
  history.pushState(null, "", `/?${params}`);
  loadList();
}

function localToIso(value) {
  const t = new Date(value);
  return isNaN(t) ? "" : t.toISOString();
}

function isoToLocal(iso) {
  const t = new Date(iso);
  if (isNaN(t)) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())}T${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
}

async function loadList() {
  const s = listState();
  const form = $("filters");
  for (const name of FILTERS) form.elements[name].value = s.params.get(name) || "";
  form.elements.created_at_gte.value = isoToLocal(s.params.get("created_at_gte") || "");
  form.elements.created_at_lte.value = isoToLocal(s.params.get("created_at_lte") || "");
  for (const b of document.querySelectorAll("#picks button")) b.classList.toggle("on", b.dataset.range === s.range);
  $("custom-range").hidden = s.range !== "custom";
  $("search").value = s.params.get("not_found") || s.params.get("inventory_id") || s.params.get("system_id") || "";
  for (const b of document.querySelectorAll("button.sort")) {
    b.classList.remove("asc", "desc");
    if (b.dataset.sort === s.sortBy) b.classList.add(s.sortDir);
  }
  $("page-size").value = String(s.pageSize);

  const api = new URLSearchParams();
  for (const name of FILTERS) if (s.params.get(name)) api.set(name, s.params.get(name));
  if (RANGES[s.range]) api.set("created_at_gte", new Date(Date.now() - RANGES[s.range] * 1000).toISOString());
  if (s.range === "custom") {
    for (const name of ["created_at_gte", "created_at_lte"]) if (s.params.get(name)) api.set(name, s.params.get(name));
  }
  // Unfiltered, the exact count walks a whole index (seconds at millions of payloads): the first
  // view asks for an estimate from the id range. Any filter or time range counts exactly.
  const filtered = [...api.keys()].length > 0;
  if (!filtered) api.set("count", "estimate");
  api.set("sort_by", s.sortBy);
  api.set("sort_dir", s.sortDir);
  api.set("page", String(s.page));
  api.set("page_size", String(s.pageSize));

  const rows = $("payload-rows");
  if (s.params.get("not_found")) {
    rows.replaceChildren(el("tr", {}, el("td", { class: "empty", colspan: "7", text: `Nothing found for “${s.params.get("not_found")}”.` })));
    $("count").textContent = "";
    $("elapsed").textContent = "";
    return;
  }
  const { status, body } = await getJson(`${API}/payloads?${api}`);
  if (status !== 200) {
    rows.replaceChildren(el("tr", {}, el("td", { class: "empty", colspan: "7", text: (body && body.message) || `Error ${status}` })));
    return;
  }
  const estimated = body.count_exact === false;
  const count = $("count");
  count.textContent = estimated
    ? `about ${approximately(body.count)} payload${body.count === 1 ? "" : "s"}`
    : `${body.count.toLocaleString()} payload${body.count === 1 ? "" : "s"}`;
  count.title = estimated
    ? `at most ${body.count.toLocaleString()}: estimated from the range of payload ids; a filter counts exactly`
    : "";
  count.dataset.exact = String(!estimated);
  $("elapsed").textContent = `in ${(body.elapsed * 1000).toFixed(1)} ms`;
  if (body.data.length === 0) {
    rows.replaceChildren(el("tr", {}, el("td", { class: "empty", colspan: "7", text: "No payloads match these filters." })));
  } else {
    rows.replaceChildren(...body.data.map((p) => el("tr", { "data-request-id": p.request_id },
      el("td", {}, el("a", { class: "mono", href: `/track?request_id=${encodeURIComponent(p.request_id)}`, text: p.request_id })),
      el("td", { class: "mono", text: p.account }),
      el("td", { class: "mono", text: p.org_id }),
      el("td", { class: "mono", text: p.inventory_id }),
      el("td", { class: "mono", text: p.system_id }),
      el("td", {}, el("span", { class: "muted", text: `${p.last_service} ` }), pill(p.last_status)),
      el("td", { class: "mono", title: ago(p.created_at), text: when(p.created_at) }),
    )));
  }
  const pages = Math.max(1, Math.ceil(body.count / s.pageSize));
  $("page-label").textContent = `Page ${s.page + 1} of ${estimated ? "about " : ""}${pages.toLocaleString()}`;
  $("prev").disabled = s.page === 0;
  // An estimate is an upper bound: whether a next page exists is what the answer's cursor says.
  $("next").disabled = estimated ? !body.next_cursor : s.page + 1 >= pages;
}

function setupList() {
  $("list-view").hidden = false;
  const form = $("filters");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const s = listState();
    const p = new URLSearchParams();
    for (const name of FILTERS) p.set(name, form.elements[name].value.trim());
    p.set("range", s.range);
    if (s.range === "custom") {
      p.set("created_at_gte", localToIso(form.elements.created_at_gte.value));
      p.set("created_at_lte", localToIso(form.elements.created_at_lte.value));
    }
    p.set("sort_by", s.sortBy);
    p.set("sort_dir", s.sortDir);
    p.set("page_size", String(s.pageSize));
    go(p);
  });
  $("clear").addEventListener("click", (e) => { e.preventDefault(); go(new URLSearchParams()); });
  for (const b of document.querySelectorAll("#picks button")) {
    b.addEventListener("click", () => {
      const p = listState().params;
      p.set("range", b.dataset.range);
      p.delete("page");
      if (b.dataset.range !== "custom") { p.delete("created_at_gte"); p.delete("created_at_lte"); }
      go(p);
    });
  }
  for (const b of document.querySelectorAll("button.sort")) {
    b.addEventListener("click", () => {
      const s = listState();
      const p = s.params;
      p.set("sort_dir", s.sortBy === b.dataset.sort && s.sortDir === "desc" ? "asc" : "desc");
      p.set("sort_by", b.dataset.sort);
      p.delete("page");
      go(p);
    });
  }
  $("prev").addEventListener("click", () => { const s = listState(); s.params.set("page", String(Math.max(0, s.page - 1))); go(s.params); });
  $("next").addEventListener("click", () => { const s = listState(); s.params.set("page", String(s.page + 1)); go(s.params); });
  $("page-size").addEventListener("change", () => { const p = listState().params; p.set("page_size", $("page-size").value); p.delete("page"); go(p); });
  window.addEventListener("popstate", loadList);
  loadList();
}

// ---------------------------------------------------------------- track view

const statuses = new Map();

function renderIds(row) {
  const ids = $("ids");
  const fields = [["Account", row.account], ["Org id", row.org_id], ["Inventory id", row.inventory_id], ["System id", row.system_id]];
  ids.replaceChildren(...fields.map(([label, value]) => el("div", {}, el("dt", { text: label }), el("dd", { title: value || "", text: value || "—" }))));
}

let lastDuration = null;

function renderDurations(duration) {
  lastDuration = duration;
  $("total-time").textContent = human(duration.total_time);
  $("total-time").title = duration.total_time;
  $("services-time").textContent = human(duration.total_time_in_services);
  $("services-time").title = duration.total_time_in_services;
  renderChart();
}

/** A waterfall: one bar per service:source, placed where it ran on the payload's time axis. */
function renderChart() {
  const groups = new Map();
  for (const s of statuses.values()) {
    const key = `${s.service}:${s.source || "undefined"}`;
    const t = Date.parse(s.date);
    const g = groups.get(key) || { first: t, last: t, bad: false };
    g.bad = g.bad || isBad(s.status);
    g.first = Math.min(g.first, t);
    g.last = Math.max(g.last, t);
    groups.set(key, g);
  }
  if (groups.size === 0) return;
  const start = Math.min(...[...groups.values()].map((g) => g.first));
  const end = Math.max(...[...groups.values()].map((g) => g.last));
  const range = Math.max(1, end - start);
  const rows = [...groups.entries()].sort((a, b) => a[1].first - b[1].first || a[0].localeCompare(b[0]));
  $("chart").replaceChildren(...rows.flatMap(([name, g]) => {
    const span = (lastDuration && lastDuration[name]) || "";
    const fill = el("div", { class: g.bad ? "fill bad" : "fill", title: `${name.replace(":undefined", "")}: ${span}` });
    fill.style.left = `${((g.first - start) / range) * 100}%`;
    fill.style.width = `${((g.last - g.first) / range) * 100}%`;
    return [
      el("div", { class: "name", text: name.replace(":undefined", "") }),
      el("div", { class: "track", "data-group": name }, fill),
      el("div", { class: "time", title: span, text: span ? human(span) : "" }),
    ];
  }));
}

function renderTimeline(freshId) {
  const rows = [...statuses.values()].sort((a, b) => (a.date < b.date ? 1 : a.date > b.date ? -1 : b.id - a.id));
  $("timeline").replaceChildren(...rows.map((s) => {
    const li = el("li", { "data-status-id": String(s.id), class: `${isBad(s.status) ? "bad" : ""} ${s.id === freshId ? "fresh" : ""}` },
      el("span", { class: "when", title: ago(s.date), text: when(s.date) }),
      el("span", { class: "who", text: s.service }, s.source ? el("span", { class: "src", text: ` · ${s.source}` }) : ""),
      el("span", {}, pill(s.status)),
      el("span", { class: "msg", text: s.status_msg }),
    );
    return li;
  }));
  const last = rows[0];
  if (last) {
    $("last-status").replaceChildren(el("span", { class: "muted small", text: `${last.service} ` }), pill(last.status));
    renderIds(rows.find((r) => r.org_id) || last);
  }
}

function onStatusEvent(data) {
  const s = JSON.parse(data);
  const known = statuses.has(s.id);
  statuses.set(s.id, s);
  if (!known) { renderTimeline(s.id); renderChart(); }
}

function follow(requestId) {
  const url = `${API}/payloads/${encodeURIComponent(requestId)}/events`;
  if (identity()) { followWithIdentity(url); return; }
  const live = $("live");
  const source = new EventSource(url);
  source.onopen = () => { live.textContent = "live"; live.classList.add("on"); };
  source.onerror = () => { live.textContent = "reconnecting…"; live.classList.remove("on"); };
  source.addEventListener("status", (e) => onStatusEvent(e.data));
  source.addEventListener("duration", (e) => renderDurations(JSON.parse(e.data)));
}

/** EventSource cannot send headers: with an identity, the stream is read through fetch. */
async function followWithIdentity(url) {
  const live = $("live");
  let lastId = "";
  for (;;) {
    try {
      const headers = apiHeaders("text/event-stream");
      if (lastId) headers["last-event-id"] = lastId;
      const response = await fetch(url, { headers });
      if (!response.ok || !response.body) throw new Error(`status ${response.status}`);
      live.textContent = "live";
      live.classList.add("on");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = "message";
          const data = [];
          for (const line of block.split("\n")) {
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") event = text;
            else if (field === "data") data.push(text);
            else if (field === "id") lastId = text;
          }
          if (event === "status") onStatusEvent(data.join("\n"));
          else if (event === "duration") renderDurations(JSON.parse(data.join("\n")));
        }
      }
    } catch (_) { /* reconnect below */ }
    live.textContent = "reconnecting…";
    live.classList.remove("on");
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

async function setupTrack() {
  $("track-view").hidden = false;
  const requestId = new URLSearchParams(location.search).get("request_id") || "";
  $("search").value = requestId;
  document.title = `${requestId} · Payload tracker`;
  const { status, body } = requestId ? await getJson(`${API}/payloads/${encodeURIComponent(requestId)}`) : { status: 404 };
  if (status !== 200) {
    const box = $("not-found");
    box.hidden = false;
    box.textContent = status === 404 || status === 400
      ? `Payload “${requestId}” was not found.`
      : (body && body.message) || `Error ${status}`;
    return;
  }
  $("track-body").hidden = false;
  $("track-id").textContent = requestId;
  for (const s of body.data) statuses.set(s.id, s);
  renderTimeline();
  renderDurations(body.duration);
  follow(requestId);
}

// ---------------------------------------------------------------- start

document.addEventListener("DOMContentLoaded", () => {
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); search($("search").value); });
  setupIdentity();
  if (location.pathname === "/track") setupTrack();
  else setupList();
});
