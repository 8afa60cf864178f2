"""The tree reads like the architecture: packages import one way, runtime code never
reads tests/, and the README's map of the files is the tree."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

from bot.core.paths import ROOT

# Who may import whom (besides itself): the core at the bottom, tools and the CLI on top.
ALLOWED = {
    "bot.core": set(),
    "actions": {"bot.core"},
    "bot.plugins": {"bot.core"},
    "bot.staff": {"bot.core"},
    "bot.channels": {"bot.core", "bot.plugins", "bot.staff"},
    "bot.cli": {"bot.core", "bot.plugins", "bot.staff", "bot.channels"},
    "bot.tools": {"bot.core", "bot.plugins", "bot.staff", "bot.channels", "bot.cli"},
}
RUNTIME = ["bot/core", "bot/plugins", "bot/staff", "bot/channels", "bot/cli", "actions"]


def package_of(module: str) -> str | None:
    return next((p for p in sorted(ALLOWED, key=len, reverse=True) if module == p or module.startswith(p + ".")), None)


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def python_files() -> list[Path]:
    return sorted(p for p in (ROOT / "bot").rglob("*.py")) + sorted((ROOT / "actions").rglob("*.py"))


def test_packages_import_one_way_only():
    wrong = []
    for path in python_files():
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        own = package_of(module)
        if own is None:
            continue
        for imported in imports(path):
            target = package_of(imported)
            if target and target != own and target not in ALLOWED[own]:
                wrong.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert wrong == []


def test_the_allowed_imports_have_no_cycle():
    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in ALLOWED[start])

    assert [p for p in ALLOWED if reaches(p, p)] == []


def test_the_rasa_free_core_and_the_actions_do_not_import_rasa():
    rasa_free = (
        ("bot/core", ("rasa", "rasa_sdk", "sanic")),
        ("bot/staff", ("rasa", "rasa_sdk", "sanic")),
        ("actions", ("rasa",)),
    )
    for folder, forbidden in rasa_free:
        for path in (ROOT / folder).rglob("*.py"):
            roots = {name.split(".")[0] for name in imports(path)}
            assert not roots & set(forbidden), (path, roots & set(forbidden))


def test_runtime_code_never_reads_the_tests():
    for folder in RUNTIME:
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"""["']tests(/[^"']*)?["']|^\s*(from|import) tests\b""", text, re.MULTILINE), path


def test_the_project_root_is_defined_once():
    defined = [p for p in python_files() if re.search(r"^(ROOT|PROJECT_ROOT)\s*=", p.read_text(), re.MULTILINE)]
    assert [p.relative_to(ROOT).as_posix() for p in defined] == ["bot/core/paths.py"]


def test_the_readme_map_is_the_tree():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Files", 1)[1].split("```", 2)[1]
    mapped, folder = set(), {}
    for line in block.splitlines():
        match = re.match(r"^( *)(\S+)", line)
        if not match:
            continue
        depth, name = len(match.group(1)) // 2, match.group(2)
        folder = {d: f for d, f in folder.items() if d < depth}
        path = "".join(folder[d] for d in sorted(folder)) + name
        if name.endswith("/"):
            folder[depth] = name
        mapped.add(path)
    tracked = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split())
    tracked_dirs = {str(Path(t).parent) + "/" for t in tracked} | {
        "/".join(Path(t).parts[:n]) + "/" for t in tracked for n in range(1, len(Path(t).parts))
    }
    missing = {m for m in mapped if m not in tracked and m not in tracked_dirs and "<" not in m and "*" not in m}
    assert missing == set(), f"the README maps files that do not exist: {sorted(missing)}"
    python = {
        t for t in tracked if t.endswith(".py") and t.startswith(("bot/", "actions/")) and "__" not in Path(t).name
    }
    unmapped = {t for t in python if t not in mapped}
    assert unmapped == set(), f"the README's map misses: {sorted(unmapped)}"
