"""Rasa's per-message work done once (bot/plugins/speedups.py) decides exactly as Rasa does."""

from types import SimpleNamespace

import jsonschema
import pytest
from rasa.core.actions.action import RemoteAction
from rasa.shared.core.events import (
    ActionExecuted,
    ActiveLoop,
    AllSlotsReset,
    BotUttered,
    FollowupAction,
    Restarted,
    SessionStarted,
    SlotSet,
    UserUttered,
)

from bot.plugins.speedups import answer_validator, graph_order

SCHEMA = RemoteAction.action_response_format_spec()
VALID = [
    {},
    {"events": [], "responses": []},
    {"events": [SlotSet("language", "ru").as_dict(), SlotSet("language_chosen", True).as_dict()]},
    {"events": [ActiveLoop("visit_form").as_dict(), ActiveLoop(None).as_dict(), FollowupAction("x").as_dict()]},
    {"events": [e.as_dict() for e in (Restarted(), AllSlotsReset(), SessionStarted(), ActionExecuted("a"))]},
    {"events": [BotUttered("hi", {"language": "fr"}).as_dict()], "responses": [{"text": "Bonjour"}]},
    {"events": [UserUttered("hello", {"name": "greet", "confidence": 0.9}).as_dict()]},
    {"events": [{"event": "slot", "name": "x", "value": {"nested": [1, 2]}, "timestamp": None}]},
]
INVALID = [
    [],
    "events",
    {"events": {"event": "slot"}},
    {"events": ["slot"]},
    {"events": [{"name": "language", "value": "ru"}]},  # no kind
    {"events": [{"event": "teleport"}]},  # no such kind
    {"events": [{"event": "slot", "name": "language", "value": "ru", "timestamp": "yesterday"}]},
    {"events": [{"event": "slot", "name": 7, "value": "ru"}]},
    {"events": [{"event": "user", "text": 12}]},
    {"events": [{"event": "bot", "text": "hi", "metadata": "fr"}]},
    {"events": [SlotSet("a", 1).as_dict(), {"event": 3}]},
    {"responses": ["Bonjour"]},
    {"responses": {"text": "Bonjour"}},
]


def rasa_accepts(answer) -> bool:
    try:
        jsonschema.validate(answer, SCHEMA)
    except jsonschema.ValidationError:
        return False
    return True


@pytest.mark.parametrize("answer", VALID + INVALID)
def test_the_answer_check_accepts_exactly_what_rasas_schema_accepts(answer):
    validate = answer_validator(SCHEMA)
    try:
        validate(answer)
        accepted = True
    except jsonschema.ValidationError:
        accepted = False
    assert accepted == rasa_accepts(answer)
    assert accepted == (answer in VALID)


def test_graph_order_puts_each_node_after_what_it_needs_and_leaves_out_the_rest():
    nodes = {
        "tokens": SimpleNamespace(needs={"messages": "__message__"}),
        "features": SimpleNamespace(needs={"messages": "tokens"}),
        "classifier": SimpleNamespace(needs={"messages": "features", "domain": "domain"}),
        "domain": SimpleNamespace(needs={}),
        "unused": SimpleNamespace(needs={"messages": "tokens"}),
        "output": SimpleNamespace(needs={"messages": "classifier", "tokens": "tokens"}),
    }
    order = graph_order(nodes, ("output",))
    names = [name for name, _ in order]
    assert set(names) == {"tokens", "features", "classifier", "domain", "output"}
    for name, needs in order:
        assert needs == list(nodes[name].needs.values())
        assert all(names.index(need) < names.index(name) for need in needs if need in nodes)


def test_the_domain_is_empty_as_rasa_says():
    from rasa.shared.core.domain import Domain

    from bot.core.paths import ROOT
    from bot.plugins import speedups

    rasa_is_empty = Domain.is_empty
    domain = Domain.load(ROOT / "domain.yml")
    expected = (rasa_is_empty(Domain.empty()), rasa_is_empty(domain))
    try:
        speedups._empty_domain_once()
        assert (Domain.empty().is_empty(), domain.is_empty()) == expected == (True, False)
    finally:
        Domain.is_empty = rasa_is_empty
