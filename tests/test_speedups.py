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


@pytest.fixture(scope="module")
def rule_policy(model, tmp_path_factory):
    """The trained model's RulePolicy (its rule tables), loaded as Rasa loads it."""
    from rasa.core.policies.rule_policy import RulePolicy
    from rasa.engine.graph import ExecutionContext
    from rasa.engine.storage.local_model_storage import LocalModelStorage

    storage, metadata = LocalModelStorage.from_model_archive(tmp_path_factory.mktemp("model"), model)
    node = next(node for node in metadata.predict_schema.nodes.values() if node.uses is RulePolicy)
    config = {**RulePolicy.get_default_config(), **node.config}
    return RulePolicy.load(config, storage, node.resource, ExecutionContext(metadata.predict_schema))


def as_conversation(states):
    """States as a tracker gives them to the policy: features in tuples, not lists."""
    return [
        {part: {name: tuple(value) if isinstance(value, list) else value for name, value in features.items()}
         for part, features in state.items()}
        for state in states
    ]  # fmt: skip


def test_remembered_rule_matches_are_the_rules_rasa_finds(rule_policy):
    import json
    import random

    from rasa.core.policies.rule_policy import RULES, RULES_FOR_LOOP_UNHAPPY_PATH, RulePolicy

    from bot.plugins.speedups import rule_matches

    rasa_finds = RulePolicy._get_possible_keys
    calls = []
    remembered = rule_matches(lambda *args: calls.append(1) or rasa_finds(*args))
    chooser = random.Random(12)
    for table in (RULES, RULES_FOR_LOOP_UNHAPPY_PATH):
        lookup = rule_policy.lookup[table]
        rules = [as_conversation(json.loads(key)) for key in lookup]
        assert len(rules) > (10 if table == RULES else 1)
        conversations = [*rules, [], rules[0][-1:]]
        for _ in range(400):  # histories of other rules' states, cut anywhere, then a rule's states cut anywhere
            history = [state for rule in chooser.sample(rules, chooser.randint(0, 3)) for state in rule]
            ending = chooser.choice(rules)
            states = history + ending[chooser.randint(0, len(ending) - 1) :]
            if chooser.random() < 0.3 and "user" in states[-1]:  # the user's text, which no rule names
                states[-1] = {**states[-1], "user": {**states[-1]["user"], "text": f"question {chooser.random()}"}}
            conversations.append(states)
        matched = 0
        for states in conversations + conversations:  # the second time from memory
            expected = rasa_finds(rule_policy, lookup, states)
            assert remembered(rule_policy, lookup, states) == expected, states
            matched += bool(expected)
        assert matched > len(conversations) // 2  # the states did match rules, not only miss them
    assert len(calls) < len(conversations) * 2  # the repeats were answered from memory
    # a feature that cannot be a key (a list) is looked up by Rasa's own search
    listed = [{**state, "slots": {"x": [1.0]}} for state in rules[0]]
    assert remembered(rule_policy, lookup, listed) == rasa_finds(rule_policy, lookup, listed)


def test_debug_log_arguments_are_copied_only_when_the_debug_log_keeps_them():
    import copy
    import logging

    from rasa.core import processor
    from rasa.core.actions import forms
    from rasa.core.policies import rule_policy

    from bot.plugins import speedups

    modules = (processor, forms, rule_policy)
    rasa_logger, level = logging.getLogger("rasa"), logging.getLogger("rasa").level
    try:
        speedups._copy_for_debug_log_only()
        events = [SlotSet("language", "ru")]
        rasa_logger.setLevel(logging.INFO)
        assert all(module.copy.deepcopy(events) is events for module in modules)
        rasa_logger.setLevel(logging.DEBUG)
        for module in modules:
            copied = module.copy.deepcopy(events)
            assert copied == events and copied is not events and copied[0] is not events[0]
    finally:
        rasa_logger.setLevel(level)
        for module in modules:
            module.copy = copy


async def test_actions_that_only_read_the_tracker_are_lent_it_and_every_other_action_gets_a_copy():
    from rasa.core.actions.action import ActionDeactivateLoop, ActionListen, ActionSessionStart
    from rasa.core.policies.policy import PolicyPrediction
    from rasa.core.processor import MessageProcessor
    from rasa.shared.core.trackers import DialogueStateTracker

    from bot.plugins import speedups

    rasa_run_action, rasa_copy = MessageProcessor._run_action, DialogueStateTracker.copy

    async def run_action(self, action, tracker, output_channel, nlg, prediction):
        """Rasa's first use of the tracker in ``_run_action``: the copy the action is given."""
        return tracker.copy()

    try:
        MessageProcessor._run_action = run_action
        speedups._no_copy_for_custom_actions()
        tracker = DialogueStateTracker.from_events("someone", [ActionExecuted("action_listen"), UserUttered("hi")])
        plain = PolicyPrediction([], "RulePolicy")
        with_events = PolicyPrediction([], "RulePolicy", events=[SlotSet("offer", "visit")])
        remote = RemoteAction("action_answer_question", None)

        for reader in (remote, ActionListen(), ActionSessionStart()):
            given = await MessageProcessor._run_action(None, reader, tracker, None, None, plain)
            assert given is tracker
            assert tracker.copy() is not tracker  # lent once, for that action only
        for action, prediction in ((remote, with_events), (ActionDeactivateLoop(), plain)):
            given = await MessageProcessor._run_action(None, action, tracker, None, None, prediction)
            assert given is not tracker and given.current_state() == tracker.current_state()
    finally:
        MessageProcessor._run_action, DialogueStateTracker.copy = rasa_run_action, rasa_copy


def test_remembered_event_kinds_are_those_rasa_finds():
    from rasa.shared.core.events import Event
    from rasa.shared.utils.common import all_subclasses

    from bot.plugins.speedups import event_kinds

    rasa_resolves = Event.resolve_by_type
    remembered = event_kinds(rasa_resolves)
    names = {kind.type_name for kind in all_subclasses(Event)}
    assert {"user", "bot", "slot", "action", "active_loop", "session_started"} <= names
    for name in sorted(names) * 2:  # the second time from memory
        assert remembered(name) is rasa_resolves(name)
    assert remembered("no_such_event", SlotSet) is SlotSet
    assert remembered("topic") is None
    with pytest.raises(ValueError, match="Unknown event name"):
        remembered("no_such_event")


def test_kept_past_states_are_rasas_and_follow_the_events():
    from collections import deque

    from rasa.shared.core.domain import Domain
    from rasa.shared.core.trackers import DialogueStateTracker

    from bot.core.paths import ROOT
    from bot.plugins.speedups import past_states_kept

    domain = Domain.load(ROOT / "domain.yml")
    rasa_states = DialogueStateTracker.past_states
    kept = past_states_kept(rasa_states)
    tracker = DialogueStateTracker("someone", domain.slots)
    events = [
        ActionExecuted("action_session_start"), SessionStarted(), ActionExecuted("action_listen"),
        UserUttered("I want to visit", {"name": "request_visit", "confidence": 0.9}),
        ActionExecuted("visit_form"), ActiveLoop("visit_form"), SlotSet("requested_slot", "visitor_name"),
        BotUttered("Your name?"), ActionExecuted("action_listen"),
        UserUttered("Ann Lee", {"name": "inform", "confidence": 0.8}), SlotSet("visitor_name", "Ann Lee"),
        ActionExecuted("visit_form"), ActiveLoop(None), SlotSet("requested_slot", None),
        ActionExecuted("action_listen"), UserUttered("thanks", {"name": "thank", "confidence": 0.9}),
    ]  # fmt: skip
    for event in events:
        tracker.update(event, domain)
        for options in ({}, {"omit_unset_slots": True}, {"ignore_rule_only_turns": True}):
            expected = rasa_states(tracker, domain, **options)
            first = kept(tracker, domain, **options)
            assert first == expected
            for state in first:  # Rasa's featurizers edit the states they are given
                for features in state.values():
                    features.clear()
            assert kept(tracker, domain, **options) == expected
    tracker.events = deque(list(tracker.events)[-4:])  # the events replaced (the store's trimming)
    assert kept(tracker, domain) == rasa_states(tracker, domain)
