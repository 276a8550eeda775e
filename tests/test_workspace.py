"""Workspace resolution: explicit option, then nnU-Net's variables, then the user data folder."""

from pathlib import Path

from nnsam_engine.workspace import Workspace, activated, worker_environment

VARIABLES = {"nnUNet_raw": "/env/raw", "nnUNet_preprocessed": "/env/pre", "nnUNet_results": "/env/res"}


def test_workspace_root_wins_over_environment(tmp_path):
    workspace = Workspace.resolve(tmp_path, environ=VARIABLES)
    assert workspace.raw == tmp_path / "nnUNet_raw"
    assert workspace.preprocessed == tmp_path / "nnUNet_preprocessed"
    assert workspace.results == tmp_path / "nnUNet_results"
    assert set(workspace.sources.values()) == {"--workspace"}


def test_explicit_folder_wins_over_root(tmp_path):
    workspace = Workspace.resolve(tmp_path, results=tmp_path / "elsewhere", environ=VARIABLES)
    assert workspace.results == tmp_path / "elsewhere"
    assert workspace.sources["nnUNet_results"] == "option"
    assert workspace.raw == tmp_path / "nnUNet_raw"


def test_environment_used_without_options():
    workspace = Workspace.resolve(environ=VARIABLES)
    assert workspace.raw == Path("/env/raw")
    assert workspace.sources["nnUNet_preprocessed"] == "$nnUNet_preprocessed"


def test_default_under_user_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    workspace = Workspace.resolve(environ={})
    assert workspace.raw == tmp_path / "nnsam" / "nnUNet_raw"
    assert workspace.sources["nnUNet_raw"] == "default"


def test_environment_read_at_resolve_time(monkeypatch, tmp_path):
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "later"))
    assert Workspace.resolve().raw == tmp_path / "later"


def test_activated_sets_and_restores_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("nnUNet_raw", "/before")
    monkeypatch.delenv("nnUNet_results", raising=False)
    workspace = Workspace.resolve(tmp_path)
    import os

    with activated(workspace):
        assert os.environ["nnUNet_raw"] == str(tmp_path / "nnUNet_raw")
        assert os.environ["nnUNet_results"] == str(tmp_path / "nnUNet_results")
    assert os.environ["nnUNet_raw"] == "/before"
    assert "nnUNet_results" not in os.environ


def test_worker_counts_follow_cpu_count(monkeypatch):
    monkeypatch.delenv("nnUNet_def_n_proc", raising=False)
    monkeypatch.delenv("nnUNet_n_proc_DA", raising=False)
    assert worker_environment(2) == {"nnUNet_def_n_proc": "2", "nnUNet_n_proc_DA": "2"}
    assert worker_environment(64) == {"nnUNet_def_n_proc": "8", "nnUNet_n_proc_DA": "12"}


def test_worker_counts_keep_user_values(monkeypatch):
    monkeypatch.setenv("nnUNet_n_proc_DA", "5")
    assert worker_environment(2)["nnUNet_n_proc_DA"] == "5"
