/* The Queue page: stat cards, in progress, queued, recently completed; live over WS /api/events. */
"use strict";

(() => {
  const { el } = BF;
  const RECENT = 25;
  const FILTER_LIMIT = 200;
  const KEEP_UNLISTED_MS = 10000; // a job an event told of, not yet in an answer (the read model lags)
  const CARDS = {
    "in-queue": { status: "queued,sent", since: "" },
    "completed-24h": { status: "completed,warning", since: "24h" },
    "failed-24h": { status: "failed", since: "24h" },
    "avg-duration": { status: "completed,warning,failed,cancelled", since: "" },
  };
  const SINCE_S = { "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };

  const state = {
    jobs: new Map(), // id -> job, every job the page shows
    summary: null,
    filters: { type: "", status: "", since: "", q: "" },
    paused: false,
    refreshTimer: null,
    behindTries: 0,
    seen: new BF.Seen(),
  };

  const form = document.getElementById("filters");

  // ------------------------------------------------------------------ filters

  function readFiltersFromUrl() {
    const params = new URLSearchParams(location.search);
    for (const key of Object.keys(state.filters)) state.filters[key] = params.get(key) || "";
  }

  function writeFilters() {
    for (const [key, value] of Object.entries(state.filters)) {
      const input = form.elements[key];
      if (input.tagName === "SELECT" && value && ![...input.options].some((o) => o.value === value)) {
        input.append(el("option", { value, text: value }));
      }
      input.value = value;
    }
    const params = new URLSearchParams(Object.entries(state.filters).filter(([, v]) => v));
    history.replaceState(null, "", location.pathname + (params.toString() ? `?${params}` : ""));
    const active = filtering();
    document.getElementById("clear-filters").hidden = !active;
    for (const card of document.querySelectorAll(".card")) {
      const f = CARDS[card.dataset.card];
      const on = active && state.filters.status === f.status && state.filters.since === f.since
        && !state.filters.type && !state.filters.q;
      card.classList.toggle("active", on);
      card.setAttribute("aria-pressed", String(on));
    }
  }

  const filtering = () => Object.values(state.filters).some((v) => v);

  /** Whether a job passes the filters (for jobs that arrive by event; answers are filtered by the api). */
  function matches(job) {
    const f = state.filters;
    if (f.type && job.type !== f.type) return false;
    if (f.status && !f.status.split(",").includes(job.status)) return false;
    if (f.since && Date.parse(job.created_at) < Date.now() - SINCE_S[f.since] * 1000) return false;
    if (f.q) {
      const q = f.q.toLowerCase();
      const hay = [job.agent, job.plan_name, job.repository_name, job.type].filter(Boolean).join(" ").toLowerCase();
      if (!hay.includes(q) && job.id !== f.q) return false;
    }
    return true;
  }

  function setFilters(changes) {
    Object.assign(state.filters, changes);
    writeFilters();
    state.jobs = new Map(); // a new question: only its answer counts
    refresh();
  }

  form.addEventListener("change", (e) => {
    if (e.target.name && e.target.name !== "q") setFilters({ [e.target.name]: e.target.value });
  });
  let searchTimer = null;
  form.elements.q.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => setFilters({ q: form.elements.q.value.trim() }), 250);
  });
  form.addEventListener("submit", (e) => e.preventDefault());
  document.getElementById("clear-filters").addEventListener("click", () => {
    form.elements.q.value = "";
    setFilters({ type: "", status: "", since: "", q: "" });
  });
  for (const card of document.querySelectorAll(".card")) {
    card.addEventListener("click", () => {
      const wanted = Object.assign({ type: "", q: "" }, CARDS[card.dataset.card]);
      const same = card.classList.contains("active");
      setFilters(same ? { type: "", status: "", since: "", q: "" } : wanted);
    });
  }

  // ------------------------------------------------------------------ data

  function refreshSoon(delay = 150) {
    if (state.refreshTimer !== null) return;
    state.refreshTimer = setTimeout(() => {
      state.refreshTimer = null;
      refresh();
    }, delay);
  }

  async function refresh() {
    try {
      const query = new URLSearchParams(Object.entries(state.filters).filter(([, v]) => v));
      query.set("limit", String(FILTER_LIMIT));
      query.set("consistent", "true"); // every event before this answer is in it
      const [summary, page] = await Promise.all([
        BF.api("/api/queue?consistent=true"),
        filtering() ? BF.api(`/api/jobs?${query}`) : Promise.resolve(null),
      ]);
      const listed = page ? page.items : [...summary.in_progress, ...summary.queued, ...summary.recent];
      const next = new Map();
      let behind = false;
      for (const job of listed) {
        if (state.seen.overlay(job)) behind = true;
        const mine = state.jobs.get(job.id);
        const kept = BF.fresher(mine, job);
        if (kept === mine) behind = true;
        next.set(job.id, kept);
      }
      for (const [id, job] of state.jobs) {
        if (!next.has(id) && job._seen && Date.now() - job._seen < KEEP_UNLISTED_MS) {
          next.set(id, job);
          behind = true;
        }
      }
      state.jobs = next;
      state.summary = summary;
      render();
      // The read model trails the events by a moment: ask again until it has caught up.
      if (behind && state.behindTries < 8) {
        state.behindTries += 1;
        refreshSoon(250 * state.behindTries);
      } else {
        state.behindTries = 0;
      }
    } catch (e) {
      if (e.status !== 401) BF.notice(`Could not load the queue: ${e.message}`);
    }
  }

  /** A job view from a `job.queued` envelope (its data is the job spec). */
  function jobFromSpec(env) {
    const d = env.data || {};
    return {
      id: env.job_id, type: d.type, status: "queued", agent: d.agent, project: d.project,
      repository_id: d.repository_id, repository_name: d.repository ? d.repository.name : null,
      plan_id: d.plan_id, plan_name: d.plan ? d.plan.name : null, trigger: d.trigger,
      created_at: d.created_at || env.at, options: d.options || {}, waiting: null, progress: null,
      retry_of: d.retry_of, attempt: d.attempt, _seen: Date.now(), _local: true,
    };
  }

  function onEvent(env) {
    if (state.paused || !env.job_id) return;
    state.seen.note(env);
    let job = state.jobs.get(env.job_id);
    if (env.type === "job.progress") {
      if (!job) return refreshSoon();
      const wasRunning = job.status === "running";
      BF.applyEvent(job, env);
      const bar = document.querySelector(`[data-testid="progress-${CSS.escape(job.id)}"]`);
      if (bar) BF.setBar(bar, job); // straight to the bar: no re-render on the hot path
      if (!wasRunning && job.status === "running") render();
      return;
    }
    if (env.type === "job.queued" && !job) {
      job = jobFromSpec(env);
      state.jobs.set(job.id, job);
    } else if (env.type === "job.deleted") {
      state.jobs.delete(env.job_id);
    } else if (job) {
      BF.applyEvent(job, env);
      job._seen = Date.now();
    }
    render();
    refreshSoon();
  }

  // ------------------------------------------------------------------ rendering

  function render() {
    const s = state.summary;
    if (s) renderCards(s);
    const shown = [...state.jobs.values()].filter(matches);
    const running = shown.filter((j) => j.status === "running")
      .sort((a, b) => (a.started_at || "").localeCompare(b.started_at || ""));
    const queued = shown.filter((j) => j.status === "queued" || j.status === "sent")
      .sort((a, b) => position(a) - position(b) || a.created_at.localeCompare(b.created_at));
    const recent = shown.filter((j) => BF.TERMINAL.includes(j.status))
      .sort((a, b) => (b.finished_at || "").localeCompare(a.finished_at || ""))
      .slice(0, RECENT);
    renderSection("in-progress", running, runningRow, updateRunning);
    renderSection("queued", queued, queuedRow, updateQueued);
    renderSection("recent", recent, recentRow, updateRecent);
  }

  const position = (j) => (j.waiting && j.waiting.position) || (j.status === "sent" ? 0 : 1e9);

  function renderCards(s) {
    setCard("stat-in-queue", BF.count(s.in_queue));
    setCard("stat-completed-24h", BF.count(s.completed_24h));
    setCard("stat-failed-24h", BF.count(s.failed_24h));
    setCard("stat-avg-duration", s.avg_duration_s_last_50 === null ? "–" : BF.duration(s.avg_duration_s_last_50));
    const trend = document.querySelector('[data-testid="stat-completed-24h"] .trend');
    const diff = s.completed_24h - s.completed_prev_24h;
    trend.textContent = diff > 0 ? "▲" : diff < 0 ? "▼" : "▬";
    trend.className = `trend ${diff > 0 ? "up" : diff < 0 ? "down" : "flat"}`;
    trend.parentElement.title = `Completed in the last 24 hours; ${s.completed_prev_24h} in the 24 hours before. Click to list them.`;
    document.querySelector('[data-testid="stat-failed-24h"]').classList.toggle("alert", s.failed_24h > 0);
  }

  function setCard(testid, text) {
    const value = document.querySelector(`[data-testid="${testid}"] .value`);
    if (value.textContent !== text) value.textContent = text;
  }

  /** Keyed rendering: rows are kept and updated in place, so live bars are never rebuilt. */
  function renderSection(id, jobs, make, update) {
    const section = document.getElementById(id);
    const rows = section.querySelector(".rows");
    const existing = new Map([...rows.children].map((row) => [row.dataset.id, row]));
    jobs.forEach((job, i) => {
      const row = existing.get(job.id) || make(job);
      existing.delete(job.id);
      update(row, job);
      if (rows.children[i] !== row) rows.insertBefore(row, rows.children[i] || null);
    });
    for (const row of existing.values()) row.remove();
    section.querySelector(".count").textContent = jobs.length ? `(${jobs.length})` : "";
    section.querySelector(".empty").hidden = jobs.length > 0;
  }

  function baseRow(job, kind, ...cells) {
    return el("div", { class: `row ${kind}`, "data-testid": `job-${job.id}`, "data-id": job.id }, ...cells);
  }

  const details = (job) => el("a", { class: "details", href: BF.jobUrl(job.id), text: "details" });

  function what(job) {
    return el("span", { class: "what" },
      el("span", { class: "type" }), el("a", { class: "subject", href: BF.jobUrl(job.id) }),
      el("span", { class: "agent muted" }));
  }

  function fillWhat(row, job) {
    row.querySelector(".type").textContent = job.type;
    row.querySelector(".subject").textContent = BF.subject(job);
    row.querySelector(".agent").textContent = `on ${job.agent}`;
  }

  function runningRow(job) {
    return baseRow(job, "running",
      what(job),
      el("span", { class: "when" }, "started ", el("span", { "data-ago": "" })),
      el("div", { class: "bar", role: "progressbar", "data-testid": `progress-${job.id}`,
        "aria-valuemin": "0", "aria-valuemax": "100" }, el("div", { class: "fill" }), el("span", { class: "bar-text" })),
      el("span", { class: "row-actions" }, details(job)));
  }

  function updateRunning(row, job) {
    fillWhat(row, job);
    row.querySelector("[data-ago]").dataset.at = job.started_at || "";
    BF.setBar(row.querySelector(".bar"), job);
    row.classList.toggle("cancelling", !!job.cancel_requested);
  }

  function queuedRow(job) {
    return baseRow(job, "queued",
      el("span", { class: "badge status-queued" }),
      el("span", { class: "position" }),
      what(job),
      el("span", { class: "reason" }),
      el("span", { class: "when" }, "queued ", el("span", { "data-ago": "" })),
      el("span", { class: "row-actions" }, details(job)));
  }

  function updateQueued(row, job) {
    fillWhat(row, job);
    const b = row.querySelector(".badge");
    b.textContent = job.status === "sent" ? "sent" : "queued";
    b.className = `badge status-${job.status}`;
    const pos = job.waiting && job.waiting.position;
    row.querySelector(".position").textContent = pos ? `#${pos}` : "";
    const reason = row.querySelector(".reason");
    if (job.status === "sent") reason.textContent = `sent to ${job.agent}, starting`;
    else if (job.waiting) reason.textContent = job.waiting.detail || job.waiting.reason;
    else reason.textContent = job.message || "waiting for the dispatcher";
    reason.title = job.waiting ? job.waiting.reason : "";
    row.querySelector("[data-ago]").dataset.at = job.created_at || "";
  }

  function recentRow(job) {
    return baseRow(job, "finished",
      el("span", { class: "badge" }),
      what(job),
      el("span", { class: "when started" }),
      el("span", { class: "duration" }),
      el("span", { class: "row-actions" },
        el("button", { type: "button", class: "small retry", text: "retry", onclick: () => retry(job.id) }),
        details(job)));
  }

  function updateRecent(row, job) {
    fillWhat(row, job);
    const b = row.querySelector(".badge");
    b.textContent = job.status;
    b.className = `badge status-${job.status}`;
    b.title = job.error ? `${job.error.kind}: ${job.error.message}` : "";
    row.querySelector(".started").textContent = job.started_at ? `started ${BF.when(job.started_at)}` : "never started";
    row.querySelector(".duration").textContent = BF.duration(BF.runTime(job));
    row.querySelector(".retry").hidden = !(job.status === "failed" || job.status === "cancelled");
  }

  async function retry(id) {
    try {
      const job = await BF.api(`/api/jobs/${encodeURIComponent(id)}/retry`, { method: "POST" });
      BF.notice(`Retried: job ${job.id} is ${job.status}.`);
      refreshSoon(0);
    } catch (e) {
      if (e.status !== 401) BF.notice(`Could not retry: ${e.message}`);
    }
  }

  function tick() {
    for (const node of document.querySelectorAll("[data-ago]")) {
      const text = BF.ago(node.dataset.at);
      if (node.textContent !== text) node.textContent = text;
    }
  }

  // ------------------------------------------------------------------ start

  const pause = document.getElementById("pause");
  pause.addEventListener("click", () => {
    state.paused = !state.paused;
    pause.setAttribute("aria-pressed", String(state.paused));
    pause.textContent = state.paused ? "Resume" : "Pause";
    BF.setLive(state.paused ? "paused" : "live", state.paused ? "paused" : "live");
    if (!state.paused) refresh();
  });

  BF.requireToken(() => {
    readFiltersFromUrl();
    writeFilters();
    refresh();
    setInterval(tick, 1000); // relative times only ("3 min ago"): no data is fetched
    BF.socket("/api/events", {}, {
      onOpen: () => {
        if (!state.paused) BF.setLive("live", "live");
        refresh(); // whatever happened while (re)connecting
      },
      onMessage: onEvent,
      onClose: () => BF.setLive("offline", "reconnecting…"),
    });
  });
})();
