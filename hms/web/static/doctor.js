// The doctor's screen: follows the queue's live stream (a full snapshot per change),
// re-renders the queue list, fetches the room panel again when the patient in the room
// changes, searches medicines as the doctor types, adds and removes prescription lines,
// and the keyboard shortcuts listed on the page. A static file: the page's CSP allows
// no inline script.
(function () {
  "use strict";
  var script = document.currentScript;
  var STREAM_URL = script.dataset.streamUrl;
  var STATUS_URL = script.dataset.statusUrl;  // .../appointments/0/status
  var MEDICINES_URL = script.dataset.medicinesUrl;
  var statusEl = document.getElementById("status");
  var retryDelay = 1000;
  var timer = null;
  var source = null;
  var lineCounter = document.querySelectorAll("#lines fieldset.line").length;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function waitText(entry) {
    if (entry.status === "IN_CONSULTATION") return "In the room";
    return entry.estimated_wait_minutes === 0 ? "now" : "~" + entry.estimated_wait_minutes + " min";
  }

  // One shared form (#no-show-form: the CSRF token) for every row's No-show button.
  function noShowButton(entry) {
    var button = el("button", "small", "No-show");
    button.type = "submit";
    button.setAttribute("form", "no-show-form");
    button.setAttribute("formaction", STATUS_URL.replace("/0/", "/" + entry.appointment_id + "/"));
    button.name = "status";
    button.value = "NO_SHOW";
    button.setAttribute("aria-label", "No-show: token " + entry.token);
    return button;
  }

  function renderQueue(snapshot) {
    var list = document.getElementById("queue");
    list.replaceChildren.apply(list, snapshot.entries.map(function (entry) {
      var item = el("li", entry.priority === "URGENT" ? "urgent" : "");
      item.dataset.appointmentId = entry.appointment_id;
      item.dataset.token = entry.token;
      item.dataset.status = entry.status;
      var name = el("span", "name", entry.patient.name + " ");
      name.append(el("span", "mrn", entry.patient.mrn));
      item.append(el("span", "token", entry.token), name);
      if (entry.priority === "URGENT") item.append(el("span", "urgent-flag", "Urgent"));
      item.append(el("span", "state", waitText(entry)));
      if (entry.status === "WAITING") item.append(noShowButton(entry));
      return item;
    }));
    document.getElementById("waiting-count").textContent = snapshot.waiting_count + " waiting";
    var inRoom = snapshot.in_consultation ? String(snapshot.in_consultation.appointment_id) : "";
    document.getElementById("in-room").value = inRoom;
    var room = document.getElementById("room");
    if (room && room.dataset.appointmentId !== inRoom) refreshRoom();
  }

  function refreshRoom() {
    var slot = document.getElementById("room-slot");
    fetch(slot.dataset.roomUrl, { credentials: "same-origin" }).then(function (res) {
      if (!res.ok) throw new Error(res.status);
      return res.text();
    }).then(function (html) {
      slot.innerHTML = html;  // our own server-rendered, escaped fragment (no scripts)
      lineCounter = document.querySelectorAll("#lines fieldset.line").length;
    }).catch(function () { /* the next snapshot tries again */ });
  }

  function setState(state) {
    statusEl.dataset.state = state;
    statusEl.textContent = state === "live" ? "Live" : "Reconnecting…";
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
    source = new EventSource(STREAM_URL, { withCredentials: true });
    source.onopen = function () { setState("live"); };
    source.addEventListener("queue", function (event) {
      renderQueue(JSON.parse(event.data));
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

  // --- the Prescription form ----------------------------------------------------------

  var searchTimers = new WeakMap();

  function search(input) {
    var line = input.closest("fieldset.line");
    var select = line.querySelector("select.medicine-choice");
    var q = input.value.trim();
    if (q.length < 2) return;
    fetch(MEDICINES_URL + "?q=" + encodeURIComponent(q), { credentials: "same-origin" })
      .then(function (res) { return res.json(); })
      .then(function (body) {
        if (input.value.trim() !== q) return;  // typed on since: a newer search follows
        var options = body.results.map(function (medicine) {
          var option = el("option", "", medicine.label);
          option.value = medicine.id;
          return option;
        });
        if (!options.length) {
          var none = el("option", "", "No medicine matches “" + q + "”");
          none.value = "";
          options = [none];
        }
        select.replaceChildren.apply(select, options);
        select.selectedIndex = 0;
      }).catch(function () { /* keep the last results */ });
  }

  document.addEventListener("input", function (event) {
    var input = event.target;
    if (!input.classList || !input.classList.contains("medicine-search")) return;
    clearTimeout(searchTimers.get(input));
    searchTimers.set(input, setTimeout(function () { search(input); }, 150));
  });

  function addLine() {
    var template = document.getElementById("line-template");
    var lines = document.getElementById("lines");
    if (!template || !lines) return null;
    lineCounter += 1;
    var n = String(lineCounter);
    var line = template.content.firstElementChild.cloneNode(true);
    line.dataset.line = n;
    line.querySelectorAll("[id]").forEach(function (node) { node.id = node.id.replace("__N__", n); });
    line.querySelectorAll("[for]").forEach(function (node) { node.htmlFor = node.htmlFor.replace("__N__", n); });
    line.querySelectorAll("[aria-controls]").forEach(function (node) {
      node.setAttribute("aria-controls", node.getAttribute("aria-controls").replace("__N__", n));
    });
    line.querySelector("legend").textContent = "Medicine " + (lines.children.length + 1);
    lines.append(line);
    line.querySelector(".medicine-search").focus();
    return line;
  }

  function renumber() {
    document.querySelectorAll("#lines fieldset.line legend").forEach(function (legend, index) {
      legend.textContent = "Medicine " + (index + 1);
    });
  }

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (target.id === "add-line") {
      addLine();
    } else if (target.classList && target.classList.contains("remove-line")) {
      var line = target.closest("fieldset.line");
      var lines = document.getElementById("lines");
      if (lines.children.length > 1) {
        line.remove();
        renumber();
        lines.querySelector(".medicine-search").focus();
      } else {  // the last line: empty it instead
        line.querySelectorAll("input").forEach(function (input) { input.value = ""; });
        line.querySelector(".medicine-search").focus();
      }
    }
  });

  // One submit per form: a second click while the first is on its way does nothing
  // (the server would refuse or replay it anyway).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset.sent === "1") { event.preventDefault(); return; }
    form.dataset.sent = "1";
  });

  // --- keyboard ----------------------------------------------------------------------

  function press(id) {
    var button = document.getElementById(id);
    if (button) button.click();
  }

  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.key === "Enter" && target.classList && target.classList.contains("medicine-search")) {
      event.preventDefault();  // Enter in the search box goes to its matches, never submits
      clearTimeout(searchTimers.get(target));
      search(target);
      target.closest("fieldset.line").querySelector("select.medicine-choice").focus();
      return;
    }
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && target.closest && target.closest("#prescription-form")) {
      event.preventDefault();
      document.getElementById("prescription-form").requestSubmit();
      return;
    }
    if (!event.altKey || event.ctrlKey || event.metaKey) return;
    var handled = true;
    switch (event.code) {
      case "KeyN": press("call-next"); break;
      case "KeyC": press("complete"); break;
      case "KeyB": press("send-back"); break;
      case "KeyL": if (!addLine()) handled = false; break;
      case "KeyP":
        var first = document.querySelector("#lines .medicine-search");
        if (first) first.focus(); else handled = false;
        break;
      default: handled = false;
    }
    if (handled) event.preventDefault();
  });

  // The page came with the queue rendered; the stream's first event is the snapshot again.
  connect();
  var errorBox = document.getElementById("prescription-error");
  if (errorBox) {
    var search0 = document.querySelector("#lines .medicine-search");
    if (search0) errorBox.scrollIntoView({ block: "center" });
  }
})();
