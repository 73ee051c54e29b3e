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

  function button(entry, status, words) {
    var node = el("button", "", words);
    node.setAttribute("form", "qa");
    node.setAttribute("formaction", "/reception/appointments/" + entry.appointment_id + "/status");
    node.name = "status";
    node.value = status;
    return node;
  }

  function row(entry) {
    var tr = el("tr", entry.priority === "URGENT" ? "urgent" : "");
    tr.dataset.token = entry.token;
    var who = el("td");
    who.append(el("span", "name", entry.patient.name), " ", el("span", "mrn", entry.patient.mrn));
    if (entry.priority === "URGENT") who.append(" ", el("span", "urgent-flag", "Urgent"));
    var actions = el("td");
    if (entry.status === "WAITING") {
      actions.append(button(entry, "CANCELLED", "Cancel"), " ", button(entry, "NO_SHOW", "No-show"));
    }
    tr.append(el("td", "token", String(entry.token)), who,
              el("td", "", entry.status === "IN_CONSULTATION" ? "In the room" : "Waiting"),
              el("td", "", waitText(entry.estimated_wait_minutes)), actions);
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
    var option = document.querySelector('#book-doctor option[data-doctor-id="' + doctorId + '"]');
    if (option) {
      var wait = waitForNew(snapshot);
      option.textContent = option.dataset.name + " — " + snapshot.waiting_count + " waiting, " +
        (wait === 0 ? "no wait" : "about " + wait + " min");
    }
  }

  // The queue buttons post the page's one status form (#qa) to their own formaction; the
  // answer (in the clinic's words) goes to the status line, the rows follow the stream.
  var actionsForm = document.getElementById("qa");
  var message = document.getElementById("queue-message");
  if (actionsForm && window.fetch) {
    actionsForm.addEventListener("submit", function (event) {
      var submitter = event.submitter;
      if (!submitter) return;
      event.preventDefault();
      var data = new FormData(actionsForm);
      data.append(submitter.name, submitter.value);
      fetch(submitter.formAction, {
        method: "POST",
        body: data,
        credentials: "same-origin",
        headers: { "HX-Request": "true" }
      }).then(function (res) { return res.text(); }).then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        message.replaceChildren.apply(message, Array.prototype.slice.call(doc.body.childNodes));
      }, function () {
        message.textContent = "Not sent: the connection is down. Try again in a moment.";
      });
    });
  }

  var list = document.getElementById("queue-list");
  if (list && window.HMSLive) {
    var doctors = (list.dataset.doctors || "").split(",").filter(Boolean);
    window.HMSLive.follow({ doctors: doctors, render: render, status: document.getElementById("live-status") });
  }
})();
