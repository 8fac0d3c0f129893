// The live dashboard: reads /api/state of the node it was loaded from (or ?node=URL),
// then follows every member's /api/events stream (server-sent events) and redraws.
// Every second it records a sample of every member's state (a bounded history, charted
// by charts.js); the rewind bar redraws the rows from a recorded sample.
"use strict";

(() => {
  /** Most members followed at once (one event stream each). */
  const MEMBERS_MAX = 16;
  /** Most lines kept in the event list. */
  const EVENTS_MAX = 100;
  /** Least time between two redraws, in milliseconds. */
  const REDRAW_INTERVAL_MILLISECONDS = 100;
  /** Time between two samples of the cluster's state, in milliseconds. */
  const SAMPLE_INTERVAL_MILLISECONDS = 1000;
  /** Samples kept: five minutes at one sample a second; older ones are dropped. */
  const HISTORY_SAMPLES_MAX = 300;

  const parameters = new URLSearchParams(location.search);
  const origin = (parameters.get("node") || location.origin).replace(/\/+$/, "");
  const members = new Map(); // id → { id, name, url, state, live, source, lastIndex, relay, fsync }
  const order = [];
  const history = new LiveCharts.RingBuffer(HISTORY_SAMPLES_MAX);
  let sampleSequence = 0;
  /** The sequence number of the sample shown while rewound; null: live. */
  let rewindSequence = null;
  let redrawPending = false;
  let lastLeader = null;

  const byId = (id) => document.getElementById(id);

  function logEvent(text, className) {
    const list = byId("events");
    const item = RaftLog.element("li", className || "", `${new Date().toLocaleTimeString()}  ${text}`);
    list.prepend(item);
    while (list.children.length > EVENTS_MAX) list.lastChild.remove();
  }

  function showError(text) {
    byId("error").textContent = text || "";
  }

  function noteChanges(member, previous, state) {
    const name = state.name || member.name || state.id;
    if (!previous) {
      logEvent(`${name}: ${state.role} in term ${state.term}`);
      return;
    }
    if (previous.term !== state.term) logEvent(`${name}: term ${previous.term} → ${state.term}`);
    if (previous.role !== state.role) {
      const className = state.role === "leader" ? "election" : "";
      logEvent(`${name}: ${previous.role} → ${state.role} (term ${state.term})`, className);
    }
  }

  function receive(member, state) {
    noteChanges(member, member.state, state);
    member.state = state;
    if (state.name) member.name = state.name;
    for (const other of state.members || []) addMember(other);
    scheduleRedraw();
  }

  function addMember(description) {
    if (!description || !description.id || members.has(description.id)) return;
    if (members.size >= MEMBERS_MAX) return;
    const urls = description.http_urls || [];
    const url = urls.length ? String(urls[0]).replace(/\/+$/, "") : "";
    const member = { id: description.id, name: description.name || description.id, url, state: null, live: false, source: null, lastIndex: undefined, relay: null, fsync: null };
    members.set(member.id, member);
    order.push(member.id);
    follow(member);
    startRelay(member);
  }

  /** A hidden frame on the member's own address that posts its WAL fsync histogram here. */
  function startRelay(member) {
    if (!member.url) return;
    const frame = document.createElement("iframe");
    frame.hidden = true;
    frame.title = `${member.name} metrics relay`;
    frame.src = `${member.url}/dashboard/metrics-relay`;
    member.relay = frame;
    byId("relays").append(frame);
  }

  function receiveRelay(event) {
    const data = event.data;
    if (!data || data.kind !== "raftkv-wal-fsync") return;
    for (const member of members.values()) {
      if (member.relay && member.relay.contentWindow === event.source && member.url.startsWith(event.origin)) {
        member.fsync = data.histogram || null;
      }
    }
  }

  function follow(member) {
    if (!member.url || typeof EventSource === "undefined") return;
    const source = new EventSource(`${member.url}/api/events`);
    member.source = source;
    source.addEventListener("open", () => { member.live = true; scheduleRedraw(); });
    source.addEventListener("error", () => {
      if (member.live) logEvent(`${member.name}: event stream lost (retrying)`);
      member.live = false;
      scheduleRedraw();
    });
    source.addEventListener("state", (event) => {
      try {
        member.live = true;
        receive(member, JSON.parse(event.data));
      } catch (error) {
        showError(`bad state from ${member.name}: ${error}`);
      }
    });
  }

  function scheduleRedraw() {
    if (redrawPending) return;
    redrawPending = true;
    setTimeout(() => { redrawPending = false; redraw(); }, REDRAW_INTERVAL_MILLISECONDS);
  }

  function leaderOf(states) {
    let leader = null;
    for (const state of states) {
      if (state.role === "leader" && (!leader || state.term > leader.term)) leader = state;
    }
    return leader;
  }

  /** The row of a member, or of a member's record in a sample (both have id, name, live, state). */
  function rowFor(member) {
    if (member.state && member.live) return member.state;
    const base = member.state || { id: member.id, term: 0, commit: 0, applied: 0, entries: [], progress: [] };
    return Object.assign({}, base, { role: member.state ? "unreachable" : "unknown", name: member.name });
  }

  /** The row of member `id` in a recorded sample. */
  function pastRowFor(sample, id) {
    const record = sample.members.find((candidate) => candidate.id === id);
    return rowFor(record || { id, name: members.get(id).name, live: false, state: null });
  }

  function byName(first, second) {
    return members.get(first).name.localeCompare(members.get(second).name, undefined, { numeric: true });
  }

  function redraw() {
    order.sort(byName);
    const rows = order.map((id) => rowFor(members.get(id)));
    noteLeader(leaderOf(rows));
    const sample = rewoundSample();
    if (sample) drawPast(sample);
    else drawLive(rows);
    drawConnections();
  }

  function drawLive(rows) {
    const leader = leaderOf(rows);
    const previousLast = new Map(order.map((id) => [id, members.get(id).lastIndex]));
    RaftLog.render(byId("cluster"), rows, { leaderId: leader ? leader.id : null, previousLast });
    for (const id of order) {
      const member = members.get(id);
      if (member.state) member.lastIndex = member.state.last_index;
    }
    byId("summary").textContent = leader
      ? `leader ${leader.name || leader.id} · term ${leader.term} · commit ${leader.commit}`
      : "no leader known";
  }

  function drawPast(sample) {
    const rows = order.map((id) => pastRowFor(sample, id));
    const leader = leaderOf(rows);
    RaftLog.render(byId("cluster"), rows, { leaderId: leader ? leader.id : null });
    const secondsAgo = Math.round((Date.now() - sample.time) / 1000);
    const when = `${new Date(sample.time).toLocaleTimeString()} (${secondsAgo} s ago)`;
    byId("summary").textContent = leader
      ? `rewound to ${when} · leader ${leader.name || leader.id} · term ${leader.term} · commit ${leader.commit}`
      : `rewound to ${when} · no leader known`;
  }

  function drawConnections() {
    const live = order.filter((id) => members.get(id).live).length;
    byId("connections").innerHTML = "";
    const dot = RaftLog.element("span", `status-dot${live === order.length && live > 0 ? " live" : ""}`);
    byId("connections").append(dot, `${live}/${order.length} nodes streaming`);
  }

  function noteLeader(leader) {
    if (!leader) return;
    if (lastLeader !== null && lastLeader !== `${leader.id}/${leader.term}`) {
      logEvent(`new leader: ${leader.name || leader.id} in term ${leader.term}`, "election");
    }
    lastLeader = `${leader.id}/${leader.term}`;
  }

  /** Records every member's current state as one sample of the history. */
  function takeSample() {
    if (order.length > 0) {
      sampleSequence += 1;
      const records = order.map((id) => {
        const member = members.get(id);
        return { id, name: member.name, live: member.live, state: member.state, fsync: member.live ? member.fsync : null };
      });
      history.push({ sequence: sampleSequence, time: Date.now(), members: records });
      drawHistory();
    }
    setTimeout(takeSample, SAMPLE_INTERVAL_MILLISECONDS);
  }

  /** The position in the history of the sample shown (the newest one when live). */
  function shownPosition() {
    if (history.length === 0) return 0;
    if (rewindSequence === null) return history.length - 1;
    const position = rewindSequence - history.at(0).sequence;
    return Math.min(Math.max(position, 0), history.length - 1);
  }

  function rewoundSample() {
    return rewindSequence === null || history.length === 0 ? null : history.at(shownPosition());
  }

  /** Shows the sample at `position` (the newest position means live). */
  function rewindTo(position) {
    const newest = history.length - 1;
    rewindSequence = position >= newest || newest < 0 ? null : history.at(Math.max(position, 0)).sequence;
    drawHistory();
    redraw();
  }

  /** Charts, rewind bar and its leader-change marks. */
  function drawHistory() {
    const samples = history.toArray();
    const sample = rewoundSample();
    LiveCharts.render(byId("charts"), samples, order.slice(), sample ? sample.time : null);
    const bar = byId("rewind");
    bar.max = String(Math.max(samples.length - 1, 0));
    bar.value = String(shownPosition());
    bar.dataset.mode = sample ? "past" : "live";
    bar.dataset.samples = String(samples.length);
    document.body.classList.toggle("rewinding", Boolean(sample));
    const span = Math.max(samples.length - 1, 1);
    const marks = LiveCharts.leaderChanges(samples).map((change) => {
      const mark = RaftLog.element("span", "rewind-mark");
      mark.style.left = `${(change.position / span) * 100}%`;
      mark.title = `${change.name} leads term ${change.term}`;
      return mark;
    });
    byId("rewind-marks").replaceChildren(...marks);
    const seconds = samples.length ? Math.round((samples[samples.length - 1].time - samples[0].time) / 1000) : 0;
    byId("rewind-position").textContent = sample
      ? `${new Date(sample.time).toLocaleTimeString()} · sample ${shownPosition() + 1} of ${samples.length}`
      : `live · ${samples.length} samples over ${seconds} s (at most ${HISTORY_SAMPLES_MAX})`;
  }

  /** Jumps to the last sample led by the previous leader, before the latest change not after the one shown. */
  function rewindBeforeLeaderChange() {
    const current = rewindSequence === null ? history.length : shownPosition();
    const changes = LiveCharts.leaderChanges(history.toArray()).filter((change) => change.position <= current);
    const change = changes[changes.length - 1];
    if (change && change.previousPosition !== null) rewindTo(change.previousPosition);
  }

  /** Jumps to the first sample of the next leader change after the one shown. */
  function rewindToNextLeaderChange() {
    const current = shownPosition();
    const change = LiveCharts.leaderChanges(history.toArray()).find((candidate) => candidate.position > current);
    rewindTo(change ? change.position : history.length - 1);
  }

  function bindRewindBar() {
    byId("rewind").addEventListener("input", (event) => rewindTo(Number(event.target.value)));
    byId("rewind-live").addEventListener("click", () => rewindTo(history.length - 1));
    byId("rewind-previous-change").addEventListener("click", rewindBeforeLeaderChange);
    byId("rewind-next-change").addEventListener("click", rewindToNextLeaderChange);
  }

  async function start() {
    try {
      const response = await fetch(`${origin}/api/state`, { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const state = await response.json();
      const self = (state.members || []).find((member) => member.id === state.id);
      if (!self || !(self.http_urls || []).length) {
        addMember({ id: state.id, name: state.name, http_urls: [origin] });
      }
      for (const member of state.members || []) addMember(member);
      const member = members.get(state.id);
      if (member) receive(member, state);
      showError("");
    } catch (error) {
      showError(`cannot read ${origin}/api/state: ${error}. Is this page served by a running raftkv node?`);
      setTimeout(start, 2000);
      return;
    }
    redraw();
  }

  byId("legend").append(RaftLog.legend());
  window.addEventListener("message", receiveRelay);
  bindRewindBar();
  start();
  takeSample();
})();
