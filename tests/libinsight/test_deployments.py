"""prefect.yaml's LibInsight deployments: one per dataset, each dataset its own table."""

from __future__ import annotations

from typing import Any

from deployments.project import deployments, load_project
from edulake.sources.libinsight.config import load_dataset_config

LIBINSIGHT = "flows/libinsight_dataset.py:libinsight_dataset"
ENTRIES = [d for d in deployments(load_project()) if d["entrypoint"] == LIBINSIGHT]


def scheduled() -> list[dict[str, Any]]:
    return [d for d in ENTRIES if d.get("schedules")]


def test_two_datasets_are_deployed_side_by_side():
    weekly = scheduled()
    assert len(weekly) >= 2
    pairs = [(d["parameters"]["dataset_id"], d["parameters"]["dataset_config"]) for d in weekly]
    # Each schedule names its own dataset (a distinct variable or id) and its config.
    assert len({p[0] for p in pairs}) == len(pairs), pairs
    assert len({p[1] for p in pairs}) == len(pairs), pairs


def test_every_deployed_config_loads_and_keeps_datasets_apart():
    for entry in ENTRIES:
        params = entry["parameters"]
        cfg = load_dataset_config(params.get("dataset_config", "reference_desk"))
        assert cfg.unknown_fields == "hold" and cfg.on_drift == "error", entry["name"]
        if cfg.dataset_id is None:  # shared config: the table carries the dataset id
            assert cfg.table_name(28364) != cfg.table_name(28365)
