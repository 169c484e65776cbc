// lldiff report: draws the JSON document of compare, patch, contrast, vec,
// params or map.
// Plain JavaScript, no library, no request: every chart is SVG built here.
// window.lldiff.render(element, kind, doc) draws a document into element;
// window.lldiff.boot(root, dataElement) does it for the one-file report.
(function () {
  "use strict";

  var SVGNS = "http://www.w3.org/2000/svg";

  // ---- DOM helpers (text is always set as text, never parsed as HTML) ----

  function el(tag, attrs) {
    var e = document.createElement(tag);
    setAttrs(e, attrs);
    for (var i = 2; i < arguments.length; i++) add(e, arguments[i]);
    return e;
  }
  function svg(tag, attrs) {
    var e = document.createElementNS(SVGNS, tag);
    setAttrs(e, attrs);
    for (var i = 2; i < arguments.length; i++) add(e, arguments[i]);
    return e;
  }
  function setAttrs(e, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v === undefined || v === null || v === false) return;
      if (k === "text") e.textContent = v;
      else if (k === "on") Object.keys(v).forEach(function (ev) { e.addEventListener(ev, v[ev]); });
      else if (k === "style" && typeof v === "object") Object.keys(v).forEach(function (s) { e.style[s] = v[s]; });
      else e.setAttribute(k, v === true ? "" : String(v));
    });
  }
  function add(e, c) {
    if (c === undefined || c === null || c === false) return;
    if (Array.isArray(c)) { c.forEach(function (x) { add(e, x); }); return; }
    e.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  // keyboard makes a clickable element reachable with Tab and selectable
  // with Enter or Space.
  function keyboard(e, fn, label) {
    e.setAttribute("tabindex", "0");
    e.setAttribute("role", "button");
    if (label) e.setAttribute("aria-label", label);
    e.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); fn(); }
    });
  }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }

  // ---- numbers ----

  // num shows 4 significant digits; the full value is in data-value.
  function num(v) {
    if (v === null || v === undefined) return "–";
    if (typeof v !== "number" || isNaN(v)) return "–";
    if (!isFinite(v)) return v > 0 ? "∞" : "−∞";
    if (v === 0) return "0";
    var a = Math.abs(v);
    if (a >= 1e5 || a < 1e-4) return v.toExponential(3);
    return String(Number(v.toPrecision(4)));
  }
  function fixed(v, d) { return v === null || v === undefined || isNaN(v) ? "–" : v.toFixed(d); }
  function numCell(v, cls) {
    return el("td", { "class": "num" + (cls ? " " + cls : ""), "data-value": v === null || v === undefined ? "" : String(v), text: num(v) });
  }

  // ---- colour scales (ColorBrewer, colour-blind safe) ----

  function hex(c) { return [parseInt(c.slice(1, 3), 16), parseInt(c.slice(3, 5), 16), parseInt(c.slice(5, 7), 16)]; }
  function ramp(stops) {
    var rgb = stops.map(hex);
    return function (t) {
      if (t === null || t === undefined || isNaN(t)) return null;
      t = Math.max(0, Math.min(1, t));
      var x = t * (rgb.length - 1), i = Math.min(rgb.length - 2, Math.floor(x)), f = x - i;
      var c = [0, 1, 2].map(function (k) { return Math.round(rgb[i][k] + (rgb[i + 1][k] - rgb[i][k]) * f); });
      return "rgb(" + c.join(",") + ")";
    };
  }
  // Diverging, centred at 0: blue for negative, white at 0, red for positive (RdBu).
  var rdbu = ramp(["#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582", "#d6604d", "#b2182b"]);
  // Sequential for unsigned values: light yellow to dark blue (YlGnBu).
  var ylgnbu = ramp(["#ffffd9", "#edf8b1", "#c7e9b4", "#7fcdbb", "#41b6c4", "#1d91c0", "#225ea8", "#253494", "#081d58"]);
  // One-sided ramps for the lens: A−B in the red half, B−A in the blue half.
  var reds = ramp(["#fff5f0", "#fcbba1", "#fb6a4a", "#cb181d"]);
  var blues = ramp(["#f7fbff", "#c6dbef", "#6baed6", "#2171b5"]);

  function diverging(max) {
    var m = max > 0 ? max : 1;
    var f = function (v) { return v === null || v === undefined || isNaN(v) ? null : rdbu(0.5 + 0.5 * Math.max(-1, Math.min(1, v / m))); };
    f.dark = function (v) { return Math.abs(v / m) > 0.6; };
    f.css = "linear-gradient(90deg," + [0, .25, .5, .75, 1].map(function (t) { return rdbu(t); }).join(",") + ")";
    f.lo = -m; f.hi = m;
    return f;
  }
  function sequential(max, min) {
    var lo = min || 0, hi = max > lo ? max : lo + 1;
    var f = function (v) { return v === null || v === undefined || isNaN(v) ? null : ylgnbu((v - lo) / (hi - lo)); };
    f.dark = function (v) { return (v - lo) / (hi - lo) > 0.55; };
    f.css = "linear-gradient(90deg," + [0, .25, .5, .75, 1].map(function (t) { return ylgnbu(t); }).join(",") + ")";
    f.lo = lo; f.hi = hi;
    return f;
  }
  function scaleLegend(scale, label) {
    return el("div", { "class": "scale" }, el("span", { text: num(scale.lo) }),
      el("span", { "class": "grad", style: { background: scale.css } }), el("span", { text: num(scale.hi) }),
      label ? el("span", { text: label }) : null);
  }

  // ---- tooltip ----

  var tip = null;
  function showTip(ev, rows) {
    if (!tip) return;
    clear(tip);
    rows.forEach(function (r) {
      if (r === null) return;
      if (typeof r === "string") { tip.appendChild(el("div", { text: r })); return; }
      tip.appendChild(el("div", null, el("span", { "class": "k", text: r[0] }), el("span", { "class": r[2] ? "mono" : "", text: r[1] })));
    });
    tip.style.display = "block";
    var x = ev.clientX + 14, y = ev.clientY + 14;
    var w = tip.offsetWidth, h = tip.offsetHeight;
    if (x + w > window.innerWidth - 8) x = ev.clientX - w - 10;
    if (y + h > window.innerHeight - 8) y = ev.clientY - h - 10;
    tip.style.left = x + "px"; tip.style.top = y + "px";
  }
  function hideTip() { if (tip) tip.style.display = "none"; }
  function hover(e, rows) {
    e.addEventListener("mousemove", function (ev) { showTip(ev, typeof rows === "function" ? rows() : rows); });
    e.addEventListener("mouseleave", hideTip);
    return e;
  }

  // ---- state in location.hash ----

  function readHash() {
    var s = {}, h = (location.hash || "").replace(/^#/, "");
    h.split("&").forEach(function (kv) {
      if (!kv) return;
      var i = kv.indexOf("=");
      var k = decodeURIComponent(i < 0 ? kv : kv.slice(0, i));
      s[k] = i < 0 ? "" : decodeURIComponent(kv.slice(i + 1));
    });
    return s;
  }
  function writeHash(state) {
    var parts = [];
    Object.keys(state).sort().forEach(function (k) {
      var v = state[k];
      if (v === undefined || v === null || v === "") return;
      parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(v));
    });
    var h = parts.length ? "#" + parts.join("&") : "";
    if (h === location.hash || (h === "" && !location.hash)) return;
    try {
      history.replaceState(null, "", h || location.pathname + location.search);
    } catch (e) {
      location.hash = h;
    }
  }
  var hashListener = null; // the store of the latest render follows the hash
  function Store(useHash) {
    var st = useHash ? readHash() : {}, subs = [];
    var store = {
      get: function (k) { return st[k]; },
      set: function (patch) {
        Object.keys(patch).forEach(function (k) { st[k] = patch[k]; });
        if (useHash) writeHash(st);
        subs.forEach(function (f) { f(); });
      },
      sub: function (f) { subs.push(f); f(); }
    };
    if (hashListener) window.removeEventListener("hashchange", hashListener);
    hashListener = null;
    if (useHash) {
      hashListener = function () {
        st = readHash();
        subs.forEach(function (f) { f(); });
      };
      window.addEventListener("hashchange", hashListener);
    }
    return store;
  }

  // ---- building blocks ----

  function card(parent, title, sub, cls, id) {
    var s = el("section", { "class": "card " + (cls || ""), id: id },
      el("h2", null, title, sub ? el("span", { "class": "sub", text: sub }) : null));
    parent.appendChild(s);
    return s;
  }
  function facts(list) {
    return el("div", { "class": "facts" }, list.filter(Boolean).map(function (f) {
      return el("span", { "class": "fact", "data-field": f[2] || null }, el("b", { text: f[0] }), f[1]);
    }));
  }
  function kv(pairs) {
    var d = el("dl", { "class": "kv" });
    pairs.forEach(function (p) {
      if (!p) return;
      d.appendChild(el("dt", { text: p[0] }));
      d.appendChild(el("dd", { "data-field": p[2] || null, "data-value": p[3] === undefined ? null : String(p[3]) }, p[1]));
    });
    return d;
  }
  function pieceText(p) { return p === undefined || p === null ? "" : String(p); }
  function tokenSpan(p, cls) { return el("span", { "class": "tok " + (cls || ""), text: pieceText(p) }); }
  function bar(v, max, color) {
    var w = max > 0 && v > 0 ? Math.max(1, Math.round(60 * Math.min(1, v / max))) : 0;
    return el("span", { "class": "bar", style: { width: w + "px", background: color || "#7fa7d1" } });
  }

  // A word-start piece begins with a space (▁ for SentencePiece, Ġ for GPT-2).
  function continues(tok, prev) {
    if (!prev || prev.kind === "control" || tok.kind === "control") return false;
    var p = tok.piece || "";
    return p.length > 0 && !/^[\s▁Ġ]/.test(p) && /^[\w\u00c0-\uffff]/.test(p) && /[\w\u00c0-\uffff]$/.test(prev.piece || "");
  }

  // tokensView draws two token sequences position by position: differing
  // positions yellow, compared positions framed, split words marked.
  function tokensView(aToks, bToks, compared, labels) {
    var box = el("div", { "class": "tokens" });
    var n = Math.max(aToks.length, bToks.length);
    for (var i = 0; i < n; i++) {
      var a = aToks[i], b = bToks[i];
      var differ = !a || !b || a.id !== b.id;
      var cmp = compared(i);
      var col = el("div", { "class": "tcol" + (differ ? " diff" : "") + (cmp ? " cmp" : ""), "data-pos": i },
        el("span", { "class": "p", text: String(i) }),
        a ? tokenSpan(a.piece, "ca" + (continues(a, aToks[i - 1]) ? " cont" : "")) : tokenSpan("·", "none"),
        b ? tokenSpan(b.piece, "cb" + (continues(b, bToks[i - 1]) ? " cont" : "")) : tokenSpan("·", "none"));
      (function (i, a, b, differ, cmp) {
        hover(col, [["position", String(i)],
          [labels[0], a ? JSON.stringify(a.piece) + "  id " + a.id + (a.kind && a.kind !== "normal" ? "  (" + a.kind + ")" : "") : "—", true],
          [labels[1], b ? JSON.stringify(b.piece) + "  id " + b.id + (b.kind && b.kind !== "normal" ? "  (" + b.kind + ")" : "") : "—", true],
          differ ? "the tokens differ here" : null, cmp ? "a compared position" : null]);
      })(i, a, b, differ, cmp);
      box.appendChild(col);
    }
    return el("div", null, box, el("div", { "class": "legend-inline" },
      el("span", null, el("span", { "class": "sw", style: { background: "#fff3b0", boxShadow: "inset 0 -2px 0 #e0a800" } }), "tokens differ"),
      el("span", null, el("span", { "class": "sw", style: { border: "1.5px solid #111" } }), "compared position"),
      el("span", null, el("span", { "class": "sw", style: { borderLeft: "2px dotted #98a3ae", background: "#eef1f4" } }), "piece continues a word (split token)"),
      el("span", null, "top row: " + labels[0] + ", bottom row: " + labels[1])));
  }

  // heatmap draws an SVG grid. o: rows, cols (labels), value(r, c) → number
  // or null, color(v), tip(r, c) → rows, onClick(r, c), isSel(r, c),
  // cellW, cellH, key(r, c) → data-key, colLabelAngle.
  function heatmap(o) {
    var cw = o.cellW || 28, ch = o.cellH || 18;
    var rowLabW = o.rowLabelW || 70, colLabH = o.colLabelH || 22;
    var longest = Math.max.apply(null, o.cols.map(function (c) { return String(c).length; }).concat([1]));
    if (o.colAngle) colLabH = Math.min(160, 16 + Math.round(longest * 6.5 * Math.sin(o.colAngle * Math.PI / 180)));
    var padR = o.colAngle ? Math.round(longest * 6.5 * Math.cos(o.colAngle * Math.PI / 180)) : 4;
    var W = rowLabW + cw * o.cols.length + padR, H = colLabH + ch * o.rows.length + 4;
    var s = svg("svg", { width: W, height: H, "class": "heatmap", role: "img", "aria-label": o.label || "heatmap" });
    o.cols.forEach(function (c, j) {
      var x = rowLabW + j * cw + cw / 2;
      if (o.colAngle) {
        s.appendChild(svg("text", { x: x, y: colLabH - 4, "text-anchor": "start", "class": o.colMono ? "mono" : "",
          transform: "rotate(-" + o.colAngle + " " + x + " " + (colLabH - 4) + ")", text: c }));
      } else {
        s.appendChild(svg("text", { x: x, y: colLabH - 6, "text-anchor": "middle", "class": o.colMono ? "mono" : "", text: c }));
      }
    });
    var cells = [];
    o.rows.forEach(function (r, i) {
      var y = colLabH + i * ch;
      s.appendChild(svg("text", { x: rowLabW - 6, y: y + ch / 2 + 4, "text-anchor": "end", text: r }));
      o.cols.forEach(function (c, j) {
        var v = o.value(i, j);
        var missing = v === null || v === undefined || (typeof v === "number" && isNaN(v));
        var rect = svg("rect", { x: rowLabW + j * cw, y: y, width: cw, height: ch,
          "class": "cell" + (missing ? " missing" : ""), fill: missing ? "#e6e8eb" : o.color(v),
          "data-r": i, "data-c": j, "data-key": o.key ? o.key(i, j) : null, "data-value": missing ? "" : String(v) });
        if (o.tip) hover(rect, function () { return o.tip(i, j); });
        if (o.onClick) {
          rect.addEventListener("click", function () { o.onClick(i, j); });
          keyboard(rect, function () { o.onClick(i, j); }, r + ", " + c + ": " + (missing ? "none" : num(v)));
        }
        cells.push({ i: i, j: j, rect: rect });
        s.appendChild(rect);
        if (o.showValues && !missing && cw >= 28) {
          s.appendChild(svg("text", { x: rowLabW + j * cw + cw / 2, y: y + ch / 2 + 4, "text-anchor": "middle",
            style: "pointer-events:none;font-size:10px;fill:" + (o.color.dark && o.color.dark(v) ? "#fff" : "#222"), text: o.showValues(v) }));
        }
      });
    });
    // the selection is a frame drawn over the cells, so that it is never
    // hidden by a neighbour and never hides the cell's value
    var frames = svg("g", { style: "pointer-events:none" });
    s.appendChild(frames);
    s.update = function () {
      clear(frames);
      cells.forEach(function (c) {
        var sel = o.isSel && o.isSel(c.i, c.j);
        c.rect.classList.toggle("selected", !!sel);
        if (sel) {
          frames.appendChild(svg("rect", { x: +c.rect.getAttribute("x") + 1, y: +c.rect.getAttribute("y") + 1, width: cw - 2, height: ch - 2,
            fill: "none", stroke: "#000", "stroke-width": 2.5, "class": "sel-frame" }));
          frames.appendChild(svg("rect", { x: +c.rect.getAttribute("x") + 3, y: +c.rect.getAttribute("y") + 3, width: cw - 6, height: ch - 6,
            fill: "none", stroke: "#fff", "stroke-width": 1 }));
        }
      });
    };
    s.update();
    return s;
  }

  // sortTable draws a sortable, filterable table. o: columns [{key, label,
  // group, num, get(row), fmt(row), bar}], rows, rowKey(row), store, prefix
  // (hash keys), defaultSort, selKey (hash key of the selection),
  // filterText(row).
  function sortTable(parent, o) {
    var st = o.store, P = o.prefix || "";
    var input = el("input", { "class": "filter", type: "search", placeholder: o.placeholder || "filter: hook, kind or layer…", value: st.get(P + "q") || "" });
    var count = el("span", { "class": "count" });
    parent.appendChild(el("div", { "class": "toolbar" }, input, count, o.toolbar || null));
    var table = el("table", { "class": "t", id: o.id });
    var thead = el("thead"), tbody = el("tbody");
    table.appendChild(thead); table.appendChild(tbody);
    parent.appendChild(el("div", { "class": "scroll" }, table));
    if (o.groups) {
      var gr = el("tr", { "class": "groups" });
      o.groups.forEach(function (g) { gr.appendChild(el("th", { colspan: g.span, "class": g.cls || "", text: g.label })); });
      thead.appendChild(gr);
    }
    var hr = el("tr");
    var ths = o.columns.map(function (c) {
      var th = el("th", { "class": (c.num ? "num " : "") + (c.nosort ? "" : "sortable"), title: c.title || null, "data-col": c.key, text: c.label });
      if (!c.nosort) th.addEventListener("click", function () {
        var cur = st.get(P + "sort") || o.defaultSort.key, dir = st.get(P + "dir") || o.defaultSort.dir;
        if (cur === c.key) st.set(kvObj(P + "dir", dir === "asc" ? "desc" : "asc"));
        else { var p = {}; p[P + "sort"] = c.key; p[P + "dir"] = c.num ? "desc" : "asc"; st.set(p); }
      });
      hr.appendChild(th);
      return th;
    });
    thead.appendChild(hr);
    input.addEventListener("input", function () { st.set(kvObj(P + "q", input.value)); });
    var maxes = {};
    o.columns.forEach(function (c) {
      if (c.bar) maxes[c.key] = Math.max.apply(null, o.rows.map(function (r) { var v = c.get(r); return typeof v === "number" && isFinite(v) ? Math.abs(v) : 0; }).concat([0]));
    });
    function draw() {
      var key = st.get(P + "sort") || o.defaultSort.key, dir = st.get(P + "dir") || o.defaultSort.dir;
      var col = o.columns.filter(function (c) { return c.key === key; })[0] || o.columns[0];
      ths.forEach(function (th, i) {
        th.classList.toggle("sorted", o.columns[i] === col);
        th.classList.toggle("asc", o.columns[i] === col && dir === "asc");
      });
      var q = (st.get(P + "q") || "").trim().toLowerCase();
      if (document.activeElement !== input) input.value = st.get(P + "q") || "";
      var rows = o.rows.filter(function (r) { return !q || o.filterText(r).toLowerCase().indexOf(q) >= 0; });
      rows = rows.map(function (r, i) { return { r: r, i: i }; });
      rows.sort(function (x, y) {
        var a = col.get(x.r), b = col.get(y.r);
        var an = a === null || a === undefined || (typeof a === "number" && isNaN(a));
        var bn = b === null || b === undefined || (typeof b === "number" && isNaN(b));
        if (an !== bn) return an ? 1 : -1; // missing values last
        var c = an ? 0 : (typeof a === "number" ? a - b : String(a).localeCompare(String(b)));
        if (c === 0) return x.i - y.i;
        return dir === "asc" ? c : -c;
      });
      count.textContent = rows.length + " of " + o.rows.length + " rows";
      var focused = tbody.contains(document.activeElement) ? document.activeElement.getAttribute("data-key") : null;
      clear(tbody);
      var sel = st.get(o.selKey);
      rows.forEach(function (x) {
        var r = x.r, k = o.rowKey(r);
        var tr = el("tr", { "data-key": k, "class": k === sel ? "selected" : null });
        o.columns.forEach(function (c) {
          var v = c.get(r);
          var td;
          if (c.num) {
            td = numCell(typeof v === "number" ? v : null);
            if (c.fmt) td.textContent = c.fmt(r);
            if (c.bar && typeof v === "number") td.appendChild(bar(Math.abs(v), maxes[c.key], c.barColor ? c.barColor(v) : null));
          } else {
            td = el("td", { "class": c.mono ? "mono" : null }, c.render ? c.render(r) : (v === null || v === undefined ? "" : String(v)));
          }
          td.setAttribute("data-col", c.key);
          tr.appendChild(td);
        });
        tr.addEventListener("click", function () { st.set(kvObj(o.selKey, k)); });
        keyboard(tr, function () { st.set(kvObj(o.selKey, k)); });
        tbody.appendChild(tr);
        if (k === focused) tr.focus({ preventScroll: true });
      });
    }
    st.sub(draw);
    return table;
  }
  function kvObj(k, v) { var o = {}; o[k] = v; return o; }

  // lineChart draws one line per series over x. o: series [{name, color,
  // points [{x, y, key}]}], xLabel, yLabel, yMin, yMax, threshold, onClick(key), isSel(key).
  function lineChart(o) {
    var W = o.width || 420, H = o.height || 220, ml = 46, mr = 12, mt = 10, mb = 34;
    var xs = [], ys = [];
    o.series.forEach(function (s) { s.points.forEach(function (p) { if (p.y !== null && isFinite(p.y)) { xs.push(p.x); ys.push(p.y); } }); });
    var x0 = Math.min.apply(null, xs.concat([0])), x1 = Math.max.apply(null, xs.concat([1]));
    var y0 = o.yMin !== undefined ? o.yMin : Math.min.apply(null, ys.concat([0]));
    var y1 = o.yMax !== undefined ? o.yMax : Math.max.apply(null, ys.concat([1]));
    if (y1 === y0) y1 = y0 + 1;
    var X = function (x) { return ml + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (W - ml - mr); };
    var Y = function (y) { return mt + (1 - (y - y0) / (y1 - y0)) * (H - mt - mb); };
    var s = svg("svg", { viewBox: "0 0 " + W + " " + H, width: "100%", style: "max-width:" + (W + 80) + "px", role: "img", "aria-label": o.label || "chart" });
    var g = svg("g", { "class": "grid" });
    for (var k = 0; k <= 4; k++) {
      var yv = y0 + (y1 - y0) * k / 4;
      g.appendChild(svg("line", { x1: ml, x2: W - mr, y1: Y(yv), y2: Y(yv) }));
      s.appendChild(svg("text", { x: ml - 6, y: Y(yv) + 4, "text-anchor": "end", text: num(Number(yv.toPrecision(3))) }));
    }
    s.insertBefore(g, s.firstChild);
    var step = Math.max(1, Math.ceil((x1 - x0 + 1) / 16));
    for (var xv = x0; xv <= x1; xv += step) s.appendChild(svg("text", { x: X(xv), y: H - mb + 14, "text-anchor": "middle", text: String(xv) }));
    s.appendChild(svg("text", { x: (ml + W - mr) / 2, y: H - 4, "text-anchor": "middle", text: o.xLabel || "layer" }));
    s.appendChild(svg("line", { x1: ml, x2: W - mr, y1: H - mb, y2: H - mb, stroke: "#b8c0c9" }));
    if (o.threshold !== undefined) {
      s.appendChild(svg("line", { x1: ml, x2: W - mr, y1: Y(o.threshold), y2: Y(o.threshold), stroke: "#8a5a00", "stroke-dasharray": "4 3" }));
      s.appendChild(svg("text", { x: W - mr - 2, y: Y(o.threshold) - 4, "text-anchor": "end", style: "fill:#8a5a00", text: o.thresholdLabel || String(o.threshold) }));
    }
    var pts = [];
    o.series.forEach(function (se) {
      var d = "", pen = false;
      se.points.forEach(function (p) {
        if (p.y === null || !isFinite(p.y)) { pen = false; return; }
        d += (pen ? "L" : "M") + X(p.x).toFixed(1) + " " + Y(p.y).toFixed(1);
        pen = true;
      });
      s.appendChild(svg("path", { d: d, fill: "none", stroke: se.color, "stroke-width": 2 }));
      se.points.forEach(function (p) {
        if (p.y === null || !isFinite(p.y)) return;
        var c = svg("circle", { cx: X(p.x), cy: Y(p.y), r: 4, fill: se.color, "class": "pt", "data-key": p.key, "data-value": String(p.y) });
        hover(c, function () { return o.tip ? o.tip(p, se) : [[se.name, num(p.y)]]; });
        if (o.onClick) {
          c.addEventListener("click", function () { o.onClick(p.key); });
          keyboard(c, function () { o.onClick(p.key); }, se.name + " at layer " + p.x + ": " + num(p.y));
        }
        pts.push({ c: c, key: p.key });
        s.appendChild(c);
      });
    });
    var legend = el("div", { "class": "legend-inline" }, o.series.map(function (se) {
      return el("span", null, el("span", { "class": "sw", style: { background: se.color } }), se.name);
    }));
    var wrap = el("div", { "class": "chart" }, o.title ? el("h4", { text: o.title }) : null, s, legend);
    wrap.update = function () {
      pts.forEach(function (p) {
        var on = o.isSel && o.isSel(p.key);
        p.c.classList.toggle("selected", !!on);
        p.c.setAttribute("r", on ? 6 : 4);
      });
    };
    wrap.update();
    return wrap;
  }

  var KIND_ORDER = ["resid_pre", "z", "attn_out", "resid_mid", "mlp_out", "resid_post"];
  var KIND_COLORS = { resid_pre: "#7f7f7f", z: "#9467bd", attn_out: "#d95f02", resid_mid: "#1b9e77", mlp_out: "#7570b3", resid_post: "#1f78b4" };
  function kindSort(a, b) {
    var x = KIND_ORDER.indexOf(a), y = KIND_ORDER.indexOf(b);
    return (x < 0 ? 99 : x) - (y < 0 ? 99 : y) || String(a).localeCompare(String(b));
  }
  function uniq(xs) { var seen = {}; return xs.filter(function (x) { if (seen[x]) return false; seen[x] = true; return true; }); }

  function lensNote(norm) {
    switch (norm) {
      case "norm": return "Lens normalisation: norm. Each residual passes through the model's final norm (RMSNorm, or LayerNorm with its bias) before the unembedding; a difference is lens(a) − lens(b), so A−B and B−A are logit differences.";
      case "gamma": return "Lens normalisation: gamma. Differences are unembedded as W_U·(γ⊙(a−b)): the final norm's weight without the rescaling (centred first for a LayerNorm).";
      case "raw": return "Lens normalisation: raw. Differences are unembedded as W_U·(a−b), without the final norm, as in the original notebook.";
    }
    return norm ? "Lens normalisation: " + norm + "." : "";
  }

  function summaryCard(main, s, fields) {
    if (!s) return;
    var c = card(main, "Summary", "built only from what was measured", "summary", "summary");
    c.appendChild(el("p", { "class": "text", id: "summary-text", text: s.text || "" }));
    var f = fields(s).filter(Boolean);
    if (f.length) c.appendChild(facts(f));
  }
  function notesCard(main, title, notes) {
    if (!notes || !notes.length) return;
    var c = card(main, title, null, "", "notes");
    notes.forEach(function (n) { c.appendChild(el("div", { "class": "warn", text: "• " + n })); });
  }
  function baseName(p) { return String(p).replace(/^.*[\\/]/, ""); }
  function hookOf(h) { return String(h).replace(/^blocks\.(\d+)\.hook_(.*)$/, "$2.$1"); }

  // ================= compare =================

  function renderCompare(main, doc, st) {
    var A = doc.prompts[0], B = doc.prompts[1];
    summaryCard(main, doc.summary, function (s) {
      var out = [];
      if (s.identical) out.push(["identical", "A and B are the same tokens", "identical"]);
      if (s.first_difference) {
        var d = s.first_difference;
        out.push(["first difference", "position " + d.pos + ": " + JSON.stringify(d.text_a) + " vs " + JSON.stringify(d.text_b) +
          " (" + d.tokens_a + " / " + d.tokens_b + " tokens)", "first_difference"]);
      }
      if (s.enters) out.push(["enters", hookOf(s.enters.hook) + " · rel " + num(s.enters.rel_l2), "enters"]);
      if (s.largest) out.push(["largest", hookOf(s.largest.hook) + " · rel " + num(s.largest.rel_l2) + " (of " + s.largest.of + ")", "largest"]);
      if (s.lens && s.lens.a_minus_b && s.lens.a_minus_b.length) {
        out.push(["lens A−B", s.lens.a_minus_b.join(" ") + " from layer " + s.lens.from_layer_a_minus_b, "lens_a_minus_b"]);
      }
      if (s.lens && s.lens.b_minus_a && s.lens.b_minus_a.length) {
        out.push(["lens B−A", s.lens.b_minus_a.join(" ") + " from layer " + s.lens.from_layer_b_minus_a, "lens_b_minus_a"]);
      }
      if (s.prediction) {
        var p = s.prediction;
        out.push(["prediction", JSON.stringify(p.top_a) + " " + fixed(p.prob_a, 3) + " → " + JSON.stringify(p.top_b) + " " + fixed(p.prob_b, 3) +
          (p.rank_of_top_a_in_b >= 0 ? " · A's top is rank " + p.rank_of_top_a_in_b + " after B" : ""), "prediction"]);
      }
      return out;
    });

    // tokens
    var tc = card(main, "Tokens", "A above B, position by position", "", "tokens");
    tc.appendChild(el("div", { "class": "prompts" },
      el("span", { "class": "lab a", text: "A" }), el("span", { "class": "mono", text: A.text }),
      el("span", { "class": "lab b", text: "B" }), el("span", { "class": "mono", text: B.text })));
    var cmpA = {}, cmpB = {};
    (doc.positions || []).forEach(function (p) { cmpA[p.a] = true; cmpB[p.b] = true; });
    tc.appendChild(tokensView(A.tokens, B.tokens, function (i) { return cmpA[i] || cmpB[i]; }, ["A", "B"]));
    tc.appendChild(el("p", { "class": "note", text: "Compared (A, B) positions: " + (doc.positions || []).map(function (p) { return "(" + p.a + ", " + p.b + ")"; }).join(" ") }));

    // predictions
    var pc = card(main, "Predictions", "next token after A position " + A.pos + " and B position " + B.pos, doc.answers && doc.answers.length ? "w6" : "w6", "predictions");
    var pt = el("table", { "class": "t", id: "predictions-table" });
    pt.appendChild(el("thead", null, el("tr", null, el("th", { text: "#" }), el("th", { "class": "ca", text: "A piece" }), el("th", { "class": "num", text: "prob" }),
      el("th", { "class": "num", text: "logit" }), el("th", { "class": "cb", text: "B piece" }), el("th", { "class": "num", text: "prob" }), el("th", { "class": "num", text: "logit" }))));
    var ptb = el("tbody");
    for (var i = 0; i < Math.max(A.top.length, B.top.length); i++) {
      var a = A.top[i], b = B.top[i];
      var tr = el("tr", { "data-rank": i });
      tr.appendChild(el("td", { text: String(i + 1) }));
      [[a, "a", "#c24e00"], [b, "b", "#1f5fa8"]].forEach(function (x) {
        var t = x[0];
        if (!t) { tr.appendChild(el("td")); tr.appendChild(el("td")); tr.appendChild(el("td")); return; }
        tr.appendChild(el("td", { "class": "mono" }, tokenSpan(t.piece)));
        var pcell = el("td", { "class": "num", "data-col": "prob_" + x[1], "data-value": String(t.prob) }, fixed(t.prob, 3), bar(t.prob, 1, x[2]));
        tr.appendChild(pcell);
        var lc = numCell(t.logit); lc.setAttribute("data-col", "logit_" + x[1]); tr.appendChild(lc);
      });
      ptb.appendChild(tr);
    }
    pt.appendChild(ptb);
    pc.appendChild(pt);

    // answers
    var ac = card(main, "Answer scores", doc.answers && doc.answers.length ? "rank 0 is the top prediction" : "none: pass --answer", "w6", "answers");
    if (!doc.answers || !doc.answers.length) ac.appendChild(el("p", { "class": "empty", text: "No answer was scored. compare --answer \" she\" scores a continuation after both prompts." }));
    (doc.answers || []).forEach(function (ans, ai) {
      ac.appendChild(el("div", { style: { margin: "4px 0 2px" } }, "answer ", el("code", { text: JSON.stringify(ans.text) }), " → ",
        ans.tokens.map(function (t) { return tokenSpan(t.piece); })));
      if (ans.note) ac.appendChild(el("p", { "class": "note", text: ans.note }));
      var t = el("table", { "class": "t answers", "data-answer": ai });
      t.appendChild(el("thead", null, el("tr", null, el("th", { text: "token" }), el("th", { "class": "num ca", text: "A rank" }), el("th", { "class": "num ca", text: "A logit" }),
        el("th", { "class": "num ca", text: "A prob" }), el("th", { "class": "num cb", text: "B rank" }), el("th", { "class": "num cb", text: "B logit" }), el("th", { "class": "num cb", text: "B prob" }))));
      var tb = el("tbody");
      ans.a.forEach(function (x, k) {
        var y = ans.b[k] || {};
        tb.appendChild(el("tr", null, el("td", { "class": "mono" }, tokenSpan(x.piece)), numCell(x.rank), numCell(x.logit),
          el("td", { "class": "num", "data-value": String(x.prob), text: fixed(x.prob, 4) }), numCell(y.rank), numCell(y.logit),
          el("td", { "class": "num", "data-value": String(y.prob), text: fixed(y.prob, 4) })));
      });
      var pa = Math.exp(ans.logprob_a), pb = Math.exp(ans.logprob_b);
      tb.appendChild(el("tr", null, el("td", { text: "whole answer" }), el("td"), el("td"),
        el("td", { "class": "num", "data-value": String(pa), text: fixed(pa, 4) }), el("td"), el("td"),
        el("td", { "class": "num", "data-value": String(pb), text: fixed(pb, 4) })));
      t.appendChild(tb);
      ac.appendChild(t);
    });

    // heatmap layer × kind and the detail of the selected component
    var comps = doc.components || [];
    var byHook = {};
    var rankOf = {}; // the document is never changed: Download JSON saves it as it came
    comps.forEach(function (c, i) { byHook[c.hook] = c; rankOf[c.hook] = i + 1; });
    var kinds = uniq(comps.map(function (c) { return c.kind; })).sort(kindSort);
    var layers = uniq(comps.map(function (c) { return c.layer; })).sort(function (x, y) { return x - y; });
    var grid = {};
    comps.forEach(function (c) { grid[c.layer + "/" + c.kind] = c; });
    var maxRel = Math.max.apply(null, comps.map(function (c) { return c.rel_l2; }).concat([0]));
    var scale = sequential(maxRel);
    var hc = card(main, "Where A and B differ", "relative difference ‖A−B‖ / mean(‖A‖, ‖B‖) by layer and component; click a cell", "w5", "heatmap");
    if (!st.get("sel") && comps.length) st.set({ sel: doc.neurons ? doc.neurons.hook : comps[0].hook });
    var hm = heatmap({
      rows: layers.map(function (l) { return "layer " + l; }), cols: kinds, cellW: Math.max(46, Math.min(90, Math.floor(360 / Math.max(1, kinds.length)))),
      cellH: layers.length > 24 ? 16 : layers.length > 12 ? 20 : 26, label: "relative difference by layer and kind",
      value: function (r, c) { var x = grid[layers[r] + "/" + kinds[c]]; return x ? x.rel_l2 : null; },
      color: scale, key: function (r, c) { var x = grid[layers[r] + "/" + kinds[c]]; return x ? x.hook : null; },
      showValues: function (v) { return v === 0 ? "0" : v < 0.01 ? v.toExponential(0) : v.toFixed(2); },
      tip: function (r, c) {
        var x = grid[layers[r] + "/" + kinds[c]];
        if (!x) return [kinds[c] + " at layer " + layers[r] + " was not compared"];
        return [[x.short, "rank " + rankOf[x.hook] + " of " + comps.length], ["rel", num(x.rel_l2)], ["‖A−B‖", num(x.l2)], ["cos(A,B)", num(x.cosine)],
          ["‖A‖", num(x.norm_a)], ["‖B‖", num(x.norm_b)]];
      },
      onClick: function (r, c) { var x = grid[layers[r] + "/" + kinds[c]]; if (x) st.set({ sel: x.hook }); },
      isSel: function (r, c) { var x = grid[layers[r] + "/" + kinds[c]]; return x && x.hook === st.get("sel"); }
    });
    hc.appendChild(el("div", { "class": "hm-wrap" }, hm));
    hc.appendChild(scaleLegend(scale, "relative difference (sequential, 0 = identical)"));
    var dc = card(main, "Selected component", null, "w7 detail", "detail");
    var dbody = el("div");
    dc.appendChild(dbody);
    st.sub(function () {
      hm.update();
      clear(dbody);
      var x = byHook[st.get("sel")];
      if (!x) { dbody.appendChild(el("p", { "class": "empty", text: "Click a cell of the heatmap or a row of the ranking." })); return; }
      dbody.appendChild(el("h3", { id: "detail-hook", text: x.hook }));
      dbody.appendChild(kv([["short", x.short, "short"], ["rank", rankOf[x.hook] + " of " + comps.length, "rank", rankOf[x.hook]],
        ["‖A‖", num(x.norm_a), "norm_a", x.norm_a], ["‖A−B‖", num(x.l2), "l2", x.l2], ["relative", num(x.rel_l2), "rel_l2", x.rel_l2],
        ["cos(A, B)", num(x.cosine), "cosine", x.cosine], ["‖B‖", num(x.norm_b), "norm_b", x.norm_b]]));
      var nj = doc.neurons;
      if (nj && nj.hook === x.hook && !(nj.neurons || []).length) {
        dbody.appendChild(el("p", { "class": "note", text: "No dimension of " + nj.hook + " differs between A and B." }));
      } else if (nj && nj.hook === x.hook) {
        dbody.appendChild(el("div", { style: { fontWeight: 600, margin: "6px 0 4px" }, text: "Neurons: the dimensions with the largest |A−B| (A position " + nj.pos.a + ", B position " + nj.pos.b + ")" }));
        var ns = nj.neurons || [];
        var m = Math.max.apply(null, ns.map(function (n) { return Math.max(Math.abs(n.a), Math.abs(n.b), Math.abs(n.diff)); }).concat([0]));
        var sc = diverging(m);
        var t = el("table", { "class": "t", id: "neurons-table", style: { width: "auto", minWidth: "60%" } });
        t.appendChild(el("thead", null, el("tr", null, el("th", { "class": "num", text: "dim" }), el("th", { "class": "num ca", text: "A" }),
          el("th", { "class": "num", text: "A−B" }), el("th", { "class": "num cb", text: "B" }))));
        var tb = el("tbody");
        ns.forEach(function (n) {
          var cells = [n.a, n.diff, n.b].map(function (v) {
            var td = numCell(v);
            td.style.background = sc(v);
            if (sc.dark(v)) td.style.color = "#fff";
            return td;
          });
          tb.appendChild(el("tr", { "data-dim": n.index }, numCell(n.index), cells));
        });
        t.appendChild(tb);
        dbody.appendChild(t);
        dbody.appendChild(scaleLegend(sc, "activation (diverging, white = 0)"));
      } else if (nj) {
        dbody.appendChild(el("p", { "class": "note", text: "Neurons were recorded for " + nj.hook + " only (the most different component, compare --neurons N). " }, " ",
          el("button", { on: { click: function () { st.set({ sel: nj.hook }); } }, text: "show " + hookOf(nj.hook) })));
      } else {
        dbody.appendChild(el("p", { "class": "note", text: "No neuron differs: A and B give the same activations." }));
      }
    });

    // ranking
    var rc = card(main, "Component ranking", "most different first; click a header to sort, a row to select", "", "ranking");
    sortTable(rc, {
      id: "ranking-table", store: st, prefix: "r", selKey: "sel", rows: comps, rowKey: function (c) { return c.hook; },
      defaultSort: { key: "rank", dir: "asc" },
      filterText: function (c) { return c.hook + " " + c.short + " " + c.kind + " layer " + c.layer; },
      groups: [{ span: 4, label: "" }, { span: 1, label: "A", cls: "ga" }, { span: 3, label: "A − B", cls: "gd" }, { span: 1, label: "B", cls: "gb" }],
      columns: [
        { key: "rank", label: "#", num: true, get: function (c) { return rankOf[c.hook]; } },
        { key: "hook", label: "hook", mono: true, get: function (c) { return c.hook; } },
        { key: "layer", label: "layer", num: true, get: function (c) { return c.layer; } },
        { key: "kind", label: "kind", get: function (c) { return c.kind; } },
        { key: "norm_a", label: "‖A‖", num: true, get: function (c) { return c.norm_a; } },
        { key: "l2", label: "‖A−B‖", num: true, get: function (c) { return c.l2; } },
        { key: "rel_l2", label: "relative", num: true, bar: true, title: "‖A−B‖ / mean(‖A‖, ‖B‖)", get: function (c) { return c.rel_l2; } },
        { key: "cosine", label: "cos(A,B)", num: true, get: function (c) { return c.cosine; } },
        { key: "norm_b", label: "‖B‖", num: true, get: function (c) { return c.norm_b; } }
      ]
    });

    // lens
    var lc = card(main, "Logit lens of resid_post", "top tokens per layer at A position " + A.pos + ", B position " + B.pos + "; hover a token for its value", "", "lens");
    lc.appendChild(el("p", { "class": "note", id: "lens-note", text: lensNote(doc.lens_norm) }));
    var lens = doc.lens || [];
    if (!lens.length) lc.appendChild(el("p", { "class": "empty", text: "No lens: compare ran with --no-lens." }));
    var maxAB = 0, maxD = 0;
    lens.forEach(function (l) {
      (l.a || []).concat(l.b || []).forEach(function (t) { maxAB = Math.max(maxAB, Math.abs(t.value)); });
      (l.a_minus_b || []).concat(l.b_minus_a || []).forEach(function (t) { maxD = Math.max(maxD, Math.abs(t.value)); });
    });
    var cols = [["a", "A", function (v) { return ylgnbu(0.15 + 0.5 * Math.max(0, v) / (maxAB || 1)); }],
      ["b", "B", function (v) { return ylgnbu(0.15 + 0.5 * Math.max(0, v) / (maxAB || 1)); }],
      ["a_minus_b", "A − B (A favours)", function (v) { return reds(Math.abs(v) / (maxD || 1)); }],
      ["b_minus_a", "B − A (B favours)", function (v) { return blues(Math.abs(v) / (maxD || 1)); }]];
    var g = el("div", { "class": "lens-grid", id: "lens-grid", style: { gridTemplateColumns: "64px repeat(4, minmax(0, 1fr))" } });
    g.appendChild(el("div", { "class": "h" }));
    cols.forEach(function (c) { g.appendChild(el("div", { "class": "h " + (c[0] === "a" ? "ca" : c[0] === "b" ? "cb" : ""), text: c[1] })); });
    lens.forEach(function (l) {
      g.appendChild(el("div", { "class": "ly", text: "layer " + l.layer }));
      cols.forEach(function (c) {
        var toks = l[c[0]] || [];
        var cell = el("div", { "class": "lens-cell", "data-layer": l.layer, "data-col": c[0] });
        if (!toks.length) cell.appendChild(el("span", { "class": "empty", text: "—" }));
        toks.forEach(function (t, k) {
          var v = t.value;
          var s = el("span", { "class": "lens-tok mono", "data-value": String(v), text: pieceText(t.piece), style: { background: c[2](v) } });
          var dark = c[0] === "a" || c[0] === "b" ? (0.15 + 0.5 * Math.max(0, v) / (maxAB || 1)) > 0.55 : Math.abs(v) / (maxD || 1) > 0.6;
          if (dark) s.style.color = "#fff";
          hover(s, [[c[1], JSON.stringify(t.piece) + "  id " + t.id, true], ["layer", String(l.layer)], ["rank", String(k + 1)],
            [c[0] === "a" || c[0] === "b" ? "logit" : "logit difference", num(v)]]);
          cell.appendChild(s);
        });
        g.appendChild(cell);
      });
    });
    lc.appendChild(g);
    lc.appendChild(el("div", { "class": "legend-inline" },
      el("span", null, el("span", { "class": "sw", style: { background: ylgnbu(0.6) } }), "A, B: logit (darker = larger)"),
      el("span", null, el("span", { "class": "sw", style: { background: reds(0.8) } }), "A − B: how much more A's residual favours the token"),
      el("span", null, el("span", { "class": "sw", style: { background: blues(0.8) } }), "B − A: how much more B's favours it")));

    notesCard(main, "Notes", doc.warnings);
  }

  // ================= patch =================

  function posLabel(ps) {
    return ps.map(function (p) { return p.clean === p.corrupt ? String(p.corrupt) : p.clean + "→" + p.corrupt; }).join(",");
  }
  function posText(ps) { return ps.length > 4 ? "all " + ps.length + " positions" : posLabel(ps); }
  function cellKey(c) { return c.hook + "@" + (c.positions.length > 3 ? "all" : posLabel(c.positions)); }
  // cellKey is also the key of compare's ranked components (--from-compare),
  // so that a row and its map cell select each other

  function renderPatch(main, doc, st) {
    summaryCard(main, doc.summary, function (s) {
      var out = [];
      (s.lives || []).forEach(function (r, i) {
        out.push(["lives " + (i + 1), s.residual + " at " + posText(r.positions) + (r.token ? " (" + JSON.stringify(r.token) + ")" : "") +
          (r.from_layer === r.to_layer ? ", layer " + r.from_layer : ", layers " + r.from_layer + "–" + r.to_layer) + ", up to " + fixed(r.max, 2), "lives"]);
      });
      if (s.largest) out.push(["largest", hookOf(s.largest.hook) + " at " + posText(s.largest.positions) + ": " + fixed(s.largest.normalized, 3), "largest"]);
      if (s.compare_agreement) {
        var a = s.compare_agreement;
        out.push(["compare's ranking", a.verdict + " · ρ = " + fixed(a.spearman, 2) + " over " + a.components + " (threshold " + a.threshold + ")", "agreement"]);
      }
      out.push(["carry threshold", String(s.carry), "carry"]);
      return out;
    });

    var mc = card(main, "Metric", doc.metric_desc, doc.from_compare ? "" : "w8", "metric");
    var wrong = doc.wrong ? doc.wrong.text : null;
    mc.appendChild(kv([["metric", doc.metric + ": " + doc.metric_desc, "metric"],
      ["answer", JSON.stringify(doc.answer.text) + (wrong ? "   wrong: " + JSON.stringify(wrong) : ""), "answer"],
      ["clean run", "metric " + num(doc.clean.metric) + " · P(answer) " + fixed(doc.clean.answer_prob, 4), "clean_metric", doc.clean.metric],
      ["corrupt run", "metric " + num(doc.corrupt.metric) + " · P(answer) " + fixed(doc.corrupt.answer_prob, 4), "corrupt_metric", doc.corrupt.metric],
      ["normalised", "(patched − corrupt) / (clean − corrupt): 0 = the corrupt run, 1 = the clean run restored"],
      ["runs", doc.runs + " patched runs, " + doc.tokens_decoded + " tokens decoded in " + fixed(doc.seconds, 2) + " s"]]));
    if (doc.answer.note) mc.appendChild(el("p", { "class": "note", text: doc.answer.note }));

    var ct = doc.clean.tokens || [], rt = doc.corrupt.tokens || [];
    var tc = card(main, "Tokens", "clean above corrupt", "", "tokens");
    tc.appendChild(el("div", { "class": "prompts" },
      el("span", { "class": "lab a", text: "clean" }), el("span", { "class": "mono", text: doc.clean.text }),
      el("span", { "class": "lab b", text: "corrupt" }), el("span", { "class": "mono", text: doc.corrupt.text })));
    var patchedPos = {};
    (doc.results || []).forEach(function (c) { if (c.positions.length === 1) patchedPos[c.positions[0].corrupt] = true; });
    tc.appendChild(tokensView(ct, rt, function (i) { return false; }, ["clean", "corrupt"]));

    var results = doc.results || [];
    var byKey = {};
    results.forEach(function (c) { byKey[cellKey(c)] = c; });
    var kinds = (doc.kinds || []).slice();
    var layers = (doc.layers || []).slice();
    var m = 1;
    results.forEach(function (c) { if (isFinite(c.normalized)) m = Math.max(m, Math.abs(c.normalized)); });
    var scale = diverging(m);
    var perPos = doc.positions === "each" || doc.positions === "list";
    var hc = card(main, "Patching effect", perPos ? "layer × position, one map per kind; hover for the tokens, click to select" : "layer × kind; hover for values, click to select", "", "patch-maps");
    var maps = [];
    function tipFor(c) {
      if (!c) return ["not patched"];
      var toks = c.positions.slice(0, 4).map(function (p) {
        var a = ct[p.clean], b = rt[p.corrupt];
        return JSON.stringify(a ? a.piece : "?") + (a && b && a.id !== b.id ? " → " + JSON.stringify(b.piece) : "");
      }).join(" ") + (c.positions.length > 4 ? " …" : "");
      return [[c.short, ""], ["positions", c.positions.length > 4 ? c.positions.length + " pairs (all)" : posLabel(c.positions) + " (clean→corrupt)"],
        ["tokens", toks, true], ["normalised", num(c.normalized)], ["metric", num(c.metric)],
        c.answer_prob !== undefined ? ["P(answer)", fixed(c.answer_prob, 4)] : null];
    }
    if (!st.get("cell")) {
      var best = null;
      results.forEach(function (c) { if (isFinite(c.normalized) && (!best || c.normalized > best.normalized)) best = c; });
      if (best) st.set({ cell: cellKey(best) });
    }
    if (perPos) {
      var posSet = {};
      results.forEach(function (c) { if (c.positions.length === 1) posSet[c.positions[0].clean + ":" + c.positions[0].corrupt] = c.positions[0]; });
      var positions = Object.keys(posSet).map(function (k) { return posSet[k]; });
      if (doc.positions === "each") positions = rt.map(function (t, i) { return { clean: i, corrupt: i }; });
      positions.sort(function (x, y) { return x.corrupt - y.corrupt; });
      var panels = el("div", { "class": "panels" });
      hc.appendChild(panels);
      kinds.forEach(function (kind) {
        var grid = {};
        results.forEach(function (c) { if (c.kind === kind && c.positions.length === 1) grid[c.layer + "/" + c.positions[0].clean + ":" + c.positions[0].corrupt] = c; });
        var labels = positions.map(function (p) {
          var a = ct[p.clean], b = rt[p.corrupt];
          var t = b ? b.piece : "?";
          if (a && b && a.id !== b.id) t = a.piece + "→" + b.piece;
          return p.corrupt + " " + String(t).replace(/ /g, "·");
        });
        var cw = Math.max(20, Math.min(34, Math.floor(480 / Math.max(1, positions.length))));
        var at = function (r, c) { return grid[layers[r] + "/" + positions[c].clean + ":" + positions[c].corrupt]; };
        var h = heatmap({
          rows: layers.map(function (l) { return "layer " + l; }), cols: labels, cellW: cw, cellH: layers.length > 24 ? 15 : 20,
          colAngle: 55, colLabelH: 80, rowLabelW: 56, colMono: true, label: kind + " patching effect",
          value: function (r, c) { var x = at(r, c); return x ? x.normalized : null; },
          color: scale, key: function (r, c) { var x = at(r, c); return x ? cellKey(x) : null; },
          showValues: cw >= 28 ? function (v) { return Math.abs(v) < 0.005 ? "0" : v.toFixed(2).replace(/^(-?)0\./, "$1."); } : null,
          tip: function (r, c) { return tipFor(at(r, c)); },
          onClick: function (r, c) { var x = at(r, c); if (x) st.set({ cell: cellKey(x) }); },
          isSel: function (r, c) { var x = at(r, c); return x && cellKey(x) === st.get("cell"); }
        });
        h.setAttribute("data-kind", kind);
        maps.push(h);
        panels.appendChild(el("div", { "class": "panel" }, el("div", { "class": "mono panel-title", text: kind }), el("div", { "class": "hm-wrap" }, h)));
      });
    } else {
      var grid2 = {};
      results.forEach(function (c) { grid2[c.layer + "/" + c.kind] = c; });
      var at2 = function (r, c) { return grid2[layers[r] + "/" + kinds[c]]; };
      var h2 = heatmap({
        rows: layers.map(function (l) { return "layer " + l; }), cols: kinds, cellW: 80, cellH: layers.length > 24 ? 16 : 22,
        label: "patching effect by layer and kind",
        value: function (r, c) { var x = at2(r, c); return x ? x.normalized : null; }, color: scale,
        key: function (r, c) { var x = at2(r, c); return x ? cellKey(x) : null; },
        showValues: function (v) { return v.toFixed(2); }, tip: function (r, c) { return tipFor(at2(r, c)); },
        onClick: function (r, c) { var x = at2(r, c); if (x) st.set({ cell: cellKey(x) }); },
        isSel: function (r, c) { var x = at2(r, c); return x && cellKey(x) === st.get("cell"); }
      });
      maps.push(h2);
      hc.appendChild(el("p", { "class": "note", text: doc.positions === "all" ? "Every position patched at once." : "The last prompt position." }));
      hc.appendChild(el("div", { "class": "hm-wrap" }, h2));
    }
    hc.appendChild(scaleLegend(scale, "normalised effect (diverging: white 0 = corrupt, red = clean restored, blue = pushed further; grey = not patched)"));

    var dc = card(main, "Selected cell", null, "w4 detail", "detail");
    var db = el("div");
    dc.appendChild(db);
    st.sub(function () {
      maps.forEach(function (h) { h.update(); });
      clear(db);
      var c = byKey[st.get("cell")];
      if (!c) { db.appendChild(el("p", { "class": "empty", text: "Click a cell of a map." })); return; }
      db.appendChild(el("h3", { id: "detail-hook", text: c.hook }));
      db.appendChild(kv([["positions", c.positions.length > 4 ? c.positions.length + " pairs" : posLabel(c.positions), "positions"],
        ["tokens", tipFor(c)[2][1], "tokens"],
        ["normalised", num(c.normalized), "normalized", c.normalized], ["metric", num(c.metric), "metric", c.metric],
        c.answer_prob !== undefined ? ["P(answer)", fixed(c.answer_prob, 4), "answer_prob", c.answer_prob] : null]));
    });

    if (doc.from_compare) {
      var fc = doc.from_compare;
      var rc = card(main, "Compare's ranking beside patching's", "top " + fc.top + " components by compare's relative difference; Spearman's ρ = " +
        (fc.spearman === null ? "undefined" : fixed(fc.spearman, 3)), "w8", "from-compare");
      var rows = fc.components || [];
      sortTable(rc, {
        id: "from-compare-table", store: st, prefix: "f", selKey: "cell", rows: rows, rowKey: cellKey,
        defaultSort: { key: "compare_rank", dir: "asc" }, filterText: function (x) { return x.hook; },
        groups: [{ span: 2, label: "" }, { span: 2, label: "compare", cls: "ga" }, { span: 2, label: "patching", cls: "gb" }],
        columns: [
          { key: "hook", label: "hook", mono: true, get: function (x) { return x.hook; } },
          { key: "positions", label: "positions", get: function (x) { return posText(x.positions); } },
          { key: "compare_rank", label: "rank", num: true, get: function (x) { return x.compare_rank; } },
          { key: "rel_l2", label: "relative diff.", num: true, bar: true, get: function (x) { return x.rel_l2; } },
          { key: "patch_rank", label: "rank", num: true, get: function (x) { return x.patch_rank; } },
          { key: "normalized", label: "normalised", num: true, bar: true, barColor: function (v) { return v < 0 ? "#4393c3" : "#d6604d"; }, get: function (x) { return x.normalized; } }
        ]
      });
    }
    // the maps first: the run's numbers and tokens below them
    main.appendChild(mc);
    main.appendChild(tc);
    notesCard(main, "Notes", doc.notes);
  }

  // ================= contrast =================

  function renderContrast(main, doc, st) {
    summaryCard(main, doc.summary, function (s) {
      var out = [];
      if (s.no_separation) out.push(["no separation", "the sets give the same activations", "no_separation"]);
      if (s.best) out.push(["best", s.best.short + " · d = " + (s.best.separation_infinite ? "∞" : num(s.best.separation)) +
        " · held-out " + (s.best.held_out_accuracy === null ? "–" : fixed(s.best.held_out_accuracy, 2)) + " (of " + s.best.of + ")", "best"]);
      if (s.separable) out.push(["separable", s.separable.separable ? "from layer " + s.separable.from_layer + " (" + hookOf(s.separable.hook) + ": " + fixed(s.separable.held_out_accuracy, 2) + ")" :
        "no component reaches " + s.separable.threshold + " held-out", "separable"]);
      if (s.lens) out.push(["lens", hookOf(s.lens.hook) + ": toward A " + (s.lens.toward_a || []).join(" ") + " · toward B " + (s.lens.toward_b || []).join(" "), "lens"]);
      if (s.sign) out.push(["sign", s.sign.positive + " of " + s.sign.pairs + " (" + fixed(s.sign.fraction, 2) + ")" + (s.sign.consistent ? " consistent" : " not consistent"), "sign"]);
      return out;
    });
    var sc = card(main, "Sets", null, "", "sets");
    sc.appendChild(kv([["A", doc.a.source + ": " + doc.a.prompts + " prompts, " + doc.a.rows + " rows"], ["B", doc.b.source + ": " + doc.b.prompts + " prompts, " + doc.b.rows + " rows"],
      ["paired", doc.paired ? "yes" : "no"], ["positions", doc.positions], ["model", doc.model + " (" + doc.arch + ")"]]));
    var comps = doc.components || [];
    var byHook = {};
    comps.forEach(function (c) { byHook[c.hook] = c; });
    var kinds = uniq(comps.map(function (c) { return c.kind; })).sort(kindSort);
    if (!st.get("sel") && comps.length) st.set({ sel: comps[0].hook });
    function series(get) {
      return kinds.map(function (k) {
        var pts = comps.filter(function (c) { return c.kind === k; }).sort(function (a, b) { return a.layer - b.layer; })
          .map(function (c) { var v = get(c); return { x: c.layer, y: v === null || v === undefined ? null : v, key: c.hook }; });
        return { name: k, color: KIND_COLORS[k] || "#444", points: pts };
      });
    }
    var tipC = function (p, se) {
      var c = byHook[p.key];
      return [[c.short, ""], ["separation d", num(c.separation)], ["held-out", c.held_out_accuracy === null ? "–" : fixed(c.held_out_accuracy, 3)],
        ["sign", c.sign_consistency === null ? "–" : fixed(c.sign_consistency, 3)], ["‖Δμ‖", num(c.mean_diff_norm)]];
    };
    var click = function (k) { st.set({ sel: k }); };
    var isSel = function (k) { return k === st.get("sel"); };
    var cc = card(main, "Per layer", "click a point to select its component", "", "charts");
    var row = el("div", { "class": "chart-row" });
    var charts = [lineChart({ title: "Separation (Cohen's d along Δμ, in-sample)", series: series(function (c) { return c.separation; }), tip: tipC, onClick: click, isSel: isSel, label: "separation by layer" }),
      lineChart({ title: "Held-out accuracy (leave one out)", series: series(function (c) { return c.held_out_accuracy; }), yMin: 0, yMax: 1, threshold: 0.9, thresholdLabel: "0.9 separable", tip: tipC, onClick: click, isSel: isSel, label: "held-out accuracy by layer" })];
    if (doc.paired) charts.push(lineChart({ title: "Sign consistency (pairs with (a−b)·Δμ > 0)", series: series(function (c) { return c.sign_consistency; }), yMin: 0, yMax: 1, threshold: 0.9, thresholdLabel: "0.9", tip: tipC, onClick: click, isSel: isSel, label: "sign consistency by layer" }));
    charts.forEach(function (c) { row.appendChild(c); });
    cc.appendChild(row);
    cc.appendChild(el("p", { "class": "note", text: "Separation is fitted to the rows it scores and grows with few prompts in many dimensions; read it with the held-out accuracy." }));

    var rc = card(main, "Components", "ranked by separation; click a row to select", "w7", "ranking");
    sortTable(rc, {
      id: "ranking-table", store: st, prefix: "r", selKey: "sel", rows: comps, rowKey: function (c) { return c.hook; },
      defaultSort: { key: "rank", dir: "asc" }, filterText: function (c) { return c.hook + " " + c.short + " " + c.kind + " layer " + c.layer; },
      columns: [
        { key: "rank", label: "#", num: true, get: function (c) { return c.rank; } },
        { key: "short", label: "component", mono: true, get: function (c) { return c.short; } },
        { key: "mean_diff_norm", label: "‖Δμ‖", num: true, get: function (c) { return c.mean_diff_norm; } },
        { key: "separation", label: "sep (d)", num: true, bar: true, get: function (c) { return c.separation; } },
        { key: "held_out_accuracy", label: "held-out", num: true, get: function (c) { return c.held_out_accuracy; } },
        { key: "sign_consistency", label: "sign", num: true, get: function (c) { return c.sign_consistency; } },
        { key: "pc1_explained", label: "PC1 var", num: true, get: function (c) { return c.pc1_explained; } },
        { key: "pc1_cos_mean_diff", label: "cos(PC1,Δμ)", num: true, get: function (c) { return c.pc1_cos_mean_diff; } }
      ]
    });
    var dc = card(main, "Selected direction", null, "w5 detail", "detail");
    var db = el("div");
    dc.appendChild(db);
    var lc = card(main, "Logit lens of each direction", "top tokens (toward A) and bottom tokens (toward B) of each unit direction; " + (doc.lens_norm || ""), "", "lens");
    var lgrid = el("div");
    lc.appendChild(lgrid);
    function lensToks(ts, color) {
      return (ts || []).map(function (t) {
        return hover(el("span", { "class": "lens-tok mono", "data-value": String(t.value), text: pieceText(t.piece), style: { background: color } }),
          [["token", JSON.stringify(t.piece) + "  id " + t.id, true], ["value", num(t.value)]]);
      });
    }
    var withLens = comps.filter(function (c) { return c.lens; }).sort(function (a, b) { return a.layer - b.layer || kindSort(a.kind, b.kind); });
    if (!withLens.length) lgrid.appendChild(el("p", { "class": "empty", text: "No lens: run contrast with --lens-k above 0." }));
    else {
      var t = el("table", { "class": "t", id: "lens-table" });
      t.appendChild(el("thead", null, el("tr", { "class": "groups" }, el("th"), el("th", { colspan: 2, "class": "gd", text: "mean difference Δμ" }), el("th", { colspan: 2, "class": "gd", text: "PC1" })),
        el("tr", null, el("th", { text: "component" }), el("th", { "class": "ca", text: "toward A" }), el("th", { "class": "cb", text: "toward B" }), el("th", { "class": "ca", text: "toward A" }), el("th", { "class": "cb", text: "toward B" }))));
      var tb = el("tbody");
      var rowsByHook = {};
      withLens.forEach(function (c) {
        var tr = el("tr", { "data-key": c.hook, on: { click: function () { st.set({ sel: c.hook }); } } },
          el("td", { "class": "mono", text: c.short }), el("td", null, lensToks(c.lens.mean_diff_top, "#fddbc7")), el("td", null, lensToks(c.lens.mean_diff_bottom, "#d1e5f0")),
          el("td", null, lensToks(c.lens.pc1_top, "#fddbc7")), el("td", null, lensToks(c.lens.pc1_bottom, "#d1e5f0")));
        rowsByHook[c.hook] = tr;
        tb.appendChild(tr);
      });
      t.appendChild(tb);
      lgrid.appendChild(el("div", { "class": "scroll" }, t));
      st.sub(function () { Object.keys(rowsByHook).forEach(function (h) { rowsByHook[h].classList.toggle("selected", h === st.get("sel")); }); });
    }
    st.sub(function () {
      charts.forEach(function (c) { c.update(); });
      clear(db);
      var c = byHook[st.get("sel")];
      if (!c) { db.appendChild(el("p", { "class": "empty", text: "Click a row or a point." })); return; }
      db.appendChild(el("h3", { id: "detail-hook", text: c.hook }));
      db.appendChild(kv([["rank", String(c.rank), "rank", c.rank], ["‖Δμ‖", num(c.mean_diff_norm), "mean_diff_norm", c.mean_diff_norm],
        ["separation d", num(c.separation), "separation", c.separation], ["held-out accuracy", c.held_out_accuracy === null ? "–" : fixed(c.held_out_accuracy, 3), "held_out_accuracy", c.held_out_accuracy],
        ["sign consistency", c.sign_consistency === null ? "–" : fixed(c.sign_consistency, 3), "sign_consistency", c.sign_consistency],
        ["projection mean A / B", num(c.proj_mean_a) + " / " + num(c.proj_mean_b)], ["spread", num(c.spread)],
        ["PC1 explained", num(c.pc1_explained)], ["cos(PC1, Δμ)", num(c.pc1_cos_mean_diff)]]));
      if (c.lens) {
        db.appendChild(el("div", { style: { fontWeight: 600, margin: "4px 0" }, text: "Lens of Δμ" }));
        db.appendChild(el("div", null, el("span", { "class": "ca", text: "toward A: " }), lensToks(c.lens.mean_diff_top, "#fddbc7")));
        db.appendChild(el("div", { style: { marginTop: "4px" } }, el("span", { "class": "cb", text: "toward B: " }), lensToks(c.lens.mean_diff_bottom, "#d1e5f0")));
      }
      if (c.proj_a && c.proj_b) db.appendChild(el("p", { "class": "note", text: "Projections on Δμ: A " + c.proj_a.map(num).join(" ") + " | B " + c.proj_b.map(num).join(" ") }));
    });
    notesCard(main, "Notes", doc.warnings);
  }

  // ================= vec =================

  function renderVec(main, doc, st) {
    var srcs = doc.sources || [];
    var sc = card(main, "Sources", null, "", "sources");
    var t = el("table", { "class": "t" });
    t.appendChild(el("thead", null, el("tr", null, el("th", { text: "" }), el("th", { text: "name" }), el("th", { text: "kind" }))));
    var tb = el("tbody");
    srcs.forEach(function (s, i) { tb.appendChild(el("tr", null, el("td", { text: "[" + (i + 1) + "]" }), el("td", { "class": "mono", text: s.name }), el("td", { text: s.kind }))); });
    t.appendChild(tb);
    sc.appendChild(t);
    var hooks = doc.hooks || [];
    if (!st.get("hook") && hooks.length) st.set({ hook: hooks[0].hook });
    var labels = srcs.map(function (s, i) { return "[" + (i + 1) + "]"; });
    // overview: cosine of each pair of sources at every hook
    var pairs = [];
    for (var i = 0; i < srcs.length; i++) for (var j = i + 1; j < srcs.length; j++) pairs.push([i, j]);
    var oc = card(main, "Cosine by hook", "every pair of sources; click a row to show its matrix", "w5", "overview");
    var ov = heatmap({
      rows: hooks.map(function (h) { return hookOf(h.hook); }), cols: pairs.map(function (p) { return labels[p[0]] + "·" + labels[p[1]]; }),
      cellW: 52, cellH: hooks.length > 40 ? 14 : 20, rowLabelW: 110, label: "cosine by hook", color: diverging(1),
      value: function (r, c) { var v = hooks[r].cosine[pairs[c][0]][pairs[c][1]]; return v === null ? null : v; },
      showValues: function (v) { return v.toFixed(2); },
      tip: function (r, c) { return [[hookOf(hooks[r].hook), ""], ["sources", labels[pairs[c][0]] + " " + labels[pairs[c][1]]], ["cosine", num(hooks[r].cosine[pairs[c][0]][pairs[c][1]])]]; },
      onClick: function (r) { st.set({ hook: hooks[r].hook }); }, isSel: function (r) { return hooks[r].hook === st.get("hook"); },
      key: function (r, c) { return hooks[r].hook + "/" + pairs[c].join("-"); }
    });
    oc.appendChild(el("div", { "class": "hm-wrap" }, ov));
    oc.appendChild(scaleLegend(diverging(1), "cosine (diverging, white = orthogonal)"));
    var mc = card(main, "Cosine matrix", null, "w7", "matrix");
    var body = el("div");
    mc.appendChild(body);
    st.sub(function () {
      ov.update();
      clear(body);
      var h = hooks.filter(function (x) { return x.hook === st.get("hook"); })[0];
      if (!h) { body.appendChild(el("p", { "class": "empty", text: "No hook is common to the sources." })); return; }
      body.appendChild(el("h3", { "class": "mono", id: "detail-hook", text: h.hook }));
      var cs = diverging(1);
      var hm = heatmap({ rows: labels, cols: labels, cellW: 56, cellH: 30, rowLabelW: 44, label: "cosine matrix", color: cs,
        value: function (r, c) { var v = h.cosine[r][c]; return v === null ? null : v; }, showValues: function (v) { return v.toFixed(3); },
        key: function (r, c) { return r + "," + c; },
        tip: function (r, c) { return [[labels[r] + " · " + labels[c], ""], [srcs[r].name, "", true], [srcs[c].name, "", true], ["cosine", num(h.cosine[r][c])], ["projection " + labels[r] + "·û" + labels[c], num(h.projection[r][c])]]; } });
      hm.setAttribute("id", "cosine-matrix");
      body.appendChild(el("div", { "class": "hm-wrap" }, hm));
      body.appendChild(scaleLegend(cs, "cosine"));
      var nt = el("table", { "class": "t", id: "norms-table", style: { marginTop: "10px", width: "auto" } });
      nt.appendChild(el("thead", null, el("tr", null, el("th", { text: "source" }), el("th", { "class": "num", text: "norm" }))));
      var nb = el("tbody");
      h.norms.forEach(function (n, k) { nb.appendChild(el("tr", null, el("td", { text: labels[k] + " " + srcs[k].name }), numCell(n))); });
      nt.appendChild(nb);
      body.appendChild(nt);
    });
    notesCard(main, "Notes", doc.notes);
  }

  // ================= params =================

  // tokList shows the tokens of a projection, each with its value on hover.
  function tokList(ts, color) {
    return (ts || []).map(function (t) {
      return hover(el("span", { "class": "lens-tok mono", "data-value": String(t.value), text: pieceText(t.piece), style: { background: color } }),
        [["token", JSON.stringify(t.piece) + "  id " + t.id, true], ["value", num(t.value)]]);
    });
  }
  // pairList shows the token pairs of a circuit as "in → out".
  function pairList(ps, color, names) {
    return (ps || []).map(function (p) {
      return hover(el("span", { "class": "lens-tok mono", "data-value": String(p.value), style: { background: color } },
        pieceText(p.in_piece), el("span", { "class": "arrow", text: " → " }), pieceText(p.out_piece)),
        [[names[0], JSON.stringify(p.in_piece) + "  id " + p.in, true], [names[1], JSON.stringify(p.out_piece) + "  id " + p.out, true], ["value", num(p.value)]]);
    });
  }
  function plainTable(id, head, rows) {
    var t = el("table", { "class": "t", id: id });
    t.appendChild(el("thead", null, el("tr", null, head.map(function (h) { return el("th", { "class": h.num ? "num" : null, text: h.label }); }))));
    var tb = el("tbody");
    rows.forEach(function (r) { tb.appendChild(el("tr", { "data-key": r.key }, r.cells)); });
    t.appendChild(tb);
    return el("div", { "class": "scroll" }, t);
  }
  function col(name, content, cls) { var td = el("td", { "class": cls || null }, content); td.setAttribute("data-col", name); return td; }
  function numCol(name, v) { var td = numCell(v === undefined ? null : v); td.setAttribute("data-col", name); return td; }

  function renderParams(main, doc, st) {
    var sh = doc.shape || {};
    var ic = card(main, "Layer " + doc.layer, "weights read as tokens; " + lensNote(doc.lens_norm), "", "layer");
    ic.appendChild(facts([["model", baseName(doc.model || "") + " (" + doc.arch + ")", "model"], ["layer", String(doc.layer), "layer"],
      ["shape", "n_layer " + sh.n_layer + " · d_model " + sh.d_model + " · d_ff " + sh.d_ff + " · heads " + sh.n_head + "/" + sh.n_head_kv + " kv · d_head " + sh.d_head + " · vocab " + sh.n_vocab, "shape"],
      ["tensors", (doc.tensors || []).join(" "), "tensors"]]));
    var up = "#fddbc7", down = "#d1e5f0";
    var ns = doc.neurons || [];
    if (ns.length) {
      var hasGate = ns.some(function (n) { return n.gate; });
      var nc = card(main, "MLP neurons", "write: column N of ffn_down through the unembedding; up/gate: the direction the neuron reads", "", "neurons");
      var head = [{ label: "neuron" }, { label: "‖write‖", num: true }, { label: "write: promotes" }, { label: "write: suppresses" }, { label: "up: top" }, { label: "up: bottom" }];
      if (hasGate) head.push({ label: "gate: top" }, { label: "gate: bottom" });
      nc.appendChild(plainTable("neurons-table", head, ns.map(function (n) {
        var cells = [col("index", String(n.index), "mono"), numCol("write_norm", n.write_norm),
          col("write_top", tokList(n.write.top, up)), col("write_bottom", tokList(n.write.bottom, down)),
          col("up_top", tokList(n.up.top, up)), col("up_bottom", tokList(n.up.bottom, down))];
        if (hasGate) cells.push(col("gate_top", n.gate ? tokList(n.gate.top, up) : "–"), col("gate_bottom", n.gate ? tokList(n.gate.bottom, down) : "–"));
        return { key: String(n.index), cells: cells };
      })));
    }
    var hs = doc.heads || [];
    if (hs.length) {
      var hc = card(main, "Attention heads", "OV: attended token → token it promotes (top) or suppresses (bottom); QK: query → key pairs that attend most and least, at relative position 0", "", "heads");
      hc.appendChild(plainTable("heads-table", [{ label: "head" }, { label: "kv head" }, { label: "OV top" }, { label: "OV bottom" }, { label: "QK top" }, { label: "QK bottom" }], hs.map(function (h) {
        return { key: String(h.head), cells: [col("head", String(h.head), "mono"), col("kv_head", String(h.kv_head), "mono"),
          col("ov_top", pairList(h.ov.top, up, ["input", "output"])), col("ov_bottom", pairList(h.ov.bottom, down, ["input", "output"])),
          col("qk_top", pairList(h.qk.top, up, ["query", "key"])), col("qk_bottom", pairList(h.qk.bottom, down, ["query", "key"]))] };
      })));
    }
    var a = doc.along;
    if (a) {
      var ac = card(main, "Along a direction", a.kind === "pair" ? "ranked by what each wrote along A − B in this run" : "ranked by the cosine of the write direction with the direction", "", "along");
      ac.appendChild(facts([["source", a.source, "source"], ["kind", a.kind, "kind"], ["hook", hookOf(a.hook), "hook"], ["‖direction‖", num(a.norm), "norm"],
        a.prompts ? ["prompts", a.prompts.join(" | "), "prompts"] : null,
        a.mlp_out_along !== undefined ? ["mlp_out along", num(a.mlp_out_along) + " (neurons sum " + num(a.neuron_sum) + ")", "mlp_out_along"] : null,
        a.attn_out_along !== undefined ? ["attn_out along", num(a.attn_out_along) + " (heads sum " + num(a.head_sum) + ")", "attn_out_along"] : null]));
      var row = el("div", { "class": "side" });
      var nbox = el("div", null, el("h4", { text: "Neurons" }));
      nbox.appendChild(plainTable("along-neurons", [{ label: "neuron" }, { label: "cos", num: true }, { label: "proj", num: true }, { label: "act A", num: true }, { label: "act B", num: true }, { label: "contribution", num: true }],
        (a.neurons || []).map(function (n) {
          return { key: String(n.index), cells: [col("index", String(n.index), "mono"), numCol("cos", n.cos), numCol("proj", n.proj), numCol("act_a", n.act_a), numCol("act_b", n.act_b), numCol("contribution", n.contribution)] };
        })));
      var hbox = el("div", null, el("h4", { text: "Heads" }));
      hbox.appendChild(plainTable("along-heads", [{ label: "head" }, { label: "kv head" }, { label: "cos", num: true }, { label: "contribution", num: true }],
        (a.heads || []).map(function (h) {
          return { key: String(h.head), cells: [col("head", String(h.head), "mono"), col("kv_head", String(h.kv_head), "mono"), numCol("cos", h.cos), numCol("contribution", h.contribution)] };
        })));
      row.appendChild(nbox); row.appendChild(hbox);
      ac.appendChild(row);
    }
    notesCard(main, "Notes", doc.notes);
  }

  // ================= map =================

  // Categorical colours for clusters (ColorBrewer Dark2, then Set1).
  var CLUSTER_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666", "#e41a1c", "#377eb8", "#4daf4a", "#984ea3"];
  function clusterColor(k) { return CLUSTER_COLORS[((k % CLUSTER_COLORS.length) + CLUSTER_COLORS.length) % CLUSTER_COLORS.length]; }

  // scatter draws labelled points. o: points [{x, y, label, color, key,
  // tip}], xLabel, yLabel.
  function scatter(o) {
    var W = o.width || 560, H = o.height || 420, m = 44;
    var xs = o.points.map(function (p) { return p.x; }), ys = o.points.map(function (p) { return p.y; });
    var x0 = Math.min.apply(null, xs.concat([0])), x1 = Math.max.apply(null, xs.concat([0]));
    var y0 = Math.min.apply(null, ys.concat([0])), y1 = Math.max.apply(null, ys.concat([0]));
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) y1 = y0 + 1;
    var px = (x1 - x0) * 0.08, py = (y1 - y0) * 0.08;
    x0 -= px; x1 += px; y0 -= py; y1 += py;
    var X = function (x) { return m + (x - x0) / (x1 - x0) * (W - 2 * m); };
    var Y = function (y) { return 10 + (1 - (y - y0) / (y1 - y0)) * (H - 10 - m); };
    var s = svg("svg", { viewBox: "0 0 " + W + " " + H, width: "100%", style: "max-width:" + (W + 60) + "px", role: "img", "aria-label": o.label || "scatter" });
    var g = svg("g", { "class": "grid" });
    g.appendChild(svg("line", { x1: X(0), x2: X(0), y1: 10, y2: H - m }));
    g.appendChild(svg("line", { x1: m, x2: W - m, y1: Y(0), y2: Y(0) }));
    s.appendChild(g);
    for (var k = 0; k <= 4; k++) {
      var xv = x0 + (x1 - x0) * k / 4, yv = y0 + (y1 - y0) * k / 4;
      s.appendChild(svg("text", { x: X(xv), y: H - m + 14, "text-anchor": "middle", text: num(Number(xv.toPrecision(3))) }));
      s.appendChild(svg("text", { x: m - 6, y: Y(yv) + 4, "text-anchor": "end", text: num(Number(yv.toPrecision(3))) }));
    }
    s.appendChild(svg("text", { x: W / 2, y: H - 6, "text-anchor": "middle", text: o.xLabel || "" }));
    s.appendChild(svg("text", { x: 12, y: (H - m) / 2, "text-anchor": "middle", transform: "rotate(-90 12 " + (H - m) / 2 + ")", text: o.yLabel || "" }));
    o.points.forEach(function (p) {
      var c = svg("circle", { cx: X(p.x), cy: Y(p.y), r: 5, fill: p.color, "class": "pt", "data-key": p.key, "data-x": String(p.x), "data-y": String(p.y) });
      if (p.tip) hover(c, p.tip);
      s.appendChild(c);
      s.appendChild(svg("text", { x: X(p.x) + 7, y: Y(p.y) + 4, "class": "pt-label", style: "fill:" + p.color, text: p.label }));
    });
    return s;
  }

  function renderMap(main, doc, st) {
    var items = doc.items || [];
    var labels = items.map(function (it, i) { return it.label || "[" + (i + 1) + "]"; });
    var hooks = doc.hooks || [];
    var ic = card(main, "Prompts", items.length + " prompts, one vector each (" + doc.vector + ")", "", "items");
    if (hooks.length > 1) {
      var tabs = el("div", { "class": "tabs" });
      hooks.forEach(function (h) {
        var b = el("button", { type: "button", "data-key": h.hook, text: hookOf(h.hook), on: { click: function () { st.set({ hook: h.hook }); } } });
        tabs.appendChild(b);
      });
      ic.appendChild(tabs);
      st.sub(function () { Array.from(tabs.children).forEach(function (b) { b.classList.toggle("on", b.getAttribute("data-key") === st.get("hook")); }); });
    }
    if (!st.get("hook") && hooks.length) st.set({ hook: hooks[0].hook });
    var body = el("div", { "class": "subgrid" });
    main.appendChild(body);
    var itemsBox = el("div");
    ic.appendChild(itemsBox);
    st.sub(function () {
      var h = hooks.filter(function (x) { return x.hook === st.get("hook"); })[0];
      clear(itemsBox);
      clear(body);
      if (!h) { itemsBox.appendChild(el("p", { "class": "empty", text: "No hook was mapped." })); return; }
      itemsBox.appendChild(plainTable("items-table", [{ label: "label" }, { label: "text" }, { label: "cluster", num: true }, { label: "norm", num: true }, { label: "PC1", num: true }, { label: "PC2", num: true }],
        items.map(function (it, i) {
          return { key: labels[i], cells: [col("label", el("span", { style: { color: clusterColor(h.clusters[i]), fontWeight: 600 }, text: labels[i] }), "mono"), col("text", it.text, "mono"),
            numCol("cluster", h.clusters[i]), numCol("norm", h.norms[i]), numCol("pc1", h.pca[i][0]), numCol("pc2", h.pca[i][1])] };
        })));
      var ev = h.explained_variance || [0, 0];
      var pc = card(body, "PCA map", hookOf(h.hook) + ": the first two principal axes, labels coloured by k-means cluster", "w6", "pca");
      pc.appendChild(facts([["PC1", fixed(100 * ev[0], 1) + "% of the variance", "pc1"], ["PC2", fixed(100 * ev[1], 1) + "% of the variance", "pc2"],
        ["clusters", "k = " + h.k + " (largest mean silhouette)", "k"]]));
      var sp = scatter({ label: "PCA map", xLabel: "PC1 (" + fixed(100 * ev[0], 1) + "%)", yLabel: "PC2 (" + fixed(100 * ev[1], 1) + "%)",
        points: items.map(function (it, i) {
          return { x: h.pca[i][0], y: h.pca[i][1], label: labels[i], color: clusterColor(h.clusters[i]), key: labels[i],
            tip: [[labels[i], ""], ["text", it.text, true], ["cluster", String(h.clusters[i])], ["PC1", num(h.pca[i][0])], ["PC2", num(h.pca[i][1])]] };
        }) });
      sp.setAttribute("id", "pca-map");
      pc.appendChild(sp);
      var sil = Object.keys(h.silhouettes || {}).map(Number).sort(function (a, b) { return a - b; });
      if (sil.length) pc.appendChild(el("p", { "class": "note", text: "Mean silhouette by k: " + sil.map(function (k) { return k + ": " + fixed(h.silhouettes[k], 3); }).join(" · ") }));
      var order = h.order && h.order.length === items.length ? h.order : items.map(function (_, i) { return i; });
      var cc = card(body, "Cosine matrix", "rows in hierarchical-clustering order (average linkage on 1 − cos)", "w6", "cosines");
      var cs = diverging(1);
      var hm = heatmap({ rows: order.map(function (i) { return labels[i]; }), cols: order.map(function (i) { return labels[i]; }), colAngle: 45, colMono: true,
        cellW: items.length > 30 ? 14 : 26, cellH: items.length > 30 ? 14 : 20, rowLabelW: 90, label: "cosine matrix", color: cs,
        value: function (r, c) { return h.cosine[order[r]][order[c]]; },
        showValues: function (v) { return v.toFixed(2); },
        key: function (r, c) { return order[r] + "," + order[c]; },
        tip: function (r, c) { return [[labels[order[r]] + " · " + labels[order[c]], ""], ["cosine", num(h.cosine[order[r]][order[c]])]]; } });
      hm.setAttribute("id", "map-cosine");
      cc.appendChild(el("div", { "class": "hm-wrap" }, hm));
      cc.appendChild(scaleLegend(cs, "cosine (diverging, white = orthogonal)"));
      (h.analogies || []).forEach(function (an, k) {
        var acard = card(body, "Analogy", an.query, "w6", "analogy-" + k);
        acard.appendChild(plainTable("analogy-table-" + k, [{ label: "label" }, { label: "cosine", num: true }],
          an.nearest.map(function (n) { return { key: n.label, cells: [col("label", n.label, "mono"), numCol("cosine", n.cosine)] }; })));
      });
    });
    var d = doc.diffs;
    if (d && d.layers && d.layers.length) {
      var dc = card(main, "Differences", "cosine between difference vectors at " + d.hook_kind + " of every layer", "", "diffs");
      var pairs = (d.layers[0].pairs || []).map(function (p) { return [p.i, p.j]; });
      var dcs = diverging(1);
      var dh = heatmap({ rows: d.layers.map(function (l) { return "layer " + l.layer; }), cols: pairs.map(function (p) { return d.pairs[p[0]] + " · " + d.pairs[p[1]]; }),
        colAngle: 30, colMono: true, cellW: 60, cellH: 18, rowLabelW: 70, label: "difference cosines by layer", color: dcs,
        value: function (r, c) { return d.layers[r].pairs[c].cosine; }, showValues: function (v) { return v.toFixed(2); },
        key: function (r, c) { return d.layers[r].layer + "/" + pairs[c].join("-"); },
        tip: function (r, c) { var p = d.layers[r].pairs[c]; return [["layer " + d.layers[r].layer, ""], [d.pairs[p.i] + " · " + d.pairs[p.j], "", true], ["cosine", num(p.cosine)], ["distance", num(p.distance)]]; } });
      dh.setAttribute("id", "diffs-matrix");
      dc.appendChild(el("div", { "class": "hm-wrap" }, dh));
      dc.appendChild(scaleLegend(dcs, "cosine"));
    }
    notesCard(main, "Notes", doc.warnings);
  }

  // ================= page =================

  var RENDER = { compare: renderCompare, patch: renderPatch, contrast: renderContrast, vec: renderVec, params: renderParams, map: renderMap };

  function download(doc, kind) {
    var blob = new Blob([JSON.stringify(doc, null, 2) + "\n"], { type: "application/json" });
    var a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "lldiff-" + kind + ".json";
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 0);
  }

  // render draws every view of doc into element, replacing what was there.
  // opts.hash (default true) keeps the selection in location.hash, so that
  // a link reopens the same view; a page that draws several documents in
  // turn (lldiff serve) may call render again for each.
  function render(element, kind, doc, opts) {
    opts = opts || {};
    var fn = RENDER[kind];
    clear(element);
    element.classList.add("lldiff");
    if (!tip) { tip = el("div", { "class": "tip", role: "tooltip" }); }
    element.appendChild(tip);
    if (!fn) { element.appendChild(el("p", { "class": "warn", text: "lldiff: no view for documents of kind " + JSON.stringify(kind) + "." })); return; }
    var store = Store(opts.hash !== false);
    var header = el("header", { "class": "top" }, el("h1", { text: "lldiff" }), el("span", { "class": "kind", text: kind }),
      el("span", { "class": "model", title: doc.model || null, text: baseName(doc.model || "") }), el("span", { "class": "spacer" }),
      el("button", { id: "download-json", type: "button", on: { click: function () { download(doc, kind); } }, text: "Download JSON" }));
    element.appendChild(header);
    var main = el("main");
    element.appendChild(main);
    try {
      fn(main, doc, store);
    } catch (e) {
      // say so on the page; the console error makes the browser tests fail
      main.insertBefore(el("section", { "class": "card" }, el("p", { "class": "warn", text: "lldiff could not draw every view of this document: " + e + ". The data is intact: use Download JSON." })), main.firstChild);
      console.error(e);
    }
    element.setAttribute("data-rendered", kind);
  }

  function boot(root, dataEl) {
    var kind = dataEl.getAttribute("data-kind");
    var doc = JSON.parse(dataEl.textContent);
    render(root, kind, doc);
  }

  window.lldiff = { render: render, boot: boot, version: 1 };
})();
