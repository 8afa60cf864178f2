""" "Forget me": a user erases their own conversation and requests from the chat.

"Delete my data", "删除我的数据", "удалите мои данные", "effacez mes données",
or ``/forget`` on Telegram: the bot says what will be deleted and asks to
confirm (Yes, delete / No); a yes deletes the user's requests here, and marks
the reply so that the channel deletes the conversation itself once Rasa has
stored this turn (``bot.plugins.rest``: the tracker must not be written back
after it is erased). The reply says what was deleted.
"""

from __future__ import annotations

from rasa_sdk import Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.answers import LanguageAction
from bot.core.languages import Choice
from bot.core.privacy import ERASE_CONVERSATION, erase_requests
from bot.core.texts import say


class ActionForgetMe(LanguageAction):
    """Asks to confirm, then erases the user's requests and (through the channel) conversation."""

    def name(self) -> str:
        return "action_forget_me"

    def respond(self, dispatcher: CollectingDispatcher, tracker: Tracker, choice: Choice) -> list[EventType]:
        intent = ((tracker.latest_message or {}).get("intent") or {}).get("name")
        language = choice.language
        if intent == "affirm" and tracker.get_slot("offer") == "forget":
            deleted = erase_requests(tracker.sender_id)
            dispatcher.utter_message(text=say("forget_done", language, requests=deleted), **{ERASE_CONVERSATION: True})
            return [SlotSet("offer", None)]
        buttons = [
            {"title": say("button_forget_yes", language), "payload": "/affirm"},
            {"title": say("button_forget_no", language), "payload": "/deny"},
        ]
        dispatcher.utter_message(text=say("forget_confirm", language), buttons=buttons)
        return [SlotSet("offer", "forget")]
