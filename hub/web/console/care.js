// The command centre's care view: the 回访 list (closed cases still without 评价) with the
// call-back result buttons and the guardian-link button, and every open visit task with its light.
"use strict";
(() => {
  const TEXT = {
    zh: {
      title: "关爱探访与评价", callbacks: "待回访(结案未评价)", cb_empty: "暂无待回访案件", case: "案件",
      grid: "网格", handler: "承办人", closed: "结案时间", evaluate: "回访评价", visits: "探访任务",
      light: "时限", kind: "类型", elder: "老人", assignee: "探访人", due: "截止",
      satisfied: "满意", basically_satisfied: "基本满意", unsatisfied: "不满意", link: "发送监护人评价链接",
      reason: "不满意的原因：", guardian: "监护人姓名：", link_made: "评价链接(一次有效)：",
      kinds: { visit: "上门探访", call: "电话问候", sign_of_life: "每日平安" }, lang: "English",
    },
    en: {
      title: "Care visits and evaluations", callbacks: "Call-backs (closed, not evaluated)",
      cb_empty: "No call-backs due", case: "Case", grid: "Grid", handler: "Handler", closed: "Closed",
      evaluate: "Call-back result", visits: "Visit tasks", light: "Light", kind: "Kind", elder: "Elder",
      assignee: "Visitor", due: "Due", satisfied: "Satisfied", basically_satisfied: "Basically satisfied",
      unsatisfied: "Unsatisfied", link: "Send guardian link", reason: "Reason for 不满意:",
      guardian: "Guardian's name:", link_made: "One-time link: ",
      kinds: { visit: "Home visit", call: "Phone call", sign_of_life: "Sign of life" }, lang: "中文",
    },
  };
  let lang = "zh";
  let csrf = "";
  const t = (key) => TEXT[lang][key];
  const $ = (id) => document.getElementById(id);

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.append(td);
    return td;
  }

  async function post(path, body) {
    $("error").textContent = "";
    const response = await fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      $("error").textContent = data.message || String(response.status);
      return null;
    }
    return data;
  }

  async function evaluate(caseId, rating) {
    let note = "";
    if (rating === "unsatisfied") {
      note = (window.prompt(t("reason")) || "").trim();
      if (!note) return;
    }
    const done = await post(`/api/cases/${encodeURIComponent(caseId)}/evaluate`,
      { rating, role: "command_centre", via: "phone_call", note });
    if (done) load();
  }

  async function link(caseId) {
    const guardian = (window.prompt(t("guardian")) || "").trim();
    if (!guardian) return;
    const made = await post(`/api/cases/${encodeURIComponent(caseId)}/evaluation-link`, { guardian });
    if (made) $("link-out").textContent = t("link_made") + made.url;
  }

  async function load() {
    const [callbacks, visits] = await Promise.all([
      fetch("/api/evaluations/call-backs", { credentials: "same-origin" }).then((r) => (r.ok ? r.json() : [])),
      fetch("/api/visits", { credentials: "same-origin" }).then((r) => (r.ok ? r.json() : [])),
    ]);
    const body = $("callbacks").querySelector("tbody");
    body.replaceChildren();
    $("cb-empty").hidden = callbacks.length > 0;
    for (const item of callbacks) {
      const row = document.createElement("tr");
      row.dataset.case = item.case_id;
      cell(row, item.case_id);
      cell(row, item.grid || "");
      cell(row, item.handler || "");
      cell(row, new Date(item.closed_at).toLocaleString());
      const actions = cell(row, "");
      for (const rating of ["satisfied", "basically_satisfied", "unsatisfied"]) {
        const button = document.createElement("button");
        button.type = "button";
        button.dataset.rating = rating;
        button.textContent = t(rating);
        button.addEventListener("click", () => evaluate(item.case_id, rating));
        actions.append(button);
      }
      const send = document.createElement("button");
      send.type = "button";
      send.className = "link";
      send.textContent = t("link");
      send.addEventListener("click", () => link(item.case_id));
      actions.append(send);
      body.append(row);
    }
    const vbody = $("visit-table").querySelector("tbody");
    vbody.replaceChildren();
    for (const visit of visits) {
      const row = document.createElement("tr");
      row.className = `visit ${visit.light}`;
      cell(row, visit.light + (visit.urgent ? " !" : ""));
      cell(row, t("kinds")[visit.kind] || visit.kind);
      cell(row, visit.elder_name || visit.elder);
      cell(row, visit.grid);
      cell(row, visit.assignee || "");
      cell(row, new Date(visit.due_at).toLocaleString());
      vbody.append(row);
    }
  }

  function render() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    $("lang").textContent = t("lang");
  }

  document.addEventListener("DOMContentLoaded", async () => {
    $("lang").addEventListener("click", () => { lang = lang === "zh" ? "en" : "zh"; render(); load(); });
    const session = await fetch("/api/session", { credentials: "same-origin" });
    if (session.ok) csrf = (await session.json()).csrf || "";
    render();
    load();
  });
})();
