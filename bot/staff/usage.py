"""How the bot is used, from the tracker store: figures, their CSV, and plots as SVG made here.

    figures = usage(engine, since)        # the console's Usage page, /staff/usage
    figures.table("per_day_language")     # rows for its CSV download
    bar_chart(days, {"en": [...], ...})   # a stacked bar chart, SVG (no script, no library)

Every user message (buttons' payloads, which start with "/", excepted) counts once, on
the day it came (UTC), in the language the bot answered it in (``bot.staff.inbox``),
on its channel (``bot.core.senders``), as *answered*, *fallback* or *out_of_scope*.
"""

from __future__ import annotations

import collections
import datetime as dt
import html
import json
from dataclasses import dataclass, field

import sqlalchemy as sa

from bot.core.languages import registry
from bot.core.senders import channel_of
from bot.staff.inbox import FALLBACK, OUT_OF_SCOPE, user_and_bot_events

OUTCOMES = ("answered", "fallback", "out_of_scope")
COLOURS = ["#0b4f96", "#b45309", "#1e7b34", "#7b2cbf", "#a4161a", "#0e7490", "#4b5563", "#be185d"]


@dataclass
class Usage:
    days: list[str] = field(default_factory=list)
    by_language: dict[str, collections.Counter] = field(default_factory=dict)  # language -> day -> count
    by_channel: dict[str, collections.Counter] = field(default_factory=dict)
    by_outcome: dict[str, collections.Counter] = field(default_factory=dict)
    intents: collections.Counter = field(default_factory=collections.Counter)
    total: int = 0

    def series(self, table: dict[str, collections.Counter]) -> dict[str, list[int]]:
        return {name: [counts[day] for day in self.days] for name, counts in sorted(table.items())}

    def table(self, name: str) -> tuple[list[str], list[list[object]]]:
        """(header, rows) of one figure, for its CSV."""
        if name == "top_intents":
            return ["intent", "messages"], [[i, n] for i, n in self.intents.most_common()]
        source = {"per_day_language": self.by_language, "per_day_channel": self.by_channel,
                  "per_day_outcome": self.by_outcome}[name]  # fmt: skip
        names = sorted(source) if name != "per_day_outcome" else list(OUTCOMES)
        return ["day", *names], [
            [day, *[source.get(n, collections.Counter())[day] for n in names]] for day in self.days
        ]


def usage(engine: sa.engine.Engine, since: dt.datetime | None = None) -> Usage:
    found = Usage()
    query = user_and_bot_events(engine, since)
    if query is None:
        return found
    languages = registry().languages
    waiting: dict | None = None
    counted: list[dict] = []
    with engine.connect() as connection:
        for sender, kind, timestamp, raw in connection.execute(query):
            try:
                data = json.loads(raw or "{}")
            except ValueError:
                continue
            if kind == "bot":
                language = (data.get("metadata") or {}).get("language")
                if waiting is not None and waiting["sender"] == sender and language in languages:
                    waiting["language"] = language
                waiting = None
                continue
            text = (data.get("text") or "").strip()
            if not text or text.startswith("/"):
                waiting = None
                continue
            intent = ((data.get("parse_data") or {}).get("intent") or {}).get("name") or FALLBACK
            day = dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).date().isoformat()
            outcome = "fallback" if intent == FALLBACK else "out_of_scope" if intent == OUT_OF_SCOPE else "answered"
            waiting = {"sender": sender, "day": day, "language": registry().normalize(
                (data.get("metadata") or {}).get("language")) or "?", "channel": channel_of(sender),
                "outcome": outcome, "intent": intent}  # fmt: skip
            counted.append(waiting)
    for message in counted:
        found.total += 1
        for table, key in ((found.by_language, "language"), (found.by_channel, "channel"),
                           (found.by_outcome, "outcome")):  # fmt: skip
            table.setdefault(message[key], collections.Counter())[message["day"]] += 1
        if message["outcome"] == "answered":
            found.intents[message["intent"]] += 1
    found.days = sorted({m["day"] for m in counted})
    return found


def _text(x: float, y: float, text: object, anchor: str = "start", size: int = 11) -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="#1a2330">'
            f"{html.escape(str(text))}</text>")  # fmt: skip


def _rect(x: float, y: float, w: float, h: float, colour: str, tip: str = "") -> str:
    title = f"<title>{html.escape(tip)}</title>" if tip else ""
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{colour}">{title}</rect>'


def _svg(width: int, height: int, title: str) -> str:
    name = html.escape(title)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{name}" class="chart"><title>{name}</title>')  # fmt: skip


def bar_chart(days: list[str], series: dict[str, list[int]], title: str, shares: bool = False) -> str:
    """Stacked bars, one per day (``shares``: each day's bar is 100%), with a legend; SVG."""
    width, height, left, bottom, top = 720, 260, 44, 46, 28
    plot_w, plot_h = width - left - 150, height - top - bottom
    totals = [sum(values[i] for values in series.values()) for i in range(len(days))]
    peak = 1.0 if shares else max(totals + [1])
    slot = plot_w / max(len(days), 1)
    axis = top + plot_h
    parts = [
        _svg(width, height, title),
        f'<line x1="{left}" y1="{axis}" x2="{left + plot_w}" y2="{axis}" stroke="#556170"/>',
    ]
    for tick in (0, 0.5, 1):
        parts.append(
            _text(left - 6, axis - tick * plot_h + 4, f"{tick:.0%}" if shares else f"{tick * peak:.0f}", "end")
        )
    for i, day in enumerate(days):
        base = axis
        for n, (name, values) in enumerate(series.items()):
            share = values[i] / totals[i] if totals[i] else 0.0
            h = (share if shares else values[i] / peak) * plot_h
            if h > 0:
                tip = f"{day} {name}: {values[i]}"
                parts.append(
                    _rect(left + i * slot + slot * 0.15, base - h, slot * 0.7, h, COLOURS[n % len(COLOURS)], tip)
                )
            base -= h
        if len(days) <= 14 or i % max(1, len(days) // 10) == 0:
            parts.append(_text(left + (i + 0.5) * slot, axis + 16, day[5:], "middle"))
    for n, name in enumerate(series):
        parts.append(_rect(left + plot_w + 20, top + n * 18, 12, 12, COLOURS[n % len(COLOURS)]))
        parts.append(_text(left + plot_w + 38, top + n * 18 + 10, name, size=12))
    return "".join(parts) + "</svg>"


def horizontal_bars(rows: list[tuple[str, int]], title: str) -> str:
    """One bar per row (the top intents, the top unanswered), longest first; SVG."""
    width, bar, left = 720, 20, 230
    height = 16 + len(rows) * (bar + 6)
    peak = max([n for _, n in rows] + [1])
    parts = [_svg(width, height, title)]
    for i, (name, n) in enumerate(rows):
        y = 8 + i * (bar + 6)
        w = (width - left - 60) * n / peak
        parts.append(_text(left - 8, y + 14, name if len(name) <= 34 else name[:33] + "…", "end", 12))
        parts.append(_rect(left, y, w, bar, COLOURS[0], f"{name}: {n}"))
        parts.append(_text(left + w + 6, y + 14, n, size=12))
    return "".join(parts) + "</svg>"
