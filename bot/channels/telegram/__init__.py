"""Telegram: the long-polling bridge (`python -m bot.channels.telegram`) and the webhook channel."""
