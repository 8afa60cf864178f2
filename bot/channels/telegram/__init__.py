"""Telegram: the handlers (``handlers``), shared by the long-polling bridge
(``bridge``, ``python -m bot.channels.telegram``) and the webhook channel (``webhook``)."""
