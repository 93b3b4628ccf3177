/* REPORT.html's script: sortable tables, and the example browser (data: each technique's predictions as
   stored, embedded as JSON; drawn a page at a time). Every text from the data goes in as textContent. */
(function () {
  "use strict";
  var UNITS = { B: 1, KiB: 1024, MiB: 1048576, GiB: 1073741824, ms: 0.001, s: 1, min: 60, k: 1e3, M: 1e6 };

  /* A cell's number: its data-sort figure, else read from its text ("1.2 GiB", "$3.12", "0.97s / 1.1s"). */
  function cellValue(td, numeric) {
    if (td.dataset.sort !== undefined) return parseFloat(td.dataset.sort);
    var text = td.textContent.trim();
    if (!numeric) return text.toLowerCase();
    if (text === "best") return 0; /* vs best: the best row's difference */
    var m = text.replace(/,/g, "").replace(/\u2212/g, "-").match(/(-?\+?\d*\.?\d+(?:e[-+]?\d+)?)\s*(%|[A-Za-z]+)?/);
    if (!m) return null;
    var n = parseFloat(m[1]);
    return m[2] && UNITS[m[2]] ? n * UNITS[m[2]] : n;
  }

  function sortTable(table, th) {
    var index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var numeric = th.dataset.numeric === "1";
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a.cells[index], numeric), y = cellValue(b.cells[index], numeric);
      if (x === null || x === "" || x !== x) return 1; /* missing figures last, whichever the order */
      if (y === null || y === "" || y !== y) return -1;
      return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else if (key === "className") node.className = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  /* Right: marked correct; under a continuous metric (no 0/1 mark), a value of at least 0.5. */
  function right(answer) {
    if (!answer) return null;
    if (answer.correct === true || answer.correct === false) return answer.correct;
    return typeof answer.value === "number" ? answer.value >= 0.5 : null;
  }
  /* The held-out examples: one per (id, seed), with each technique's stored prediction. */
  function examplesOf(data) {
    var byKey = {}, examples = [];
    data.techniques.forEach(function (technique) {
      (data.predictions[technique] || []).forEach(function (p) {
        var key = p.id + "\u0000" + p.seed;
        if (!byKey[key]) {
          byKey[key] = { id: p.id, seed: p.seed, input: p.input, expected: p.expected, answers: {} };
          examples.push(byKey[key]);
        }
        byKey[key].answers[technique] = p;
      });
    });
    return examples;
  }

  /* Whether an example passes the browser's filters (state: mode, a, b, seed, label, cell, query). */
  function matches(e, state, techniques) {
    var marks = techniques.map(function (t) { return right(e.answers[t]); });
    if (state.mode === "a-right-b-wrong" && !(right(e.answers[state.a]) === true && right(e.answers[state.b]) === false)) return false;
    if (state.mode === "all-wrong" && !marks.every(function (m) { return m === false; })) return false;
    if (state.mode === "any-wrong" && marks.indexOf(false) < 0) return false;
    if (state.mode === "disagree" && !(marks.indexOf(true) >= 0 && marks.indexOf(false) >= 0)) return false;
    if (state.seed !== "" && String(e.seed) !== state.seed) return false;
    if (state.label !== "" && e.expected !== state.label) return false;
    if (state.cell) {
      var answer = e.answers[state.cell.tech];
      if (!answer || e.expected !== state.cell.expected || answer.parsed !== state.cell.parsed) return false;
    }
    if (state.query) {
      var text = [e.id, e.input, e.expected].concat(techniques.map(function (t) { return (e.answers[t] || {}).predicted; })).join("\n").toLowerCase();
      if (text.indexOf(state.query) < 0) return false;
    }
    return true;
  }


  var PAGE = 50;
  var MODES = [
    ["all", "all examples"], ["a-right-b-wrong", "A right, B wrong"], ["all-wrong", "all wrong"],
    ["any-wrong", "any wrong"], ["disagree", "techniques disagree"]
  ];

  function Browser(root, data) {
    var techniques = data.techniques, examples = examplesOf(data);
    var seeds = [], labels = [];
    examples.forEach(function (e) {
      if (seeds.indexOf(e.seed) < 0) seeds.push(e.seed);
      if (typeof e.expected === "string" && labels.indexOf(e.expected) < 0) labels.push(e.expected);
    });
    var state = { mode: "all", a: techniques[0], b: techniques[1] || techniques[0], seed: "", label: "", query: "", cell: null, page: 0 };

    function select(options, value, onChange) {
      var node = el("select");
      options.forEach(function (o) { node.appendChild(el("option", { value: o[0], text: o[1] })); });
      node.value = value;
      node.addEventListener("change", function () { onChange(node.value); state.page = 0; draw(); });
      return node;
    }
    var pairs = techniques.map(function (t) { return [t, t]; });
    var search = el("input", { type: "search", placeholder: "search input, expected, answers" });
    search.addEventListener("input", function () { state.query = search.value.toLowerCase(); state.page = 0; draw(); });
    var cellChip = el("span", { className: "chip", hidden: "" });
    var controls = el("div", { className: "controls" }, [
      el("label", { text: "show " }, [select(MODES, state.mode, function (v) { state.mode = v; })]),
      el("label", { text: "A " }, [select(pairs, state.a, function (v) { state.a = v; })]),
      el("label", { text: "B " }, [select(pairs, state.b, function (v) { state.b = v; })]),
      seeds.length > 1 ? el("label", { text: "seed " }, [select([["", "all"]].concat(seeds.map(function (s) { return [String(s), String(s)]; })), "", function (v) { state.seed = v; })]) : null,
      data.labels ? el("label", { text: "label " }, [select([["", "all"]].concat(labels.sort().map(function (l) { return [l, l]; })), "", function (v) { state.label = v; })]) : null,
      search, cellChip
    ]);
    var count = el("div", { className: "muted" }), list = el("div"), pager = el("div", { className: "pager" });
    root.appendChild(controls); root.appendChild(count); root.appendChild(list); root.appendChild(pager);

    function details(answer) {
      var parts = [];
      if (typeof answer.value === "number") parts.push((data.metric || "value") + " " + answer.value.toFixed(3));
      if (answer.parsed !== undefined && answer.parsed !== answer.predicted) parts.push("parsed: " + answer.parsed);
      if (answer.retrieved) {
        var gold = answer.gold_docs || [];
        parts.push("retrieved: " + answer.retrieved.map(function (d) { return gold.indexOf(d) >= 0 ? d + " (gold)" : d; }).join(", "));
      }
      if (typeof answer.judge_score === "number") parts.push("judge " + answer.judge_score.toFixed(2) + (answer.judge_reason ? ": " + answer.judge_reason : ""));
      return parts.join("\n");
    }

    function card(e) {
      var rows = techniques.map(function (t) {
        var answer = e.answers[t];
        var mark = right(answer);
        return el("tr", {}, [
          el("th", { text: t }),
          el("td", {}, [el("pre", { text: answer ? String(answer.predicted) : "–" })]),
          el("td", { className: mark === true ? "ok" : mark === false ? "bad" : "", text: mark === true ? "✓" : mark === false ? "✗" : "–" }),
          el("td", {}, [answer && details(answer) ? el("pre", { text: details(answer) }) : null])  // no empty box
        ]);
      });
      return el("div", { className: "example" }, [
        el("div", { className: "meta", text: e.id + " · seed " + e.seed }),
        el("pre", { text: String(e.input) }),
        el("div", {}, [el("b", { text: "expected: " }), el("span", { text: String(e.expected) })]),
        el("table", {}, [el("tbody", {}, rows)])
      ]);
    }

    function draw() {
      var shown = examples.filter(function (e) { return matches(e, state, techniques); });
      var pages = Math.max(1, Math.ceil(shown.length / PAGE));
      state.page = Math.min(state.page, pages - 1);
      count.textContent = shown.length + " of " + examples.length + " examples";
      cellChip.hidden = !state.cell;
      if (state.cell) cellChip.textContent = state.cell.tech + ": expected " + state.cell.expected + ", answered " + state.cell.parsed + " ✕";
      list.replaceChildren.apply(list, shown.slice(state.page * PAGE, (state.page + 1) * PAGE).map(card));
      var prev = el("button", { text: "‹ previous" }), next = el("button", { text: "next ›" });
      prev.disabled = state.page === 0; next.disabled = state.page >= pages - 1;
      prev.addEventListener("click", function () { state.page--; draw(); });
      next.addEventListener("click", function () { state.page++; draw(); });
      pager.replaceChildren(prev, el("span", { text: "page " + (state.page + 1) + " of " + pages }), next);
    }
    cellChip.addEventListener("click", function () { state.cell = null; draw(); });
    this.showCell = function (cell) { state.cell = cell; state.mode = "all"; state.page = 0; controls.querySelector("select").value = "all"; draw(); root.scrollIntoView(); };
    draw();
  }

  if (typeof document === "undefined") { /* node, in the tests: the page's logic without a page */
    module.exports = { right: right, examplesOf: examplesOf, matches: matches, cellValue: cellValue };
    return;
  }
  document.querySelectorAll("table.sortable th").forEach(function (th) {
    th.addEventListener("click", function () { sortTable(th.closest("table"), th); });
  });
  var browsers = {};
  document.querySelectorAll("div.browser").forEach(function (root) {
    var data = JSON.parse(document.getElementById(root.dataset.source).textContent);
    browsers[root.dataset.source] = new Browser(root, data);
  });
  document.querySelectorAll("button.cm").forEach(function (button) {
    button.addEventListener("click", function () {
      browsers["examples-" + button.dataset.browser].showCell({
        tech: button.dataset.tech, expected: button.dataset.expected, parsed: button.dataset.parsed
      });
    });
  });
})();
