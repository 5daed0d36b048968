// Linli console pages: rendered on the server; this script only keeps them live.
// The event stream says "something changed"; the page fetches its own <main> again
// (?part=main), so what is shown is always what the server renders. No build step.
"use strict";

const main = document.getElementById("main");
const seenSos = new Set([...document.querySelectorAll("tr.sos[data-case-id]")].map((r) => r.dataset.caseId));
let csrf = "";
let pending = null;

function soundOn() { return localStorage.getItem("linli.sound") !== "off"; }

function showSound() {
  const button = document.getElementById("sound");
  const on = soundOn();
  button.setAttribute("aria-pressed", String(on));
  button.textContent = on ? button.dataset.on : button.dataset.off;
}

// The audible cue for a new SOS: two short tones (WebAudio; nothing to download).
function cue() {
  window.__linliCues = (window.__linliCues || 0) + 1;
  if (!soundOn()) return;
  try {
    const ctx = new AudioContext();
    [0, 0.35].forEach((at) => {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = 880;
      gain.gain.value = 0.2;
      osc.connect(gain).connect(ctx.destination);
      osc.start(ctx.currentTime + at);
      osc.stop(ctx.currentTime + at + 0.2);
    });
  } catch (e) { /* no audio device: the row still stands out */ }
}

function noticeSos() {
  let fresh = false;
  for (const row of document.querySelectorAll("tr.sos[data-case-id]")) {
    if (!seenSos.has(row.dataset.caseId)) { seenSos.add(row.dataset.caseId); fresh = true; }
  }
  if (fresh) cue();
}

async function refresh() {
  pending = null;
  const url = new URL(location.href);
  url.searchParams.set("part", "main");
  const response = await fetch(url, { credentials: "same-origin" });
  if (response.status === 401) { location.href = "/login"; return; }
  if (!response.ok) return;
  // What the operator is typing, and the workflow's last refusal, survive the swap.
  const kept = [...main.querySelectorAll("textarea[name], input[name]")].map((f) => [f.name, f.value]);
  const refusal = (document.getElementById("action-error") || {}).textContent || "";
  const focused = document.activeElement && document.activeElement.name;
  main.innerHTML = await response.text();
  for (const [name, value] of kept) {
    const field = main.querySelector(`[name="${name}"]`);
    if (field) field.value = value;
  }
  const error = document.getElementById("action-error");
  if (error && refusal) error.textContent = refusal;
  if (focused && main.querySelector(`[name="${focused}"]`)) main.querySelector(`[name="${focused}"]`).focus();
  window.__linliRefreshes = (window.__linliRefreshes || 0) + 1;
  noticeSos();
  bindForms();
}

function soon() { if (!pending) pending = setTimeout(refresh, 300); }

function connect() {
  const conn = document.getElementById("conn");
  const source = new EventSource("/api/stream");
  source.onopen = () => { conn.className = "conn on"; conn.textContent = conn.dataset.on; };
  source.onerror = () => { conn.className = "conn off"; conn.textContent = conn.dataset.off; };
  source.addEventListener("case", soon);
  source.addEventListener("alert", soon);
}

async function session() {
  const response = await fetch("/api/session", { credentials: "same-origin" });
  if (response.ok) csrf = (await response.json()).csrf || "";
}

async function post(url, body) {
  if (!csrf) await session();
  return fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(body),
  });
}

// Case actions: the buttons are those the access table allows; the workflow may still say
// no, and then its reason is shown next to them.
function bindForms() {
  const form = document.getElementById("case-actions");
  if (!form || form.dataset.bound) return;
  form.dataset.bound = "1";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const action = event.submitter && event.submitter.value;
    if (!action) return;
    const note = form.querySelector("[name=note]").value;
    const data = {};
    for (const name of ["assignee", "approver"]) {
      const value = (form.querySelector(`[name=${name}]`) || {}).value;
      if (value) data[name] = value;
    }
    if (action === "extend") { data.seconds = 3600; data.stage = "case"; }
    if (action === "supervise") data.stage = "case";
    if (action === "verify") data.passed = true;
    if (action === "call_back" || action === "false_alarm") data.callback_at = Number(form.dataset.now);
    const response = await post(`/api/cases/${form.dataset.caseId}/${action}`, { note, data });
    const error = document.getElementById("action-error");
    if (response.ok) {
      error.textContent = "";
      form.querySelector("[name=note]").value = "";
      await refresh();
      return;
    }
    const body = await response.json().catch(() => ({}));
    error.textContent = body.message || String(response.status);
  });
}

document.getElementById("sound").addEventListener("click", () => {
  localStorage.setItem("linli.sound", soundOn() ? "off" : "on");
  showSound();
});
document.getElementById("lang").addEventListener("click", (event) => {
  document.cookie = `linli_lang=${event.target.dataset.lang}; path=/; SameSite=Strict; max-age=31536000`;
  location.reload();
});
document.getElementById("logout").addEventListener("click", async () => {
  await post("/logout", {});
  location.href = "/login";
});

showSound();
bindForms();
connect();
// Elapsed times and lights move with the clock, not only with events.
setInterval(soon, 15000);
