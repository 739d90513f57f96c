// runyard dashboard: refresh live parts in place, follow the log, confirm actions. No framework.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  function toast(text) {
    const el = document.getElementById("toast");
    el.textContent = text;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { el.textContent = ""; }, 5000);
  }

  // One request to the JSON API with the session cookie; problem+json details become the error text.
  async function api(method, url, body) {
    const headers = { "X-CSRF-Token": csrf, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, { method, headers, credentials: "same-origin",
                                        body: body === undefined ? undefined : JSON.stringify(body) });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      let detail = data.detail || response.statusText;
      if (Array.isArray(data.errors) && data.errors.length) detail += ": " + data.errors.map((e) => e.msg || e.message || "").join("; ");
      throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    }
    return data;
  }

  // Rows keep their DOM nodes unless their content changed (data-v), so nothing flickers or loses focus.
  function mergeRows(body, html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    const old = new Map(Array.from(body.rows, (row) => [row.id, row]));
    const wanted = Array.from(template.content.querySelectorAll("tr")).map((row) => {
      const kept = old.get(row.id);
      return kept && kept.dataset.v === row.dataset.v ? kept : row;
    });
    wanted.forEach((row, i) => { if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null); });
    while (body.children.length > wanted.length) body.lastElementChild.remove();
  }

  function syncButtons() {
    const state = document.querySelector("#live [data-status]");
    if (!state) return;
    const active = state.hasAttribute("data-active");
    document.querySelectorAll("[data-enabled-when]").forEach((button) => {
      const when = button.dataset.enabledWhen;
      button.disabled = !((when === "active" || when === "open") ? active : state.dataset.status === when);
    });
  }

  function live(el) {
    const every = Number(el.dataset.every || 2000);
    let last = null;
    let timer = null;
    async function tick() {
      timer = null;
      if (document.hidden) { timer = setTimeout(tick, every); return; }
      let keepGoing = true;
      try {
        const response = await fetch(el.dataset.live, { credentials: "same-origin" });
        if (response.status === 401) { location.reload(); return; }
        if (response.ok) {
          const html = await response.text();
          if (html !== last) {
            last = html;
            if (el.dataset.mode === "rows") mergeRows(el, html); else el.innerHTML = html;
            syncButtons();
          }
          // Pages of one job or sweep stop polling once it has ended; the jobs table never does.
          keepGoing = el.dataset.mode === "rows" || html.includes("data-active");
        }
      } catch (err) { /* the server may be restarting: try again later */ }
      if (keepGoing) timer = setTimeout(tick, every);
    }
    timer = setTimeout(tick, every);
    el.refresh = () => { if (timer) clearTimeout(timer); tick(); };
  }

  // The run's log over server-sent events. EventSource resumes by itself with Last-Event-ID after a
  // dropped connection; if the browser gives up (an error status), reconnect from the last offset.
  function followLog(pre) {
    const state = document.getElementById("log-state");
    let offset = 0;
    let source = null;
    let ended = false;
    function append(text, css) {
      const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
      if (css) { const span = document.createElement("span"); span.className = css; span.textContent = text; pre.appendChild(span); }
      else pre.appendChild(document.createTextNode(text));
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    }
    function open() {
      source = new EventSource(pre.dataset.src + "&offset=" + offset);
      source.onopen = () => { state.textContent = "live"; };
      source.addEventListener("log", (event) => {
        append(event.data);
        offset = Number(event.lastEventId) || offset;
      });
      source.addEventListener("attempt", (event) => {
        append("\n── attempt " + JSON.parse(event.data).attempt + " ──\n", "sep");
        offset = 0;
      });
      source.addEventListener("end", (event) => {
        ended = true;
        source.close();
        const end = JSON.parse(event.data);
        state.textContent = "ended: " + end.status;
        const panel = document.getElementById("live");
        if (panel && panel.refresh) panel.refresh();
      });
      source.onerror = () => {
        if (ended) return;
        state.textContent = "reconnecting…";
        if (source.readyState === EventSource.CLOSED) setTimeout(open, 2000);
      };
    }
    window.addEventListener("pagehide", () => { ended = true; if (source) source.close(); });
    open();
  }

  // Buttons open a <dialog>; only its confirm button calls the API.
  function dialogs() {
    document.querySelectorAll("[data-dialog]").forEach((button) => {
      const dialog = document.getElementById(button.dataset.dialog);
      const form = dialog.querySelector("form");
      const error = form.querySelector(".error");
      button.addEventListener("click", () => {
        error.textContent = "";
        const path = form.querySelector('[name="model_path"]');
        if (path && !path.value) {
          const first = document.querySelector("#outputs option");
          if (first) path.value = first.value;
        }
        const name = form.querySelector('[name="model_name"]');
        if (name && !name.value && path && path.value) {
          name.value = path.value.split("/").pop().replace(/\.[^.]*$/, "").replace(/_model$/, "").replace(/[^A-Za-z0-9._-]/g, "_");
        }
        dialog.showModal();
      });
      form.addEventListener("submit", async (event) => {
        if (event.submitter && event.submitter.value !== "confirm") return;
        event.preventDefault();
        const body = {};
        form.querySelectorAll("input[name]").forEach((input) => { body[input.name] = input.value.trim(); });
        try {
          const done = await api("POST", form.dataset.action, Object.keys(body).length ? body : undefined);
          dialog.close();
          toast(done.version ? "Registered " + done.name + " version " + done.version : "Cancel requested");
          const panel = document.getElementById("live");
          if (panel && panel.refresh) panel.refresh();
        } catch (err) {
          error.textContent = err.message;
        }
      });
    });
  }

  document.querySelectorAll("[data-live]").forEach(live);
  const log = document.getElementById("log");
  if (log) followLog(log);
  dialogs();
})();
