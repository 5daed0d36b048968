// Linli worker phone page: my open cases by urgency, the elder's profile for an SOS, and the
// buttons of the closed loop (接单 accept, 到场 arrive, 反馈 handle with a note).
"use strict";

const T = {
  zh: {
    title: "我的案件", empty: "暂无待办案件", back: "‹ 返回", history: "处理记录",
    note: "处置情况(反馈时必填)", contacts: "紧急联系人", phone: "电话", address: "地址", age: "年龄", call: "拨打",
    alone: "独居", other: "English", noteRequired: "请填写处置情况",
    actions: { accept: "接单", arrive: "到场", handle: "反馈", call_back: "已回拨", return: "回退" },
    states: { filed: "立案", dispatched: "待接单", accepted: "已接单", on_site: "已到场", handled: "已反馈",
      verified: "已核查", closed: "已结案", void: "作废" },
    stages: { accept: "接单", arrive: "到场", handle: "处置", verify: "核查", case: "全程" },
    done: { file: "立案", dispatch: "派遣", accept: "受理", arrive: "到场", handle: "反馈", verify: "核查", close: "结案",
      reassign: "改派", return: "回退", extend: "延期", supervise: "督办", call_back: "回拨", false_alarm: "误报",
      auto_clear: "设备复位", rework: "返工", void: "作废", note: "备注" },
    system: "系统",
  },
  en: {
    title: "My cases", empty: "Nothing to do", back: "‹ Back", history: "History",
    note: "What was done (required to report)", contacts: "Emergency contacts", phone: "Phone", address: "Address", call: "Call",
    age: "Age", alone: "lives alone", other: "中文", noteRequired: "Please describe what was done",
    actions: { accept: "Accept", arrive: "On site", handle: "Report", call_back: "Called back", return: "Return" },
    states: { filed: "filed", dispatched: "waiting", accepted: "accepted", on_site: "on site", handled: "reported",
      verified: "verified", closed: "closed", void: "void" },
    stages: { accept: "accept", arrive: "arrive", handle: "handle", verify: "verify", case: "case" },
    done: {}, system: "system",
  },
};
const PHONE_ACTIONS = ["accept", "arrive", "handle", "call_back", "return"];
let lang = localStorage.getItem("linli.lang") || "zh";
let current = null;
let timeZone = "Asia/Shanghai";  // replaced by the hub's zone from /api/session
let csrf = "";  // the session's CSRF token (from /api/session), sent on every POST

function t(key) { return T[lang][key]; }
function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}
function callLink(text, phone) {
  const link = el("a", text);
  link.href = "tel:" + phone;
  const line = el("p");
  line.append(link);
  return line;
}
function minutes(seconds) {
  const m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
  return `${m}:${String(s).padStart(2, "0")}`;
}
function worstLight(c) {
  const open = c.sla.filter((s) => !s.done);
  return ["red", "yellow"].find((l) => open.some((s) => s.light === l)) || "green";
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (options.method && options.method !== "GET") headers["X-CSRF-Token"] = csrf;
  const response = await fetch(path, { credentials: "same-origin", ...options, headers });
  if (response.status === 401) { location.href = "/login"; throw new Error("login"); }
  return response;
}

async function loadList() {
  const cases = await (await api("/api/cases?mine=told")).json();
  const list = document.getElementById("cases");
  list.replaceChildren();
  for (const c of cases) {
    const item = el("li", undefined, "case " + worstLight(c));
    item.dataset.caseId = c.id;
    item.append(el("span", "", "light " + worstLight(c)),
      el("strong", lang === "zh" ? c.title.zh : (c.title.en || c.title.zh)),
      el("span", t("states")[c.state] || c.state, "state"));
    // Where to go and whom to call, without opening the case (the hub sends them only to
    // roles the access table lets see places and personal data).
    const where = el("div", undefined, "where");
    if (c.place) where.append(el("p", c.place, "place"));
    if (c.resident) {
      const r = c.resident;
      if (r.address) where.append(el("p", `${r.name} · ${t("address")}: ${r.address}`, "address"));
      if (r.phone) where.append(callLink(`${t("call")} ${r.name} ${r.phone}`, r.phone));
    }
    if (where.childElementCount) item.append(where);
    item.addEventListener("click", (event) => { if (!event.target.closest("a")) openCase(c.id); });
    list.appendChild(item);
  }
  document.getElementById("empty").hidden = cases.length > 0;
}

async function openCase(id) {
  const c = await (await api("/api/cases/" + encodeURIComponent(id))).json();
  current = c;
  document.getElementById("list").hidden = true;
  document.getElementById("detail").hidden = false;
  document.getElementById("d-title").textContent = lang === "zh" ? c.title.zh : (c.title.en || c.title.zh);
  document.getElementById("d-meta").textContent = [t("states")[c.state], c.place || c.location, c.grid].filter(Boolean).join(" · ");
  const sla = document.getElementById("d-sla");
  sla.replaceChildren(...c.sla.filter((s) => !s.done).map((s) =>
    el("li", `${t("stages")[s.stage]}: ${minutes(s.elapsed_s)} / ${minutes(s.limit_s)}`, "light-" + s.light)));
  const card = document.getElementById("d-resident");
  card.replaceChildren();
  card.hidden = !c.resident;
  if (c.resident) {
    const r = c.resident;
    card.append(el("h3", `${r.name}${r.age ? " · " + t("age") + " " + r.age : ""}${r.living_alone ? " · " + t("alone") : ""}`));
    if (r.address) card.append(el("p", `${t("address")}: ${r.address}`));
    if (r.phone) card.append(callLink(`${t("phone")}: ${r.phone}`, r.phone));
    if (r.emergency_contacts && r.emergency_contacts.length) {
      card.append(el("h4", t("contacts")));
      for (const k of r.emergency_contacts) card.append(callLink(`${k.name} ${k.relation || ""} ${k.phone}`, k.phone));
    }
    if (r.medical_notes) card.append(el("p", r.medical_notes, "notes"));
  }
  const actions = document.getElementById("d-actions");
  actions.replaceChildren();
  for (const action of PHONE_ACTIONS.filter((a) => c.allowed_actions.includes(a))) {
    const button = el("button", t("actions")[action], "action " + action);
    button.type = "button";
    button.dataset.action = action;
    button.addEventListener("click", () => act(action));
    actions.appendChild(button);
  }
  const timeline = document.getElementById("d-timeline");
  timeline.replaceChildren(...c.timeline.map((e) =>
    el("li", `${new Date(e.ts).toLocaleTimeString(lang === "zh" ? "zh-CN" : "en-GB", { timeZone })} ${t("done")[e.action] || e.action} ${e.actor === "system" ? t("system") : e.actor}${e.note ? " — " + e.note : ""}`)));
  document.getElementById("d-error").textContent = "";
}

async function act(action) {
  const note = document.getElementById("d-note").value.trim();
  if ((action === "handle" || action === "return") && !note) {
    document.getElementById("d-error").textContent = t("noteRequired");
    return;
  }
  const data = action === "call_back" ? { callback_at: Date.now() / 1000 } : {};
  const response = await api(`/api/cases/${encodeURIComponent(current.id)}/${action}`, {
    method: "POST", headers: { "Content-Type": "application/json", "X-Linli-Channel": "phone" },
    body: JSON.stringify({ note, data }),
  });
  if (!response.ok) {
    document.getElementById("d-error").textContent = (await response.json()).message || response.statusText;
    return;
  }
  document.getElementById("d-note").value = "";
  await openCase(current.id);
}

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  document.getElementById("d-note").placeholder = t("note");
  document.getElementById("lang").textContent = t("other");
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("linli.lang", lang); applyLanguage(); loadList();
  });
  document.getElementById("back").addEventListener("click", () => {
    current = null; document.getElementById("detail").hidden = true; document.getElementById("list").hidden = false; loadList();
  });
  applyLanguage();
  document.getElementById("logout").addEventListener("click", async () => {
    await api("/logout", { method: "POST" }); location.href = "/login";
  });
  api("/api/session").then((r) => r.json()).then((s) => { timeZone = s.timezone; csrf = s.csrf || ""; loadList(); });
  const source = new EventSource("/api/stream");
  source.addEventListener("case", (event) => {
    const message = JSON.parse(event.data);
    if (current && current.id === message.case.id) openCase(current.id); else if (!current) loadList();
  });
});
