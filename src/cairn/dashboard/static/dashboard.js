// Cairn dashboard: small progressive enhancements. Every page works without this file.
(function () {
  "use strict";

  function copyText(text, button) {
    function done(ok) {
      var old = button.textContent;
      button.textContent = ok ? "Copied" : "Press Ctrl+C";
      button.classList.toggle("copied", ok);
      setTimeout(function () { button.textContent = old; button.classList.remove("copied"); }, 1500);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, function () { fallback(); });
    } else {
      fallback();
    }
    function fallback() {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area);
      done(ok);
    }
  }

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof Element)) return;
    var copy = target.closest("[data-copy]");
    if (copy) {
      event.preventDefault();
      copyText(copy.getAttribute("data-copy"), copy);
      return;
    }
    var toggle = target.closest("[data-edit-toggle]");
    if (toggle) {
      var form = document.getElementById(toggle.getAttribute("data-edit-toggle"));
      if (form) {
        form.hidden = false;
        toggle.hidden = true;
        var view = document.getElementById(toggle.getAttribute("data-edit-view") || "description-view");
        if (view) view.hidden = true;
        var area = form.querySelector("textarea");
        if (area) area.focus();
      }
      return;
    }
    var cancel = target.closest("[data-edit-cancel]");
    if (cancel) {
      var f = document.getElementById(cancel.getAttribute("data-edit-cancel"));
      if (f) {
        f.hidden = true;
        f.reset();
        var t = document.querySelector("[data-edit-toggle='" + f.id + "']");
        var v = document.getElementById((t && t.getAttribute("data-edit-view")) || "description-view");
        if (v) v.hidden = false;
        if (t) t.hidden = false;
        var areas = f.querySelectorAll("textarea[data-json-object]");
        for (var i = 0; i < areas.length; i++) checkJsonObject(areas[i]);
      }
    }
  });

  // a form with data-confirm asks first (removing a webhook)
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form instanceof HTMLFormElement && form.hasAttribute("data-confirm")) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    }
  });

  // A JSON editor (textarea[data-json-object=ID of its message]): says at once what is wrong
  // and keeps the form from being sent until the text is a JSON object. The server checks again.
  function checkJsonObject(area) {
    var message = "";
    if (!area.value.trim()) {
      message = "The metadata is empty: write {} for no metadata.";
    } else {
      try {
        var value = JSON.parse(area.value);
        if (value === null || typeof value !== "object" || Array.isArray(value)) {
          var kind = value === null ? "null" : Array.isArray(value) ? "a list" : "a " + typeof value;
          message = "The metadata must be a JSON object ({...}), not " + kind + ".";
        }
      } catch (e) {
        message = "Not valid JSON: " + e.message;
      }
    }
    area.setCustomValidity(message);
    var out = document.getElementById(area.getAttribute("data-json-object"));
    if (out) {
      out.textContent = message;
      out.hidden = !message;
    }
    return !message;
  }

  document.addEventListener("input", function (event) {
    var target = event.target;
    if (target instanceof HTMLTextAreaElement && target.hasAttribute("data-json-object")) {
      checkJsonObject(target);
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    var areas = form.querySelectorAll("textarea[data-json-object]");
    for (var i = 0; i < areas.length; i++) {
      if (!checkJsonObject(areas[i])) {
        event.preventDefault();
        areas[i].focus();
        return;
      }
    }
  }, true);

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target instanceof HTMLSelectElement && target.hasAttribute("data-autosubmit") && target.form) {
      target.form.submit();
    }
  });

  // Ctrl/Cmd+Enter saves an edited description
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && target instanceof HTMLTextAreaElement && target.form) {
      event.preventDefault();
      target.form.requestSubmit();
    }
  });
})();

// Lineage graph: pan (drag), zoom (wheel, pinch, buttons), fit, and find a node by name. Without
// this the graph is the plain SVG, shrunk to fit or scrolled. The view is the SVG's viewBox;
// on load (and so after a group is expanded) the version the page is about is kept in view.
(function () {
  "use strict";
  var svg = document.getElementById("lineage-graph");
  var tools = document.getElementById("graph-tools");
  if (!svg || !tools || !svg.viewBox || !svg.viewBox.baseVal) return;
  var box = svg.parentElement;
  var gw = svg.viewBox.baseVal.width, gh = svg.viewBox.baseVal.height;
  var nodeW = parseFloat(svg.getAttribute("data-node-w")) || 200;
  var nodeH = parseFloat(svg.getAttribute("data-node-h")) || 46;
  var MIN = 0.1, MAX = 4, PAD = 16;
  var view = { x: 0, y: 0, s: 1 };
  var level = document.getElementById("zoom-level");

  tools.hidden = false;
  svg.classList.remove("fit");
  svg.classList.add("zoomable");
  box.classList.add("panzoom");
  svg.removeAttribute("width");
  svg.removeAttribute("height");

  function size() {
    var r = svg.getBoundingClientRect();
    return { w: r.width || 1, h: r.height || 1, left: r.left, top: r.top };
  }
  function fitScale() {
    var z = size();
    return Math.min((z.w - 2 * PAD) / gw, (z.h - 2 * PAD) / gh, 1);
  }
  function apply() {
    var z = size();
    svg.setAttribute("viewBox", [view.x, view.y, z.w / view.s, z.h / view.s].join(" "));
    svg.setAttribute("data-scale", view.s.toFixed(3));
    if (level) level.textContent = Math.round(view.s * 100) + "%";
  }
  function zoomAt(factor, px, py) {  // px, py: a point of the box, in CSS pixels
    var s = Math.min(MAX, Math.max(MIN, view.s * factor));
    view.x += px / view.s - px / s;
    view.y += py / view.s - py / s;
    view.s = s;
    apply();
  }
  function centreOn(cx, cy) {  // a point of the graph in the middle of the box
    var z = size();
    view.x = cx - z.w / (2 * view.s);
    view.y = cy - z.h / (2 * view.s);
    apply();
  }
  function fit() {
    view.s = Math.max(MIN, fitScale());
    centreOn(gw / 2, gh / 2);
  }
  function nodeAt(g) {  // the graph coordinates of a node's top left corner
    var m = /translate\(\s*([-\d.]+)[ ,]+([-\d.]+)/.exec(g.getAttribute("transform") || "");
    return m ? { x: parseFloat(m[1]), y: parseFloat(m[2]) } : null;
  }
  function show(g) {  // centre a node, zoomed in enough to read
    var at = nodeAt(g);
    if (!at) return;
    if (view.s < 0.75) view.s = 0.75;
    centreOn(at.x + nodeW / 2, at.y + nodeH / 2);
  }
  function sizeBox() {
    // the box is as tall as the graph at the scale it opens with, within bounds
    var w = box.clientWidth || gw;
    var s = Math.min(1, (w - 2 * PAD) / gw);
    if (s < 0.55) s = 0.8;  // a large graph opens readable, around its root, not as a speck
    var h = Math.max(260, Math.min(gh * s + 2 * PAD, window.innerHeight * 0.72));
    svg.style.height = Math.round(h) + "px";
    return s;
  }

  var start = sizeBox();
  var root = svg.querySelector("g.root");
  if (start >= 0.55 && fitScale() >= 0.55) {
    fit();
  } else {
    view.s = start;
    if (root) show(root); else fit();
  }

  tools.addEventListener("click", function (event) {
    var b = event.target instanceof Element ? event.target.closest("[data-zoom]") : null;
    if (!b) return;
    var z = size(), what = b.getAttribute("data-zoom");
    if (what === "in") zoomAt(1.25, z.w / 2, z.h / 2);
    else if (what === "out") zoomAt(0.8, z.w / 2, z.h / 2);
    else if (what === "fit") fit();
    else if (what === "root" && root) show(root);
  });

  svg.addEventListener("wheel", function (event) {
    event.preventDefault();
    var z = size();
    var d = event.deltaMode === 1 ? event.deltaY * 16 : event.deltaY;
    zoomAt(Math.exp(-d * (event.ctrlKey ? 0.01 : 0.0015)), event.clientX - z.left, event.clientY - z.top);
  }, { passive: false });

  // drag to pan with one pointer, pinch to zoom with two; a drag is not a click on a node
  var pointers = {}, dragged = false, last = null, pinch = 0;
  function count() { return Object.keys(pointers).length; }
  function spread() {
    var k = Object.keys(pointers);
    if (k.length < 2) return 0;
    var a = pointers[k[0]], b = pointers[k[1]];
    return Math.hypot(a.x - b.x, a.y - b.y);
  }
  svg.addEventListener("pointerdown", function (event) {
    if (event.button !== 0 && event.pointerType === "mouse") return;
    pointers[event.pointerId] = { x: event.clientX, y: event.clientY };
    last = { x: event.clientX, y: event.clientY };
    dragged = false;
    pinch = spread();
  });
  svg.addEventListener("pointermove", function (event) {
    var p = pointers[event.pointerId];
    if (!p) return;
    p.x = event.clientX;
    p.y = event.clientY;
    if (count() >= 2) {
      var now = spread(), z = size(), k = Object.keys(pointers);
      var mx = (pointers[k[0]].x + pointers[k[1]].x) / 2 - z.left;
      var my = (pointers[k[0]].y + pointers[k[1]].y) / 2 - z.top;
      if (pinch > 0 && now > 0) zoomAt(now / pinch, mx, my);
      pinch = now;
      dragged = true;
      return;
    }
    var dx = event.clientX - last.x, dy = event.clientY - last.y;
    if (!dragged && Math.hypot(dx, dy) < 4) return;
    if (!dragged) {
      dragged = true;
      svg.classList.add("dragging");
      try { svg.setPointerCapture(event.pointerId); } catch (e) { /* the pointer is gone */ }
    }
    view.x -= dx / view.s;
    view.y -= dy / view.s;
    last = { x: event.clientX, y: event.clientY };
    apply();
  });
  function up(event) {
    delete pointers[event.pointerId];
    pinch = spread();
    if (!count()) svg.classList.remove("dragging");
  }
  svg.addEventListener("pointerup", up);
  svg.addEventListener("pointercancel", up);
  svg.addEventListener("click", function (event) {
    if (dragged) { event.preventDefault(); event.stopPropagation(); dragged = false; }
  }, true);

  svg.setAttribute("tabindex", "0");
  svg.addEventListener("keydown", function (event) {
    var z = size(), step = 60 / view.s;
    var keys = {
      "+": function () { zoomAt(1.25, z.w / 2, z.h / 2); },
      "=": function () { zoomAt(1.25, z.w / 2, z.h / 2); },
      "-": function () { zoomAt(0.8, z.w / 2, z.h / 2); },
      "0": fit,
      ArrowLeft: function () { view.x -= step; apply(); },
      ArrowRight: function () { view.x += step; apply(); },
      ArrowUp: function () { view.y -= step; apply(); },
      ArrowDown: function () { view.y += step; apply(); }
    };
    if (keys[event.key] && !event.ctrlKey && !event.metaKey) {
      event.preventDefault();
      keys[event.key]();
    }
  });

  var find = document.getElementById("find-node");
  var message = document.getElementById("find-message");
  if (find) find.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = (find.elements.namedItem("node").value || "").trim().toLowerCase();
    var nodes = svg.querySelectorAll("g[data-node]");
    var exact = null, partial = [];
    for (var i = 0; i < nodes.length; i++) {
      nodes[i].classList.remove("found");
      var label = (nodes[i].getAttribute("data-label") || "").toLowerCase();
      var name = (nodes[i].getAttribute("data-name") || "").toLowerCase();
      if (!text) continue;
      if (!exact && (label === text || name === text)) exact = nodes[i];
      else if (label.indexOf(text) >= 0 || name.indexOf(text) >= 0) partial.push(nodes[i]);
    }
    var hit = exact || partial[0] || null;
    if (!text) { message.textContent = ""; return; }
    if (!hit) { message.textContent = "No node named “" + text + "” in this graph."; return; }
    var all = exact ? [exact] : partial;
    for (var j = 0; j < all.length; j++) all[j].classList.add("found");
    message.textContent = all.length > 1 ? all.length + " nodes match; centred the first." : "";
    show(hit);
  });

  window.addEventListener("resize", function () { apply(); });
})();
