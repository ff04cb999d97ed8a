"""Configs documented once: a field's help text (and flag name, choices) lives on the field, and a
launcher's absl flags are generated from the config (the flax-examples idiom, with dataclasses).

    @dataclasses.dataclass(frozen=True)
    class OptimConfig:
        num_steps: int = setting(1000, "Optimisation steps per image.", flag="steps")

    holders = define_flags(InversionConfig)   # one flag per leaf field, default None (unset)
    overrides = given_flags(holders)          # {field name: value} of the flags on the command line
"""

import dataclasses
import types
import typing

from absl import flags

# The flags `define_flags` defines belong to the launcher that calls it (its --helpshort, docs/cli.md).
flags.disclaim_key_flags()


def setting(default, help: str, *, flag: str | None = None, choices=None):
    """A dataclass field with its help text; `flag` renames its command-line flag, `choices`
    makes it an enum flag."""
    return dataclasses.field(
        default=default, metadata={"help": help, "flag": flag, "choices": choices}
    )


def leaf_fields(cls) -> dict[str, dataclasses.Field]:
    """Field name -> field over `cls` and its nested dataclass fields (groups), flattened.

    Leaf names are unique across groups (asserted), so one flat name addresses one setting."""
    leaves = {}
    for f in dataclasses.fields(cls):
        inner = leaf_fields(f.type) if dataclasses.is_dataclass(f.type) else {f.name: f}
        clash = leaves.keys() & inner.keys()
        assert not clash, f"{cls.__name__}: setting names used twice: {sorted(clash)}"
        leaves.update(inner)
    return leaves


def _scalar_type(annotation) -> type:
    """int | None -> int; plain types pass through."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return inner
    return annotation


_DEFINERS = {
    bool: flags.DEFINE_bool,
    int: flags.DEFINE_integer,
    float: flags.DEFINE_float,
    str: flags.DEFINE_string,
}


def define_flags(cls, flag_values=flags.FLAGS) -> dict[str, flags.FlagHolder]:
    """Defines one absl flag (default None: "not given") per leaf setting of `cls` that has help
    text; returns {field name: holder}. The help names the
    config's default (a space brings its own: InversionConfig.for_space)."""
    holders = {}
    for name, f in leaf_fields(cls).items():
        if "help" not in f.metadata:
            continue
        flag_name, choices, help = (
            f.metadata["flag"] or name,
            f.metadata["choices"],
            f.metadata["help"],
        )
        if f.default is not None:
            help = f"{help} Default {f.default!r} (unless the space brings its own)."
        if choices is not None:
            holders[name] = flags.DEFINE_enum(
                flag_name, None, list(choices), help, flag_values=flag_values
            )
        else:
            define = _DEFINERS[_scalar_type(f.type)]
            holders[name] = define(flag_name, None, help, flag_values=flag_values)
    return holders


def given_flags(holders: dict[str, flags.FlagHolder]) -> dict[str, object]:
    """{field name: value} of the flags given on the command line (the rest keep defaults)."""
    return {name: holder.value for name, holder in holders.items() if holder.present}
