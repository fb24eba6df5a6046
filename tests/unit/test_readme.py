"""What the README, docs/*.md and the notebooks' markdown tell a user to type exists and parses.

Every `python -m MODULE ...` command in their code (fenced blocks and inline spans) names a module
that exists, and its arguments parse with that command's own argparse parser, in this process: the
command's `main` is called with the arguments and stopped where it parses them (`parse_args`), so a
flag the parser does not know, a bad choice or a missing required flag fails here, and nothing runs.
`...` stands for elided text (a skipped argument, or an elided value). Every `--flag` written in
inline code must be a flag of one of those commands; every repository path they name (arner_jax/,
benchmarks/, docs/, experiments/, notebooks/, tests/, .ci/, and ../shared/ when the shared data are
here) exists, `<placeholders>` and `[optional parts]` matching anything; every `arner_jax.x.y`
module reference and every `from arner_jax... import name` in Python blocks of the README and docs
resolves (read from the source, nothing imported); every link into docs/ lands on a heading.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import importlib
import importlib.util
import inspect
import io
import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
OURS = ("arner_jax", "experiments", "benchmarks")  # packages whose commands are parsed here
ELISION = "..."
# flags of other programs that the pages may quote in inline code
FOREIGN_FLAGS = {"--strict-markers", "--logdir"}  # pytest's, TensorBoard's
FOREIGN_PREFIX = "--xla_"  # XLA's own flags, given in XLA_FLAGS
_PATH_TAIL = r"(?:\{[^{}\s]*\}|[^\s`'\"()|,;{])*"  # {a,b} alternatives kept whole
REPO_PATH = re.compile(r"(?<![\w./~$-])((?:arner_jax|benchmarks|docs|experiments|notebooks|tests|\.ci)/"
                       + _PATH_TAIL + r"|\.\./shared/" + _PATH_TAIL + r"|pyproject\.toml|setup\.py)")
MODULE_REF = re.compile(r"(?<![\w./-])((?:arner_jax|experiments|benchmarks)(?:\.[A-Za-z_]\w*)+)")
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.S | re.M)
NOT_SHELL = ("python", "text")  # fenced blocks whose lines are not shell commands
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")


# ---------------------------------------------------------------------- reading the pages
@functools.cache
def text_of(path: Path) -> str:
    """A page's markdown; for a notebook, its markdown cells."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return path.read_text(encoding="utf-8")


def blocks(text: str) -> tuple[list[str], list[str]]:
    """(fenced blocks of shell lines, inline code spans outside every fenced block)."""
    fenced = [body for info, body in FENCE.findall(text) if info.strip() not in NOT_SHELL]
    return fenced, INLINE.findall(FENCE.sub("", text))


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


@dataclass(frozen=True)
class Command:
    page: str
    module: str
    args: tuple[str, ...]
    bare: bool = False  # `python -m MODULE` named in prose: the module must exist, its arguments are not given

    def __str__(self):
        return f"python -m {self.module} {' '.join(self.args)}".strip()


def _is_python(token: str) -> bool:
    return token in ("python", "python3") or token.endswith(("/python", "/python3"))


def split_commands(line: str, page: str) -> list[Command]:
    """The `python -m` commands of one shell line, quoted ones (`--command "... python -m ..."`) included."""
    try:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote: not a shell line
        return []
    found, i = [], 0
    while i < len(tokens):
        token = tokens[i]
        if " " in token and "python -m" in token:
            found += split_commands(token, page)
        elif _is_python(token) and i + 2 < len(tokens) and tokens[i + 1] == "-m":
            end = i + 3
            while end < len(tokens) and not (_is_python(tokens[end]) and end + 1 < len(tokens)
                                             and tokens[end + 1] == "-m") and not set(tokens[end]) <= set("();<>|&"):
                end += 1
            found.append(Command(page, tokens[i + 2], tuple(tokens[i + 3:end])))
            i = end - 1
        i += 1
    return found


def commands_of(path: Path) -> list[Command]:
    page = path.relative_to(ROOT).as_posix()
    fenced, inline = blocks(text_of(path))
    lines = [line for block in fenced for line in re.sub(r"\\\n", " ", block).splitlines()]
    lines += [span for span in inline if "python -m " in span and not re.fullmatch(r"python -m [\w.]+", span)]
    bare = [Command(page, span.split()[2], (), True) for span in inline
            if re.fullmatch(r"python -m [\w.]+", span)]
    return [c for line in lines for c in split_commands(line, page)] + bare


COMMANDS = list(dict.fromkeys(c for p in [*PAGES, *NOTEBOOKS] for c in commands_of(p)))


# ---------------------------------------------------------------------- modules, read from the source
def module_file(name: str) -> Path | None:
    """The source file of a module of this repository (a package: its __init__), or None."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def top_level_names(path: Path) -> set[str]:
    """Names a module defines or imports at its top level (if/try bodies included)."""
    names: set[str] = set()

    def visit(body):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body + node.orelse + getattr(node, "finalbody", [])
                      + [s for h in getattr(node, "handlers", []) for s in h.body])
    tree = ast.parse(path.read_text(encoding="utf-8"))
    visit(tree.body)
    if "__getattr__" in names:  # a module that serves names lazily lists them in a literal __all__
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                names.update(ast.literal_eval(node.value))
    return names


def resolve_reference(dotted: str) -> str | None:
    """Why `dotted` (a module, or a module's top-level name and attributes) does not resolve; None if it does."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        path = module_file(".".join(parts[:n]))
        if path is None:
            continue
        if n == len(parts) or parts[n] in top_level_names(path) or (path.parent / f"{parts[n]}.py").is_file():
            return None
        return f"{'.'.join(parts[:n])} has no {parts[n]}"
    return f"no module {parts[0]}"


def entry_point(module: str):
    """The `main` a command's `if __name__ == "__main__":` block runs, and the literal keywords it passes:
    a "module:function" target handed to a starter (`start("arner_jax.train.cli:main", preset=...)`), or
    a call of a function named `main`."""
    path = module_file(module)
    if path is not None and path.name == "__init__.py":
        module, path = f"{module}.__main__", path.parent / "__main__.py"
    assert path is not None and path.is_file(), f"python -m {module}: no such module in this repository"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    block = next((n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)), None)
    assert block is not None, f"{path.relative_to(ROOT)}: no `if __name__ == \"__main__\":` block"
    imported = {a.asname or a.name: (n.module, a.name) for n in ast.walk(block) if isinstance(n, ast.ImportFrom)
                for a in n.names}
    calls = [n for n in ast.walk(block) if isinstance(n, ast.Call)]
    for call in calls:
        target = call.args[0].value if call.args and isinstance(call.args[0], ast.Constant) else None
        if isinstance(target, str) and re.fullmatch(r"[\w.]+:\w+", target):
            source, name = target.split(":")
            break
    else:
        for call in (c for c in calls if isinstance(c.func, ast.Name)):
            source, name = imported.get(call.func.id, (module, call.func.id))
            if name == "main":
                break
        else:
            raise AssertionError(f"{path.relative_to(ROOT)}: its __main__ block starts no main()")
    main = getattr(importlib.import_module(source), name)
    accepted = inspect.signature(main).parameters  # a starter's own keywords (xla=...) are not main's
    keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in accepted}
    return main, keywords


class ParsedError(Exception):
    """Raised to stop a command where it has parsed its arguments (not an error of the command)."""

    def __init__(self, unknown: list[str]):
        super().__init__(unknown)
        self.unknown = unknown


@contextlib.contextmanager
def stop_at_parse(seen: list):
    """A command's final `parse_args` parses and then stops the command (ParsedError); its direct
    `parse_known_args` calls (a first pass, or flags handed on) go through. Every parser used is kept."""
    original = argparse.ArgumentParser.parse_known_args

    def parse_known_args(self, args=None, namespace=None):
        seen.append(self)
        return original(self, args, namespace)

    def parse_args(self, args=None, namespace=None):
        seen.append(self)
        _, unknown = original(self, args, namespace)  # a bad flag, choice or value: SystemExit(2)
        raise ParsedError([u for u in unknown if u != ELISION])

    with mock.patch.object(argparse.ArgumentParser, "parse_known_args", parse_known_args), \
            mock.patch.object(argparse.ArgumentParser, "parse_args", parse_args):
        yield


def flags_of(parser: argparse.ArgumentParser) -> set[str]:
    flags = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= flags_of(sub)
    return flags


@functools.cache
def parse(command: Command) -> tuple[str | None, frozenset[str]]:
    """(why the command does not parse, or None; the flags of the parsers it used)."""
    if command.module.split(".")[0] not in OURS:
        found = importlib.util.find_spec(command.module) is not None
        return (None if found else f"no module {command.module}"), frozenset()
    try:
        main, keywords = entry_point(command.module)
    except AssertionError as err:
        return str(err), frozenset()
    seen: list = []
    err = io.StringIO()
    problem = f"{command}: its main() returned without parsing its arguments"
    with stop_at_parse(seen), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(list(command.args), **keywords)
        except ParsedError as done:
            problem = f"{command}: unrecognized {done.unknown}" if done.unknown else None
        except SystemExit as stop:
            problem = None if stop.code in (0, None) else f"{command}: {err.getvalue().strip() or stop}"
    if command.bare:  # no arguments given: only the module and its parser count
        problem = None if seen else f"{command}: its main() parses no arguments"
    return problem, frozenset(f for p in seen for f in flags_of(p))


# ---------------------------------------------------------------------- the tests
def test_the_pages_have_commands():
    assert len(COMMANDS) >= 20 and any(c.page == "README.md" for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"{c.page}:{c.module}:{' '.join(c.args)[:40]}")
def test_command_parses(command):
    problem, _ = parse(command)
    assert problem is None, f"{command.page}: {problem}"


@pytest.mark.parametrize("path", [*PAGES, *NOTEBOOKS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_inline_flags_are_flags_of_a_command(path):
    known = set(FOREIGN_FLAGS)
    for command in COMMANDS:
        known |= parse(command)[1]
    _, inline = blocks(text_of(path))
    written = {f for span in inline for f in re.findall(r"(?<![\w-])--[a-z][\w-]*", span)
               if not f.startswith(FOREIGN_PREFIX)}
    assert not written - known, f"{path.name}: flags of no command written in it: {sorted(written - known)}"


def _glob(pattern: str) -> str:
    pattern = re.sub(r"<[^>]*>", "*", pattern.replace(ELISION, "*"))
    return re.sub(r"\*+", "*", re.sub(r"\[[^\]]*\]", "*", pattern))


def _expand(path: str) -> list[str]:
    brace = re.search(r"\{([^{}]*)\}", path)
    if not brace:
        return [path]
    return [x for alt in brace.group(1).split(",") for x in _expand(path[:brace.start()] + alt + path[brace.end():])]


def shared_dir() -> Path | None:
    shared = Path(os.environ.get("ARNER_SHARED", ROOT.parent / "shared"))
    return shared if shared.is_dir() else None


@pytest.mark.parametrize("path", [*PAGES, *NOTEBOOKS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_named_files_exist(path):
    missing = []
    for named in dict.fromkeys(REPO_PATH.findall(text_of(path))):
        named = named.split("#")[0].rstrip(".:")
        while named.count("]") > named.count("["):  # the end of a markdown link's text
            named = named[:named.rindex("]")]
        base = ROOT
        if named.startswith("../shared/"):
            base = shared_dir()
            if base is None:
                continue
            named = named[len("../shared/"):]
        for one in _expand(named):
            pattern = _glob(one).rstrip("/") or "."
            if not any(base.glob(pattern)):
                missing.append(named)
    assert not missing, f"{path.name} names files that are not there: {missing}"


@pytest.mark.parametrize("path", PAGES + NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_module_references_resolve(path):
    text = text_of(path)
    _, inline = blocks(text)
    dotted = {m for span in inline for m in MODULE_REF.findall(span)}
    for block in python_blocks(text):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in OURS:
                dotted |= {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                dotted |= {a.name for a in node.names if a.name.split(".")[0] in OURS}
    problems = sorted(filter(None, (resolve_reference(d) for d in dotted)))
    assert not problems, f"{path.name}: {problems}"


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_land(path):
    broken = []
    for target in LINK.findall(text_of(path)):
        if "://" in target:
            continue
        file, _, anchor = target.partition("#")
        page = (path.parent / file).resolve() if file else path
        if not page.exists():
            broken.append(target)
        elif anchor and page.suffix == ".md":
            headings = re.findall(r"^#+ (.*)$", FENCE.sub("", page.read_text(encoding="utf-8")), re.M)
            if anchor not in {_slug(h) for h in headings}:
                broken.append(target)
    assert not broken, f"{path.name}: links that land nowhere: {broken}"
