// The waiting-room display: renders the embedded snapshot, then follows the queue's
// live stream (URL in this script tag's data-stream-url). A static file, so the page's
// Content-Security-Policy allows HMS's own scripts only (script-src 'self').
(function () {
  "use strict";
  var STREAM_URL = document.currentScript.dataset.streamUrl;
  var SHOWN = 6;
  var statusEl = document.getElementById("status");
  var retryDelay = 1000;
  var timer = null;
  var source = null;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function urgentFlag() {
    return el("span", "urgent-flag", "Urgent");
  }

  function waitText(minutes) {
    return minutes === 0 ? "now" : "~" + minutes + " min";
  }

  function render(snapshot) {
    var room = snapshot.in_consultation;
    document.getElementById("doctor-name").textContent = snapshot.doctor.name;
    var token = document.getElementById("room-token");
    var initials = document.getElementById("room-initials");
    token.textContent = room ? room.token : "";
    initials.textContent = room ? room.patient.initials : "Nobody yet";
    if (room && room.priority === "URGENT") initials.append(urgentFlag());
    initials.className = room ? "" : "empty";
    var list = document.getElementById("next");
    var waiting = snapshot.entries.filter(function (e) { return e.status === "WAITING"; });
    list.replaceChildren.apply(list, waiting.slice(0, SHOWN).map(function (entry) {
      var urgent = entry.priority === "URGENT";
      var item = el("li", urgent ? "urgent" : "");
      item.dataset.token = entry.token;
      item.dataset.priority = entry.priority;
      var who = el("span", "initials", entry.patient.initials);
      if (urgent) who.append(urgentFlag());
      item.append(el("span", "token", entry.token), who,
                  el("span", "wait", waitText(entry.estimated_wait_minutes)));
      return item;
    }));
    var more = waiting.length > SHOWN ? " (" + (waiting.length - SHOWN) + " more)" : "";
    document.getElementById("waiting-count").textContent = snapshot.waiting_count + " waiting" + more;
    var updated = document.getElementById("updated");
    updated.dataset.version = snapshot.version;
    updated.textContent = snapshot.date + " · updated " + new Date().toLocaleTimeString();
  }

  function setState(state) {
    statusEl.dataset.state = state;
    statusEl.textContent = state === "live" ? "Live" : "Reconnecting…";
    document.body.classList.toggle("reconnecting", state !== "live");
  }

  // The browser retries a dropped stream by itself (after the server's `retry:` hint),
  // but gives up for good on an HTTP error such as 429 or 503: then we retry, slower
  // each time, and go back to the sign-in page if the session has ended.
  function retryLater() {
    clearTimeout(timer);
    timer = setTimeout(function () {
      fetch("/api/auth/me", { credentials: "same-origin" }).then(function (res) {
        if (res.status === 401) {
          window.location.href = "/login?next=" + encodeURIComponent(window.location.pathname);
        } else {
          connect();
        }
      }, connect);
    }, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 30000);
  }

  function connect() {
    source = new EventSource(STREAM_URL, { withCredentials: true });
    source.onopen = function () { setState("live"); };
    source.addEventListener("queue", function (event) {
      render(JSON.parse(event.data));
      setState("live");
      retryDelay = 1000;
    });
    source.onerror = function () {
      setState("reconnecting");
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        retryLater();
      }
    };
  }

  render(JSON.parse(document.getElementById("initial-snapshot").textContent));
  connect();
})();
