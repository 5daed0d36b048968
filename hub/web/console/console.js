// Linli live console: loads alerts once, then applies server-sent events without reloading.
"use strict";

const TEXT = {
  zh: {
    title: "邻里 · 指挥中心实时告警", disconnected: "未连接", connected: "实时", active: "处理中",
    sos24: "24 小时一键呼救", time: "时间", severity: "级别", alert: "告警", device: "设备", grid: "网格",
    count: "次数", status: "状态", empty: "暂无告警", unassigned: "未分配(指挥中心)",
    sev: { critical: "紧急", major: "重要", minor: "一般", info: "提示" },
    st: { active: "处理中", resolved: "已解除" }, other: "English",
    cases: "案件(处理中)", alerts: "告警", light: "时限", assignee: "承办人", state: "环节", filed: "立案",
    noCases: "暂无待办案件",
    states: { filed: "立案", dispatched: "派遣·待受理", accepted: "已受理", on_site: "已到场", handled: "已反馈",
      verified: "已核查", closed: "已结案", void: "作废" },
    lights: { green: "正常", yellow: "临期", red: "超时" },
  },
  en: {
    title: "Linli · Command centre live alerts", disconnected: "offline", connected: "live", active: "active",
    sos24: "SOS in 24 h", time: "Time", severity: "Severity", alert: "Alert", device: "Device", grid: "Grid",
    count: "Count", status: "Status", empty: "No alerts", unassigned: "unassigned (command centre)",
    sev: { critical: "critical", major: "major", minor: "minor", info: "info" },
    st: { active: "active", resolved: "resolved" }, other: "中文",
    cases: "Open cases", alerts: "Alerts", light: "SLA", assignee: "Assignee", state: "Stage", filed: "Filed",
    noCases: "No open cases",
    states: { filed: "filed", dispatched: "dispatched", accepted: "accepted", on_site: "on site", handled: "reported",
      verified: "verified", closed: "closed", void: "void" },
    lights: { green: "on time", yellow: "due soon", red: "overdue" },
  },
};

let lang = localStorage.getItem("linli.lang") || "zh";
let timeZone = "Asia/Shanghai";  // replaced by the hub's configured zone from /api/session
let csrf = "";  // the session's CSRF token (from /api/session), sent on every POST
const alerts = new Map();
const cases = new Map();

function worstLight(c) {
  const open = c.sla.filter((s) => !s.done);
  return ["red", "yellow"].find((l) => open.some((s) => s.light === l)) || "green";
}

function renderCases() {
  const body = document.querySelector("#cases tbody");
  body.replaceChildren();
  const rank = { red: 0, yellow: 1, green: 2 };
  const open = [...cases.values()].filter((c) => c.state !== "closed" && c.state !== "void")
    .sort((a, b) => rank[worstLight(a)] - rank[worstLight(b)] || (a.filed_at < b.filed_at ? 1 : -1));
  for (const c of open) {
    const tr = document.createElement("tr");
    tr.dataset.caseId = c.id;
    const light = worstLight(c);
    tr.append(
      cell(t("lights")[light], "light-tag " + light),
      cell(lang === "zh" ? c.title.zh : (c.title.en || c.title.zh)),
      cell(c.grid || t("unassigned")),
      cell(c.assignee || ""),
      cell(t("states")[c.state] || c.state),
      cell(new Date(c.filed_at).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", { timeZone })),
    );
    body.appendChild(tr);
  }
  document.getElementById("no-cases").hidden = open.length > 0;
}

function t(key) { return TEXT[lang][key]; }

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) {
    const value = t(el.dataset.i18n);
    if (typeof value === "string") el.textContent = value;
  }
  document.getElementById("lang").textContent = t("other");
  render();
  renderCases();
}

function cell(text, className) {
  const td = document.createElement("td");
  if (className) {
    const span = document.createElement("span");
    span.className = className;
    span.textContent = text;
    td.appendChild(span);
  } else {
    td.textContent = text;
  }
  return td;
}

function render(newId) {
  const body = document.querySelector("#alerts tbody");
  body.replaceChildren();
  const sorted = [...alerts.values()].sort((a, b) => (b.raised_at > a.raised_at ? 1 : -1));
  const dayAgo = new Date(Date.now() - 86400000).toISOString();
  let active = 0, sos = 0;
  for (const a of sorted) {
    if (a.status === "active") active += 1;
    if (a.category === "sos" && a.raised_at >= dayAgo) sos += 1;
    const tr = document.createElement("tr");
    tr.dataset.alertId = String(a.id);
    tr.dataset.rule = a.rule;
    if (a.id === newId) tr.className = "new";
    tr.append(
      cell(new Date(a.raised_at).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", { timeZone })),
      cell(t("sev")[a.severity] || a.severity, "sev " + a.severity),
      cell(lang === "zh" ? a.title.zh : (a.title.en || a.title.zh)),
      cell(a.device_id),
      cell(a.grid || t("unassigned")),
      cell(String(a.count)),
      cell(t("st")[a.status] || a.status, "status " + a.status),
    );
    body.appendChild(tr);
  }
  document.getElementById("count-active").textContent = String(active);
  document.getElementById("count-sos").textContent = String(sos);
  document.getElementById("empty").hidden = alerts.size > 0;
}

async function load() {
  const session = await fetch("/api/session", { credentials: "same-origin" });
  if (session.status === 401) { location.href = "/login"; return; }
  const who = await session.json();
  timeZone = who.timezone;
  csrf = who.csrf || "";
  const response = await fetch("/api/alerts?limit=200", { credentials: "same-origin" });
  if (response.status === 401) { location.href = "/login"; return; }
  alerts.clear();
  for (const a of await response.json()) alerts.set(a.id, a);
  render();
  const open = await fetch("/api/cases", { credentials: "same-origin" });
  if (open.ok) {
    cases.clear();
    for (const c of await open.json()) cases.set(c.id, c);
    renderCases();
  }
  await showWarnings();
}

// What the operator must act on although the hub works (e.g. next year's holidays and 调休
// days unknown, so 按期结案 deadlines in that year would be wrong): /readyz lists them.
async function showWarnings() {
  const banner = document.getElementById("hub-warnings");
  try {
    const ready = await fetch("/readyz", { credentials: "same-origin" });
    const body = await ready.json();
    const lines = [...(body.warnings || [])];
    if (body.failing && body.failing.length) lines.unshift("未就绪 / not ready: " + body.failing.join(", "));
    banner.textContent = lines.join(" · ");
    banner.hidden = lines.length === 0;
  } catch (error) {
    banner.hidden = true;
  }
}

function connect() {
  const conn = document.getElementById("conn");
  const source = new EventSource("/api/stream");
  source.onopen = () => { conn.className = "conn on"; conn.dataset.i18n = "connected"; conn.textContent = t("connected"); load(); };
  source.onerror = () => { conn.className = "conn off"; conn.dataset.i18n = "disconnected"; conn.textContent = t("disconnected"); };
  source.addEventListener("case", (event) => {
    const message = JSON.parse(event.data);
    cases.set(message.case.id, message.case);
    renderCases();
  });
  source.addEventListener("alert", (event) => {
    const message = JSON.parse(event.data);
    alerts.set(message.alert.id, message.alert);
    render(message.created ? message.alert.id : undefined);
  });
}

// Ends the server-side session (the cookie alone is useless afterwards), then back to login.
async function logout() {
  await fetch("/logout", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf } });
  location.href = "/login";
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("linli.lang", lang);
    applyLanguage();
  });
  document.getElementById("logout").addEventListener("click", logout);
  applyLanguage();
  connect();
});
