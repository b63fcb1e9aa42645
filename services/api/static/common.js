/* borgflow pages: the token, calls to the api, websockets, and formatting. No framework. */
"use strict";

const BF = (() => {
  const TOKEN_KEY = "borgflow.token";
  const TERMINAL = ["completed", "warning", "failed", "cancelled"];
  // How far along its life a status is: a stale answer never moves a job backwards.
  const RANK = { queued: 0, sent: 1, running: 2, completed: 3, warning: 3, failed: 3, cancelled: 3 };

  /** `#token=T` in the address: keep T for this tab and take it out of the address bar. */
  function captureToken() {
    const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (!m) return;
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }

  const token = () => sessionStorage.getItem(TOKEN_KEY);

  class ApiError extends Error {
    constructor(status, detail, field) {
      super(detail);
      this.status = status;
      this.field = field || null; // the request field a 4xx is about, when the api names one
    }
  }

  let onAuthProblem = () => {};

  /** A JSON call to the api with the token; ApiError carries the api's `detail`. */
  async function api(path, options = {}) {
    const headers = Object.assign({ Authorization: `Bearer ${token()}` }, options.headers || {});
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, {
      method: options.method || "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    if (r.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      onAuthProblem("The token was refused (unknown or revoked). Paste a valid one.");
      throw new ApiError(401, "the token was refused");
    }
    if (!r.ok) {
      let detail = `${r.status} ${r.statusText}`;
      let field = null;
      try {
        const body = await r.json();
        detail = body.detail || detail;
        field = body.field || null;
      } catch (_) { /* not JSON */ }
      throw new ApiError(r.status, detail, field);
    }
    if (options.raw) return r;
    return r.status === 204 ? null : r.json();
  }

  /**
   * A websocket to the api that reconnects after a drop (with backoff). `onOpen` runs on
   * every (re)connection, so the page re-reads what it may have missed meanwhile.
   */
  function socket(path, params, handlers) {
    let ws = null;
    let delay = 500;
    let closedByUs = false;
    function open() {
      const query = new URLSearchParams(Object.assign({}, params, { token: token() }));
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      ws = new WebSocket(`${proto}//${location.host}${path}?${query}`);
      ws.onopen = () => {
        delay = 500;
        handlers.onOpen && handlers.onOpen();
      };
      ws.onmessage = (e) => handlers.onMessage(JSON.parse(e.data), performance.now());
      ws.onclose = (e) => {
        if (closedByUs) return;
        if (e.code === 4401) {
          sessionStorage.removeItem(TOKEN_KEY);
          onAuthProblem("The token was refused (unknown or revoked). Paste a valid one.");
          return;
        }
        if (handlers.onClose && handlers.onClose(e) === false) return; // the handler says: done
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 15000);
      };
    }
    open();
    return { close: () => { closedByUs = true; ws && ws.close(); } };
  }

  /** The token form; `start` runs once a token is there (now, or once pasted). */
  function requireToken(start) {
    const prompt = document.getElementById("token-prompt");
    const content = document.getElementById("content");
    const problem = document.getElementById("token-problem");
    onAuthProblem = (message) => {
      content.hidden = true;
      prompt.hidden = false;
      problem.textContent = message;
      problem.hidden = !message;
      setLive("offline", "signed out");
    };
    document.getElementById("token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const value = document.getElementById("token-input").value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      location.reload(); // one clean start with the token
    });
    document.getElementById("forget-token").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      location.reload();
    });
    if (!token()) {
      onAuthProblem("");
      return;
    }
    prompt.hidden = true;
    content.hidden = false;
    start();
  }

  function setLive(state, text) {
    const el = document.getElementById("live");
    if (!el) return;
    el.dataset.state = state;
    el.textContent = text;
  }

  function notice(message) {
    const el = document.getElementById("notice");
    el.textContent = message || "";
    el.hidden = !message;
    if (message) setTimeout(() => { if (el.textContent === message) el.hidden = true; }, 8000);
  }

  // ------------------------------------------------------------------ formatting

  function duration(s) {
    if (s === null || s === undefined || isNaN(s)) return "–";
    if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
    const m = Math.floor(s / 60), sec = Math.round(s % 60);
    if (m < 60) return `${m} min ${String(sec).padStart(2, "0")} s`;
    const h = Math.floor(m / 60);
    return `${h} h ${String(m % 60).padStart(2, "0")} min`;
  }

  function bytes(n) {
    if (n === null || n === undefined) return "";
    const units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let i = 0, v = n;
    while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
    return `${i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
  }

  function ago(iso) {
    if (!iso) return "–";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 5) return "just now";
    if (s < 60) return `${Math.round(s)} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }

  function when(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    const sameDay = d.toDateString() === new Date().toDateString();
    return sameDay ? d.toLocaleTimeString() : d.toLocaleString();
  }

  const count = (n) => (n === null || n === undefined ? "" : Number(n).toLocaleString());

  /** Seconds a job ran (or has run so far). */
  function runTime(job) {
    if (job.duration_s !== null && job.duration_s !== undefined) return job.duration_s;
    if (!job.started_at) return null;
    const end = job.finished_at ? Date.parse(job.finished_at) : Date.now();
    return Math.max(0, (end - Date.parse(job.started_at)) / 1000);
  }

  /** What a job acts on, in words: its plan, else its repository, else its agent. */
  function subject(job) {
    return job.plan_name || job.repository_name || (job.type === "ping" ? `agent ${job.agent}` : job.repository_id) || "";
  }

  /** The text of a progress bar: percent and what the job is doing, by job type. */
  function actionText(job) {
    const p = job.progress || {};
    const parts = [];
    // An estimate (a backup's, from an earlier archive of the same paths) reads "≈ 42.0%".
    if (p.percent !== null && p.percent !== undefined) parts.push(`${p.estimated ? "≈ " : ""}${p.percent.toFixed(1)}%`);
    const files = p.nfiles !== undefined && p.nfiles !== null ? p.nfiles : null;
    if (job.type === "backup") {
      if (files !== null) parts.push(`${count(files)} files`);
      if (p.original_size) parts.push(bytes(p.original_size));
      if (p.current_file) parts.push(p.current_file);
      else if (p.action) parts.push(p.action);
    } else if (job.type === "restore") {
      const n = files !== null ? files : p.current;
      if (n !== null && n !== undefined) parts.push(`${count(n)}${p.total ? " of " + count(p.total) : ""} files`);
      const dest = (job.options || {}).destination;
      if (dest) parts.push(`→ ${dest}`);
      if (p.current_file) parts.push(p.current_file);
    } else if (job.type === "restore_pg" || job.type === "restore_mysql") {
      // current: bytes of the dump restored so far; total: the dump's size in the archive.
      if (p.current !== null && p.current !== undefined) {
        parts.push(`${bytes(p.current)}${p.total ? " of " + bytes(p.total) : ""} restored`);
      }
      if (p.bytes_per_s) parts.push(`${bytes(p.bytes_per_s)}/s`);
      const target = ((job.options || {}).target || {}).database;
      if (target) parts.push(`→ ${target}`);
    } else if (job.type === "s3_sync") {
      // rclone's stats: bytes uploaded of the total, the speed, and the limit it runs under.
      if (p.bytes_done !== null && p.bytes_done !== undefined) {
        parts.push(`${bytes(p.bytes_done)}${p.bytes_total ? " of " + bytes(p.bytes_total) : ""}`);
      }
      if (p.bytes_per_s) parts.push(`${bytes(p.bytes_per_s)}/s`);
      if (p.bwlimit) parts.push(`limit ${p.bwlimit}/s`);
      if (!p.bytes_done && p.action) parts.push(p.action);
    } else if (job.type === "prune" && (p.total || p.deduplicated_size)) {
      // borg's own count of the archives pruned so far, of those it prunes (space is freed by compact).
      if (p.total) parts.push(`${count(p.current || 0)} of ${count(p.total)} archives pruned`);
      if (p.deduplicated_size) parts.push(`${bytes(p.deduplicated_size)} for compact to free`);
    } else if (p.action) {
      parts.push(p.action);
    }
    if (!parts.length) return job.status === "running" ? "starting…" : job.status;
    return parts.join(" · ");
  }

  /** Set a progressbar element from a job: aria-valuenow is the percent, absent when unknown. */
  /** A bar's fill at `pct` percent: a transform, which the compositor animates without a layout. */
  function fillTo(fill, pct) {
    const value = `scaleX(${pct / 100})`;
    if (fill.style.transform !== value) fill.style.transform = value;
  }

  function setBar(el, job) {
    const p = job.progress || {};
    const fill = el.querySelector(".fill");
    const text = el.querySelector(".bar-text");
    const label = actionText(job);
    if (p.percent === null || p.percent === undefined) {
      el.removeAttribute("aria-valuenow");
      el.classList.add("indeterminate");
      fillTo(fill, 100);
    } else {
      const pct = Math.max(0, Math.min(100, p.percent));
      el.classList.remove("indeterminate");
      if (el.getAttribute("aria-valuenow") !== String(pct)) el.setAttribute("aria-valuenow", String(pct));
      fillTo(fill, pct);
    }
    el.setAttribute("aria-valuetext", label);
    if (text.textContent !== label) text.textContent = label;
  }

  function badge(status) {
    const el = document.createElement("span");
    el.className = `badge status-${status}`;
    el.textContent = status;
    return el;
  }

  /** Apply an event envelope to a job the page holds (the fold, as far as the page needs it). */
  function applyEvent(job, env) {
    const at = env.at;
    const d = env.data || {};
    switch (env.type) {
      case "job.progress":
        job.progress = d;
        // Only a running job reports progress: a page that missed its start learns it here.
        if (RANK[job.status] < RANK.running) Object.assign(job, { status: "running", started_at: job.started_at || at });
        return true;
      case "job.sent":
        return advance(job, "sent", { sent_at: at, agent: d.agent || job.agent });
      case "job.requeued":
        Object.assign(job, { status: "queued", sent_at: null, _local: true });
        return true;
      case "job.started":
        return advance(job, "running", { started_at: at, agent: d.agent || job.agent });
      case "job.cancel_requested":
        job.cancel_requested = true;
        return true;
      case "job.completed":
      case "job.warning":
      case "job.failed":
      case "job.cancelled": {
        const changes = { finished_at: at, result: d.result || job.result, error: d.error || job.error };
        if (d.progress) changes.progress = d.progress;
        const ok = advance(job, env.type.slice(4), changes);
        if (ok && job.started_at) job.duration_s = (Date.parse(at) - Date.parse(job.started_at)) / 1000;
        return ok;
      }
      default:
        return false;
    }
  }

  function advance(job, status, changes) {
    if (RANK[status] < RANK[job.status]) return false;
    Object.assign(job, changes, { status, _local: true });
    return true;
  }

  /** The fresher of what the page knows (`mine`, from events) and what the api answered. */
  function fresher(mine, theirs) {
    if (!mine) return theirs;
    if (RANK[mine.status] > RANK[theirs.status]) return mine; // the read model lags the events
    if (mine.status === "running" && theirs.status === "running" && mine.progress) {
      // Progress events reach the page before the read model has them.
      return Object.assign({}, theirs, { progress: mine.progress });
    }
    return theirs;
  }

  const EVENT_STATUS = {
    "job.queued": "queued", "job.requeued": "queued", "job.sent": "sent", "job.started": "running",
    "job.completed": "completed", "job.warning": "warning", "job.failed": "failed", "job.cancelled": "cancelled",
  };
  const SEEN_MS = 120000;

  /**
   * The latest transition event seen per job, laid over answers from the api: the read
   * model trails the events by a moment, and an answer must not undo what a page saw.
   */
  class Seen {
    constructor() { this.events = new Map(); }

    note(env) {
      const status = EVENT_STATUS[env.type];
      if (!status || !env.job_id) return;
      const prev = this.events.get(env.job_id);
      if (!prev || RANK[status] >= RANK[EVENT_STATUS[prev.type]]) this.events.set(env.job_id, Object.assign({ _t: Date.now() }, env));
      for (const [id, e] of this.events) if (Date.now() - e._t > SEEN_MS) this.events.delete(id);
    }

    /** Apply the seen event to `job` when the answer is behind it; true when it was. */
    overlay(job) {
      const env = this.events.get(job.id);
      if (!env || RANK[EVENT_STATUS[env.type]] <= RANK[job.status]) return false;
      applyEvent(job, env);
      return true;
    }
  }

  const jobUrl = (id) => `/queue/${encodeURIComponent(id)}`;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  /** A glyph per job type, shown before its name (CSS draws data-icon), and what the type does. */
  const TYPES = {
    backup: ["⬆", "backs up the plan's paths into the repository"],
    restore: ["⬇", "extracts an archive"],
    restore_check: ["⇣", "extracts an archive to nowhere, to prove it restores"],
    check: ["✓", "verifies the repository and its archives"],
    prune: ["✂", "deletes archives the plan's retention no longer keeps"],
    compact: ["▣", "frees the space of deleted archives"],
    delete_archive: ["✕", "deletes one archive"],
    init: ["✚", "creates the repository"],
    ping: ["⇄", "asks the agent for its facts"],
    restore_pg: ["⛁", "restores a PostgreSQL dump from an archive"],
    restore_mysql: ["⛁", "restores a MySQL/MariaDB dump from an archive"],
    plugin_test: ["⚙", "checks a plan's databases, scripts and repository without a backup"],
    s3_sync: ["☁", "mirrors the repository to an rclone remote"],
    package_install: ["⊕", "installs system packages on the agent"],
    update_borg: ["⟳", "installs a borg version on the agent"],
    update_agent: ["↻", "installs a borgflow version on the agent and restarts its executor"],
  };
  function typeIcon(node, type) {
    const [icon, does] = TYPES[type] || ["•", type];
    node.dataset.icon = icon;
    node.title = `${type}: ${does}`;
    return node;
  }

  captureToken();

  return {
    TERMINAL, RANK, ApiError, api, socket, requireToken, setLive, notice, token,
    duration, bytes, ago, when, count, runTime, subject, actionText, setBar, badge,
    applyEvent, fresher, jobUrl, el, Seen, typeIcon, fillTo,
  };
})();
