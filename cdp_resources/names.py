"""The one rule for tenant, provider and stream names, checked wherever a name enters.

A name becomes a lake path segment (`raw/{tenant}/{provider}/{stream}/…`), a PostgreSQL value and
a metric label, so it must be safe in all three: a lower-case letter, then lower-case letters,
digits or underscores, at most 63 characters in all (PostgreSQL's identifier length). `acme_corp`,
`shopify`, `orders` pass; `../x`, `a/b`, an empty name, `Acme` or `x'; drop table t` do not.
"""

import re

NAME_RULE = "a lower-case letter, then lower-case letters, digits or _ (at most 63 characters)"
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,62}")


class InvalidName(ValueError):
    """A name that breaks the rule; the message says which kind, shows the name and gives the rule."""

    def __init__(self, kind: str, name: object):
        if isinstance(name, str):
            shown = repr(name[:80])
        else:
            shown = "(missing)" if name is None else f"of type {type(name).__name__}"
        super().__init__(f"{kind} name {shown} is not allowed: use {NAME_RULE}")
        self.kind = kind


def is_valid_name(name: object) -> bool:
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


def checked_name(kind: str, name: object) -> str:
    """`name` when it follows the rule; raises `InvalidName` naming `kind` (tenant, provider, stream) otherwise."""
    if not is_valid_name(name):
        raise InvalidName(kind, name)
    return name
