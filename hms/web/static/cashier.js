// /cashier: keyboard moves through the bills, focus where the work is, a form sent once,
// and the live list: ONE EventSource on /api/bills/stream (billing's "bills changed"
// topic, not the doctors' queues). Each event reloads the Bills to collect fragment for
// the search shown. A static file: the page's CSP allows HMS's own scripts only.
(function () {
  "use strict";
  var box = document.getElementById("find-q");
  var statusEl = document.getElementById("live-status");
  var MAX_DELAY = 30000;

  // --- Bills to collect: ↓/↑ through the bills, Enter on the box opens the only one -------
  function links() {
    return Array.prototype.slice.call(document.querySelectorAll("#bills a.bill-link"));
  }
  if (box) {
    box.addEventListener("keydown", function (event) {
      var found = links();
      if (event.key === "ArrowDown" && found.length) {
        event.preventDefault();
        found[0].focus();
      } else if (event.key === "Enter" && found.length === 1) {
        event.preventDefault();
        window.location.href = found[0].href;
      }
    });
  }
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (!target.classList || !target.classList.contains("bill-link")) return;
    var found = links();
    var at = found.indexOf(target);
    if (event.key === "ArrowDown" && at < found.length - 1) {
      event.preventDefault();
      found[at + 1].focus();
    } else if (event.key === "ArrowUp") {
      event.preventDefault();
      if (at > 0) found[at - 1].focus(); else if (box) box.focus();
    } else if (event.key === "Escape" && box) {
      box.focus();
    }
  });

  // Focus where the work is: the receipt after paying in full, else the Amount.
  var first = document.querySelector("[data-focus-first]");
  if (first && document.activeElement !== first) first.focus();

  // A form is sent once: a second Enter or click while it is on its way does nothing
  // (the idempotency key would make a payment's second post harmless anyway).
  document.querySelectorAll("#pay-form, #refund-form, #void-form, #prescribed-form").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.sent) { event.preventDefault(); return; }
      form.dataset.sent = "1";
    });
  });

  // --- live: reload the list on every "bills changed" event -----------------------------
  var state = "connecting";
  var source = null;
  var timer = null;
  var delay = 1000;
  var closed = false;
  var loading = null;
  var again = false;

  function setState(next) {
    if (state === next) return;
    state = next;
    if (statusEl) {
      statusEl.dataset.state = state;
      statusEl.textContent = state === "live" ? "Live" : state === "connecting" ? "Connecting…" : "reconnecting…";
    }
    document.documentElement.classList.toggle("reconnecting", state === "reconnecting");
  }

  function reloadList() {
    if (loading) { again = true; return; } // one at a time; the last event wins
    var params = new URLSearchParams();
    params.set("q", box ? box.value : "");
    var chosen = new URLSearchParams(window.location.search).get("bill");
    if (chosen) params.set("bill", chosen);
    loading = fetch("/cashier/bills?" + params.toString(), { credentials: "same-origin", headers: { "HX-Request": "true" } })
      .then(function (res) { return res.ok ? res.text() : null; })
      .then(function (html) {
        var list = document.getElementById("bills");
        if (html && list) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById("bills");
          var focused = document.activeElement && list.contains(document.activeElement) ? document.activeElement.getAttribute("href") : null;
          if (fresh) {
            list.replaceWith(fresh);
            if (focused) {
              var back = fresh.querySelector('a[href="' + focused.replace(/"/g, '\\"') + '"]');
              if (back) back.focus();
            }
          }
        }
      }, function () {})
      .then(function () {
        loading = null;
        if (again) { again = false; reloadList(); }
      });
  }

  function disconnect() {
    clearTimeout(timer);
    if (source) source.close();
    source = null;
  }

  function retryLater() {
    if (closed) return;
    clearTimeout(timer);
    var wait = delay * (0.8 + Math.random() * 0.4);
    timer = setTimeout(function () {
      fetch("/api/auth/me", { credentials: "same-origin" }).then(function (res) {
        if (res.status === 401) {
          window.location.href = "/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
        } else {
          connect();
        }
      }, connect);
    }, wait);
    delay = Math.min(delay * 2, MAX_DELAY);
  }

  function connect() {
    disconnect();
    if (closed) return;
    var opened = new EventSource("/api/bills/stream", { withCredentials: true });
    source = opened;
    opened.onopen = function () { setState("live"); };
    opened.addEventListener("bills", function () {
      delay = 1000;
      setState("live");
      reloadList(); // the first event too: a change between the page's render and now
    });
    opened.onerror = function () {
      if (source !== opened) return;
      setState("reconnecting");
      if (opened.readyState === EventSource.CLOSED) {
        opened.close();
        retryLater();
      }
    };
  }

  if (document.getElementById("bills") && window.EventSource) {
    if (statusEl) statusEl.dataset.state = state;
    connect();
    window.addEventListener("pagehide", function () { closed = true; disconnect(); });
  }
})();
