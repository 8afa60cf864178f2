"""Conversation ids (Rasa's sender ids) and the channel each one belongs to.

Each channel names its conversations with its own prefix: ``web-`` and 128
random bits for the web chat, ``telegram-<chat id>`` for Telegram. The REST
channel is also open to other clients (``curl``, an office's own page), so a
sender id with a channel's prefix is accepted there only from that channel's
own server, which proves itself with the channel's token in a header
(``X-Channel-Token``). A token is made at each start by ``bot run`` and given
to Rasa and to that channel's process only; without it, nobody can restart a
Telegram user's conversation or read back a web visitor's form through REST.
"""

from __future__ import annotations

import hmac
import os
import re

# prefix -> the environment variable holding that channel's token
CHANNEL_TOKENS = {"web-": "WEB_CHANNEL_TOKEN", "telegram-": "TELEGRAM_CHANNEL_TOKEN"}
TOKEN_HEADER = "X-Channel-Token"
# The web chat's ids: "web-" and 16 to 100 letters, digits, - or _ (a full match).
WEB_SENDER = re.compile(r"web-[A-Za-z0-9_-]{16,100}")


def channel_token_variable(sender: str) -> str | None:
    """The variable of the token that may use ``sender``, or None for a free sender id."""
    folded = sender.strip().lower()
    return next((variable for prefix, variable in CHANNEL_TOKENS.items() if folded.startswith(prefix)), None)


def may_use(sender: str, token: str | None) -> bool:
    """Whether a request carrying ``token`` may speak as ``sender`` over the REST channel."""
    variable = channel_token_variable(sender)
    if variable is None:
        return True
    expected = os.environ.get(variable, "")
    return bool(expected) and token is not None and hmac.compare_digest(expected.encode(), token.encode())


def is_web_sender(sender: str) -> bool:
    return WEB_SENDER.fullmatch(sender) is not None


# prefix -> the channel's name, as the staff console and the usage figures show it
CHANNELS = {"web-": "web", "telegram-": "telegram"}


def channel_of(sender: str) -> str:
    """The channel a conversation id belongs to: ``web``, ``telegram``, else ``rest`` (curl, other clients)."""
    folded = sender.strip().lower()
    return next((name for prefix, name in CHANNELS.items() if folded.startswith(prefix)), "rest")
