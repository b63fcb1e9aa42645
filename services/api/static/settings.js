/* The Settings page: system settings, schedules and notification targets as forms over the api.
   Only admins may change them; the api's 4xx names the field and the page shows the message
   beside it. Live over WS /api/events: a job a schedule queued updates that schedule's last and
   next run, without touching what a person is typing. */
"use strict";

(() => {
  const { el } = BF;
  // What the known settings mean; a setting this page does not know is still shown, by its type.
  const SETTINGS = {
    max_concurrent_jobs: ["Jobs at once, whole system", "int"],
    max_concurrent_manual_backups: ["Manual backups at once", "int?"],
    max_concurrent_scheduled_backups: ["Scheduled backups at once", "int?"],
    max_concurrent_scheduled_checks: ["Scheduled checks at once", "int?"],
    agent_slots: ["Jobs at once per agent", "int"],
    stall_timeout_s: ["A job with no output for this long is stalled (s)", "int"],
    log_retention_days: ["Keep job logs (days)", "int"],
    log_max_bytes: ["Log size cap per job (bytes)", "int"],
    sent_timeout_s: ["A sent job not started after this is sent again (s)", "num"],
    agent_lost_after_s: ["An agent silent this long is lost (s)", "num"],
    package_allow_list: ["Debian packages package_install may install (comma-separated)", "list"],
  };
  const state = { settings: null, schedules: new Map(), notifications: new Map(), admin: true, timer: null };

  // ------------------------------------------------------------------ forms and errors

  function field(name, label, input, hint) {
    return el("label", { class: "field", "data-field": name },
      el("span", { class: "field-label", text: label }), input,
      hint ? el("span", { class: "field-hint muted", text: hint }) : null,
      el("span", { class: "field-error", "data-error-for": name, role: "alert" }));
  }

  function clearErrors(form) {
    for (const node of form.querySelectorAll(".field-error")) node.textContent = "";
    for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
    const result = form.querySelector(".form-result");
    if (result) { result.textContent = ""; result.classList.remove("problem"); }
  }

  /** The api's error beside the field it names (`job.plan_id` goes beside `job`), else under the form. */
  function showError(form, e) {
    if (e.status === 401) return;
    const slots = [...form.querySelectorAll("[data-error-for]")];
    const f = e.field || "";
    const slot = slots.filter((s) => {
      const key = s.dataset.errorFor;
      return f === key || f.startsWith(`${key}.`) || f.startsWith(`${key}[`);
    }).sort((a, b) => b.dataset.errorFor.length - a.dataset.errorFor.length)[0];
    if (slot) {
      slot.textContent = e.message;
      const input = slot.parentElement.querySelector("input, textarea, select");
      if (input) { input.setAttribute("aria-invalid", "true"); input.focus(); }
    } else {
      result(form, e.message, true);
    }
  }

  function result(form, text, problem = false) {
    const node = form.querySelector(".form-result");
    node.textContent = text;
    node.classList.toggle("problem", problem);
  }

  function actions(...buttons) {
    return el("div", { class: "form-actions" }, ...buttons, el("span", { class: "form-result muted", role: "status" }));
  }

  async function guarded(form, fn) {
    clearErrors(form);
    const buttons = [...form.querySelectorAll("button")];
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await fn();
    } catch (e) {
      showError(form, e);
    } finally {
      buttons.forEach((b) => { b.disabled = !state.admin; });
    }
  }

  // ------------------------------------------------------------------ system settings

  function kindOf(key, value) {
    if (SETTINGS[key]) return SETTINGS[key][1];
    if (Array.isArray(value)) return "list";
    if (typeof value === "boolean") return "bool";
    if (typeof value === "number") return Number.isInteger(value) ? "int" : "num";
    return value === null ? "int?" : "text";
  }

  function renderSettings(settings) {
    const form = document.getElementById("settings-form");
    const box = form.querySelector(".fields");
    box.replaceChildren(...Object.entries(settings).map(([key, value]) => {
      const kind = kindOf(key, value);
      const label = SETTINGS[key] ? SETTINGS[key][0] : key.replaceAll("_", " ");
      let input;
      if (kind === "bool") {
        input = el("input", { type: "checkbox", name: key, checked: value ? true : null });
      } else {
        const shown = kind === "list" ? value.join(", ") : value === null ? "" : String(value);
        input = el("input", { name: key, value: shown, inputmode: kind.startsWith("int") || kind === "num" ? "decimal" : null,
          placeholder: kind === "int?" ? "no limit" : null, autocomplete: "off" });
      }
      input.dataset.kind = kind;
      return field(key, label, input, kind === "int?" ? "empty: no limit of its own" : `${key}`);
    }));
  }

  /** An input's value as the api wants it; a number that does not parse goes as typed, for the api to name. */
  function valueOf(input) {
    const kind = input.dataset.kind;
    const raw = input.value.trim();
    if (kind === "bool") return input.checked;
    if (kind === "list") return raw ? raw.split(",").map((s) => s.trim()).filter(Boolean) : [];
    if (kind === "int?" && raw === "") return null;
    if (kind === "int" || kind === "int?" || kind === "num") return raw !== "" && isFinite(Number(raw)) ? Number(raw) : raw;
    return raw;
  }

  async function loadSettings() {
    state.settings = await BF.api("/api/settings");
    renderSettings(state.settings);
    lock();
  }

  document.getElementById("settings-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    guarded(form, async () => {
      const changes = {};
      for (const input of form.querySelectorAll(".fields input")) {
        const value = valueOf(input);
        if (JSON.stringify(value) !== JSON.stringify(state.settings[input.name])) changes[input.name] = value;
      }
      if (!Object.keys(changes).length) return result(form, "Nothing changed.");
      state.settings = await BF.api("/api/settings", { method: "PUT", body: changes });
      renderSettings(state.settings);
      result(form, `Saved: ${Object.keys(changes).join(", ")}.`);
    });
  });

  // ------------------------------------------------------------------ schedules

  function scheduleForm(s) {
    const id = s ? s.id : "new";
    const form = el("form", { class: "item-form", "data-testid": s ? `schedule-${s.id}` : "schedule-new", "data-id": id, novalidate: true },
      el("div", { class: "fields" },
        field("name", "Name", el("input", { name: "name", value: s ? s.name : "", required: true, autocomplete: "off" })),
        field("cron", "Cron", el("input", { name: "cron", value: s && s.cron ? s.cron : "", placeholder: "0 3 * * *", autocomplete: "off" })),
        field("interval_s", "or every (s)", el("input", { name: "interval_s", value: s && s.interval_s ? String(s.interval_s) : "", inputmode: "numeric", autocomplete: "off" })),
        field("timezone", "Time zone", el("input", { name: "timezone", value: s ? s.timezone : "UTC", autocomplete: "off" })),
        field("catch_up_s", "Catch up within (s)", el("input", { name: "catch_up_s", value: s ? String(s.catch_up_s) : "3600", inputmode: "numeric" })),
        field("enabled", "Enabled", el("input", { type: "checkbox", name: "enabled", checked: !s || s.enabled ? true : null })),
        field("job", "Job", el("textarea", { name: "job", rows: "2", spellcheck: "false",
          text: s ? JSON.stringify(s.job) : '{"type": "backup", "plan_id": ""}' }))),
      el("p", { class: "runs muted" }),
      actions(
        el("button", { type: "submit", text: s ? "Save" : "Create schedule" }),
        s ? el("button", { type: "button", class: "danger", text: "Delete", onclick: () => removeSchedule(form, s) }) : null));
    form.addEventListener("input", () => { form.dataset.dirty = "true"; });
    form.addEventListener("submit", (e) => { e.preventDefault(); saveSchedule(form, s); });
    if (s) fillRuns(form, s);
    return form;
  }

  function fillRuns(form, s) {
    const last = s.last_run ? `last ran ${BF.ago(s.last_run.at)}${s.last_run.status ? ` (${s.last_run.status})` : ""}` : "never ran";
    const next = s.next_runs && s.next_runs.length ? `next ${BF.when(s.next_runs[0])}` : "no next run (disabled)";
    form.querySelector(".runs").textContent = `${last} · ${next}`;
  }

  function scheduleBody(form) {
    const v = (name) => form.elements[name].value.trim();
    let job;
    try {
      job = JSON.parse(v("job") || "null");
    } catch (err) {
      throw new BF.ApiError(400, `job: not JSON (${err.message})`, "job");
    }
    const number = (raw) => (raw !== "" && isFinite(Number(raw)) ? Number(raw) : raw);
    return {
      name: v("name"), cron: v("cron") || null, interval_s: v("interval_s") === "" ? null : number(v("interval_s")),
      timezone: v("timezone") || "UTC", catch_up_s: number(v("catch_up_s")), enabled: form.elements.enabled.checked, job,
    };
  }

  function saveSchedule(form, s) {
    guarded(form, async () => {
      const body = scheduleBody(form);
      if (s) {
        const saved = await BF.api(`/api/schedules/${encodeURIComponent(s.id)}`, { method: "PUT", body });
        state.schedules.set(saved.id, saved);
        form.dataset.dirty = "";
        fillRuns(form, saved);
        result(form, "Saved.");
      } else {
        const made = await BF.api("/api/schedules", { method: "POST", body });
        state.schedules.set(made.id, made);
        document.getElementById("new-schedule").replaceChildren(scheduleForm(null));
        renderSchedules();
      }
    });
  }

  function removeSchedule(form, s) {
    if (!confirm(`Delete the schedule "${s.name}"? Its jobs stay.`)) return;
    guarded(form, async () => {
      await BF.api(`/api/schedules/${encodeURIComponent(s.id)}`, { method: "DELETE" });
      state.schedules.delete(s.id);
      renderSchedules();
    });
  }

  async function loadSchedules() {
    const list = await BF.api("/api/schedules");
    state.schedules = new Map(list.items.map((s) => [s.id, s]));
    renderSchedules();
  }

  /** Rows kept by id: a form someone is editing keeps what they typed; only its runs line moves. */
  function renderSchedules() {
    renderList("schedules", [...state.schedules.values()], scheduleForm, fillRuns);
  }

  function renderList(sectionId, items, make, refresh) {
    const section = document.getElementById(sectionId);
    const rows = section.querySelector(".rows");
    const existing = new Map([...rows.children].map((r) => [r.dataset.id, r]));
    items.sort((a, b) => a.name.localeCompare(b.name)).forEach((item, i) => {
      let row = existing.get(item.id);
      existing.delete(item.id);
      if (!row) row = make(item);
      else if (refresh) refresh(row, item);
      if (rows.children[i] !== row) rows.insertBefore(row, rows.children[i] || null);
    });
    for (const row of existing.values()) row.remove();
    section.querySelector(".count").textContent = items.length ? `(${items.length})` : "";
    lock();
  }

  // ------------------------------------------------------------------ notification targets

  function notificationForm(n) {
    const form = el("form", { class: "item-form", "data-testid": n ? `notification-${n.id}` : "notification-new", "data-id": n ? n.id : "new", novalidate: true },
      el("div", { class: "fields" },
        field("name", "Name", el("input", { name: "name", value: n ? n.name : "", autocomplete: "off" })),
        field("url", "URL", el("input", { name: "url", value: n ? n.url : "", placeholder: "mailto://… or json://…", autocomplete: "off" })),
        field("events", "Events (comma-separated)", el("input", { name: "events", value: n ? n.events.join(", ") : "", placeholder: "failures and warnings", autocomplete: "off" }))),
      actions(
        el("button", { type: "submit", text: n ? "Save" : "Create target" }),
        n ? el("button", { type: "button", text: "Send a test", onclick: () => testNotification(form, n) }) : null,
        n ? el("button", { type: "button", class: "danger", text: "Delete", onclick: () => removeNotification(form, n) }) : null));
    form.addEventListener("submit", (e) => { e.preventDefault(); saveNotification(form, n); });
    return form;
  }

  function saveNotification(form, n) {
    guarded(form, async () => {
      const v = (name) => form.elements[name].value.trim();
      const body = { name: v("name") };
      if (!n || v("url") !== n.url) body.url = v("url"); // the masked URL as shown: keep the stored one
      const events = v("events").split(",").map((s) => s.trim()).filter(Boolean);
      if (events.length || n) body.events = events;
      if (n) {
        const saved = await BF.api(`/api/notifications/${encodeURIComponent(n.id)}`, { method: "PUT", body });
        state.notifications.set(saved.id, saved);
        form.elements.url.value = saved.url;
        result(form, "Saved.");
      } else {
        const made = await BF.api("/api/notifications", { method: "POST", body });
        state.notifications.set(made.id, made);
        document.getElementById("new-notification").replaceChildren(notificationForm(null));
        renderList("notifications", [...state.notifications.values()], notificationForm);
      }
    });
  }

  function testNotification(form, n) {
    guarded(form, async () => {
      await BF.api(`/api/notifications/${encodeURIComponent(n.id)}/test`, { method: "POST" });
      result(form, "Test message delivered.");
    });
  }

  function removeNotification(form, n) {
    if (!confirm(`Delete the notification target "${n.name}"?`)) return;
    guarded(form, async () => {
      await BF.api(`/api/notifications/${encodeURIComponent(n.id)}`, { method: "DELETE" });
      state.notifications.delete(n.id);
      renderList("notifications", [...state.notifications.values()], notificationForm);
    });
  }

  async function loadNotifications() {
    const list = await BF.api("/api/notifications");
    state.notifications = new Map(list.items.map((n) => [n.id, n]));
    renderList("notifications", [...state.notifications.values()], notificationForm);
  }

  // ------------------------------------------------------------------ who may change things

  async function loadRole() {
    try {
      const me = await BF.api("/api/tokens/self");
      state.admin = me.role === "admin";
      state.role = me.role;
    } catch (e) {
      state.admin = true; // unknown: let the api say no, beside the field
    }
    const note = document.getElementById("read-only");
    note.textContent = state.admin ? "" : `Only admins change settings, schedules and notification targets; this token's role is ${state.role}.`;
    note.hidden = state.admin;
    lock();
  }

  /** A token that is not an admin's sees the forms but cannot send them. */
  function lock() {
    for (const node of document.querySelectorAll("#content form input, #content form textarea, #content form button")) {
      node.disabled = !state.admin;
    }
  }

  // ------------------------------------------------------------------ live

  function onEvent(env) {
    // A job a schedule queued moves that schedule's last and next run.
    if (env.type === "job.queued" && env.data && env.data.schedule_id && state.timer === null) {
      state.timer = setTimeout(() => {
        state.timer = null;
        loadSchedules().catch(() => {});
      }, 1000);
    }
  }

  BF.requireToken(() => {
    document.getElementById("new-schedule").replaceChildren(scheduleForm(null));
    document.getElementById("new-notification").replaceChildren(notificationForm(null));
    BF.socket("/api/events", { type: "job.queued" }, {
      onOpen: () => {
        BF.setLive("live", "live");
        Promise.all([loadRole(), loadSettings(), loadSchedules(), loadNotifications()]).catch((e) => {
          if (e.status !== 401) BF.notice(`Could not load the settings: ${e.message}`);
        });
      },
      onMessage: onEvent,
      onClose: () => BF.setLive("offline", "reconnecting…"),
    });
  });
})();
