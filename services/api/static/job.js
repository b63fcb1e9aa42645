/* The job page: header, progress, options, timeline, attempts, configuration, live log, error,
   actions; live over the websockets. */
"use strict";

(() => {
  const { el } = BF;
  const id = document.body.dataset.jobId;
  const path = `/api/jobs/${encodeURIComponent(id)}`;
  const MAX_LOG_LINES = 5000; // beyond this the page keeps the newest; the download has them all
  const SECRET = /passphrase|password|secret|token/i;
  let job = null;
  let behindTries = 0;
  const seen = new BF.Seen();
  let reloadTimer = null;
  let historyTimer = null;
  const WAITING_REREAD_MS = 5000;

  // ------------------------------------------------------------------ data

  async function load() {
    try {
      const fresh = await BF.api(path);
      const overlaid = seen.overlay(fresh);
      const kept = BF.fresher(job, fresh);
      const behind = overlaid || (job !== null && kept === job);
      job = kept;
      render();
      if (behind && behindTries < 8) { // the read model trails the events by a moment
        behindTries += 1;
        loadSoon(250 * behindTries);
      } else {
        behindTries = 0;
      }
    } catch (e) {
      if (e.status === 404) {
        document.getElementById("content").hidden = true;
        BF.notice(`No job ${id}: it does not exist, was deleted, or this token may not see it.`);
      } else if (e.status !== 401) {
        BF.notice(`Could not load the job: ${e.message}`);
      }
    }
  }

  function loadSoon(delay = 150) {
    if (reloadTimer !== null) return;
    reloadTimer = setTimeout(() => { reloadTimer = null; load(); }, delay);
  }

  function onEvent(env) {
    if (!job || env.job_id !== id) return;
    seen.note(env);
    const before = job.status;
    BF.applyEvent(job, env);
    if (env.type === "job.progress" && job.status === before) return renderProgress();
    if (env.type === "job.deleted") return BF.notice("This job was deleted.");
    render();
    loadSoon(); // the full view (result stats, error hint) from the api
    historySoon(); // a transition: the timeline has a new entry
  }

  // ------------------------------------------------------------------ history

  /** Timeline, attempts and configuration (GET …/history): once, then after each transition. */
  async function loadHistory() {
    try {
      const h = await BF.api(`${path}/history`);
      renderTimeline(h.timeline);
      renderAttempts(h.attempts);
      renderConfig(h.configuration);
      // The events are read from the stream, so a transition is in the answer at once; the
      // attempts come from the read model, which may trail by a moment.
      const me = h.attempts.find((a) => a.id === id);
      if (me && job && BF.RANK[me.status] < BF.RANK[job.status]) historySoon(500);
    } catch (e) {
      if (e.status !== 401 && e.status !== 404) BF.notice(`Could not load the history: ${e.message}`);
    }
  }

  function historySoon(delay = 200) {
    if (historyTimer !== null) return;
    historyTimer = setTimeout(() => { historyTimer = null; loadHistory(); }, delay);
  }

  const ACTOR = { token: "by", scheduler: "by the scheduler:", dispatcher: "by the", executor: "by executor", system: "by the" };

  function renderTimeline(entries) {
    const list = document.getElementById("timeline");
    list.replaceChildren(...entries.map((t) => {
      const name = t.event === "waiting" ? "waiting" : t.event.replace(/^job\./, "").replace("_", " ");
      const status = t.status ? BF.badge(t.status) : el("span", { class: "badge", text: "deleted" });
      return el("li", { class: `step ev-${t.event.replace(/^job\./, "")}`, "data-event": t.event },
        el("time", { datetime: t.at, title: t.at, text: BF.when(t.at) }),
        el("span", { class: "step-name", text: name }),
        status,
        el("span", { class: "actor", "data-kind": t.actor.kind, text: `${ACTOR[t.actor.kind] || "by"} ${t.actor.name}` }),
        el("span", { class: "step-detail", text: [t.detail, t.exit_code !== undefined && t.exit_code !== null ? `exit code ${t.exit_code}` : ""].filter(Boolean).join(" · ") }));
    }));
  }

  function renderAttempts(attempts) {
    const rows = document.getElementById("attempts");
    document.querySelector("#job-attempts .count").textContent = attempts.length > 1 ? `(${attempts.length})` : "";
    rows.replaceChildren(...attempts.map((a) => el("div", {
      class: `row attempt${a.id === id ? " mine" : ""}`, "data-testid": `attempt-${a.id}`, "data-id": a.id },
    el("span", { class: "attempt-n", text: `#${a.attempt}` }),
    BF.badge(a.status),
    a.id === id ? el("span", { class: "subject", text: `${a.id} (this job)` }) : link(BF.jobUrl(a.id), a.id),
    el("span", { class: "muted", text: a.requested_by ? `by ${a.requested_by}` : a.trigger }),
    el("span", { class: "muted", text: a.finished_at ? `ended ${BF.when(a.finished_at)}` : a.started_at ? `started ${BF.when(a.started_at)}` : `queued ${BF.when(a.created_at)}` }),
    el("span", { class: "exit", text: a.exit_code === null || a.exit_code === undefined ? "" : `exit ${a.exit_code}` }),
    el("span", { class: "attempt-error", text: a.error ? `${a.error.kind}: ${a.error.message}` : "" }))));
  }

  function renderConfig(config) {
    const dl = document.getElementById("config");
    dl.replaceChildren();
    const r = config.repository;
    const p = config.plan;
    if (r) {
      fact(dl, "Repository", `${r.name} (${r.id})`);
      fact(dl, "Location", r.location);
      fact(dl, "Repository agent", r.agent);
      fact(dl, "Passphrase", r.has_passphrase ? "set (not shown)" : "none");
    }
    if (p) {
      fact(dl, "Plan", `${p.name} (${p.id})`);
      for (const [key, value] of Object.entries(p)) {
        if (["id", "name", "repository_id"].includes(key)) continue;
        if (value === null || value === undefined || (Array.isArray(value) && !value.length)) continue;
        if (typeof value === "object" && !Array.isArray(value) && !Object.keys(value).length) continue;
        const text = Array.isArray(value) && value.every((v) => typeof v !== "object") ? value.join(", ") : show(key, value);
        fact(dl, `plan ${key}`, text);
      }
    }
    document.getElementById("job-config").hidden = !r && !p;
  }

  // ------------------------------------------------------------------ rendering

  function fact(dl, label, value) {
    if (value === null || value === undefined || value === "") return;
    dl.append(el("dt", { text: label }), el("dd", {}, value));
  }

  function link(href, text) {
    return el("a", { href, text });
  }

  function render() {
    BF.typeIcon(document.getElementById("job-type"), job.type).textContent = job.type;
    document.title = `${job.type} ${job.id} · ${job.status} · borgflow`;
    const status = document.getElementById("job-status");
    status.textContent = job.status;
    status.className = `badge status-${job.status}`;
    document.getElementById("job-cancelling").hidden = !(job.cancel_requested && job.status === "running");

    const facts = document.getElementById("facts");
    facts.replaceChildren();
    fact(facts, "Agent", job.agent);
    fact(facts, "Plan", job.plan_id ? `${job.plan_name || ""} (${job.plan_id})`.trim() : null);
    fact(facts, "Repository", job.repository_id ? `${job.repository_name || ""} (${job.repository_id})`.trim() : null);
    fact(facts, "Project", job.project);
    fact(facts, "Trigger", `${job.trigger}${job.requested_by ? ` by ${job.requested_by}` : ""}`);
    fact(facts, "Created", BF.when(job.created_at));
    fact(facts, "Started", job.started_at ? BF.when(job.started_at) : "not yet");
    fact(facts, "Finished", job.finished_at ? BF.when(job.finished_at) : BF.TERMINAL.includes(job.status) ? "–" : "not yet");
    fact(facts, "Duration", job.started_at ? BF.duration(BF.runTime(job)) : "–");
    if (job.attempt > 1) fact(facts, "Attempt", String(job.attempt));
    if (job.retry_of) fact(facts, "Retry of", link(BF.jobUrl(job.retry_of), job.retry_of));
    if (job.parent_id) fact(facts, "After", link(BF.jobUrl(job.parent_id), job.parent_id));
    if (job.archive) fact(facts, "Archive", job.archive);
    // The settings' log_save_policy, retention or size cap may have dropped the log: say which.
    if (job.log_note) fact(facts, "Log", `not kept: ${job.log_note}`);
    if (job.status === "queued" && job.waiting) {
      fact(facts, "Waiting", `${job.waiting.position ? `#${job.waiting.position}: ` : ""}${job.waiting.detail || job.waiting.reason}`);
    }
    const message = document.getElementById("job-message");
    message.textContent = job.message || "";
    message.hidden = !job.message || BF.TERMINAL.includes(job.status);

    renderProgress();
    renderError();
    renderResult();
    renderOptions();
    renderActions();
  }

  function renderProgress() {
    const panel = document.getElementById("progress-panel");
    panel.hidden = !(job.status === "running" || job.progress);
    const bar = document.getElementById("job-progress");
    BF.setBar(bar, job);
    const p = job.progress || {};
    const parts = [];
    if (p.percent !== undefined && p.percent !== null) parts.push(`${p.estimated ? "≈ " : ""}${p.percent.toFixed(1)}% done${p.estimated ? " (estimated from an earlier backup)" : ""}`);
    if (p.action) parts.push(p.action);
    if (job.status === "running" && p.eta_s !== undefined && p.eta_s !== null) parts.push(`${p.estimated ? "≈ " : "about "}${BF.duration(p.eta_s)} left`);
    if (p.nfiles !== undefined && p.nfiles !== null) parts.push(`${BF.count(p.nfiles)} files`);
    if (p.original_size) parts.push(`${BF.bytes(p.original_size)} read`);
    if (p.deduplicated_size) parts.push(`${BF.bytes(p.deduplicated_size)} new`);
    if (p.bytes_done !== undefined && p.bytes_done !== null) {
      parts.push(`${BF.bytes(p.bytes_done)}${p.bytes_total ? " of " + BF.bytes(p.bytes_total) : ""} transferred`);
    }
    if (p.bytes_per_s) parts.push(`${BF.bytes(p.bytes_per_s)}/s`);
    if (p.bwlimit) parts.push(`bandwidth limit ${p.bwlimit}/s`);
    document.getElementById("progress-detail").textContent = parts.join(" · ");
  }

  function renderError() {
    const panel = document.getElementById("job-error");
    const e = job.error;
    panel.hidden = !(job.status === "failed" && e);
    const dl = document.getElementById("error-facts");
    dl.replaceChildren();
    if (!e) return;
    fact(dl, "Kind", e.kind);
    fact(dl, "Message", e.message);
    fact(dl, "Exit code", e.exit_code === null || e.exit_code === undefined ? "–" : String(e.exit_code));
    fact(dl, "What to do", e.hint || "–");
  }

  function renderResult() {
    const r = job.result;
    const panel = document.getElementById("result-panel");
    panel.hidden = !r || !BF.TERMINAL.includes(job.status);
    const dl = document.getElementById("result-facts");
    dl.replaceChildren();
    if (!r) return;
    fact(dl, "Archive", r.archive);
    const stats = r.stats || {};
    if (stats.nfiles !== undefined) fact(dl, "Files", BF.count(stats.nfiles));
    if (stats.original_size !== undefined) fact(dl, "Original size", BF.bytes(stats.original_size));
    if (stats.compressed_size !== undefined) fact(dl, "Compressed", BF.bytes(stats.compressed_size));
    if (stats.deduplicated_size !== undefined) fact(dl, "New in the repository", BF.bytes(stats.deduplicated_size));
    if (r.exit_code !== undefined && r.exit_code !== null) fact(dl, "Exit code", String(r.exit_code));
    for (const w of r.warnings || []) fact(dl, "Warning", w);
    if (job.status === "cancelled" && job.error) fact(dl, "Cancelled", job.error.message);
  }

  const show = (key, value) =>
    SECRET.test(key) ? "********" : typeof value === "object" ? JSON.stringify(value) : String(value);
  let plan = null; // the job's plan as it is now: what a backup backs up

  function renderOptions() {
    const dl = document.getElementById("options");
    dl.replaceChildren();
    const entries = Object.entries(job.options || {});
    for (const [key, value] of entries) fact(dl, key, show(key, value));
    if (plan && (job.type === "backup" || job.type === "prune")) {
      for (const key of ["paths", "exclude", "compression", "archive_name", "retention", "pre_scripts", "post_scripts"]) {
        const value = plan[key];
        if (value === undefined || (Array.isArray(value) && !value.length)) continue;
        if (typeof value === "object" && !Array.isArray(value) && !Object.keys(value).length) continue;
        fact(dl, `plan ${key}`, Array.isArray(value) ? value.join(", ") : show(key, value));
      }
    }
    if (!dl.childElementCount) dl.append(el("dd", { class: "muted", text: "defaults" }));
  }

  async function loadPlan() {
    if (!job.plan_id) return;
    try {
      plan = await BF.api(`/api/plans/${encodeURIComponent(job.plan_id)}`);
      renderOptions();
    } catch (_) { /* the plan is gone: the job's own options still show */ }
  }

  function renderActions() {
    const active = ["queued", "sent", "running"].includes(job.status);
    const cancel = document.getElementById("action-cancel");
    cancel.hidden = !active;
    cancel.disabled = !!job.cancel_requested;
    document.getElementById("action-retry").hidden = !(job.status === "failed" || job.status === "cancelled");
    const archive = document.getElementById("action-view-archive");
    archive.hidden = !(job.type === "backup" && ["completed", "warning"].includes(job.status) && job.repository_id);
  }

  // ------------------------------------------------------------------ actions

  async function act(label, fn) {
    try {
      await fn();
    } catch (e) {
      if (e.status !== 401) BF.notice(`Could not ${label}: ${e.message}`);
    }
  }

  document.getElementById("action-cancel").addEventListener("click", () => act("cancel", async () => {
    if (!confirm(`Cancel this ${job.type} job (${job.id})? A running backup stops at a checkpoint.`)) return;
    job = BF.fresher(job, await BF.api(`${path}/cancel`, { method: "POST" }));
    render();
  }));

  document.getElementById("action-retry").addEventListener("click", () => act("retry", async () => {
    const again = await BF.api(`${path}/retry`, { method: "POST" });
    location.href = BF.jobUrl(again.id);
  }));

  document.getElementById("action-download-log").addEventListener("click", () => act("download the log", async () => {
    const r = await BF.api(`${path}/log`, { raw: true });
    const url = URL.createObjectURL(await r.blob());
    const a = el("a", { href: url, download: `job-${id}.log` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }));

  document.getElementById("action-view-archive").addEventListener("click", () => act("list the archives", async () => {
    const panel = document.getElementById("archives-panel");
    if (!panel.hidden) { panel.hidden = true; return; }
    const answer = await BF.api(`/api/repositories/${encodeURIComponent(job.repository_id)}/archives`);
    document.getElementById("archives-repo").textContent = job.repository_name || job.repository_id;
    const list = document.getElementById("archives");
    list.replaceChildren(...answer.items.map((a) => el("div", { class: `row archive${a.name === (job.result || {}).archive ? " mine" : ""}` },
      el("span", { class: "name", text: a.name }),
      el("span", { class: "muted", text: BF.when(a.created) }),
      el("span", { class: "muted", text: a.stats && a.stats.original_size ? BF.bytes(a.stats.original_size) : "" }),
      a.job_id ? link(BF.jobUrl(a.job_id), "its job") : el("span"))));
    if (!answer.items.length) list.append(el("p", { class: "muted", text: "No archives known yet." }));
    panel.hidden = false;
    panel.scrollIntoView({ behavior: "smooth", block: "nearest" });
  }));

  // ------------------------------------------------------------------ log

  const logEl = document.getElementById("job-log");
  const logState = document.getElementById("log-state");

  function appendLine(line) {
    const nearBottom = logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight < 40;
    const time = line.at ? line.at.slice(11, 23) : "";
    logEl.append(el("li", { class: `level-${line.level}`, title: line.at },
      el("span", { class: "t", text: time }),
      el("span", { class: "lvl", text: line.level }),
      el("span", { class: "src", text: line.source }),
      el("span", { class: "msg", text: line.message })));
    while (logEl.childElementCount > MAX_LOG_LINES) logEl.firstElementChild.remove();
    // Follow the end while the job runs, unless the reader scrolled up to read.
    if (nearBottom && !BF.TERMINAL.includes(job ? job.status : "")) logEl.scrollTop = logEl.scrollHeight;
  }

  function followLog() {
    BF.socket(`${path}/log/follow`, {}, {
      onOpen: () => { logEl.replaceChildren(); logState.textContent = "(following)"; },
      onMessage: appendLine,
      onClose: (e) => {
        if (e.code === 1000) {
          logState.textContent = job && job.log_note ? `(not kept: ${job.log_note})` : logEl.childElementCount ? "" : "(empty)";
          return false;
        }
        if (e.code === 4404) { logState.textContent = "(no such job)"; return false; }
        logState.textContent = "(reconnecting…)";
        return true;
      },
    });
  }

  // ------------------------------------------------------------------ start

  BF.requireToken(async () => {
    await load();
    if (!job) return;
    loadPlan();
    loadHistory();
    followLog();
    BF.socket("/api/events", { job_id: id }, {
      onOpen: () => { BF.setLive("live", "live"); load(); historySoon(0); },
      onMessage: onEvent,
      onClose: () => BF.setLive("offline", "reconnecting…"),
    });
    // Why a queued job waits changes without an event (another job ends, an agent returns):
    // its timeline's last entry is read again every few seconds while it waits.
    setInterval(() => { if (job && job.status === "queued") historySoon(0); }, WAITING_REREAD_MS);
    setInterval(() => { // the running duration ticks; nothing is fetched
      if (job && job.status === "running") {
        const dd = [...document.querySelectorAll("#facts dt")].find((dt) => dt.textContent === "Duration");
        if (dd) dd.nextElementSibling.textContent = BF.duration(BF.runTime(job));
      }
    }, 1000);
  });
})();
