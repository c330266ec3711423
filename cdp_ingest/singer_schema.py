"""Singer taps' JSON schemas, read as the platform's validators read schemas.

Taps write draft 4 (the Singer spec's), where `exclusiveMaximum: true` qualifies `maximum`; the
validators take a schema without `$schema` as draft 2020-12, where `exclusiveMaximum` is the bound
itself, so `pipelinewise-tap-postgres`'s numeric columns would make the schema invalid. And a
decimal `multipleOf` (0.01 for a `numeric(10,2)`) refuses most values once they are floats
(19.99 / 0.01 = 1998.9999999999998). `normalised` rewrites the bounds in today's form and drops
`multipleOf`, for the target's check of a tap's SCHEMA and for `cdp schemas import`.
"""

_DRAFT_4 = ("http://json-schema.org/draft-04/schema", "https://json-schema.org/draft-04/schema")


def normalised(schema: object) -> object:
    """`schema` with draft 4's boolean exclusive bounds as numbers and no `multipleOf`; a schema that
    names another draft in `$schema` keeps its bounds."""
    if isinstance(schema, dict) and not str(schema.get("$schema", _DRAFT_4[0])).rstrip("#").startswith(_DRAFT_4):
        return _without_multiple_of(schema)
    return _rewritten(schema)


def _rewritten(schema: object) -> object:
    if isinstance(schema, list):
        return [_rewritten(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: _rewritten(value) for key, value in schema.items() if key not in ("multipleOf", "$schema")}
    for exclusive, bound in (("exclusiveMaximum", "maximum"), ("exclusiveMinimum", "minimum")):
        flag = schema.get(exclusive)
        if isinstance(flag, bool):
            del result[exclusive]
            if flag and bound in schema:
                result[exclusive] = result.pop(bound)
    return result


def _without_multiple_of(schema: object) -> object:
    if isinstance(schema, dict):
        return {key: _without_multiple_of(value) for key, value in schema.items() if key != "multipleOf"}
    if isinstance(schema, list):
        return [_without_multiple_of(item) for item in schema]
    return schema
