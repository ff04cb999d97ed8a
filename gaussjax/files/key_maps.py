"""The one check every key map makes: a weight file holds exactly the keys its map expects.

Used by the LPIPS weight reader (`files.lpips_weights`) and by every generator converter
(`converters.pytorch_keys`, `converters.rosinality`, `converters.tf_keys`), so a file with a key too
many or too few fails the same loud way everywhere: one line naming the keys.
"""

from collections.abc import Iterable


def short_list(keys, limit: int = 8) -> str:
    """'[a, b, ... (N in all)]' for error messages that name keys."""
    keys = list(keys)
    more = f", ... ({len(keys)} in all)" if len(keys) > limit else ""
    return "[" + ", ".join(keys[:limit]) + more + "]"


def check_keys(
    found: Iterable[str],
    expected: Iterable[str],
    ignored: Iterable[str] = (),
    *,
    what: str,
    error: type[ValueError],
) -> None:
    """Refuses `found` unless it holds every `expected` key and nothing else but `ignored` ones.

    Args:
      found: the keys of the file (or state dict) being read.
      expected: the keys the key map consumes.
      ignored: keys that may be present and are not consumed (checked elsewhere or unused).
      what: the start of the message, naming the file and what its keys should match.
      error: the exception class to raise.

    Raises:
      error: '<what>: unused [...], missing [...]', sorted, at most 8 keys each.
    """
    found, expected = set(found), set(expected)
    unused = sorted(found - expected - set(ignored))
    missing = sorted(expected - found)
    if unused or missing:
        raise error(f"{what}: unused {short_list(unused)}, missing {short_list(missing)}")
