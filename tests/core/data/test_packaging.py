"""The built-in prompt sets ship in the wheel: they load after a normal (non-editable) install into a fresh venv."""

import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_builtin_prompt_sets_load_after_a_normal_install(tmp_path):
    src = tmp_path / "src"  # the package's own files as git sees them (no stale build/ folder to borrow from)
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "--", "pyproject.toml", "README.md",
                            "core", "dashboard"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split("\n")
    for name in filter(None, names):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes((ROOT / name).read_bytes())
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    target = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    # a normal install of this checkout (a wheel built and unpacked), by this environment's pip, into the fresh venv
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(src)], check=True, cwd=tmp_path)
    # its dependencies (torch, ...) from this environment; a plain path line, so the .pth files there (this
    # checkout's editable install) are not processed
    (target / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    code = ("import core, core.data.prompt_sets as p; print(core.__file__); "
            "print(len(p.load_prompt_set('truth')), len(p.load_prompt_set('sentiment')))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    where, counts = out.stdout.splitlines()
    assert where.startswith(str(target)), where  # the installed copy, not this checkout
    n_truth, n_sent = map(int, counts.split())
    assert n_truth >= 200 and n_sent >= 200
