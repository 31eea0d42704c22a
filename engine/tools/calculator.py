"""Safe arithmetic for the calculator tool: Python's own parser, a short list of
allowed nodes, never ``eval``.

Numbers, + - * / // % **, parentheses, a few functions of ``math`` and the
constants pi, e, tau. Powers and factorials are bounded so that "9**9**9" is an
error sentence, not a frozen app.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

__all__ = ["CalculatorError", "calculate"]

_MAX_EXPONENT = 10_000
_MAX_RESULT_DIGITS = 10_000
_MAX_LENGTH = 500


class CalculatorError(ValueError):
    """A sentence saying why the expression cannot be computed."""


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


def _factorial(n: float) -> int:
    if n != int(n) or n < 0 or n > 1000:
        raise CalculatorError("factorial takes a whole number from 0 to 1000")
    return math.factorial(int(n))


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "floor": math.floor,
    "ceil": math.ceil,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "radians": math.radians,
    "degrees": math.degrees,
    "factorial": _factorial,
    "min": min,
    "max": max,
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


def calculate(expression: str) -> int | float:
    """The value of ``expression``; ``CalculatorError`` with a sentence otherwise."""
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if not text:
        raise CalculatorError("The expression is empty.")
    if len(text) > _MAX_LENGTH:
        raise CalculatorError(f"The expression is longer than {_MAX_LENGTH} characters.")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise CalculatorError(f"'{expression}' is not an arithmetic expression.") from None
    try:
        value = _eval(tree.body)
    except ZeroDivisionError:
        raise CalculatorError("Division by zero.") from None
    except OverflowError:
        raise CalculatorError("The result is too large.") from None
    except (ValueError, TypeError) as exc:
        if isinstance(exc, CalculatorError):
            raise
        raise CalculatorError(f"Cannot compute this: {exc}.") from None
    if not isinstance(value, int | float):
        raise CalculatorError("The result is not a real number.")
    return value


def _check_size(op: ast.operator, left: Any, right: Any) -> None:
    """Refuse a power or product whose result would take long to compute."""
    both_int = isinstance(left, int) and isinstance(right, int)
    if isinstance(op, ast.Pow):
        digits = right * math.log10(abs(left)) if both_int and abs(left) > 1 else 0
        if abs(right) > _MAX_EXPONENT or digits > _MAX_RESULT_DIGITS:
            raise CalculatorError("The power is too large to compute.")
    elif isinstance(op, ast.Mult) and both_int and left and right:
        digits = math.log10(abs(left)) + math.log10(abs(right))
        if digits > _MAX_RESULT_DIGITS:
            raise CalculatorError("The result is too large.")


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        _check_size(node.op, left, right)
        return _BINARY[type(node.op)](left, right)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return _FUNCTIONS[node.func.id](*(_eval(a) for a in node.args))
    raise CalculatorError(
        "Only numbers, + - * / // % ** (or ^), parentheses and functions such as sqrt, "
        "log, sin and round can be used."
    )
