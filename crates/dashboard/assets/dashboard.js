// The live dashboard: reads /api/state of the node it was loaded from (or ?node=URL),
// then follows every member's /api/events stream (server-sent events) and redraws.
"use strict";

(() => {
  /** Most members followed at once (one event stream each). */
  const MEMBERS_MAX = 16;
  /** Most lines kept in the event list. */
  const EVENTS_MAX = 100;
  /** Least time between two redraws, in milliseconds. */
  const REDRAW_INTERVAL_MILLISECONDS = 100;

  const parameters = new URLSearchParams(location.search);
  const origin = (parameters.get("node") || location.origin).replace(/\/+$/, "");
  const members = new Map(); // id → { id, name, url, state, live, source, lastIndex }
  const order = [];
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
    const member = { id: description.id, name: description.name || description.id, url, state: null, live: false, source: null, lastIndex: undefined };
    members.set(member.id, member);
    order.push(member.id);
    follow(member);
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

  function rowFor(member) {
    if (member.state && member.live) return member.state;
    const base = member.state || { id: member.id, term: 0, commit: 0, applied: 0, entries: [], progress: [] };
    return Object.assign({}, base, { role: member.state ? "unreachable" : "unknown", name: member.name });
  }

  function byName(first, second) {
    return members.get(first).name.localeCompare(members.get(second).name, undefined, { numeric: true });
  }

  function redraw() {
    order.sort(byName);
    const rows = order.map((id) => rowFor(members.get(id)));
    const leader = leaderOf(rows);
    const previousLast = new Map(order.map((id) => [id, members.get(id).lastIndex]));
    RaftLog.render(byId("cluster"), rows, { leaderId: leader ? leader.id : null, previousLast });
    for (const id of order) {
      const member = members.get(id);
      if (member.state) member.lastIndex = member.state.last_index;
    }
    const live = order.filter((id) => members.get(id).live).length;
    byId("connections").innerHTML = "";
    const dot = RaftLog.element("span", `status-dot${live === order.length && live > 0 ? " live" : ""}`);
    byId("connections").append(dot, `${live}/${order.length} nodes streaming`);
    if (leader) {
      byId("summary").textContent = `leader ${leader.name || leader.id} · term ${leader.term} · commit ${leader.commit}`;
      if (lastLeader !== null && lastLeader !== `${leader.id}/${leader.term}`) {
        logEvent(`new leader: ${leader.name || leader.id} in term ${leader.term}`, "election");
      }
      lastLeader = `${leader.id}/${leader.term}`;
    } else {
      byId("summary").textContent = "no leader known";
    }
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
  start();
})();
