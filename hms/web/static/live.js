// The staff screens' live-queue client: follows one or several doctors' queues on ONE
// stream (/api/queue/stream?doctors=1,2,3; the session cookie authenticates an
// EventSource) and hands each snapshot to the page's render callback. One connection
// whatever the number of doctors: a browser opens at most six HTTP/1.1 connections to
// a host, across its tabs, and an EventSource holds one for good. A static file: the
// pages' CSP allows HMS's own scripts only.
//
//   var live = HMSLive.follow({
//     doctors: [3, 5],                       // doctor ids
//     render: function (snapshot, doctorId) { ... },  // every snapshot, first ones at once
//     status: document.getElementById("live-status"), // optional: role=status element
//     onState: function (state) { ... }                // optional: "live" | "reconnecting"
//   });
//   live.add(7); live.remove(3); live.close();   // add/remove reopen the one stream
//
// The status element says "Connecting…" at first, "reconnecting…" (data-state=
// "reconnecting") while the stream is down, and "Live" once it is up. Each snapshot is
// also dispatched as a DOM event "hms:queue" on document (detail: {doctorId, snapshot}),
// so htmx parts can refresh with hx-trigger="hms:queue from:document".
//
// The browser retries a dropped stream by itself (after the server's `retry:` hint) but
// gives up for good on an HTTP error such as 429 or 503: then this retries, slower each
// time (1 s doubling to 30 s, with jitter), and goes to the sign-in page if the session
// has ended.
(function () {
  "use strict";

  var MAX_DELAY = 30000;

  function streamUrl(doctorIds) {
    return "/api/queue/stream?doctors=" + doctorIds.map(encodeURIComponent).join(",");
  }

  function follow(options) {
    var render = options.render;
    var statusEl = options.status || null;
    var onState = options.onState || function () {};
    var urlFor = options.url || streamUrl;
    var doctors = [];
    var source = null;
    var timer = null;
    var delay = 1000;
    var state = "connecting";
    var closed = false;

    function setState(next) {
      if (state === next) return;
      state = next;
      onState(state);
      if (statusEl && statusEl.dataset.state !== state) {
        statusEl.dataset.state = state;
        statusEl.textContent = state === "live" ? "Live" : state === "connecting" ? "Connecting…" : "reconnecting…";
      }
      document.documentElement.classList.toggle("reconnecting", state === "reconnecting");
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
      if (closed || doctors.length === 0) return;
      var opened = new EventSource(urlFor(doctors.slice()), { withCredentials: true });
      source = opened;
      opened.onopen = function () { setState("live"); };
      opened.addEventListener("queue", function (event) {
        var snapshot = JSON.parse(event.data);
        var doctorId = String(snapshot.doctor.id);
        delay = 1000;
        setState("live");
        render(snapshot, doctorId);
        document.dispatchEvent(new CustomEvent("hms:queue", { detail: { doctorId: doctorId, snapshot: snapshot } }));
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

    function add(doctorId) {
      doctorId = String(doctorId);
      if (doctors.indexOf(doctorId) >= 0) return;
      doctors.push(doctorId);
      connect();
    }

    function remove(doctorId) {
      var at = doctors.indexOf(String(doctorId));
      if (at < 0) return;
      doctors.splice(at, 1);
      connect();
    }

    doctors = (options.doctors || []).map(String).filter(function (id, i, all) { return all.indexOf(id) === i; });
    if (statusEl) statusEl.dataset.state = state;
    connect();
    window.addEventListener("pagehide", function () { closed = true; disconnect(); });

    return {
      add: add,
      remove: remove,
      close: function () { closed = true; disconnect(); },
      state: function () { return state; }
    };
  }

  window.HMSLive = { follow: follow, streamUrl: streamUrl };
})();
