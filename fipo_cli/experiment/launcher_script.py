"""Reading an official FIPO/DAPO launcher script (bash) without running it.

The official launchers are bash: variables with defaults from the environment
(``NNODES=${NNODES:-16}``), arithmetic (``$((1024 * 20))``), quoting, line continuations, then one
``python3 -m verl.trainer.main_ppo`` (or ``recipe.dapo.main_dapo``) command with its Hydra overrides,
often after ``ray job submit ... --``. This module reads that subset of bash: it expands the script's
own variables and arithmetic, keeps what depends on the environment symbolic (``${HOME}/verl``, with
the variables named), and returns the command's overrides. Nothing is executed: a command
substitution (``$(...)``) stays unexpanded, and anything else the script does is listed as ignored.
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path

from fipo_cli.core.errors import UsageError
from fipo_cli.core.files import read_utf8

#: The trainer modules an official launcher runs.
TRAINER_MODULES = ("verl.trainer.main_ppo", "recipe.dapo.main_dapo")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=")


@dataclass(frozen=True)
class Value:
    """A word after expansion: its text, and the environment variables it depends on (not set by the script)."""

    text: str
    env: tuple[str, ...] = ()

    @property
    def environment_dependent(self) -> bool:
        return bool(self.env)

    def __add__(self, other: Value) -> Value:
        return Value(self.text + other.text, tuple(dict.fromkeys(self.env + other.env)))


@dataclass(frozen=True)
class Override:
    """One Hydra override of the trainer command."""

    key: str  # with its sign, as written: "+actor_rollout_ref.actor.policy_loss.decay_rate"
    value: Value | None  # None for "~key"
    written: str  # the word as the script writes it
    line: int


@dataclass(frozen=True)
class LauncherScript:
    path: Path
    module: str
    overrides: list[Override]
    line: int  # where the trainer command starts
    submit_options: list[str] = field(default_factory=list)  # `ray job submit` options before `--`
    command_env: dict[str, Value] = field(default_factory=dict)  # VAR=value words before the command
    variables: dict[str, Value] = field(default_factory=dict)
    ignored: list[tuple[int, str]] = field(default_factory=list)  # other statements: (line, text)
    unparsed: list[tuple[int, str]] = field(default_factory=list)  # command words that are not overrides

    @property
    def submitted_to_ray(self) -> bool:
        """Whether the command goes to a Ray cluster as ``ray job submit ... -- python3 -m ...``."""
        return self.submit_options[:3] == ["ray", "job", "submit"]


class _ScriptError(Exception):
    def __init__(self, line: int, what: str) -> None:
        super().__init__(what)
        self.line, self.what = line, what


# ---------------------------------------------------------------------------- statements and words


def _statements(text: str) -> list[tuple[int, list[str]]]:
    """The script's simple statements as (first line, raw words): split at newlines, ``;``, ``&&`` and
    ``||`` outside quotes, with backslash-newline joined and ``#`` comments removed. Quotes and
    ``$(...)``, ``${...}``, ``$((...))`` stay inside their word, unexpanded."""
    statements: list[tuple[int, list[str]]] = []
    words: list[str] = []
    word: list[str] | None = None
    line, start = 1, 1
    i = 0

    def end_word() -> None:
        nonlocal word
        if word is not None:
            words.append("".join(word))
            word = None

    def end_statement() -> None:
        nonlocal words, start
        end_word()
        if words:
            statements.append((start, words))
        words = []
        start = line

    while i < len(text):
        char = text[i]
        if char == "\\" and text[i + 1:i + 2] == "\n":
            i, line = i + 2, line + 1
            continue
        if word is None and char == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        if char in " \t":
            end_word()
            i += 1
            continue
        if char == "\n" or char == ";" or text.startswith(("&&", "||"), i):
            step = 2 if text.startswith(("&&", "||"), i) else 1
            end_statement()
            if char == "\n":
                line += 1
                start = line
            i += step
            continue
        if word is None:
            word = []
            if not words:
                start = line
        if char == "\\":
            word.append(text[i:i + 2])
            i += 2
        elif char in "'\"":
            close = _closing_quote(text, i)
            if close < 0:
                raise _ScriptError(line, f"unclosed {char} quote")
            line += text.count("\n", i, close)
            word.append(text[i:close + 1])
            i = close + 1
        elif text.startswith("$((", i) or text.startswith("${", i) or text.startswith("$(", i):
            opener = "$((" if text.startswith("$((", i) else text[i:i + 2]
            close = _closing(text, i + len(opener), opener)
            if close < 0:
                raise _ScriptError(line, f"unclosed {opener}")
            line += text.count("\n", i, close)
            word.append(text[i:close])
            i = close
        else:
            word.append(char)
            i += 1
    end_statement()
    return statements


def _closing_quote(text: str, i: int) -> int:
    quote, j = text[i], i + 1
    while j < len(text):
        if quote == '"' and text[j] == "\\":
            j += 2
            continue
        if text[j] == quote:
            return j
        j += 1
    return -1


def _closing(text: str, i: int, opener: str) -> int:
    """The index just past the closer of ``opener`` whose body starts at ``i`` (nesting counted); -1 if none."""
    closer = {"$((": "))", "${": "}", "$(": ")"}[opener]
    depth = 1
    j = i
    while j < len(text):
        if text[j] in "'\"":
            j = _closing_quote(text, j) + 1 or len(text)
            continue
        if text.startswith(closer, j):
            depth -= 1
            if depth == 0:
                return j + len(closer)
            j += len(closer)
            continue
        if text.startswith(opener, j) or (opener == "$(" and text[j] == "("):
            depth += 1
        j += 1
    return -1


# ---------------------------------------------------------------------------- expansion

_OPERATORS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Mod: operator.mod,
    ast.Div: lambda a, b: int(a / b), ast.FloorDiv: lambda a, b: int(a / b), ast.Pow: operator.pow,
}


class _Expander:
    def __init__(self) -> None:
        self.variables: dict[str, Value] = {}

    def lookup(self, name: str, line: int) -> Value:
        if name in self.variables:
            return self.variables[name]
        return Value("${" + name + "}", (name,))

    def expand(self, raw: str, line: int) -> Value:
        """A raw word with quotes removed and ``$`` expansions done."""
        out = Value("")
        i = 0
        while i < len(raw):
            char = raw[i]
            if char == "'":
                close = raw.index("'", i + 1)
                out += Value(raw[i + 1:close])
                i = close + 1
            elif char == '"':
                close = _closing_quote(raw, i)
                out += self._expand_double(raw[i + 1:close], line)
                i = close + 1
            elif char == "\\":
                out += Value(raw[i + 1:i + 2])
                i += 2
            elif char == "$":
                value, i = self._dollar(raw, i, line)
                out += value
            else:
                j = i
                while j < len(raw) and raw[j] not in "'\"\\$":
                    j += 1
                out += Value(raw[i:j])
                i = j
        return out

    def _expand_double(self, body: str, line: int) -> Value:
        out = Value("")
        i = 0
        while i < len(body):
            if body[i] == "\\" and body[i + 1:i + 2] in ('"', "\\", "$", "`"):
                out += Value(body[i + 1])
                i += 2
            elif body[i] == "$":
                value, i = self._dollar(body, i, line)
                out += value
            else:
                j = i + 1
                while j < len(body) and body[j] not in "\\$":
                    j += 1
                out += Value(body[i:j])
                i = j
        return out

    def _dollar(self, raw: str, i: int, line: int) -> tuple[Value, int]:
        if raw.startswith("$((", i):
            close = _closing(raw, i + 3, "$((")
            return self._arithmetic(raw[i + 3:close - 2], line), close
        if raw.startswith("${", i):
            close = _closing(raw, i + 2, "${")
            return self._parameter(raw[i + 2:close - 1], line), close
        if raw.startswith("$(", i):
            close = _closing(raw, i + 2, "$(")
            return Value(raw[i:close], (raw[i:close],)), close
        match = _NAME.match(raw, i + 1)
        if match:
            return self.lookup(match.group(0), line), match.end()
        return Value("$"), i + 1

    def _parameter(self, body: str, line: int) -> Value:
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-=])(.*))?", body, re.S)
        if not match:
            raise _ScriptError(line, f"${{{body}}}: only ${{NAME}} and ${{NAME:-default}} are read")
        name, sign, default = match.groups()
        if sign is None or name in self.variables:
            return self.lookup(name, line)
        fallback = self.expand(default, line)
        return Value(fallback.text, tuple(dict.fromkeys((name, *fallback.env))))

    def _arithmetic(self, expression: str, line: int) -> Value:
        env: list[str] = []

        def number(name: str) -> str:
            value = self.lookup(name, line)
            env.extend(value.env)
            if not re.fullmatch(r"-?\d+", value.text.strip()):
                raise _ScriptError(line, f"$(({expression})): {name} is {value.text!r}, not an integer")
            return value.text.strip()

        text = re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: number(m.group(1)), expression)
        text = re.sub(r"\b[A-Za-z_][A-Za-z0-9_]*\b", lambda m: number(m.group(0)), text)
        try:
            result = _evaluate(ast.parse(text.strip(), mode="eval").body)
        except (SyntaxError, ValueError, ZeroDivisionError) as error:
            raise _ScriptError(line, f"$(({expression})) is not integer arithmetic ({error})") from error
        return Value(str(result), tuple(dict.fromkeys(env)))


def _evaluate(node: ast.AST) -> int:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    raise ValueError("only integers, + - * / % ** and parentheses")


# ---------------------------------------------------------------------------- the script


def _trainer_position(words: list[str], expander: _Expander, line: int) -> tuple[int, str] | None:
    """Where ``python[3] -m MODULE`` starts among a statement's raw words, and the module."""
    for index in range(len(words) - 2):
        program = expander.expand(words[index], line).text
        if Path(program).name.startswith("python") and words[index + 1] == "-m":
            module = expander.expand(words[index + 2], line).text
            if module in TRAINER_MODULES:
                return index, module
    return None


def parse(text: str, path: Path) -> LauncherScript:
    """The launcher's trainer command and overrides; a UsageError naming the script's line for what it
    cannot read, and when it runs no trainer."""
    try:
        return _parse(text, path)
    except _ScriptError as error:
        raise UsageError(f"{path}:{error.line}: {error.what}",
                         hint="fipo reads the bash of the official launchers (variables, ${NAME:-default}, "
                              "$((...)), quotes, line continuations); it runs nothing") from None


def _parse(text: str, path: Path) -> LauncherScript:
    expander = _Expander()
    ignored: list[tuple[int, str]] = []
    found: LauncherScript | None = None
    for line, words in _statements(text):
        position = _trainer_position(words, expander, line)
        if position is None:
            assigned = words[1:] if words[0] in ("export", "readonly", "local", "declare") else words
            if assigned and all(_ASSIGNMENT.match(word) for word in assigned):
                for word in assigned:
                    name, raw = word.split("=", 1)
                    expander.variables[name] = expander.expand(raw, line)
            else:  # any other command: not run, listed
                ignored.append((line, " ".join(words)))
            continue
        if found is not None:
            raise _ScriptError(line, f"a second trainer command (the first is on line {found.line})")
        index, module = position
        before = words[:index]
        separator = before.index("--") if "--" in before else None
        submit = before[:separator] if separator is not None else []
        prefix = before[separator + 1:] if separator is not None else before
        command_env = {}
        for word in prefix:
            if _ASSIGNMENT.match(word):
                name, raw = word.split("=", 1)
                command_env[name] = expander.expand(raw, line)
        overrides, unparsed = [], []
        for word in words[index + 3:]:
            expanded = expander.expand(word, line)
            key, sep, _ = expanded.text.partition("=")
            if word.startswith("~") and not sep:
                overrides.append(Override(key, None, word, line))
            elif sep and re.fullmatch(r"(\+\+|\+|~)?[A-Za-z_][\w.-]*", key):
                raw_value = word.split("=", 1)[1]
                overrides.append(Override(key, expander.expand(raw_value, line), word, line))
            else:
                unparsed.append((line, word))
        found = LauncherScript(
            path=path, module=module, overrides=overrides, line=line,
            submit_options=[expander.expand(word, line).text for word in submit],
            command_env=command_env, variables={}, ignored=[], unparsed=unparsed,
        )
    if found is None:
        raise _ScriptError(1, "no trainer command: expected `python3 -m " + "` or `python3 -m ".join(TRAINER_MODULES)
                           + "` with its overrides")
    return LauncherScript(**{**found.__dict__, "variables": dict(expander.variables), "ignored": ignored})


def read(path: Path) -> LauncherScript:
    """Parse the launcher script at ``path`` (read as UTF-8 text, never run)."""
    if not path.is_file():
        raise UsageError(f"--from-launcher {path}: no such file", hint="give the path of an official launcher script")
    return parse(read_utf8(path), path)
