// meshlite live dashboard. No dependencies: charts are drawn on <canvas>
// (charts.js), the topology is inline SVG (topology.js). The services, their state and
// the alerts come from /ws (its hello, then a frame every second, read by feed.js);
// the topology, the histories of the cards on screen (history.js) and the workers
// from /api/*. Text from the server is only ever set with textContent (never HTML).
"use strict";

(() => {
  const TOKEN_KEY = "meshlite.dashboard.token";
  const COLORS = { rps: "#38bdf8", err: "#f87171", p50: "#a78bfa", p99: "#fbbf24" };
  const state = {
    refusalKeys: new Set(),
    token: readToken(), range: 300, historySeconds: 3600, lastSecond: -1, ticks: 0,
    services: new Map(), live: new Map(), balancers: new Map(), alerts: null, socket: null,
    retry: 500, topology: null, refused: false,
  };
  const $ = (id) => document.getElementById(id);
  const MAX_REFUSAL_KEYS = 200;  // refusal entries remembered, to show each once

  // ---- auth -----------------------------------------------------------------

  function readToken() {
    // A token given as #token=... never reaches the server's logs; keep it for
    // this tab only and take it out of the address bar.
    const match = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
    if (match) {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function askToken() {
    $("login").hidden = false;
    $("login-token").focus();
  }

  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("login-token").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    state.token = value;
    $("login").hidden = true;
    boot();
  });

  async function api(path, method) {
    const headers = state.token ? { Authorization: "Bearer " + state.token } : {};
    const response = await fetch(path, { method: method || "GET", headers, cache: "no-store" });
    if (response.status === 401) {
      askToken();
      throw new Error("unauthorized");
    }
    if (!response.ok) throw new Error(path + ": " + response.status);
    return response.json();
  }

  // ---- formatting -------------------------------------------------------------

  function fmtRate(v) {
    if (v === null || v === undefined) return "–";
    return (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + "/s";
  }
  function fmtPct(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    return (v * 100).toFixed(v < 0.1 ? 2 : 1) + "%";
  }
  function fmtMs(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const ms = seconds * 1000;
    if (ms < 1) return ms.toFixed(2) + " ms";
    if (ms < 10) return ms.toFixed(1) + " ms";
    if (ms < 10000) return ms.toFixed(0) + " ms";
    return (ms / 1000).toFixed(1) + " s";
  }
  function fmtTime(epoch) {
    return new Date(epoch * 1000).toLocaleTimeString([], { hour12: false });
  }
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // ---- data model -------------------------------------------------------------

  function service(name) {
    let svc = state.services.get(name);
    if (!svc) {
      svc = { name, live: null, hist: meshliteHistory.empty(), card: null,
              onScreen: false, stale: false, rowsStale: false, asked: 0, loading: false };
      state.services.set(name, svc);
    }
    return svc;
  }

  function backendsOf(svc) {
    // a backend row of the feed: [address, status, in_flight, ejected_for, requests, errors, p99]
    return svc.live.backends.map((b) => ({
      address: b[0], status: b[1], in_flight: b[2], ejected_for: b[3],
      requests: b[4], errors: b[5], latency_p99: b[6] }));
  }

  // ---- charts -------------------------------------------------------------------

  function drawCharts(svc) {
    // Only a card near the screen is drawn; one further away is drawn when it comes
    // near (the observer below), from the history the feed kept adding to meanwhile.
    if (!svc.card || state.lastSecond < 0) return;
    svc.stale = !svc.onScreen;
    if (svc.stale) return;
    const end = state.lastSecond, start = end - state.range + 1;
    const h = svc.hist, slice = meshliteHistory.slice, draw = meshliteChart.draw;
    draw(svc.card.rate, [
      { values: slice(h, "requests", start, end), color: COLORS.rps, fill: "rgba(56,189,248,0.13)" },
      { values: slice(h, "errors", start, end), color: COLORS.err, fill: "rgba(248,113,113,0.18)" },
    ], (v) => fmtRate(v));
    draw(svc.card.latency, [
      { values: slice(h, "p50", start, end), color: COLORS.p50 },
      { values: slice(h, "p99", start, end), color: COLORS.p99 },
    ], (v) => fmtMs(v));
  }

  // ---- service cards ----------------------------------------------------------

  function ensureCard(svc) {
    if (svc.card) return svc.card;
    const node = $("service-card").content.firstElementChild.cloneNode(true);
    node.dataset.service = svc.name;
    node.querySelector(".svc-name").textContent = svc.name;
    const q = (sel) => node.querySelector(sel);
    svc.card = { node, status: q(".svc-status"), balancer: q(".balancer"), breakers: q(".breakers"),
                 rps: q(".f-rps"), err: q(".f-err"), p50: q(".f-p50"), p99: q(".f-p99"),
                 inflight: q(".f-inflight"), attempts: q(".f-attempts"), retries: q(".f-retries"), rate: q(".chart-rate"), latency: q(".chart-latency"),
                 rows: q("tbody") };
    $("services").appendChild(node);
    onScreen.observe(node);
    return svc.card;
  }

  function renderCard(svc) {
    const c = ensureCard(svc), v = svc.live;
    c.status.textContent = v.status;
    c.status.className = "pill svc-status " + v.status;
    c.balancer.textContent = state.balancers.get(svc.name) || "";
    c.breakers.replaceChildren(...Object.entries(v.breakers).map(([name, st]) =>
      el("span", "pill " + st, "breaker " + st.replace("_", " "))));
    c.rps.textContent = fmtRate(v.requests);
    c.err.textContent = v.requests ? fmtPct(v.errors / v.requests) : "–";
    c.attempts.textContent = fmtRate(v.attempts);
    c.retries.textContent = fmtRate(v.retries);
    c.p50.textContent = fmtMs(v.p50);
    c.p99.textContent = fmtMs(v.p99);
    c.inflight.textContent = String(v.in_flight);
    // A card far from the screen keeps its rows until it comes near (the observer
    // below), unless backends came or went: its height stays what it will show.
    const backends = backendsOf(svc);
    svc.rowsStale = !svc.onScreen && c.rows.children.length === backends.length;
    if (!svc.rowsStale) c.rows.replaceChildren(...backends.map((b) => {
      const tr = el("tr");
      const addr = el("td");
      addr.append(el("span", "dot " + b.status), document.createTextNode(b.address));
      const label = b.status === "ejected" && b.ejected_for > 0
        ? "ejected " + Math.ceil(b.ejected_for) + "s" : b.status;
      tr.append(addr, el("td", "state " + b.status, label), el("td", "", String(b.in_flight)),
                el("td", "", String(b.requests)), el("td", "", String(b.errors)),
                el("td", "", fmtMs(b.latency_p99)));
      return tr;
    }));
    drawCharts(svc);
  }

  // ---- topology (topology.js) ---------------------------------------------------

  function renderTopology() {
    const services = [...state.services.values()].map((svc) => (
      { name: svc.name, live: svc.live, backends: backendsOf(svc) }));
    meshliteTopology.render($("topology"), state.topology || { service: null, edges: [] }, services,
                            { rate: fmtRate, ms: fmtMs });
  }

  // ---- summary and alerts -----------------------------------------------------------

  function renderSummary() {
    let rps = 0, errs = 0, p99 = null, up = 0, avail = 0, total = 0, worst = 0;
    // Follows calls: a service whose calls fail ("failing") is not up.
    const order = { healthy: 0, degraded: 1, failing: 2, panic: 3, down: 4 };
    for (const svc of state.services.values()) {
      const v = svc.live;
      rps += v.requests || 0; errs += v.errors || 0;
      if (v.p99 !== null && (p99 === null || v.p99 > p99)) p99 = v.p99;
      if (v.status === "healthy" || v.status === "degraded") up += 1;
      avail += v.available || 0; total += v.total || 0;
      worst = Math.max(worst, order[v.status] ?? 4);
    }
    $("s-rps").textContent = fmtRate(rps);
    $("s-err").textContent = rps ? fmtPct(errs / rps) : "–";
    $("s-err").classList.toggle("bad", rps > 0 && errs / rps > 0.05);
    $("s-p99").textContent = fmtMs(p99);
    $("s-up").textContent = `${up} / ${state.services.size}`;
    $("s-backends").textContent = `${avail} / ${total}`;
    const firing = state.alerts ? state.alerts.firing.length : 0;
    $("s-alerts").textContent = String(firing);
    $("s-alerts").classList.toggle("bad", firing > 0);
    const status = Object.keys(order).find((k) => order[k] === worst) || "healthy";
    $("overall").textContent = state.services.size ? "mesh " + status : "no services";
    $("overall").className = "pill " + status;
  }

  function alertItem(a, resolved) {
    const li = el("li");
    li.append(el("span", "sev " + a.severity, a.severity), el("span", "", a.summary),
              el("span", "when", resolved ? "resolved " + fmtTime(a.resolved_at)
                                          : "since " + fmtTime(a.started_at)));
    return li;
  }

  function renderAlerts() {
    const a = state.alerts || { firing: [], resolved: [] };
    $("alerts").hidden = a.firing.length === 0;
    $("alert-list").replaceChildren(...a.firing.map((x) => alertItem(x, false)));
    $("resolved-list").replaceChildren(...a.resolved.slice(0, 20).map((x) => alertItem(x, true)));
    $("resolved-empty").hidden = a.resolved.length > 0;
  }

  function renderAll() { renderFrame(null, true); }

  function renderFrame(dirty, topology) {
    // Only the cards of services that changed (dirty; null: all) are filled again;
    // every chart near the screen is redrawn, since the time axis moves each second.
    for (const svc of state.services.values()) {
      if (dirty === null || dirty.has(svc)) renderCard(svc); else drawCharts(svc);
    }
    if (topology) renderTopology();
    renderSummary();
    document.body.dataset.ticks = String(state.ticks);
  }

  // ---- live feed ----------------------------------------------------------------------
  // Frames are applied to state.live by feed.js: the "hello" (the whole mesh, first
  // on each connection; or a whole "tick" after it), then "delta" frames of what
  // changed (docs/dashboard.md).
  const RELOADED_FOR = "meshlite.dashboard.reloaded-for";  // feed version reloaded for

  function dropService(name) {
    const svc = state.services.get(name);
    if (svc && svc.card) {
      onScreen.unobserve(svc.card.node);
      svc.card.node.remove();
    }
    state.services.delete(name);
  }

  async function loadBalancer(svc) {
    // a service new to the page that the hello did not name (a reload added it)
    if (state.balancers.has(svc.name)) return;
    try {
      const info = await api(`/api/services/${encodeURIComponent(svc.name)}`);
      state.balancers.set(svc.name, info.balancer);
    } catch (error) { return; }
    if (state.services.get(svc.name) === svc) renderCard(svc);
  }

  function applyFrame(msg) {
    const whole = meshliteFeed.isWhole(msg);
    const { changed, removed } = meshliteFeed.apply(state.live, msg);
    state.lastSecond = Math.max(state.lastSecond, msg.second);
    const gone = whole ? [...state.services.keys()].filter((n) => !state.live.has(n)) : removed;
    gone.forEach(dropService);
    const dirty = new Set();
    for (const name of changed) {
      const known = state.services.has(name), svc = service(name);
      svc.live = state.live.get(name);
      if (!known) loadBalancer(svc);
      dirty.add(svc);
    }
    for (const svc of state.services.values()) {
      // unchanged ones too
      if (svc.live) meshliteHistory.append(svc.hist, msg.second, svc.live, state.historySeconds);
    }
    if (msg.alerts) { state.alerts = msg.alerts; renderAlerts(); }
    if (msg.refusals) addRefusals(msg.refusals);
    if (state.ticks % 5 === 0) loadTopology();
    state.ticks += 1;
    renderFrame(whole ? null : dirty, whole || dirty.size > 0 || gone.length > 0);
  }

  function setConn(kind, text) {
    const node = $("conn");
    node.className = "conn " + kind;
    node.textContent = text;
  }

  async function connect() {
    // The token never goes into the WebSocket's URL (servers log URLs): a
    // single-use ticket, fetched with the token, is offered as a subprotocol.
    let ticket;
    try {
      ticket = await api("/api/ws-ticket", "POST");
    } catch (error) {
      if (error.message === "unauthorized") {  // connects again after login
        state.socket = null;
        return;
      }
      setConn("down", "reconnecting");
      state.retry = Math.min(state.retry * 2, 10000);
      setTimeout(connect, state.retry);
      return;
    }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws`,
                                 [ticket.protocol, ticket.protocol + ".ticket." + ticket.ticket]);
    state.socket = socket;
    let synced = false;  // this connection's whole frame (its hello's or a tick) has come
    socket.onopen = () => { state.retry = 500; setConn("live", "live"); loadTopology(); };
    socket.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "hello") {
        if (!greeted(msg, socket)) return;
        synced = meshliteFeed.isWhole(msg);  // else a whole tick comes next
        if (synced) applyFrame(msg); else renderAll();  // the alerts may have changed
      } else if (state.refused) {
        return;
      } else if (msg.type === "tick") {
        synced = true; applyFrame(msg);
      } else if (msg.type === "delta" && synced) {  // never before a whole frame
        applyFrame(msg);
      }
    };
    socket.onclose = () => {
      if (state.refused) return;
      setConn("down", "reconnecting");
      state.retry = Math.min(state.retry * 2, 10000);
      setTimeout(connect, state.retry);
    };
  }

  function greeted(hello, socket) {
    // A feed of a version this page does not read: the server was upgraded (or
    // downgraded) under an open tab. Load the page again, once, to get the server's
    // own; if that one does not read it either, say so and stop reconnecting.
    if (hello.version !== meshliteFeed.VERSION) {
      state.refused = true;
      socket.close();
      if (sessionStorage.getItem(RELOADED_FOR) !== String(hello.version)) {
        sessionStorage.setItem(RELOADED_FOR, String(hello.version));
        location.reload();
      } else {
        setConn("down", `feed version ${hello.version} unsupported (this page reads ` +
                        `${meshliteFeed.VERSION})`);
      }
      return false;
    }
    sessionStorage.removeItem(RELOADED_FOR);
    state.historySeconds = hello.history_seconds;
    state.balancers = new Map(Object.entries(hello.balancers));
    state.alerts = hello.alerts;
    renderAlerts();
    return true;
  }

  // ---- near the screen: charts drawn, history fetched as far back as the range shown ----
  // The feed adds each second to every service's history; what came before the
  // page opened is fetched only for a card near the screen (half a screen around
  // it), for the range shown, and again when a wider range is chosen.
  const onScreen = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      const svc = state.services.get(entry.target.dataset.service);
      if (!svc || !svc.card || svc.card.node !== entry.target) continue;
      svc.onScreen = entry.isIntersecting;
      if (svc.onScreen && svc.rowsStale) renderCard(svc);
      else if (svc.onScreen && svc.stale) drawCharts(svc);
      loadHistory(svc);
    }
  }, { rootMargin: "50% 0px" });

  async function loadHistory(svc) {
    const seconds = Math.min(state.range, state.historySeconds);
    if (!svc.onScreen || svc.loading || svc.asked >= seconds) return;
    svc.loading = true;
    let data;
    try {
      data = await api(`/api/services/${encodeURIComponent(svc.name)}/history?seconds=${seconds}`);
    } catch (error) {
      return;
    } finally {
      svc.loading = false;
    }
    if (state.services.get(svc.name) !== svc) return;
    // the points that came with the feed while this was loading are kept
    svc.hist = meshliteHistory.merged(data, svc.hist, state.historySeconds);
    svc.asked = data.start === null ? Infinity : seconds;  // null: nothing older to ask for
    if (data.start !== null) {
      state.lastSecond = Math.max(state.lastSecond, data.start + data.requests.length - 1);
    }
    drawCharts(svc);
    loadHistory(svc);  // a wider range chosen meanwhile
  }

  // ---- workers (several processes sharing MESHLITE_MULTIPROC_DIR) -----------------

  async function loadWorkers() {
    // Each worker's totals only (view=totals: not its figures per service nor its
    // view of every backend). Returns whether to ask again: not without a shared
    // directory, where this process is the only worker there will ever be.
    let data;
    try { data = await api("/api/workers?view=totals"); } catch (error) { return true; }
    const panel = $("workers");
    panel.hidden = !data.directory;
    if (panel.hidden) return false;
    $("worker-rows").replaceChildren(...data.workers.map((w) => {
      const sum = w.totals;
      const tr = el("tr");
      // the worker whose own view the backend rows, breakers and status show
      const state = !w.alive ? "exited" : w.serving ? "running, serves this page" : "running";
      tr.append(el("td", "", String(w.pid)), el("td", w.alive ? "state up" : "state ejected", state),
                ...["calls", "failed", "retries", "attempts"].map((k) => el("td", "", String(sum[k]))));
      return tr;
    }));
    // health checks, ejections and breakers run per worker: say where they disagree
    const differences = data.differences || [];
    $("worker-differences").hidden = !differences.length;
    $("worker-differences").replaceChildren(...differences.map((d) => el("li", "",
      `workers disagree on ${d.service} ${d.breaker ? "breaker " + d.breaker
                                                    : "backend " + d.backend}: ` +
      Object.entries(d.workers).map(([pid, v]) =>
        `${pid} ${typeof v === "object" && v ? JSON.stringify(v) : v}`).join(", "))));
    return true;
  }

  async function loadTopology(strict) {
    try {
      state.topology = await api("/api/topology");
      renderInbound(await api("/api/inbound"));
    } catch (error) {
      if (strict) throw error;  // else keep the last ones
    }
  }

  function renderInbound(data) {
    // what the service's meshlite.asgi middleware answered, per route
    $("inbound-panel").hidden = !data.enabled;
    const rows = data.routes.map((r) => {
      const tr = el("tr");
      const answers = Object.entries(r.statuses).map(([code, n]) => `${code}: ${n}`).join("  ");
      for (const cell of [r.route, r.method, r.requests, r.refused, answers]) tr.append(el("td", "", String(cell)));
      return tr;
    });
    $("inbound").querySelector("tbody").replaceChildren(...rows);
    addRefusals(data.refusals || []);  // those already shown are skipped
  }

  function refusalItem(r) {
    // one aggregated entry: a second's refusals of one kind on one route, never one per request
    const who = r.top.join(", ") + (r.clients > r.top.length ? ` and ${r.clients - r.top.length}${r.clients_capped ? "+" : ""} more` : "");
    const li = el("li", "refusal " + r.action);
    li.dataset.action = r.action;
    li.append(el("span", "time", fmtTime(r.second)), el("b", "", r.action),
              el("span", "", ` ${r.route} ${r.status} x${r.count} from ${r.clients}${r.clients_capped ? "+" : ""} client(s): ${who}`));
    return li;
  }

  function addRefusals(entries) {
    // Entries come from /api/inbound (when the page loads, and again once the feed is
    // open, so a tick between the two is not lost) and from the feed: each is shown once.
    const fresh = entries.filter((r) => {
      const key = [r.second, r.action, r.route, r.status].join("|");
      if (state.refusalKeys.has(key)) return false;
      state.refusalKeys.add(key);
      return true;
    });
    // Only the latest keys can come again (/api/inbound repeats its last 50 entries):
    // forget the oldest, or a tab left open under attack would grow without end.
    const keys = state.refusalKeys;
    while (keys.size > MAX_REFUSAL_KEYS) keys.delete(keys.values().next().value);
    const list = $("refusals");
    list.dataset.remembered = String(keys.size);
    if (!fresh.length) return;
    list.querySelector(".none")?.remove();
    for (const r of fresh) list.prepend(refusalItem(r));
    while (list.children.length > 50) list.lastElementChild.remove();
  }

  async function boot() {
    // The services, their state and the alerts come with the feed's hello, and each
    // service's history once the page knows it (loadInfo).
    try {
      await loadTopology(true);
    } catch (error) {
      if (String(error.message) !== "unauthorized") setConn("down", "unreachable");
      return;
    }
    if (!state.socket) connect();
    if (await loadWorkers()) setInterval(loadWorkers, 5000);
  }

  for (const button of document.querySelectorAll(".range button")) {
    button.addEventListener("click", () => {
      state.range = Number(button.dataset.range);
      for (const svc of state.services.values()) loadHistory(svc);
      for (const b of document.querySelectorAll(".range button")) b.classList.toggle("on", b === button);
      renderAll();
    });
  }
  let resizing = 0;
  window.addEventListener("resize", () => {
    cancelAnimationFrame(resizing);
    resizing = requestAnimationFrame(renderAll);
  });

  boot();
})();
