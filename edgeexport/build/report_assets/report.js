/* report.html's script (inlined by edgeexport.build.report_page): the variant table's sorting
   and filter, the SVG plots and their tooltips, each variant's layer view. Vanilla JS, no
   network; everything it shows is in the page's JSON block (#report-data). */
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("report-data").textContent);
  var V = {}, SERIES = {};
  D.variants.forEach(function (v) { V[v.id] = v; });
  D.series.forEach(function (s) { SERIES[s.key] = s; });
  var $ = function (id) { return document.getElementById(id); };

  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;"}[c];
    });
  }
  function num(x) {
    if (x === null || x === undefined) return "–";
    var a = Math.abs(x);
    return a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : a >= 1 ? x.toFixed(2) : x.toFixed(3);
  }
  function label(i) { return D.labels[i]; }

  // ---- the variant table: sort and filter ----
  var table = $("variant-table"), tbody = table.tBodies[0];
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var allRows = Array.prototype.slice.call(tbody.rows);
  allRows.forEach(function (tr, i) { tr.dataset.order = i; });
  var sortState = {col: -1, dir: 1};

  function cellKey(td) {
    var raw = td.hasAttribute("data-v") ? td.getAttribute("data-v") : td.textContent.trim();
    if (raw === "" || raw === "–") return null;
    var n = parseFloat(raw);
    return /^[-+]?(\d|\.\d)/.test(raw) && isFinite(n) ? n : raw.toLowerCase();
  }
  function sortBy(col) {
    sortState.dir = sortState.col === col ? -sortState.dir : 1;
    sortState.col = col;
    var dir = sortState.dir;
    var rows = allRows.slice().sort(function (a, b) {
      var x = cellKey(a.cells[col]), y = cellKey(b.cells[col]);
      if (x === null || y === null) {  // no figure: last, either way
        return x === y ? a.dataset.order - b.dataset.order : x === null ? 1 : -1;
      }
      var c = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0)
        : (typeof x === "number" ? -1 : 1);
      return c * dir || a.dataset.order - b.dataset.order;
    });
    rows.forEach(function (tr) { tbody.appendChild(tr); });
    heads.forEach(function (th, i) {
      if (i === col) th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    });
  }
  heads.forEach(function (th, i) {
    th.addEventListener("click", function () { sortBy(i); });
    th.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(i); }
    });
  });

  function visibleIds() {
    var words = $("filter").value.toLowerCase().split(/\s+/).filter(Boolean);
    var fam = $("family").value, ids = {}, n = 0;
    allRows.forEach(function (tr) {
      var id = tr.dataset.id, ok = (!fam || tr.dataset.family === fam) &&
        words.every(function (w) { return id.toLowerCase().indexOf(w) >= 0; });
      tr.hidden = !ok;
      if (ok) { ids[id] = true; n++; }
    });
    $("shown").textContent = n + " of " + allRows.length + " variants shown";
    return ids;
  }
  tbody.addEventListener("click", function (e) {
    var tr = e.target.closest("tr");
    if (tr && !e.target.closest("a")) location.hash = "v=" + tr.dataset.id;
  });

  // ---- plots: inline SVG ----
  var W = 600, H = 380, M = {l: 62, r: 16, t: 14, b: 46};

  function ticks(lo, hi, log) {
    var out = [];
    if (log) {
      for (var e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
        [1, 2, 5].forEach(function (m) {
          var t = m * Math.pow(10, e);
          if (t >= lo && t <= hi) out.push(t);
        });
      }
      return out;
    }
    var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / 5 || 1)));
    var err = (hi - lo) / 5 / step;
    step *= err >= 5 ? 10 : err >= 2 ? 5 : err >= 1.4 ? 2 : 1;
    for (var t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
      out.push(Math.abs(t) < step * 1e-9 ? 0 : t);
    }
    return out;
  }
  function scale(values, log, size, flip) {
    var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
    if (log) { lo = Math.log10(lo); hi = Math.log10(hi); }
    var pad = (hi - lo) * 0.06 || (Math.abs(hi) * 0.1 || 1);
    lo -= pad; hi += pad;
    var f = function (v) {
      var t = ((log ? Math.log10(v) : v) - lo) / (hi - lo);
      return flip ? size - t * size : t * size;
    };
    f.lo = log ? Math.pow(10, lo) : lo;
    f.hi = log ? Math.pow(10, hi) : hi;
    return f;
  }
  function fmtTick(t) {
    var a = Math.abs(t);
    return a >= 1000 ? (t / 1000) + "k" : a >= 1 || a === 0 ? String(+t.toPrecision(4))
      : String(+t.toPrecision(2));
  }

  /* cfg: points [{x, y, id, color, cls, r}], xlabel, ylabel, logx, logy, line (points),
     diag (bool), empty (message when no point) */
  function plot(svg, cfg) {
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    var pw = W - M.l - M.r, ph = H - M.t - M.b, out = [];
    var pts = cfg.points.filter(function (p) {
      return p.x !== null && p.y !== null && (!cfg.logx || p.x > 0) && (!cfg.logy || p.y > 0);
    });
    if (!pts.length) {
      svg.innerHTML = '<text class="empty" x="' + W / 2 + '" y="' + H / 2 +
        '" text-anchor="middle">' + esc(cfg.empty) + "</text>";
      return;
    }
    var xs = pts.map(function (p) { return p.x; }), ys = pts.map(function (p) { return p.y; });
    if (cfg.diag) { xs = xs.concat(ys); ys = xs; }
    var sx = scale(xs, cfg.logx, pw, false), sy = scale(ys, cfg.logy, ph, true);
    out.push('<g transform="translate(' + M.l + "," + M.t + ')">');
    out.push('<g class="grid">');
    ticks(sx.lo, sx.hi, cfg.logx).forEach(function (t) {
      var x = sx(t).toFixed(1);
      out.push('<line x1="' + x + '" x2="' + x + '" y1="0" y2="' + ph + '"></line>' +
               '<text x="' + x + '" y="' + (ph + 15) + '" text-anchor="middle">' + fmtTick(t) +
               "</text>");
    });
    ticks(sy.lo, sy.hi, cfg.logy).forEach(function (t) {
      var y = sy(t).toFixed(1);
      out.push('<line x1="0" x2="' + pw + '" y1="' + y + '" y2="' + y + '"></line>' +
               '<text x="-6" y="' + y + '" dy="4" text-anchor="end">' + fmtTick(t) + "</text>");
    });
    out.push("</g>");
    out.push('<g class="axis"><path d="M0,0V' + ph + "H" + pw + '" fill="none"></path></g>');
    out.push('<text x="' + pw / 2 + '" y="' + (ph + 36) + '" text-anchor="middle">' +
             esc(cfg.xlabel) + "</text>");
    out.push('<text transform="translate(-48,' + ph / 2 + ') rotate(-90)" text-anchor="middle">' +
             esc(cfg.ylabel) + "</text>");
    if (cfg.diag) {
      var lo = Math.max(sx.lo, sy.lo), hi = Math.min(sx.hi, sy.hi);
      out.push('<line class="diag" x1="' + sx(lo) + '" y1="' + sy(lo) + '" x2="' + sx(hi) +
               '" y2="' + sy(hi) + '"></line>');
    }
    if (cfg.line && cfg.line.length > 1) {
      out.push('<polyline class="front" points="' + cfg.line.map(function (p) {
        return sx(p.x).toFixed(1) + "," + sy(p.y).toFixed(1);
      }).join(" ") + '"></polyline>');
    }
    out.push("</g>");
    (cfg.legend || []).forEach(function (item, i) {  // under the points, never in their way
      out.push('<g class="legend" transform="translate(' + (M.l + 10) + "," +
               (M.t + 12 + 15 * i) + ')"><circle r="4" fill="' + esc(item[1]) +
               '"></circle><text x="8" dy="4">' + esc(item[0]) + "</text></g>");
    });
    out.push('<g transform="translate(' + M.l + "," + M.t + ')">');
    pts.forEach(function (p, i) {
      out.push('<circle class="pt ' + (p.cls || "") + '" data-i="' + i + '" data-id="' +
               esc(p.id) + '" cx="' + sx(p.x).toFixed(1) + '" cy="' + sy(p.y).toFixed(1) +
               '" r="' + (p.r || 5) + '" fill="' + esc(p.color) + '"></circle>');
    });
    out.push("</g>");
    svg.innerHTML = out.join("");
    svg.pointsData = pts;
    markSelected();
  }

  function familyLegend(ids) {
    return Object.keys(D.families).filter(function (f) {
      return D.variants.some(function (v) { return v.family === f && ids[v.id]; });
    }).map(function (f) { return [f, D.families[f]]; });
  }

  function seriesOptions(select, keys, preferred) {
    select.innerHTML = keys.map(function (k) {
      return '<option value="' + esc(k) + '">' + esc(SERIES[k].name) + "</option>";
    }).join("");
    if (preferred && keys.indexOf(preferred) >= 0) select.value = preferred;
  }
  var latencyKeys = D.series.map(function (s) { return s.key; });
  seriesOptions($("scatter-y"), latencyKeys, "onnxruntime_int8");
  seriesOptions($("pareto-x"), latencyKeys, "est_int8");

  var SIZE = {macs: ["MACs (M)", 1e-6], params: ["parameters (M)", 1e-6],
              tflite_kb: ["model.int8.tflite (KB)", 1]};

  function latencyLine(v, key, withHow) {
    var s = SERIES[key];
    var text = "latency " + num(v.lat[key]) + " ms: " + s.name;
    return withHow ? [text, label(v.how[key])] : [text];
  }

  function variantTip(v, key) {
    var lines = [["b", v.id], ["", v.family + " · α " + v.alpha + " · " + v.resolution + " px"]];
    if (key && v.lat[key] !== undefined) {
      var l = latencyLine(v, key, true);
      lines.push(["", l[0]], ["how", l[1]]);
    }
    D.series.forEach(function (s) {
      if (s.key !== key && v.lat[s.key] !== undefined) {
        lines.push(["", num(v.lat[s.key]) + " ms: " + s.name]);
      }
    });
    lines.push(["", "size: model.int8.tflite " + num(v.tflite_kb) + " KB · " +
                num(v.params / 1e6) + " M params · " + num(v.macs / 1e6) + " M MACs"]);
    var w = v.weights, weights = w.kind + ": " + w.source;
    if (v.top1) {
      lines.push(["", "accuracy: top-1 " + v.top1.value + "% (" + label(v.top1.source) + ")"],
                 ["how", "the published checkpoint's, not this build's weights (" + weights + ")"]);
    } else {
      lines.push(["", "accuracy: no published top-1 for this variant; this build's " + weights]);
    }
    if (w.top1_int8 !== undefined) {
      lines.push(["", "int8 top-1 on your validation images (" + w.top1_images + "): " +
                  w.top1_int8 + "%"]);
    }
    lines.push(["how", "int8 cosine vs fp32 " + v.cosine + (v.enforced ? " (enforced)" :
                " (reported, not enforced: " + w.kind + ")")]);
    return lines;
  }

  function drawScatter(ids) {
    var key = $("scatter-y").value, x = $("scatter-x").value, log = $("scatter-log").checked;
    var pts = D.variants.filter(function (v) { return ids[v.id]; }).map(function (v) {
      return {x: v[x] === null ? null : v[x] * SIZE[x][1], y: v.lat[key] === undefined ? null
              : v.lat[key], id: v.id, color: D.families[v.family]};
    });
    var s = SERIES[key];
    plot($("scatter"), {points: pts, xlabel: SIZE[x][0],
                        ylabel: s.name.split(",")[0] + " (ms, " + s.kind + ")", logx: log,
                        logy: log, legend: familyLegend(ids),
                        empty: "no variant shown has this latency"});
    $("scatter").dataset.series = key;
    $("scatter-caption").textContent = "Latency: " + s.name + " (" + s.kind.toUpperCase() +
      "; hover a point for how). Size: exact counts from the static analysis, file size " +
      "from index.json.";
  }

  function drawPareto(ids) {
    var key = $("pareto-x").value, s = SERIES[key];
    var pts = D.variants.filter(function (v) {
      return ids[v.id] && v.top1 && v.lat[key] !== undefined;
    }).map(function (v) {
      return {x: v.lat[key], y: v.top1.value, id: v.id, color: D.families[v.family]};
    });
    var front = [], best = -Infinity;
    pts.slice().sort(function (a, b) { return a.x - b.x || b.y - a.y; }).forEach(function (p) {
      if (p.y > best) { front.push(p); best = p.y; p.cls = "onfront"; p.r = 6; }
    });
    plot($("pareto"), {points: pts, line: front, xlabel: s.name + " (ms)",
                       ylabel: "published int8 top-1 (%)", legend: familyLegend(ids),
                       empty: "no variant shown has a published top-1 (MLPerf v2.0 rows)"});
    $("pareto").dataset.series = key;
    $("pareto-caption").textContent = "Pareto front (line): no variant is both faster and " +
      "more accurate. Latency: " + s.name + " (" + s.kind.toUpperCase() + "). Top-1: " +
      D.published_top1 + ", not the weights of this build's files.";
  }

  function drawReference() {
    var fig = $("plot-reference");
    if (!D.reference.length) { fig.hidden = true; return; }
    var colors = {fp32: "#1f77b4", int8: "#d62728"};
    plot($("reference"), {
      points: D.reference.map(function (r, i) {
        return {x: r.measured, y: r.estimated, id: "ref:" + i, color: colors[r.precision]};
      }),
      diag: true, xlabel: "MEASURED on a real " + D.target + " (ms)",
      ylabel: "ESTIMATED (ms)", legend: [["fp32", colors.fp32], ["int8", colors.int8]],
      empty: ""});
    $("reference-caption").textContent = "Each point: a network measured on a real " +
      D.target + " (the shipped MLPerf v2.0 (Krai) TFLite figures the default latency model " +
      "was fitted to) against this edgeexport's estimate of it; dashed: estimate = measurement.";
  }

  function drawPlots() {
    var ids = visibleIds();
    drawScatter(ids);
    drawPareto(ids);
  }
  ["filter", "family"].forEach(function (id) { $(id).addEventListener("input", drawPlots); });
  ["scatter-y", "scatter-x", "scatter-log", "pareto-x"].forEach(function (id) {
    $(id).addEventListener("change", drawPlots);
  });

  // ---- tooltips ----
  var tip = $("tip");
  function showTip(e, lines) {
    tip.innerHTML = lines.map(function (l) {
      return l[0] === "b" ? "<div><b>" + esc(l[1]) + "</b></div>"
        : '<div class="' + l[0] + '">' + esc(l[1]) + "</div>";
    }).join("");
    tip.hidden = false;
    moveTip(e);
  }
  function moveTip(e) {
    var x = e.clientX + 14, y = e.clientY + 14, r = tip.getBoundingClientRect();
    if (x + r.width > innerWidth) x = Math.max(0, e.clientX - r.width - 14);
    if (y + r.height > innerHeight) y = Math.max(0, e.clientY - r.height - 14);
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }
  function pointAt(e) {
    var c = e.target.closest && e.target.closest("circle.pt");
    return c ? {circle: c, svg: c.ownerSVGElement} : null;
  }
  ["scatter", "pareto", "reference"].forEach(function (name) {
    var svg = $(name);
    svg.addEventListener("mouseover", function (e) {
      var hit = pointAt(e);
      if (!hit) return;
      var id = hit.circle.dataset.id;
      if (name === "reference") {
        var r = D.reference[+id.slice(4)];
        showTip(e, [["b", r.id + " " + r.precision],
                    ["", "MEASURED on a real " + D.target + ": " + num(r.measured) +
                     " ms (MLPerf v2.0, Krai, TFLite)"],
                    ["", "ESTIMATED: " + num(r.estimated) + " ms (this target's cost model)"]]);
      } else {
        showTip(e, variantTip(V[id], svg.dataset.series));
      }
    });
    svg.addEventListener("mousemove", function (e) { if (!tip.hidden) moveTip(e); });
    svg.addEventListener("mouseout", function (e) { if (pointAt(e)) tip.hidden = true; });
    svg.addEventListener("click", function (e) {
      var hit = pointAt(e);
      if (hit && name !== "reference") location.hash = "v=" + hit.circle.dataset.id;
    });
  });

  // ---- the layer view ----
  var current = null;
  function markSelected() {
    document.querySelectorAll("circle.pt").forEach(function (c) {
      c.classList.toggle("selected", c.dataset.id === current);
    });
    allRows.forEach(function (tr) { tr.classList.toggle("selected", tr.dataset.id === current); });
  }

  function layerSeriesName(key) {
    return SERIES[key] ? SERIES[key].name : key;
  }

  function showLayers(id) {
    var L = D.layers[id], v = V[id];
    if (!L) return false;
    current = id;
    var sec = $("layers");
    sec.hidden = false;
    sec.dataset.variant = id;
    $("layers-title").textContent = "Layers: " + id;
    var info = [["b", v.family + " · α " + v.alpha + " · " + v.resolution + " px · " +
                 v.weights.kind + " (" + v.weights.source + ")"]];
    D.series.forEach(function (s) {
      if (v.lat[s.key] !== undefined) {
        info.push(["", num(v.lat[s.key]) + " ms end to end: " + s.name],
                  ["how", label(v.how[s.key])]);
      }
    });
    if (L.metric !== undefined) info.push(["", "int8 error map: " + label(L.metric)]);
    L.repair.forEach(function (line) { info.push(["", line]); });
    $("layers-summary").innerHTML = info.map(function (l) {
      return l[0] === "b" ? "<p><b>" + esc(l[1]) + "</b></p>"
        : '<div class="' + l[0] + '">' + esc(l[1]) + "</div>";
    }).join("");
    var select = $("layers-series"), keys = Object.keys(L.series);
    var previous = select.value;
    select.innerHTML = keys.map(function (k) {
      return '<option value="' + esc(k) + '">' + esc(layerSeriesName(k)) + "</option>";
    }).join("");
    select.value = keys.indexOf(previous) >= 0 ? previous : keys[0];
    drawLayers();
    drawArm(L.arm);
    markSelected();
    return true;
  }

  // The emulated ARM check of the variant's files (card.json → arm), one table per board.
  function drawArm(checks) {
    var pct = function (x) { return num(100 * x) + "%"; };
    $("layers-arm").innerHTML = checks.map(function (c) {
      var rows = c.files.map(function (f) {
        return "<tr><td>" + esc(f.file) + "</td><td>" + esc(f.runtime) + "</td><td>" +
          f.cosine_mean.toPrecision(6) + "</td><td>" + num(f.top1_agreement) + "</td><td>" +
          pct(f.bit_identical) + "</td><td>" + f.max_abs_diff.toPrecision(2) + "</td><td>" +
          esc(f.ops_arm || "–") + "</td><td>" + esc(f.ops_x86 || "–") + "</td><td>" +
          esc(f.result) + "</td></tr>";
      }).join("");
      return '<h3 class="arm">' + esc(c.title) + "</h3>" +
        c.failures.map(function (x) { return '<p class="fail">' + esc(x) + "</p>"; }).join("") +
        '<div class="scroll"><table class="arm-table"><thead><tr><th>file</th><th>runtime</th>' +
        "<th>cosine (mean)</th><th>top-1 agreement</th><th>bit-identical</th><th>max |Δ|</th>" +
        "<th>ONNX ops on ARM</th><th>ONNX ops here</th><th>result</th></tr></thead><tbody>" +
        rows + "</tbody></table></div>";
    }).join("");
  }

  function bar(value, max, width, cls) {
    if (value === null || value === undefined) return "<td class=\"" + cls + "\">–</td>";
    var w = max > 0 ? Math.max(0, value) / max * width : 0;
    return '<td class="' + cls + '"><span class="b" style="width:' + w.toFixed(1) +
      'px"></span>' + num(value) + "</td>";
  }

  function drawLayers() {
    var L = D.layers[current];
    if (!L) return;
    var key = $("layers-series").value, ms = L.series[key] || [];
    var only = $("layers-compute").checked;
    var maxMs = Math.max.apply(null, ms.map(function (x) { return x || 0; }).concat([0]));
    var sq = L.sqnr, fields = ["onnx_local_db", "onnx_db", "tflite_db"];
    var maxDb = 0;
    if (sq) fields.forEach(function (f) {
      sq[f].forEach(function (x) { if (x !== null && x > maxDb) maxDb = x; });
    });
    var worst = {}, kept = {}, floated = {};
    (L.worst || []).forEach(function (n) { worst[n] = true; });
    L.kept.forEach(function (n) { kept[n] = true; });
    L.float.forEach(function (n) { floated[n] = true; });
    var how = L.how[key] !== undefined ? label(L.how[key]) : "";
    var metric = L.metric !== undefined ? label(L.metric) : "";
    var head = '<thead><tr><th>layer</th><th>op</th><th>MACs (M)</th><th class="ms" title="' +
      esc(how) + '">' + esc(layerSeriesName(key)) + " (ms)</th>";
    if (sq) {
      head += '<th title="' + esc(metric) + '">int8 SQNR local (dB)</th>' +
        '<th title="' + esc(metric) + '">ONNX accumulated (dB)</th>' +
        '<th title="' + esc(metric) + '">TFLite accumulated (dB)</th>';
    }
    head += "</tr></thead>";
    var rows = [];
    L.names.forEach(function (name, i) {
      if (only && !ms[i]) return;
      var cls = [worst[name] ? "worst" : "", kept[name] ? "kept" : "",
                 floated[name] ? "float" : ""].join(" ").trim();
      var row = '<tr data-layer="' + esc(name) + '"' + (cls ? ' class="' + cls + '"' : "") +
        '><td class="name">' + esc(name) + "</td><td>" + esc(L.ops[i]) + "</td><td>" +
        (L.macs[i] === null ? "–" : num(L.macs[i] / 1e6)) + "</td>" +
        bar(ms[i], maxMs, 240, key.indexOf("est_") === 0 ? "bar est" : "bar");
      if (sq) fields.forEach(function (f) { row += bar(sq[f][i], maxDb, 80, "db"); });
      rows.push(row + "</tr>");
    });
    $("layer-table").innerHTML = head + "<tbody>" + rows.join("") + "</tbody>";
  }
  $("layers-series").addEventListener("change", drawLayers);
  $("layers-compute").addEventListener("change", drawLayers);

  function route(scroll) {
    var m = /^#v=(.+)$/.exec(location.hash);
    var id = m ? decodeURIComponent(m[1]) : document.body.dataset.chosen;
    if (showLayers(id) && scroll && m) $("layers").scrollIntoView({block: "start"});
  }
  window.addEventListener("hashchange", function () { route(true); });

  drawPlots();
  drawReference();
  route(false);
  document.body.dataset.ready = "1";
})();
