"""The definitions as `dagster dev` loads them: every asset (each spec of a multi-asset and every dbt
model included) says what it is, who owns it, which group it is in, and links to its code."""

from pathlib import Path

from dagster import AssetKey, CodeReferencesMetadataValue, LocalFileCodeReference

from cdp_assets.definitions import defs
from cdp_resources.settings import PROJECT_DIR


def _asset_specs():
    graph = defs.resolve_asset_graph()
    return [graph.get(key) for key in graph.get_all_asset_keys() if graph.get(key).is_materializable]


def _described(spec) -> bool:
    """A description of its own: dagster-dbt names a dbt model without one `dbt model <name>`."""
    text = (spec.description or "").strip()
    return bool(text) and not text.startswith(f"dbt model {spec.key.path[-1]}")


def test_every_asset_has_a_description_an_owner_and_a_group():
    specs = _asset_specs()
    assert len(specs) > 50  # raw, curated, identity, warehouse, every dbt model, activation
    missing = {
        spec.key.to_user_string(): [
            what
            for what, present in (
                ("description", _described(spec)),
                ("owner", bool(spec.owners)),
                ("group", bool(spec.group_name) and spec.group_name != "default"),
            )
            if not present
        ]
        for spec in specs
    }
    assert {key: gaps for key, gaps in missing.items() if gaps} == {}


def test_every_asset_links_to_its_code_in_the_project():
    unlinked, outside = [], []
    for spec in _asset_specs():
        references = spec.metadata.get("dagster/code_references")
        if not isinstance(references, CodeReferencesMetadataValue) or not references.code_references:
            unlinked.append(spec.key.to_user_string())
            continue
        for reference in references.code_references:
            assert isinstance(reference, LocalFileCodeReference), spec.key
            path = Path(reference.file_path)
            if not path.is_file() or PROJECT_DIR.resolve() not in path.resolve().parents:
                outside.append((spec.key.to_user_string(), reference.file_path))
    assert unlinked == [] and outside == []


def test_a_dbt_model_links_to_its_sql_file_and_the_python_that_runs_it():
    spec = defs.resolve_asset_graph().get(AssetKey(["marts", "customer_360"]))
    files = {Path(r.file_path).name for r in spec.metadata["dagster/code_references"].code_references}
    assert {"customer_360.sql", "dbt.py"} <= files


def test_marts_and_segments_carry_the_freshness_target_and_nothing_else_does():
    graph = defs.resolve_asset_graph()
    with_policy = {
        spec.key.to_user_string(): spec.freshness_policy for spec in _asset_specs() if spec.freshness_policy is not None
    }
    layers = {key.split("/")[0] for key in with_policy}
    assert layers == {"marts", "segments"} and "segments/segment_membership" in with_policy
    assert {(p.deadline_cron, p.lower_bound_delta.total_seconds(), p.timezone) for p in with_policy.values()} == {
        ("0 8 * * *", 8 * 3600, "UTC")
    }
    marts = [key for key in graph.get_all_asset_keys() if key.path[0] == "marts"]
    assert marts and all(key.to_user_string() in with_policy for key in marts)
