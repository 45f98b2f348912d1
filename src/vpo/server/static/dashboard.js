// The dashboard of `vpo serve` (/stats): fills the server-rendered page from the JSON API
// and draws its charts with the vendored Chart.js. No build step, no other host.
//
// Everything from the API is user data (file paths, policy names, error messages): it is
// only ever set as textContent or drawn on a canvas, never parsed as HTML. Units mirror
// the command line's (vpo/cli/output.py): sizes in powers of 1024, times in UTC.
"use strict";

(() => {
  const main = document.getElementById("dashboard");
  const RANGES = Array.from(document.querySelectorAll(".ranges a"), (a) => a.dataset.range);
  const TRACE_URL = main.dataset.traceUrl || "";
  const RECENT_LIMIT = 20;
  const FILE_RUNS_LIMIT = 50;
  const MISSING = "—";
  const UNKNOWN_WORKER = "(unknown)"; // the runs of no known host (vpo/db/workers.py)
  // Longer host names are cut on the chart's axis only (a phone's axis is narrower).
  const workerLabelLength = (width) => (width < 480 ? 14 : 24);

  // -- units, as the command line prints them -----------------------------------------------

  const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

  // Python rounds an exact half to even (`f"{1.25:.1f}"` is 1.2, `round(90.5)` is 90);
  // JavaScript rounds it up. These two keep the page's digits those of `vpo stats`.
  function roundHalfEven(x) {
    const floor = Math.floor(x);
    if (x - floor !== 0.5) return Math.round(x);
    return floor % 2 === 0 ? floor : floor + 1;
  }

  function fixed1(x) {
    const quarters = Math.abs(x) * 4; // exact: a tie at the second decimal is k/4, k odd
    if (Number.isInteger(quarters) && quarters % 2 === 1) {
      const tenths = roundHalfEven(Math.abs(x) * 10);
      return `${x < 0 ? "-" : ""}${(tenths / 10).toFixed(1)}`;
    }
    return x.toFixed(1);
  }

  function humanSize(size) {
    if (size === null || size === undefined) return MISSING;
    const sign = size < 0 ? "-" : "";
    let value = Math.abs(size);
    for (const unit of UNITS) {
      const limit = unit === "B" ? 1024 : 999.95;
      if (value < limit || unit === UNITS[UNITS.length - 1]) {
        return unit === "B" ? `${sign}${Math.trunc(value)} B` : `${sign}${fixed1(value)} ${unit}`;
      }
      value /= 1024;
    }
    return MISSING;
  }

  function humanDuration(seconds) {
    if (seconds === null || seconds === undefined) return MISSING;
    if (seconds < 60) return `${fixed1(seconds)}s`;
    const whole = roundHalfEven(seconds);
    let minutes = Math.floor(whole / 60);
    const secs = whole % 60;
    let hours = Math.floor(minutes / 60);
    minutes %= 60;
    const days = Math.floor(hours / 24);
    hours %= 24;
    const two = (n) => String(n).padStart(2, "0");
    if (days) return `${days}d ${hours}h`;
    if (hours) return `${hours}h ${two(minutes)}m`;
    return `${minutes}m ${two(secs)}s`;
  }

  // A phase's time: milliseconds below a second, where `0.0s` would say nothing.
  const phaseTime = (seconds) =>
    seconds !== null && seconds < 1 ? `${Math.round(seconds * 1000)} ms` : humanDuration(seconds);
  const count = (n) => Number(n).toLocaleString("en-US");
  const percent = (n) => `${fixed1(Number(n))}%`;
  const when = (stamp) => (stamp ? stamp.slice(0, 16).replace("T", " ") : MISSING);
  const shortId = (id) => id.replace(/-/g, "").slice(0, 8);

  // The units, for the tests (which hold them to vpo/cli/output.py) and the console.
  window.vpoUnits = Object.freeze({ humanSize, humanDuration, percent });

  // -- the DOM, text only ---------------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function card(id, value, detail) {
    const node = document.getElementById(id);
    node.querySelector(".value").textContent = value;
    node.querySelector(".detail").textContent = detail;
  }

  // -- the API ----------------------------------------------------------------------------------

  class ApiFailure extends Error {}

  async function api(path) {
    let response;
    try {
      response = await fetch(path, { headers: { Accept: "application/json" } });
    } catch (err) {
      throw new ApiFailure("the server cannot be reached.");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
    if (!response.ok) {
      const sentence = data && typeof data.error === "string" ? data.error : response.statusText;
      throw new ApiFailure(`${sentence} (HTTP ${response.status})`);
    }
    return data;
  }

  function query(params) {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value !== null && value !== undefined) search.set(name, value);
    }
    const text = search.toString();
    return text ? `?${text}` : "";
  }

  // -- state --------------------------------------------------------------------------------------

  let range = main.dataset.range;
  let generation = 0; // answers of an earlier range are dropped
  let policies = [];
  let policySort = { key: "files_processed", descending: true };
  const charts = {};

  function since() {
    return range === "all" ? null : range;
  }

  function setState(state, message) {
    main.dataset.state = state;
    main.setAttribute("aria-busy", state === "loading" ? "true" : "false");
    document.getElementById("status").textContent = message || "";
  }

  function showError(err) {
    setState("error", "");
    document.getElementById("error-text").textContent =
      err instanceof ApiFailure ? err.message : `unexpected problem: ${err}`;
    document.getElementById("error").hidden = false;
  }

  // -- charts -------------------------------------------------------------------------------------

  function colours() {
    const style = getComputedStyle(document.documentElement);
    const value = (name) => style.getPropertyValue(name).trim();
    return {
      text: value("--text"),
      muted: value("--muted"),
      line: value("--line"),
      ok: value("--ok"),
      fail: value("--fail"),
      accent: value("--accent"),
      series: value("--series").split(",").map((c) => c.trim()),
    };
  }

  // Draws `config` in the figure `id`, or says `empty` there when there is nothing to draw.
  function draw(id, config, empty) {
    const figure = document.getElementById(`chart-${id}`);
    const canvas = figure.querySelector("canvas");
    const note = figure.querySelector(".chart-empty");
    if (charts[id]) {
      charts[id].destroy();
      delete charts[id];
    }
    if (config === null) {
      figure.querySelector(".plot").hidden = true;
      note.textContent = empty;
      note.hidden = false;
      return;
    }
    figure.querySelector(".plot").hidden = false;
    note.hidden = true;
    const c = colours();
    Chart.defaults.color = c.muted;
    Chart.defaults.borderColor = c.line;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    config.options = Object.assign(
      { responsive: true, maintainAspectRatio: false, animation: false },
      config.options || {},
    );
    charts[id] = new Chart(canvas, config);
  }

  // A byte axis with round steps in its unit (200 KiB, 0.5 MiB; not 195.3 KiB).
  function sizeAxis(values) {
    const largest = Math.max(1, ...values.map((v) => Math.abs(v)));
    let unit = 1;
    while (largest / unit >= 1024) unit *= 1024;
    const rough = largest / unit / 5;
    const magnitude = 10 ** Math.floor(Math.log10(rough));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((m) => m >= rough);
    return { ticks: { stepSize: step * unit, callback: (value) => humanSize(value) } };
  }
  const sizeTooltip = {
    callbacks: { label: (item) => `${item.dataset.label || item.label}: ${humanSize(item.raw)}` },
  };

  function anyNonZero(values) {
    return values.some((v) => v !== 0);
  }

  function drawTrends(trends) {
    const c = colours();
    const labels = trends.map((t) => t.bucket);
    const saved = trends.map((t) => t.size_saved);
    draw(
      "saved",
      trends.length && anyNonZero(saved)
        ? {
            type: "bar",
            data: { labels, datasets: [{ label: "Saved", data: saved, backgroundColor: c.accent }] },
            options: { scales: { y: sizeAxis(saved) }, plugins: { legend: { display: false }, tooltip: sizeTooltip } },
          }
        : null,
      trends.length ? "No space saved in this time range." : "No runs in this time range.",
    );
    draw(
      "runs",
      trends.length
        ? {
            type: "bar",
            data: {
              labels,
              datasets: [
                { label: "Succeeded", data: trends.map((t) => t.successes), backgroundColor: c.ok },
                { label: "Failed", data: trends.map((t) => t.failures), backgroundColor: c.fail },
              ],
            },
            options: {
              scales: { x: { stacked: true }, y: { stacked: true, ticks: { precision: 0 } } },
            },
          }
        : null,
      "No runs in this time range.",
    );
  }

  function drawPolicies(rows) {
    const c = colours();
    const saved = rows.map((p) => p.total_size_saved);
    draw(
      "policies",
      rows.length && anyNonZero(saved)
        ? {
            type: "bar",
            data: {
              labels: rows.map((p) => p.policy_name),
              datasets: [{ label: "Saved", data: saved, backgroundColor: c.series }],
            },
            options: {
              indexAxis: "y",
              scales: { x: sizeAxis(saved) },
              plugins: { legend: { display: false }, tooltip: sizeTooltip },
            },
          }
        : null,
      rows.length ? "No policy saved space in this time range." : "No policy ran in this time range.",
    );
  }

  function drawTracks(summary) {
    const c = colours();
    const values = [
      summary.total_audio_removed,
      summary.total_subtitles_removed,
      summary.total_attachments_removed,
    ];
    draw(
      "tracks",
      anyNonZero(values)
        ? {
            type: "bar",
            data: {
              labels: ["Audio", "Subtitle", "Attachment"],
              datasets: [{ label: "Tracks removed", data: values, backgroundColor: c.series.slice(0, 3) }],
            },
            options: { plugins: { legend: { display: false } }, scales: { y: { ticks: { precision: 0 } } } },
          }
        : null,
      "No track was removed in this time range.",
    );
  }

  function drawComposition(composition) {
    const c = colours();
    for (const [id, counts] of [
      ["containers", composition.containers],
      ["codecs", composition.video_codecs],
      ["resolutions", composition.resolutions],
    ]) {
      const entries = Object.entries(counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
      draw(
        id,
        entries.length
          ? {
              type: "doughnut",
              data: {
                labels: entries.map((e) => e[0]),
                datasets: [
                  {
                    label: "Files",
                    data: entries.map((e) => e[1]),
                    backgroundColor: entries.map((e, i) => c.series[i % c.series.length]),
                    borderColor: getComputedStyle(document.documentElement).getPropertyValue("--panel").trim(),
                  },
                ],
              },
              options: { plugins: { legend: { position: "right" } } },
            }
          : null,
        "No file has been scanned yet.",
      );
    }
  }

  const workerName = (w) => (w.worker === null || w.worker === undefined ? UNKNOWN_WORKER : w.worker);

  function drawWorkers(rows) {
    const c = colours();
    // One bar per worker, each a finger high, however many workers there are.
    document.querySelector("#chart-workers .plot").style.height = `${Math.max(240, 60 + 28 * rows.length)}px`;
    draw(
      "workers",
      rows.length
        ? {
            type: "bar",
            data: {
              labels: rows.map(workerName),
              datasets: [
                { label: "Succeeded", data: rows.map((w) => w.successes), backgroundColor: c.ok },
                { label: "Failed", data: rows.map((w) => w.failures), backgroundColor: c.fail },
              ],
            },
            options: {
              indexAxis: "y",
              scales: {
                x: { stacked: true, ticks: { precision: 0 } },
                y: {
                  stacked: true,
                  ticks: {
                    callback(value) {
                      const name = this.getLabelForValue(value);
                      const most = workerLabelLength(this.chart.width);
                      return name.length > most ? `${name.slice(0, most - 1)}…` : name;
                    },
                  },
                },
              },
            },
          }
        : null,
      "No runs in this time range.",
    );
  }

  // -- cards ----------------------------------------------------------------------------------------

  function fillCards(s) {
    card(
      "card-runs",
      count(s.total_files_processed),
      `${count(s.total_successful)} successful · ${count(s.total_failed)} failed`,
    );
    card("card-saved", humanSize(s.total_size_saved), `${percent(s.avg_savings_percent)} of the size before`);
    const removed = s.total_audio_removed + s.total_subtitles_removed + s.total_attachments_removed;
    card(
      "card-tracks",
      count(removed),
      `${count(s.total_audio_removed)} audio · ${count(s.total_subtitles_removed)} subtitle · ` +
        `${count(s.total_attachments_removed)} attachment`,
    );
    card("card-transcoded", count(s.total_videos_transcoded), `${count(s.total_videos_skipped)} skipped`);
    card(
      "card-time",
      s.total_files_processed ? humanDuration(s.avg_processing_time) : MISSING,
      `${humanDuration(s.total_processing_time)} in all`,
    );
  }

  // -- the policy table ---------------------------------------------------------------------------

  function policyValue(p, key) {
    if (key === "tracks_removed") return p.audio_tracks_removed + p.subtitle_tracks_removed + p.attachments_removed;
    return p[key];
  }

  function fillPolicies() {
    const table = document.getElementById("policy-table");
    const { key, descending } = policySort;
    const rows = policies.slice().sort((a, b) => {
      const x = policyValue(a, key);
      const y = policyValue(b, key);
      let order;
      if (x === y) order = 0;
      else if (x === null) order = -1;
      else if (y === null) order = 1;
      else order = typeof x === "string" ? x.localeCompare(y) : x - y;
      if (order === 0) order = a.policy_name.localeCompare(b.policy_name) * (descending ? -1 : 1);
      return descending ? -order : order;
    });
    for (const th of table.querySelectorAll("th")) {
      const button = th.querySelector("button");
      if (button && button.dataset.sort === key) th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
    }
    const body = table.querySelector("tbody");
    body.replaceChildren(
      ...rows.map((p) =>
        el(
          "tr",
          {},
          el("td", { text: p.policy_name }),
          el("td", { class: "num", text: count(p.files_processed) }),
          el("td", { class: "num", text: percent(p.success_rate * 100) }),
          el("td", { class: "num", text: humanSize(p.total_size_saved) }),
          el("td", { class: "num", text: percent(p.avg_savings_percent) }),
          el("td", { class: "num", text: count(policyValue(p, "tracks_removed")) }),
          el("td", { class: "num", text: count(p.videos_transcoded) }),
          el("td", { class: "num", text: humanDuration(p.avg_processing_time) }),
          el("td", { text: when(p.last_used) }),
        ),
      ),
    );
    document.querySelector("#policies .table-empty").hidden = rows.length > 0;
  }

  document.querySelectorAll("#policy-table th button").forEach((button) => {
    button.addEventListener("click", () => {
      const key = button.dataset.sort;
      policySort =
        policySort.key === key
          ? { key, descending: !policySort.descending }
          : { key, descending: key !== "policy_name" };
      fillPolicies();
    });
  });

  // -- the worker table ----------------------------------------------------------------------------

  function fillWorkers(rows) {
    document.querySelector("#worker-table tbody").replaceChildren(
      ...rows.map((w) =>
        el(
          "tr",
          {},
          el("td", { class: w.worker === null ? "worker unknown" : "worker", text: workerName(w) }),
          el("td", { class: "num", text: count(w.runs) }),
          el("td", { class: w.failures ? "num failed" : "num", text: count(w.failures) }),
          el("td", { class: "num", text: humanSize(w.total_size_saved) }),
          el("td", { class: "num", text: humanDuration(w.busy_seconds) }),
          el("td", { text: when(w.last_seen) }),
        ),
      ),
    );
    document.querySelector("#workers .table-empty").hidden = rows.length > 0;
  }

  // -- lists of runs --------------------------------------------------------------------------------

  function runRows(tbody, runs) {
    tbody.replaceChildren(
      ...runs.map((run) => {
        const open = () => openRun(run.stats_id);
        return el(
          "tr",
          { class: "run", "data-stats-id": run.stats_id, onclick: open },
          el("td", {}, el("button", { type: "button", class: "link", text: shortId(run.stats_id), "aria-label": `Run ${run.stats_id}` })),
          el("td", { text: when(run.processed_at) }),
          el("td", { class: "path", text: run.file_path }),
          el("td", { text: run.policy_name }),
          el("td", { class: run.success ? "ok" : "failed", text: run.success ? "success" : "failed" }),
          el("td", { class: "num", text: humanSize(run.size_saved) }),
          el("td", { class: "num", text: humanDuration(run.duration_seconds) }),
        );
      }),
    );
  }

  async function loadRecent(mine) {
    const failedOnly = document.getElementById("failed-only").checked;
    const answer = await api(
      `/api/stats/recent${query({ limit: RECENT_LIMIT, failed_only: failedOnly ? "true" : null, since: since() })}`,
    );
    if (mine !== undefined && mine !== generation) return answer;
    runRows(document.querySelector("#recent-table tbody"), answer.items);
    const note = document.querySelector("#recent .table-empty");
    note.textContent = failedOnly ? "No run failed in this range." : "No run in this range.";
    note.hidden = answer.items.length > 0;
    return answer;
  }

  document.getElementById("failed-only").addEventListener("change", () => {
    loadRecent().catch(showError);
  });

  // -- one run --------------------------------------------------------------------------------------

  function facts(pairs) {
    return el(
      "dl",
      { class: "facts" },
      ...pairs.flatMap(([term, value]) => [el("dt", { text: term }), el("dd", {}, value)]),
    );
  }

  function stateText(state) {
    if (!state) return MISSING;
    const words = [];
    const flagsOnly = Object.values(state).every((v) => typeof v === "boolean");
    for (const [key, value] of Object.entries(state)) {
      if (value === null || (value === false && !flagsOnly)) continue;
      if (typeof value === "boolean") words.push(value ? key : `not ${key}`);
      else if (key === "channels") words.push(`${value} ch`);
      else if (key === "language" || key === "codec") words.push(String(value));
      else words.push(`${key} ${typeof value === "object" ? JSON.stringify(value) : value}`);
    }
    return words.join(", ") || MISSING;
  }

  function traceLink(traceId) {
    if (!TRACE_URL || !traceId || !/^https?:\/\//.test(TRACE_URL)) return null;
    const href = TRACE_URL.split("{trace_id}").join(encodeURIComponent(traceId));
    return el("a", { id: "trace-link", href, target: "_blank", rel: "noopener noreferrer", text: `Open trace ${traceId}` });
  }

  function tracks(kind, before, after, removed) {
    return [kind, `${count(before)} → ${count(after)} (${count(removed)} removed)`];
  }

  function transcodeText(run) {
    if (run.video_target_codec) return `${run.video_source_codec || "?"} → ${run.video_target_codec}`;
    if (run.video_transcode_skipped) return `skipped: ${run.video_skip_reason || "no reason recorded"}`;
    return run.video_source_codec ? `none (${run.video_source_codec} kept)` : "none";
  }

  function table(headers, rows) {
    return el(
      "div",
      { class: "scroll" },
      el(
        "table",
        {},
        el("thead", {}, el("tr", {}, ...headers.map(([text, cls]) => el("th", { scope: "col", class: cls, text })))),
        el(
          "tbody",
          {},
          ...rows.map((cells) => el("tr", {}, ...cells.map(([text, cls]) => el("td", { class: cls, text })))),
        ),
      ),
    );
  }

  function renderRun(run) {
    const body = [];
    body.push(
      facts([
        ["File", run.file_path],
        ["Policy", run.policy_name],
        ["Status", el("span", { class: run.success ? "ok" : "failed", text: run.success ? "success" : "failed" })],
        ["When (UTC)", run.processed_at.replace("T", " ").replace("Z", "")],
        ["Took", humanDuration(run.duration_seconds)],
        ["Size", `${humanSize(run.size_before)} → ${humanSize(run.size_after)} (saved ${humanSize(run.size_change)})`],
        tracks("Audio tracks", run.audio_tracks_before, run.audio_tracks_after, run.audio_tracks_removed),
        tracks("Subtitle tracks", run.subtitle_tracks_before, run.subtitle_tracks_after, run.subtitle_tracks_removed),
        tracks("Attachments", run.attachments_before, run.attachments_after, run.attachments_removed),
        ["Video transcode", transcodeText(run)],
        ["Audio tracks transcoded", count(run.audio_tracks_transcoded)],
        ["Phases completed", `${count(run.phases_completed)} of ${count(run.phases_total)}`],
        ["Run id", run.stats_id],
        ["Trace", traceLink(run.trace_id) || run.trace_id || MISSING],
      ]),
    );
    if (run.error_message) {
      body.push(el("h3", { text: "Error" }), el("pre", { class: "run-error", text: run.error_message }));
    }
    body.push(el("h3", { text: `Phases (${run.performance_metrics.length})` }));
    body.push(
      run.performance_metrics.length
        ? table(
            [["Phase"], ["Time", "num"], ["Read", "num"], ["Written", "num"], ["fps", "num"]],
            run.performance_metrics.map((p) => [
              [p.phase_name],
              [phaseTime(p.wall_time_seconds), "num"],
              [humanSize(p.bytes_read), "num"],
              [humanSize(p.bytes_written), "num"],
              [p.encoding_fps === null ? MISSING : p.encoding_fps.toFixed(1), "num"],
            ]),
          )
        : el("p", { class: "note", text: "No phase was recorded." }),
    );
    body.push(el("h3", { text: `Actions (${run.action_results.length})` }));
    body.push(
      run.action_results.length
        ? table(
            [["Action"], ["Track"], ["Before"], ["After"], ["Result"], ["Time", "num"]],
            run.action_results.map((a) => [
              [a.action_type],
              [a.track_type ? `${a.track_type} #${a.track_index ?? "?"}` : MISSING],
              [stateText(a.before_state)],
              [stateText(a.after_state)],
              [(a.success ? "done" : "failed") + (a.message ? `: ${a.message}` : "")],
              [a.duration_ms === null ? MISSING : `${count(a.duration_ms)} ms`, "num"],
            ]),
          )
        : el("p", { class: "note", text: "The run changed nothing." }),
    );
    return body;
  }

  async function openRun(statsId) {
    const dialog = document.getElementById("run-detail");
    const target = document.getElementById("run-body");
    document.getElementById("run-title").textContent = `Run ${shortId(statsId)}`;
    target.replaceChildren(el("p", { class: "status", text: "Loading…" }));
    dialog.dataset.state = "loading";
    if (!dialog.open) dialog.showModal();
    try {
      const run = await api(`/api/stats/${encodeURIComponent(statsId)}`);
      target.replaceChildren(...renderRun(run));
      dialog.dataset.state = "ready";
    } catch (err) {
      target.replaceChildren(el("p", { class: "error", text: `This run could not be loaded: ${err.message}` }));
      dialog.dataset.state = "error";
    }
  }

  document.getElementById("run-close").addEventListener("click", () => document.getElementById("run-detail").close());

  // -- files ------------------------------------------------------------------------------------------

  async function openFile(fileId) {
    const status = document.getElementById("file-status");
    const panel = document.getElementById("file-runs");
    try {
      const answer = await api(`/api/stats/files/${encodeURIComponent(fileId)}${query({ limit: FILE_RUNS_LIMIT })}`);
      document.getElementById("file-title").textContent = answer.file_path;
      runRows(panel.querySelector("tbody"), answer.history);
      panel.hidden = false;
      status.textContent = answer.history.length
        ? `${count(answer.history.length)} run(s), newest first${answer.history.length === FILE_RUNS_LIMIT ? ` (the latest ${FILE_RUNS_LIMIT})` : ""}.`
        : "This file has no recorded run.";
    } catch (err) {
      status.textContent = `That file could not be loaded: ${err.message}`;
    }
  }

  document.getElementById("file-search").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = document.getElementById("file-path").value;
    const status = document.getElementById("file-status");
    const list = document.getElementById("file-results");
    document.getElementById("file-runs").hidden = true;
    list.replaceChildren();
    status.textContent = "Searching…";
    try {
      const answer = await api(`/api/library/files${query({ path: text, limit: 20 })}`);
      if (!answer.files.length) {
        status.textContent = `No file's path contains “${text}”.`;
        return;
      }
      status.textContent = `${count(answer.files.length)} file(s) found.`;
      list.replaceChildren(
        ...answer.files.map((f) =>
          el(
            "li",
            {},
            el("button", { type: "button", "data-file-id": f.file_id, onclick: () => openFile(f.file_id) },
              `${f.file_path} — ${count(f.runs)} run(s)`),
          ),
        ),
      );
      if (answer.files.length === 1) await openFile(answer.files[0].file_id);
    } catch (err) {
      status.textContent = `The search failed: ${err.message}`;
    }
  });

  // -- loading everything for the range ---------------------------------------------------------------

  function bucketFor(summary) {
    if (range === "24h" || range === "7d" || range === "30d") return "day";
    if (range === "90d") return "week";
    if (range === "365d") return "month";
    const first = summary.earliest_processing ? Date.parse(summary.earliest_processing) : Date.now();
    const days = (Date.now() - first) / 86400000;
    return days <= 45 ? "day" : days <= 200 ? "week" : "month";
  }

  async function load() {
    const mine = ++generation;
    setState("loading", "Loading…");
    document.getElementById("error").hidden = true;
    try {
      const windowQuery = query({ since: since() });
      const [summary, policyAnswer, composition, workerAnswer] = await Promise.all([
        api(`/api/stats/summary${windowQuery}`),
        api(`/api/stats/policies${windowQuery}`),
        api("/api/library/composition"),
        api(`/api/stats/workers${windowQuery}`),
        loadRecent(mine),
      ]);
      const trends = await api(
        `/api/stats/trends${query({ since: since(), bucket: bucketFor(summary) })}`,
      );
      if (mine !== generation) return;
      let fresh = false;
      if (summary.total_files_processed === 0) {
        const everything = range === "all" ? summary : await api("/api/stats/summary");
        fresh = everything.total_files_processed === 0;
      }
      if (mine !== generation) return;
      document.getElementById("empty").hidden = !fresh;
      document.getElementById("figures").hidden = fresh;
      fillCards(summary);
      performance.mark("vpo:cards"); // benchmarks/bench_page.py: the cards are filled
      policies = policyAnswer.policies;
      fillPolicies();
      fillWorkers(workerAnswer.workers);
      drawTrends(trends.trends);
      drawPolicies(policies);
      drawTracks(summary);
      drawComposition(composition);
      drawWorkers(workerAnswer.workers);
      performance.mark("vpo:charts"); // and every chart is drawn (animation off)
      setState(fresh ? "empty" : "ready", "");
    } catch (err) {
      if (mine === generation) showError(err);
    }
  }

  function choose(next, push) {
    range = RANGES.includes(next) ? next : main.dataset.range;
    for (const a of document.querySelectorAll(".ranges a")) {
      if (a.dataset.range === range) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    if (push) history.pushState({ range }, "", `/stats?range=${encodeURIComponent(range)}`);
    load();
  }

  document.querySelectorAll(".ranges a").forEach((a) => {
    a.addEventListener("click", (event) => {
      if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      if (a.dataset.range !== range) choose(a.dataset.range, true);
    });
  });
  window.addEventListener("popstate", () => {
    choose(new URLSearchParams(location.search).get("range") || main.dataset.range, false);
  });
  document.getElementById("retry").addEventListener("click", load);
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", load);

  // An unknown ?range= was shown as the default: the address says which range is shown.
  if (new URLSearchParams(location.search).get("range") !== range) {
    history.replaceState({ range }, "", `/stats?range=${encodeURIComponent(range)}`);
  }
  if (typeof Chart === "undefined") {
    showError(new ApiFailure("the chart library did not load."));
  } else {
    load();
  }
})();
