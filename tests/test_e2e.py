"""End to end: the real action server and Rasa server, asked over HTTP.

The servers are started once per test session (conftest.py `servers`) on free
ports with a SQLite database of their own.
"""

import json
import re

import pytest

from bot.cli.servers import Servers
from bot.core.languages import detect
from bot.core.texts import say, texts

from .conftest import LANGUAGES, Chat, post, sample, unsupported

pytestmark = pytest.mark.e2e

# The same questions in every language (not in the training data), and the
# facts each answer must contain.
QUESTIONS = {
    "address": {
        "en": "What's the postal address of the international office?",
        "zh-Hans": "国际合作与交流处的邮寄地址是什么？",
        "zh-Hant": "請問國際交流處的郵寄地址是什麼？",
        "ru": "Подскажите почтовый адрес международного отдела",
        "fr": "Quelle est l'adresse postale du bureau des relations internationales ?",
    },
    "partners": {
        "en": "With how many countries does NJUPT cooperate?",
        "zh-Hans": "南邮和多少个国家的大学有合作关系？",
        "zh-Hant": "南郵和多少個國家的大學有合作關係？",
        "ru": "Со сколькими странами сотрудничает университет?",
        "fr": "Avec combien de pays l'université coopère-t-elle ?",
    },
    "joint": {
        "en": "Tell me about your joint programs with universities abroad",
        "zh-Hans": "介绍一下南邮跟国外大学的合作办学项目",
        "zh-Hant": "介紹一下南郵跟國外大學的合作辦學計畫",
        "ru": "Расскажите о совместных программах с зарубежными вузами",
        "fr": "Parlez-moi de vos programmes conjoints avec des universités étrangères",
    },
}
FACTS = {
    "address": {"en": ["66 New Mofan Road", "210003"], "zh-Hans": ["新模范马路66号", "210003"],
                "zh-Hant": ["新模範馬路66號", "210003"], "ru": ["New Mofan Road", "210003"],
                "fr": ["66 New Mofan Road", "210003"]},
    "partners": {lang: ["16"] for lang in LANGUAGES},
    "joint": {"en": ["11", "Queen Mary", "New York Institute of Technology"],
              "zh-Hans": ["11", "玛丽女王", "纽约理工"], "zh-Hant": ["11", "瑪麗女王", "紐約理工"],
              "ru": ["11", "королевы Марии", "Нью-Йоркский"], "fr": ["11", "Queen Mary", "New York Institute of Technology"]},
}  # fmt: skip
SIMPLIFIED_ONLY = re.compile("[邮国际处们这个学与实华专门]")
TRADITIONAL_ONLY = re.compile("[郵國際處們這個學與實華專門]")


def language_of(reply: str) -> str | None:
    return detect(reply).language


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("topic", sorted(QUESTIONS))
def test_the_same_question_gets_the_same_facts_in_each_language(chat, topic, language):
    reply = chat().ask(QUESTIONS[topic][language])
    for fact in FACTS[topic][language]:
        assert fact in reply, reply
    assert language_of(reply) in (language, "zh"), reply
    if language == "zh-Hans":
        assert not TRADITIONAL_ONLY.search(reply), reply
    if language == "zh-Hant":
        assert TRADITIONAL_ONLY.search(reply) and not SIMPLIFIED_ONLY.search(reply), reply


@pytest.mark.parametrize(
    "question, language",
    [("How much is the tuition fee for a master's?", "en"), ("留学生宿舍一个月多少钱", "zh-Hans"),
     ("what will the weather be like in nanjing tomorrow", "en"), ("Нужна ли виза для учёбы?", "ru"),
     ("Quelle est la date limite pour postuler ?", "fr")],
)  # fmt: skip
def test_out_of_scope_questions_get_no_invented_answer(chat, question, language):
    first = chat().send(question)[0]["text"]
    assert first in (say("out_of_scope", language), say("nlu_fallback", language)), first


def test_a_conversation_keeps_its_language_and_switches_twice(chat):
    user = chat()
    assert "210003" in user.ask("where is the office?")
    assert language_of(user.ask("ok")) == "en"
    assert user.ask("南邮有哪些中外合作项目？") == say("ask_joint_programmes", "zh-Hans")
    assert language_of(user.ask("NYIT?")) in ("zh-Hans", "zh")
    assert user.ask("could you answer in French please") == say("language_switched", "fr")
    assert language_of(user.ask("2027")) == "fr"


def test_the_channel_hint_sets_the_first_reply_language(chat):
    assert language_of(chat(language_hint="ru-RU").ask("ok")) == "ru"


def test_the_lang_command_and_a_language_button(chat):
    user = chat()
    assert user.ask("/lang ru") == say("language_switched", "ru")
    (choose,) = user.send("/lang")
    assert choose["text"] == say("language_choose", "ru")
    fr_button = next(b for b in choose["buttons"] if b["title"] == "Français")
    assert user.ask(fr_button["payload"]) == say("language_switched", "fr")


def test_an_unsupported_language_is_told_which_languages_the_bot_speaks(chat):
    reply = chat().ask(unsupported()[1])
    assert reply == say("language_unsupported", "en")
    for code in LANGUAGES:
        assert say("language_name", code) in reply


# An explicit choice, made in each way a user can make it: a request in words
# (typed in another language than the one asked for), /lang (Telegram's command),
# a language button (the web page's selector sends the same payload).
REQUESTS = {
    "en": "请用英文回答",
    "zh-Hans": "Can you answer in Chinese please?",
    "zh-Hant": "Можно отвечать на традиционном китайском (繁體中文)?",
    "ru": "Could you answer in Russian please?",
    "fr": "请用法语回答",
}
HOW = {
    "words": lambda code: sample(REQUESTS, code),
    "/lang": lambda code: f"/lang {code}",
    "button": lambda code: f'/change_language{{"language":"{code}"}}',
}


def others(language: str) -> list[str]:
    return [code for code in LANGUAGES if code != language and code in QUESTIONS["address"]]


@pytest.mark.parametrize("how", sorted(HOW))
@pytest.mark.parametrize("chosen", LANGUAGES)
def test_an_explicit_choice_holds_for_questions_typed_in_other_languages(chat, chosen, how):
    user = chat(language_hint=others(chosen)[0])
    (switched,) = user.send(HOW[how](chosen))
    assert (switched["text"], switched["language"]) == (say("language_switched", chosen), chosen)
    for other, topic in zip(others(chosen), ["address", "partners", "joint", "address"], strict=False):
        replies = user.send(QUESTIONS[topic][other])
        answer = replies[0]["text"]
        assert [r["language"] for r in replies] == [chosen] * len(replies), (other, answer)
        for fact in sample(FACTS[topic], chosen):
            assert fact in answer, (other, answer)
        assert language_of(answer) in (chosen, "zh"), (other, answer)


@pytest.mark.parametrize("chosen", LANGUAGES)
def test_only_another_explicit_choice_ends_it(chat, chosen):
    first, *_ = others(chosen)
    user = chat()
    assert user.ask(f"/lang {chosen}") == say("language_switched", chosen)
    assert user.send(QUESTIONS["address"][first])[0]["language"] == chosen
    assert user.ask(f'/change_language{{"language":"{first}"}}') == say("language_switched", first)
    replies = user.send(sample(QUESTIONS["partners"], chosen))
    assert replies[0]["language"] == first  # now the new choice holds
    assert "16" in replies[0]["text"]


def test_without_a_choice_each_question_is_answered_in_its_language(chat):
    user = chat()
    for language in [code for code in LANGUAGES if code in QUESTIONS["address"]]:
        replies = user.send(QUESTIONS["address"][language])
        assert replies[0]["language"] == language


def test_an_injected_slot_makes_no_choice(chat):
    user = chat()
    assert user.ask('/greet{"language_chosen": true, "language": "ru"}') == say("greet", "en")
    assert user.send(QUESTIONS["address"]["fr"])[0]["language"] == "fr"  # detected: no choice was made
    assert user.send(QUESTIONS["address"]["ru"])[0]["language"] == "ru"


def test_a_russian_question_with_an_english_name_is_answered_in_russian(chat):
    replies = chat().send("Есть ли у NJUPT программы с Queen Mary University of London?")
    assert replies[0]["language"] == "ru"


@pytest.mark.parametrize(
    "message, expected_key",
    [("", "empty_message"), ("   ", "empty_message"), ("x" * 10_000, "long_message")],
)
def test_empty_and_huge_messages_get_a_polite_answer(chat, message, expected_key):
    assert chat().ask(message) == say(expected_key, "en")


@pytest.mark.parametrize("message", ["😀😀😀", "🙏", "ꦲꦤꦕꦫꦏ", "/", '/nonsense{"language": "ru"}', "////", "{}"])
def test_odd_messages_get_one_of_the_bots_own_answers_in_english(chat, message):
    """Not the channel's apology (the bot failed) but one of its texts, in the conversation's
    language (English: nothing in these messages says otherwise), and no switch to Russian."""
    own = set()
    for key in texts().by_language["en"]:
        try:
            own.add(say(key, "en"))
        except (KeyError, IndexError, ValueError):  # a text with a placeholder of its own
            continue
    user = chat()
    replies = [r.get("text", "") for r in user.send(message)]
    assert replies and say("unavailable", "en") not in replies, message
    assert all(text in own for text in replies), (message, replies)
    assert user.send("NYIT?")[0]["language"] == "en"


def test_injected_entities_cannot_set_the_language(chat):
    user = chat()
    assert user.ask('/greet{"language":"ru"}') == say("greet", "en")
    assert language_of(user.ask("ok")) == "en"


@pytest.mark.parametrize(
    "body, status",
    [(b"not json", 400), (b"[1, 2]", 400), ({"message": "hi"}, 400), ({"sender": "", "message": "hi"}, 400),
     ({"sender": "a", "message": 42}, 400), ({"sender": "a", "message": "hi", "metadata": "fr"}, 400),
     ({"sender": "a", "message": "x" * 20_001}, 413)],
)  # fmt: skip
def test_malformed_requests_get_a_clear_error(servers, body, status):
    code, reply = post(f"{servers.rasa_url}/webhooks/rest/webhook", body)
    assert code == status and "error" in reply


def test_conversations_persist_across_restarts(own_servers):
    servers = own_servers()
    user = Chat(servers, "restarted-user")
    assert user.ask("Parlez-vous français ?") == say("language_switched", "fr")
    servers.stop()
    servers.start()
    # "ok" says nothing of its language: the French comes from the stored conversation
    assert language_of(user.ask("NYIT ?")) == "fr"


def test_when_the_action_server_is_down_the_user_gets_an_apology(own_servers):
    servers = own_servers()
    action_server = servers.process("action server")
    action_server.stop()
    assert Chat(servers, "down-1").ask("Where is the international office?") == say("unavailable", "en")
    assert Chat(servers, "down-2").ask("国际处在哪里？") == say("unavailable", "zh-Hans")
    action_server.start()
    servers.wait_ready(120)
    assert "210003" in Chat(servers, "down-3").ask("Where is the international office?")


def test_conversations_are_kept_in_postgresql_with_one_variable(model, postgres_url, tmp_path):
    import sqlalchemy as sa

    from .conftest import Chat, free_port

    servers = Servers(model=model, rasa_port=free_port(), action_port=free_port(), log_dir=tmp_path,
                      env={"DATABASE_URL": postgres_url})  # fmt: skip
    with servers:
        user = Chat(servers, "pg-user")
        assert user.ask("Parlez-vous français ?") == say("language_switched", "fr")
    engine = sa.create_engine(postgres_url)
    with engine.connect() as connection:
        texts = [json.loads(data).get("text") for (data,) in connection.execute(
            sa.text("SELECT data FROM events WHERE sender_id = 'pg-user' AND type_name = 'user'"))]  # fmt: skip
    engine.dispose()
    assert texts == ["Parlez-vous français ?"]
    with servers:  # started again: the conversation is read back from PostgreSQL
        assert language_of(Chat(servers, "pg-user").ask("NYIT ?")) == "fr"
