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
    fill("live-phones", s.phones.map(function (a) {
      return row([a.name, [a.up + "/" + a.total, a.up === a.total ? "up" : "down"]]);
    }));
  }
  var source = new EventSource("/live/events");
  source.onmessage = function (e) { show(JSON.parse(e.data)); };
  source.addEventListener("ended", function () { source.close(); window.location.reload(); });
})();
