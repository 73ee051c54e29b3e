// The patient's ticket: follows /api/tickets/<ticket>/stream (event "ticket", the same
// JSON as GET /api/tickets/<ticket>) and shows "Reconnecting…" while it is down.
// A static file: the page's CSP allows no inline script.
(function () {
  "use strict";
  var STREAM_URL = document.currentScript.dataset.streamUrl;
  var page = document.getElementById("ticket");
  var statusEl = document.getElementById("status");
  var retryDelay = 2000;
  var lastStatus = null;

  function text(id, value) { document.getElementById(id).textContent = value; }

  function headline(t) {
    var room = t.doctor.room ? " to " + t.doctor.room : "";
    switch (t.status) {
      case "IN_CONSULTATION": return "It is your turn: please go in" + room + ".";
      case "WAITING": return "Please wait: you will be called.";
      case "COMPLETED": return "Your consultation is complete.";
      case "NO_SHOW": return "You were called but not here: please see reception.";
      case "CANCELLED": return "This appointment was cancelled.";
      default: return t.status;
    }
  }

  function render(t) {
    text("token", t.token);
    text("initials", t.patient.initials);
    document.getElementById("urgent").hidden = t.priority !== "URGENT";
    text("doctor", t.doctor.name);
    text("room", t.doctor.room || "Ask at reception");
    text("position", t.queue_position === null ? "—" : t.queue_position);
    var wait = t.estimated_wait_minutes;
    text("wait", wait === null ? "—" : wait === 0 ? "now" : "about " + wait + " min");
    text("now-serving", t.now_serving_token === null ? "nobody yet" : t.now_serving_token);
    var line = headline(t);
    if (document.getElementById("headline").textContent !== line) text("headline", line);
    page.dataset.status = t.status;
    if (t.status === "IN_CONSULTATION" && lastStatus !== null && lastStatus !== "IN_CONSULTATION") {
      page.classList.add("turn");
      if (navigator.vibrate) navigator.vibrate([300, 150, 300]);
    }
    lastStatus = t.status;
  }

  function setState(state) {
    statusEl.dataset.state = state;
    statusEl.textContent = state === "live" ? "Live" : "Reconnecting…";
  }

  function connect() {
    var source = new EventSource(STREAM_URL);
    source.onopen = function () { setState("live"); };
    source.addEventListener("ticket", function (event) {
      render(JSON.parse(event.data));
      setState("live");
      retryDelay = 2000;
    });
    source.onerror = function () {
      setState("reconnecting");
      if (source.readyState === EventSource.CLOSED) {  // an HTTP error: the browser gave up
        source.close();
        setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 60000);
      }
    };
  }

  var initial = JSON.parse(document.getElementById("initial-ticket").textContent);
  lastStatus = initial.status;
  render(initial);
  connect();
})();
