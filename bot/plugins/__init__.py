"""Plug-ins that `rasa run` loads: NLU components, the REST channel, the tracker store."""
