// The grid worker's visit list (探访) on the phone page: his grids' open visits, urgent first,
// with a traffic light and one button per outcome. Loaded by one <script> line in phone.html.
"use strict";
(() => {
  const TEXT = {
    zh: {
      title: "探访任务", empty: "暂无探访任务", due: "截止", urgent: "紧急",
      kind: { visit: "上门探访", call: "电话问候", sign_of_life: "每日平安" },
      visited_well: "已探访·安好", needs_help: "需要帮助", not_at_home: "不在家",
      note: "情况说明(需要帮助/不在家时必填)", need_note: "请填写情况说明", done: "已记录",
    },
    en: {
      title: "Care visits", empty: "No visits due", due: "due", urgent: "urgent",
      kind: { visit: "Home visit", call: "Phone call", sign_of_life: "Sign of life" },
      visited_well: "Visited · well", needs_help: "Needs help", not_at_home: "Not at home",
      note: "Note (required for needs help / not at home)", need_note: "Please write a note", done: "Recorded",
    },
  };
  const lang = () => (document.documentElement.lang || "zh-CN").startsWith("en") ? "en" : "zh";
  const t = (key) => TEXT[lang()][key];
  let csrf = "";

  function el(tag, attrs = {}, text = "") {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text) node.textContent = text;
    return node;
  }

  async function record(visit, outcome, note, error) {
    error.textContent = "";
    if (outcome !== "visited_well" && !note.value.trim()) {
      error.textContent = t("need_note");
      return;
    }
    const response = await fetch(`/api/visits/${encodeURIComponent(visit.id)}/${outcome}`, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, "X-Linli-Channel": "phone" },
      body: JSON.stringify({ note: note.value.trim() }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      error.textContent = body.message || String(response.status);
      return;
    }
    document.getElementById("visits-status").textContent = t("done");
    load();
  }

  function render(visits) {
    const list = document.getElementById("visits");
    list.replaceChildren();
    document.getElementById("visits-empty").hidden = visits.length > 0;
    for (const visit of visits) {
      const item = el("li", { class: `visit ${visit.light}`, "data-key": visit.key });
      const head = el("div", { class: "visit-head" });
      head.append(el("strong", {}, `${t("kind")[visit.kind] || visit.kind} · ${visit.elder_name || visit.elder}`));
      if (visit.urgent) head.append(el("span", { class: "urgent" }, t("urgent")));
      head.append(el("span", { class: "due" }, `${t("due")} ${new Date(visit.due_at).toLocaleString()}`));
      item.append(head);
      if (visit.address) item.append(el("p", { class: "address" }, visit.address));
      const note = el("textarea", { rows: "2", placeholder: t("note"), class: "visit-note" });
      const error = el("p", { class: "error", role: "alert" });
      const actions = el("div", { class: "actions" });
      for (const outcome of ["visited_well", "needs_help", "not_at_home"]) {
        const button = el("button", { type: "button", "data-outcome": outcome }, t(outcome));
        button.addEventListener("click", () => record(visit, outcome, note, error));
        actions.append(button);
      }
      item.append(actions, note, error);
      list.append(item);
    }
  }

  async function load() {
    const response = await fetch("/api/visits", { credentials: "same-origin" });
    if (response.ok) render(await response.json());
  }

  document.addEventListener("DOMContentLoaded", async () => {
    const main = document.querySelector("main");
    if (!main) return;
    const section = el("section", { id: "visit-list" });
    section.append(el("h2", {}, t("title")), el("p", { id: "visits-empty", hidden: "" }, t("empty")));
    section.append(el("ul", { id: "visits" }), el("p", { id: "visits-status", role: "status" }));
    main.append(section);
    const session = await fetch("/api/session", { credentials: "same-origin" });
    if (session.ok) csrf = (await session.json()).csrf || "";
    load();
  });
})();
