/* The Queue page: stat cards, counts by status, typed search, selection and bulk actions, in
   progress, queued, recently completed; live over WS /api/events. */
"use strict";

(() => {
  const { el } = BF;
  const RECENT = 25;
  const FILTER_LIMIT = 200;
  const KEEP_UNLISTED_MS = 10000; // a job an event told of, not yet in an answer (the read model lags)
  const REFRESH_GAP_MS = 1000; // the least time between two reads of the queue while events flow
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
    selected: new Set(), // ids ticked by hand
    allMatching: null, // {q, since, count} once "select all matching" is taken
    nextCursor: null, // the next page of a filtered list
    search: null, // the search box, parsed (null: a term the api would refuse)
    filters: { type: "", status: "", since: "", q: "" },
    paused: false,
    refreshTimer: null,
    refreshedAt: 0,
    renderFrame: null,
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
    return state.search ? searchMatches(state.search, job) : true;
  }

  // ------------------------------------------------------------------ typed search

  const KEYS = ["type", "status", "agent", "repo", "plan", "trigger", "exit"];
  const TERM = /\s*(?:([A-Za-z_]+):(?:"([^"]*)"|(\S*))|"([^"]*)"|(\S+))/y;

  /**
   * The search box as the api reads it (services/api/jobsearch.py): `key:value` terms, a comma
   * for either value, quoted values, free words. The api's answer is what counts; this only
   * decides whether a job an event just told of belongs in the list. null: a term it cannot take.
   */
  function parseSearch(text) {
    const out = { words: [] };
    TERM.lastIndex = 0;
    let m;
    while (TERM.lastIndex < text.length && (m = TERM.exec(text)) !== null) {
      if (!m[0].trim()) break;
      const [, rawKey, quoted, plain, phrase, word] = m;
      if (rawKey === undefined) {
        const w = (phrase !== undefined ? phrase : word || "").trim();
        if (w) out.words.push(w);
        continue;
      }
      const key = rawKey.toLowerCase() === "repository" ? "repo" : rawKey.toLowerCase();
      const values = (quoted !== undefined ? quoted : plain || "").split(",").map((v) => v.trim()).filter(Boolean);
      if (!KEYS.includes(key) || !values.length) return null;
      out[key] = (out[key] || []).concat(values.map((v) => v.toLowerCase()));
    }
    return out;
  }

  function searchMatches(s, job) {
    const low = (v) => (v || "").toLowerCase();
    if (s.type && !s.type.includes(job.type)) return false;
    if (s.status && !s.status.includes(job.status)) return false;
    if (s.agent && !s.agent.includes(low(job.agent))) return false;
    if (s.trigger && !s.trigger.includes(job.trigger)) return false;
    if (s.repo && !s.repo.some((v) => v === low(job.repository_id) || v === low(job.repository_name))) return false;
    if (s.plan && !s.plan.some((v) => v === low(job.plan_id) || v === low(job.plan_name))) return false;
    if (s.exit) {
      const r = job.result && job.result.exit_code !== undefined && job.result.exit_code !== null ? job.result.exit_code
        : job.error ? job.error.exit_code : null;
      if (r === null || r === undefined || !s.exit.includes(String(r))) return false;
    }
    const hay = [job.agent, job.plan_name, job.repository_name, job.type].filter(Boolean).join(" ").toLowerCase();
    return s.words.every((w) => hay.includes(w.toLowerCase()) || job.id === w);
  }

  /** The filters as one search (the selects as terms): what a bulk action over "all matching" names. */
  function filtersAsSearch() {
    const f = state.filters;
    const terms = [];
    if (f.type) terms.push(`type:${f.type}`);
    if (f.status) terms.push(`status:${f.status}`);
    if (f.q) terms.push(f.q);
    return terms.join(" ");
  }

  function setFilters(changes) {
    Object.assign(state.filters, changes);
    state.search = parseSearch(state.filters.q);
    writeFilters();
    state.jobs = new Map(); // a new question: only its answer counts
    state.nextCursor = null;
    state.morePages = false;
    clearSelection();
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

  /**
   * Ask the api again a moment after events (they are applied to the page at once; the
   * answer adds what events do not carry). While events keep coming, at most once per
   * REFRESH_GAP_MS: a busy system (a thousand jobs running) is not a request per event.
   */
  function refreshSoon(delay = 150) {
    if (state.refreshTimer !== null) return;
    const wait = delay === 0 ? 0 : Math.max(delay, REFRESH_GAP_MS - (Date.now() - state.refreshedAt));
    state.refreshTimer = setTimeout(() => {
      state.refreshTimer = null;
      refresh();
    }, wait);
  }

  /** One render per animation frame, however many events arrived in it. */
  function renderSoon() {
    if (state.renderFrame !== null) return;
    state.renderFrame = requestAnimationFrame(() => {
      state.renderFrame = null;
      render();
    });
  }

  async function refresh() {
    state.refreshedAt = Date.now();
    try {
      const query = new URLSearchParams(Object.entries(state.filters).filter(([, v]) => v));
      query.set("limit", String(FILTER_LIMIT));
      query.set("consistent", "true"); // every event before this answer is in it
      const [summary, page] = await Promise.all([
        BF.api("/api/queue?consistent=true"),
        filtering() ? BF.api(`/api/jobs?${query}`) : Promise.resolve(null),
      ]);
      showSearchProblem("");
      const listed = page ? page.items : [...summary.in_progress, ...summary.queued, ...summary.recent];
      if (!page) state.nextCursor = null;
      else if (!state.morePages) state.nextCursor = page.next_cursor;
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
        if (!next.has(id) && page && job._more) {
          next.set(id, job); // a later page the reader loaded: kept until the question changes
        } else if (!next.has(id) && job._seen && Date.now() - job._seen < KEEP_UNLISTED_MS) {
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
      if (e.status === 400) showSearchProblem(e.message);
      else if (e.status !== 401) BF.notice(`Could not load the queue: ${e.message}`);
    }
  }

  function showSearchProblem(text) {
    const p = document.getElementById("search-problem");
    if (p.textContent !== text) p.textContent = text;
    p.hidden = !text;
  }

  /** The next page of a filtered list (`next_cursor`), added below what is listed. */
  async function loadMore() {
    if (!state.nextCursor || !filtering()) return;
    const query = new URLSearchParams(Object.entries(state.filters).filter(([, v]) => v));
    query.set("limit", String(FILTER_LIMIT));
    query.set("cursor", state.nextCursor);
    try {
      const page = await BF.api(`/api/jobs?${query}`);
      for (const job of page.items) {
        if (!state.jobs.has(job.id)) state.jobs.set(job.id, Object.assign(job, { _more: true }));
      }
      state.nextCursor = page.next_cursor;
      state.morePages = true;
      render();
    } catch (e) {
      if (e.status !== 401) BF.notice(`Could not load more: ${e.message}`);
    }
  }
  document.getElementById("load-more").addEventListener("click", loadMore);

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
      // By id: the browser indexes ids, where an attribute selector walks the page (a thousand
      // running rows and a thousand events a second made that the page's biggest cost).
      const bar = document.getElementById(`bar-${job.id}`);
      if (bar) BF.setBar(bar, job); // straight to the bar: no re-render on the hot path
      if (!wasRunning && job.status === "running") renderSoon();
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
    renderSoon();
    refreshSoon();
  }

  // ------------------------------------------------------------------ rendering

  function render() {
    const s = state.summary;
    if (s) renderCards(s);
    if (s) renderStatusCounts(s.by_status);
    const shown = [...state.jobs.values()].filter(matches);
    const running = shown.filter((j) => j.status === "running")
      .sort((a, b) => (a.started_at || "").localeCompare(b.started_at || ""));
    const queued = shown.filter((j) => j.status === "queued" || j.status === "sent")
      .sort((a, b) => position(a) - position(b) || a.created_at.localeCompare(b.created_at));
    const recent = shown.filter((j) => BF.TERMINAL.includes(j.status))
      .sort((a, b) => (b.finished_at || "").localeCompare(a.finished_at || ""))
      .slice(0, filtering() ? Infinity : RECENT); // a search lists every job of the pages loaded
    renderSection("in-progress", running, runningRow, updateRunning);
    renderSection("queued", queued, queuedRow, updateQueued);
    renderSection("recent", recent, recentRow, updateRecent);
    if (s && !filtering() && s.in_queue > queued.length) {
      document.querySelector("#queued .count").textContent = `(first ${queued.length} of ${BF.count(s.in_queue)})`;
    }
    document.getElementById("load-more").hidden = !(filtering() && state.nextCursor);
    renderBulk();
  }

  // ------------------------------------------------------------------ counts by status

  const STATUS_ORDER = ["queued", "sent", "running", "completed", "warning", "failed", "cancelled"];

  function renderStatusCounts(byStatus) {
    const nav = document.querySelector('[data-testid="status-counts"]');
    for (const status of STATUS_ORDER) {
      let chip = nav.querySelector(`[data-status="${status}"]`);
      if (!chip) {
        chip = el("button", { type: "button", class: `chip status-${status}`, "data-status": status,
          "data-testid": `count-${status}`, title: `List the ${status} jobs`,
          onclick: () => setFilters({ status: state.filters.status === status ? "" : status }) },
        el("span", { class: "chip-label", text: status }), el("span", { class: "chip-value" }));
        nav.append(chip);
      }
      const text = BF.count((byStatus || {})[status] || 0);
      const value = chip.querySelector(".chip-value");
      if (value.textContent !== text) value.textContent = text;
      chip.classList.toggle("active", state.filters.status === status);
    }
  }

  // ------------------------------------------------------------------ selection and bulk actions

  function clearSelection() {
    state.selected.clear();
    state.allMatching = null;
    for (const box of document.querySelectorAll("input.select:checked")) box.checked = false;
    renderBulk();
  }

  function select(id, on) {
    state.allMatching = null;
    if (on) state.selected.add(id);
    else state.selected.delete(id);
    renderBulk();
  }

  function checkbox(job) {
    return el("input", { type: "checkbox", class: "select", "data-testid": `select-${job.id}`,
      "aria-label": `select job ${job.id}`, onchange: (e) => select(job.id, e.target.checked) });
  }

  function renderBulk() {
    const bar = document.getElementById("bulk");
    const n = state.selected.size;
    const all = state.allMatching;
    bar.hidden = !n && !all;
    const what = document.getElementById("bulk-what");
    what.textContent = all ? `all ${BF.count(all.count)} jobs matching “${all.q}”` : `${n} selected`;
    const more = document.getElementById("bulk-all");
    const q = filtersAsSearch();
    more.hidden = !!all || !q || !state.search;
    more.textContent = "Select all matching the search";
    for (const box of document.querySelectorAll("input.select")) {
      const on = !!all || state.selected.has(box.closest("[data-id]").dataset.id);
      if (box.checked !== on) box.checked = on;
    }
  }

  document.getElementById("bulk-clear").addEventListener("click", clearSelection);
  document.getElementById("bulk-all").addEventListener("click", async () => {
    const q = filtersAsSearch();
    try {
      const body = { action: "cancel", q, dry_run: true };
      if (state.filters.since) body.since = state.filters.since;
      const answer = await BF.api("/api/jobs/bulk", { method: "POST", body });
      state.allMatching = { q, since: state.filters.since, count: answer.matched };
      renderBulk();
    } catch (e) {
      if (e.status !== 401) BF.notice(`Could not count the jobs: ${e.message}`);
    }
  });

  const VERBS = { cancel: ["Cancel", "cancelled"], retry: ["Retry", "retried"], delete: ["Delete", "deleted"] };

  async function bulk(action) {
    const all = state.allMatching;
    const n = all ? all.count : state.selected.size;
    if (!n) return;
    const [verb, done] = VERBS[action];
    const what = all ? `all ${n} jobs matching “${all.q}”` : `${n} selected job${n === 1 ? "" : "s"}`;
    const warn = action === "delete" ? " Their history and logs are removed for good." : "";
    if (!confirm(`${verb} ${what}?${warn}`)) return;
    const body = all ? { action, q: all.q } : { action, ids: [...state.selected] };
    if (all && all.since) body.since = all.since;
    try {
      const answer = await BF.api("/api/jobs/bulk", { method: "POST", body });
      const refused = answer.items.filter((i) => !i.ok);
      const why = refused.length ? `; ${refused.length} refused (${refused[0].detail}${refused.length > 1 ? ", …" : ""})` : "";
      BF.notice(`${verb}: ${answer.done} of ${answer.matched} ${done}${why}.`);
      clearSelection();
      refreshSoon(0);
    } catch (e) {
      if (e.status !== 401) BF.notice(`Could not ${action}: ${e.message}`);
    }
  }

  for (const action of Object.keys(VERBS)) {
    document.getElementById(`bulk-${action}`).addEventListener("click", () => bulk(action));
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
    const row = el("div", { class: `row ${kind}`, "data-testid": `job-${job.id}`, "data-id": job.id }, checkbox(job), ...cells);
    row.querySelector("input.select").checked = !!state.allMatching || state.selected.has(job.id);
    return row;
  }

  const details = (job) => el("a", { class: "details", href: BF.jobUrl(job.id), text: "details" });

  function what(job) {
    return el("span", { class: "what" },
      el("span", { class: "type" }), el("a", { class: "subject", href: BF.jobUrl(job.id) }),
      el("span", { class: "agent muted" }));
  }

  function fillWhat(row, job) {
    BF.typeIcon(row.querySelector(".type"), job.type).textContent = job.type;
    row.querySelector(".subject").textContent = BF.subject(job);
    row.querySelector(".agent").textContent = `on ${job.agent}`;
  }

  function runningRow(job) {
    return baseRow(job, "running",
      what(job),
      el("span", { class: "when" }, "started ", el("span", { "data-ago": "" })),
      el("div", { class: "bar", role: "progressbar", id: `bar-${job.id}`, "data-testid": `progress-${job.id}`,
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
    state.search = parseSearch(state.filters.q);
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
