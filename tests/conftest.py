"""Shared test setup: headless matplotlib, the repository's scripts importable, torch's thread count kept per test,
the built book."""

import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """A script's main() run in-process sets its own thread count (``--threads 2``); left behind, it makes every
    later test spin two threads on a core that `make test`'s other process is using (a 15x slower copy task)."""
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def html(tmp_path_factory):
    """The book built strictly (-W, nitpicky) from the committed notebooks, once per test session: the English
    edition in html/, the Chinese one in html/zh/."""
    out = tmp_path_factory.mktemp("book")
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run(
        [jupyter_book, "build", str(ROOT), "--path-output", str(out), "-W", "-n", "--keep-going"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    html = out / "_build" / "html"
    import translations  # scripts/: the Chinese edition, built as strictly into html/zh

    translations.build(html)
    return html
