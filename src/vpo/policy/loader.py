"""Loading a policy file: YAML → `Policy`, every problem reported at once.

Each problem reads `path.to.field: what is wrong (line N)`, the line taken from the
YAML node the path points at, so a user can fix a whole file in one go.

A policy may come from anyone, so loading is bounded: the file's size, the number of
values its anchors and aliases expand to (a "billion laughs" file is a few lines that
expand to billions), the problems listed and every value quoted in them.
"""

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from vpo.errors import InvalidInputError, PathNotFoundError
from vpo.policy.schema import SHOWN_CHARS, Policy, duplicate_phase, shown

MAX_POLICY_BYTES = 1_000_000
# Values (scalars, lists, mappings) the document may hold once every alias is expanded;
# a real policy has a few hundred.
MAX_NODES = 10_000
MAX_DEPTH = 50  # levels of nesting; a real policy has six
MAX_PROBLEMS = 20


class _Refused(Exception):
    """The document is larger than any policy, so it is not composed any further."""


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, stopping at the MAX_NODES-th node or the MAX_DEPTH-th level it
    composes: pure-Python composing costs tens of microseconds a node, so a 1 MB list
    would otherwise take half a minute before its size could be refused."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._composed = 0
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        self._composed += 1
        if self._composed > MAX_NODES:
            raise _Refused(f"the YAML holds more than {MAX_NODES} values; a policy needs far fewer")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"the YAML is nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1


class PolicyError(InvalidInputError):
    """An invalid policy (exit 2); `problems` holds one line per problem."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"invalid policy {path}:\n{lines}")


def load_policy(path: str | Path) -> Policy:
    """Read and validate the policy at `path`."""
    policy_path = Path(path)
    if policy_path.is_dir():
        raise InvalidInputError(
            f"The policy {policy_path} is a folder; give the policy's YAML file."
        )
    if not policy_path.exists():
        raise PathNotFoundError(f"Policy file not found: {policy_path}")
    if not policy_path.is_file():
        raise InvalidInputError(f"The policy {policy_path} is not a regular file.")
    try:
        with policy_path.open("rb") as stream:
            data = stream.read(MAX_POLICY_BYTES + 1)  # never more, whatever stat said
        if len(data) > MAX_POLICY_BYTES:
            raise InvalidInputError(
                f"The policy {policy_path} is larger than {MAX_POLICY_BYTES // 1_000_000} MB "
                f"({policy_path.stat().st_size} bytes); a policy is a short YAML file."
            )
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"Cannot read the policy {policy_path}: {exc}.") from exc
    return parse_policy(text, policy_path)


def parse_policy(text: str, source: Path = Path("<policy>")) -> Policy:
    node, data = _load_yaml(text, source)
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
        for error in exc.errors(include_input=False, include_url=False):
            if "duplicate phase name" in error["msg"]:
                continue  # already reported above, at the duplicate's own line
            problems.append(_located(error["loc"], _message(error, data), node))
        raise PolicyError(source, _bounded(problems)) from exc
    if problems:
        raise PolicyError(source, problems)
    return policy


def _load_yaml(text: str, source: Path) -> tuple[yaml.Node | None, Any]:
    """The composed document (for line numbers) and the data built from it, refused
    before it is built when its aliases would expand it beyond MAX_NODES values."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        if _expanded_size(node) > MAX_NODES:
            raise PolicyError(
                source,
                [
                    f"the YAML expands to more than {MAX_NODES} values (anchors and aliases "
                    "are counted each time they are used); a policy needs far fewer"
                ],
            )
        try:
            return node, loader.construct_document(node)
        except (ValueError, OverflowError) as exc:  # e.g. a 5000-digit number, 2026-13-45
            raise PolicyError(source, [f"a value cannot be read: {_cut(str(exc), 80)}"]) from exc
    except _Refused as exc:
        raise PolicyError(source, [str(exc)]) from exc
    except yaml.YAMLError as exc:
        raise PolicyError(source, [_yaml_problem(exc)]) from exc
    except RecursionError as exc:  # a backstop: MAX_DEPTH stops far earlier
        raise PolicyError(source, ["the YAML is nested too deeply"]) from exc
    finally:
        loader.dispose()


def _expanded_size(root: yaml.Node) -> int:
    """How many nodes the document holds with every alias expanded, counted up to just
    past MAX_NODES (so a recursive alias or a billion laughs stops the count at once)."""
    count, stack = 0, [root]
    while stack and count <= MAX_NODES:
        node = stack.pop()
        count += 1
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
    return count


def _bounded(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    return [*problems[:MAX_PROBLEMS], f"… and {len(problems) - MAX_PROBLEMS} more problems"]


def _raw_duplicate(data: dict[str, Any]) -> tuple[int, str] | None:
    phases = data.get("phases")
    if not isinstance(phases, list):
        return None
    return duplicate_phase(p.get("name") if isinstance(p, dict) else None for p in phases)


def _message(error: Any, data: dict[str, Any]) -> str:
    """The problem in words; a value is quoted only through `shown` (the error's own
    input is left out: pydantic would repr all of it)."""
    kind = error["type"]
    if kind == "extra_forbidden":
        key = error["loc"][-1]
        suggestion = _closest(key, error["loc"][:-1])
        return "unknown key" + (f" (did you mean {suggestion!r}?)" if suggestion else "")
    if kind == "missing":
        return "required"
    if kind == "literal_error":
        given = shown(_value_at(data, error["loc"]))
        return f"must be one of {error['ctx']['expected']}, not {given}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _value_at(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return "?"
    return data


def _closest(key: object, parent: tuple[Any, ...]) -> str | None:
    """The valid key nearest to a mistyped one, for "did you mean"."""
    model = _model_at(parent)
    if model is None:
        return None
    names = [f.alias or name for name, f in model.model_fields.items()]
    match = difflib.get_close_matches(str(key)[:100], names, n=1, cutoff=0.6)
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
            text += ("." if text else "") + _cut(str(part))  # a key is the user's text
    return text


def _cut(text: str, limit: int = SHOWN_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
