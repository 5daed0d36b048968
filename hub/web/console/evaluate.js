// The guardian's one-time 评价 page: no account, the token in the URL is the credential.
"use strict";
(() => {
  const TEXT = {
    zh: {
      title: "服务评价", satisfied: "满意", basically_satisfied: "基本满意", unsatisfied: "不满意",
      note: "意见(不满意时请写明原因)", hello: (g) => `${g}，您好：请评价社区对以下事项的处置。`,
      closed: (t) => `结案时间：${t}`, thanks: "感谢您的评价。", reopened: "已转回网格员重新处理(返工)。",
      need_note: "不满意时请写明原因。", lang: "English",
    },
    en: {
      title: "Service evaluation", satisfied: "Satisfied", basically_satisfied: "Basically satisfied",
      unsatisfied: "Unsatisfied", note: "Comment (the reason, if unsatisfied)",
      hello: (g) => `Dear ${g}, please rate how the community handled this case.`,
      closed: (t) => `Closed at ${t}`, thanks: "Thank you for your evaluation.",
      reopened: "The case was sent back for rework.", need_note: "Please give the reason.", lang: "中文",
    },
  };
  let lang = navigator.language && !navigator.language.startsWith("zh") ? "en" : "zh";
  let view = null;
  const token = decodeURIComponent(location.pathname.split("/").pop() || "");
  const $ = (id) => document.getElementById(id);
  const t = (key, ...args) => {
    const v = TEXT[lang][key];
    return typeof v === "function" ? v(...args) : v;
  };

  function render() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    for (const el of document.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
    $("lang").textContent = t("lang");
    if (view) {
      $("hello").textContent = t("hello", view.guardian);
      $("case-title").textContent = lang === "zh" ? view.title_zh : view.title_en;
      $("closed").textContent = view.closed_at ? t("closed", new Date(view.closed_at).toLocaleString()) : "";
    }
  }

  async function call(method, body) {
    const response = await fetch(`/api/evaluation-links/${encodeURIComponent(token)}`, {
      method, headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined, credentials: "omit",
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.message || String(response.status));
    return data;
  }

  async function answer(rating) {
    $("error").textContent = "";
    const note = $("note").value.trim();
    if (rating === "unsatisfied" && !note) {
      $("error").textContent = t("need_note");
      return;
    }
    try {
      const done = await call("POST", { rating, note });
      $("form").hidden = true;
      $("message").textContent = t("thanks") + (done.reopened ? " " + t("reopened") : "");
    } catch (err) {
      $("error").textContent = err.message;
    }
  }

  document.addEventListener("DOMContentLoaded", async () => {
    $("lang").addEventListener("click", () => { lang = lang === "zh" ? "en" : "zh"; render(); });
    for (const button of document.querySelectorAll("[data-rating]")) {
      button.addEventListener("click", () => answer(button.dataset.rating));
    }
    render();
    try {
      view = await call("GET");
      $("form").hidden = false;
      render();
    } catch (err) {
      $("error").textContent = err.message;
    }
  });
})();
