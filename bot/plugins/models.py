"""Swapping the model of the running Rasa server, without a restart and without losing a request.

Registered in ``credentials.yml`` as ``bot.plugins.models.ModelSwap``: a Rasa input
channel that serves no users, only

    POST /webhooks/model/swap    {"model": "models/published/….tar.gz"}  -> {"model": name, "seconds": …}
    GET  /webhooks/model/status  -> {"model": name}

Both need ``X-Model-Token``, ``MODEL_SWAP_TOKEN`` (made by ``bot run`` at each start and
given to Rasa, the web chat's server that runs the staff console, and, through a file
readable by its owner only, ``bot publish``); without the variable both answer 403.
This token swaps models and does nothing else: unlike Rasa's own ``PUT /model``
(``RASA_AUTH_TOKEN``, the whole admin API: every conversation), it never reaches
the conversations, so the web process can hold it. The model must be a file under
the project's ``models/`` folder.

Rasa's ``PUT /model`` loads the new model on the server's event loop, so every
message waits while TensorFlow loads (seconds). Here the new ``MessageProcessor``
is built in a thread while the old one keeps answering, then put in place in one
assignment: a message is answered by the old model or the new one, never lost.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rasa.core.channels.channel import InputChannel, UserMessage
from rasa.core.nlg import TemplatedNaturalLanguageGenerator
from rasa.core.processor import MessageProcessor
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.core.paths import ROOT
from bot.plugins import memory

logger = logging.getLogger(__name__)

TOKEN_HEADER = "X-Model-Token"
TOKEN_VARIABLE = "MODEL_SWAP_TOKEN"
MODELS = ROOT / "models"


def allowed_model(path: str, models: Path = MODELS) -> Path | None:
    """The model file ``path`` names (relative to the project or absolute), if it is a .tar.gz under models/."""
    candidate = Path(path)
    candidate = (candidate if candidate.is_absolute() else ROOT / candidate).resolve()
    inside = candidate.is_relative_to(models.resolve())
    return candidate if inside and candidate.name.endswith(".tar.gz") and candidate.is_file() else None


class ModelSwap(InputChannel):
    """The channel that swaps the server's model (staff publish and roll back)."""

    @classmethod
    def name(cls) -> str:
        return "model"

    def __init__(self) -> None:
        self.lock = asyncio.Lock()

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> InputChannel:
        return cls()

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        hook = Blueprint("model_swap", __name__)

        def refused(request: Request) -> HTTPResponse | None:
            token = os.environ.get(TOKEN_VARIABLE, "")
            given = request.headers.get(TOKEN_HEADER, "")
            if not token or not hmac.compare_digest(given.encode(), token.encode()):
                return response.json({"error": "forbidden"}, status=403)
            return None

        @hook.route("/status", methods=["GET"])
        async def status(request: Request) -> HTTPResponse:
            if (refusal := refused(request)) is not None:
                return refusal
            return response.json({"model": request.app.ctx.agent.model_name})

        @hook.route("/swap", methods=["POST"])
        async def swap(request: Request) -> HTTPResponse:
            if (refusal := refused(request)) is not None:
                return refusal
            body = request.json if isinstance(request.json, dict) else {}
            path = allowed_model(str(body.get("model") or ""))
            if path is None:
                return response.json({"error": "model must be a .tar.gz file under models/"}, status=400)
            started = time.monotonic()
            async with self.lock:  # one swap at a time
                agent = request.app.ctx.agent
                try:
                    processor = await asyncio.to_thread(
                        MessageProcessor,
                        model_path=path,
                        tracker_store=agent.tracker_store,
                        lock_store=agent.lock_store,
                        action_endpoint=agent.action_endpoint,
                        generator=agent.nlg,
                        http_interpreter=agent.http_interpreter,
                    )
                except Exception as error:  # a broken file: the old model keeps answering
                    logger.exception("the model %s could not be loaded", path.name)
                    return response.json({"error": f"cannot load {path.name}: {type(error).__name__}"}, status=422)
                agent.processor = processor  # from here on, every message gets the new model
                agent.domain = processor.domain
                agent._set_fingerprint(None)
                agent.tracker_store.domain = processor.domain
                if isinstance(agent.nlg, TemplatedNaturalLanguageGenerator):
                    agent.nlg.responses = processor.domain.responses
            await asyncio.to_thread(memory.release_unused_code)
            seconds = time.monotonic() - started
            logger.info("model swapped to %s in %.1f s", path.name, seconds)
            return response.json({"model": path.name, "seconds": round(seconds, 2)})

        return hook
