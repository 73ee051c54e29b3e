// The staff screens' live-queue client: follows one or several doctors' queue streams
// (/api/queue/<doctor_id>/stream; the session cookie authenticates an EventSource) and
// hands each snapshot to the page's render callback. A static file: the pages' CSP
// allows HMS's own scripts only.
//
//   var live = HMSLive.follow({
//     doctors: [3, 5],                       // doctor ids
//     render: function (snapshot, doctorId) { ... },  // every snapshot, first one at once
//     status: document.getElementById("live-status"), // optional: role=status element
//     onState: function (state, doctorId) { ... }      // optional: "live" | "reconnecting"
//   });
//   live.add(7); live.remove(3); live.close();
//
// The status element says "Connecting…" at first, "reconnecting…" (data-state=
// "reconnecting") while any stream is down, and "Live" once every stream is up. Each snapshot is also
// dispatched as a DOM event "hms:queue" on document (detail: {doctorId, snapshot}), so
// htmx parts can refresh with hx-trigger="hms:queue from:document".
//
// The browser retries a dropped stream by itself (after the server's `retry:` hint) but
// gives up for good on an HTTP error such as 429 or 503: then this retries, slower each
// time (1 s doubling to 30 s, with jitter), and goes to the sign-in page if the session
// has ended. The same ideas as display.js, for any number of doctors.
(function () {
  "use strict";

  var MAX_DELAY = 30000;

  function streamUrl(doctorId) {
    return "/api/queue/" + encodeURIComponent(doctorId) + "/stream";
  }

  function follow(options) {
    var render = options.render;
    var statusEl = options.status || null;
    var onState = options.onState || function () {};
    var urlFor = options.url || streamUrl;
    var streams = {}; // doctorId -> {source, timer, delay, state}
    var closed = false;

    function overall() {
      var ids = Object.keys(streams);
      var state = "live";
      for (var i = 0; i < ids.length; i++) {
        var one = streams[ids[i]].state;
        if (one === "reconnecting") return "reconnecting";
        if (one === "connecting") state = "connecting";
      }
      return state;
    }

    function showState() {
      var state = overall();
      if (statusEl) {
        if (statusEl.dataset.state !== state) {
          statusEl.dataset.state = state;
          statusEl.textContent = state === "live" ? "Live" : state === "connecting" ? "Connecting…" : "reconnecting…";
        }
      }
      document.documentElement.classList.toggle("reconnecting", state === "reconnecting");
    }

    function setState(doctorId, state) {
      var stream = streams[doctorId];
      if (!stream || stream.state === state) return;
      stream.state = state;
      onState(state, doctorId);
      showState();
    }

    function retryLater(doctorId) {
      var stream = streams[doctorId];
      if (!stream || closed) return;
      clearTimeout(stream.timer);
      var wait = stream.delay * (0.8 + Math.random() * 0.4);
      stream.timer = setTimeout(function () {
        fetch("/api/auth/me", { credentials: "same-origin" }).then(function (res) {
          if (res.status === 401) {
            window.location.href = "/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
          } else {
            connect(doctorId);
          }
        }, function () { connect(doctorId); });
      }, wait);
      stream.delay = Math.min(stream.delay * 2, MAX_DELAY);
    }

    function connect(doctorId) {
      var stream = streams[doctorId];
      if (!stream || closed) return;
      var source = new EventSource(urlFor(doctorId), { withCredentials: true });
      stream.source = source;
      source.onopen = function () { setState(doctorId, "live"); };
      source.addEventListener("queue", function (event) {
        var snapshot = JSON.parse(event.data);
        stream.delay = 1000;
        setState(doctorId, "live");
        render(snapshot, doctorId);
        document.dispatchEvent(new CustomEvent("hms:queue", { detail: { doctorId: doctorId, snapshot: snapshot } }));
      });
      source.onerror = function () {
        setState(doctorId, "reconnecting");
        if (source.readyState === EventSource.CLOSED) {
          source.close();
          retryLater(doctorId);
        }
      };
    }

    function add(doctorId) {
      doctorId = String(doctorId);
      if (streams[doctorId]) return;
      streams[doctorId] = { source: null, timer: null, delay: 1000, state: "connecting" };
      showState();
      connect(doctorId);
    }

    function remove(doctorId) {
      doctorId = String(doctorId);
      var stream = streams[doctorId];
      if (!stream) return;
      clearTimeout(stream.timer);
      if (stream.source) stream.source.close();
      delete streams[doctorId];
      showState();
    }

    (options.doctors || []).forEach(add);
    window.addEventListener("pagehide", function () { closed = true; Object.keys(streams).forEach(remove); });

    return {
      add: add,
      remove: remove,
      close: function () { closed = true; Object.keys(streams).forEach(remove); },
      state: overall
    };
  }

  window.HMSLive = { follow: follow, streamUrl: streamUrl };
})();
