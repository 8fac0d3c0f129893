// The playground page: draws the simulated cluster, the messages in flight and the
// narration, and sends the user's actions to /api/playground/*.
"use strict";

(() => {
  const RUN_INTERVAL_MILLISECONDS = 450;
  const PLAY_INTERVAL_MILLISECONDS = 1800;
  const HISTORY_SHOWN_MAX = 300;
  const WIRE_SLOTS = 9;

  const byId = (id) => document.getElementById(id);
  let view = null;
  let language = localStorage.getItem("raftkv-language") === "zh" ? "zh" : "en";
  let busy = false;
  let runTimer = null;
  let playTimer = null;
  const previousLast = new Map();

  function showError(text) {
    byId("error").textContent = text || "";
  }

  /** Sends one request at a time; answers carry the whole page state. */
  async function call(path, body) {
    if (busy) return false;
    busy = true;
    try {
      const init = body === undefined ? { method: "POST" } : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
      const response = await fetch(path, init);
      const data = await response.json().catch(() => null);
      if (!response.ok) {
        showError((data && data.error) || `HTTP ${response.status}`);
        if (data && data.state) draw(data.state);
        return false;
      }
      showError("");
      draw(data);
      return true;
    } catch (error) {
      showError(`the playground server does not answer: ${error}`);
      return false;
    } finally {
      busy = false;
    }
  }

  const act = (action) => call("/api/playground/action", action);

  function nodeControls(node, cell) {
    const controls = RaftLog.element("div", "node-controls");
    const button = (text, title, action) => {
      const element = RaftLog.element("button", "", text);
      element.title = title;
      element.addEventListener("click", () => act(action));
      controls.append(element);
      return element;
    };
    const id = Number(node.id);
    if (node.alive) {
      button("crash", "the node stops; its disk survives", { type: "crash", node: id }).dataset.action = "crash";
      button("request", "a client sends the command to this node", { type: "request", node: id, command: byId("command").value }).dataset.action = "request";
      button("elect", "campaign: start an election now", { type: "campaign", node: id });
      const others = view.nodes.map((other) => Number(other.id)).filter((other) => other !== id);
      button("isolate", "cut this node off from the others", { type: "partition", groups: [[id], others] });
    } else {
      button("restart", "restart from the durable log and term", { type: "restart", node: id }).dataset.action = "restart";
    }
    if (node.state && node.state.length > 0) {
      const state = RaftLog.element("div", "node-state", `state: ${node.state.join(" ")}`);
      state.title = "the state machine after the applied commands";
      state.dataset.state = node.state.join(" ");
      cell.append(state);
    }
    nodeDetails(node, cell);
    if (view.nodes.some((other) => other.group !== node.group)) {
      cell.append(RaftLog.element("div", "progress", `partition side ${node.group + 1}`));
    }
    cell.append(controls);
  }

  const READS_SHOWN_MAX = 3;

  /** True if some node's configuration is not "every row is a voter", or a log holds a configuration entry. */
  function membershipChanged() {
    const everyone = view.nodes.length;
    const changed = (node) => node.learners.length > 0 || node.voters_outgoing.length > 0 || node.voters.length !== everyone;
    return view.nodes.some((node) => changed(node) || node.entries.some((entry) => entry.kind === "config"));
  }

  function membershipText(node) {
    const set = (ids) => `{${ids.map((id) => `S${id}`).join(",")}}`;
    const voters = node.voters_outgoing.length > 0 ? `joint: old ${set(node.voters_outgoing)} + new ${set(node.voters)}` : `voters ${set(node.voters)}`;
    return node.learners.length > 0 ? `${voters} learners ${set(node.learners)}` : voters;
  }

  /** The playground-only lines of a row: snapshot, configuration, read answers. */
  function nodeDetails(node, cell) {
    if (node.snapshot_index > 0) {
      const snapshot = RaftLog.element("div", "node-snapshot", `snapshot ≤ ${node.snapshot_index}`);
      snapshot.title = "the log up to this index was compacted into a snapshot of the state machine";
      snapshot.dataset.snapshot = node.snapshot_index;
      cell.append(snapshot);
    }
    if (membershipChanged()) {
      const membership = RaftLog.element("div", "node-membership", membershipText(node));
      membership.title = "this node's latest configuration";
      membership.dataset.voters = node.voters.join(",");
      membership.dataset.outgoing = node.voters_outgoing.join(",");
      membership.dataset.learners = node.learners.join(",");
      cell.append(membership);
    }
    const reads = node.reads.slice(-READS_SHOWN_MAX).map((text) => ["node-read", text]);
    for (const [className, text] of reads.concat(node.reads_waiting.map((text) => ["node-read waiting", text]))) {
      const line = RaftLog.element("div", className, text);
      line.dataset.read = text;
      cell.append(line);
    }
  }

  /** The AppendEntries counters per leader→follower link. */
  function drawRoundTrips() {
    const panel = byId("round-trips");
    const rows = view.round_trips || [];
    panel.hidden = rows.length === 0;
    const body = byId("round-trip-rows");
    body.replaceChildren();
    for (const link of rows) {
      const row = RaftLog.element("tr");
      row.dataset.link = `${link.from}-${link.to}`;
      row.dataset.appends = link.appends;
      row.dataset.rejects = link.rejects;
      const hint = link.naive ? "no hint: 1 back" : "conflict hint";
      for (const text of [`S${link.from}→S${link.to}`, link.appends, link.rejects, hint]) row.append(RaftLog.element("td", "", text));
      body.append(row);
    }
  }

  function drawPreset() {
    const panel = byId("preset-panel");
    const preset = view.preset;
    panel.hidden = !preset;
    document.body.dataset.finished = preset && preset.position >= preset.total ? "true" : "false";
    if (!preset) return;
    byId("preset-title").textContent = preset.title[language];
    byId("preset-position").textContent = `step ${preset.position} of ${preset.total}`;
    byId("next").disabled = preset.position >= preset.total;
    byId("back").disabled = view.step === 0;
    const narration = byId("narration");
    narration.replaceChildren();
    if (preset.narration) {
      narration.append(RaftLog.element("span", "step-title", preset.titles[preset.position - 1][language]), preset.narration[language]);
    } else {
      narration.append(language === "zh" ? "按“next step”开始。" : "Press “next step” to begin.");
    }
    if (preset.next_title) {
      narration.append(RaftLog.element("div", "muted", `${language === "zh" ? "下一步" : "next"}: ${preset.next_title[language]}`));
    }
  }

  function drawMessages() {
    const list = byId("messages");
    list.replaceChildren();
    if (view.messages.length === 0) list.append(RaftLog.element("li", "muted", "none"));
    for (const message of view.messages) {
      const item = RaftLog.element("li");
      item.dataset.message = message.id;
      const what = RaftLog.element("span", "what");
      what.append(`#${message.id} S${message.from}→S${message.to} `, RaftLog.element("span", `kind kind-${message.kind}`, message.kind), ` t${message.term} ${message.summary}`);
      const deliver = RaftLog.element("button", "", "deliver");
      deliver.addEventListener("click", () => act({ type: "deliver", message: message.id }));
      const drop = RaftLog.element("button", "", "drop");
      drop.addEventListener("click", () => act({ type: "drop", message: message.id }));
      item.append(what, deliver, drop);
      list.append(item);
    }
  }

  function svg(tag, attributes) {
    const element = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
    return element;
  }

  const KIND_COLOURS = { append: "#2563eb", heartbeat: "#60a5fa", appendresp: "#15803d", heartbeatresp: "#4ade80", vote: "#7c3aed", prevote: "#a78bfa", voteresp: "#7c3aed", prevoteresp: "#a78bfa" };

  /** Draws each message in flight as an arrow from its sender's row to its receiver's. */
  function drawWires() {
    const wires = byId("wires");
    const lane = byId("lane");
    const rows = new Map([...byId("cluster").querySelectorAll(".node-row")].map((row) => [row.dataset.node, row.offsetTop + row.offsetHeight / 2]));
    const width = lane.clientWidth;
    wires.setAttribute("height", byId("cluster").offsetHeight);
    wires.setAttribute("width", width);
    const defs = svg("defs", {});
    const arrow = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    arrow.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#64748b" }));
    defs.append(arrow);
    const children = [defs];
    const edge = width - 6;
    for (const [id, y] of rows) {
      const dot = svg("circle", { cx: edge, cy: y, r: 4, fill: "#94a3b8" });
      dot.dataset.node = id;
      children.push(dot);
    }
    view.messages.forEach((message, position) => {
      const from = rows.get(String(message.from));
      const to = rows.get(String(message.to));
      if (from === undefined || to === undefined) return;
      const bend = edge - 30 - (position % WIRE_SLOTS) * ((width - 50) / WIRE_SLOTS);
      const colour = KIND_COLOURS[message.kind] || "#475569";
      const group = svg("g", { class: "wire" });
      group.dataset.message = message.id;
      group.append(svg("path", { d: `M${edge},${from} Q${bend},${(from + to) / 2} ${edge},${to}`, fill: "none", stroke: colour, "stroke-width": 1.5, "marker-end": "url(#arrow)", opacity: 0.8 }));
      const middleX = (edge + bend) / 2;
      const middleY = (from + to) / 2;
      const badge = svg("circle", { cx: middleX, cy: middleY, r: 10, fill: "#fff", stroke: colour, "stroke-width": 2, cursor: "pointer" });
      const label = svg("text", { x: middleX, y: middleY + 3.5, "text-anchor": "middle", "font-size": 9, fill: colour, "pointer-events": "none" });
      label.textContent = message.id;
      const title = svg("title", {});
      title.textContent = `#${message.id} ${message.kind} S${message.from}→S${message.to}: ${message.summary} (click: deliver, shift-click: drop)`;
      badge.append(title);
      badge.addEventListener("click", (event) => act({ type: event.shiftKey ? "drop" : "deliver", message: message.id }));
      group.append(badge, label);
      children.push(group);
    });
    wires.replaceChildren(...children);
  }

  function drawHistory() {
    const list = byId("history");
    list.replaceChildren();
    const start = RaftLog.element("li", view.step === 0 ? "current" : "", "0: start");
    start.addEventListener("click", () => call("/api/playground/rewind", { step: 0 }));
    list.append(start);
    for (const step of view.history.slice(-HISTORY_SHOWN_MAX)) {
      const item = RaftLog.element("li", step.number === view.step ? "current" : "", `${step.number}: ${step.label}`);
      item.addEventListener("click", () => call("/api/playground/rewind", { step: step.number }));
      list.append(item);
    }
    list.scrollTop = list.scrollHeight;
  }

  function draw(next) {
    view = next;
    document.body.dataset.step = view.step;
    byId("step-number").textContent = `after step ${view.step} · seed ${view.seed}`;
    byId("preset-select").value = view.preset ? view.preset.name : "";
    byId("seed").value = view.seed;
    byId("nodes").value = view.nodes.length;
    drawPreset();
    RaftLog.render(byId("cluster"), view.nodes, { leaderId: view.leader, decorateHead: nodeControls, previousLast });
    previousLast.clear();
    for (const node of view.nodes) previousLast.set(String(node.id), node.last_index);
    drawWires();
    drawRoundTrips();
    drawMessages();
    drawHistory();
    const events = byId("events");
    events.replaceChildren(...view.events.slice().reverse().map((text) => RaftLog.element("li", /is now leader/.test(text) ? "election" : "", text)));
    byId("back").disabled = view.step === 0;
    byId("rewind-one").disabled = view.step === 0;
  }

  function stopTimers() {
    clearInterval(runTimer);
    clearInterval(playTimer);
    runTimer = playTimer = null;
    byId("run").textContent = "run in real time";
    byId("play").textContent = "play";
  }

  function reset() {
    stopTimers();
    const preset = byId("preset-select").value || null;
    return call("/api/playground/reset", { seed: Number(byId("seed").value) || 0, nodes: Number(byId("nodes").value) || 5, preset });
  }

  function setLanguage(next) {
    language = next;
    localStorage.setItem("raftkv-language", next);
    byId("lang-en").classList.toggle("active", next === "en");
    byId("lang-zh").classList.toggle("active", next === "zh");
    document.documentElement.lang = next === "zh" ? "zh-CN" : "en";
    if (view) drawPreset();
  }

  function wire() {
    byId("reset").addEventListener("click", reset);
    byId("preset-select").addEventListener("change", reset);
    byId("advance").addEventListener("click", () => act({ type: "advance" }));
    byId("deliver-all").addEventListener("click", () => act({ type: "deliver_where" }));
    byId("request").addEventListener("click", () => act({ type: "request", command: byId("command").value }));
    byId("heal").addEventListener("click", () => act({ type: "heal" }));
    byId("next").addEventListener("click", () => call("/api/playground/next"));
    const rewindOne = () => call("/api/playground/rewind", { step: Math.max(view.step - 1, 0) });
    byId("back").addEventListener("click", rewindOne);
    byId("rewind-one").addEventListener("click", rewindOne);
    byId("restart").addEventListener("click", () => { stopTimers(); call("/api/playground/rewind", { step: 0 }); });
    byId("run").addEventListener("click", () => {
      if (runTimer) return stopTimers();
      stopTimers();
      runTimer = setInterval(() => act({ type: "advance" }), RUN_INTERVAL_MILLISECONDS);
      byId("run").textContent = "pause";
    });
    byId("play").addEventListener("click", () => {
      if (playTimer) return stopTimers();
      stopTimers();
      playTimer = setInterval(async () => {
        if (!view.preset || view.preset.position >= view.preset.total) return stopTimers();
        await call("/api/playground/next");
      }, PLAY_INTERVAL_MILLISECONDS);
      byId("play").textContent = "pause";
    });
    byId("lang-en").addEventListener("click", () => setLanguage("en"));
    byId("lang-zh").addEventListener("click", () => setLanguage("zh"));
    window.addEventListener("resize", () => view && drawWires());
  }

  async function start() {
    wire();
    setLanguage(language);
    byId("legend").append(RaftLog.legend());
    const parameters = new URLSearchParams(location.search);
    if (parameters.has("lang")) setLanguage(parameters.get("lang") === "zh" ? "zh" : "en");
    if (parameters.has("preset") || parameters.has("seed") || parameters.has("nodes")) {
      byId("preset-select").value = parameters.get("preset") || "";
      if (parameters.has("seed")) byId("seed").value = parameters.get("seed");
      if (parameters.has("nodes")) byId("nodes").value = parameters.get("nodes");
      await reset();
    } else {
      const response = await fetch("/api/playground/state", { cache: "no-store" });
      draw(await response.json());
    }
    document.body.dataset.ready = "true";
  }

  start();
})();
