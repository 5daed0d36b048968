// Linli live console: loads alerts once, then applies server-sent events without reloading.
"use strict";

const TEXT = {
  zh: {
    title: "邻里 · 指挥中心实时告警", disconnected: "未连接", connected: "实时", active: "处理中",
    sos24: "24 小时一键呼救", time: "时间", severity: "级别", alert: "告警", device: "设备", grid: "网格",
    count: "次数", status: "状态", empty: "暂无告警", unassigned: "未分配(指挥中心)",
    sev: { critical: "紧急", major: "重要", minor: "一般", info: "提示" },
    st: { active: "处理中", resolved: "已解除" }, other: "English",
  },
  en: {
    title: "Linli · Command centre live alerts", disconnected: "offline", connected: "live", active: "active",
    sos24: "SOS in 24 h", time: "Time", severity: "Severity", alert: "Alert", device: "Device", grid: "Grid",
    count: "Count", status: "Status", empty: "No alerts", unassigned: "unassigned (command centre)",
    sev: { critical: "critical", major: "major", minor: "minor", info: "info" },
    st: { active: "active", resolved: "resolved" }, other: "中文",
  },
};

let lang = localStorage.getItem("linli.lang") || "zh";
let timeZone = "Asia/Shanghai";  // replaced by the hub's configured zone from /api/session
const alerts = new Map();

function t(key) { return TEXT[lang][key]; }

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) {
    const value = t(el.dataset.i18n);
    if (typeof value === "string") el.textContent = value;
  }
  document.getElementById("lang").textContent = t("other");
  render();
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
  timeZone = (await session.json()).timezone;
  const response = await fetch("/api/alerts?limit=200", { credentials: "same-origin" });
  if (response.status === 401) { location.href = "/login"; return; }
  alerts.clear();
  for (const a of await response.json()) alerts.set(a.id, a);
  render();
}

function connect() {
  const conn = document.getElementById("conn");
  const source = new EventSource("/api/stream");
  source.onopen = () => { conn.className = "conn on"; conn.dataset.i18n = "connected"; conn.textContent = t("connected"); load(); };
  source.onerror = () => { conn.className = "conn off"; conn.dataset.i18n = "disconnected"; conn.textContent = t("disconnected"); };
  source.addEventListener("alert", (event) => {
    const message = JSON.parse(event.data);
    alerts.set(message.alert.id, message.alert);
    render(message.created ? message.alert.id : undefined);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("linli.lang", lang);
    applyLanguage();
  });
  applyLanguage();
  connect();
});
