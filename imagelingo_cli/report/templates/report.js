// The filters: show all variations or only failures, and only those hit by chosen codes.
// Without script every variation stays visible. Printing prints what is shown, expanded.
(function () {
  "use strict";
  var cards = Array.prototype.slice.call(document.querySelectorAll(".variation"));
  var sources = Array.prototype.slice.call(document.querySelectorAll(".source"));
  var buttons = Array.prototype.slice.call(document.querySelectorAll(".by-code button"));
  var radios = Array.prototype.slice.call(document.querySelectorAll('input[name="show"]'));
  var shown = document.getElementById("shown");
  var codes = new Set();
  var failuresOnly = false;

  function matches(card) {
    if (failuresOnly && card.dataset.failure !== "yes") return false;
    if (codes.size === 0) return true;
    return card.dataset.codes.split(" ").some(function (code) { return codes.has(code); });
  }

  function apply() {
    var count = 0;
    cards.forEach(function (card) {
      var visible = matches(card);
      card.hidden = !visible;
      if (visible) count += 1;
    });
    sources.forEach(function (source) {
      source.hidden = !source.querySelector(".variation:not([hidden])");
    });
    shown.textContent = "Showing " + count + " of " + cards.length + " variations";
  }

  radios.forEach(function (radio) {
    radio.addEventListener("change", function () {
      failuresOnly = radio.checked && radio.value === "failures";
      apply();
    });
  });
  buttons.forEach(function (button) {
    button.addEventListener("click", function () {
      var code = button.dataset.code;
      var pressed = !codes.has(code);
      if (pressed) codes.add(code); else codes.delete(code);
      button.setAttribute("aria-pressed", pressed ? "true" : "false");
      apply();
    });
  });

  // A link to a variation the filters hide shows everything again first.
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest('a[href^="#v-"]');
    if (!link) return;
    var target = document.getElementById(link.getAttribute("href").slice(1));
    if (target && target.hidden) {
      codes.clear();
      buttons.forEach(function (b) { b.setAttribute("aria-pressed", "false"); });
      failuresOnly = false;
      radios.forEach(function (r) { r.checked = r.value === "all"; });
      apply();
    }
  });

  var closed = [];
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll('img[loading="lazy"]').forEach(function (img) { img.loading = "eager"; });
    closed = Array.prototype.slice.call(document.querySelectorAll("details.history:not([open])"));
    closed.forEach(function (d) { d.open = true; });
  });
  window.addEventListener("afterprint", function () {
    closed.forEach(function (d) { d.open = false; });
  });
  apply();
})();
