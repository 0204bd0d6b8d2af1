// meshlite dashboard: the topology, inline SVG. The callers of this service (what
// its inbound middleware learned), the service itself, each service it calls and
// each of their backends, joined by edges. Built again only when its structure
// changes (a service or backend added or removed, another caller, another width);
// on the other frames only the states that changed are set on the elements drawn
// (an edge's class, a dot's colour, a note's text): at 300 services of 50 backends
// the drawing has some 75,000 elements, which a rebuild a second cannot keep up with.
"use strict";

// eslint-disable-next-line no-unused-vars
const meshliteTopology = (() => {
  const SVG = "http://www.w3.org/2000/svg";
  const STATUS_COLOR = { healthy: "#34d399", up: "#34d399", degraded: "#fbbf24", unhealthy: "#fbbf24",
                         failing: "#f87171", panic: "#f87171", down: "#f87171", ejected: "#f87171" };
  const ROW_H = 34, GAP = 14;

  function svgEl(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // What changes from frame to frame, of each kind of thing drawn: the one place
  // that says how a state looks, for a rebuild and an update alike.
  function callerLook(c, fmt) {
    return { edge: "edge caller" + (c.error_rate > 0 ? " out" : " hot"),
             note: `${fmt.rate(c.request_rate)} · ${fmt.rate(c.error_rate)} err` };
  }

  function serviceLook(v, fmt) {
    const open = Object.values(v.breakers).filter((s) => s === "open" || s === "forced_open").length;
    return { hot: (v.requests || 0) > 0, edge: "edge" + ((v.requests || 0) > 0 ? " hot" : ""),
             fill: STATUS_COLOR[v.status] || "#64748b",
             note: `${v.available}/${v.total} up · ${fmt.rate(v.requests)}` +
                   (Object.keys(v.breakers).length ? (open ? " · breaker OPEN" : " · breaker closed") : "") };
  }

  function backendLook(b, hot, fmt) {
    const detail = b.status === "ejected"
      ? (b.ejected_for > 0 ? `ejected ${Math.ceil(b.ejected_for)}s` : "ejected until restored")
      : b.status === "unhealthy" ? "unhealthy" : `${b.in_flight} in flight · ${fmt.ms(b.latency_p99)} p99`;
    return { edge: "edge" + (b.status !== "up" ? " out" : hot ? " hot" : ""),
             fill: STATUS_COLOR[b.status] || "#64748b", note: detail };
  }

  // Sets on the elements `drawn` (edge, dot, note) what `look` says, where it differs
  // from what they show (`drawn.look`, the look they were given last).
  function show(drawn, look) {
    const last = drawn.look;
    if (!last || last.edge !== look.edge) drawn.edge.setAttribute("class", look.edge);
    if (drawn.dot && (!last || last.fill !== look.fill)) drawn.dot.setAttribute("fill", look.fill);
    if (!last || last.note !== look.note) drawn.note.textContent = look.note;
    drawn.look = look;
  }

  function structure(width, topo, callers, services) {
    return JSON.stringify([width, topo.service, callers.map((c) => c.from),
                           services.map((s) => [s.name, s.backends.map((b) => b.address)])]);
  }

  // The drawing, built whole: returns the elements whose state a frame may change.
  function build(svg, width, topo, callers, services, fmt) {
    const rows = services.map((s) => Math.max(1, s.backends.length));
    const height = Math.max(80, rows.reduce((a, r) => a + r * ROW_H + GAP, 0));
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("height", height);
    const edges = [], parts = [], drawn = { callers: [], services: [] };
    const left = callers.length ? 190 : 20;
    const colX = [left, Math.round(width * 0.3) + (callers.length ? 80 : 0),
                  Math.round(width * 0.62) + (callers.length ? 40 : 0)];
    const rootY = height / 2;
    callers.forEach((c, i) => {
      // service-to-service edges learned by this service's inbound middleware
      const cy = rootY + (i - (callers.length - 1) / 2) * 40;
      const edge = svgEl("path", { d: `M${20 + 150},${cy} C${left - 10},${cy} ${170},${rootY} ${left},${rootY}` });
      edges.push(edge);
      parts.push(svgEl("rect", { class: "node caller", x: 20, y: cy - 16, width: 150, height: 32, rx: 8 }));
      parts.push(svgEl("text", { x: 32, y: cy - 2 }, c.from));
      const note = svgEl("text", { class: "small", x: 32, y: cy + 11 });
      parts.push(note);
      drawn.callers.push({ edge, note, look: null });
    });
    parts.push(svgEl("rect", { class: "node root", x: colX[0], y: rootY - 18, width: 150, height: 36, rx: 8 }));
    parts.push(svgEl("text", { x: colX[0] + 14, y: rootY + 4 }, topo.service || "this process"));
    let top = 0;
    services.forEach((svc, idx) => {
      const blockH = rows[idx] * ROW_H;
      const cy = top + blockH / 2 + GAP / 2;
      const edge = svgEl("path", {
        d: `M${colX[0] + 150},${rootY} C${colX[1] - 60},${rootY} ${colX[0] + 210},${cy} ${colX[1]},${cy}` });
      edges.push(edge);
      parts.push(svgEl("rect", { class: "node", x: colX[1], y: cy - 20, width: 230, height: 40, rx: 8 }));
      const dot = svgEl("circle", { cx: colX[1] + 16, cy, r: 5 });
      parts.push(dot, svgEl("text", { x: colX[1] + 30, y: cy - 3 }, svc.name));
      const note = svgEl("text", { class: "small", x: colX[1] + 30, y: cy + 12 });
      parts.push(note);
      const drawnService = { edge, dot, note, look: null, backends: [] };
      svc.backends.forEach((b, j) => {
        const by = top + GAP / 2 + j * ROW_H + ROW_H / 2;
        const bEdge = svgEl("path", {
          d: `M${colX[1] + 230},${cy} C${colX[2] - 50},${cy} ${colX[1] + 280},${by} ${colX[2]},${by}` });
        edges.push(bEdge);
        parts.push(svgEl("rect", { class: "node", x: colX[2], y: by - 14, width: width - colX[2] - 20, height: 28, rx: 6 }));
        const bDot = svgEl("circle", { cx: colX[2] + 14, cy: by, r: 4.5 });
        parts.push(bDot, svgEl("text", { x: colX[2] + 26, y: by + 4 }, b.address));
        const detail = svgEl("text", { class: "small", x: width - 34, y: by + 4, "text-anchor": "end" });
        parts.push(detail);
        drawnService.backends.push({ edge: bEdge, dot: bDot, note: detail, look: null });
      });
      drawn.services.push(drawnService);
      top += blockH + GAP;
    });
    svg.replaceChildren(...edges.reverse(), ...parts);  // the edges under the nodes
    return drawn;
  }

  // Draws `services` (each {name, live, backends}, in order) called by `topo`'s
  // callers into `svg`: built whole when its structure changed, else updated.
  // `fmt` formats figures: {rate(v), ms(seconds)}.
  function render(svg, topo, services, fmt) {
    const width = svg.clientWidth || 1200;
    const callers = topo.edges.filter((e) => e.to === topo.service && e.from !== topo.service);
    const key = structure(width, topo, callers, services);
    if (svg.meshliteDrawn === undefined || svg.meshliteDrawn.key !== key) {
      svg.meshliteDrawn = { key, ...build(svg, width, topo, callers, services, fmt) };
    }
    const drawn = svg.meshliteDrawn;
    callers.forEach((c, i) => show(drawn.callers[i], callerLook(c, fmt)));
    services.forEach((svc, i) => {
      const look = serviceLook(svc.live, fmt), shown = drawn.services[i];
      show(shown, look);
      svc.backends.forEach((b, j) => show(shown.backends[j], backendLook(b, look.hot, fmt)));
    });
  }

  return { render };
})();
