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
