/* spert visualize: lays out entity marks under the text and draws relation arcs above it,
   from the data attributes of the static page (entity marks and relation lists).
   Layout reads every position first and then writes, so a page of thousands of sentences
   costs two reflows, not one per element. */
(function () {
  "use strict";
  var SVGNS = "http://www.w3.org/2000/svg";
  var ROW = 19; // height of a row of entity marks
  var STEP = 17; // height between arc levels
  var TOP = 16; // room above the highest arc for its label
  var LABEL_FONT = "11px ";
  document.documentElement.classList.add("js");

  function all(root, selector) {
    return Array.prototype.slice.call(root.querySelectorAll(selector));
  }

  function svg(name, attrs, parent) {
    var node = document.createElementNS(SVGNS, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  var measureContext = null;
  function textWidth(text, font) {
    if (!measureContext) { measureContext = document.createElement("canvas").getContext("2d"); }
    if (!measureContext) { return 6.2 * text.length; }
    measureContext.font = font;
    return measureContext.measureText(text).width;
  }

  // Phase 1 (reads only): token boxes, natural mark widths.
  function measure(section) {
    var canvas = section.querySelector(".canvas");
    var tokens = all(section, ".tokens .tok");
    if (!canvas || !tokens.length) { return null; }
    var origin = canvas.getBoundingClientRect().left;
    return {
      section: section,
      tokens: tokens.map(function (t) {
        var r = t.getBoundingClientRect();
        return { left: r.left - origin, right: r.right - origin };
      }),
      marks: all(section, ".ents .ent").map(function (m) { return { node: m, natural: Math.ceil(m.getBoundingClientRect().width) + 1 }; }),
      rels: all(section, ".relation-list li[data-r]"),
      width: section.querySelector(".tokens").scrollWidth
    };
  }

  // Phase 2 (writes only): position the marks, draw the arcs.
  function draw(m, font) {
    var section = m.section;
    var boxes = {};
    var rows = 0;
    var byRow = {};
    m.marks.forEach(function (mark) {
      var node = mark.node;
      var start = +node.dataset.start, end = +node.dataset.end, level = +node.dataset.level;
      var box = { left: m.tokens[start].left, right: m.tokens[end - 1].right, mark: mark };
      boxes[node.dataset.e] = box;
      (byRow[level] = byRow[level] || []).push(box);
      node.style.left = box.left + "px";
      node.style.top = level * ROW + "px";
      rows = Math.max(rows, level + 1);
    });
    // A mark narrower than its label may grow up to the next mark on its row.
    Object.keys(byRow).forEach(function (level) {
      var row = byRow[level].sort(function (a, b) { return a.left - b.left; });
      row.forEach(function (box, j) {
        var limit = j + 1 < row.length ? row[j + 1].left - 2 : Infinity;
        var width = Math.max(box.right - box.left, 6);
        if (box.left + box.mark.natural > box.right) {
          width = Math.max(width, Math.min(box.left + box.mark.natural, limit) - box.left);
        }
        box.mark.node.style.width = width + "px";
      });
    });
    section.querySelector(".ents").style.height = rows * ROW + "px";

    // Arc end points: spread over the entity, ordered by where the other end lies.
    var ends = {};
    var items = m.rels.map(function (li) {
      var item = { li: li, head: li.dataset.head, tail: li.dataset.tail };
      [["head", "tail"], ["tail", "head"]].forEach(function (pair) {
        var own = boxes[item[pair[0]]], other = boxes[item[pair[1]]];
        if (!own || !other) { item.broken = true; return; }
        (ends[item[pair[0]]] = ends[item[pair[0]]] || []).push({
          item: item, side: pair[0], key: (other.left + other.right) / 2
        });
      });
      return item;
    });
    Object.keys(ends).forEach(function (e) {
      var box = boxes[e], list = ends[e];
      list.sort(function (a, b) { return a.key - b.key; });
      list.forEach(function (end, j) {
        end.item[end.side + "X"] = box.left + (box.right - box.left) * (j + 1) / (list.length + 1);
      });
    });
    items = items.filter(function (item) { return !item.broken; });

    // Levels: an arc goes above every narrower arc it overlaps.
    var placed = [];
    var maxLevel = 0;
    items.slice().sort(function (a, b) {
      return Math.abs(a.headX - a.tailX) - Math.abs(b.headX - b.tailX);
    }).forEach(function (item) {
      item.lo = Math.min(item.headX, item.tailX);
      item.hi = Math.max(item.headX, item.tailX);
      var level = 0;
      placed.forEach(function (other) {
        if (other.lo <= item.hi && item.lo <= other.hi) { level = Math.max(level, other.level + 1); }
      });
      item.level = level;
      maxLevel = Math.max(maxLevel, level);
      placed.push(item);
    });

    var arcs = section.querySelector("svg.arcs");
    while (arcs.firstChild) { arcs.removeChild(arcs.firstChild); }
    var height = items.length ? TOP + (maxLevel + 1) * STEP + 2 : 0;
    arcs.setAttribute("width", m.width);
    arcs.setAttribute("height", height);
    arcs.setAttribute("viewBox", "0 0 " + m.width + " " + height);
    var base = height;
    items.forEach(function (item) {
      var li = item.li, x1 = item.headX, x2 = item.tailX;
      var top = base - (item.level + 1) * STEP;
      var dir = x2 >= x1 ? 1 : -1;
      var r = Math.min(6, Math.abs(x2 - x1) / 2);
      var g = svg("g", { "class": "rel " + (li.dataset.status || ""), "data-r": li.dataset.r,
        "data-head": item.head, "data-tail": item.tail, "data-type": li.dataset.type }, arcs);
      svg("title", {}, g).textContent = li.getAttribute("title");
      svg("path", { "class": "rel-arc", d: "M" + x1 + "," + base + " V" + (top + r) +
        " Q" + x1 + "," + top + " " + (x1 + dir * r) + "," + top + " H" + (x2 - dir * r) +
        " Q" + x2 + "," + top + " " + x2 + "," + (top + r) + " V" + (base - 5) }, g);
      svg("path", { "class": "rel-arrow", d: "M" + (x2 - 4) + "," + (base - 6) + " L" + (x2 + 4) +
        "," + (base - 6) + " L" + x2 + "," + base + " Z" }, g);
      var w = textWidth(li.dataset.label, font);
      svg("rect", { "class": "rel-label-bg", rx: 2, x: (x1 + x2) / 2 - w / 2 - 2, y: top - 7,
        width: w + 4, height: 14 }, g);
      svg("text", { "class": "rel-label", x: (x1 + x2) / 2, y: top + 4, "text-anchor": "middle" },
        g).textContent = li.dataset.label;
    });
  }

  function layoutAll() {
    var sections = all(document, "section.sentence").filter(function (s) {
      return s.offsetParent !== null;
    });
    // Marks shrink to their natural width before measuring (one write pass).
    sections.forEach(function (s) {
      all(s, ".ents .ent").forEach(function (n) { n.style.width = ""; });
    });
    var font = LABEL_FONT + getComputedStyle(document.body).fontFamily;
    var measured = sections.map(measure).filter(function (m) { return m; });
    measured.forEach(function (m) { draw(m, font); });
  }

  // Hover linking: an entity with its relations, a relation with its two entities.
  function link(section) {
    function clear() {
      all(section, ".hl").forEach(function (n) { n.classList.remove("hl"); });
    }
    function set(entities, relations) {
      entities.forEach(function (e) {
        all(section, '.ent[data-e="' + e + '"], .ent-item[data-e="' + e + '"], .tok[data-e="' + e + '"]')
          .forEach(function (n) { n.classList.add("hl"); });
      });
      relations.forEach(function (r) {
        all(section, '[data-r="' + r + '"]').forEach(function (n) { n.classList.add("hl"); });
      });
    }
    section.addEventListener("mouseover", function (event) {
      var node = event.target.closest ? event.target.closest("[data-e], [data-r]") : null;
      clear();
      if (!node || !section.contains(node)) { return; }
      if (node.hasAttribute("data-r")) {
        set([node.getAttribute("data-head"), node.getAttribute("data-tail")], [node.getAttribute("data-r")]);
      } else {
        var e = node.getAttribute("data-e");
        set([e], all(section, ".relation-list li[data-r]").filter(function (li) {
          return li.dataset.head === e || li.dataset.tail === e;
        }).map(function (li) { return li.dataset.r; }));
      }
    });
    section.addEventListener("mouseleave", clear);
  }

  function init() {
    all(document, "section.sentence").forEach(link);
    layoutAll();
    var filter = document.getElementById("only-errors");
    if (filter) {
      filter.addEventListener("change", function () {
        document.body.classList.toggle("only-errors", filter.checked);
        layoutAll();
      });
    }
    var pending = null;
    window.addEventListener("resize", function () {
      clearTimeout(pending);
      pending = setTimeout(layoutAll, 100);
    });
    if (document.fonts && document.fonts.ready) { document.fonts.ready.then(layoutAll); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
