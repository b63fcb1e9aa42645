/* Small SVG charts drawn by hand: no library, no network, nothing but the DOM. */
"use strict";

const BFChart = (() => {
  const NS = "http://www.w3.org/2000/svg";
  // Colours per series: distinct in light and dark themes.
  const PALETTE = ["#2f6fdf", "#1f8a4c", "#c06a00", "#9b3fc4", "#c62a2a", "#00838f", "#7a6a00", "#d0457f"];

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "text") node.textContent = v;
      else node.setAttribute(k, String(v));
    }
    for (const c of children) if (c) node.append(c);
    return node;
  }

  /** A readable upper bound for an axis: 1, 2 or 5 times a power of ten. */
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  /**
   * Lines over categories: `labels` along x (e.g. days), each series {name, color, dashed,
   * values: [number|null per label]}. Gaps (null) break a line. `format` labels the y axis.
   */
  function lines(container, { labels, series, format }) {
    const W = 560, H = 220, L = 64, R = 12, T = 12, B = 28;
    const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values.filter((v) => v !== null))));
    const x = (i) => L + (labels.length <= 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (labels.length - 1));
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "line-chart", role: "img" });
    // Steps a person reads at a glance: fifths of 5, quarters of 1 and 2 (0.25, 0.5, …).
    const steps = String(max).replace(/[0.]/g, "").startsWith("5") ? 5 : 4;
    for (let k = 0; k <= steps; k++) {
      const v = (max * k) / steps;
      root.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
      root.append(svg("text", { x: L - 6, y: y(v) + 4, class: "axis", "text-anchor": "end", text: format(v) }));
    }
    // Counted back from the last label (the latest day), so it is always there and none overlap.
    const every = Math.max(1, Math.ceil(labels.length / 7));
    const last = labels.length - 1;
    labels.forEach((label, i) => {
      if ((last - i) % every !== 0) return;
      const anchor = i === last && labels.length > 1 ? "end" : i === 0 ? "start" : "middle";
      root.append(svg("text", { x: x(i), y: H - 8, class: "axis", "text-anchor": anchor, text: label }));
    });
    for (const s of series) {
      let d = "";
      s.values.forEach((v, i) => {
        if (v === null) return;
        const prev = i > 0 ? s.values[i - 1] : null;
        d += `${prev === null ? "M" : "L"}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
      });
      if (!d) continue;
      const path = svg("path", { d, class: `series${s.dashed ? " dashed" : ""}`, stroke: s.color, fill: "none" });
      path.append(svg("title", { text: s.name }));
      root.append(path);
      s.values.forEach((v, i) => {
        if (v === null) return;
        const dot = svg("circle", { cx: x(i), cy: y(v), r: 2.6, fill: s.color });
        dot.append(svg("title", { text: `${s.name}, ${labels[i]}: ${format(v)}` }));
        root.append(dot);
      });
    }
    container.replaceChildren(root);
  }

  return { svg, lines, niceMax, PALETTE };
})();
