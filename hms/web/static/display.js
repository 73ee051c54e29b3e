// The waiting-room display: one panel per doctor, each rendered from the embedded
// snapshots and then following every doctor's queue on ONE stream (one EventSource,
// URL in #display's data-stream-url; each snapshot names its doctor). When the token in a room changes, the panel
// flashes it and the screen chimes (Web Audio: no sound file). Browsers play sound only
// after a user gesture, so "Turn on sound" must be pressed once; the choice is
// remembered, and a later load resumes the sound at the first key or click.
// A static file: the page's Content-Security-Policy allows HMS's own scripts only.
(function () {
  "use strict";
  var SOUND_KEY = "hms.display.sound";
  var FLASH_MS = 6000;
  var display = document.getElementById("display");
  var SHOWN = parseInt(display.dataset.shown, 10) || 6;
  var soundButton = document.getElementById("sound");
  var announcer = document.getElementById("announce");
  var audio = null;

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

  // --- sound -----------------------------------------------------------------------------

  function soundWanted() {
    try { return window.localStorage.getItem(SOUND_KEY) === "on"; } catch (e) { return false; }
  }

  function rememberSound(on) {
    try { window.localStorage.setItem(SOUND_KEY, on ? "on" : "off"); } catch (e) { /* private mode */ }
  }

  function showSound() {
    var on = soundWanted() && audio !== null && audio.state === "running";
    soundButton.setAttribute("aria-pressed", on ? "true" : "false");
    soundButton.textContent = on ? "Sound on (turn off)" : "Turn on sound";
  }

  function startAudio() {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return Promise.resolve();
    if (audio === null) audio = new Context();
    return audio.resume ? audio.resume() : Promise.resolve();
  }

  function chime() {
    if (!soundWanted() || audio === null || audio.state !== "running") return;
    var now = audio.currentTime;
    [[659.25, 0], [523.25, 0.35]].forEach(function (note) {  // E5 then C5: "ding-dong"
      var oscillator = audio.createOscillator();
      var gain = audio.createGain();
      oscillator.type = "sine";
      oscillator.frequency.value = note[0];
      gain.gain.setValueAtTime(0.0001, now + note[1]);
      gain.gain.exponentialRampToValueAtTime(0.4, now + note[1] + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + note[1] + 0.9);
      oscillator.connect(gain).connect(audio.destination);
      oscillator.start(now + note[1]);
      oscillator.stop(now + note[1] + 1);
    });
  }

  soundButton.addEventListener("click", function () {
    if (soundWanted() && audio !== null && audio.state === "running") {
      rememberSound(false);
      showSound();
      return;
    }
    rememberSound(true);
    startAudio().then(function () { showSound(); chime(); }, showSound);
  });

  // Remembered "on": the browser still wants a gesture on this load; take the first one.
  function resumeOnGesture() {
    if (!soundWanted()) return;
    startAudio().then(showSound, showSound);
  }
  document.addEventListener("keydown", resumeOnGesture, { once: true });
  document.addEventListener("pointerdown", resumeOnGesture, { once: true });

  // --- one panel per doctor ----------------------------------------------------------------

  function Panel(section, snapshot) {
    this.section = section;
    this.statusEl = section.querySelector(".status");
    this.roomToken = null;  // unknown until the first render: no chime on load
    this.flashTimer = null;
    this.render(snapshot, false);
  }

  Panel.prototype.render = function (snapshot, live) {
    var section = this.section;
    var room = snapshot.in_consultation;
    section.querySelector(".doctor-name").textContent = snapshot.doctor.name;
    section.querySelector(".doctor-room").textContent = snapshot.doctor.room || "";
    var token = section.querySelector(".room-token");
    var initials = section.querySelector(".room-initials");
    token.textContent = room ? room.token : "";
    initials.textContent = room ? room.patient.initials : "Nobody yet";
    if (room && room.priority === "URGENT") initials.append(urgentFlag());
    initials.className = room ? "room-initials" : "room-initials empty";
    var list = section.querySelector("ol.next");
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
    section.querySelector(".waiting-count").textContent = snapshot.waiting_count + " waiting" + more;
    var updated = section.querySelector(".updated");
    updated.dataset.version = snapshot.version;
    updated.textContent = snapshot.date + " · updated " + new Date().toLocaleTimeString();
    var newToken = room ? String(room.token) : "";
    if (live && newToken && this.roomToken !== null && newToken !== this.roomToken) this.called(snapshot, room);
    this.roomToken = newToken;
  };

  Panel.prototype.called = function (snapshot, room) {
    var now = this.section.querySelector(".now");
    now.classList.remove("called");
    void now.offsetWidth;  // restart the animation when called twice in a row
    now.classList.add("called");
    this.section.dataset.calledToken = room.token;
    clearTimeout(this.flashTimer);
    this.flashTimer = setTimeout(function () { now.classList.remove("called"); }, FLASH_MS);
    var where = snapshot.doctor.room ? snapshot.doctor.room + ", " : "";
    announcer.textContent = "Token " + room.token + (room.priority === "URGENT" ? " (urgent)" : "") +
      ": please go to " + where + snapshot.doctor.name + ".";
    chime();
  };

  Panel.prototype.setState = function (state) {
    this.statusEl.dataset.state = state;
    this.statusEl.textContent = state === "live" ? "Live" : "Reconnecting…";
    this.section.classList.toggle("reconnecting", state !== "live");
  };

  // --- one stream for every panel ---------------------------------------------------------
  // The browser retries a dropped stream by itself (after the server's `retry:` hint),
  // but gives up for good on an HTTP error such as 429 or 503: then we retry, slower
  // each time, and go back to the sign-in page if the session has ended.

  var panels = {};  // doctor id -> Panel
  var retryDelay = 1000;
  var timer = null;

  function setState(state) {
    Object.keys(panels).forEach(function (id) { panels[id].setState(state); });
  }

  function retryLater() {
    clearTimeout(timer);
    timer = setTimeout(function () {
      fetch("/api/auth/me", { credentials: "same-origin" }).then(function (res) {
        if (res.status === 401) {
          window.location.href = "/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
        } else {
          connect();
        }
      }, connect);
    }, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 30000);
  }

  function connect() {
    var source = new EventSource(document.getElementById("display").dataset.streamUrl, { withCredentials: true });
    source.onopen = function () { setState("live"); };
    source.addEventListener("queue", function (event) {
      var snapshot = JSON.parse(event.data);
      var panel = panels[String(snapshot.doctor.id)];
      if (panel) panel.render(snapshot, true);
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

  var snapshots = JSON.parse(document.getElementById("initial-snapshots").textContent);
  var sections = document.querySelectorAll(".panel-doctor");
  snapshots.forEach(function (snapshot, index) {
    panels[String(snapshot.doctor.id)] = new Panel(sections[index], snapshot);
  });
  connect();
  showSound();
})();
