"""What staff do, whether in the console (/staff/) or with the `bot` command: one implementation.

    console = Console()                           # DATABASE_URL, data/ of the project
    console.inbox.groups(language="fr")           # bot inbox list --lang fr
    console.assign("3fa2c1d0e4", "ask_address", "li")   # bot inbox assign ID INTENT
    console.todo("3fa2c1d0e4", "li")              # needs a new answer
    console.ignore("3fa2c1d0e4", "li")            # bot inbox ignore ID
    console.publish("li", Progress())             # bot publish
    console.rollback("li")                        # bot rollback
    console.add_faq(FaqDraft(...), "li")          # bot faq add NAME --from-file FILE

Each change is written to the audit log (who, when, what).
"""

from __future__ import annotations

from pathlib import Path

from bot.core.languages import registry
from bot.core.paths import DOMAIN_FILE, FACTS_FILE, NLU_DIR, TEXTS_DIR
from bot.core.storage import open_store_engine
from bot.core.texts import load_texts
from bot.core.validation import domain_intents, read_examples
from bot.staff.accounts import StaffAccounts
from bot.staff.factdata import Field, fields, set_facts
from bot.staff.faqdata import FaqDraft, FaqFiles, add_faq
from bot.staff.inbox import Group, Inbox
from bot.staff.nludata import EditRejected, add_example
from bot.staff.publish import Progress, Publisher, PublishError
from bot.staff.textdata import set_texts


class Console:
    """The staff's accounts, inbox and data, on one database and one data folder."""

    def __init__(self, url: str | None = None, nlu_dir: Path = NLU_DIR, domain: Path = DOMAIN_FILE,
                 texts_dir: Path = TEXTS_DIR, facts_file: Path = FACTS_FILE,
                 faq_files: FaqFiles | None = None) -> None:  # fmt: skip
        engine = open_store_engine(url)
        self.url = url
        self.accounts = StaffAccounts(engine=engine)
        self.inbox = Inbox(engine=engine)
        self.nlu_dir, self.domain, self.texts_dir, self.facts_file = nlu_dir, domain, texts_dir, facts_file
        self.publisher = Publisher(engine=engine)
        # where a new FAQ is written: the project's files, or the copies of the tests
        self.faq_files = faq_files or FaqFiles(domain=domain, nlu_dir=nlu_dir, texts_dir=texts_dir)

    def before_edit(self) -> None:
        """Before the first edit of the project's data: the baseline that a rollback can return to."""
        if (self.nlu_dir, self.texts_dir, self.facts_file) == (NLU_DIR, TEXTS_DIR, FACTS_FILE):
            self.publisher.baseline()

    def intents(self) -> list[str]:
        return domain_intents(self.domain)

    def assign(self, group_id: str, intent: str, username: str) -> Group:
        """Adds the group's text as an example of ``intent`` (``EditRejected``: nothing changed)."""
        group = self.inbox.get(group_id)
        if intent not in self.intents():
            raise EditRejected([f"{self.domain}: intent {intent!r} is not in the domain"])
        self.before_edit()
        path = add_example(group.language, intent, group.text, self.nlu_dir, self.domain)
        self.inbox.decide(group, "assigned", username, intent)
        detail = f"{group.id} {group.language} {group.text!r} -> {intent} ({path.name})"
        self.accounts.audit(username, "inbox.assign", detail)
        return group

    def answers(self) -> list[tuple[str, dict[str, str], dict[str, list[str]]]]:
        """(intent, its answer in every language, its examples per language) for each intent with an answer."""
        texts = load_texts(self.texts_dir)
        reg = registry()
        examples = {code: read_examples(self.nlu_dir / f"{code}.yml") for code in reg.codes
                    if (self.nlu_dir / f"{code}.yml").exists()}  # fmt: skip
        found = []
        for intent in self.intents():
            if intent in texts.by_language[reg.default]:
                found.append((intent, {code: texts.by_language[code].get(intent, "") for code in reg.codes},
                              {code: by_intent.get(intent, []) for code, by_intent in examples.items()}))  # fmt: skip
        return found

    def set_answer(self, intent: str, values: dict[str, str], username: str) -> list[Path]:
        """Sets the answer of ``intent`` in the languages of ``values`` (``EditRejected``: nothing changed)."""
        self.before_edit()
        changed = set_texts(intent, values, self.texts_dir)
        if changed:
            self.accounts.audit(username, "answer.edit", f"{intent}: {', '.join(p.name for p in changed)}")
        return changed

    def add_faq(self, draft: FaqDraft, username: str) -> list[Path]:
        """Creates a new FAQ in every file (``bot.staff.faqdata``; ``FaqRejected``: nothing changed)."""
        self.before_edit()
        changed = add_faq(draft, self.faq_files)
        languages = ", ".join(f"{code} {len(examples)}" for code, examples in draft.examples.items() if examples)
        self.accounts.audit(username, "faq.add", f"{draft.name.strip()}: examples {languages}; "
                                                 f"{', '.join(p.name for p in changed)}"[:2000])  # fmt: skip
        return changed

    def facts(self) -> list[Field]:
        return fields(self.facts_file)

    def set_facts(self, values: dict[str, str], username: str) -> bool:
        """Sets facts (field path -> text) in data/facts/department.yml (``EditRejected``: nothing changed)."""
        before = {f.path: f.value for f in self.facts()}
        self.before_edit()
        changed = set_facts(values, self.facts_file)
        if changed:
            after = {f.path: f.value for f in self.facts()}
            detail = "; ".join(f"{k}: {before.get(k)!r} -> {v!r}" for k, v in after.items() if before.get(k) != v)
            self.accounts.audit(username, "facts.edit", detail[:2000])
        return changed

    def todo(self, group_id: str, username: str) -> Group:
        group = self.inbox.get(group_id)
        self.inbox.decide(group, "todo", username)
        self.accounts.audit(username, "inbox.todo", f"{group.id} {group.language} {group.text!r}")
        return group

    def ignore(self, group_id: str, username: str) -> Group:
        group = self.inbox.get(group_id)
        self.inbox.decide(group, "ignored", username)
        self.accounts.audit(username, "inbox.ignore", f"{group.id} {group.language} {group.text!r}")
        return group

    def publish(self, username: str, progress: Progress) -> dict:
        """Publishes data/ (``bot.staff.publish``); the audit log says who and what."""
        self.accounts.audit(username, "publish.start", "")
        try:
            record = self.publisher.publish(username, progress)
        except PublishError as error:
            self.accounts.audit(username, "publish.failed", str(error)[:500])
            raise
        self.accounts.audit(username, "publish", f"{record['model']}: {record['changes']}")
        return record

    def rollback(self, username: str) -> dict:
        record = self.publisher.rollback(username)
        self.accounts.audit(username, "rollback", f"{record['model']}: {record['changes']}")
        return record
