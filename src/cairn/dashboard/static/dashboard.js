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
        var view = document.getElementById("description-view");
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
        var v = document.getElementById("description-view");
        if (v) v.hidden = false;
        var t = document.querySelector("[data-edit-toggle='" + f.id + "']");
        if (t) t.hidden = false;
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
