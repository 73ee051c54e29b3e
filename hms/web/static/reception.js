// /reception: keyboard moves through the patients found, focus where the work is, and
// the live queues (live.js), each doctor's rows rebuilt from every snapshot. A static
// file: the page's CSP allows HMS's own scripts only.
(function () {
  "use strict";
  var desk = document.getElementById("desk");
  var csrf = desk ? desk.dataset.csrf : "";
  var box = document.getElementById("find-q");

  // --- Find patient: ↓/↑ through the results, Enter on the box picks the first ------------
  function results() {
    return Array.prototype.slice.call(document.querySelectorAll("#find-results a.result"));
  }
  if (box) {
    box.addEventListener("keydown", function (event) {
      var found = results();
      if (event.key === "ArrowDown" && found.length) {
        event.preventDefault();
        found[0].focus();
      } else if (event.key === "Enter" && found.length === 1) {
        event.preventDefault(); // one patient found: Enter picks them
        window.location.href = found[0].href;
      }
    });
  }
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (!target.classList || !target.classList.contains("result")) return;
    var found = results();
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

  // "Register patient" from an empty search: the name (or phone) typed goes to the form.
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a.to-register") : null;
    if (!link) return;
    event.preventDefault();
    var q = (link.dataset.query || "").trim();
    var field = /^[+0-9 ()\-]+$/.test(q) ? "reg-phone" : "reg-name";
    var input = document.getElementById(field);
    if (input && !input.value) input.value = q;
    document.getElementById("reg-name").focus();
  });

  // Focus where the work is: the first duplicate, the doctor picker, the print link.
  var first = document.querySelector("[data-focus-first]");
  if (first && document.activeElement !== first) first.focus();

  // A form is sent once: a second Enter or click while it is on its way does nothing
  // (the idempotency key would make it harmless anyway).
  document.querySelectorAll("#register-form, #book-form").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.sent) { event.preventDefault(); return; }
      form.dataset.sent = "1";
    });
  });

  // --- Today's queues, live ------------------------------------------------------------------
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function waitText(minutes) {
    return minutes === 0 ? "now" : "about " + minutes + " min";
  }

  function hidden(text) {
    return el("span", "visually-hidden", text);
  }

  function statusForm(entry) {
    var url = "/reception/appointments/" + entry.appointment_id + "/status";
    var form = el("form", "status-form");
    form.method = "post";
    form.action = url;
    form.setAttribute("hx-post", url);
    form.setAttribute("hx-target", "#queue-message");
    var token = el("input");
    token.type = "hidden"; token.name = "csrf_token"; token.value = csrf;
    form.append(token);
    [["CANCELLED", "Cancel"], ["NO_SHOW", "No-show"]].forEach(function (pair) {
      var button = el("button", "small secondary", pair[1]);
      button.type = "submit"; button.name = "status"; button.value = pair[0];
      button.append(hidden(" token " + entry.token));
      form.append(" ", button);
    });
    return form;
  }

  function row(entry) {
    var tr = el("tr", entry.priority === "URGENT" ? "urgent" : "");
    tr.dataset.appointmentId = entry.appointment_id;
    tr.dataset.token = entry.token;
    tr.dataset.status = entry.status;
    var who = el("td");
    who.append(el("span", "name", entry.patient.name), " ", el("span", "mrn", entry.patient.mrn));
    if (entry.priority === "URGENT") who.append(" ", el("span", "urgent-flag", "Urgent"));
    var actions = el("td", "actions");
    if (entry.status === "WAITING") actions.append(statusForm(entry));
    tr.append(el("td", "token", String(entry.token)), who,
              el("td", "status", entry.status === "IN_CONSULTATION" ? "In the room" : "Waiting"),
              el("td", "wait", waitText(entry.estimated_wait_minutes)), actions);
    return tr;
  }

  // The wait of a patient booked now, as the server computes it (reception.wait_for_new).
  function waitForNew(snapshot) {
    var waits = snapshot.entries.filter(function (e) { return e.status === "WAITING"; })
      .map(function (e) { return e.estimated_wait_minutes; });
    if (!waits.length) return snapshot.in_consultation ? 10 : 0;
    var n = waits.length;
    var step = n >= 2 && waits[n - 1] > waits[n - 2] ? waits[n - 1] - waits[n - 2] : 10;
    return waits[n - 1] + step;
  }

  function render(snapshot, doctorId) {
    var part = document.getElementById("queue-" + doctorId);
    if (!part) return;
    var body = part.querySelector("tbody");
    if (Number(body.dataset.version) > snapshot.version) return; // an older one, late
    body.dataset.version = snapshot.version;
    var rows = snapshot.entries.map(row);
    if (!rows.length) {
      var empty = el("tr", "empty-row");
      var cell = el("td", "", "Nobody waiting.");
      cell.colSpan = 5;
      empty.append(cell);
      rows = [empty];
    }
    body.replaceChildren.apply(body, rows);
    part.querySelector(".waiting-count").textContent = snapshot.waiting_count + " waiting";
    if (window.htmx) window.htmx.process(body);
    var option = document.querySelector('#book-doctor option[data-doctor-id="' + doctorId + '"]');
    if (option) {
      var wait = waitForNew(snapshot);
      option.textContent = option.dataset.name + " — " + snapshot.waiting_count + " waiting, " +
        (wait === 0 ? "no wait" : "about " + wait + " min");
    }
  }

  var list = document.getElementById("queue-list");
  if (list && window.HMSLive) {
    var doctors = (list.dataset.doctors || "").split(",").filter(Boolean);
    window.HMSLive.follow({ doctors: doctors, render: render, status: document.getElementById("live-status") });
  }
})();
