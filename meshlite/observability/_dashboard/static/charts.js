// meshlite dashboard: one chart on a <canvas>, drawn by hand (no dependency): a
// line per series (a gap where a value is null), filled below when the series has
// a fill colour, a grid at 0, half and the top, the top's value and the span shown.
"use strict";

// eslint-disable-next-line no-unused-vars
const meshliteChart = (() => {
  const GRID = "#1c2735", LABEL = "#6b7a8d";

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function draw(canvas, series, format) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, hgt = canvas.clientHeight;
    if (!w || !hgt) return;
    if (canvas.width !== Math.round(w * dpr)) canvas.width = Math.round(w * dpr);
    if (canvas.height !== Math.round(hgt * dpr)) canvas.height = Math.round(hgt * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    const pad = { l: 8, r: 8, t: 16, b: 16 };
    const n = series[0].values.length;
    let max = 0;
    for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
    max = niceMax(max * 1.1);
    const x = (i) => pad.l + (n <= 1 ? 0 : (i / (n - 1)) * (w - pad.l - pad.r));
    const y = (v) => pad.t + (1 - v / max) * (hgt - pad.t - pad.b);

    ctx.strokeStyle = GRID; ctx.lineWidth = 1;
    ctx.font = "10px system-ui, sans-serif"; ctx.fillStyle = LABEL;
    for (const f of [0, 0.5, 1]) {
      const yy = Math.round(y(max * f)) + 0.5;
      ctx.beginPath(); ctx.moveTo(pad.l, yy); ctx.lineTo(w - pad.r, yy); ctx.stroke();
    }
    ctx.textAlign = "left"; ctx.fillText(format(max), pad.l + 2, pad.t - 4);
    const minutes = Math.round(n / 60);
    ctx.fillText(minutes >= 1 ? "-" + minutes + " min" : "-" + n + " s", pad.l + 2, hgt - 4);
    ctx.textAlign = "right"; ctx.fillText("now", w - pad.r - 2, hgt - 4);

    for (const s of series) {
      ctx.strokeStyle = s.color; ctx.lineWidth = 1.6; ctx.lineJoin = "round";
      let run = [];
      const flush = () => {
        if (run.length === 0) return;
        if (s.fill) {
          ctx.beginPath(); ctx.moveTo(x(run[0][0]), y(0));
          for (const [i, v] of run) ctx.lineTo(x(i), y(v));
          ctx.lineTo(x(run[run.length - 1][0]), y(0)); ctx.closePath();
          ctx.fillStyle = s.fill; ctx.fill();
        }
        ctx.beginPath();
        run.forEach(([i, v], k) => (k ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
        if (run.length === 1) ctx.lineTo(x(run[0][0]) + 1.5, y(run[0][1]));
        ctx.stroke();
        run = [];
      };
      s.values.forEach((v, i) => (v === null ? flush() : run.push([i, v])));
      flush();
    }
    canvas.dataset.max = String(max);
    canvas.meshliteDraws = (canvas.meshliteDraws || 0) + 1;  // the draws, counted (tests read it)
  }

  return { draw };
})();
