/* Runboard admin panel: live refresh, log tail, stop confirmation, local-time toggle.
 * Pages work without it (filters are GET forms, refresh is a reload).  No inline scripts:
 * PAGE_CSP allows only this file.  Hooks are data attributes documented in the templates. */
(function () {
  "use strict";
  var PERIOD = 2000;
  var LOCAL_KEY = "runboard.localTime";

  function visible() { return document.visibilityState === "visible"; }

  function parseIso(text) { return new Date(text.replace(/(\.\d{3})\d+/, "$1")); }

  function showLocal() { try { return localStorage.getItem(LOCAL_KEY) === "1"; } catch (e) { return false; } }

  function renderTimes(root) {
    var local = showLocal();
    root.querySelectorAll("time[data-utc]").forEach(function (el) {
      el.textContent = local ? parseIso(el.dataset.utc).toLocaleString() : el.dataset.utc;
    });
    var zone = document.getElementById("log-time-zone");
    if (zone) { zone.textContent = local ? "local" : "UTC"; }
  }

  /* One container, replaced as a unit when its fragment changed (ETag / 304). */
  function liveContainer(el) {
    var busy = false;
    function tick() {
      if (busy || !visible() || el.dataset.live === "false") { return; }
      busy = true;
      var headers = el.dataset.etag ? { "If-None-Match": el.dataset.etag } : {};
      fetch(el.dataset.refreshUrl, { headers: headers, cache: "no-store", credentials: "same-origin" })
        .then(function (response) {
          if (response.status === 200) {
            el.dataset.etag = response.headers.get("ETag") || "";
            return response.text().then(function (html) {
              el.innerHTML = html;            // the one swap: no intermediate state is shown
              copyLiveMeta(el);
              renderTimes(document);
              startStopCounters(el);
              var badge = el.querySelector("#session-state");
              if (badge && ["completed", "failed", "stopped"].indexOf(badge.dataset.state) >= 0) {
                el.dataset.live = "false";
              }
            });
          }
        })
        .catch(function () { /* offline or restarting: try again next tick */ })
        .then(function () { busy = false; });
    }
    setInterval(tick, PERIOD);
    document.addEventListener("visibilitychange", function () { if (visible()) { tick(); } });
  }

  /* The fragment's hidden span[data-meta] copies refresh the Details list outside it
   * (worker, started, finished), so no part of the page shows an older state. */
  function copyLiveMeta(root) {
    root.querySelectorAll("#session-meta-live [data-meta]").forEach(function (source) {
      var target = document.getElementById(source.dataset.meta);
      if (target && target.innerHTML !== source.innerHTML) { target.innerHTML = source.innerHTML; }
    });
  }

  /* "stop requested — waiting for the job (Ns)": counted from the server's N, no clock skew. */
  function startStopCounters(root) {
    root.querySelectorAll("#stop-elapsed").forEach(function (el) {
      var base = parseInt(el.textContent, 10) || 0;
      var started = Date.now();
      var timer = setInterval(function () {
        if (!document.body.contains(el)) { clearInterval(timer); return; }
        el.textContent = String(base + Math.floor((Date.now() - started) / 1000));
      }, 1000);
    });
  }

  /* The log tail: entries after the last seq are appended; terminal sessions stop polling. */
  function logTail(body) {
    var busy = false;
    var maxRows = 5000;
    function tick() {
      if (busy || !visible() || body.dataset.live === "false") { return; }
      busy = true;
      var url = body.dataset.logsUrl + (body.dataset.logsUrl.indexOf("?") >= 0 ? "&" : "?") + "after=" + body.dataset.after;
      fetch(url, { cache: "no-store", credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (page) {
          if (!page) { return; }
          page.entries.forEach(function (entry) { body.appendChild(logRow(entry)); });
          while (body.rows.length > maxRows) { body.deleteRow(0); }
          if (page.entries.length) {
            var empty = document.getElementById("log-empty");
            if (empty) { empty.remove(); }
          }
          body.dataset.after = String(page.next_after);
          if (["completed", "failed", "stopped"].indexOf(page.state) >= 0 && !page.more) {
            body.dataset.live = "false";
          }
          if (page.more) { setTimeout(tick, 0); }
        })
        .catch(function () {})
        .then(function () { busy = false; });
    }
    setInterval(tick, PERIOD);
    document.addEventListener("visibilitychange", function () { if (visible()) { tick(); } });
  }

  function logRow(entry) {
    var row = document.createElement("tr");
    row.dataset.testid = "log-row";
    row.dataset.seq = String(entry.seq);
    row.dataset.level = entry.level;
    var shown = entry.at || entry.ts;     // the reporter's time of the event where it sent one
    var when = document.createElement("time");
    when.dateTime = shown;
    when.dataset.utc = shown;
    when.textContent = showLocal() ? parseIso(shown).toLocaleString() : shown;
    var cells = [when, entry.level.toUpperCase(), entry.message];
    cells.forEach(function (content, index) {
      var cell = row.insertCell();
      if (index === 0) { cell.appendChild(content); } else { cell.textContent = content; }
      if (index === 1) { cell.className = "level level-" + entry.level; }
      if (index === 2) { cell.className = "message"; }
    });
    return row;
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm) {
      if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); return; }
      var confirmed = form.querySelector("input[name=confirmed]");
      if (confirmed) { confirmed.value = "yes"; }
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh-url]").forEach(liveContainer);
    document.querySelectorAll("tbody[data-logs-url]").forEach(logTail);
    startStopCounters(document);
    document.querySelectorAll(".js-only").forEach(function (el) { el.hidden = false; });
    var status = document.getElementById("live-status");
    if (status) { status.textContent = "Live: refreshes every 2 s while this tab is visible."; }
    var toggle = document.getElementById("log-local-time");
    if (toggle) {
      toggle.checked = showLocal();
      toggle.addEventListener("change", function () {
        try { localStorage.setItem(LOCAL_KEY, toggle.checked ? "1" : "0"); } catch (e) {}
        renderTimes(document);
      });
    }
    var level = document.getElementById("log-level");
    if (level && level.form) { level.addEventListener("change", function () { level.form.submit(); }); }
    renderTimes(document);
  });
}());
