"""The repository tracks sources only: everything under data/ is generated and git-ignored (but its README)."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tracked_under(folder: str, root: Path = ROOT) -> list[str]:
    out = subprocess.run(["git", "ls-files", "--", folder], cwd=root, capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if line]


def test_nothing_generated_is_tracked_under_data():
    assert tracked_under("data") == ["data/README.md"]


def test_the_rule_fails_on_a_tracked_generated_file(tmp_path):
    """The check is not vacuous: a repository that tracks a file under data/ besides its README is caught."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "README.md").write_text("x")
    (tmp_path / "data" / "demo.duckdb").write_bytes(b"\0")
    subprocess.run(["git", "add", "-f", "data"], cwd=tmp_path, check=True)
    assert tracked_under("data", tmp_path) == ["data/README.md", "data/demo.duckdb"]


def test_gitignore_covers_generated_data():
    probe = ["data/demo.duckdb", "data/demo-sae/x/cfg.json", "data/demo-acts/a/cache.json", "data/findings.duckdb"]
    out = subprocess.run(["git", "check-ignore", "--no-index", *probe], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.split() == probe
    keep = subprocess.run(["git", "check-ignore", "--no-index", "data/README.md"], cwd=ROOT, capture_output=True)
    assert keep.returncode == 1  # the README is not ignored
