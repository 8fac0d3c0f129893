// The live dashboard's bounded history and its time-series charts: a ring buffer of
// cluster samples, the figures derived from them (commit rate, apply lag, WAL fsync p99,
// follower lag, leader changes) and hand-drawn SVG charts. No dependencies.
"use strict";

const LiveCharts = (() => {
  const SVG_NAMESPACE = "http://www.w3.org/2000/svg";
  /** Size of a chart's drawing area in SVG units (the SVG scales to its box). */
  const CHART_WIDTH = 560;
  const CHART_HEIGHT = 150;
  /** Margins around the plot, in SVG units: left (y labels), right, top, bottom (x labels). */
  const MARGIN = { left: 46, right: 10, top: 16, bottom: 20 };
  /** One colour per member, by its position in the sorted member list. */
  const PALETTE = ["#2563eb", "#c2410c", "#15803d", "#7c3aed", "#0891b2", "#be185d", "#a16207", "#4b5563"];
  /** The quantile the WAL fsync chart shows. */
  const FSYNC_QUANTILE = 0.99;

  /** A ring buffer holding at most `capacity` items; the oldest is overwritten first. */
  class RingBuffer {
    constructor(capacity) {
      this.capacity = capacity;
      this.items = [];
      this.start = 0;
    }

    push(item) {
      if (this.items.length < this.capacity) {
        this.items.push(item);
        return;
      }
      this.items[this.start] = item;
      this.start = (this.start + 1) % this.capacity;
    }

    get length() {
      return this.items.length;
    }

    /** The item at `position` counted from the oldest (0), or undefined. */
    at(position) {
      if (position < 0 || position >= this.items.length) return undefined;
      return this.items[(this.start + position) % this.items.length];
    }

    toArray() {
      return this.items.slice(this.start).concat(this.items.slice(0, this.start));
    }
  }

  function svg(tag, attributes, text) {
    const node = document.createElementNS(SVG_NAMESPACE, tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  /** The leader of a sample: the live leader with the highest term, or null. */
  function leaderOf(sample) {
    let leader = null;
    for (const member of sample.members) {
      if (!member.live || !member.state || member.state.role !== "leader") continue;
      if (!leader || member.state.term > leader.state.term) leader = member;
    }
    return leader;
  }

  /**
   * Leader changes in `samples`: for every sample whose leader (node and term) differs from
   * the last leader seen, `{ position, time, name, term, previousPosition }`, where
   * `previousPosition` is the last sample still led by the previous leader (or null).
   */
  function leaderChanges(samples) {
    const changes = [];
    let lastKey = null;
    let lastPosition = null;
    samples.forEach((sample, position) => {
      const leader = leaderOf(sample);
      if (!leader) return;
      const key = `${leader.id}/${leader.state.term}`;
      if (lastKey !== null && key !== lastKey) {
        changes.push({ position, time: sample.time, name: leader.name, term: leader.state.term, previousPosition: lastPosition });
      }
      lastKey = key;
      lastPosition = position;
    });
    return changes;
  }

  /** The highest commit index any live member reports in `sample`, or null. */
  function clusterCommit(sample) {
    const commits = sample.members.filter((member) => member.live && member.state).map((member) => member.state.commit);
    return commits.length ? Math.max(...commits) : null;
  }

  /** Committed entries per second between consecutive samples: one series. */
  function commitRateSeries(samples) {
    const points = [];
    for (let position = 1; position < samples.length; position++) {
      const before = clusterCommit(samples[position - 1]);
      const after = clusterCommit(samples[position]);
      const seconds = (samples[position].time - samples[position - 1].time) / 1000;
      if (before === null || after === null || seconds <= 0) continue;
      points.push([samples[position].time, Math.max(0, after - before) / seconds]);
    }
    return [{ name: "cluster", colour: PALETTE[0], points }];
  }

  /** One series per member, from `value(member, sample, position)` (null: no point). */
  function perMemberSeries(samples, memberIds, value) {
    return memberIds.map((id, colourPosition) => {
      const points = [];
      let name = id;
      samples.forEach((sample, position) => {
        const member = sample.members.find((candidate) => candidate.id === id);
        if (!member) return;
        name = member.name;
        const figure = value(member, sample, position);
        if (figure !== null && Number.isFinite(figure)) points.push([sample.time, figure]);
      });
      return { name, colour: PALETTE[colourPosition % PALETTE.length], points };
    });
  }

  /** Committed but not yet applied entries: commit index − applied index, per member. */
  function applyLag(member) {
    return member.live && member.state ? member.state.commit - member.state.applied : null;
  }

  /** Entries the leader holds that a follower has not acknowledged: leader's last index − match. */
  function followerLag(member, sample) {
    const leader = leaderOf(sample);
    if (!leader || leader.id === member.id) return null;
    const progress = (leader.state.progress || []).find((view) => String(view.id) === String(member.id));
    return progress ? Math.max(0, leader.state.last_index - progress.match) : null;
  }

  /**
   * The `quantile` of the observations between two cumulative histograms (`buckets`:
   * `[upper bound, cumulative count]`, ascending), interpolated within the bucket as
   * Prometheus' histogram_quantile does; null if nothing was observed in between.
   */
  function histogramQuantile(before, after, quantile) {
    if (!before || !after || after.buckets.length !== before.buckets.length) return null;
    const counts = after.buckets.map(([bound, count], position) => [bound, count - before.buckets[position][1]]);
    const total = counts.length ? counts[counts.length - 1][1] : 0;
    if (total <= 0) return null;
    const rank = quantile * total;
    let lowerBound = 0;
    let lowerCount = 0;
    for (const [bound, count] of counts) {
      if (count >= rank) {
        if (!Number.isFinite(bound)) return lowerBound;
        const share = count > lowerCount ? (rank - lowerCount) / (count - lowerCount) : 1;
        return lowerBound + (bound - lowerBound) * share;
      }
      lowerBound = bound;
      lowerCount = count;
    }
    return lowerBound;
  }

  /** WAL fsync p99 in milliseconds between this sample and the previous one, per member. */
  function fsyncSeries(samples, memberIds) {
    return perMemberSeries(samples, memberIds, (member, sample, position) => {
      if (position === 0 || !member.fsync) return null;
      const previous = samples[position - 1].members.find((candidate) => candidate.id === member.id);
      const seconds = histogramQuantile(previous && previous.fsync, member.fsync, FSYNC_QUANTILE);
      return seconds === null ? null : seconds * 1000;
    });
  }

  /** The four charts' definitions and series for `samples`. */
  function chartsFor(samples, memberIds) {
    return [
      { key: "commit-rate", title: "Commit rate", unit: "entries/s", series: commitRateSeries(samples) },
      { key: "apply-lag", title: "Apply lag (commit − applied)", unit: "entries", series: perMemberSeries(samples, memberIds, applyLag) },
      { key: "wal-fsync-p99", title: "WAL fsync latency p99", unit: "ms", series: fsyncSeries(samples, memberIds) },
      { key: "follower-lag", title: "Follower lag behind the leader (last index − match)", unit: "entries", series: perMemberSeries(samples, memberIds, followerLag) },
    ];
  }

  /** A round upper bound for the y axis: 1, 2 or 5 times a power of ten, at least `value`. */
  function niceMaximum(value) {
    if (!(value > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 5, 10]) {
      if (step * power >= value) return step * power;
    }
    return 10 * power;
  }

  function formatNumber(value) {
    if (value >= 100 || value === 0) return String(Math.round(value));
    if (value >= 10) return value.toFixed(1).replace(/\.0$/, "");
    return String(Number(value.toPrecision(2)));
  }

  /** Maps time (milliseconds) and value to SVG coordinates. */
  function scales(timeRange, maximum) {
    const width = CHART_WIDTH - MARGIN.left - MARGIN.right;
    const height = CHART_HEIGHT - MARGIN.top - MARGIN.bottom;
    const span = Math.max(timeRange.last - timeRange.first, 1);
    return {
      x: (time) => MARGIN.left + ((time - timeRange.first) / span) * width,
      y: (value) => MARGIN.top + height - (Math.min(value, maximum) / maximum) * height,
    };
  }

  function drawAxes(root, scale, timeRange, maximum, unit) {
    for (const value of [0, maximum / 2, maximum]) {
      const y = scale.y(value);
      root.append(svg("line", { class: "grid", x1: MARGIN.left, x2: CHART_WIDTH - MARGIN.right, y1: y, y2: y }));
      root.append(svg("text", { class: "axis-label", x: MARGIN.left - 4, y: y + 3, "text-anchor": "end" }, formatNumber(value)));
    }
    root.append(svg("text", { class: "axis-unit", x: 2, y: 10 }, unit));
    const seconds = Math.round((timeRange.last - timeRange.first) / 1000);
    root.append(svg("text", { class: "axis-label", x: MARGIN.left, y: CHART_HEIGHT - 4 }, `−${seconds} s`));
    root.append(svg("text", { class: "axis-label", x: CHART_WIDTH - MARGIN.right, y: CHART_HEIGHT - 4, "text-anchor": "end" }, "now"));
  }

  function drawLeaderChanges(root, scale, changes) {
    for (const change of changes) {
      const x = scale.x(change.time);
      const group = svg("g", { class: "leader-change", "data-term": change.term });
      group.append(svg("line", { x1: x, x2: x, y1: MARGIN.top - 4, y2: CHART_HEIGHT - MARGIN.bottom }));
      const rightHalf = x > CHART_WIDTH / 2;
      const label = { x: rightHalf ? x - 3 : x + 3, y: MARGIN.top - 6, "text-anchor": rightHalf ? "end" : "start" };
      group.append(svg("text", label, `${change.name} leads (term ${change.term})`));
      group.append(svg("title", {}, `leader change: ${change.name} leads term ${change.term}`));
      root.append(group);
    }
  }

  function drawSeries(root, scale, series) {
    const line = svg("polyline", {
      class: "series",
      stroke: series.colour,
      points: series.points.map(([time, value]) => `${scale.x(time).toFixed(1)},${scale.y(value).toFixed(1)}`).join(" "),
      "data-series": series.name,
      "data-points": series.points.length,
      "data-max": series.points.reduce((largest, [, value]) => Math.max(largest, value), 0),
    });
    root.append(line);
    if (series.points.length === 1) {
      const [time, value] = series.points[0];
      root.append(svg("circle", { class: "series-dot", cx: scale.x(time), cy: scale.y(value), r: 2, fill: series.colour }));
    }
  }

  function legendFor(chart) {
    const legend = document.createElement("div");
    legend.className = "chart-legend";
    for (const series of chart.series) {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = series.colour;
      const last = series.points.length ? series.points[series.points.length - 1][1] : null;
      item.append(swatch, `${series.name}${last === null ? "" : `: ${formatNumber(last)} ${chart.unit}`}`);
      legend.append(item);
    }
    return legend;
  }

  /** One chart as a figure: title, SVG plot (series, leader changes, rewind cursor), legend. */
  function chartFigure(chart, timeRange, changes, cursorTime) {
    const largest = Math.max(0, ...chart.series.flatMap((series) => series.points.map(([, value]) => value)));
    const maximum = niceMaximum(largest);
    const scale = scales(timeRange, maximum);
    const root = svg("svg", { viewBox: `0 0 ${CHART_WIDTH} ${CHART_HEIGHT}`, class: "chart", "data-chart": chart.key, role: "img" });
    root.append(svg("title", {}, `${chart.title} (${chart.unit})`));
    drawAxes(root, scale, timeRange, maximum, chart.unit);
    drawLeaderChanges(root, scale, changes);
    for (const series of chart.series) drawSeries(root, scale, series);
    if (cursorTime !== null) {
      const x = scale.x(cursorTime);
      root.append(svg("line", { class: "rewind-cursor", x1: x, x2: x, y1: MARGIN.top, y2: CHART_HEIGHT - MARGIN.bottom }));
    }
    const figure = document.createElement("figure");
    figure.className = "chart-box";
    const caption = document.createElement("figcaption");
    caption.textContent = chart.title;
    figure.append(caption, root, legendFor(chart));
    return figure;
  }

  /**
   * Draws the charts of `samples` (oldest first) into `container`. `memberIds`: the
   * members in display order (their colours); `cursorTime`: the rewound time, or null.
   */
  function render(container, samples, memberIds, cursorTime) {
    const timeRange = samples.length
      ? { first: samples[0].time, last: samples[samples.length - 1].time }
      : { first: 0, last: 1 };
    const changes = leaderChanges(samples);
    const figures = chartsFor(samples, memberIds).map((chart) => chartFigure(chart, timeRange, changes, cursorTime));
    container.replaceChildren(...figures);
  }

  /**
   * Reads a WAL fsync histogram from Prometheus text (`etcd_disk_wal_fsync_duration_seconds`):
   * `{ buckets: [[upper bound in seconds, cumulative count], …] }`, or null if absent.
   */
  function parseFsyncHistogram(text) {
    const pattern = /^etcd_disk_wal_fsync_duration_seconds_bucket\{le="([^"]+)"\}\s+([0-9.eE+-]+)\s*$/;
    const buckets = [];
    for (const line of text.split("\n")) {
      const match = pattern.exec(line);
      if (!match) continue;
      const bound = match[1] === "+Inf" ? Infinity : Number(match[1]);
      buckets.push([bound, Number(match[2])]);
    }
    buckets.sort((first, second) => first[0] - second[0]);
    return buckets.length ? { buckets } : null;
  }

  return { RingBuffer, render, leaderOf, leaderChanges, histogramQuantile, parseFsyncHistogram };
})();
