/* The Agents page: each executor's health, versions, slots and jobs, with ping and update
   actions. Live over WS /api/events: a heartbeat updates its card in place; job events that
   change what an agent runs or holds re-read the list once per second at most. */
"use strict";

(() => {
  const { el } = BF;
  const DASH = "—";
  const RUNNING_SHOWN = 10;
  // actions: job id -> the node saying how the job an action submitted is doing
  const state = { agents: new Map(), timer: null, actions: new Map(), seen: new BF.Seen() };

  function soon(delay = 1000) {
    if (state.timer !== null) return;
    state.timer = setTimeout(() => {
      state.timer = null;
      load();
    }, delay);
  }

  async function load() {
    try {
      const list = await BF.api("/api/agents");
      state.agents = new Map(list.items.map((a) => [a.name, a]));
      render();
    } catch (e) {
      if (e.status !== 401) BF.notice(`Could not load the agents: ${e.message}`);
    }
  }

  // ------------------------------------------------------------------ rendering

  function render() {
    const section = document.getElementById("agents");
    const box = section.querySelector(".agent-cards");
    const agents = [...state.agents.values()].sort((a, b) => a.name.localeCompare(b.name));
    const existing = new Map([...box.children].map((c) => [c.dataset.name, c]));
    agents.forEach((agent, i) => {
      const card = existing.get(agent.name) || agentCard(agent);
      existing.delete(agent.name);
      if (box.children[i] !== card) box.insertBefore(card, box.children[i] || null);
      update(card, agent);
    });
    for (const card of existing.values()) card.remove();
    section.querySelector(".count").textContent = agents.length ? `(${agents.length})` : "";
    section.querySelector(".empty").hidden = agents.length > 0;
  }

  function agentCard(agent) {
    const fact = (key, label) => [el("dt", { text: label }), el("dd", { "data-fact": key, text: DASH })];
    const versionForm = (type, label, placeholder, required) => el("form", { class: "inline-form", "data-action": type },
      el("input", { name: "version", placeholder, "aria-label": `${label}: version`, required: required || null,
        autocomplete: "off" }),
      el("button", { type: "submit", "data-testid": `action-${type}-${agent.name}`, text: label }),
      el("span", { class: "field-error", "data-error-for": "options.version", role: "alert" }));
    const card = el("article", { class: "agent-card", "data-testid": `agent-${agent.name}`, "data-name": agent.name },
      el("h3", {}, el("span", { class: "name", text: agent.name }), " ", el("span", { class: "badge state" })),
      el("p", { class: "warning", "data-testid": `agent-warning-${agent.name}`, hidden: true }),
      el("dl", { class: "facts" },
        ...fact("seen", "Last seen"), ...fact("host", "Host"), ...fact("borg", "borg"),
        ...fact("borgflow", "borgflow"), ...fact("slots", "Slots in use"), ...fact("running", "Running"),
        ...fact("queued", "Queued for it")),
      el("div", { class: "agent-actions" },
        el("button", { type: "button", "data-testid": `action-ping-${agent.name}`, text: "Ping",
          onclick: (e) => submit(card, { type: "ping", agent: agent.name }, e.target) }),
        versionForm("update_borg", "Update borg", "borg version, e.g. 1.4.1", true),
        versionForm("update_agent", "Update agent", "borgflow version (optional)", false)),
      el("p", { class: "action-result muted", role: "status" }));
    for (const form of card.querySelectorAll("form")) {
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        const version = form.elements.version.value.trim();
        const body = { type: form.dataset.action, agent: card.dataset.name, options: version ? { version } : {} };
        submit(card, body, form);
      });
    }
    return card;
  }

  const isOnline = (a) => a.online && Date.now() - Date.parse(a.last_seen) < 3 * a.interval_s * 1000 + 2000;

  function update(card, a) {
    const online = isOnline(a);
    card.dataset.online = String(online);
    const state_ = card.querySelector(".state");
    state_.textContent = online ? "online" : "offline";
    state_.className = `badge state ${online ? "status-completed" : "status-failed"}`;
    const set = (key, value) => {
      const node = card.querySelector(`[data-fact="${key}"]`);
      if (typeof value === "string") node.textContent = value;
      else node.replaceChildren(...value);
    };
    set("seen", `${BF.ago(a.last_seen)} (${BF.when(a.last_seen)})`);
    set("host", a.host || DASH);
    set("borg", a.borg_version || DASH);
    set("borgflow", a.borgflow_version || DASH);
    set("slots", `${a.running.length} of ${a.slots}`);
    // The first few as links; a busy agent's whole list is on the Queue page (agent:NAME).
    const shown = a.running.slice(0, RUNNING_SHOWN);
    const more = a.running.length - shown.length;
    set("running", a.running.length
      ? [...shown.flatMap((id, i) => [i ? ", " : "", el("a", { href: BF.jobUrl(id), text: id })]),
        more > 0 ? el("a", { href: `/queue?q=${encodeURIComponent(`agent:${a.name} status:running`)}`, text: ` and ${more} more` }) : ""]
      : "nothing");
    set("queued", BF.count(a.queued || 0));
    const warning = card.querySelector(".warning");
    const stuck = !online && (a.queued || 0) > 0;
    // Jobs are bound to their repository's agent: an offline agent is the only one that can run them.
    warning.textContent = stuck
      ? `Offline, and the only agent that can run its ${a.queued} queued job${a.queued === 1 ? "" : "s"}: they wait until it is back.`
      : "";
    warning.hidden = !stuck;
    card.classList.toggle("offline", !online);
  }

  // ------------------------------------------------------------------ actions

  async function submit(card, body, origin) {
    const result = card.querySelector(".action-result");
    for (const node of card.querySelectorAll(".field-error")) node.textContent = "";
    const button = origin.tagName === "FORM" ? origin.querySelector("button") : origin;
    button.disabled = true;
    try {
      const job = await BF.api("/api/jobs", { method: "POST", body });
      state.seen.overlay(job); // a quick job (a ping) may have finished before the answer came
      result.replaceChildren(`${body.type}: job `, el("a", { href: BF.jobUrl(job.id), text: job.id }),
        " ", el("span", { class: `badge status-${job.status}`, "data-job": job.id, text: job.status }));
      if (job.error) result.append(` ${job.error.message}${job.error.hint ? " — " + job.error.hint : ""}`);
      state.actions.set(job.id, result);
      if (origin.tagName === "FORM") origin.reset();
    } catch (e) {
      if (e.status === 401) return;
      // Beside the field the api names (options.version), else under the actions.
      const slot = origin.tagName === "FORM" && e.field ? origin.querySelector(".field-error") : null;
      if (slot) slot.textContent = e.message;
      else result.textContent = `${body.type} refused: ${e.message}`;
    } finally {
      button.disabled = false;
    }
  }

  const STATUS = {
    "job.sent": "sent", "job.started": "running", "job.completed": "completed", "job.warning": "warning",
    "job.failed": "failed", "job.cancelled": "cancelled",
  };

  // ------------------------------------------------------------------ live

  function onEvent(env) {
    const d = env.data || {};
    if (env.type === "agent.heartbeat") {
      const known = state.agents.get(d.agent);
      if (!known) return soon(200);
      const ranBefore = known.running.join(",");
      Object.assign(known, {
        online: true, last_seen: env.at, host: d.host || known.host, borg_version: d.borg_version,
        borgflow_version: d.borgflow_version || known.borgflow_version, slots: d.slots, interval_s: d.interval_s,
      });
      const card = document.querySelector(`[data-testid="agent-${CSS.escape(d.agent)}"]`);
      if (card) update(card, known);
      if ((d.running || []).join(",") !== ranBefore) soon(); // the list says which of them this token sees
      return;
    }
    if (env.type === "agent.offline" || env.type === "agent.online") {
      const known = state.agents.get(d.agent);
      if (known) {
        known.online = env.type === "agent.online";
        if (d.last_seen) known.last_seen = d.last_seen;
        render();
      }
      return soon();
    }
    if (!env.job_id || env.type === "job.progress" || env.type === "job.log") return;
    state.seen.note(env);
    const result = state.actions.get(env.job_id);
    if (result && STATUS[env.type]) {
      const b = result.querySelector(`[data-job="${CSS.escape(env.job_id)}"]`);
      if (b) { b.textContent = STATUS[env.type]; b.className = `badge status-${STATUS[env.type]}`; }
      if (env.type === "job.failed" && d.error) result.append(` ${d.error.message}${d.error.hint ? " — " + d.error.hint : ""}`);
    }
    soon(); // what runs and what waits changed on some agent
  }

  function tick() {
    for (const a of state.agents.values()) {
      const card = document.querySelector(`[data-testid="agent-${CSS.escape(a.name)}"]`);
      if (card) update(card, a);
    }
  }

  BF.requireToken(() => {
    setInterval(tick, 2000); // "last seen" and an agent that stopped beating, without a read
    BF.socket("/api/events", {}, {
      onOpen: () => {
        BF.setLive("live", "live");
        load(); // subscribed first, then read: nothing falls between
      },
      onMessage: onEvent,
      onClose: () => BF.setLive("offline", "reconnecting…"),
    });
  });
})();
