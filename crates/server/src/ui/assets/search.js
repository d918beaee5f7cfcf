// Search as you type: asks /-/search.json and redraws the result list. The page works without
// it (the form submits to /-/search). No libraries; text is inserted as text, never as HTML.
(function () {
  "use strict";
  var input = document.getElementById("q");
  var list = document.getElementById("results");
  if (!input || !list) return;
  var base = document.body.getAttribute("data-base") || "";
  var pending = null;
  var seq = 0;
  function render(hits, mine) {
    if (mine !== seq) return;
    while (list.firstChild) list.removeChild(list.firstChild);
    hits.forEach(function (h) {
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = base + "/" + h.module;
      a.textContent = h.module;
      li.appendChild(a);
      var meta = document.createElement("div");
      meta.className = "muted";
      meta.textContent = (h.latest ? "latest " + h.latest + " · " : "") +
        h.versions + (h.versions === 1 ? " version" : " versions") +
        " · last fetched " + h.last_fetched;
      li.appendChild(meta);
      list.appendChild(li);
    });
    var status = document.getElementById("result-count");
    if (status) status.textContent = hits.length + (hits.length === 1 ? " module" : " modules");
  }
  input.addEventListener("input", function () {
    if (pending) clearTimeout(pending);
    pending = setTimeout(function () {
      var mine = ++seq;
      var q = input.value.trim();
      fetch(base + "/-/search.json?q=" + encodeURIComponent(q), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : []; })
        .then(function (hits) { render(hits, mine); })
        .catch(function () {});
    }, 150);
  });
})();
