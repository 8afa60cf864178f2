"""Rasa's per-message work that need not be repeated: installed by ``bot.cli.rasa_server``.

* Rasa checks each answer of the action server against a JSON schema with
  ``jsonschema.validate(answer, schema)``, which first checks the schema itself
  against the JSON-Schema meta-schema: a quarter of the Rasa server's time per
  message (docs/performance.md). Here the schema is checked once, at start, and
  every answer is still validated against it, with Rasa's own error message.
* Rasa opens a new HTTP session, and so a new connection, for each call of the
  action server (``EndpointConfig.request``). Here each endpoint keeps one
  session with its pool of connections, kept open for less time than the
  action server keeps them (Sanic: 5 s), so a call never goes out on a
  connection the server is closing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jsonschema import ValidationError
from jsonschema.validators import validator_for

# Seconds an idle connection to the action server stays open (the server closes its own after 5).
KEEP_ALIVE = 2.0


def install() -> None:
    _validate_once()
    _keep_sessions()


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

    schema = RemoteAction.action_response_format_spec()
    kind = validator_for(schema)
    kind.check_schema(schema)
    validator = kind(schema)

    def _validate_action_result(self: RemoteAction, result: dict[str, Any]) -> bool:
        try:
            validator.validate(result)
        except ValidationError as error:
            error.message += (
                ". Failed to validate Action server response from API, make sure your response from the "
                f"Action endpoint is valid. For more information about the format visit {DOCS_BASE_URL}/custom-actions"
            )
            raise
        return True

    RemoteAction._validate_action_result = _validate_action_result
