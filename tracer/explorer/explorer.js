// tracer explore: the page's script. Plain JavaScript drawing on canvas; it reads the JSON in
// #tracer-data (tracer/explorer/data.py writes it) and makes no network request.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("tracer-data").textContent);
  const LOG_SPAN = 100; // a chart goes logarithmic when its positive values span more than two decades
  const SPEEDS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]; // updates per second
  const ARROWS = { g: "#d62728", v: "#ff7f0e", step: "#ffffff", s: "#17becf" };
  // An arrow is drawn at most this fraction of the plane's side; a longer one (RMSprop's first step, a
  // gradient before the loss settles) is drawn that long, with a break across its shaft and "×k", k how
  // much longer it is: a page-wide scale stays readable for the typical arrows and honest for the rest.
  const LONGEST_ARROW = 0.4;
  const SHORTENED_NOTE = `; an arrow longer than ${LONGEST_ARROW * 100}% of the plane is drawn shortened: a break across it, ×k how much longer`;
  const DASHBOARD = [ // the per-tensor quantities of the dashboard figure (tracer/render/plots.py)
    ["theta_norm", "|θ|"], ["g_norm", "|g|"], ["d_norm", "|d|"],
    ["displacement", "|Δθ| per update"], ["cos_d_prev", "cos(d, previous d)"], ["cos_g_d", "cos(g, d)"],
  ];
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else if (k === "style") node.style.cssText = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child);
    return node;
  };

  // ------------------------------------------------------------------ numbers

  function decode(column) {
    // base64 of a little-endian array, widened exactly to float64
    const text = atob(column.data);
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    const kind = { i4: Int32Array, f4: Float32Array, f8: Float64Array }[column.type];
    return Float64Array.from(new kind(bytes.buffer));
  }

  // Python's repr of a float: the shortest digits that read back to the same float64 (the trace's
  // own text), fixed notation for exponents -4..15, else d.ddde-XX.
  function pyRepr(x) {
    if (Number.isNaN(x)) return "nan";
    if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
    if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
    const [mantissa, exponentText] = x.toExponential().split("e");
    const sign = x < 0 ? "-" : "";
    const digits = mantissa.replace("-", "").replace(".", "");
    const e = parseInt(exponentText, 10);
    if (e >= -4 && e < 16) {
      if (e < 0) return sign + "0." + "0".repeat(-e - 1) + digits;
      return sign + digits.slice(0, e + 1).padEnd(e + 1, "0") + "." + (digits.slice(e + 1) || "0");
    }
    const m = digits.length > 1 ? digits[0] + "." + digits.slice(1) : digits;
    return sign + m + "e" + (e < 0 ? "-" : "+") + String(Math.abs(e)).padStart(2, "0");
  }
  const cellText = (values, type, i) =>
    i < 0 || Number.isNaN(values[i]) ? "" : type === "i4" ? String(values[i]) : pyRepr(values[i]);
  function short(v) {
    if (!Number.isFinite(v)) return String(v);
    if (v === 0) return "0";
    const a = Math.abs(v);
    return a >= 1e4 || a < 1e-3 ? v.toExponential(1).replace("e+", "e") : String(+v.toPrecision(3));
  }
  // the last index i with sorted[i] <= value, -1 when none
  function floorIndex(sorted, value) {
    let lo = 0, hi = sorted.length - 1, found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (sorted[mid] <= value) { found = mid; lo = mid + 1; } else hi = mid - 1;
    }
    return found;
  }

  // --------------------------------------------------------------------- runs

  const runs = DATA.runs.map((run, r) => {
    const cols = {}, types = {};
    for (const [name, column] of Object.entries(run.columns)) { cols[name] = decode(column); types[name] = column.type; }
    return Object.assign({}, run, { index: r, cols, types, updates: cols.update, visible: true });
  });
  // The timeline: every update any run holds, in order; every run is shown at its last row at or
  // before the current update, so runs stay synchronised by update.
  const timeline = Float64Array.from(new Set(runs.flatMap((run) => Array.from(run.updates)))).sort();
  const state = { index: 0, playing: false, speed: 50, tensor: null, last: 0, carry: 0 };
  const rowOf = (run, update) => floorIndex(run.updates, update);
  const currentUpdate = () => timeline[state.index];
  const tensors = [...new Set(runs.flatMap((run) => run.tensors))];
  state.tensor = tensors[0] || null;
  const hasLoss = runs.some((run) => "loss" in run.cols);
  state.speed = SPEEDS.find((s) => timeline.length / s <= 30) || SPEEDS[SPEEDS.length - 1]; // ~30 s at most

  // ------------------------------------------------------------------- canvas

  function sizeCanvas(canvas, width, height) {
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio); canvas.height = Math.round(height * ratio);
    canvas.style.width = width + "px"; canvas.style.height = height + "px";
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return ctx;
  }

  function niceTicks(lo, hi, count) {
    const span = hi - lo;
    if (!(span > 0)) return [lo];
    const raw = span / count, power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
    const ticks = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
    return ticks;
  }

  const tooltip = $("tooltip");
  function showTooltip(event, text) {
    tooltip.textContent = text;
    tooltip.style.display = "block";
    const x = Math.min(event.clientX + 14, window.innerWidth - tooltip.offsetWidth - 4);
    const y = Math.min(event.clientY + 14, window.innerHeight - tooltip.offsetHeight - 4);
    tooltip.style.left = x + "px"; tooltip.style.top = y + "px";
  }
  const hideTooltip = () => { tooltip.style.display = "none"; };

  // ------------------------------------------------------------------- charts

  // A chart of one quantity against the update: every visible run's series, a cursor at the
  // current update, hover for the values, click to jump there.
  class Chart {
    constructor(parent, title, series, options = {}) {
      this.title = title; this.series = series; this.height = options.height || 118;
      this.fixed = options.range || null;
      this.base = el("canvas"); this.overlay = el("canvas");
      this.card = el("div", { class: "card chart" }, el("div", { class: "stack" }, this.base, this.overlay));
      parent.append(this.card);
      this.overlay.addEventListener("mousemove", (e) => this.hover(e));
      this.overlay.addEventListener("mouseleave", () => { hideTooltip(); this.hovered = null; this.drawCursor(); });
      this.overlay.addEventListener("click", (e) => goToUpdate(this.updateAt(e)));
    }
    lines() { return runs.filter((run) => run.visible).map((run) => [run, this.series(run)]).filter(([, ys]) => ys); }
    layout() {
      const width = this.card.clientWidth - 16;
      this.width = width;
      this.ctx = sizeCanvas(this.base, width, this.height);
      this.octx = sizeCanvas(this.overlay, width, this.height);
      this.box = { left: 58, right: width - 16, top: 16, bottom: this.height - 18 };
      this.drawBase();
    }
    scaleY() {
      if (this.fixed) return { lo: this.fixed[0], hi: this.fixed[1], log: false };
      let lo = Infinity, hi = -Infinity, positive = true;
      for (const [, ys] of this.lines()) for (const v of ys) if (Number.isFinite(v)) {
        if (v < lo) lo = v; if (v > hi) hi = v; if (v <= 0) positive = false;
      }
      if (lo === Infinity) return { lo: 0, hi: 1, log: false };
      if (positive && hi / lo > LOG_SPAN) return { lo: Math.log10(lo), hi: Math.log10(hi), log: true };
      if (hi === lo) { lo -= Math.abs(lo) * 0.5 || 0.5; hi += Math.abs(hi) * 0.5 || 0.5; }
      const pad = (hi - lo) * 0.04;
      return { lo: lo - pad, hi: hi + pad, log: false };
    }
    x(update) { const b = this.box, a = timeline[0], z = timeline[timeline.length - 1]; return b.left + (z > a ? (update - a) / (z - a) : 0) * (b.right - b.left); }
    y(v) {
      const b = this.box, s = this.yscale, value = s.log ? Math.log10(v) : v;
      return b.bottom - (value - s.lo) / (s.hi - s.lo) * (b.bottom - b.top);
    }
    updateAt(event) {
      const rect = this.overlay.getBoundingClientRect(), b = this.box;
      const f = Math.min(1, Math.max(0, (event.clientX - rect.left - b.left) / (b.right - b.left)));
      return timeline[0] + f * (timeline[timeline.length - 1] - timeline[0]);
    }
    drawBase() {
      const ctx = this.ctx, b = this.box;
      this.yscale = this.scaleY();
      ctx.clearRect(0, 0, this.width, this.height);
      ctx.font = "11px system-ui, sans-serif"; ctx.fillStyle = "#222"; ctx.textBaseline = "top";
      ctx.fillText(this.title + (this.yscale.log ? "  (log scale)" : ""), b.left, 1);
      ctx.strokeStyle = "#ccc"; ctx.lineWidth = 1; ctx.strokeRect(b.left, b.top, b.right - b.left, b.bottom - b.top);
      ctx.fillStyle = "#666"; ctx.textBaseline = "middle"; ctx.textAlign = "right";
      const s = this.yscale;
      const ticks = s.log ? niceTicks(Math.floor(s.lo), Math.ceil(s.hi), 4).filter((t) => t >= s.lo && t <= s.hi && Number.isInteger(t)).map((t) => Math.pow(10, t))
        : niceTicks(s.lo, s.hi, 3);
      for (const t of ticks) { const y = this.y(t); ctx.fillText(short(t), b.left - 4, y); ctx.fillRect(b.left - 3, y, 3, 1); }
      ctx.textAlign = "center"; ctx.textBaseline = "top";
      for (const t of niceTicks(timeline[0], timeline[timeline.length - 1], 5)) {
        const x = this.x(t); ctx.fillText(short(t), x, b.bottom + 3); ctx.fillRect(x, b.bottom, 1, 3);
      }
      ctx.save(); ctx.beginPath(); ctx.rect(b.left, b.top, b.right - b.left, b.bottom - b.top); ctx.clip();
      for (const [run, ys] of this.lines()) {
        ctx.strokeStyle = run.color; ctx.lineWidth = 1.2; ctx.beginPath();
        let pen = false;
        for (let i = 0; i < ys.length; i++) {
          const ok = Number.isFinite(ys[i]) && (!s.log || ys[i] > 0);
          if (!ok) { pen = false; continue; }
          const x = this.x(run.updates[i]), y = this.y(ys[i]);
          if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
          pen = true;
        }
        ctx.stroke();
      }
      ctx.restore();
      this.drawCursor();
    }
    drawCursor() {
      const ctx = this.octx, b = this.box;
      if (!ctx) return;
      ctx.clearRect(0, 0, this.width, this.height);
      const marks = [[currentUpdate(), "#000", []]];
      if (this.hovered != null) marks.push([this.hovered, "#888", [3, 3]]);
      for (const [update, color, dash] of marks) {
        const x = this.x(update);
        ctx.strokeStyle = color; ctx.setLineDash(dash); ctx.lineWidth = 1;
        ctx.beginPath(); ctx.moveTo(x, b.top); ctx.lineTo(x, b.bottom); ctx.stroke();
      }
      ctx.setLineDash([]);
      for (const [run, ys] of this.lines()) {
        const i = rowOf(run, currentUpdate());
        if (i < 0 || !Number.isFinite(ys[i]) || (this.yscale.log && ys[i] <= 0)) continue;
        ctx.fillStyle = run.color; ctx.strokeStyle = "#000";
        ctx.beginPath(); ctx.arc(this.x(run.updates[i]), this.y(ys[i]), 3.5, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
      }
    }
    hover(event) {
      const update = this.updateAt(event);
      const lines = [`${this.title}`];
      let shown = null;
      for (const [run, ys] of this.lines()) {
        const i = rowOf(run, update);
        if (i < 0) continue;
        shown = run.updates[i];
        lines.push(`${run.label}  update ${run.updates[i]}: ${pyRepr(ys[i])}`);
      }
      this.hovered = shown == null ? null : update;
      this.drawCursor();
      showTooltip(event, lines.join("\n") + "\n(click: go to this update)");
    }
  }

  // -------------------------------------------------------------------- plane

  // A plane of two directions: a loss image (or a plain background), each run's path, and at the
  // current update the arrows at its point. `spec`: title, xlim, ylim, axis_labels, contour,
  // minimum, legend ([colour, text, outlined]), note. One source per run: `updates` (the update
  // each point is the start of, ascending), `x`, `y`, `arrows` ([colour, dx, dy], scaled),
  // `whiskers` ([hx, hy] or null), `describe(i)` (the hover's lines).
  class Plane {
    constructor(parent, spec, sources) {
      this.p = spec; this.sources = sources;
      this.base = el("canvas"); this.overlay = el("canvas");
      const legend = el("div", { class: "plane-legend" });
      this.card = el("div", { class: "card plane-view" }, el("div", { class: "card-title" }, spec.title),
        el("div", { class: "stack" }, this.base, this.overlay), legend);
      parent.append(this.card);
      for (const [color, text, outlined] of spec.legend) {
        const key = el("span", { class: "arrow-key", style: `background:${color};${outlined ? "outline:1px solid #000" : ""}` });
        legend.append(el("span", {}, key, text));
      }
      if (spec.note) legend.append(el("span", { class: "small" }, spec.note));
      this.image = null;
      this.overlay.addEventListener("mousemove", (e) => this.hover(e));
      this.overlay.addEventListener("mouseleave", hideTooltip);
      this.overlay.addEventListener("click", (e) => { const hit = this.nearest(e); if (hit) goToUpdate(hit.source.updates[hit.i]); });
    }
    async load() {
      if (!this.p.contour) return;
      const text = atob(this.p.contour.png), bytes = new Uint8Array(text.length);
      for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
      this.image = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
    }
    layout() {
      const width = this.card.clientWidth - 16;
      const plot = Math.min(width - 130, 560);
      this.width = width; this.height = plot + 40;
      this.box = { left: 52, right: 52 + plot, top: 8, bottom: 8 + plot };
      this.ctx = sizeCanvas(this.base, width, this.height);
      this.octx = sizeCanvas(this.overlay, width, this.height);
      this.drawBase();
    }
    x(v) { const b = this.box, [a, z] = this.p.xlim; return b.left + (v - a) / (z - a) * (b.right - b.left); }
    y(v) { const b = this.box, [a, z] = this.p.ylim; return b.bottom - (v - a) / (z - a) * (b.bottom - b.top); }
    shown() { return this.sources.filter((source) => source.run.visible); }
    clip(ctx) { const b = this.box; ctx.save(); ctx.beginPath(); ctx.rect(b.left, b.top, b.right - b.left, b.bottom - b.top); ctx.clip(); }
    drawBase() {
      const ctx = this.ctx, b = this.box, p = this.p;
      ctx.clearRect(0, 0, this.width, this.height);
      ctx.fillStyle = "#f4f4f4"; ctx.fillRect(b.left, b.top, b.right - b.left, b.bottom - b.top);
      if (this.image) {
        const [x0, x1, y0, y1] = p.contour.extent;
        this.clip(ctx);
        ctx.imageSmoothingEnabled = false;
        ctx.drawImage(this.image, this.x(x0), this.y(y1), this.x(x1) - this.x(x0), this.y(y0) - this.y(y1));
        ctx.restore();
        this.colorBar(ctx);
      }
      ctx.strokeStyle = "#999"; ctx.strokeRect(b.left, b.top, b.right - b.left, b.bottom - b.top);
      ctx.font = "11px system-ui, sans-serif"; ctx.fillStyle = "#444";
      ctx.textAlign = "center"; ctx.textBaseline = "top";
      for (const t of niceTicks(p.xlim[0], p.xlim[1], 5)) { ctx.fillText(short(t), this.x(t), b.bottom + 3); ctx.fillRect(this.x(t), b.bottom, 1, 3); }
      ctx.fillText(p.axis_labels[0], (b.left + b.right) / 2, b.bottom + 17);
      ctx.textAlign = "right"; ctx.textBaseline = "middle";
      for (const t of niceTicks(p.ylim[0], p.ylim[1], 5)) { ctx.fillText(short(t), b.left - 4, this.y(t)); ctx.fillRect(b.left - 3, this.y(t), 3, 1); }
      ctx.save(); ctx.translate(12, (b.top + b.bottom) / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = "center";
      ctx.fillText(p.axis_labels[1], 0, 0); ctx.restore();
      this.clip(ctx);
      for (const source of this.shown()) { // the whole path, faint: where the run is going
        ctx.strokeStyle = source.run.color; ctx.globalAlpha = 0.35; ctx.lineWidth = 1.2;
        this.tracePath(ctx, source, source.x.length - 1); ctx.stroke();
        ctx.globalAlpha = 1;
        ctx.fillStyle = "#fff"; ctx.strokeStyle = "#000";
        ctx.beginPath(); ctx.arc(this.x(source.x[0]), this.y(source.y[0]), 5, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
      }
      if (p.minimum) this.star(ctx, this.x(p.minimum[0]), this.y(p.minimum[1]));
      ctx.restore();
      this.drawCurrent();
    }
    colorBar(ctx) {
      const b = this.box, c = this.p.contour, left = b.right + 14, w = 12, n = c.colors.length;
      const h = (b.bottom - b.top) / n;
      c.colors.forEach((color, k) => { ctx.fillStyle = color; ctx.fillRect(left, b.bottom - (k + 1) * h, w, h + 0.5); });
      ctx.strokeStyle = "#999"; ctx.strokeRect(left, b.top, w, b.bottom - b.top);
      ctx.fillStyle = "#444"; ctx.font = "10px system-ui, sans-serif"; ctx.textAlign = "left"; ctx.textBaseline = "middle";
      const every = Math.max(1, Math.round(n / 6));
      for (let k = 0; k <= n; k += every) ctx.fillText(short(c.levels[k]), left + w + 3, b.bottom - k * h);
      ctx.save(); ctx.translate(left + w + 48, (b.top + b.bottom) / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = "center";
      ctx.fillText("loss", 0, 0); ctx.restore();
    }
    star(ctx, x, y) {
      ctx.beginPath();
      for (let k = 0; k < 10; k++) {
        const r = k % 2 ? 3.2 : 8, a = -Math.PI / 2 + k * Math.PI / 5;
        ctx.lineTo(x + r * Math.cos(a), y + r * Math.sin(a));
      }
      ctx.closePath(); ctx.fillStyle = "#fff"; ctx.strokeStyle = "#000"; ctx.fill(); ctx.stroke();
    }
    tracePath(ctx, source, last) {
      ctx.beginPath();
      let pen = false;
      for (let i = 0; i <= last; i++) {
        const px = source.x[i], py = source.y[i];
        if (!Number.isFinite(px) || !Number.isFinite(py)) { pen = false; continue; }
        if (pen) ctx.lineTo(this.x(px), this.y(py)); else ctx.moveTo(this.x(px), this.y(py));
        pen = true;
      }
    }
    arrow(ctx, x, y, dx, dy, color) {
      if (!Number.isFinite(dx) || !Number.isFinite(dy)) return;
      const x0 = this.x(x), y0 = this.y(y);
      let x1 = this.x(x + dx), y1 = this.y(y + dy), length = Math.hypot(x1 - x0, y1 - y0);
      if (length < 0.5) return;
      const longest = LONGEST_ARROW * (this.box.right - this.box.left), factor = length / longest;
      if (factor > 1) {
        x1 = x0 + (x1 - x0) / factor; y1 = y0 + (y1 - y0) / factor; length = longest;
        this.shortened.push({ color, factor });
      }
      const head = Math.min(9, length * 0.45), angle = Math.atan2(y1 - y0, x1 - x0);
      for (const [width, stroke] of [[4.2, "#000"], [2.2, color]]) { // a dark edge so white shows on yellow
        ctx.lineWidth = width; ctx.strokeStyle = stroke; ctx.beginPath(); ctx.moveTo(x0, y0);
        ctx.lineTo(x1 - Math.cos(angle) * head * 0.6, y1 - Math.sin(angle) * head * 0.6); ctx.stroke();
      }
      ctx.fillStyle = color; ctx.strokeStyle = "#000"; ctx.lineWidth = 1; ctx.beginPath(); ctx.moveTo(x1, y1);
      ctx.lineTo(x1 - head * Math.cos(angle - 0.4), y1 - head * Math.sin(angle - 0.4));
      ctx.lineTo(x1 - head * Math.cos(angle + 0.4), y1 - head * Math.sin(angle + 0.4));
      ctx.closePath(); ctx.fill(); ctx.stroke();
      if (factor > 1) this.breakMark(ctx, x0, y0, x1, y1, angle, factor);
    }
    breakMark(ctx, x0, y0, x1, y1, angle, factor) {
      // Two short strokes across the shaft's middle, and the factor beside the head.
      const mx = (x0 + x1) / 2, my = (y0 + y1) / 2, nx = -Math.sin(angle) * 6, ny = Math.cos(angle) * 6;
      const ax = Math.cos(angle) * 3, ay = Math.sin(angle) * 3;
      ctx.lineWidth = 2; ctx.strokeStyle = "#000"; ctx.beginPath();
      for (const k of [-1, 1]) { ctx.moveTo(mx + k * ax - nx + ay, my + k * ay - ny - ax); ctx.lineTo(mx + k * ax + nx + ay, my + k * ay + ny - ax); }
      ctx.stroke();
      ctx.font = "bold 11px system-ui, sans-serif"; ctx.textAlign = "left"; ctx.textBaseline = "bottom";
      ctx.lineWidth = 3; ctx.strokeStyle = "#fff"; ctx.strokeText(`×${short(factor)}`, x1 + 5, y1 - 3);
      ctx.fillStyle = "#000"; ctx.fillText(`×${short(factor)}`, x1 + 5, y1 - 3);
    }
    drawCurrent() {
      const ctx = this.octx;
      if (!ctx) return;
      this.shortened = [];
      ctx.clearRect(0, 0, this.width, this.height);
      this.clip(ctx);
      for (const source of this.shown()) {
        const i = floorIndex(source.updates, currentUpdate());
        if (i < 0) continue;
        const color = source.run.color, x = source.x[i], y = source.y[i];
        ctx.strokeStyle = color; ctx.lineWidth = 2.2; this.tracePath(ctx, source, i); ctx.stroke();
        if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
        if (source.whiskers) { // +-sqrt(s) along each axis
          const hx = source.whiskers[0][i], hy = source.whiskers[1][i];
          ctx.strokeStyle = ARROWS.s; ctx.lineWidth = 2.2; ctx.beginPath();
          if (Number.isFinite(hx)) { ctx.moveTo(this.x(x - hx), this.y(y)); ctx.lineTo(this.x(x + hx), this.y(y)); }
          if (Number.isFinite(hy)) { ctx.moveTo(this.x(x), this.y(y - hy)); ctx.lineTo(this.x(x), this.y(y + hy)); }
          ctx.stroke();
        }
        for (const [arrowColor, dx, dy] of source.arrows) this.arrow(ctx, x, y, dx[i], dy[i], arrowColor);
        ctx.fillStyle = color; ctx.strokeStyle = "#000"; ctx.lineWidth = 1.2;
        ctx.beginPath(); ctx.arc(this.x(x), this.y(y), 5.5, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
        if (source.diverged && i === source.lastRow) this.cross(ctx, this.x(x), this.y(y), color);
      }
      ctx.restore();
    }
    cross(ctx, x, y, color) {
      ctx.strokeStyle = "#000"; ctx.lineWidth = 5; ctx.beginPath();
      ctx.moveTo(x - 7, y - 7); ctx.lineTo(x + 7, y + 7); ctx.moveTo(x + 7, y - 7); ctx.lineTo(x - 7, y + 7); ctx.stroke();
      ctx.strokeStyle = color; ctx.lineWidth = 3; ctx.stroke();
    }
    nearest(event) {
      const rect = this.overlay.getBoundingClientRect(), mx = event.clientX - rect.left, my = event.clientY - rect.top;
      let best = null, bestDistance = 10; // pixels
      for (const source of this.shown()) for (let i = 0; i < source.updates.length; i++) {
        const dist = Math.hypot(this.x(source.x[i]) - mx, this.y(source.y[i]) - my);
        if (dist < bestDistance) { bestDistance = dist; best = { source, i }; }
      }
      return best;
    }
    hover(event) {
      const hit = this.nearest(event);
      if (!hit) { hideTooltip(); return; }
      showTooltip(event, [hit.source.run.label, ...hit.source.describe(hit.i), "(click: go to this update)"].join("\n"));
    }
  }

  // The learning rate of a coordinate's parameter group (lr, or lr[k] with k its group).
  function lrOf(run, coordinate) {
    if (run.lr_columns.length === 1) return run.cols[run.lr_columns[0]];
    const group = run.groups[coordinate.split("[")[0]] || 0;
    return run.cols[`lr[${group}]`] || run.cols[run.lr_columns[0]];
  }
  const scaleText = (s) => (s ? `×${short(s)}` : "(none)");
  const times = (values, factor) => Float64Array.from(values, (v) => v * factor);

  // The trace's own plane: two fully traced coordinates, the point before each update, then the
  // point after the last; -g, -v and sqrt(s) on one scale, the step -lr*d on another.
  function tracePlane(parent, plane) {
    const X = plane.x, Y = plane.y, gs = plane.gradient_scale, ss = plane.step_scale;
    const drawn = runs.filter((run) => `${X}.theta` in run.cols && `${Y}.theta` in run.cols);
    const sources = drawn.map((run) => {
      const col = (name) => run.cols[name];
      const pair = (q) => (col(`${X}.${q}`) && col(`${Y}.${q}`) ? [col(`${X}.${q}`), col(`${Y}.${q}`)] : null);
      const hasFinal = X in run.final && Y in run.final;
      const append = (values, last) => {
        if (!hasFinal) return values;
        const out = new Float64Array(values.length + 1);
        out.set(values); out[values.length] = last;
        return out;
      };
      const arrows = [];
      for (const [q, color] of [["g", ARROWS.g], ["v", ARROWS.v]]) {
        const v = pair(q);
        if (v) arrows.push([color, times(v[0], -gs), times(v[1], -gs)]);
      }
      const d = pair("d"), lr = lrOf(run, X);
      if (d && lr) arrows.push([ARROWS.step, d[0].map((v, i) => -lr[i] * v * ss), d[1].map((v, i) => -lr[i] * v * ss)]);
      const s = pair("s");
      const describe = (i) => {
        if (i >= run.rows) return [`after the last update: ${X} = ${pyRepr(run.final[X])}, ${Y} = ${pyRepr(run.final[Y])}`];
        return [`update ${run.updates[i]}`, ...[`${X}.theta`, `${Y}.theta`, "loss", `${X}.g`, `${Y}.g`]
          .filter((name) => name in run.cols).map((name) => `${name} = ${pyRepr(run.cols[name][i])}`)];
      };
      return {
        run, updates: append(run.updates, run.updates[run.rows - 1] + 1),
        x: append(col(`${X}.theta`), run.final[X]), y: append(col(`${Y}.theta`), run.final[Y]), arrows, describe,
        whiskers: s ? [s[0].map((v) => Math.sqrt(v) * gs), s[1].map((v) => Math.sqrt(v) * gs)] : null,
        diverged: run.status === "diverged", lastRow: run.rows - 1,
      };
    });
    return new Plane(parent, {
      title: `Path on the plane ${X}, ${Y}` + (plane.contour ? ", over the loss" : ""),
      xlim: plane.xlim, ylim: plane.ylim, axis_labels: plane.axis_labels, contour: plane.contour, minimum: plane.minimum,
      legend: [[ARROWS.g, `−g ${scaleText(gs)}`], [ARROWS.v, `−v ${scaleText(gs)}`], [ARROWS.s, `±√s per axis ${scaleText(gs)}`],
        [ARROWS.step, `step −lr·d ${scaleText(ss)}`, true]],
      note: "g, v and √s share one scale; the step has its own (both for the whole page)" + SHORTENED_NOTE,
    }, sources);
  }

  // The landscape plane of a surface file (`tracer landscape`): each run's snapshots projected on
  // it, with -g and -v (one scale) and the step theta_next - theta (its own) at each snapshot.
  function landscapePlane(parent, land) {
    const sources = land.runs.map((entry) => {
      const axis = (points, k, factor) => Float64Array.from(points, (p) => p[k] * factor);
      const arrows = [[ARROWS.g, axis(entry.g, 0, -land.gradient_scale), axis(entry.g, 1, -land.gradient_scale)]];
      if (entry.v.length) arrows.push([ARROWS.v, axis(entry.v, 0, -land.gradient_scale), axis(entry.v, 1, -land.gradient_scale)]);
      arrows.push([ARROWS.step, axis(entry.step, 0, land.step_scale), axis(entry.step, 1, land.step_scale)]);
      const describe = (i) => [`after ${entry.done[i]} updates (snapshot ${i + 1} of ${entry.done.length})`,
        `direction 1 = ${pyRepr(entry.xy[i][0])}`, `direction 2 = ${pyRepr(entry.xy[i][1])}`];
      return {
        run: runs[entry.run], updates: Float64Array.from(entry.done, (done) => done + 1),
        x: axis(entry.xy, 0, 1), y: axis(entry.xy, 1, 1), arrows, whiskers: null, describe, diverged: false,
      };
    });
    return new Plane(parent, {
      title: `Loss landscape: the plane of the runs' snapshots (${land.file}, ${land.parameters} parameters)`,
      xlim: land.xlim, ylim: land.ylim, axis_labels: land.axis_labels, contour: land.contour, minimum: null,
      legend: [[ARROWS.g, `−g ${scaleText(land.gradient_scale)}`], [ARROWS.v, `−v ${scaleText(land.gradient_scale)}`],
        [ARROWS.step, `step θ_next − θ ${scaleText(land.step_scale)}`, true]],
      note: "projected on the plane at the snapshots; g and v share one scale, the step has its own" + SHORTENED_NOTE,
    }, sources);
  }

  // ------------------------------------------------------------ the numbers

  // Per run: the row's facts and a table per coordinate (theta, g, v, s, d, u) or per tensor
  // (the summary quantities), each cell the trace's exact value at the current update.
  const cells = []; // [run, td, column values, column type]
  function buildNumbers() {
    const root = $("numbers");
    for (const run of runs) {
      const cell = (column) => {
        const td = el("td", { "data-run": String(run.index), "data-column": column });
        if (column in run.cols) cells.push([run, td, run.cols[column], run.types[column]]); else td.textContent = "—";
        return td;
      };
      const facts = el("dl", { class: "row-facts" });
      const rowColumns = ["update", "epoch", "batch", ...run.lr_columns, "loss", "step_size", "displacement", "cos_d_prev"];
      for (const column of rowColumns.filter((c) => c in run.cols)) {
        facts.append(el("dt", {}, column === "cos_d_prev" ? "cos(d, prev d)" : column), el("dd", {}, cell(column)));
      }
      const card = el("div", { class: "card", id: `numbers-${run.index}` },
        el("div", { class: "card-title" }, el("span", { class: "swatch", style: `background:${run.color}` }), " ", run.label,
          el("span", { class: "small", id: `at-${run.index}` })), facts);
      // A row per quantity for a few coordinates or tensors (the table stays narrow), else a row per name.
      const table = (names, quantities, key) => {
        const byQuantity = names.length <= 3;
        const [across, down] = byQuantity ? [names, quantities] : [quantities, names];
        const head = el("tr", {}, el("th", {}, byQuantity ? "" : key), ...across.map((a) => el("th", {}, a)));
        const rows = down.map((d) => el("tr", {}, el("td", {}, d),
          ...across.map((a) => cell(byQuantity ? `${a}.${d}` : `${d}.${a}`))));
        return el("div", { class: "scroll" }, el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
      };
      if (run.coordinates.length) card.append(table(run.coordinates, DATA.full_quantities, "coordinate"));
      if (run.coordinates.length < run.coordinates_total) {
        card.append(el("div", { class: "small" }, `${run.coordinates.length} of ${run.coordinates_total} traced coordinates shown`));
      }
      if (run.tensors.length) card.append(table(run.tensors, DATA.summary_quantities, "tensor"));
      root.append(card);
      run.card = card;
    }
  }
  function drawNumbers() {
    const update = currentUpdate();
    const rows = runs.map((run) => rowOf(run, update));
    for (const [run, td, values, type] of cells) td.textContent = cellText(values, type, rows[run.index]);
    for (const run of runs) {
      const i = rows[run.index], note = $(`at-${run.index}`);
      note.textContent = i < 0 ? "  not started at this update"
        : run.updates[i] === update ? `  row ${i + 1} of ${run.rows}`
        : `  at update ${run.updates[i]}, its last row at or before ${update}`;
    }
  }

  // ----------------------------------------------------------------- the page

  $("title").textContent = DATA.title;
  document.title = DATA.title + " · tracer explore";
  for (const run of runs) {
    const box = el("input", { type: "checkbox", "data-run": String(run.index) });
    box.checked = true;
    box.addEventListener("change", () => { run.visible = box.checked; run.card.classList.toggle("hidden", !run.visible); redrawAll(); });
    const status = run.status === "diverged" ? `diverged at update ${run.diverged_at}` : run.status;
    $("runs").append(el("label", { title: run.file || "" }, box, el("span", { class: "swatch", style: `background:${run.color}` }),
      run.label, el("span", { class: "small" }, ` ${run.optimizer} · ${run.total_rows} rows · ${status}`)));
  }

  const views = $("views"), side = $("charts");
  const planes = [];
  if (DATA.plane) planes.push(tracePlane(views, DATA.plane));
  if (DATA.landscape) planes.push(landscapePlane(views, DATA.landscape));
  const charts = [];
  const column = (name) => (run) => run.cols[name] || null;
  if (hasLoss) charts.push(new Chart(side, "loss", column("loss")));
  charts.push(new Chart(side, "step size  lr·|d|", column("step_size")));
  charts.push(new Chart(side, "learning rate", (run) => run.cols[run.lr_columns[0]] || null));
  const cosine = (run) => run.cols.cos_d_prev || (state.tensor && run.cols[`${state.tensor}.cos_d_prev`]) || null;
  const cosineChart = new Chart(side, "", cosine, { range: [-1.05, 1.05] });
  cosineChart.retitle = () => {
    const full = runs.some((run) => "cos_d_prev" in run.cols);
    cosineChart.title = "cos(d, previous d)" + (full ? " over the traced coordinates" : ` of ${state.tensor}`);
  };
  cosineChart.retitle();
  charts.push(cosineChart);
  let tensorCharts = [];
  if (tensors.length) {
    const select = el("select", { id: "tensor" }, ...tensors.map((t) => el("option", { value: t }, t)));
    select.addEventListener("change", () => {
      state.tensor = select.value;
      [cosineChart, ...tensorCharts].forEach((chart) => chart.retitle());
      redrawAll();
    });
    const grid = el("div", { id: "tensor-charts" });
    views.append(el("div", { class: "card", id: "tensor-view" },
      el("div", { class: "card-title" }, "Per tensor: ", select), grid));
    tensorCharts = DASHBOARD.map(([quantity, title]) => {
      const chart = new Chart(grid, "", (run) => run.cols[`${state.tensor}.${quantity}`] || null,
        quantity.startsWith("cos") ? { range: [-1.05, 1.05], height: 130 } : { height: 130 });
      chart.retitle = () => { chart.title = `${title} of ${state.tensor}`; };
      chart.retitle();
      charts.push(chart);
      return chart;
    });
  }
  buildNumbers();

  // --------------------------------------------------------------- timeline

  const slider = $("slider"), readout = $("readout"), playButton = $("play"), speed = $("speed");
  slider.max = String(timeline.length - 1);
  for (const s of SPEEDS) speed.append(el("option", { value: String(s) }, `${s} updates/s`));
  speed.value = String(state.speed);
  speed.addEventListener("change", () => { state.speed = Number(speed.value); });
  slider.addEventListener("input", () => goToIndex(Number(slider.value)));
  $("first").addEventListener("click", () => goToIndex(0));
  $("back").addEventListener("click", () => goToIndex(state.index - 1));
  $("forward").addEventListener("click", () => goToIndex(state.index + 1));
  $("last").addEventListener("click", () => goToIndex(timeline.length - 1));
  playButton.addEventListener("click", () => (state.playing ? pause() : play()));
  document.addEventListener("keydown", (event) => {
    if (event.target.tagName === "SELECT" || event.ctrlKey || event.metaKey || event.altKey) return;
    const steps = event.shiftKey ? 10 : 1;
    const actions = {
      ArrowRight: () => goToIndex(state.index + steps), ArrowLeft: () => goToIndex(state.index - steps),
      " ": () => (state.playing ? pause() : play()), Home: () => goToIndex(0), End: () => goToIndex(timeline.length - 1),
    };
    if (!(event.key in actions)) return;
    event.preventDefault(); // the slider and the page would otherwise move too
    actions[event.key]();
  }, true);

  function goToIndex(index) {
    state.index = Math.max(0, Math.min(timeline.length - 1, Math.round(index)));
    drawCurrent();
  }
  function goToUpdate(update) { goToIndex(Math.max(0, floorIndex(timeline, update))); }
  function drawCurrent() {
    slider.value = String(state.index);
    const first = runs.find((run) => run.visible && rowOf(run, currentUpdate()) >= 0) || runs[0];
    const i = rowOf(first, currentUpdate());
    const epoch = first.cols.epoch && i >= 0 ? ` · epoch ${first.cols.epoch[i]}` : "";
    readout.textContent = `update ${currentUpdate()}${epoch} · ${state.index + 1} of ${timeline.length}`;
    for (const plane of planes) plane.drawCurrent();
    for (const chart of charts) chart.drawCursor();
    drawNumbers();
  }
  function play() {
    if (state.index >= timeline.length - 1) state.index = 0;
    state.playing = true; state.last = performance.now(); state.carry = 0;
    playButton.textContent = "❚❚ pause"; playButton.title = "pause (space)";
    requestAnimationFrame(tick);
  }
  function pause() { state.playing = false; playButton.textContent = "▶ play"; playButton.title = "play (space)"; }
  function tick(now) {
    if (!state.playing) return;
    // Advance by updates, not by frames: `speed` updates per second whatever the frame rate.
    state.carry += (now - state.last) / 1000 * state.speed; state.last = now;
    if (state.carry >= 1) {
      const target = currentUpdate() + Math.floor(state.carry);
      state.carry -= Math.floor(state.carry);
      goToIndex(Math.max(state.index + 1, floorIndex(timeline, target)));
    }
    if (state.index >= timeline.length - 1) { pause(); return; }
    requestAnimationFrame(tick);
  }

  function redrawAll() {
    for (const plane of planes) plane.drawBase();
    for (const chart of charts) chart.drawBase();
    drawCurrent();
  }
  function layoutAll() {
    for (const plane of planes) plane.layout();
    for (const chart of charts) chart.layout();
    drawCurrent();
  }
  let pending = false;
  window.addEventListener("resize", () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; layoutAll(); });
  });

  const rules = [...new Set(runs.map((run) => run.every))].length === 1 && runs[0].every === 1
    ? "Every row of every trace is shown."
    : "Rows shown: " + runs.map((run) => `${run.label}: ${run.rule}`).join("; ") +
      `. Rule: at most ${DATA.max_rows} rows per run; a longer run shows every k-th row (k = ceil(rows / ${DATA.max_rows})) and its last, each with its exact values.`;
  $("rule").append(el("p", {}, rules),
    el("p", {}, "Keys: ← → one update back and forth (Shift: ten), space plays and pauses, Home and End. " +
      "Click a chart or a path point to go to its update; hover for the exact values."),
    el("p", {}, "Runs are synchronised by update: each shows its last row at or before the current update."));

  const api = {
    goToUpdate, goToIndex, play, pause,
    get update() { return currentUpdate(); }, get index() { return state.index; },
    get playing() { return state.playing; }, timeline, runs, pyRepr, readyMs: null,
    chartTitles: () => charts.map((chart) => chart.title),
    // The arrows drawn shortened at the current update, on every plane: [{color, factor}].
    shortenedArrows: () => planes.flatMap((plane) => plane.shortened || []),
  };
  window.tracerExplorer = api;
  Promise.all(planes.map((plane) => plane.load())).then(() => {
    layoutAll();
    api.readyMs = performance.now();
    document.body.setAttribute("data-ready", "1");
  });
})();
