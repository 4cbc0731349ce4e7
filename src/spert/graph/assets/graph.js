// The knowledge graph page: a force layout drawn as SVG, and a side panel that shows a
// clicked node's aliases or a clicked edge's evidence. No library, no network.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("graph-data").textContent);
  var svgNS = "http://www.w3.org/2000/svg";
  var nodes = data.nodes, edges = data.edges, colours = data.colours;
  var byId = {};
  nodes.forEach(function (n, i) { n.index = i; byId[n.id] = n; });
  var panel = document.getElementById("panel");
  var canvas = document.getElementById("canvas");
  if (!nodes.length) {
    canvas.innerHTML = '<p class="empty">No nodes to show (see the filters above).</p>';
    return;
  }

  // --- layout: deterministic start on a circle, then a simple force simulation ---
  var n = nodes.length, i, j, k;
  var radius = 40 * Math.sqrt(n) + 60;
  nodes.forEach(function (node, i) {
    var a = 2 * Math.PI * i / n;
    node.x = radius * Math.cos(a); node.y = radius * Math.sin(a); node.vx = 0; node.vy = 0;
  });
  var links = edges.map(function (e) { return [byId[e.head], byId[e.tail]]; });
  var ideal = 90, iterations = n > 400 ? 120 : 250;
  for (k = 0; k < iterations; k++) {
    var cool = 1 - k / iterations;
    for (i = 0; i < n; i++) {
      var a = nodes[i];
      for (j = i + 1; j < n; j++) {
        var b = nodes[j];
        var dx = a.x - b.x, dy = a.y - b.y, d2 = dx * dx + dy * dy + 0.01;
        if (d2 > 250000) continue;
        var f = ideal * ideal / d2;
        a.vx += dx * f * 0.05; a.vy += dy * f * 0.05; b.vx -= dx * f * 0.05; b.vy -= dy * f * 0.05;
      }
    }
    links.forEach(function (l) {
      var s = l[0], t = l[1];
      if (s === t) return;
      var dx = t.x - s.x, dy = t.y - s.y, d = Math.sqrt(dx * dx + dy * dy) + 0.01;
      var f = (d - ideal) / d * 0.08;
      s.vx += dx * f; s.vy += dy * f; t.vx -= dx * f; t.vy -= dy * f;
    });
    nodes.forEach(function (node) {
      node.vx -= node.x * 0.002; node.vy -= node.y * 0.002;  // gravity to the centre
      var v = Math.sqrt(node.vx * node.vx + node.vy * node.vy), cap = 30 * cool + 1;
      if (v > cap) { node.vx *= cap / v; node.vy *= cap / v; }
      node.x += node.vx; node.y += node.vy; node.vx *= 0.5; node.vy *= 0.5;
    });
  }

  // --- drawing ---
  var minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
  nodes.forEach(function (node) {
    minX = Math.min(minX, node.x); maxX = Math.max(maxX, node.x);
    minY = Math.min(minY, node.y); maxY = Math.max(maxY, node.y);
  });
  var pad = 80;
  var view = [minX - pad, minY - pad, maxX - minX + 2 * pad, maxY - minY + 2 * pad];
  var svg = el("svg", { viewBox: view.join(" "), "class": "graph" });
  var defs = el("defs", {});
  var marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.appendChild(el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#999" }));
  defs.appendChild(marker);
  svg.appendChild(defs);
  var root = el("g", {});
  svg.appendChild(root);
  var edgeLayer = el("g", { "class": "edges" }), nodeLayer = el("g", { "class": "nodes" });
  root.appendChild(edgeLayer); root.appendChild(nodeLayer);
  var sizeOf = function (node) { return 5 + Math.min(12, 2.2 * Math.log(1 + node.mentions)); };

  edges.forEach(function (e, index) {
    var s = byId[e.head], t = byId[e.tail];
    var g = el("g", { "class": "edge", "data-id": e.id, "data-type": e.type });
    var dx = t.x - s.x, dy = t.y - s.y, d = Math.sqrt(dx * dx + dy * dy) || 1;
    var x1 = s.x + dx / d * sizeOf(s), y1 = s.y + dy / d * sizeOf(s);
    var x2 = t.x - dx / d * (sizeOf(t) + 2), y2 = t.y - dy / d * (sizeOf(t) + 2);
    var attrs = { x1: f2(x1), y1: f2(y1), x2: f2(x2), y2: f2(y2), "class": "visible",
      "stroke-opacity": f2(0.35 + 0.65 * e.confidence) };
    if (!e.symmetric) attrs["marker-end"] = "url(#arrow)";
    g.appendChild(el("line", attrs));
    g.appendChild(el("line", { x1: f2(x1), y1: f2(y1), x2: f2(x2), y2: f2(y2), "class": "hit" }));
    var label = el("text", { x: f2((x1 + x2) / 2), y: f2((y1 + y2) / 2 - 3),
      "text-anchor": "middle", "class": "edge-label" });
    label.textContent = e.type;
    g.appendChild(label);
    g.addEventListener("click", function (ev) { ev.stopPropagation(); select("edge", index); });
    edgeLayer.appendChild(g);
  });
  nodes.forEach(function (node, index) {
    var g = el("g", { "class": "node", "data-id": node.id, "data-type": node.type,
      transform: "translate(" + f2(node.x) + "," + f2(node.y) + ")" });
    g.appendChild(el("circle", { r: f2(sizeOf(node)), fill: colours[node.type] || "#888" }));
    var label = el("text", { x: 0, y: f2(-sizeOf(node) - 3), "text-anchor": "middle",
      "class": "node-label" });
    label.textContent = node.name;
    g.appendChild(label);
    g.addEventListener("click", function (ev) { ev.stopPropagation(); select("node", index); });
    nodeLayer.appendChild(g);
  });
  canvas.appendChild(svg);

  // --- pan and zoom ---
  var scale = 1, tx = 0, ty = 0, drag = null;
  function apply() { root.setAttribute("transform", "translate(" + tx + "," + ty + ") scale(" + scale + ")"); }
  svg.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    scale *= ev.deltaY < 0 ? 1.1 : 1 / 1.1; apply();
  }, { passive: false });
  svg.addEventListener("mousedown", function (ev) { drag = [ev.clientX, ev.clientY, tx, ty]; });
  window.addEventListener("mouseup", function () { drag = null; });
  window.addEventListener("mousemove", function (ev) {
    if (!drag) return;
    var k = view[2] / svg.clientWidth;
    tx = drag[2] + (ev.clientX - drag[0]) * k; ty = drag[3] + (ev.clientY - drag[1]) * k; apply();
  });

  // --- the panel ---
  function select(kind, index) {
    Array.prototype.forEach.call(document.querySelectorAll(".selected"), function (x) {
      x.classList.remove("selected");
    });
    var item = kind === "node" ? nodes[index] : edges[index];
    var layer = kind === "node" ? nodeLayer : edgeLayer;
    layer.children[index].classList.add("selected");
    panel.innerHTML = kind === "node" ? nodeHtml(item) : edgeHtml(item);
    panel.setAttribute("data-selected", item.id);
  }
  function nodeHtml(node) {
    var rows = node.aliases.map(function (a, i) {
      return "<tr class=\"alias\"><td>" + esc(a) + "</td><td>" + node.alias_counts[i] + "</td></tr>";
    }).join("");
    return "<h2>" + esc(node.name) + "</h2>" +
      "<p>type <b>" + esc(node.type) + "</b> · " + node.mentions + " mentions in " +
      node.documents + " documents</p><h3>Aliases</h3><table>" + rows + "</table>";
  }
  function edgeHtml(e) {
    var items = e.evidence.map(function (v) {
      return "<div class=\"evidence\">" + highlight(v.text, v.head_text, v.tail_text) +
        "<div class=\"meta\">document " + esc(v.doc) + ", sentence " + v.sentence +
        " · score " + v.score.toFixed(3) + "</div></div>";
    }).join("");
    var more = e.mentions > e.evidence.length ?
      "<p class=\"hint\">" + e.evidence.length + " of " + e.mentions + " shown</p>" : "";
    return "<h2>" + esc(byId[e.head].name) + " — " + esc(e.type) + " → " +
      esc(byId[e.tail].name) + "</h2><p>confidence <b>" + e.confidence.toFixed(3) +
      "</b> · max score " + e.max_score.toFixed(3) + " · " + e.mentions + " mentions in " +
      e.documents + " documents</p><h3>Evidence</h3>" + items + more;
  }
  function highlight(text, head, tail) {
    var spans = [];
    var h = text.indexOf(head);
    if (h >= 0) spans.push([h, h + head.length, "head"]);
    var t = text.indexOf(tail, 0);
    while (t >= 0 && h >= 0 && t < h + head.length && t + tail.length > h) t = text.indexOf(tail, t + 1);
    if (t >= 0) spans.push([t, t + tail.length, "tail"]);
    spans.sort(function (a, b) { return a[0] - b[0]; });
    var out = "", pos = 0;
    spans.forEach(function (s) {
      if (s[0] < pos) return;
      out += esc(text.slice(pos, s[0])) + "<mark class=\"" + s[2] + "\">" +
        esc(text.slice(s[0], s[1])) + "</mark>";
      pos = s[1];
    });
    return out + esc(text.slice(pos));
  }
  function el(name, attrs) {
    var e = document.createElementNS(svgNS, name);
    for (var key in attrs) e.setAttribute(key, attrs[key]);
    return e;
  }
  function f2(x) { return Math.round(x * 100) / 100; }
  function esc(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;");
  }

  // A link to "page.html#id" opens with that node or edge selected.
  var wanted = decodeURIComponent(location.hash.slice(1));
  if (wanted) {
    nodes.forEach(function (node, i) { if (node.id === wanted) select("node", i); });
    edges.forEach(function (e, i) { if (e.id === wanted) select("edge", i); });
  }
  document.documentElement.classList.add("drawn");
})();
