"""A page's first paint reads the index only: the modules it needs do not import torch (importing it costs about a
second; it comes with the model, which loads in the background)."""

import subprocess
import sys

PAGE_MODULES = ["dashboard.app_pages.unit_body", "dashboard.cache.heads", "dashboard.cache.trajectories",
                "dashboard.cache.units", "dashboard.render.lens", "dashboard.render.heads", "dashboard.render.units",
                "dashboard.shell.frame", "dashboard.views.catalog", "dashboard.views.units",
                "dashboard.app_pages.circuit_parts", "dashboard.app_pages.circuit_checks", "dashboard.cache.circuits",
                "dashboard.render.circuits", "dashboard.views.circuits", "core.findings.circuits"]


def test_first_paint_modules_do_not_import_torch():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in PAGE_MODULES)
            + "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
