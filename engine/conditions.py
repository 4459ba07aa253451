"""The condition language of branches: checked once, compiled once, evaluated safely.

A condition is a Python-like expression over the run state in which bare names are state keys
(``quality_score >= 7 or iteration >= 5``). :func:`compile_condition` parses it with :mod:`ast`,
refuses every node outside a whitelist, rewrites it (``x`` to ``_S["x"]``, ``get(k, d)`` to
``_S.get(k, d)``, risky operators to guard calls) and compiles ``lambda _S: <expr>`` once, with
globals holding no builtins, only :data:`FUNCTIONS` and the guards: evaluating is one call.
Not simpleeval: it re-walks the AST on every evaluation, 10-30x slower than a compiled lambda,
and our whitelist is small and checked once, when the graph is created.

Guards, so that a hostile condition fails harmlessly in bounded time and memory: at most 1,000
characters, 50 levels, 500 nodes and 4,300-digit integer literals; ``**`` refuses exponents
above 10,000 and results above ~100,000 bits, ``*`` integer products above ~100,000 bits, ``%``
a string on its left (``"%*d" % (10**9, 1)``), ``round`` ndigits above 10,000; ``<<``, ``>>``,
``~`` and the bitwise operators are refused when parsing. Repetition, concatenation and slice
results hold at most 100,000 items each, fewer when a condition has many: 2,000,000 in all.

Bounding each value is not enough: ``[l * 33333] * 100000 == [l * 33333] * 100000`` builds
two small values (100,000 references to one list each) whose comparison visits 10**10
elements. So each evaluation also has a work budget, :data:`MAX_WORK` elements: the guards
charge what they create or copy, and every operand that Python would walk (compared
containers, both sides of ``in``, the arguments of ``min``, ``max``, ``any`` and ``all``,
hashed keys of ``{...}``, ``d[k]`` and ``get(k)``) is charged its weight, the number of
elements a walk would visit, shared containers counted each time they appear (a memo makes
measuring them cost what they occupy in memory, not what they weigh). Comparisons with a
constant or a literal of constants (``score >= 7``, ``status in ['done', 'failed']``) cost
at most the literal's size and are not instrumented, so common conditions run as before.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.ast_lock import AST_LOCK
from engine.errors import ConditionEvaluationError, ConditionSyntaxError

__all__ = ["FUNCTIONS", "Condition", "compile_condition"]

FUNCTIONS: frozenset[str] = frozenset({"len", "min", "max", "abs", "round", "any", "all", "get"})

MAX_SOURCE_CHARS, MAX_DEPTH, MAX_NODES, MAX_INT_DIGITS = 1_000, 50, 500, 4_300
MAX_EXPONENT, MAX_BITS, MAX_ITEMS, MAX_TOTAL_ITEMS = 10_000, 100_000, 100_000, 2_000_000
MAX_WORK = 5_000_000
"""Elements one evaluation may create, copy, compare or hash (a string counts one element per
64 characters, the speed of memcmp against a pointer comparison). Python compares 5,000,000
elements in about 0.05 s; a condition that would do more fails with a
ConditionEvaluationError naming this budget."""

_ARITY: dict[str, tuple[int, int]] = {
    **dict.fromkeys(("len", "abs", "any", "all"), (1, 1)),
    **dict.fromkeys(("round", "get"), (1, 2)),
    **dict.fromkeys(("min", "max"), (1, MAX_NODES)),
}
_REFUSED_OPS: dict[type[ast.AST], str] = {
    ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|", ast.BitAnd: "&", ast.BitXor: "^",
    ast.MatMult: "@", ast.Invert: "~",
}  # fmt: skip
_REFUSED_NODES: dict[type[ast.AST], str] = {
    **dict.fromkeys((ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp), "comprehensions"),
    **dict.fromkeys((ast.JoinedStr, ast.FormattedValue), "f-strings"),
    **dict.fromkeys((ast.Await, ast.Yield, ast.YieldFrom), "await and yield"),
    ast.Lambda: "lambdas", ast.NamedExpr: "assignment expressions (:=)", ast.Starred: "* unpacking",
}  # fmt: skip
_PLAIN = (ast.BoolOp, ast.IfExp, ast.List, ast.Tuple, ast.Set, ast.Dict, ast.Subscript, ast.Slice)
_SEQUENCES = (str, bytes, list, tuple)
_ATOMS = frozenset({int, float, bool, type(None)})  # exact types: compared in one step
_WALKED = frozenset({list, tuple, set, frozenset})
_SCALARS = (int, float, str, type(None))  # constants a comparison with anything is cheap against
_OVER_BUDGET = (
    f"work budget exceeded: a condition may create, copy or compare at most {MAX_WORK:,} "
    "elements per evaluation"
)


class _Invalid(Exception):
    """The checker refused a construct; compile_condition adds the source to the message."""


class _Refused(Exception):
    """A guard refused an operation whose result would be too large."""


# -- guards: compiled conditions call these instead of the raw operators ------------------------
def _pow(base: Any, exp: Any) -> Any:
    if isinstance(exp, int) and isinstance(base, int | float):
        if abs(exp) > MAX_EXPONENT:
            raise _Refused(f"exponent is too large (limit {MAX_EXPONENT})")
        if isinstance(base, int) and exp > 0 and base.bit_length() * exp > MAX_BITS:
            raise _Refused(f"power is too large (limit about {MAX_BITS} bits)")
    return base**exp


class _Budget:
    """The work one evaluation has left, and the weights of the containers it has measured."""

    __slots__ = ("left", "weights")

    def __init__(self) -> None:
        self.left = MAX_WORK
        # id -> (the container, its weight): holding the container keeps its id unique.
        self.weights: dict[int, tuple[object, int]] = {}

    def spend(self, units: int) -> None:
        self.left -= units
        if self.left < 0:
            raise _Refused(_OVER_BUDGET)

    def copy(self, like: Any, count: int) -> None:
        """Charge building ``count`` items of a sequence like ``like``."""
        self.spend(count // 64 if isinstance(like, str | bytes) else count)


def _weigh(value: Any, budget: _Budget) -> Any:
    """Charge what walking ``value`` (comparing, hashing, iterating it) can cost; return it."""
    budget.spend(1 if type(value) in _ATOMS else _weight(value, budget, budget.left))
    return value


def _scan(container: Any, budget: _Budget) -> Any:
    """Charge looking for a constant in ``container``, the right side of ``'a' in tags``: one
    step per top-level item (each comparison with a constant is one step), one for a hash."""
    kind = type(container)
    if kind is list or kind is tuple:
        budget.spend(1 + len(container))
    elif kind is str or kind is bytes:
        budget.spend(1 + len(container) // 64)
    elif kind in (dict, set, frozenset):
        budget.spend(1)
    else:
        _weigh(container, budget)
    return container


def _weight(value: Any, budget: _Budget, limit: int) -> int:
    """Elements a walk of ``value`` visits; refused as soon as that passes ``limit``."""
    kind = type(value)  # exact types first: isinstance against the Mapping ABC is slow
    parts: tuple[Collection[Any], ...]
    if kind in _WALKED:
        parts = (value,)
    elif kind is dict:
        parts = (value.keys(), value.values())
    elif kind is str or kind is bytes:
        return 1 + len(value) // 64
    else:
        return _weight_of_other(value, budget, limit)
    # Small containers are walked again at each reference; big ones once, then remembered,
    # so `[big] * 100_000` costs 100,000 steps to measure, not its weight.
    remember = len(value) >= 32
    known = budget.weights.get(id(value)) if remember else None
    if known is not None:
        return known[1]
    total = 1
    for part in parts:
        total += _weight_of_items(part, budget, limit - total)
    if remember:
        budget.weights[id(value)] = (value, total)
    return total


def _weight_of_items(items: Collection[Any], budget: _Budget, limit: int) -> int:
    total = len(items)  # one each; what a container or a string holds comes on top
    if total > limit:
        raise _Refused(_OVER_BUDGET)
    if len(items) >= 32 and set(map(type, items)) <= _ATOMS:  # flat data: one pass in C
        return total
    for item in items:
        if type(item) not in _ATOMS:
            total += _weight(item, budget, limit - total) - 1
            if total > limit:
                raise _Refused(_OVER_BUDGET)
    return total


def _weight_of_other(value: Any, budget: _Budget, limit: int) -> int:
    """Subclasses and mappings other than dict (state may hold them in-process); a custom
    value counts one element: its comparisons are its own business."""
    if isinstance(value, str | bytes):
        return 1 + len(value) // 64
    if isinstance(value, Mapping):
        return _weight(dict(value), budget, limit)
    if isinstance(value, list | tuple | set | frozenset):
        return _weight(list(value), budget, limit)
    return 1


def _mul(a: Any, b: Any, cap: int, budget: _Budget) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        if a.bit_length() + b.bit_length() > MAX_BITS:
            raise _Refused(f"product is too large (limit about {MAX_BITS} bits)")
    elif isinstance(a, _SEQUENCES) and isinstance(b, int):
        _check_items(len(a) * b, cap, "repetition")
        budget.copy(a, len(a) * b)
    elif isinstance(b, _SEQUENCES) and isinstance(a, int):
        _check_items(len(b) * a, cap, "repetition")
        budget.copy(b, len(b) * a)
    return a * b


def _add(a: Any, b: Any, cap: int, budget: _Budget) -> Any:
    if isinstance(a, _SEQUENCES) and isinstance(b, _SEQUENCES):
        _check_items(len(a) + len(b), cap, "concatenation")
        budget.copy(a, len(a) + len(b))
    return a + b


def _slice(value: Any, lower: Any, upper: Any, step: Any, cap: int, budget: _Budget) -> Any:
    part = slice(lower, upper, step)
    # Slices copy: `(s[1:], s[1:], ...)` would multiply a big state value.
    if isinstance(value, _SEQUENCES):
        count = len(range(*part.indices(len(value))))
        _check_items(count, cap, "slice")
        budget.copy(value, count)
    return value[part]


def _mod(a: Any, b: Any) -> Any:
    if isinstance(a, str | bytes):
        raise _Refused("string formatting with % is not allowed")
    return a % b


def _round(number: Any, ndigits: Any = None) -> Any:
    if isinstance(ndigits, int) and abs(ndigits) > MAX_EXPONENT:  # round(5, -10**9): 10**10**9
        raise _Refused(f"round() ndigits is too large (limit {MAX_EXPONENT})")
    return round(number, ndigits)


def _check_items(count: int, cap: int, what: str) -> None:
    if count > cap:
        raise _Refused(f"{what} result is too long (limit {cap} items in this condition)")


_GLOBALS: dict[str, Any] = {
    "__builtins__": {},
    **{"len": len, "min": min, "max": max, "abs": abs, "any": any, "all": all},
    **{"_pow": _pow, "_mul": _mul, "_add": _add, "_slice": _slice, "_mod": _mod, "_round": _round},
    **{"_weigh": _weigh, "_scan": _scan},
}


# -- checking ------------------------------------------------------------------------------------
class _Checker:
    """Walks the parsed expression, refusing anything outside the language; collects names."""

    def __init__(self) -> None:
        self.nodes = self.builders = 0  # builders: guarded sites that can build long sequences
        self.names: set[str] = set()
        self.get_keys: set[str] = set()

    def visit(self, node: ast.expr, depth: int) -> None:
        self.nodes += 1
        if depth > MAX_DEPTH:
            raise _Invalid(f"it is nested too deeply (more than {MAX_DEPTH} levels)")
        if self.nodes > MAX_NODES:
            raise _Invalid(f"it is too long (more than {MAX_NODES} syntax nodes)")
        self.builders += isinstance(node, ast.Slice) or _guard(node) in ("_mul", "_add")
        for child in self._children(node):
            self.visit(child, depth + 1)

    def _children(self, node: ast.expr) -> list[ast.expr]:
        """Refuse ``node`` if it is outside the language, else return its sub-expressions."""
        if isinstance(node, ast.Name):
            self.names.add(_name(node.id))
            return []
        if isinstance(node, ast.Constant):
            _constant(node.value)
            return []
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.Attribute):
            raise _Invalid(f"attribute access is not allowed: .{node.attr}")
        if isinstance(node, ast.BinOp | ast.UnaryOp):
            _operator(node)
        elif isinstance(node, ast.Compare):
            _compare(node)
        elif isinstance(node, ast.Dict) and None in node.keys:
            raise _Invalid("** unpacking is not allowed")
        elif not isinstance(node, _PLAIN):
            what = _REFUSED_NODES.get(type(node), type(node).__name__)
            raise _Invalid(f"{what} not allowed")
        return [child for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr)]

    def _call(self, node: ast.Call) -> list[ast.expr]:
        func, allowed = node.func, ", ".join(sorted(FUNCTIONS))
        if isinstance(func, ast.Attribute):
            raise _Invalid(f"attribute access is not allowed: .{func.attr}")
        if not isinstance(func, ast.Name):
            raise _Invalid(f"only these functions can be called: {allowed}")
        if _name(func.id) not in FUNCTIONS:
            raise _Invalid(f"function {func.id!r} is not allowed (allowed: {allowed})")
        if node.keywords:
            arg = node.keywords[0].arg or "*"
            raise _Invalid(f"keyword arguments are not allowed: {func.id}({arg}=...)")
        low, high = _ARITY[func.id]
        if not low <= len(node.args) <= high:
            count = f"{low} argument" if high == 1 else f"{low} to {high} arguments"
            raise _Invalid(f"{func.id}() takes {count}, got {len(node.args)}")
        first = node.args[0]
        if func.id == "get" and isinstance(first, ast.Constant) and isinstance(first.value, str):
            self.get_keys.add(first.value)
        return node.args


def _name(name: str) -> str:
    if name.startswith("__"):
        raise _Invalid(f"name {name!r} is not allowed (names starting with __ are reserved)")
    return name


def _names_as_written(source: str, tree: ast.AST) -> None:
    """Refuse a name that Python would read as another one.

    Python normalizes identifiers (NFKC, PEP 3131): ``\ufb01le`` (a ligature) is read as
    ``file``, a full-width ``\uff58`` as ``x``, a decomposed ``e\u0301`` (e + combining
    accent) as the composed one. The condition would then read another state key than the one
    its author wrote, while ``get("\ufb01le")`` and every JSON key are compared as written.
    Each name is compared with its text in the source (the parser's offsets count UTF-8
    bytes)."""
    if source.isascii():
        return
    lines = [line.encode() for line in re.split(r"\r\n|\r|\n", source)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.end_col_offset is not None:
            line = lines[node.lineno - 1]
            written = line[node.col_offset : node.end_col_offset].decode(errors="replace")
            if written != node.id:
                raise _Invalid(
                    f"name {written!r} would be read as {node.id!r} (Python normalizes "
                    f'names): write {node.id!r}, or get("{written}") for that exact key'
                )


def _constant(value: object) -> None:
    if isinstance(value, int) and value.bit_length() > MAX_INT_DIGITS * 10 // 3:
        raise _Invalid(f"integer literal is too large (more than {MAX_INT_DIGITS} digits)")
    if value is not None and not isinstance(value, int | float | str):
        raise _Invalid(f"{type(value).__name__} literals are not allowed")


def _operator(node: ast.BinOp | ast.UnaryOp) -> None:
    symbol = _REFUSED_OPS.get(type(node.op))
    if symbol is not None:
        raise _Invalid(f"operator {symbol} is not allowed")
    if isinstance(node.op, ast.Mod) and _is_constant(getattr(node, "left", None), str):
        raise _Invalid("string formatting with % is not allowed")


def _compare(node: ast.Compare) -> None:
    operands = [node.left, *node.comparators]
    for i, op in enumerate(node.ops):
        singleton = any(_is_constant(o, type(None), bool) for o in operands[i : i + 2])
        if isinstance(op, ast.Is | ast.IsNot) and not singleton:
            raise _Invalid("'is' and 'is not' only compare with None, True or False")


def _is_constant(node: ast.AST | None, *types: type) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, types)


# -- rewriting and compiling ---------------------------------------------------------------------
def _guard(node: ast.AST) -> str | None:
    """The guard a binary operation goes through, if any."""
    if not isinstance(node, ast.BinOp):
        return None
    op, numbers = node.op, [_is_constant(o, int, float) for o in (node.left, node.right)]
    if isinstance(op, ast.Pow | ast.Mult):
        return "_pow" if isinstance(op, ast.Pow) else "_mul"
    if isinstance(op, ast.Mod) and not numbers[0]:  # a number cannot be a format string
        return "_mod"
    if isinstance(op, ast.Add) and not any(numbers):  # `iteration + 1` cannot concatenate
        return "_add"
    return None


class _Rewriter(ast.NodeTransformer):
    """State names to ``_S[...]``, ``get`` to ``_S.get``, risky operators to their guards,
    operands that Python would walk to ``_weigh`` (see the module docstring)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap  # the item cap of each sequence-building guard
        self.budgeted = False  # some guard charges the evaluation's budget ``_B``

    def _charged(self, guard: str, *args: ast.expr) -> ast.Call:
        self.budgeted = True
        return ast.Call(_load(guard), [*args, _load("_B")], [])

    def _weighed(self, node: ast.expr) -> ast.expr:
        return node if _flat(node) else self._charged("_weigh", node)

    def visit_Name(self, node: ast.Name) -> ast.expr:
        return ast.Subscript(_load("_S"), ast.Constant(node.id), ast.Load())

    def visit_Call(self, node: ast.Call) -> ast.expr:
        assert isinstance(node.func, ast.Name)  # the checker refused every other callee
        args, name = [self.visit(arg) for arg in node.args], node.func.id
        if name in ("min", "max", "any", "all"):
            args = [self._weighed(arg) for arg in args]
        if name == "get":
            getter = ast.Attribute(_load("_S"), "get", ast.Load())
            return ast.Call(getter, [self._weighed(args[0]), *args[1:], ast.Constant(None)][:2], [])
        return ast.Call(_load("_round" if name == "round" else name), args, [])

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        guard = _guard(node)
        self.generic_visit(node)
        if guard in ("_mul", "_add"):
            return self._charged(guard, node.left, node.right, ast.Constant(self.cap))
        if guard is not None:
            return ast.Call(_load(guard), [node.left, node.right], [])
        return node

    def visit_Compare(self, node: ast.Compare) -> ast.expr:
        self.generic_visit(node)
        operands = [node.left, *node.comparators]
        if all(map(_cheap, node.ops, operands, operands[1:])):
            return node
        if len(node.ops) == 1 and isinstance(node.ops[0], ast.In | ast.NotIn) and _flat(node.left):
            node.comparators = [self._charged("_scan", node.comparators[0])]  # `'a' in tags`
        else:
            node.left, *node.comparators = map(self._weighed, operands)
        return node

    def visit_Set(self, node: ast.Set) -> ast.expr:
        self.generic_visit(node)
        node.elts = [self._weighed(element) for element in node.elts]  # hashed
        return node

    def visit_Dict(self, node: ast.Dict) -> ast.expr:
        self.generic_visit(node)
        node.keys = [self._weighed(key) for key in node.keys if key is not None]  # hashed
        return node

    def visit_Subscript(self, node: ast.Subscript) -> ast.expr:
        self.generic_visit(node)
        part = node.slice
        if not isinstance(part, ast.Slice):
            node.slice = self._weighed(part)  # a key is hashed
            return node
        bounds = [bound or ast.Constant(None) for bound in (part.lower, part.upper, part.step)]
        return self._charged("_slice", node.value, *bounds, ast.Constant(self.cap))


def _flat(node: ast.expr) -> bool:
    """A scalar constant, or a literal of them: walking it costs at most its own size."""
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return all(_is_constant(element, *_SCALARS) for element in node.elts)
    return _is_constant(node, *_SCALARS)


def _cheap(op: ast.cmpop, left: ast.expr, right: ast.expr) -> bool:
    """Comparing ``left`` with ``right`` costs at most the size of a literal of the condition:
    ``==``, ``<``, ``is``... stop within the flat side; ``in`` scans its right side, and a set
    hashes its left one."""
    if isinstance(op, ast.In | ast.NotIn):
        return _flat(right) and (_flat(left) or not isinstance(right, ast.Set))
    return _flat(left) or _flat(right)


def _load(name: str) -> ast.Name:
    return ast.Name(name, ast.Load())


def _build(body: ast.expr) -> Callable[[Mapping[str, Any], _Budget | None], Any]:
    params = ast.arguments([], [ast.arg("_S"), ast.arg("_B")], None, [], [], None, [])
    tree = ast.fix_missing_locations(ast.Expression(ast.Lambda(params, body)))
    with warnings.catch_warnings():  # CPython warns of sure failures (`1[0]`): refuse them now
        warnings.simplefilter("error", SyntaxWarning)
        code = compile(tree, "<condition>", "eval")
    function: Callable[[Mapping[str, Any], _Budget | None], Any] = eval(code, _GLOBALS)
    return function


# -- public API ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled condition: call it with the state to get its truth. Equal by source.

    ``names`` holds every state key the condition reads: its bare names and the constant keys
    of its ``get(...)`` calls. Evaluating ``quality_score >= 7 or iteration >= 5`` takes about
    0.2 microseconds (timeit, CPython 3.11, x86-64; 0.08 of them in the compiled lambda).
    """

    source: str
    names: frozenset[str] = field(compare=False)
    _function: Callable[[Mapping[str, Any], _Budget | None], Any] = field(compare=False, repr=False)
    _required: frozenset[str] = field(compare=False, repr=False)
    _budgeted: bool = field(default=False, compare=False, repr=False)

    def __call__(self, state: Mapping[str, Any]) -> bool:
        """The condition's truth on ``state``; any failure is a ConditionEvaluationError."""
        try:
            return bool(self._function(state, _Budget() if self._budgeted else None))
        except KeyError as exc:
            key = exc.args[0] if exc.args else None
            if isinstance(key, str) and key in self._required and key not in state:
                message = f"condition {_quote(self.source)} reads missing state key {key!r}"
                raise ConditionEvaluationError(message) from exc
            raise self._failed("failed", exc) from exc
        except Exception as exc:  # custom state values may raise anything: still one error type
            raise self._failed("refused" if isinstance(exc, _Refused) else "failed", exc) from exc

    def __reduce__(self) -> tuple[Callable[[str], Condition], tuple[str]]:
        return (compile_condition, (self.source,))  # pickle and copy by source

    def _failed(self, verb: str, exc: Exception) -> ConditionEvaluationError:
        return ConditionEvaluationError(f"condition {_quote(self.source)} {verb}: {_reason(exc)}")


def compile_condition(source: str) -> Condition:
    """Check and compile ``source`` once; raise ConditionSyntaxError saying what is refused."""
    if not isinstance(source, str):
        raise ConditionSyntaxError(f"a condition must be a string, not {type(source).__name__}")
    try:
        if len(source) > MAX_SOURCE_CHARS:
            raise _Invalid(f"it is longer than {MAX_SOURCE_CHARS} characters")
        with AST_LOCK:  # also keeps warnings.catch_warnings, which is process-wide, to one thread
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # invalid escape sequences and the like
                tree = ast.parse(source, mode="eval")
            _names_as_written(source, tree)
            checker = _Checker()
            checker.visit(tree.body, 1)
            rewriter = _Rewriter(min(MAX_ITEMS, MAX_TOTAL_ITEMS // max(1, checker.builders)))
            function = _build(rewriter.visit(tree.body))
    except (_Invalid, SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as exc:
        raise ConditionSyntaxError(f"condition {_quote(source)}: {_reason(exc)}") from None
    names = frozenset(checker.names)
    return Condition(source, names | checker.get_keys, function, names, rewriter.budgeted)


def _quote(source: str) -> str:
    return repr(source if len(source) <= 120 else source[:117] + "...")


def _reason(exc: BaseException) -> str:
    """What went wrong, in one line: never failing (str() of a huge int raises), never huge."""
    try:
        text = exc.msg if isinstance(exc, SyntaxError) else str(exc)
    except Exception:
        text = ""
    text = text if len(text) <= 200 else text[:197] + "..."
    if isinstance(exc, _Invalid | _Refused | SyntaxError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
