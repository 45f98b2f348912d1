"""Loading a policy file: YAML → `Policy`, every problem reported at once.

Each problem reads `path.to.field: what is wrong (line N)`, the line taken from the
YAML node the path points at, so a user can fix a whole file in one go.
"""

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from vpo.errors import InvalidInputError, PathNotFoundError
from vpo.policy.schema import Policy, duplicate_phase


class PolicyError(InvalidInputError):
    """An invalid policy (exit 2); `problems` holds one line per problem."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"invalid policy {path}:\n{lines}")


def load_policy(path: str | Path) -> Policy:
    """Read and validate the policy at `path`."""
    policy_path = Path(path)
    if not policy_path.is_file():
        raise PathNotFoundError(f"Policy file not found: {policy_path}")
    try:
        text = policy_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"Cannot read the policy {policy_path}: {exc}.") from exc
    return parse_policy(text, policy_path)


def parse_policy(text: str, source: Path = Path("<policy>")) -> Policy:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(source, [_yaml_problem(exc)]) from exc
    if not isinstance(data, dict):
        raise PolicyError(
            source, ["the file must be a YAML mapping (schema_version, name, phases, …)"]
        )
    problems = []
    duplicate = _raw_duplicate(data)
    if duplicate is not None:
        position, sentence = duplicate
        problems.append(_located(("phases", position, "name"), sentence, node))
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            if "duplicate phase name" in error["msg"]:
                continue  # already reported above, at the duplicate's own line
            problems.append(_located(error["loc"], _message(error), node))
        raise PolicyError(source, problems) from exc
    if problems:
        raise PolicyError(source, problems)
    return policy


def _raw_duplicate(data: dict[str, Any]) -> tuple[int, str] | None:
    phases = data.get("phases")
    if not isinstance(phases, list):
        return None
    return duplicate_phase(p.get("name") if isinstance(p, dict) else None for p in phases)


def _message(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = error["loc"][-1]
        suggestion = _closest(key, error["loc"][:-1])
        return "unknown key" + (f" (did you mean {suggestion!r}?)" if suggestion else "")
    if kind == "missing":
        return "required"
    if kind == "literal_error":
        return f"must be one of {error['ctx']['expected']}, not {error['input']!r}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _closest(key: object, parent: tuple[Any, ...]) -> str | None:
    """The valid key nearest to a mistyped one, for "did you mean"."""
    model = _model_at(parent)
    if model is None:
        return None
    names = [f.alias or name for name, f in model.model_fields.items()]
    match = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
    return match[0] if match else None


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: Any = Policy
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return None
        model = _inner_model(field.annotation)
        if model is None:
            return None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    """The BaseModel inside `X | None` or `list[X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _located(loc: tuple[Any, ...], message: str, node: yaml.Node | None) -> str:
    path = _dotted(loc) or "(top level)"
    line = _line(node, loc)
    return f"{path}: {message}" + (f" (line {line})" if line else "")


def _dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def _line(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at `loc` (of its key for mapping entries)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return f"not valid YAML: {problem}{where}"
