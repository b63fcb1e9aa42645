/* The Dashboard: repository usage, running jobs, the job calendar, latest failures, wait and run
   times. Live over WS /api/events: progress goes straight to its bar; anything else refreshes
   only the part it touches, debounced, so a burst of events costs one read per part. */
"use strict";

(() => {
  const { el } = BF;
  const DAY_MS = 86400000;
  const SPAN_DAYS = 7; // the calendar shows this many days each side of now
  const TIMING_DAYS = 14;
  const DASH = "—";
  const REPO_OF_MAX = 20000; // jobs whose repository the page remembers (the oldest go first)

  const state = {
    repos: new Map(), // id -> {repo, stats, verification}
    running: new Map(), // id -> job
    repoOf: new Map(), // job id -> its repository, from job.queued (finished jobs' events do not say)
    seen: new BF.Seen(),
    timers: new Map(), // part -> pending refresh timer
  };

  /** Refresh one part of the page at most once per `delay` ms however many events ask. */
  function soon(part, delay, fn) {
    if (state.timers.has(part)) return;
    state.timers.set(part, setTimeout(() => {
      state.timers.delete(part);
      fn();
    }, delay));
  }

  /** An api read whose failure (a 404 from an endpoint this api does not have yet, say) is null. */
  async function optional(path) {
    try {
      return await BF.api(path);
    } catch (e) {
      if (e.status === 401) throw e;
      return null;
    }
  }

  function setEmpty(section, empty) {
    section.querySelector(".empty").hidden = !empty;
  }

  // ------------------------------------------------------------------ repositories

  async function loadRepos() {
    const list = await BF.api("/api/repositories");
    const ids = new Set(list.items.map((r) => r.id));
    for (const id of [...state.repos.keys()]) if (!ids.has(id)) state.repos.delete(id);
    for (const repo of list.items) {
      const known = state.repos.get(repo.id);
      state.repos.set(repo.id, Object.assign(known || { stats: null, verification: null }, { repo }));
    }
    renderRepos();
    await Promise.all(list.items.map((r) => loadRepoFigures(r.id)));
  }

  async function loadRepoFigures(id) {
    const base = `/api/repositories/${encodeURIComponent(id)}`;
    const [stats, verification] = await Promise.all([optional(`${base}/stats`), optional(`${base}/verification`)]);
    const entry = state.repos.get(id);
    if (!entry) return;
    entry.stats = stats;
    entry.verification = verification;
    renderRepo(entry);
  }

  function renderRepos() {
    const section = document.getElementById("repositories");
    const box = section.querySelector(".repo-cards");
    const entries = [...state.repos.values()].sort((a, b) => a.repo.name.localeCompare(b.repo.name));
    const existing = new Map([...box.children].map((c) => [c.dataset.id, c]));
    entries.forEach((entry, i) => {
      const card = existing.get(entry.repo.id) || repoCard(entry.repo);
      existing.delete(entry.repo.id);
      if (box.children[i] !== card) box.insertBefore(card, box.children[i] || null);
      renderRepo(entry);
    });
    for (const card of existing.values()) card.remove();
    section.querySelector(".count").textContent = entries.length ? `(${entries.length})` : "";
    setEmpty(section, entries.length === 0);
  }

  function repoCard(repo) {
    const fact = (key, label) => [el("dt", { text: label }), el("dd", { "data-fact": key, text: DASH })];
    return el("article", { class: "repo-card", "data-testid": `repo-usage-${repo.id}`, "data-id": repo.id },
      el("h3", {}, el("span", { class: "name" }), " ", el("span", { class: "muted agent" })),
      el("div", { class: "bar usage", role: "meter", "aria-valuemin": "0", "aria-valuemax": "100" },
        el("div", { class: "fill" }), el("span", { class: "bar-text" })),
      el("dl", { class: "facts" },
        ...fact("dedup", "Dedup ratio"), ...fact("free", "Free space"), ...fact("fill", "Projected full"),
        ...fact("archives", "Archives"), ...fact("size", "Stored (deduplicated)"),
        ...fact("verified", "Last verification")));
  }

  const num = (v) => (v === null || v === undefined ? null : Number(v));

  function renderRepo(entry) {
    const card = document.querySelector(`[data-testid="repo-usage-${CSS.escape(entry.repo.id)}"]`);
    if (!card) return;
    const s = entry.stats || {};
    card.querySelector(".name").textContent = entry.repo.name;
    card.querySelector(".agent").textContent = `on ${entry.repo.agent}`;
    card.title = entry.repo.location;
    const set = (key, text) => { card.querySelector(`[data-fact="${key}"]`).textContent = text; };
    const used = num(s.disk_used), free = num(s.disk_free);
    const bar = card.querySelector(".usage");
    if (used !== null && free !== null && used + free > 0) {
      const pct = (100 * used) / (used + free);
      bar.setAttribute("aria-valuenow", pct.toFixed(1));
      BF.fillTo(bar.querySelector(".fill"), pct);
      bar.classList.toggle("high", pct >= 90);
      bar.querySelector(".bar-text").textContent = `${pct.toFixed(1)}% · ${BF.bytes(used)} used of ${BF.bytes(used + free)}`;
    } else {
      bar.removeAttribute("aria-valuenow");
      BF.fillTo(bar.querySelector(".fill"), 0);
      bar.querySelector(".bar-text").textContent = entry.stats ? "disk usage not reported yet" : "usage: " + DASH;
    }
    set("dedup", num(s.dedup_ratio) ? `${num(s.dedup_ratio).toFixed(2)}×` : DASH);
    set("free", free === null ? DASH : BF.bytes(free));
    set("fill", s.projected_full_at ? new Date(s.projected_full_at).toLocaleDateString()
      : entry.stats && s.disk_used !== undefined ? "not growing" : DASH);
    set("archives", s.archives === undefined || s.archives === null ? DASH : BF.count(s.archives));
    set("size", num(s.deduplicated_size) === null ? DASH : BF.bytes(num(s.deduplicated_size)));
    set("verified", verifiedText(entry.verification));
  }

  function verifiedText(v) {
    if (!v || !Array.isArray(v.items)) return DASH;
    if (!v.items.length) return "no archives";
    const times = v.items.map((i) => i.verified_at).filter(Boolean).sort();
    const counts = {};
    for (const i of v.items) counts[i.result] = (counts[i.result] || 0) + 1;
    const summary = Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(", ");
    return times.length ? `${BF.ago(times[times.length - 1])} (${summary})` : `never (${summary})`;
  }

  // ------------------------------------------------------------------ running jobs

  async function loadRunning() {
    const q = await BF.api("/api/queue?consistent=true");
    const next = new Map();
    for (const job of q.in_progress) {
      state.seen.overlay(job);
      next.set(job.id, BF.fresher(state.running.get(job.id), job));
    }
    state.running = next;
    renderRunning();
  }

  function renderRunning() {
    const section = document.getElementById("running");
    const rows = section.querySelector(".rows");
    const jobs = [...state.running.values()].filter((j) => j.status === "running" || j.status === "sent")
      .sort((a, b) => (a.started_at || "").localeCompare(b.started_at || ""));
    const existing = new Map([...rows.children].map((r) => [r.dataset.id, r]));
    jobs.forEach((job, i) => {
      const row = existing.get(job.id) || runningRow(job);
      existing.delete(job.id);
      BF.typeIcon(row.querySelector(".type"), job.type).textContent = job.type;
      row.querySelector(".subject").textContent = BF.subject(job);
      row.querySelector(".agent").textContent = `on ${job.agent}`;
      BF.setBar(row.querySelector(".bar"), job);
      if (rows.children[i] !== row) rows.insertBefore(row, rows.children[i] || null);
    });
    for (const row of existing.values()) row.remove();
    section.querySelector(".count").textContent = jobs.length ? `(${jobs.length})` : "";
    setEmpty(section, jobs.length === 0);
  }

  function runningRow(job) {
    return el("div", { class: "run-row", "data-testid": `job-${job.id}`, "data-id": job.id },
      el("span", { class: "what" }, el("span", { class: "type" }),
        el("a", { class: "subject", href: BF.jobUrl(job.id) }), el("span", { class: "agent muted" })),
      el("div", { class: "bar", role: "progressbar", id: `bar-${job.id}`, "data-testid": `progress-${job.id}`,
        "aria-valuemin": "0", "aria-valuemax": "100" }, el("div", { class: "fill" }), el("span", { class: "bar-text" })),
      el("span", { class: "row-actions" }, el("a", { class: "details", href: BF.jobUrl(job.id), text: "details" })));
  }

  // ------------------------------------------------------------------ failures

  async function loadFailures() {
    // consistent: the answer holds every job event appended before the request (a failure just seen).
    const page = await BF.api("/api/jobs?status=failed&limit=5&consistent=true");
    const section = document.getElementById("recent-failures");
    const rows = section.querySelector(".rows");
    rows.replaceChildren(...page.items.map(failureRow));
    setEmpty(section, page.items.length === 0);
  }

  function failureRow(job) {
    const err = job.error || {};
    return el("div", { class: "failure", "data-testid": `failure-${job.id}`, "data-id": job.id },
      el("div", { class: "failure-head" },
        el("span", { class: "badge status-failed", text: err.kind || "failed" }),
        BF.typeIcon(el("span", { class: "type", text: job.type }), job.type),
        el("a", { href: BF.jobUrl(job.id), text: BF.subject(job) || job.id }),
        el("span", { class: "muted", text: `on ${job.agent} · ${BF.when(job.finished_at)}` })),
      err.message ? el("p", { class: "failure-message", text: err.message }) : null,
      err.hint ? el("p", { class: "hint", text: err.hint }) : null);
  }

  // ------------------------------------------------------------------ calendar

  async function loadCalendar() {
    const now = Date.now();
    const from = new Date(now - SPAN_DAYS * DAY_MS).toISOString();
    const to = new Date(now + SPAN_DAYS * DAY_MS).toISOString();
    const query = new URLSearchParams({ from, to, missed: "true" });
    const cal = await BF.api(`/api/calendar?${query}`);
    drawCalendar(cal.items, Date.parse(from), Date.parse(to), now);
  }

  function drawCalendar(items, start, end, now) {
    const section = document.getElementById("calendar");
    const box = section.querySelector(".calendar-chart");
    const lanes = [...new Map(items.map((i) => [i.schedule_id, i.schedule_name || i.schedule_id])).entries()]
      .sort((a, b) => String(a[1]).localeCompare(String(b[1])));
    setEmpty(section, lanes.length === 0);
    if (!lanes.length) { box.replaceChildren(); return; }
    const { svg } = BFChart;
    const W = 1100, L = 150, R = 12, T = 22, LANE = 26;
    const H = T + lanes.length * LANE + 6;
    const x = (t) => L + ((t - start) * (W - L - R)) / (end - start);
    const laneOf = new Map(lanes.map(([id], i) => [id, i]));
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "calendar-svg" });
    // One line per midnight, labelled with its day.
    const first = new Date(start); first.setHours(24, 0, 0, 0);
    for (let t = first.getTime(); t < end; t += DAY_MS) {
      root.append(svg("line", { x1: x(t), x2: x(t), y1: T - 4, y2: H, class: "grid" }));
      const label = new Date(t).toLocaleDateString(undefined, { weekday: "short", day: "numeric" });
      root.append(svg("text", { x: x(t) + 3, y: 12, class: "axis", text: label }));
    }
    lanes.forEach(([, name], i) => {
      const y = T + i * LANE + LANE / 2;
      root.append(svg("line", { x1: L, x2: W - R, y1: y, y2: y, class: "lane" }));
      root.append(svg("text", { x: L - 8, y: y + 4, class: "lane-label", "text-anchor": "end", text: name }));
    });
    for (const item of items) {
      const t = Date.parse(item.at);
      if (t < start || t > end) continue;
      const cx = x(t), cy = T + laneOf.get(item.schedule_id) * LANE + LANE / 2;
      let mark;
      if (item.kind === "job") {
        const cls = ["completed", "warning", "failed"].includes(item.status) ? item.status : "other";
        mark = svg("a", { href: BF.jobUrl(item.job_id) }, svg("circle", { cx, cy, r: 5, class: `mark ${cls}` }));
      } else if (item.kind === "missed") {
        mark = svg("path", { d: `M${cx - 4},${cy - 4}L${cx + 4},${cy + 4}M${cx - 4},${cy + 4}L${cx + 4},${cy - 4}`, class: "mark missed" });
      } else {
        mark = svg("circle", { cx, cy, r: 4, class: "mark fire" });
      }
      mark.setAttribute("data-kind", item.kind);
      if (item.status) mark.setAttribute("data-status", item.status);
      const what = item.kind === "job" ? `${item.type} ${item.status}` : item.kind === "missed" ? "missed" : `${item.type || "job"} due`;
      mark.append(svg("title", { text: `${item.schedule_name || item.schedule_id}: ${what}, ${new Date(t).toLocaleString()}` }));
      root.append(mark);
    }
    root.append(svg("line", { x1: x(now), x2: x(now), y1: T - 8, y2: H, class: "now", "data-kind": "now" }));
    box.replaceChildren(root);
  }

  // ------------------------------------------------------------------ timings

  function shortDuration(s) {
    if (s === 0) return "0 s";
    // Under a second in ms, to a tenth: axis steps of 5 ms must not all read "0.01 s".
    if (s < 1) return `${Number((s * 1000).toFixed(s < 0.01 ? 1 : 0))} ms`;
    if (s < 10) return `${s.toFixed(1)} s`;
    if (s < 60) return `${Math.round(s)} s`;
    return s < 3600 ? `${(s / 60).toFixed(s < 600 ? 1 : 0)} min` : `${(s / 3600).toFixed(1)} h`;
  }

  async function loadTimings() {
    const t = await BF.api(`/api/timings?days=${TIMING_DAYS}`);
    const section = document.getElementById("timings");
    setEmpty(section, t.items.length === 0);
    const days = [];
    const first = Date.parse(t.since);
    for (let i = 0; i < TIMING_DAYS; i++) days.push(new Date(first + i * DAY_MS).toISOString().slice(0, 10));
    const types = [...new Set(t.items.map((i) => i.type))].sort();
    const byKey = new Map(t.items.map((i) => [`${i.day} ${i.type}`, i]));
    const series = (field) => types.flatMap((type, k) => ["p50", "p95"].map((p) => ({
      name: `${type} ${p}`, color: BFChart.PALETTE[k % BFChart.PALETTE.length], dashed: p === "p95",
      values: days.map((d) => { const row = byKey.get(`${d} ${type}`); return row ? row[`${field}_${p}_s`] : null; }),
    })));
    const labels = days.map((d) => d.slice(5));
    BFChart.lines(document.getElementById("chart-wait"), { labels, series: series("wait"), format: shortDuration });
    BFChart.lines(document.getElementById("chart-run"), { labels, series: series("run"), format: shortDuration });
    document.getElementById("timings-legend").replaceChildren(...types.map((type, k) =>
      el("span", { class: `key series-${k % BFChart.PALETTE.length}`, text: type })));
  }

  // ------------------------------------------------------------------ live

  const TERMINAL_EVENTS = new Set(["job.completed", "job.warning", "job.failed", "job.cancelled"]);

  function onEvent(env) {
    if (!env.job_id) return;
    state.seen.note(env);
    const job = state.running.get(env.job_id);
    if (env.type === "job.progress") {
      if (!job) return soon("running", 1000, guard(loadRunning));
      BF.applyEvent(job, env);
      // By id: the browser indexes ids, where an attribute selector walks the page (a thousand
      // running rows and a thousand events a second made that the page's biggest cost).
      const bar = document.getElementById(`bar-${job.id}`);
      if (bar) BF.setBar(bar, job); // straight to the bar: no re-render on the hot path
      return;
    }
    if (env.type === "job.started" || env.type === "job.sent") soon("running", 1000, guard(loadRunning));
    if (TERMINAL_EVENTS.has(env.type)) {
      if (job) {
        state.running.delete(env.job_id);
        renderRunning();
        // What a finished job changed in its repository's figures (a backup, a prune, a check…).
        if (job.repository_id && state.repos.has(job.repository_id)) {
          soon(`repo ${job.repository_id}`, 2000, guard(() => loadRepoFigures(job.repository_id)));
        }
      } else {
        const repoId = state.repoOf.get(env.job_id);
        if (repoId && state.repos.has(repoId)) soon(`repo ${repoId}`, 2000, guard(() => loadRepoFigures(repoId)));
      }
      state.repoOf.delete(env.job_id);
      if (env.type === "job.failed") soon("failures", 500, guard(loadFailures));
      soon("calendar", 3000, guard(loadCalendar));
      soon("timings", 15000, guard(loadTimings));
    } else if (env.type === "job.queued" || env.type === "job.deleted") {
      const repoId = env.data && env.data.repository_id;
      if (env.type === "job.queued" && repoId) {
        state.repoOf.set(env.job_id, repoId);
        if (!state.repos.has(repoId)) soon("repos", 2000, guard(loadRepos)); // a repository new to the page
        if (state.repoOf.size > REPO_OF_MAX) state.repoOf.delete(state.repoOf.keys().next().value);
      }
      soon("calendar", 3000, guard(loadCalendar));
      if (env.type === "job.deleted") soon("failures", 1000, guard(loadFailures));
    }
  }

  function guard(fn) {
    return async () => {
      try {
        await fn();
      } catch (e) {
        if (e.status !== 401) BF.notice(`Could not load the dashboard: ${e.message}`);
      }
    };
  }

  const loadAll = () => Promise.all([loadRepos, loadRunning, loadFailures, loadCalendar, loadTimings].map((f) => guard(f)()));

  BF.requireToken(() => {
    // Subscribe first, then read (on open): no event falls between the read and the socket.
    // The "now" line and relative times move on their own; the calendar is redrawn each minute.
    setInterval(guard(loadCalendar), 60000);
    BF.socket("/api/events", {}, {
      onOpen: () => {
        BF.setLive("live", "live");
        loadAll(); // whatever happened while (re)connecting
      },
      onMessage: onEvent,
      onClose: () => BF.setLive("offline", "reconnecting…"),
    });
  });
})();
