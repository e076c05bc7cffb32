// The live board: replaces its tables with each snapshot the server sends (server-sent
// events). Text only (textContent), never HTML from the wire.
"use strict";
(function () {
  function row(cells, cls) {
    var tr = document.createElement("tr");
    if (cls) tr.className = cls;
    cells.forEach(function (c) {
      var td = document.createElement("td");
      if (Array.isArray(c)) { td.textContent = c[0]; td.className = c[1]; } else { td.textContent = c; }
      tr.appendChild(td);
    });
    return tr;
  }
  function fill(id, rows) {
    var body = document.getElementById(id);
    if (!body) return;
    body.replaceChildren.apply(body, rows);
  }
  function show(s) {
    document.getElementById("live-at").textContent = "cập nhật " + s.at;
    var ctl = document.getElementById("live-controller");
    ctl.className = s.controller.running ? "up" : "down";
    ctl.textContent = s.controller.running
      ? "Bộ điều khiển đang chạy" + (s.controller.accepting ? "" : ", đang dừng nhận cuộc gọi mới")
        + (s.controller.asterisk ? " · Asterisk " + s.controller.asterisk : "")
      : "Bộ điều khiển KHÔNG chạy: không có số liệu cuộc gọi đang diễn ra";
    document.getElementById("live-count").textContent = s.calls.length;
    fill("live-calls", s.calls.map(function (c) {
      return row([c.caller, (c.branch + " " + c.branch_name).trim(), c.state, c.duration]);
    }));
    var t = s.today;
    fill("live-today", t.branches.map(function (b) {
      return row([(b.digit + " " + b.name).trim(), b.calls, b.answered, b.abandoned, b.complaints]);
    }).concat([row(["Tổng", t.total.calls, t.total.answered, t.total.abandoned, t.total.complaints], "total")]));
    // Agencies missing a phone in one list, complete ones in another (each a <details> whose
    // open state is the reader's: only the rows and counts change).
    var short = s.phones.filter(function (a) { return a.up < a.total; });
    var full = s.phones.filter(function (a) { return a.up >= a.total; });
    var up = 0, total = 0;
    s.phones.forEach(function (a) { up += a.up; total += a.total; });
    document.getElementById("live-phones-up").textContent = up + "/" + total;
    document.getElementById("live-phones-short-n").textContent = short.length;
    document.getElementById("live-phones-full-n").textContent = full.length;
    fill("live-phones", short.map(function (a) { return row([a.name, [a.up + "/" + a.total, "down"]]); }));
    fill("live-phones-full", full.map(function (a) { return row([a.name, [a.up + "/" + a.total, "up"]]); }));
  }
  var source = new EventSource("/live/events");
  source.onmessage = function (e) { show(JSON.parse(e.data)); };
  source.addEventListener("ended", function () { source.close(); window.location.reload(); });
  // The open stream keeps the session alive (the board is being watched); a hidden tab lets it
  // go idle. Back on screen: reload, which shows the sign-in form if the session ended meanwhile.
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { source.close(); } else if (source.readyState === EventSource.CLOSED) { window.location.reload(); }
  });
})();
