"""The results page's style sheet and script, inlined into the page (it opens from the file system, offline).

The script sorts a table by the column whose header is clicked (numbers by their ``data-sort``
value, empty cells last), filters every element carrying ``data-method`` by the method check boxes,
and marks the page ``data-ready`` when it has run (``data-js-errors`` collects any error), which the
browser test reads.
"""

CSS = """
:root { --fg: #1d232b; --muted: #5b6571; --line: #d9dee4; --head: #f3f5f8; --worse: #fde4e1; --better: #e3f4e6;
        --accent: #2f5d9e; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--fg); background: #fff; }
header.page { padding: 18px 28px 10px; border-bottom: 1px solid var(--line); background: #fafbfc; }
header.page h1 { margin: 0 0 4px; font-size: 22px; }
header.page .meta { color: var(--muted); font-size: 13px; }
nav.dbs { margin-top: 8px; font-size: 13px; }
nav.dbs a { margin-right: 14px; color: var(--accent); text-decoration: none; }
.controls { position: sticky; top: 0; z-index: 5; background: #fff; border-bottom: 1px solid var(--line);
            padding: 8px 28px; font-size: 13px; display: flex; flex-wrap: wrap; gap: 6px 10px; align-items: center; }
.controls .label { font-weight: 600; margin-right: 4px; }
.controls label { padding: 2px 8px; border: 1px solid var(--line); border-radius: 12px; cursor: pointer;
                  user-select: none; white-space: nowrap; }
.controls label:has(input:checked) { background: #eaf1fb; border-color: #a9c1e6; }
.controls input { margin: 0 4px 0 0; vertical-align: -1px; }
.controls button { font: inherit; font-size: 12px; padding: 2px 8px; border: 1px solid var(--line);
                   background: var(--head); border-radius: 4px; cursor: pointer; }
main { padding: 8px 28px 40px; }
section.db { margin-top: 18px; }
section.db > h2 { font-size: 19px; border-bottom: 2px solid var(--fg); padding-bottom: 3px; margin: 18px 0 8px; }
h3 { font-size: 16px; margin: 22px 0 6px; }
h4 { font-size: 14px; margin: 14px 0 6px; font-weight: 600; }
.summary { color: var(--muted); margin: 0 0 6px; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 12.5px; margin: 2px 0 6px; }
th, td { border: 1px solid var(--line); padding: 3px 6px; text-align: left; vertical-align: top; }
thead th { background: var(--head); font-weight: 600; position: relative; vertical-align: bottom; }
thead tr:last-child th { cursor: pointer; padding-right: 16px; }
thead tr:last-child th::after { content: "\\2195"; position: absolute; right: 4px; color: #a3abb5; font-size: 11px; }
thead tr:last-child th.asc::after { content: "\\25B2"; color: var(--accent); }
thead tr:last-child th.desc::after { content: "\\25BC"; color: var(--accent); }
tr.groups th { text-align: center; }
tbody tr:nth-child(even) { background: #fbfcfd; }
tbody tr.section-start td { border-top: 2px solid #9aa3ad; }
td.num { font-variant-numeric: tabular-nums; min-width: 7.5em; }
td.worse { background: var(--worse); }
td.better { background: var(--better); }
td.sig { font-weight: 600; }
span.worse { color: #b3261e; }
span.sig { color: #1d232b; }
span.n { color: var(--muted); font-size: 12px; }
sup.fn a { color: var(--accent); text-decoration: none; font-size: 10px; }
.caption { color: var(--muted); font-size: 12px; max-width: 1100px; }
.caption span + span::before { content: " "; }
ol.notes { color: var(--muted); font-size: 12px; margin: 4px 0 10px; padding-left: 22px; }
figure { margin: 8px 0 14px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 12px; }
.figures { display: flex; flex-wrap: wrap; gap: 6px 18px; align-items: flex-start; }
details { margin: 10px 0; }
details > summary { cursor: pointer; font-weight: 600; font-size: 15px; margin: 6px 0; }
details.notes { margin: 2px 0 10px; }
td details { margin: 0; }
td details > summary { font-size: 12px; font-weight: 400; margin: 0; }
details.notes > summary { font-size: 12px; font-weight: 400; color: var(--muted); }
.badge { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; }
.badge.completed { background: var(--better); }
.badge.failed { background: var(--worse); color: #8c1d18; }
.badge.running { background: #fff4d6; }
span.error { color: #8c1d18; }
table.runs td:nth-child(12) { max-width: 380px; }
table.runs td:nth-child(9), table.runs td:nth-child(10) { white-space: nowrap; }
td.mono, span.mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
tr:target { outline: 2px solid var(--accent); }
pre.config { margin: 4px 0; font-size: 11px; max-width: 520px; white-space: pre-wrap; }
.empty { color: var(--muted); font-style: italic; }
footer { color: var(--muted); font-size: 12px; padding: 10px 28px 30px; border-top: 1px solid var(--line); }
"""

JS = r"""
(function () {
  var root = document.documentElement;
  window.addEventListener("error", function (e) {
    root.setAttribute("data-js-errors", (root.getAttribute("data-js-errors") || "") + (e.message || "error") + ";");
  });

  function key(td) {
    var raw = td ? td.getAttribute("data-sort") : "";
    if (raw === null || raw === "") { return { empty: true }; }
    var num = Number(raw);
    return isNaN(num) ? { text: raw.toLowerCase() } : { num: num };
  }
  function compare(a, b) {
    if (a.empty || b.empty) { return (a.empty ? 1 : 0) - (b.empty ? 1 : 0); }
    if (a.num !== undefined && b.num !== undefined) { return a.num - b.num; }
    var x = a.num !== undefined ? String(a.num) : a.text, y = b.num !== undefined ? String(b.num) : b.text;
    return x < y ? -1 : x > y ? 1 : 0;
  }
  function sortBy(th) {
    var table = th.closest("table"), body = table.tBodies[0], col = Number(th.getAttribute("data-col"));
    var descending = th.classList.contains("asc");
    table.querySelectorAll("thead th").forEach(function (h) { h.classList.remove("asc", "desc"); });
    th.classList.add(descending ? "desc" : "asc");
    var rows = Array.prototype.slice.call(body.rows);
    rows.forEach(function (r, i) { r._order = i; r.classList.remove("section-start"); });
    rows.sort(function (r, s) {
      var a = key(r.cells[col]), b = key(s.cells[col]);
      var c = compare(a, b);
      if (!a.empty && !b.empty && descending) { c = -c; }
      return c || r._order - s._order;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable thead tr:last-child th[data-col]").forEach(function (th) {
    th.addEventListener("click", function () { sortBy(th); });
  });

  var boxes = Array.prototype.slice.call(document.querySelectorAll("#method-filter input[type=checkbox]"));
  function applyFilter() {
    var on = {};
    boxes.forEach(function (b) { on[b.value] = b.checked; });
    document.querySelectorAll("[data-method]").forEach(function (el) {
      el.hidden = on[el.getAttribute("data-method")] === false;
    });
  }
  boxes.forEach(function (b) { b.addEventListener("change", applyFilter); });
  document.querySelectorAll("#method-filter button").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var all = btn.getAttribute("data-set") === "all";
      boxes.forEach(function (b) { b.checked = all; });
      applyFilter();
    });
  });
  applyFilter();

  // a footnote or run link into a folded part unfolds it first
  document.querySelectorAll('a[href^="#"]').forEach(function (a) {
    a.addEventListener("click", function () {
      var target = document.getElementById(a.getAttribute("href").slice(1));
      for (var el = target; el; el = el.parentElement) { if (el.tagName === "DETAILS") { el.open = true; } }
    });
  });

  var shown = 0;
  document.querySelectorAll("table.report").forEach(function (t) { if (t.offsetHeight > 0) { shown += 1; } });
  root.setAttribute("data-tables-shown", String(shown));
  root.setAttribute("data-ready", "1");
})();
"""
