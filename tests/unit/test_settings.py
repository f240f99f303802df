from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from core.errors import InvalidSetting
from core.settings import PROJECT_ROOT, SETTINGS_CLASSES, DatabaseSettings, QueueSettings, StorageSettings
from devstack.__main__ import EXAMPLE_PATH, settings_example
from triggers.localhost.settings_file import apply_local_settings


def test_example_file_is_generated_from_the_settings_classes() -> None:
    assert EXAMPLE_PATH.read_text() == settings_example(), "run: make settings-example"


def test_example_lists_every_setting_with_a_meaning() -> None:
    document = json.loads(EXAMPLE_PATH.read_text())
    fields = sum(len(cls.model_fields) for cls in SETTINGS_CLASSES)
    assert len(document["Values"]) == fields + 2  # + FUNCTIONS_WORKER_RUNTIME, AzureWebJobsStorage
    assert set(document["Values"]) == set(document["Descriptions"])
    assert all(document["Descriptions"].values())


def test_libpq_names_and_azure_setting_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHOST", "db.example")
    monkeypatch.setenv("PGPORT", "6432")
    monkeypatch.setenv("ServiceBusConnection__fullyQualifiedNamespace", "ns.servicebus.windows.net")
    assert DatabaseSettings().pghost == "db.example" and DatabaseSettings().pgport == 6432
    assert QueueSettings().servicebus_namespace == "ns.servicebus.windows.net"


def test_empty_values_mean_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPORT", "")
    monkeypatch.setenv("PGPASSWORD", "")
    settings = DatabaseSettings()
    assert settings.pgport == 54329 and settings.pgpassword is None


def test_relative_storage_root_is_relative_to_the_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_LOCAL_ROOT", "data/blobs")
    assert StorageSettings().storage_local_root == PROJECT_ROOT / "data" / "blobs"


def test_local_settings_values_apply_but_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOETL_TEST_A", "from-env")
    monkeypatch.delenv("GEOETL_TEST_B", raising=False)
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {"GEOETL_TEST_A": "file", "GEOETL_TEST_B": "file"}}))
    applied = apply_local_settings(path)
    assert applied == {"GEOETL_TEST_B": "file"}
    assert os.environ["GEOETL_TEST_A"] == "from-env" and os.environ["GEOETL_TEST_B"] == "file"
    monkeypatch.delenv("GEOETL_TEST_B")


def test_broken_local_settings_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text("{not json")
    with pytest.raises(InvalidSetting, match="is not valid JSON"):
        apply_local_settings(path)


def test_missing_local_settings_file_is_fine(tmp_path: Path) -> None:
    assert apply_local_settings(tmp_path / "absent.json") == {}


def test_pyproject_version_matches_the_app_version() -> None:
    import tomllib

    from core import __version__

    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == __version__


@pytest.mark.parametrize(
    ("given", "level"),
    [("info", "INFO"), ("Information", "INFO"), ("Trace", "DEBUG"), ("Warning", "WARNING"), ("Critical", "ERROR")],
)
def test_log_level_accepts_python_and_azure_names(monkeypatch: pytest.MonkeyPatch, given: str, level: str) -> None:
    from core.settings import AppSettings

    monkeypatch.setenv("LOG_LEVEL", given)
    assert AppSettings().log_level == level


def test_local_settings_file_can_be_switched_off_or_moved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"Values": {"GEOETL_TEST_C": "moved"}}))
    monkeypatch.delenv("GEOETL_TEST_C", raising=False)
    monkeypatch.setenv("LOCAL_SETTINGS_FILE", "none")
    assert apply_local_settings() == {}
    monkeypatch.setenv("LOCAL_SETTINGS_FILE", str(path))
    assert apply_local_settings() == {"GEOETL_TEST_C": "moved"}
    monkeypatch.delenv("GEOETL_TEST_C")


def test_raster_prices_are_per_gib_as_the_costs_compute_them() -> None:
    from core.settings import RasterSettings

    for name in ("raster_price_per_gb_hot", "raster_price_per_gb_cool", "raster_price_currency"):
        description = RasterSettings.model_fields[name].description or ""
        assert "GiB" in description and "GB " not in description and "GB-" not in description, name
