"""The controller's log: one line per record, on stderr and in $TONGDAI_HOME/log/tongdai.log."""

from __future__ import annotations

import logging

from ivr.server import LogLines, setup_logging


def test_each_record_once_on_stderr_and_in_the_file(settings_factory, capsys):
    s = settings_factory()
    root = logging.getLogger("tongdai")
    level, kept = root.level, list(root.handlers)  # e.g. the e2e tests' record of the controller's log
    path = setup_logging(s)
    try:
        logging.getLogger("tongdai.call").info("call=%s %s -> %s -> %s", "1.0", "menu", "dtmf 4", "dialing")
        logging.getLogger("tongdai.call").debug("not at INFO")
        setup_logging(s)  # a second setup (the tests do it) replaces the handler, file and all
        logging.getLogger("tongdai.ari").warning("ari websocket closed")
    finally:
        handlers = [h for h in root.handlers if isinstance(h, LogLines)]
        for h in handlers:
            root.removeHandler(h)
            h.close()
        root.setLevel(level)
        for h in kept:  # setup_logging() replaced them: whoever runs after this test still has them
            root.addHandler(h)
    err = capsys.readouterr().err.splitlines()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(handlers) == 1
    for out in (err, lines):
        assert [ln.split(" ", 2)[2] for ln in out] == [
            "INFO tongdai.call call=1.0 menu -> dtmf 4 -> dialing",
            "WARNING tongdai.ari ari websocket closed",
        ]
