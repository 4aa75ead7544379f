"""``calculate``: exact arithmetic the controller should not do in its head.

The expression is read with :func:`ast.parse` into a syntax tree and evaluated by walking a
whitelist of node types (numbers, ``+ - * / // % **``, unary signs, parentheses and a few
functions). Nothing is ever passed to ``eval``/``exec`` or compiled into code: model text is
untrusted. Limits keep one call cheap: at most :data:`MAX_CHARS` characters, integers of at most
:data:`MAX_INT_BITS` bits (``9**9**9`` is refused before it is computed).
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentkit.errors import ToolError
from agentkit.tools.base import ToolContext

NAME = "calculate"
DESCRIPTION = """Evaluates an arithmetic expression exactly and returns its value. Use it for any
sum, difference, product, ratio, percentage or average instead of working it out yourself.
Supports numbers, + - * / (division), // (whole division), % (remainder), ** (power),
parentheses, and the functions abs, round, min, max and sqrt, and the constants pi and e.
Example: (12 + 7) * 3 / 2"""
TIMEOUT = None  # computes over results in memory, bounded inputs: runs on the caller's thread
PURE = True  # reads its inputs only: may run ahead and be reused

MAX_CHARS = 200
#: Largest integer magnitude kept (about 1200 decimal digits).
MAX_INT_BITS = 4000
_USAGE = "use numbers, + - * / // % **, parentheses and abs, round, min, max, sqrt, pi, e"

_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_SYMBOLS = {
    ast.BitXor: "^",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.MatMult: "@",
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def _round(x: float, ndigits: int | None = None) -> float | int:
    if ndigits is not None and (not isinstance(ndigits, int) or abs(ndigits) > 100):
        raise ToolError(
            f"round's second argument must be a whole number of digits from -100 to 100, got {ndigits!r}"
        )
    return round(x) if ndigits is None else round(x, ndigits)


_FUNCTIONS: dict[
    str, tuple[Callable[..., Any], int, int]
] = {  # name -> (function, min args, max args)
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "min": (min, 1, 50),
    "max": (max, 1, 50),
    "sqrt": (math.sqrt, 1, 1),
}


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expression: str = Field(
        max_length=MAX_CHARS,
        description="The arithmetic to evaluate, e.g. (12 + 7) * 3 / 2 or sqrt(2) * 10; numbers only, no variables or units.",
    )


class Result(BaseModel):
    expression: str = Field(description="The expression as given.")
    value: int | float = Field(
        description="Its value (an integer when the arithmetic stayed in integers)."
    )


def _check(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolError(
            f"the result is not a real number ({type(value).__name__}); a negative number to a fractional power has no real value"
        )
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolError(
            f"the result has more than {MAX_INT_BITS} bits (about {MAX_INT_BITS * 3 // 10} digits); the limit keeps one call fast"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("the result is too large (or not a number) for a float")
    return value


def _power(base: int | float, exp: int | float) -> int | float:
    # Only int ** int can be slow (its result is exact); estimate its size before computing it.
    if (
        isinstance(base, int)
        and isinstance(exp, int)
        and exp > 0
        and abs(base) > 1
        and (abs(base).bit_length() - 1) * exp > MAX_INT_BITS
    ):
        raise ToolError(
            f"{base} ** {exp} would have more than {MAX_INT_BITS} bits; the limit keeps one call fast"
        )
    return base**exp


def _eval(node: ast.AST) -> int | float:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ToolError(f"{node.value!r} is not a number; {_USAGE}")
        return _check(node.value)
    if isinstance(node, ast.BinOp):
        op = type(node.op)
        if op not in _BINOPS:
            sym = _SYMBOLS.get(op, op.__name__)
            hint = "; write ** for powers" if op is ast.BitXor else ""
            raise ToolError(f"the operator {sym!r} is not supported{hint}; {_USAGE}")
        left, right = _eval(node.left), _eval(node.right)
        if op is ast.Pow:
            return _check(_power(left, right))
        return _check(_BINOPS[op](left, right))
    if isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            raise ToolError(f"the operator {type(node.op).__name__} is not supported; {_USAGE}")
        return _check(_UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise ToolError(f"unknown name {node.id!r}: there are no variables; {_USAGE}")
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in _FUNCTIONS:
            shown = name or ast.unparse(node.func)[:40]
            raise ToolError(
                f"unknown function {shown!r}; the functions are {', '.join(_FUNCTIONS)}"
            )
        if node.keywords:
            raise ToolError(f"{name}() takes positional arguments only")
        fn, lo, hi = _FUNCTIONS[name]
        if not lo <= len(node.args) <= hi:
            raise ToolError(
                f"{name}() takes {lo} to {hi} arguments, got {len(node.args)}"
                if lo != hi
                else f"{name}() takes {lo} argument(s), got {len(node.args)}"
            )
        values = [_eval(a) for a in node.args]
        try:
            return _check(fn(*values))
        except ValueError as e:  # math domain error: sqrt(-1)
            raise ToolError(f"{name}({', '.join(map(repr, values))}) is undefined: {e}") from None
    if isinstance(node, ast.Compare):
        raise ToolError(f"comparisons are not supported; {_USAGE}")
    raise ToolError(f"{type(node).__name__} is not allowed in an expression; {_USAGE}")


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression. Raises :class:`ToolError` with a usable message."""
    text = expression.strip()
    if not text:
        raise ToolError(f"the expression is empty; {_USAGE}")
    if len(text) > MAX_CHARS:
        raise ToolError(f"the expression has {len(text)} characters; the limit is {MAX_CHARS}")
    try:
        tree = ast.parse(
            text.replace("×", "*").replace("÷", "/"), mode="eval"
        )  # a tree, never code
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        msg = getattr(e, "msg", None) or str(e)
        raise ToolError(f"cannot read {text!r} as arithmetic ({msg}); {_USAGE}") from None
    try:
        return _eval(tree)
    except ZeroDivisionError:
        raise ToolError(f"division by zero in {text!r}") from None
    except OverflowError:
        raise ToolError(f"a number in {text!r} grew too large for a float") from None
    except RecursionError:
        raise ToolError(f"{text!r} is nested too deeply") from None


def run(args: Args, ctx: ToolContext) -> Result:
    return Result(expression=args.expression, value=evaluate(args.expression))


def summary(result: Result) -> str:
    return f"{result.expression} = {result.value!r}"
