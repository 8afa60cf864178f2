"""Rasa-free core: languages, texts, facts, date and e-mail parsing, database and request storage."""
