"""JSON with comments and trailing commas, every value tagged with its line.

The policy file is JSON that a person edits: ``//`` and ``/* */`` comments and
a comma after the last item of an object or array are accepted (as in JSONC /
VS Code's settings files), and every value remembers the line it starts on so
that a checker can say *where* a policy is wrong. Everything else follows
RFC 8259: strings and numbers are decoded by the standard library's ``json``.

``parse(text)`` gives a tree of `Node`: ``node.value`` is a ``dict[str, Node]``,
a ``list[Node]``, a ``str``, an ``int``/``float``, a ``bool`` or ``None``;
``node.line`` is 1-based. Object keys keep their own lines in ``Node.key_lines``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

__all__ = ["JsonError", "Node", "parse"]

# One token: whitespace and comments are skipped, the rest is a JSON token.
_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\n]+)
  | (?P<line_comment>//[^\n]*)
  | (?P<block_comment>/\*.*?\*/)
  | (?P<string>"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*")
  | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<word>true|false|null)
  | (?P<punct>[{}\[\]:,])
    """,
    re.VERBOSE | re.DOTALL,
)
_WORDS: dict[str, object] = {"true": True, "false": False, "null": None}
MAX_DEPTH = 64  # a policy is a few levels deep; this bounds the recursion


class JsonError(ValueError):
    """A syntax error, with the line it is on."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass
class Node:
    """A JSON value and the line it starts on."""

    value: object
    line: int
    key_lines: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    line: int


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos, line = 0, 1
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            if text.startswith("/*", pos):
                raise JsonError(line, "unterminated /* comment")
            snippet = text[pos : pos + 12].split("\n")[0]
            raise JsonError(line, f"unexpected text {snippet!r}")
        kind = match.lastgroup or ""
        if kind not in ("space", "line_comment", "block_comment"):
            tokens.append(_Token(kind, match.group(), line))
        line += match.group().count("\n")
        pos = match.end()
    tokens.append(_Token("end", "", line))
    return tokens


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self) -> _Token:
        return self.tokens[self.at]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        if token.kind != "end":
            self.at += 1
        return token

    def expect(self, text: str) -> _Token:
        token = self.take()
        if token.text != text:
            raise JsonError(token.line, f"expected {text!r}, found {_shown(token)}")
        return token

    def more(self, close: str) -> bool:
        """After an item: a comma (taken; one before `close` is accepted), or `close`."""
        token = self.peek()
        if token.text == ",":
            self.take()
            return True
        if token.text != close:
            raise JsonError(token.line, f"expected ',' or {close!r}, found {_shown(token)}")
        return False

    def value(self, depth: int) -> Node:
        token = self.take()
        if depth > MAX_DEPTH:
            raise JsonError(token.line, f"nested deeper than {MAX_DEPTH} levels")
        if token.kind == "string":
            return Node(json.loads(token.text), token.line)
        if token.kind == "number":
            return Node(json.loads(token.text), token.line)
        if token.kind == "word":
            return Node(_WORDS[token.text], token.line)
        if token.text == "{":
            return self.object(token.line, depth)
        if token.text == "[":
            return self.array(token.line, depth)
        raise JsonError(token.line, f"expected a value, found {_shown(token)}")

    def object(self, line: int, depth: int) -> Node:
        items: dict[str, Node] = {}
        node = Node(items, line)
        while self.peek().text != "}":
            key = self.take()
            if key.kind != "string":
                raise JsonError(key.line, f"expected a key in quotes, found {_shown(key)}")
            name = json.loads(key.text)
            if name in items:
                raise JsonError(key.line, f"duplicate key {name!r}")
            self.expect(":")
            items[name] = self.value(depth + 1)
            node.key_lines[name] = key.line
            if not self.more("}"):
                break
        self.expect("}")
        return node

    def array(self, line: int, depth: int) -> Node:
        items: list[Node] = []
        while self.peek().text != "]":
            items.append(self.value(depth + 1))
            if not self.more("]"):
                break
        self.expect("]")
        return Node(items, line)


def _shown(token: _Token) -> str:
    return "the end of the file" if token.kind == "end" else repr(token.text)


def parse(text: str) -> Node:
    """The tree of `text`; raises `JsonError` (with the line) if it is not JSONC."""
    parser = _Parser(_tokens(text))
    node = parser.value(0)
    extra = parser.take()
    if extra.kind != "end":
        raise JsonError(extra.line, f"unexpected {_shown(extra)} after the value")
    return node


def plain(node: Node) -> object:
    """The value of `node` without lines: what ``json.loads`` would give."""
    if isinstance(node.value, dict):
        return {key: plain(child) for key, child in node.value.items()}
    if isinstance(node.value, list):
        return [plain(child) for child in node.value]
    return node.value
