"""The long-running processes keep their startup objects out of full garbage collections."""

import os
import subprocess
import sys


def test_the_served_app_freezes_its_startup_objects(tmp_path) -> None:
    code = (
        "import gc\n"
        "from offload.api.serve import app_from_env\n"
        "app_from_env()\n"
        "print(gc.get_freeze_count())\n"
    )
    env = {
        **os.environ,
        "OFFLOAD_APP": "offload.examples:app",
        "OFFLOAD_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 10_000  # modules, the app, its routes and models
