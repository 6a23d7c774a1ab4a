"""Settings from TOML files and plugin overrides, layered over the defaults.

From weakest to strongest: built-in defaults < the config file (`--config`, else `./ute.toml`)
< command-line options < the folder's `.ute.toml` < the file's own `<file>.ute.toml` < what pre
plugins write to UTE_OVERRIDES. The more specific a setting, the more it counts.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ute import names
from ute.defaults import DEFAULT_CONFIG_NAME
from ute.errors import SettingsError
from ute.settings import EncodeSettings

FOLDER_CONFIG_NAME = ".ute.toml"
SIDECAR_SUFFIX = ".ute.toml"
# The keys a layer may set, with the types TOML or JSON may give them.
KEY_TYPES: dict[str, tuple[type, ...]] = {
    "crf": (int, float),
    "preset": (str,),
    "x265_params": (str,),
    "chunk_frames": (int,),
    "crop": (str,),
}


@dataclass(frozen=True)
class Layer:
    origin: str  # where the values come from, for error messages
    values: Mapping[str, Any]


def read_toml(path: Path) -> Layer:
    try:
        with path.open("rb") as toml_file:
            values = tomllib.load(toml_file)
    except OSError as error:
        raise SettingsError(f"{path}: cannot read it ({error.strerror})") from error
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path}: not valid TOML ({error})") from error
    return Layer(str(path), values)


def config_layer(explicit: Path | None) -> list[Layer]:
    """The --config file (which must exist), else ./ute.toml if there is one."""
    if explicit is not None:
        return [read_toml(explicit)]
    default = Path(DEFAULT_CONFIG_NAME)
    return [read_toml(default)] if default.is_file() else []


def file_layers(source: Path) -> list[Layer]:
    """The folder's .ute.toml and the file's own sidecar, where they exist (a file whose name
    leaves no room for `.ute.toml` has no sidecar)."""
    candidates = [source.parent / FOLDER_CONFIG_NAME, source.with_name(source.name + SIDECAR_SUFFIX)]
    return [read_toml(path) for path in candidates if names.exists(path) and path.is_file()]


def apply(settings: EncodeSettings, layers: Iterable[Layer]) -> EncodeSettings:
    """Each layer in turn replaces the keys it sets; errors name the layer and the key."""
    for layer in layers:
        for key, value in layer.values.items():
            if key not in KEY_TYPES:
                known = ", ".join(KEY_TYPES)
                raise SettingsError(f"{layer.origin}: unknown setting {key!r} (known: {known})")
            if isinstance(value, bool) or not isinstance(value, KEY_TYPES[key]):
                raise SettingsError(f"{layer.origin}: {key} = {value!r} has the wrong type")
        try:
            settings = dataclasses.replace(settings, **layer.values)
        except SettingsError as error:
            raise SettingsError(f"{layer.origin}: {error}") from error
    return settings
