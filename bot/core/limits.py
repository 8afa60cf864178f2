"""Limits every entry point applies to what a client sends."""

# A message longer than this gets a 413 (REST, web chat) or a polite refusal (Telegram).
MAX_MESSAGE_CHARS = 20_000
# A sender id (conversation id) longer than this is refused.
MAX_SENDER_CHARS = 128
