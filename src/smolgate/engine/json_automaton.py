r"""A byte-level pushdown automaton that accepts the JSON texts a compiled schema (`json_schema.Node`) allows
(with the generation limits below), plus `distance`: the fewest bytes that still finish the text.

It runs on bytes, not characters, because byte-level BPE tokens may hold part of a UTF-8 character; inside
strings it enforces well-formed UTF-8 so `maxLength` counts real characters.

A stack is an immutable linked list `(frame, rest)`; a state is a tuple of alternative stacks (anyOf
branches that accepted the same bytes). Immutability makes trying a token free of copies: the constraint
runs each candidate's bytes from the same state. A parent frame is moved to its "after the child" phase when
the child is pushed, so popping is just returning `rest`, and `distance` is a plain sum over the stack.

Generation limits (the output still always parses): whitespace only between the tokens of a structure, at
most MAX_WS bytes per gap and none at the top level, so a model cannot loop on whitespace; nothing after the
top-level value; at most MAX_DIGITS digits per number part; no \uD800-\uDFFF escapes (lone surrogates break
UTF-8 re-encoding downstream: models write the character itself); keys without \/ or \u escapes.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from .json_schema import Node

Stack: TypeAlias = tuple[Any, Any]  # (frame, rest: Stack | None)
State: TypeAlias = tuple[Stack, ...]

MAX_WS = 16  # whitespace bytes per gap: room for pretty-printing, none for a whitespace loop
MAX_DIGITS = 20  # per integer / fraction part (floats print <= 17); exponents get 2: no overflow to inf
WS = frozenset(b" \n\r\t")
DIGITS = frozenset(b"0123456789")
HEX = frozenset(b"0123456789abcdefABCDEF")
SIMPLE_ESCAPES = frozenset(b'"\\/bfnrt')
QUOTE, BACKSLASH, COMMA, COLON = ord('"'), ord("\\"), ord(","), ord(":")
LBRACE, RBRACE, LBRACKET, RBRACKET, MINUS = ord("{"), ord("}"), ord("["), ord("]"), ord("-")

# frame kinds (first tuple element)
ROOT, OBJ, ARR, STR, NUM, LIT = range(6)
# object phases: after '{' | after ',' | inside a key | after a key | after ':' | after a value
O_OPEN, O_KEY, O_INKEY, O_COLON, O_VALUE, O_NEXT = range(6)
# array phases: after '[' | after ',' | after a value
A_OPEN, A_ITEM, A_NEXT = range(3)
# number states; the "complete" ones may end the number
N_SIGN, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP = range(8)
N_COMPLETE = frozenset({N_ZERO, N_INT, N_FRAC, N_EXP})

# String escape state `esc`: 0 plain, 1 after '\', 2..5 = (esc-1) hex digits of \uXXXX to go,
# 6..8 = (esc-5) UTF-8 continuation bytes to go, 9..12 = the first continuation of a lead byte whose range is
# narrower (Unicode table 3-7: no overlong forms, no surrogates, nothing past U+10FFFF), as strict decoders want.
_NARROW = {9: (0xA0, 0xBF, 6), 10: (0x80, 0x9F, 6), 11: (0x90, 0xBF, 7), 12: (0x80, 0x8F, 7)}
_NARROW_LEAD = {0xE0: 9, 0xED: 10, 0xF0: 11, 0xF4: 12}


def string_byte(esc: int, b: int) -> tuple[int, bool] | None:
    """One byte of string content (not the closing quote) -> (new esc, a character completed) or None."""
    if esc == 0:
        if b == BACKSLASH:
            return 1, False
        if b < 0x20:
            return None
        if b < 0x80:
            return 0, True
        if 0xC2 <= b <= 0xDF:
            return 6, False
        if b in _NARROW_LEAD:
            return _NARROW_LEAD[b], False
        if 0xE0 <= b <= 0xEF:
            return 7, False
        if 0xF0 <= b <= 0xF4:
            return 8, False
        return None
    if esc == 1:
        if b in SIMPLE_ESCAPES:
            return 0, True
        return (5, False) if b == ord("u") else None
    if esc <= 5:
        # no \uD800-\uDFFF: lone surrogates parse in Python but break UTF-8 re-encoding downstream
        if b not in HEX or (esc == 5 and b in b"dD"):
            return None
        return (esc - 1, False) if esc > 2 else (0, True)
    if esc >= 9:
        lo, hi, then = _NARROW[esc]
        return (then, False) if lo <= b <= hi else None
    if 0x80 <= b <= 0xBF:
        return (esc - 1, False) if esc > 6 else (0, True)
    return None


def _esc_left(esc: int) -> int:
    if esc >= 9:
        return _NARROW[esc][2] - 5 + 1
    return 0 if esc == 0 else 1 if esc == 1 else esc - 1 if esc <= 5 else esc - 5


def initial(root: Node) -> State:
    return (((ROOT, root, 0), None),)


def start_value(node: Node, b: int, rest: Stack | None) -> list[Stack]:
    """Stacks after the first byte `b` of a value for `node`, given the stack `rest` to return to."""
    if node.any_of:
        return [s for alt in node.any_of for s in start_value(alt, b, rest)]
    if node.literals is not None:
        return _literal((LIT, tuple(t for t in node.literals if t[0] == b), 1), rest)
    t = node.types
    if b == LBRACE and "object" in t:
        return [((OBJ, node, O_OPEN, frozenset(), 0, None), rest)]
    if b == LBRACKET and "array" in t:
        return [((ARR, node, 0, A_OPEN, 0), rest)]
    if b == QUOTE and "string" in t:
        return [((STR, node, 0, 0), rest)]
    if (b in DIGITS or b == MINUS) and ("number" in t or "integer" in t):
        state = N_SIGN if b == MINUS else N_ZERO if b == ord("0") else N_INT
        return [((NUM, node, state, 1), rest)]
    word = {ord("t"): b"true", ord("f"): b"false", ord("n"): b"null"}.get(b)
    if word is not None and ("null" if word == b"null" else "boolean") in t:
        return _literal((LIT, (word,), 1), rest)
    return []


def _literal(frame: tuple[Any, ...], rest: Stack | None) -> list[Stack]:
    texts, pos = frame[1], frame[2]
    if not texts:
        return []
    if all(len(x) == pos for x in texts):  # nothing can extend it: pop at once
        return [rest] if rest is not None else []
    return [(frame, rest)]


def step(stack: Stack, b: int) -> list[Stack]:
    """All stacks reachable from `stack` by byte `b` (empty: rejected)."""
    frame, rest = stack
    kind = frame[0]
    if kind == STR:
        _, node, length, esc = frame
        if esc == 0 and b == QUOTE:
            return [rest] if length >= node.min_length else []
        if esc == 0 and node.max_length is not None and length >= node.max_length:
            return []
        r = string_byte(esc, b)
        if r is None:
            return []
        return [((STR, node, length + r[1], r[0]), rest)]
    if kind == OBJ:
        return _step_object(frame, rest, b)
    if kind == ARR:
        return _step_array(frame, rest, b)
    if kind == NUM:
        return _step_number(frame, rest, b)
    if kind == LIT:
        _, texts, pos = frame
        out = _literal((LIT, tuple(x for x in texts if len(x) > pos and x[pos] == b), pos + 1), rest)
        if rest is not None and any(len(x) == pos for x in texts):  # complete: b belongs to the parent
            out += step(rest, b)
        return out
    # ROOT
    return start_value(frame[1], b, ((ROOT, frame[1], 1), None)) if frame[2] == 0 else []


def _gap(frame: tuple[Any, ...], ws_index: int, rest: Stack | None, b: int) -> list[Stack] | None:
    """Whitespace inside a structure: counted in the frame, at most MAX_WS per gap. None: not whitespace."""
    if b not in WS:
        return None
    if frame[ws_index] >= MAX_WS:
        return []
    return [((*frame[:ws_index], frame[ws_index] + 1, *frame[ws_index + 1 :]), rest)]


def _step_object(frame: tuple[Any, ...], rest: Stack | None, b: int) -> list[Stack]:
    _, node, phase, seen, _ws, key = frame
    if phase == O_INKEY:
        raw, esc = key
        if esc == 0 and b == QUOTE:
            if raw in seen:
                return []
            value = node.props.get(raw, node.extra)
            return [] if value is None else [((OBJ, node, O_COLON, seen | {raw}, 0, value), rest)]
        # keys are matched on their raw bytes, so no \/ or \u escapes: "\u0061ge" would dodge "age"'s schema
        r = string_byte(esc, b) if esc != 1 or b not in b"/u" else None
        if r is None:
            return []
        raw += bytes((b,))
        if node.extra is None and not _open_key_prefix(node, seen, raw):
            return []
        return [((OBJ, node, O_INKEY, seen, 0, (raw, r[0])), rest)]
    gap = _gap(frame, 4, rest, b)
    if gap is not None:
        return gap
    if phase in (O_OPEN, O_NEXT) and b == RBRACE and node.required <= seen:
        return [rest] if rest is not None else []
    if phase in (O_OPEN, O_KEY) and b == QUOTE and _can_add_key(node, seen):
        return [((OBJ, node, O_INKEY, seen, 0, (b"", 0)), rest)]
    if phase == O_NEXT and b == COMMA and _can_add_key(node, seen):
        return [((OBJ, node, O_KEY, seen, 0, None), rest)]
    if phase == O_COLON and b == COLON:
        return [((OBJ, node, O_VALUE, seen, 0, key), rest)]
    if phase == O_VALUE:
        return start_value(key, b, ((OBJ, node, O_NEXT, seen, 0, None), rest))
    return []


def _can_add_key(node: Node, seen: frozenset[bytes]) -> bool:
    return node.extra is not None or any(k not in seen for k in node.props)


def _open_key_prefix(node: Node, seen: frozenset[bytes], raw: bytes) -> bool:
    """Some declared, not yet written key starts with `raw`."""
    return raw in node.key_prefixes and any(k.startswith(raw) for k in node.props if k not in seen)


def _step_array(frame: tuple[Any, ...], rest: Stack | None, b: int) -> list[Stack]:
    _, node, count, phase, _ws = frame
    gap = _gap(frame, 4, rest, b)
    if gap is not None:
        return gap
    if b == RBRACKET and phase != A_ITEM and count >= node.min_items:
        return [rest] if rest is not None else []
    if phase == A_NEXT:
        if b == COMMA and (node.max_items is None or count < node.max_items):
            return [((ARR, node, count, A_ITEM, 0), rest)]
        return []
    if phase == A_OPEN and node.max_items == 0:
        return []
    return start_value(node.items, b, ((ARR, node, count + 1, A_NEXT, 0), rest))


def _step_number(frame: tuple[Any, ...], rest: Stack | None, b: int) -> list[Stack]:
    _, node, ns, nd = frame
    real = "number" in node.types
    if b in DIGITS:
        if ns == N_SIGN:
            return [((NUM, node, N_ZERO if b == ord("0") else N_INT, 1), rest)]
        if (ns in (N_INT, N_FRAC) and nd < MAX_DIGITS) or (ns == N_EXP and nd < 2):
            return [((NUM, node, ns, nd + 1), rest)]
        if ns in (N_DOT, N_E, N_ESIGN):
            return [((NUM, node, N_FRAC if ns == N_DOT else N_EXP, 1), rest)]
        return []
    if real and b == ord(".") and ns in (N_ZERO, N_INT):
        return [((NUM, node, N_DOT, 0), rest)]
    if real and b in b"eE" and ns in (N_ZERO, N_INT, N_FRAC):
        return [((NUM, node, N_E, 0), rest)]
    if b in b"+-" and ns == N_E:
        return [((NUM, node, N_ESIGN, 0), rest)]
    if ns in N_COMPLETE and rest is not None:
        return step(rest, b)
    return []


def advance(state: State, data: bytes) -> State:
    """Run bytes through every alternative; an empty result means rejected."""
    for b in data:
        nxt: list[Stack] = []
        for stack in state:
            nxt.extend(step(stack, b))
        if len(nxt) > 1:
            nxt = list(dict.fromkeys(nxt))
        state = tuple(nxt)
        if not state:
            return state
    return state


def can_finish(state: State) -> bool:
    """The bytes so far form a complete top-level value (the end of text may come now)."""
    for frame, rest in state:
        if frame[0] == ROOT:
            if frame[2] == 1:
                return True
        elif (
            rest is not None
            and rest[0][0] == ROOT
            and (
                (frame[0] == NUM and frame[2] in N_COMPLETE)
                or (frame[0] == LIT and any(len(x) == frame[2] for x in frame[1]))
            )
        ):
            return True
    return False


def in_text(state: State) -> bool:
    """Some alternative is inside a string, a key or a literal: the only places non-ASCII bytes go."""
    return any(f[0] in (STR, LIT) or (f[0] == OBJ and f[2] == O_INKEY) for f, _ in state)


def string_room(state: State) -> int | None:
    """Characters still allowed in the string every alternative is writing (None: not all in a bounded
    string at a character boundary)."""
    room = -1
    for frame, _ in state:
        if frame[0] != STR or frame[1].max_length is None or frame[3] != 0:
            return None
        room = max(room, frame[1].max_length - frame[2])
    return room


def finished(state: State) -> bool:
    """Complete and nothing may follow: only the end of text is left."""
    return all(frame[0] == ROOT and frame[2] == 1 for frame, _ in state)


def distance(state: State) -> int:
    """The fewest bytes that complete the text from `state` (min over alternatives)."""
    best = 1 << 30
    for stack in state:
        total = 0
        node: Stack | None = stack
        while node is not None:
            total += _frame_cost(node[0])
            node = node[1]
        best = min(best, total)
    return best


def _rest_cost(node: Node, seen: frozenset[bytes], commas_before: bool) -> int:
    """Bytes to add the still-missing required members and close the object."""
    missing = [node.member_cost[k] for k in node.required if k not in seen]
    commas = len(missing) if commas_before else max(len(missing) - 1, 0)
    return sum(missing) + commas + 1


def _frame_cost(frame: tuple[Any, ...]) -> int:
    kind = frame[0]
    if kind == STR:
        _, node, length, esc = frame
        return int(_esc_left(esc) + max(node.min_length - length - (esc != 0), 0) + 1)
    if kind == NUM:
        return 0 if frame[2] in N_COMPLETE else 1
    if kind == LIT:
        return int(min(len(x) for x in frame[1]) - frame[2])
    if kind == ROOT:
        return frame[1].min_len if frame[2] == 0 else 0
    if kind == ARR:
        _, node, count, phase, _ = frame
        need = max(node.min_items - count, 0)
        item = node.items.min_len
        if phase == A_NEXT:
            return int(need * (item + 1) + 1)
        if phase == A_ITEM:
            need = max(need, 1)
        return need * (item + 1) if need else 1  # n items, n-1 commas, ']'
    _, node, phase, seen, _, key = frame
    if phase == O_OPEN:
        return _rest_cost(node, seen, False)
    if phase == O_NEXT:
        return _rest_cost(node, seen, True)
    if phase in (O_COLON, O_VALUE):
        return int((phase == O_COLON) + key.min_len + _rest_cost(node, seen, True))
    if phase == O_KEY:
        if any(k not in seen for k in node.required):
            return _rest_cost(node, seen, False)
        options = [c for k, c in node.member_cost.items() if k not in seen]
        if node.extra is not None:
            options.append(3 + node.extra.min_len)
        return int(min(options) + 1)
    raw, esc = key  # O_INKEY: finish this key (declared or extra), its value, then the rest
    options = []
    for k, value in node.props.items():
        if k not in seen and k.startswith(raw):
            options.append(len(k) - len(raw) + 2 + value.min_len + _rest_cost(node, seen | {k}, True))
    if node.extra is not None:
        options.append(_esc_left(esc) + 2 + node.extra.min_len + _rest_cost(node, seen, True))
    return min(options) if options else 1 << 20
