"""The web chat: its server (`python -m bot.channels.web`) and its page (`static/`)."""
