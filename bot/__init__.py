"""The NJUPT international-office assistant.

Packages point one way, from the bottom up:

- ``bot.core``: Rasa-free core: languages, texts, facts, parsing, database and request storage;
- ``actions`` (top level, rasa-sdk only): the custom actions, on ``bot.core``;
- ``bot.plugins``: what ``rasa run`` loads: NLU components, the REST channel, the tracker store;
- ``bot.channels``: each channel (``telegram``, ``web``), on ``bot.core`` and ``bot.plugins``;
- ``bot.cli``: the ``bot`` command and the process launcher;
- ``bot.tools``: developer tools (bench, evaluate, screenshot, data checks).
"""
