"""Command-line values converted without pydantic, so that a read command starts fast.

Typer (≥ 0.26) converts every option that is not a plain flag through a pydantic TypeAdapter:
the first one imports pydantic and building each costs milliseconds, together about as long
as `history` takes for everything else. `PlainCommand` converts the types our commands use
(text, whole and decimal numbers without bounds, paths, choices; optional or repeated) in plain
Python with Typer's own path and choice checks, and leaves any other type to Typer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from typer._click import Context
from typer._click.core import Parameter
from typer._click.exceptions import BadParameter
from typer._coercion import RuntimeParam, TypeDescriptor
from typer._param_types import choice_coercion_annotation, coerce_cli_choice, coerce_cli_path
from typer.core import TyperCommand, TyperGroup, _TyperParameter
from typer.models import ParameterInfo

_BOOLEANS = {
    **dict.fromkeys(("1", "true", "t", "yes", "y", "on"), True),
    **dict.fromkeys(("0", "false", "f", "no", "n", "off", ""), False),
}
_NUMBERS = {
    int: "Input should be a valid integer, unable to parse string as an integer",
    float: "Input should be a valid number, unable to parse string as a number",
}


class PlainCommand(TyperCommand):
    """A Typer command whose parameters of the common types skip pydantic."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        _convert_plainly(self.get_params(ctx))
        return super().parse_args(ctx, args)


class PlainGroup(TyperGroup):
    """The same for a group's own options (the app's --version)."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        _convert_plainly(self.get_params(ctx))
        return super().parse_args(ctx, args)


def _convert_plainly(params: list[Parameter]) -> None:
    for param in params:
        if isinstance(param, _TyperParameter) and param._runtime_param is None:
            param._runtime_param = plain_runtime_param(param.type_descriptor)


@dataclass(frozen=True)
class _PlainRuntimeParam(RuntimeParam):
    item: Any  # the type of one value (of a list's items, for a repeated option)

    def _coerce_value(self, value: Any, param: _TyperParameter, ctx: Context) -> Any:
        if isinstance(value, (list, tuple)):
            return [self._one(item, param, ctx) for item in value]
        return self._one(value, param, ctx)

    def _one(self, value: Any, param: _TyperParameter, ctx: Context) -> Any:
        info = self.parameter_info
        if self.item is str:
            return value.decode() if isinstance(value, bytes) else str(value)
        if self.item is bool:
            if isinstance(value, bool):
                return value
            if str(value).strip().lower() in _BOOLEANS:
                return _BOOLEANS[str(value).strip().lower()]
            raise BadParameter("Input should be a valid boolean", ctx=ctx, param=param)
        if self.item in _NUMBERS:
            try:
                return self.item(value)
            except (TypeError, ValueError):
                raise BadParameter(_NUMBERS[self.item], ctx=ctx, param=param) from None
        choices = choice_coercion_annotation(self.item, info)
        if choices is not None:
            try:
                return coerce_cli_choice(
                    value, choices=choices[0], case_sensitive=choices[1], ctx=ctx
                )
            except ValueError as exc:
                raise BadParameter(str(exc), ctx=ctx, param=param) from None
        path = value if isinstance(value, Path) else Path(value)
        return coerce_cli_path(path, info, path_type=Path, param=param, ctx=ctx)


def plain_runtime_param(descriptor: TypeDescriptor) -> RuntimeParam | None:
    """The plain conversion for this parameter, or None to leave it to Typer."""
    info = descriptor.parameter_info
    item = get_args(descriptor.annotation)[0] if descriptor.is_list else descriptor.annotation
    if info.parser is not None or descriptor.is_file or not _plain(item, info):
        return None
    return _PlainRuntimeParam(parameter_info=info, annotation=descriptor.annotation, item=item)


def _plain(item: Any, info: ParameterInfo) -> bool:
    if item in (str, bool):
        return True
    if item in _NUMBERS:
        return info.min is None and info.max is None and not info.clamp
    if item is Path:
        return info.path_type is None
    return choice_coercion_annotation(item, info) is not None
