// Draws a Raft cluster the way the seed articles do: one row per node, the log as boxes
// (index above, term in the box, command below), committed entries solid, uncommitted dashed.
// Shared by the live dashboard and the playground. No dependencies.
"use strict";

const RaftLog = (() => {
  /** Most index columns drawn; older entries are summarised as "… N earlier". */
  const COLUMNS_MAX = 96;

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  /** A stable hue per term, so every node draws the same term in the same colour. */
  function termHue(term) {
    return (Number(term) * 67 + 205) % 360;
  }

  /** The first and last index columns to draw for these nodes. */
  function columnRange(nodes) {
    let last = 0;
    let first = Infinity;
    for (const node of nodes) {
      const entries = node.entries || [];
      if (entries.length === 0) continue;
      first = Math.min(first, entries[0].index);
      last = Math.max(last, entries[entries.length - 1].index);
    }
    if (last === 0) return { first: 1, last: 0 };
    first = Math.max(first, last - COLUMNS_MAX + 1, 1);
    return { first, last };
  }

  function entryBox(entry, node, column, fresh) {
    const committed = entry.index <= node.commit;
    const box = element("div", `entry kind-${entry.kind} ${committed ? "committed" : "uncommitted"}${fresh ? " fresh" : ""}`);
    box.style.gridColumn = String(column);
    box.style.setProperty("--term-hue", termHue(entry.term));
    box.dataset.index = entry.index;
    box.dataset.term = entry.term;
    box.dataset.committed = committed ? "true" : "false";
    box.dataset.summary = entry.summary || "";
    box.title = `index ${entry.index}, term ${entry.term}: ${entry.summary || ""}${committed ? " (committed)" : " (not committed)"}`;
    box.append(element("span", "entry-term", entry.term), element("span", "entry-command", entry.summary || ""));
    return box;
  }

  function marker(kind, index, range, text) {
    if (index < range.first || index > range.last + 1) return null;
    const mark = element("div", `marker ${kind}`, text);
    mark.style.gridColumn = String(index - range.first + 1);
    return mark;
  }

  function head(node, options, progress) {
    const cell = element("div", "node-head");
    const name = element("div", "node-name", node.name || node.id);
    if (node.label) name.append(element("span", "label", node.label));
    const badges = element("span", "badges");
    badges.append(element("span", "role", node.role), element("span", "term", `term ${node.term}`));
    name.append(badges);
    cell.append(name, element("div", "indexes", `commit ${node.commit} · applied ${node.applied}`));
    if (progress) {
      const line = element("div", "progress");
      line.title = "the leader's view of this follower";
      line.append("leader: match ", element("b", "", progress.match), " next ", element("b", "", progress.next), ` ${progress.state}`);
      cell.append(line);
    } else if (node.role === "leader") {
      cell.append(element("div", "progress", `last index ${node.last_index}`));
    }
    if (options.decorateHead) options.decorateHead(node, cell);
    return cell;
  }

  function logCells(node, range, previous, progress) {
    const log = element("div", "log");
    const columns = Math.max(range.last - range.first + 2, 1);
    log.style.gridTemplateColumns = `repeat(${columns}, var(--box))`;
    const entries = node.entries || [];
    const skipped = entries.filter((entry) => entry.index < range.first).length;
    if (skipped > 0) log.title = `${skipped} older entries not drawn`;
    for (const entry of entries) {
      if (entry.index < range.first) continue;
      const fresh = previous !== undefined && entry.index > previous;
      log.append(entryBox(entry, node, entry.index - range.first + 1, fresh));
    }
    if (progress) {
      const matchMark = progress.match >= range.first ? marker("match", progress.match, range, "▲match") : null;
      const nextMark = progress.next !== progress.match + 1 ? marker("next", progress.next, range, "▲next") : null;
      if (matchMark) log.append(matchMark);
      if (nextMark) log.append(nextMark);
    }
    return log;
  }

  function ruler(range) {
    const row = element("div", "ruler");
    row.append(element("div", "node-head", "log index"));
    const log = element("div", "log");
    log.style.gridTemplateColumns = `repeat(${Math.max(range.last - range.first + 2, 1)}, var(--box))`;
    log.style.paddingTop = "2px";
    for (let index = range.first; index <= range.last; index++) {
      const tick = element("div", "tick", index);
      tick.style.gridColumn = String(index - range.first + 1);
      tick.style.gridRow = "1";
      log.append(tick);
    }
    row.append(log);
    return row;
  }

  /**
   * Draws `nodes` into `container`. Options: `leaderId` (whose progress to show on the
   * follower rows), `decorateHead(node, cell)` (adds controls), `previousLast` (map node
   * id → last index drawn before; newer boxes are animated).
   */
  function render(container, nodes, options = {}) {
    const stickRight = container.scrollLeft + container.clientWidth >= container.scrollWidth - 8;
    const range = columnRange(nodes);
    const leader = nodes.find((node) => node.id === options.leaderId);
    const progressOf = new Map(((leader && leader.progress) || []).map((progress) => [String(progress.id), progress]));
    const rows = [ruler(range)];
    for (const node of nodes) {
      const progress = node.role === "leader" ? null : progressOf.get(String(node.id));
      const row = element("div", `node-row role-${node.role}`);
      row.dataset.node = node.id;
      row.dataset.name = node.name || node.id;
      row.dataset.role = node.role;
      row.dataset.term = node.term;
      row.dataset.commit = node.commit;
      row.dataset.applied = node.applied;
      const previous = options.previousLast ? options.previousLast.get(String(node.id)) : undefined;
      row.append(head(node, options, progress), logCells(node, range, previous, progress));
      rows.push(row);
    }
    container.replaceChildren(...rows);
    if (stickRight) container.scrollLeft = container.scrollWidth;
  }

  /** A legend explaining the drawing. */
  function legend() {
    const box = element("div", "legend");
    const solid = element("span", "entry committed");
    solid.style.setProperty("--term-hue", termHue(2));
    const dashed = element("span", "entry uncommitted");
    dashed.style.setProperty("--term-hue", termHue(2));
    const first = element("span");
    first.append(solid, "committed (solid)");
    const second = element("span");
    second.append(dashed, "not yet committed (dashed)");
    box.append(first, second, element("span", "", "box: term on top, command below (log index in the ruler above); colour = term; ▲match = leader's match index for that follower"));
    return box;
  }

  return { render, legend, element, termHue };
})();
