"""Ring strategies: the order in which a branch's phones are tried."""

from __future__ import annotations

from ivr.route import DialOutcome, RouteState
from ivr.routing import Branch


def branch(strategy: str, targets=("2101", "2102", "2103")) -> Branch:
    return Branch("1", "x", "SNV", tuple(targets), strategy, 20, "complaint")


def test_ringall_rings_everyone_at_once():
    assert RouteState().order(branch("ringall")) == [["2101", "2102", "2103"]]


def test_hunt_keeps_the_configured_order():
    st = RouteState()
    assert st.order(branch("hunt")) == [["2101"], ["2102"], ["2103"]]
    assert st.order(branch("hunt")) == [["2101"], ["2102"], ["2103"]]


def test_roundrobin_starts_one_further_each_call():
    st = RouteState()
    firsts = [st.order(branch("roundrobin"))[0][0] for _ in range(4)]
    assert firsts == ["2101", "2102", "2103", "2101"]
    assert st.order(branch("roundrobin")) == [["2102"], ["2103"], ["2101"]]


def test_leastrecent_prefers_the_phone_idle_longest():
    st = RouteState()
    assert st.order(branch("leastrecent"))[0] == ["2101"]  # nobody answered yet: config order
    st.last_answered.update({"2101": 300.0, "2102": 100.0})
    assert st.order(branch("leastrecent")) == [["2103"], ["2102"], ["2101"]]
    st.answered("2103")
    assert st.order(branch("leastrecent"))[0] == ["2102"]


def test_busy_only_when_every_phone_was_busy():
    assert DialOutcome(False, results={"a": "busy", "b": "busy"}).disposition == "busy"
    assert DialOutcome(False, results={"a": "busy", "b": "no_answer"}).disposition == "no_answer"
    assert DialOutcome(False, results={}).disposition == "no_answer"
