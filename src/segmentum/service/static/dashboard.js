/* segmentum dashboard: charts drawn after layout, the live segment builder, campaign previews.
   Loaded with the page's CSP nonce; reads data only from JSON blocks and data- attributes. */
(function () {
  "use strict";
  const csrf = document.body.dataset.csrf || "";
  const lang = document.body.dataset.lang || "es";

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => e.setAttribute(k, v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /* ---------------------------------------------------------------- charts */
  function drawCharts() {
    if (!window.Plotly) return;
    document.querySelectorAll("[data-chart]").forEach(function (box) {
      const spec = JSON.parse(document.getElementById(box.dataset.chart).textContent);
      box.textContent = "";
      const layout = Object.assign({}, spec.layout, {width: box.clientWidth || undefined, height: spec.height});
      Plotly.newPlot(box, spec.data, layout, {responsive: true, displaylogo: false,
        locale: lang, modeBarButtonsToRemove: ["select2d", "lasso2d"]}).then(function () {
        box.dataset.drawn = "1";
      });
      if (spec.links && spec.links.length) {
        box.classList.add("clickable");
        box.on("plotly_click", function (ev) {
          const p = ev.points && ev.points[0];
          if (!p) return;
          let i = p.pointIndex;
          if (Array.isArray(i)) i = i[0] * 5 + i[1];   // heat map: [row, column]
          if (spec.links[i]) window.location.href = spec.links[i];
        });
      }
      if (window.ResizeObserver) {
        let pending = null;
        new ResizeObserver(function () {
          cancelAnimationFrame(pending);
          pending = requestAnimationFrame(function () {
            Plotly.relayout(box, {width: box.clientWidth});
          });
        }).observe(box);
      }
    });
  }

  /* ---------------------------------------------------------------- builder */
  function builder() {
    const rule = document.getElementById("rule");
    const out = document.getElementById("result");
    if (!rule || !out) return;
    const T = JSON.parse(out.dataset.texts);
    let timer = null, seq = 0;

    async function post(url, body) {
      const r = await fetch(url, {method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
        body: JSON.stringify(body)});
      return [r, await r.json()];
    }

    function showError(j) {
      out.className = "notice error";
      out.textContent = "";
      if (j.kind === "rule") {
        out.appendChild(el("strong", {}, T.error_at + " " + (j.position + 1) + ": " + j.detail));
        // The rule and a caret under the character at fault, in one monospace block so
        // the caret keeps its column.
        out.appendChild(el("pre", {"class": "caret", id: "caret"},
          j.text + "\n" + " ".repeat(j.position) + "^"));
      } else {
        out.appendChild(el("strong", {}, j.detail));
      }
      if (j.hint) out.appendChild(el("p", {"class": "hint", id: "hint"}, T.hint + ": " + j.hint));
    }

    function showResult(j) {
      out.className = "";
      out.textContent = "";
      const s = el("div", {"class": "summary", id: "summary"});
      const a = el("span", {id: "size"});
      a.append(T.size + ": ", el("b", {}, j.size_text), " " + T.of_customers.replace("%(n)s", j.customers_text) + " (" + j.share_text + ")");
      const b = el("span", {id: "revenue"});
      b.append(T.revenue + ": ", el("b", {}, j.revenue_text), " (" + j.revenue_share_text + " " + T.revenue_share + ")");
      s.append(a, b);
      out.appendChild(s);
      (j.warnings || []).forEach(function (w) {
        const p = el("div", {"class": "notice warn unknown-value"});
        p.appendChild(el("strong", {}, T.warning_at + " " + (w.position + 1) + ": " + T.unknown_value));
        p.appendChild(el("pre", {"class": "caret"}, j.rule + "\n" + " ".repeat(w.position) + "^"));
        p.appendChild(el("p", {}, w.message + (w.hint ? " (" + w.hint + ")" : "")));
        if (w.suggestion && w.value) {
          const fix = el("button", {type: "button", "class": "secondary small"},
            T.replace_with + " '" + w.suggestion + "'");
          fix.addEventListener("click", function () {
            rule.value = rule.value.split("'" + w.value + "'").join("'" + w.suggestion + "'");
            rule.dispatchEvent(new Event("input"));
          });
          p.appendChild(fix);
        }
        out.appendChild(p);
      });
      if (j.reach && j.reach.length) {
        const t = el("table", {"class": "striped", id: "reach"});
        const h = el("tr");
        [T.channel, T.customers, T.share].forEach((x) => h.appendChild(el("th", {scope: "col"}, x)));
        t.appendChild(el("thead")).appendChild(h);
        const tb = t.appendChild(el("tbody"));
        j.reach.forEach(function (r) {
          const tr = el("tr");
          [r.channel, r.customers, r.share].forEach((x) => tr.appendChild(el("td", {}, x)));
          tb.appendChild(tr);
        });
        out.appendChild(el("h3", {}, T.reach));
        out.appendChild(t);
      }
    }

    function preview() {
      const text = rule.value;
      clearTimeout(timer);
      if (!text.trim()) { out.textContent = ""; out.className = ""; return; }
      out.classList.add("loading");
      out.setAttribute("aria-busy", "true");
      const mine = ++seq;
      timer = setTimeout(async function () {
        try {
          const [r, j] = await post("/dashboard/api/preview",
            {rule: text, lang: lang, level: rule.dataset.level || "customer"});
          if (mine !== seq) return;   // a newer rule was typed meanwhile
          out.removeAttribute("aria-busy");
          if (r.ok) showResult(j); else showError(j);
        } catch (e) {
          out.removeAttribute("aria-busy");
          out.className = "notice error";
          out.textContent = T.failed;
        }
      }, 300);
    }
    rule.addEventListener("input", preview);
    if (rule.value.trim()) preview();

    const col = document.getElementById("suggest-column");
    const chips = document.getElementById("suggestions");
    if (col) col.addEventListener("change", async function () {
      chips.textContent = "";
      if (!col.value) return;
      chips.setAttribute("aria-busy", "true");
      const r = await fetch("/dashboard/api/values?column=" + encodeURIComponent(col.value) +
        "&level=" + encodeURIComponent(rule.dataset.level || "customer"), {credentials: "same-origin"});
      const j = await r.json();
      chips.removeAttribute("aria-busy");
      j.values.forEach(function (v) {
        const b = el("button", {type: "button", "class": "outline"}, v.label === v.value ? v.value : v.label + " (" + v.value + ")");
        b.addEventListener("click", function () {
          const piece = j.column + " == '" + v.value.replace(/'/g, "''") + "'";
          rule.value = rule.value.trim() ? rule.value.trim() + " and " + piece : piece;
          rule.dispatchEvent(new Event("input"));
          rule.focus();
        });
        chips.appendChild(b);
      });
    });

    const save = document.getElementById("save");
    if (save) save.addEventListener("click", async function () {
      const msg = document.getElementById("saved-msg");
      save.setAttribute("aria-busy", "true");
      try {
        // Opened with a saved segment (?edit=): its new rule and description, same name.
        const editing = save.dataset.edit;
        const desc = document.getElementById("description");
        const body = {rule: rule.value, description: desc ? desc.value : ""};
        const [r, j] = editing
          ? await post("/dashboard/api/segments/" + encodeURIComponent(editing), body)
          : await post("/dashboard/api/segments",
              Object.assign({name: document.getElementById("name").value}, body));
        msg.className = r.ok ? "notice ok" : "notice error";
        msg.textContent = "";
        if (r.ok) {
          msg.append(T.saved.replace("%(n)s", j.size_text) + " ");
          msg.appendChild(el("a", {href: "/dashboard/explorer?segment=" + encodeURIComponent(j.name)}, j.name));
          if (T.later) msg.append(". " + T.later);
        } else {
          msg.textContent = j.detail + (j.hint ? " (" + j.hint + ")" : "");
        }
      } finally {
        save.removeAttribute("aria-busy");
      }
    });
  }

  /* ---------------------------------------------------------------- campaigns */
  function campaignPreview() {
    const samples = {
      es: {first_name: "Martina", greeting: "Hola Martina", reason: "hace tiempo que no te vemos", segment: "", campaign: ""},
      en: {first_name: "Martina", greeting: "Hi Martina", reason: "it has been a while", segment: "", campaign: ""},
    };
    const name = document.getElementById("campaign-name");
    const tactic = document.getElementById("campaign-tactic");
    [["es", "subject-es", "body-es"], ["en", "subject-en", "body-en"]].forEach(function (x) {
      const s = document.getElementById(x[1]), b = document.getElementById(x[2]);
      const out = document.getElementById("preview-" + x[0]);
      if (!s || !b || !out) return;
      function value(k) {
        if (k === "campaign") return name ? name.value : "";
        // A segment campaign has no reason to tell its customers: the fallback is printed.
        if (k === "reason" && tactic && tactic.value === "segment") return "";
        return samples[x[0]][k];
      }
      function fill(text) {
        // {% if x %}...{% endif %} (not nested), then {{ x }} and {{ x or 'fallback' }}.
        text = text.replace(/\{%\s*if\s+(\w+)\s*%\}([\s\S]*?)\{%\s*endif\s*%\}/g,
          function (_, k, inner) { return value(k) ? inner : ""; });
        return text.replace(/\{\{\s*(\w+)(?:\s+or\s+(['"])(.*?)\2)?\s*\}\}/g,
          function (all, k, q, fallback) {
            const v = value(k);
            if (v) return v;
            if (fallback !== undefined) return fallback;
            return v === undefined ? all : "";
          });
      }
      function draw() { out.textContent = fill(s.value) + "\n\n" + fill(b.value); }
      [s, b, name, tactic].forEach((i) => i && i.addEventListener(i === tactic ? "change" : "input", draw));
      draw();
    });
    // Until edited, the message follows the tactic (its own subject; a neutral body).
    const form = document.getElementById("campaign-form");
    if (form && tactic && form.dataset.defaults) {
      const defaults = JSON.parse(form.dataset.defaults);
      let shown = tactic.value;
      tactic.addEventListener("change", function () {
        const was = defaults[shown] || {}, now = defaults[tactic.value] || {};
        ["subject_es", "body_es", "subject_en", "body_en"].forEach(function (k) {
          const field = form.querySelector("[name=" + k + "]");
          if (field && now[k] !== undefined && field.value === (was[k] || "")) field.value = now[k];
        });
        shown = tactic.value;
        form.querySelectorAll("#subject-es, #body-es, #subject-en, #body-en").forEach(function (i) {
          i.dispatchEvent(new Event("input"));
        });
      });
    }
    document.querySelectorAll("form[data-confirm]").forEach(function (f) {
      f.addEventListener("submit", function (ev) {
        if (!window.confirm(f.dataset.confirm)) { ev.preventDefault(); return; }
        const b = f.querySelector("button");
        if (b) b.setAttribute("aria-busy", "true");
      });
    });
    document.querySelectorAll("form:not([data-confirm])").forEach(function (f) {
      f.addEventListener("submit", function () {
        const b = f.querySelector("button[type=submit], button:not([type])");
        if (b) b.setAttribute("aria-busy", "true");
      });
    });
  }

  function start() { drawCharts(); builder(); campaignPreview(); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
