"""End to end: visiting scholars file requests over REST; staff see them with `bot requests`."""

import datetime as dt
import os
import subprocess
import sys

import pytest

from bot.core.texts import say

from .conftest import LANGUAGES, sample

pytestmark = pytest.mark.e2e
NEXT_YEAR = dt.date.today().year + 1


def staff_csv(servers) -> str:
    result = subprocess.run([sys.executable, "-m", "bot.cli.main", "requests", "list", "--format", "csv"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "DATABASE_URL": servers.env["DATABASE_URL"]})  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


SCHOLARS = {
    "en": {
        "ask": "I'm a professor in Lyon and would like to visit NJUPT to give a lecture. How is that arranged?",
        "answers": ["/request_visit", "Marie Curie", "Université de Lyon", "France", "marie@univ-lyon.example",
                    say("purpose_lecture", "en"), f"10 May {NEXT_YEAR}", f"14 May {NEXT_YEAR}",
                    "Radio communication", "/affirm"],
        "name": "Marie Curie",
    },
    "zh-Hans": {
        "ask": "我是清华的老师，想去南邮做学术讲座，请问怎么安排？",
        "answers": ["/request_visit", "李华", "清华大学", "中国", "lihua@tsinghua.example",
                    say("purpose_research", "zh-Hans"), f"{NEXT_YEAR}年6月1日", f"{NEXT_YEAR}年6月3日", "无", "/affirm"],
        "name": "李华",
    },
}  # fmt: skip


@pytest.mark.parametrize("language", ["en", "zh-Hans"])
def test_a_visiting_scholar_files_a_request(chat, servers, language):
    scholar = SCHOLARS[language]
    user = chat()
    first = user.send(scholar["ask"])
    assert [m["text"] for m in first] == [say("ask_visit", language), say("visit_offer", language)]
    assert first[1]["buttons"][0]["payload"] == "/request_visit"
    prompts = [user.ask(answer) for answer in scholar["answers"]]
    assert prompts[0] == say("form_visit_start", language) + "\n" + say("form_ask_visitor_name", language)
    assert prompts[4].startswith(say("form_ask_purpose", language))
    assert scholar["name"] in prompts[-2]  # the summary
    saved = prompts[-1]
    ref = saved.split(f"V-{NEXT_YEAR}-")[1][:4]
    assert saved == say("visit_saved", language, ref=f"V-{NEXT_YEAR}-{ref}")
    assert scholar["name"] in staff_csv(servers)
    # personal data lives in the requests table only: the servers' logs carry none of it
    logs = "".join(path.read_text(errors="replace") for path in servers.log_dir.glob("*.log"))
    email = scholar["answers"][4]
    assert email not in logs and scholar["name"] not in logs


def test_a_form_survives_mistakes_a_question_and_a_restart_and_can_be_cancelled(chat, servers):
    user = chat()
    started = user.ask("I want to submit a visit request")
    assert started == say("form_visit_start", "en") + "\n" + say("form_ask_visitor_name", "en")
    assert user.ask("Grace Hopper") == say("form_ask_institution", "en")
    assert user.ask("Yale") == say("form_ask_country", "en")
    assert user.ask("back") == say("form_ask_institution", "en")  # a slip: the answer is asked again
    assert user.ask("Yale University") == say("form_ask_country", "en")
    assert user.ask("USA") == say("form_ask_email", "en")
    assert user.ask("grace at yale") == "\n".join([say("form_invalid_email", "en"), say("form_ask_email", "en")])
    reply = user.ask("What is the postal address of the international office?")
    assert reply.startswith(say("ask_address", "en")) and reply.endswith(say("form_ask_email", "en"))
    servers.stop()
    servers.start()
    assert user.ask("grace@yale.example").startswith(say("form_ask_purpose", "en"))  # the form kept its place
    assert user.ask("cancel") == say("request_cancelled", "en")
    assert "Grace Hopper" not in staff_csv(servers)


def test_back_in_chinese_corrects_a_date_and_the_request_keeps_the_corrected_answer(chat, servers):
    user = chat("zh-CN")  # the web page's language, say
    answers = ["/request_visit", "王芳", "复旦大学", "中国", "wangfang@fudan.example", say("purpose_research", "zh-Hans"),
               f"{NEXT_YEAR}年9月1日"]  # fmt: skip
    replies = [user.ask(answer) for answer in answers]
    assert replies[-1] == say("form_ask_departure_date", "zh-Hans")
    assert user.ask("返回") == say("form_ask_arrival_date", "zh-Hans")
    assert user.ask(f"{NEXT_YEAR}年9月2日") == say("form_ask_departure_date", "zh-Hans")
    assert user.ask(f"{NEXT_YEAR}年9月5日") == say("form_ask_visit_notes", "zh-Hans")
    assert f"{NEXT_YEAR}年9月2日" in user.ask("无")  # the summary has the corrected date
    assert user.ask("/affirm").startswith(say("visit_saved", "zh-Hans", ref=f"V-{NEXT_YEAR}-")[:6])
    listing = staff_csv(servers)
    assert f"{NEXT_YEAR}-09-02" in listing and f"{NEXT_YEAR}-09-01" not in listing


def test_an_unanswered_question_is_passed_on_to_the_office(chat, servers):
    user = chat()
    reply = user.send("How much is the tuition fee for the joint programme?")
    assert [m["text"] for m in reply] == [say("out_of_scope", "en"), say("question_offer", "en")]
    assert user.ask(reply[1]["buttons"][0]["payload"]) == say("form_ask_office_email", "en")
    assert "How much is the tuition fee" in user.ask("student@uni.example")
    saved = user.ask("/affirm")
    assert saved.startswith(say("question_saved", "en", ref="Q-")[:20])
    rows = staff_csv(servers)
    assert "How much is the tuition fee for the joint programme?" in rows and "student@uni.example" in rows


def test_requests_are_still_listed_after_the_servers_restart(chat, servers):
    user = chat()
    for answer in [
        "/request_visit",
        "Alan Turing",
        "Cambridge",
        "UK",
        "alan@cam.example",
        say("purpose_conference", "en"),
        f"{NEXT_YEAR}-09-01",
        f"{NEXT_YEAR}-09-02",
        "none",
        "/affirm",
    ]:
        reply = user.ask(answer)
    assert reply.startswith(say("visit_saved", "en", ref="V")[:20])
    servers.stop()
    servers.start()
    assert "Alan Turing" in staff_csv(servers)


FIRST_MESSAGE_VISITS = {
    "zh-Hans": ["我想提交来访申请", "赵敏", "浙江大学", "中国", "zhaomin@zju.example", "做个报告",
                f"{NEXT_YEAR}年6月1日", f"{NEXT_YEAR}年6月3日", "无", "好的，提交吧"],
    "ru": ["Я хочу подать заявку на визит в NJUPT", "Иван Петров", "МГУ", "Россия", "ivan@msu.example",
           "хочу прочитать лекцию", f"1 июня {NEXT_YEAR}", f"3 июня {NEXT_YEAR}", "нет", "да, отправляйте"],
    "fr": ["Je voudrais faire une demande de visite à NJUPT.", "Claire Dubois", "Université de Lyon", "France",
           "claire@univ-lyon.example", "une conférence", f"1 juin {NEXT_YEAR}", f"3 juin {NEXT_YEAR}", "rien",
           "oui, envoyez"],
}  # fmt: skip
PROMPTS = ["form_ask_institution", "form_ask_country", "form_ask_email", "form_ask_purpose", "form_ask_arrival_date",
           "form_ask_departure_date", "form_ask_visit_notes"]  # fmt: skip


@pytest.mark.parametrize("language", ["zh-Hans", "ru", "fr"])
def test_a_first_message_visit_request_runs_the_whole_form_in_its_language_with_a_typed_purpose(chat, servers,
                                                                                                language):  # fmt: skip
    user = chat()
    first, name, *answers, notes, yes = FIRST_MESSAGE_VISITS[language]
    replies = [user.send(first)]
    assert [r["text"] for r in replies[0]] == [
        say("form_visit_start", language),
        say("form_ask_visitor_name", language),
    ]
    for answer, prompt in zip([name, *answers], PROMPTS, strict=True):
        replies.append(user.send(answer))
        assert replies[-1][-1]["text"] == say(prompt, language), answer
    summary = user.send(notes)
    assert name in summary[0]["text"] and say("purpose_lecture", language) in summary[0]["text"]  # typed, taken
    saved = user.send(yes)
    assert saved[0]["text"].startswith(say("visit_saved", language, ref="@").split("@")[0])
    for reply in [*replies, summary, saved]:
        assert {r["language"] for r in reply} == {language}
    email = answers[2]
    (row,) = [line for line in staff_csv(servers).splitlines() if email in line]
    assert name in row and ",lecture," in row


def test_a_typed_answer_changes_one_answer_from_the_summary_and_a_typed_yes_sends_it(chat, servers):
    user = chat()
    for answer in ["/request_visit", "Ada Lovelace", "Imperial College", "UK", "ada@imperial.example",
                   "research cooperation", f"{NEXT_YEAR}-10-01", f"{NEXT_YEAR}-10-04"]:  # fmt: skip
        user.ask(answer)
    assert say("purpose_research", "en") in user.ask("none")
    assert user.ask("I need to change something").startswith(say("form_which_field", "en"))
    assert user.ask("the e-mail") == say("form_ask_email", "en")
    assert "ada@lovelace.example" in user.ask("ada@lovelace.example")  # the summary again
    reply = user.ask("purple elephant")  # fits no option: asked again, the options in words
    assert say("button_confirm", "en") in reply and say("button_cancel", "en") in reply
    assert user.ask("yes, send it").startswith(say("visit_saved", "en", ref="V")[:20])
    assert "ada@lovelace.example" in staff_csv(servers)


def test_a_typed_yes_to_the_visit_offer_starts_the_form_in_the_conversations_language(chat):
    user = chat()
    offer = user.send("Comment organiser une visite de notre université à NJUPT ?")
    assert [m["text"] for m in offer] == [say("ask_visit", "fr"), say("visit_offer", "fr")]
    started = user.send("oui, volontiers")
    assert [m["text"] for m in started] == [say("form_visit_start", "fr"), say("form_ask_visitor_name", "fr")]
    assert {m["language"] for m in started} == {"fr"}
    assert user.ask("annuler") == say("request_cancelled", "fr")


@pytest.mark.parametrize("language", ["zh-Hant", "ru"])
def test_after_lang_the_request_button_runs_the_form_in_the_chosen_language(chat, language):
    user = chat()
    assert user.ask(f"/lang {language}") == say("language_switched", language)
    started = user.send("/request_visit")
    assert [m["text"] for m in started] == [say("form_visit_start", language), say("form_ask_visitor_name", language)]
    assert {m["language"] for m in started} == {language}
    assert user.ask("John Smith") == say("form_ask_institution", language)  # a name keeps the form's language


# A range typed at the arrival question, as people write it in each language.
RANGES = {
    "en": f"from 10 May {NEXT_YEAR} to 14 May {NEXT_YEAR}",
    "zh-Hans": f"{NEXT_YEAR}年5月10日至14日",
    "zh-Hant": f"{NEXT_YEAR}年5月10日到14日",
    "ru": f"с 10 по 14 мая {NEXT_YEAR}",
    "fr": f"du 10 au 14 mai {NEXT_YEAR}",
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_date_range_fills_both_dates_and_skips_the_departure_question(chat, servers, language):
    user = chat()
    assert user.ask(f"/lang {language}") == say("language_switched", language)
    email = f"range-{language.lower()}@uni.example"
    for answer in ["/request_visit", "Wang Fang", "Uni", "UK", email, say("purpose_lecture", language)]:
        user.ask(answer)
    reply = user.send(sample(RANGES, language))
    assert reply[-1]["text"] == say("form_ask_visit_notes", language)  # departure not asked
    assert {m["language"] for m in reply} == {language}
    summary = user.ask("-")
    assert "Wang Fang" in summary
    user.ask("/affirm")
    (row,) = [line for line in staff_csv(servers).splitlines() if email in line]
    assert f"{NEXT_YEAR}-05-10" in row and f"{NEXT_YEAR}-05-14" in row
