"""papermill support for torchbook notebooks.

papermill gives a translator the parameters' values and nothing else, so it cannot know that a
notebook declared `let epochs: usize = 5;`. The injected cell is therefore written as
`:param NAME = VALUE` lines, each VALUE in JSON (plus `NaN`, `Infinity`, `-Infinity`, as
Python's json module writes them), and torchbook's engine binds each one with the type the
notebook declared (kernel/src/engine/parameters.rs).

`inspect` reads the `parameters` cell for `papermill --help-notebook` and for papermill's
"Passed unknown parameter" warning.
"""

import json
import re

from papermill.engines import NBClientEngine
from papermill.models import Parameter
from papermill.translators import Translator, papermill_translators

__all__ = ["TorchbookTranslator", "TorchbookEngine"]

KERNEL_NAMES = ("torchbook", "torchbook-gpu")
LANGUAGE = "rust"


class TorchbookTranslator(Translator):
    """Writes papermill's parameters as torchbook `:param` lines."""

    @classmethod
    def translate(cls, val):
        return json.dumps(_plain(val), ensure_ascii=False, allow_nan=True)

    @classmethod
    def comment(cls, cmt_str):
        return f"// {cmt_str}".strip()

    @classmethod
    def assign(cls, name, str_val):
        return f":param {name} = {str_val}"

    @classmethod
    def codify(cls, parameters, comment="Parameters"):
        lines = [cls.comment(comment), cls.comment("(bound by torchbook with the types the parameters cell declares)")]
        lines += [cls.assign(name, cls.translate(value)) for name, value in parameters.items()]
        return "\n".join(lines) + "\n"

    @classmethod
    def inspect(cls, parameters_cell):
        return inspect_source(parameters_cell.source)


def _plain(val):
    """A JSON-friendly copy of `val`: tuples and sets become lists, other objects their text
    (a dict stays a dict, which the engine refuses with a clear error)."""
    if val is None or isinstance(val, (bool, int, float, str)):
        return val
    if isinstance(val, (list, tuple, set, frozenset)):
        return [_plain(v) for v in val]
    if isinstance(val, dict):
        return {str(k): _plain(v) for k, v in val.items()}
    return str(val)


# `let [mut] name[: Type] = value;` with an optional `// help` after it; the value may span lines.
_LET = re.compile(
    r"^[ \t]*let[ \t]+(?:mut[ \t]+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)[ \t]*"
    r"(?::[ \t]*(?P<type>[^=]+?))?[ \t]*=[ \t]*(?P<value>.+?);[ \t]*(?://[ \t]*(?P<help>[^\n]*))?$",
    re.MULTILINE | re.DOTALL,
)


def inspect_source(source):
    """The parameters a Rust `parameters` cell declares, as papermill's `Parameter`s."""
    source = source if isinstance(source, str) else "".join(source)
    parameters = []
    for match in _LET.finditer(source):
        value = " ".join(match.group("value").split())
        declared = match.group("type")
        inferred = " ".join(declared.split()) if declared else _literal_type(value)
        parameters.append(
            Parameter(
                name=match.group("name"),
                inferred_type_name=inferred,
                default=value,
                help=(match.group("help") or "").strip(),
            )
        )
    return parameters


def _literal_type(value):
    """Rust's type for an unannotated literal, or "None" (papermill's "unknown")."""
    if re.fullmatch(r"-?\d[\d_]*", value):
        return "i32"
    if re.fullmatch(r"-?\d[\d_]*\.\d*([eE][-+]?\d+)?|-?\d+[eE][-+]?\d+", value):
        return "f64"
    if value in ("true", "false"):
        return "bool"
    if value.startswith('"'):
        return "&str"
    return "None"


class TorchbookEngine(NBClientEngine):
    """papermill's nbclient engine under the name `torchbook`: papermill loads it (and so this
    module, which registers the translator) from the `papermill.engine` entry point."""


for _name in KERNEL_NAMES + (LANGUAGE,):
    papermill_translators.register(_name, TorchbookTranslator)
