"""Rasa's per-message work that need not be repeated: installed by ``bot.cli.rasa_server``.

* Rasa checks each answer of the action server against a JSON schema with
  ``jsonschema.validate(answer, schema)``, which first checks the schema itself
  against the JSON-Schema meta-schema: a quarter of the Rasa server's time per
  message (docs/performance.md). Here the schema is checked once, at start, and
  every answer is still validated against it, with Rasa's own error message.
  Rasa's schema has each event tried against all 23 kinds of event; here against
  its own kind, which accepts the same answers (``answer_validator``).
* Rasa opens a new HTTP session, and so a new connection, for each call of the
  action server (``EndpointConfig.request``). Here each endpoint keeps one
  session with its pool of connections, kept open for less time than the
  action server keeps them (Sanic: 5 s), so a call never goes out on a
  connection the server is closing.
* Rasa runs its graphs (the NLU, then the policies, twice a message) through
  dask's scheduler, which also works out each time which nodes the targets
  need: a tenth of the server's time per message. Here the order of the nodes
  is worked out once per set of targets, and they are called in it, in the same
  thread, with the same inputs and results as dask gives them.
* Rasa asks whether the domain is empty at every message by building an empty
  domain to compare with; here the empty domain's content is built once.
* Rasa deep-copies the events, states and slots it passes to its debug log at
  every step of a message (``copy.deepcopy`` in the processor, ``RulePolicy`` and
  forms), also when debug logging is off and the log drops them. Here those three
  modules copy only when Rasa's debug log is on; every ``copy.deepcopy`` in them
  builds a debug-log argument and nothing else.
* Before running an action Rasa replays the whole tracker into a copy, which it
  throws away if the action is rejected. A custom action only reads the tracker
  (its JSON is sent to the action server; the answer comes back as events), as do
  Rasa's "listen" and "session start": when the policies added no events, these
  are given the tracker itself.
* Rasa finds the class of each event it reads (from the action server, from the
  database) by walking all subclasses of ``Event`` again: 27 µs an event. Here each
  kind's class is remembered once found (``event_kinds``).
* ``RulePolicy`` turns the tracker into states twice at each prediction (once for
  the user's text, once for the intent) by replaying its events; here the states
  of a tracker are kept until its events change (``past_states_kept``), and each
  caller gets its own copy (Rasa's callers edit them).
* ``RulePolicy`` tries each of its rules against the conversation's states at
  every prediction. Which rules apply depends only on the last states, as many
  as the longest rule has: here the answer is remembered for those states
  (``rule_matches``), so a conversation that reaches states seen before costs a
  lookup.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import types
from collections.abc import Callable
from typing import Any

from jsonschema import ValidationError
from jsonschema.validators import validator_for

# Seconds an idle connection to the action server stays open (the server closes its own after 5).
KEEP_ALIVE = 2.0


def install() -> None:
    _validate_once()
    _keep_sessions()
    _run_graphs_in_order()
    _empty_domain_once()
    _copy_for_debug_log_only()
    _no_copy_for_custom_actions()
    _remember_rule_matches()
    _remember_event_kinds()
    _keep_past_states()


def _copy_for_debug_log_only() -> None:
    from rasa.core import processor
    from rasa.core.actions import forms
    from rasa.core.policies import rule_policy

    rasa_logger = logging.getLogger("rasa")

    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        """``copy.deepcopy`` of a debug-log argument: only when the debug log keeps it."""
        return copy.deepcopy(value, memo) if rasa_logger.isEnabledFor(logging.DEBUG) else value

    for module in (processor, forms, rule_policy):
        module.copy = types.SimpleNamespace(deepcopy=deepcopy, copy=copy.copy)


def _no_copy_for_custom_actions() -> None:
    from rasa.core.actions.action import ActionListen, ActionSessionStart, RemoteAction
    from rasa.core.processor import MessageProcessor
    from rasa.shared.core.trackers import DialogueStateTracker

    readers = (RemoteAction, ActionListen, ActionSessionStart)  # their run() only reads the tracker
    run_action = MessageProcessor._run_action
    replay = DialogueStateTracker.copy

    async def _run_action(self: MessageProcessor, action: Any, tracker: DialogueStateTracker, *args: Any,
                          **kwargs: Any) -> bool:  # fmt: skip
        """Rasa's ``_run_action``; its copy of the tracker is the tracker itself for an action that
        only reads it when the prediction brought no events (``tracker.copy`` is its first use of
        the tracker)."""
        prediction = kwargs.get("prediction", args[2] if len(args) > 2 else None)
        if type(action) in readers and prediction is not None and not prediction.events:
            tracker.__dict__["_njupt_lend"] = True
        try:
            return await run_action(self, action, tracker, *args, **kwargs)
        finally:
            tracker.__dict__.pop("_njupt_lend", None)

    def copy_tracker(self: DialogueStateTracker) -> DialogueStateTracker:
        """Rasa's ``DialogueStateTracker.copy``, or the tracker itself once when lent to an action."""
        if self.__dict__.pop("_njupt_lend", False):
            return self
        return replay(self)

    MessageProcessor._run_action = _run_action
    DialogueStateTracker.copy = copy_tracker


def _empty_domain_once() -> None:
    from rasa.shared.core.domain import Domain

    empty = Domain.empty().as_dict()

    def is_empty(self: Domain) -> bool:
        """Rasa's ``Domain.is_empty``, comparing with the empty domain's content built once."""
        return self.as_dict() == empty

    Domain.is_empty = is_empty


def _run_graphs_in_order() -> None:
    from rasa.engine.exceptions import GraphRunError
    from rasa.engine.runner.dask import DaskGraphRunner

    def run(self: DaskGraphRunner, inputs: dict[str, Any] | None = None, targets: list[str] | None = None):
        """Rasa's ``DaskGraphRunner.run``, without dask (see the module's docstring)."""
        run_targets = tuple(targets or self._graph_schema.target_names)
        plans = self.__dict__.setdefault("_njupt_plans", {})
        if run_targets not in plans:
            plans[run_targets] = graph_order(self._graph_schema.nodes, run_targets)
        for value in (inputs or {}).values():
            if isinstance(value, str) and value in self._graph_schema.nodes:
                raise GraphRunError(f"Input value '{value}' clashes with a node name.")
        results = {name: (name, value) for name, value in (inputs or {}).items()}
        try:
            for name, needs in plans[run_targets]:
                if name not in results:  # an input of that name replaces the node, as in dask
                    results[name] = self._instantiated_nodes[name](*(results.get(need, need) for need in needs))
        except RuntimeError as error:
            raise GraphRunError("Error running runner.") from error
        return dict(results[target] for target in run_targets)

    DaskGraphRunner.run = run


def graph_order(nodes: dict[str, Any], targets: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """The nodes the targets need, each after what it needs, with the names of what it needs."""
    order: list[tuple[str, list[str]]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name not in nodes:  # done, or an input
            return
        seen.add(name)
        needs = list(nodes[name].needs.values())
        for need in needs:
            visit(need)
        order.append((name, needs))

    for target in targets:
        visit(target)
    return order


def _keep_sessions() -> None:
    import aiohttp
    from rasa.core.constants import DEFAULT_REQUEST_TIMEOUT
    from rasa.utils.endpoints import EndpointConfig

    def session(self: EndpointConfig) -> _Borrowed:
        """This endpoint's session on the running event loop, made as Rasa makes it."""
        loop = asyncio.get_running_loop()
        kept_loop, kept = getattr(self, "_kept_session", (None, None))
        if kept is None or kept.closed or kept_loop is not loop:
            login = self.basic_auth
            auth = aiohttp.BasicAuth(login["username"], login["password"]) if login else None
            kept = aiohttp.ClientSession(
                headers=self.headers,
                auth=auth,
                timeout=aiohttp.ClientTimeout(total=DEFAULT_REQUEST_TIMEOUT),
                connector=aiohttp.TCPConnector(keepalive_timeout=KEEP_ALIVE),
            )
            self._kept_session = (loop, kept)
        return _Borrowed(kept)

    EndpointConfig.session = session


class _Borrowed:
    """A kept session as an ``async with`` target that leaves it open."""

    def __init__(self, session: Any) -> None:
        self.session = session

    async def __aenter__(self) -> Any:
        return self.session

    async def __aexit__(self, *exc_info: Any) -> None:
        return None


def _validate_once() -> None:
    from rasa.core.actions.action import RemoteAction
    from rasa.shared.constants import DOCS_BASE_URL

    validate = answer_validator(RemoteAction.action_response_format_spec())

    def _validate_action_result(self: RemoteAction, result: dict[str, Any]) -> bool:
        try:
            validate(result)
        except ValidationError as error:
            error.message += (
                ". Failed to validate Action server response from API, make sure your response from the "
                f"Action endpoint is valid. For more information about the format visit {DOCS_BASE_URL}/custom-actions"
            )
            raise
        return True

    RemoteAction._validate_action_result = _validate_action_result


def answer_validator(schema: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """A function that raises jsonschema's ``ValidationError`` for an action server's answer that
    ``schema`` (Rasa's) refuses, and accepts every other. Rasa's schema says each event is one of 23
    kinds (``oneOf``), each named by its ``event``: jsonschema tries all 23 on every event. Here an
    event is checked against its own kind only, which accepts exactly what ``oneOf`` accepts (the
    kinds' names differ); whatever this does not accept goes to the whole schema, for its error."""
    kind = validator_for(schema)
    kind.check_schema(schema)
    whole = kind(schema)
    items = schema["properties"]["events"]["items"]
    common = {key: value for key, value in items.items() if key != "oneOf"}
    by_event = {
        sub["properties"]["event"]["const"]: kind({"allOf": [common, sub]}) for sub in items["oneOf"]
    }  # fmt: skip

    def accepted(answer: Any) -> bool:
        if not isinstance(answer, dict):
            return False
        events, responses = answer.get("events", []), answer.get("responses", [])
        if not isinstance(events, list) or not isinstance(responses, list):
            return False
        if not all(isinstance(response, dict) for response in responses):
            return False
        for event in events:
            checker = by_event.get(event.get("event")) if isinstance(event, dict) else None
            if checker is None or not checker.is_valid(event):
                return False
        return True

    def validate(answer: dict[str, Any]) -> None:
        if not accepted(answer):
            whole.validate(answer)

    return validate


# States of the conversation whose applicable rules are remembered, per rule table (then forgotten).
RULE_MATCHES = 4096


def _remember_rule_matches() -> None:
    from rasa.core.policies.rule_policy import RulePolicy

    RulePolicy._get_possible_keys = rule_matches(RulePolicy._get_possible_keys)


def rule_matches(find: Callable[[Any, dict[str, str], list[dict]], set[str]]) -> Callable:
    """``RulePolicy._get_possible_keys`` remembered: ``find(policy, rules, states)`` gives the rules
    (keys of ``rules``) whose states match the conversation's last ``states``. A rule of n states is
    checked against the last n states only, and against the features its states name (a rule that
    names no user text never reads the text); so the key is the last states, as many as the longest
    rule has, with only the features some rule names (and which parts each state has). The tables
    are the trained policy's and do not change (a new model is a new policy)."""

    def possible_keys(self: Any, lookup: dict[str, str], states: list[dict]) -> set[str]:
        memos = self.__dict__.setdefault("_njupt_rule_matches", {})
        memo = memos.get(id(lookup))
        if memo is None or memo[0] is not lookup:
            rules = [self._rule_key_to_state(key) for key in lookup]
            named = {
                (part, name)
                for rule in rules
                for state in rule
                for part, named_features in state.items()
                for name in named_features
            }
            memo = memos[id(lookup)] = (lookup, max(map(len, rules), default=0), named, {})
        _, depth, named, seen = memo
        if not depth:
            return find(self, lookup, states)
        try:
            key = tuple(
                tuple(sorted(
                    (part, bool(features), tuple(sorted(item for item in features.items() if (part, item[0]) in named)))
                    for part, features in state.items()
                ))
                for state in states[-depth:]
            )  # fmt: skip
            found = seen.get(key)
        except (TypeError, AttributeError):  # a feature that is not hashable: not remembered
            return find(self, lookup, states)
        if found is None:
            if len(seen) >= RULE_MATCHES:
                seen.clear()
            found = seen[key] = frozenset(find(self, lookup, states))
        return set(found)

    return possible_keys


def _remember_event_kinds() -> None:
    from rasa.shared.core.events import Event

    Event.resolve_by_type = staticmethod(event_kinds(Event.resolve_by_type))


def event_kinds(resolve: Callable[..., Any]) -> Callable[..., Any]:
    """Rasa's ``Event.resolve_by_type(type_name, default)``, each class remembered once found (the
    classes are those imported at start); a name it does not know still goes to Rasa's, which
    gives the default or Rasa's error."""
    known: dict[str, Any] = {}

    def resolve_by_type(type_name: str, default: Any = None) -> Any:
        found = known.get(type_name)
        if found is None:
            found = resolve(type_name, default)
            if found is not None and getattr(found, "type_name", None) == type_name:
                known[type_name] = found
        return found

    return resolve_by_type


def _keep_past_states() -> None:
    from rasa.shared.core.trackers import DialogueStateTracker

    DialogueStateTracker.past_states = past_states_kept(DialogueStateTracker.past_states)


def past_states_kept(compute: Callable[..., list[dict]]) -> Callable[..., list[dict]]:
    """``DialogueStateTracker.past_states``, computed once for the same tracker, events, domain and
    options: the states are made by replaying the events alone, so they change when the events do
    (an event added, or the events replaced). Each call returns its own copy of the states."""

    def past_states(self: Any, domain: Any, omit_unset_slots: bool = False, ignore_rule_only_turns: bool = False,
                    rule_only_data: dict[str, Any] | None = None) -> list[dict]:  # fmt: skip
        events = self.events
        made_from = (domain, events, events[-1] if events else None, rule_only_data)  # the same objects
        options = (len(events), omit_unset_slots, ignore_rule_only_turns)  # equal values
        kept = self.__dict__.get("_njupt_past_states")
        if kept is None or kept[1] != options or any(a is not b for a, b in zip(kept[0], made_from, strict=True)):
            states = compute(self, domain, omit_unset_slots, ignore_rule_only_turns, rule_only_data)
            kept = self.__dict__["_njupt_past_states"] = (made_from, options, states)
        return [{part: dict(features) for part, features in state.items()} for state in kept[2]]

    return past_states
