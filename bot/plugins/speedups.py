"""Rasa's per-message work that need not be repeated: installed by ``bot.cli.rasa_server``.

* Rasa checks each answer of the action server against a JSON schema with
  ``jsonschema.validate(answer, schema)``, which first checks the schema itself
  against the JSON-Schema meta-schema: a quarter of the Rasa server's time per
  message (docs/performance.md). Here the schema is checked once, at start, and
  every answer is still validated against it, with Rasa's own error message.
"""

from __future__ import annotations

from typing import Any

from jsonschema import ValidationError
from jsonschema.validators import validator_for


def install() -> None:
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
