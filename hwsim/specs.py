"""Hardware specs: frozen, validated dataclasses, and the preset registry.

Each target defines one spec class (``CPUSpec``, ``IMCSpec``, ``FPGASpec``) decorated with
:func:`spec_class`, which records its target name. Specs validate themselves in
``__post_init__`` with the helpers below, so an impossible value fails at construction with the
field's name and the allowed range.

Presets are YAML files shipped in ``hwsim/presets/<target>/<name>.yaml`` (comments in them cite
the source of each constant). YAML is only a serialization: the loader rejects unknown and
duplicate keys, and converts values to the field's declared type. A preset is loaded by name
(``"cpu/cortex-a72"``) or by path; a YAML file names its target with a ``target:`` key and may
start from another preset with ``base: <name>``. Variants are ``dataclasses.replace(spec, ...)``.
"""
from __future__ import annotations

import dataclasses
import enum
import math
import numbers
import os
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml

from hwsim.errors import PresetError, SpecError, UnknownNameError

__all__ = [
    "spec_class", "spec_target", "load_preset", "preset_names", "user_preset_dir", "read_yaml", "spec_from_dict",
    "spec_to_dict", "save_spec", "plain_value", "check_output_path",
    "check_positive", "check_range", "check_choice", "check_finite", "PRESET_DIR", "TARGET_NAMES",
]

PRESET_DIR = Path(__file__).parent / "presets"
_SPECS: dict[str, type] = {}
T = TypeVar("T")


# ----------------------------------------------------------------------------- validation helpers
def _nonfinite(v: Any) -> bool:
    return isinstance(v, (float, np.floating)) and not math.isfinite(float(v))


def check_finite(spec: Any) -> None:
    """Raise :class:`SpecError` naming the first field whose value is a NaN or infinite float (every spec class
    registered with :func:`spec_class` runs this before its own checks)."""
    for f in dataclasses.fields(spec):
        v = getattr(spec, f.name)
        if _nonfinite(v):
            raise SpecError(f"{type(spec).__name__}.{f.name} must be a finite number, got {float(v)!r}")


def check_positive(spec: Any, *names: str, allow_zero: bool = False) -> None:
    """Raise :class:`SpecError` unless every named field is a finite number > 0 (or >= 0 with ``allow_zero``)."""
    for n in names:
        v = getattr(spec, n)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or _nonfinite(v) or v < 0 \
                or (v == 0 and not allow_zero):
            rel = ">= 0" if allow_zero else "> 0"
            raise SpecError(f"{type(spec).__name__}.{n} must be {rel}, got {v!r}")


def check_range(spec: Any, name: str, lo: float, hi: float) -> None:
    v = getattr(spec, name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or _nonfinite(v) or not (lo <= v <= hi):
        raise SpecError(f"{type(spec).__name__}.{name} must be in [{lo}, {hi}], got {v!r}")


def check_choice(spec: Any, name: str, choices: Iterable[Any]) -> None:
    v = getattr(spec, name)
    choices = list(choices)
    if v not in choices:
        raise SpecError(f"{type(spec).__name__}.{name} must be one of {choices}, got {v!r}")


# ----------------------------------------------------------------------------- registry
def spec_class(target: str) -> Callable[[type[T]], type[T]]:
    """Class decorator registering a spec class for ``target`` ("cpu", "imc", "fpga")."""

    def deco(cls: type[T]) -> type[T]:
        cls.target = target  # type: ignore[attr-defined]
        own = getattr(cls, "__post_init__", None)

        def __post_init__(self) -> None:  # NaN/inf in any float field, named, before the class's own checks
            check_finite(self)
            if own is not None:
                own(self)

        cls.__post_init__ = __post_init__  # type: ignore[attr-defined]
        _SPECS[target] = cls
        return cls

    return deco


def spec_target(spec: Any) -> str:
    t = getattr(type(spec), "target", None)
    if t is None or not dataclasses.is_dataclass(spec):
        raise SpecError(f"{type(spec).__name__} is not a hwsim hardware spec")
    return t


def _ensure_targets() -> None:
    """Import the target packages so their spec classes register themselves."""
    import importlib

    for mod in ("hwsim.cpu.spec", "hwsim.imc.spec", "hwsim.fpga.spec"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name is None or not e.name.startswith("hwsim."):
                raise


def user_preset_dir() -> Path:
    """Where ``hwsim calibrate`` writes presets of the machine it runs on (read at call time):
    ``$XDG_CONFIG_HOME/hwsim/presets`` or ``~/.config/hwsim/presets``. A user preset of the same
    name overrides a shipped one."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "hwsim" / "presets"


def _preset_path(name: str) -> Path | None:
    for d in (user_preset_dir(), PRESET_DIR):
        p = d / f"{name}.yaml"
        if p.is_file():
            return p
    return None


# what ``preset_names(target)`` and ``hwsim presets TARGET`` take: the targets, each named as its preset folder
TARGET_NAMES = ("cpu", "fpga", "imc")
# names earlier versions used for a target (the FPGA target was "xnor" until its package was renamed):
# still accepted in spec data and preset filters, with a DeprecationWarning
OLD_TARGET_NAMES = {"xnor": "fpga"}


def current_target_name(name: Any) -> Any:
    """``name``, or the current name of a target an earlier version named differently (with a DeprecationWarning)."""
    if isinstance(name, str) and name in OLD_TARGET_NAMES:
        import warnings

        new = OLD_TARGET_NAMES[name]
        warnings.warn(f"target {name!r} is now named {new!r}", DeprecationWarning, stacklevel=3)
        return new
    return name


def preset_names(target: str | None = None) -> list[str]:
    """Names of the shipped (and user-calibrated) presets, e.g. ``["cpu/cortex-a53", ..., "imc/isaac"]``.

    ``target`` filters by folder, which is the presets' target ("cpu", "fpga", "imc"); any other target is an
    :class:`~hwsim.errors.UnknownNameError`."""
    names = sorted({f"{p.parent.name}/{p.stem}" for d in (PRESET_DIR, user_preset_dir()) for p in d.glob("*/*.yaml")})
    if target is None:
        return names
    target = current_target_name(target)
    folder = lambda n: n.split("/")[0]  # noqa: E731
    known = set(TARGET_NAMES) | {folder(n) for n in names}
    if target not in known:
        raise UnknownNameError("target", str(target), known)
    return [n for n in names if folder(n) == target]


# ----------------------------------------------------------------------------- YAML (de)serialization
class _UniqueKeyLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise PresetError(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: str | Path, what: str = "spec fields") -> dict:
    r"""Read a YAML mapping, rejecting duplicate keys; errors are one-line :class:`PresetError`\s."""
    path = Path(path)
    try:
        with open(path) as f:
            data = yaml.load(f, Loader=_UniqueKeyLoader)
    except PresetError as e:
        raise PresetError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)  # where the parser stopped: line and column, 1-based
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        what_ = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise PresetError(f"{path}: malformed YAML{at}: {what_}") from None
    except OSError as e:
        raise PresetError(f"cannot read {path}: {e.strerror}") from None
    if not isinstance(data, dict):
        raise PresetError(f"{path}: expected a mapping of {what}, got {type(data).__name__}")
    return data


def _convert(cls: type, name: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(cls, name, args[0], value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise SpecError(f"{cls.__name__}.{name} must be one of {[m.value for m in tp]}, got {value!r}") from None
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{cls.__name__}.{name} must be a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        return tuple(_convert(cls, name, item, v) for v in value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads "1e9" as a string
        except ValueError:
            pass
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise SpecError(f"{cls.__name__}.{name} must be {tp.__name__}, got {value!r}")
    if tp is int and isinstance(value, bool):
        raise SpecError(f"{cls.__name__}.{name} must be int, got {value!r}")
    return value


def spec_from_dict(data: dict, target: str | None = None, source: str = "<dict>",
                   default_name: str | None = None) -> Any:
    """Build a spec from plain data; ``target`` comes from the data's ``target`` key if not given.

    ``default_name``: the spec's ``name`` when the data has no ``name:`` key (a spec read from ``my_chip.yaml``
    is named ``my_chip``, not after its ``base:``); None keeps the base's name or the class default."""
    _ensure_targets()
    data = dict(data)
    tgt = current_target_name(data.pop("target", target))
    base = data.pop("base", None)
    if tgt is None and base is None:
        raise PresetError(f"{source}: missing 'target:' (one of {sorted(_SPECS)})")
    if base is not None:
        base_spec = load_preset(base)
        if tgt is not None and spec_target(base_spec) != tgt:
            raise PresetError(f"{source}: base {base!r} is not a {tgt} preset")
        _default_name(type(base_spec), data, default_name)
        return _replace_checked(base_spec, data, source)
    if tgt not in _SPECS:
        raise UnknownNameError("target", str(tgt), _SPECS)
    cls = _SPECS[tgt]
    _default_name(cls, data, default_name)
    return _build(cls, data, source)


def _default_name(cls: type, data: dict, name: str | None) -> None:
    if name and "name" not in data and any(f.name == "name" for f in dataclasses.fields(cls)):
        data["name"] = name


def _build(cls: type, data: dict, source: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise PresetError(f"{source}: unknown {cls.__name__} field(s) {unknown}; valid: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    try:
        kwargs = {k: _convert(cls, k, hints[k], v) for k, v in data.items()}
    except SpecError as e:
        raise SpecError(f"{source}: {e}") from None
    missing = [k for k, f in fields.items() if k not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise PresetError(f"{source}: missing {cls.__name__} field(s) {missing}")
    try:
        return cls(**kwargs)
    except SpecError as e:
        raise SpecError(f"{source}: {e}") from None


def _replace_checked(spec: Any, changes: dict, source: str) -> Any:
    cls = type(spec)
    base = spec_to_dict(spec)
    base.pop("target")
    base.update(changes)
    return _build(cls, base, source)


def spec_to_dict(spec: Any) -> dict:
    """Plain, YAML/JSON-ready data of a spec (enums as their values), with its ``target``."""
    out: dict[str, Any] = {"target": spec_target(spec)}
    for f in dataclasses.fields(spec):
        v = getattr(spec, f.name)
        out[f.name] = plain_value(v)
    return out


def plain_value(v: Any) -> Any:
    """A spec value as plain YAML/JSON data: enums as their values, tuples as lists, numpy scalars
    as Python numbers."""
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, tuple):
        return [plain_value(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def save_spec(spec: Any, path: str | Path, header: str = "") -> Path:
    path = Path(path)
    text = yaml.safe_dump(spec_to_dict(spec), sort_keys=False)
    path.write_text((header.rstrip() + "\n" if header else "") + text)
    return path


def load_preset(name_or_path: str | Path) -> Any:
    """Load a spec from a shipped preset name (``"imc/isaac"``) or a YAML file path.

    A spec read from a file is named by the file's ``name:`` key, else after the file (``my_chip.yaml`` with
    ``base: imc/isaac`` is ``my_chip``, so its reports do not pass it off as ``imc/isaac``)."""
    p = Path(name_or_path)
    if isinstance(name_or_path, Path) or str(name_or_path).endswith((".yaml", ".yml")) or p.is_file():
        if not p.is_file():
            raise PresetError(f"no such preset file: {p}")
        return spec_from_dict(read_yaml(p), source=str(p), default_name=p.stem)
    name = str(name_or_path)
    path = _preset_path(name) if "/" in name else None
    if path is None:
        raise UnknownNameError("preset", name, preset_names())
    return spec_from_dict(read_yaml(path), target=name.split("/")[0], source=str(path))


# ----------------------------------------------------------------------------- output paths
def is_integer(v: Any) -> bool:
    """A Python or numpy integer, not a bool (``True`` for 1 is a mistake, not a count)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_real(v: Any) -> bool:
    """A Python or numpy int or float, not a bool."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def check_output_path(path: str | os.PathLike, what: str, suffixes: Iterable[str] | None = None, *,
                      folder: bool = False) -> Path:
    """Check a path hwsim will write to, *before* any work, and return it (relative to the current directory).

    ``what`` names it in messages ("plot", "results file", "demo folder"); ``suffixes`` are the file name
    endings allowed (case-insensitive); ``folder``: the path is a folder to write files into. Missing parent
    folders (or the folder itself) are created; a path that cannot be written — under a file, a folder where a
    file is wanted, a wrong suffix, no write permission — is a one-line :class:`~hwsim.errors.HwsimError`.
    """
    from hwsim.errors import HwsimError

    try:
        p = Path(os.fspath(path)).expanduser()
    except TypeError:
        raise HwsimError(f"{what}: expected a file path, got {type(path).__name__} {path!r}") from None
    if not str(p) or str(p) == ".":
        raise HwsimError(f"{what}: empty path")
    if folder:
        if p.exists() and not p.is_dir():
            raise HwsimError(f"{what} {p} is a file, not a folder")
        d = p
    else:
        if p.is_dir():
            raise HwsimError(f"{what} {p} is a folder; give a file name")
        if suffixes is not None:
            allowed = [s.lower() for s in suffixes]
            if p.suffix.lower() not in allowed:
                raise HwsimError(f"{what} {p}: unsupported file type {p.suffix or '(none)'!r}; "
                                 f"use a name ending in {', '.join(allowed)}")
        d = p.parent
    anc = d
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if anc.exists() and not anc.is_dir():
        raise HwsimError(f"{what} {p}: {anc} is a file, not a folder")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HwsimError(f"{what} {p}: cannot create folder {d}: {e.strerror or e}") from None
    _probe_write(p, d, folder, what)
    return p


def _probe_write(p: Path, d: Path, folder: bool, what: str) -> None:
    """Open the file (or a scratch file in the folder) for writing once, leaving nothing behind: the one test that
    answers for every case (permission bits do not: root passes ``os.access`` on read-only file systems and
    pseudo-files such as ``/proc``)."""
    import tempfile

    from hwsim.errors import HwsimError

    try:
        if folder:
            with tempfile.TemporaryFile(dir=d):
                pass
        elif p.exists():
            with open(p, "ab"):
                pass
        else:
            with open(p, "xb"):
                pass
            p.unlink()
    except OSError as e:
        raise HwsimError(f"{what} {p}: cannot write there: {e.strerror or e}") from None
