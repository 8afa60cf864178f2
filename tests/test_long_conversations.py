"""Long conversations: Rasa reads only their recent part (bot/plugins/stores.py), and nothing is lost.

End to end, on the shared servers: the language chosen at the start, a form started long ago and
the whole stored history outlive the part of the conversation Rasa reads for a reply.
"""

import json
import urllib.request

import pytest

from bot.core.languages import detect
from bot.core.texts import say
from bot.plugins.stores import RECENT_TURNS

pytestmark = pytest.mark.e2e
ADDRESS_QUESTION = "What is the postal address of the international office?"


def stored_user_texts(servers, sender: str) -> list[str]:
    url = f"{servers.rasa_url}/conversations/{sender}/tracker?token={servers.auth_token}"
    with urllib.request.urlopen(url, timeout=60) as reply:
        events = json.loads(reply.read())["events"]
    return [event["text"] for event in events if event["event"] == "user"]


def test_the_language_chosen_first_is_kept_long_after(chat, servers):
    user = chat()
    sent = ["/lang ru"] + ["ok"] * (2 * RECENT_TURNS + 3)  # past the trim of the copy kept in memory
    replies = [user.ask(text) for text in sent]
    assert replies[0] == say("language_switched", "ru")
    assert detect(replies[-1]).language == "ru"  # "ok" says nothing: the Russian is the stored choice
    assert stored_user_texts(servers, user.sender) == sent


def test_a_form_keeps_its_place_and_answers_across_many_questions(chat, servers):
    user = chat()
    sent = ["I want to submit a visit request", "Grace Hopper"]
    assert user.ask(sent[0]) == say("form_visit_start", "en") + "\n" + say("form_ask_visitor_name", "en")
    assert user.ask(sent[1]) == say("form_ask_institution", "en")
    for _ in range(2 * RECENT_TURNS + 2):  # the form's start falls out of the part Rasa reads
        reply = user.ask(ADDRESS_QUESTION)
        assert reply.startswith(say("ask_address", "en")) and reply.endswith(say("form_ask_institution", "en"))
        sent.append(ADDRESS_QUESTION)
    sent += ["Yale University", "USA", "grace@yale.example"]
    assert user.ask(sent[-3]) == say("form_ask_country", "en")
    assert user.ask(sent[-2]) == say("form_ask_email", "en")
    assert user.ask(sent[-1]).startswith(say("form_ask_purpose", "en"))
    assert user.ask("cancel") == say("request_cancelled", "en")
    assert stored_user_texts(servers, user.sender) == [*sent, "cancel"]
