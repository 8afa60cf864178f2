"""The action server: ``python -m actions [--port 5055]`` (``bot run`` starts it).

rasa-sdk's own server, with three changes for a public deployment:

* it listens on ``ACTION_HOST`` (default ``127.0.0.1``; rasa-sdk's own default is
  every interface);
* when ``ACTION_SERVER_TOKEN`` is set (``bot run`` makes one at each start and
  gives it to Rasa), every call but ``/health`` must carry it in the
  ``X-Action-Token`` header, so nothing but our Rasa server can run an action
  (such as saving a visit request) directly;
* ``POST /reload`` with ``X-Model-Token`` (``MODEL_SWAP_TOKEN``, the token of ``bot publish``)
  reads the texts, facts and the domain's intents again at once: a publish has every action
  server (each replica) do so, and is told if one keeps the old ones (its checks failed);
* no CORS: browsers never call it (rasa-sdk's CORS extension ran on every answer even
  with no origin allowed: 8% of the server's time per call); the language detector and the date parser
  load their data at start, not on a user's first message. Request bodies are limited to
  ``ACTION_MAX_BODY`` bytes (default 4 MB: a long conversation's tracker).
"""

from __future__ import annotations

import argparse
import hmac
import logging
import os
import sys

import rasa_sdk.endpoint
from rasa_sdk.endpoint import create_app
from sanic import response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.core import languages, parsing, texts

TOKEN_HEADER = "X-Action-Token"
RELOAD_HEADER = "X-Model-Token"
UNGUARDED = {"/health", "/reload"}  # /reload has a token of its own


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("ACTION_PORT", "5055")))
    parser.add_argument("--host", default=os.environ.get("ACTION_HOST", "127.0.0.1"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    token = os.environ.get("ACTION_SERVER_TOKEN", "")
    rasa_sdk.endpoint.configure_cors = lambda app, cors_origins=None: None  # no CORS (see above)
    app = create_app("actions", cors_origins=[])
    app.config.REQUEST_MAX_SIZE = int(os.environ.get("ACTION_MAX_BODY", str(4 * 1024 * 1024)))

    @app.middleware("request")
    async def require_token(request: Request) -> HTTPResponse | None:
        if not token or request.path in UNGUARDED:
            return None
        given = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return response.json({"error": "forbidden"}, status=403)
        return None

    @app.route("/reload", methods=["POST"])
    async def reload(request: Request) -> HTTPResponse:
        expected = os.environ.get("MODEL_SWAP_TOKEN", "")
        given = request.headers.get(RELOAD_HEADER, "")
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            return response.json({"error": "forbidden"}, status=403)
        problems = texts.reload_now()
        if problems:
            return response.json({"reloaded": False, "problems": problems[:20]}, status=422)
        return response.json({"reloaded": True})

    if not token:
        logging.getLogger(__name__).warning("ACTION_SERVER_TOKEN is not set: any local process may call the actions")
    # The language detector and the date parser load their data now, not on a user's first message.
    languages.warm_up()
    parsing.warm_up()
    app.run(host=args.host, port=args.port, workers=1, access_log=False, motd=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
