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
"""

from __future__ import annotations

import asyncio
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
