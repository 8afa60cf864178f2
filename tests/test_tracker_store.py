"""The tracker store (bot/plugins/stores.py): the recent part Rasa works on, read from SQL or kept in
memory, gives the same state as the whole conversation, stays the same size however long the
conversation, and a copy kept in memory is never used once the stored conversation has changed."""

import asyncio
import json

import pytest
import sqlalchemy as sa
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    ActiveLoop,
    BotUttered,
    Restarted,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker

from bot.plugins.stores import RECENT_TURNS, EnvSQLTrackerStore, recent_part

DOMAIN = Domain.from_dict(
    {
        "intents": ["greet", "ask_address"],
        "slots": {
            "language": {"type": "text", "influence_conversation": False, "mappings": [{"type": "custom"}]},
            "visitor_name": {"type": "text", "influence_conversation": False, "mappings": [{"type": "custom"}]},
        },
        "forms": {"visit_form": {"required_slots": ["visitor_name"]}},
        "actions": ["action_answer_question"],
    }
)


def turn(number: int, language: str | None = None) -> list:
    """One user message and the bot's answer to it, as Rasa stores them."""
    events = [
        UserUttered(f"question {number}", {"name": "ask_address", "confidence": 0.9}),
        ActionExecuted("action_answer_question"),
        BotUttered(f"answer {number}"),
    ]
    if language:
        events.append(SlotSet("language", language))
    return [*events, ActionExecuted("action_listen")]


def conversation(turns: int) -> list:
    """A session: the language chosen at turn 1, a form started at turn 2, then questions."""
    events = [ActionExecuted("action_session_start"), SessionStarted(), ActionExecuted("action_listen")]
    events += turn(0)
    events += turn(1, language="ru")
    events += [UserUttered("visit", {"name": "greet"}), ActionExecuted("visit_form"), ActiveLoop("visit_form")]
    events += [SlotSet("visitor_name", "Grace"), ActionExecuted("action_listen")]
    for number in range(3, turns):
        events += turn(number)
    return events


def state(events: list) -> tuple:
    tracker = DialogueStateTracker.from_events("s", events, DOMAIN.slots)
    return (tracker.current_slot_values(), tracker.active_loop_name, tracker.latest_message.text,
            tracker.latest_action_name, tracker.is_paused())  # fmt: skip


@pytest.mark.parametrize("turns", [1, RECENT_TURNS, RECENT_TURNS + 1, 4 * RECENT_TURNS, 200])
def test_the_recent_part_in_memory_has_the_whole_conversations_state(turns):
    events = conversation(turns)
    part = recent_part(events)
    assert state(part) == state(events)
    users = sum(isinstance(e, UserUttered) for e in events)
    assert sum(isinstance(e, UserUttered) for e in part) == min(RECENT_TURNS, users)
    assert part[-len(turn(0)) :] == events[-len(turn(0)) :]  # the latest turns as they were


def test_trimming_again_and_again_keeps_the_same_size():
    events, sizes = conversation(2 * RECENT_TURNS), []
    for number in range(2 * RECENT_TURNS, 400):
        events = recent_part(events + turn(number, language="fr" if number % 7 == 0 else None))
        sizes.append(len(events))
    assert max(sizes[-100:]) == max(sizes[:100])
    assert state(events)[0]["language"] == "fr" and state(events)[1] == "visit_form"


def test_a_reset_in_the_older_part_makes_the_whole_session_count():
    events = conversation(3 * RECENT_TURNS)
    events.insert(len(conversation(3)), Restarted())
    assert recent_part(events) is None


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path, monkeypatch):
    """The tracker store on a SQLite file, and on a PostgreSQL database of its own."""
    url = f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    monkeypatch.setenv("DATABASE_URL", url)
    made = EnvSQLTrackerStore(domain=DOMAIN)
    yield made
    made.engine.dispose()


def stored_count(store, sender: str) -> int:
    with store.engine.connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM events WHERE sender_id = :s"), {"s": sender}).scalar()


def test_the_part_read_from_sql_and_the_part_kept_in_memory_agree(store):
    tracker = DialogueStateTracker.from_events("long", conversation(4 * RECENT_TURNS), DOMAIN.slots)
    asyncio.run(store.save(tracker))
    kept = asyncio.run(store.retrieve("long"))  # the copy kept in memory, trimmed
    store.forget("long")
    read = asyncio.run(store.retrieve("long"))  # read again from SQL
    assert [e.as_dict() for e in kept.events] == [e.as_dict() for e in read.events]
    assert stored_count(store, "long") == len(conversation(4 * RECENT_TURNS))  # every event is stored


def test_each_save_appends_only_the_new_events_and_a_long_conversation_stays_small(store):
    tracker = DialogueStateTracker.from_events("growing", conversation(3), DOMAIN.slots)
    asyncio.run(store.save(tracker))
    stored = len(conversation(3))
    for number in range(3, 60):
        tracker = asyncio.run(store.retrieve("growing"))
        for event in turn(number):
            tracker.update(event)
        asyncio.run(store.save(tracker))
        stored += len(turn(number))
        assert stored_count(store, "growing") == stored
    assert len(asyncio.run(store.retrieve("growing")).events) < 3 * RECENT_TURNS * len(turn(0))
    full = asyncio.run(store.retrieve_full_tracker("growing"))
    assert [e.text for e in full.events if isinstance(e, UserUttered)][-1] == "question 59"


def test_a_copy_in_memory_is_not_used_once_the_stored_conversation_changed(store):
    asyncio.run(store.save(DialogueStateTracker.from_events("erased", conversation(4), DOMAIN.slots)))
    with store.engine.begin() as connection:  # the staff erase it from another process
        connection.execute(sa.text("DELETE FROM events WHERE sender_id = 'erased'"))
    assert asyncio.run(store.retrieve("erased")) is None

    asyncio.run(store.save(DialogueStateTracker.from_events("other", conversation(4), DOMAIN.slots)))
    with store.engine.begin() as connection:  # another replica answers the next message
        connection.execute(
            sa.text("INSERT INTO events (sender_id, type_name, timestamp, data) VALUES ('other', 'slot', 1, :d)"),
            {"d": json.dumps(SlotSet("language", "fr").as_dict())},
        )
    assert asyncio.run(store.retrieve("other")).get_slot("language") == "fr"


def test_the_latest_event_of_a_conversation_is_one_index_lookup(store):
    asyncio.run(store.save(DialogueStateTracker.from_events("indexed", conversation(4), DOMAIN.slots)))
    with store.engine.connect() as connection:
        if store.engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SET enable_seqscan = off")  # a table this small would be scanned
            plan = connection.exec_driver_sql(
                "EXPLAIN SELECT max(id) FROM events WHERE sender_id = 'indexed'"
            ).fetchall()  # fmt: skip
            assert any("ix_events_sender_id_id" in row[0] for row in plan)
        else:
            plan = connection.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT max(id) FROM events WHERE sender_id = 'indexed'"
            ).fetchall()  # fmt: skip
            assert any("INDEX" in row[-1] for row in plan)


def test_a_new_conversation_is_stored_with_its_first_turn_in_one_save(store):
    assert asyncio.run(store.retrieve("new")) is None
    tracker = asyncio.run(store.create_tracker("new"))  # Rasa saves it here
    assert stored_count(store, "new") == 0
    for event in turn(0):
        tracker.update(event)
    asyncio.run(store.save(tracker))
    assert stored_count(store, "new") == 1 + len(turn(0))
    store.forget("new")
    read = asyncio.run(store.retrieve("new"))
    assert [e.as_dict() for e in read.events] == [e.as_dict() for e in tracker.events]
    assert isinstance(read.events[0], ActionExecuted) and read.events[0].action_name == "action_listen"


def test_a_turn_that_cannot_be_stored_stores_nothing_and_the_next_one_is_stored(store):
    """A lone surrogate (SQLite cannot encode it) or a NUL (PostgreSQL refuses it) in a column of
    its own (the intent's name; the text is escaped in the event's JSON) fails that save as a
    whole: none of the turn's events are kept, and the connection goes back to the pool without a
    transaction left open, so the next save of the conversation is stored."""
    asyncio.run(store.save(DialogueStateTracker.from_events("broken", conversation(1), DOMAIN.slots)))
    before = stored_count(store, "broken")
    tracker = asyncio.run(store.retrieve("broken"))
    tracker.update(ActionExecuted("action_listen"))
    tracker.update(UserUttered("bad text", {"name": "greet\ud800\x00", "confidence": 1.0}))
    with pytest.raises(Exception):  # noqa: B017 (each driver has its own error)
        asyncio.run(store.save(tracker))
    assert stored_count(store, "broken") == before
    store.forget("broken")
    tracker = asyncio.run(store.retrieve("broken"))
    for event in turn(7):
        tracker.update(event)
    asyncio.run(store.save(tracker))
    assert stored_count(store, "broken") == before + len(turn(7))
    full = asyncio.run(store.retrieve_full_tracker("broken"))
    assert [e.text for e in full.events if isinstance(e, UserUttered)][-1] == "question 7"
