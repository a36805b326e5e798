"""The book's scripts never destroy committed work: refused targets, failed runs and unclosed solution fences.

Every test works on tiny notebooks in a throwaway copy of the layout (``run_notebooks.NOTEBOOKS`` and
``make_student_notebooks.NOTEBOOKS`` point there), never on the real ``notebooks/``.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import make_student_notebooks as students
import nbformat
import pytest
import run_notebooks

STALE_INSTALL = "# an old install cell"
FRESH_INSTALL = "installed = True  # what refresh_install_cell writes in these tests"


def notebook(*cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=list(cells), metadata={"kernelspec": run_notebooks.KERNELSPEC})


def code(source: str, *tags: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)} if tags else {})


def markdown(source: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(source)


def chapter(body: str) -> nbformat.NotebookNode:
    """A chapter-shaped notebook: install cell, parameters cell, one cell of work."""
    return notebook(
        code(STALE_INSTALL, run_notebooks.INSTALL_TAG),
        code('device = "auto"\nn = 2', "parameters"),
        code(body),
    )


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A repository root with notebooks/ holding a good and a failing chapter; the scripts point at it."""
    root = tmp_path / "repo"
    notebooks = root / "notebooks"
    notebooks.mkdir(parents=True)
    (notebooks / "profiles.yml").write_text("ci: {}\nsmoke:\n  a_good: {n: 3}\nfull: {}\n")
    body = 'if device == "cuda":\n    raise RuntimeError("no CUDA here")\nprint(n * 21)'
    nbformat.write(chapter(body), notebooks / "a_good.ipynb")
    nbformat.write(chapter('raise RuntimeError("boom")'), notebooks / "b_bad.ipynb")
    for module in (run_notebooks, students):
        monkeypatch.setattr(module, "ROOT", root)
        monkeypatch.setattr(module, "NOTEBOOKS", notebooks)
    monkeypatch.setattr(run_notebooks, "install_cell_source", lambda: FRESH_INSTALL)
    monkeypatch.chdir(root)
    return root


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (names relative to it) with its bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def refused(main, argv: list[str], capsys) -> str:
    """Run a script's ``main``, expect argparse's clear refusal (exit 2, no traceback), return the message."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


# --- run_notebooks.py -------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", [["--device", "cpu"], ["--device", "cuda"], ["--profile", "smoke"]])
@pytest.mark.parametrize("spelling", ["notebooks", "absolute", "notebooks/../notebooks", "link"])
def test_in_place_run_with_other_settings_is_refused(repo, capsys, setting, spelling):
    if spelling == "link":
        (repo / "link").symlink_to(repo / "notebooks")
    output_dir = str(repo / "notebooks") if spelling == "absolute" else spelling
    before = snapshot(repo)
    message = refused(run_notebooks.main, ["a_good", *setting, "--output-dir", output_dir], capsys)
    assert "--output-dir" in message and "--profile ci --device auto" in message
    assert snapshot(repo) == before


def test_default_in_place_run_with_other_settings_is_refused(repo, capsys):
    before = snapshot(repo)
    assert "--output-dir" in refused(run_notebooks.main, ["a_good", "--device", "cpu"], capsys)
    assert snapshot(repo) == before


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--profile", "huge", "--output-dir", "out"], "--profile must be one of ['ci', 'full', 'smoke']"),
        (["no_such_chapter", "--output-dir", "out"], "unknown notebooks ['no_such_chapter']"),
        (["--device", "gpu", "--output-dir", "out"], "--device must be"),
        (["--output-dir", "notebooks/a_good.ipynb"], "is not a directory"),
    ],
)
def test_bad_arguments_give_a_clear_error_and_write_nothing(repo, capsys, argv, expected):
    before = snapshot(repo)
    message = refused(run_notebooks.main, argv, capsys)
    assert expected in message and "Traceback" not in message
    assert snapshot(repo) == before


def test_failed_in_place_run_leaves_the_notebook_byte_identical(repo, capsys):
    """b_bad fails: its file (stale install cell included) is untouched; a_good still runs and is replaced."""
    notebooks = repo / "notebooks"
    bad_before = (notebooks / "b_bad.ipynb").read_bytes()
    good_before = (notebooks / "a_good.ipynb").read_bytes()
    assert run_notebooks.main([]) == 1
    err = capsys.readouterr().err
    assert "b_bad: FAILED" in err and "boom" in err and "a_good:" in err
    assert (notebooks / "b_bad.ipynb").read_bytes() == bad_before
    assert sorted(p.name for p in notebooks.iterdir()) == ["a_good.ipynb", "b_bad.ipynb", "profiles.yml"]
    good = nbformat.read(notebooks / "a_good.ipynb", as_version=4)
    assert (notebooks / "a_good.ipynb").read_bytes() != good_before
    assert good.cells[0].source == FRESH_INSTALL  # refreshed in the executed copy only
    assert good.cells[2].outputs[0].text == "42\n"
    assert "papermill" not in good.metadata and not any("papermill" in c.metadata for c in good.cells)
    assert good.metadata.kernelspec == run_notebooks.KERNELSPEC


def test_failed_run_keeps_the_previous_output(repo, tmp_path, capsys):
    """A --device cuda run that fails (no CUDA) leaves the previous executed copy in --output-dir as it was."""
    out = tmp_path / "out"
    sources = snapshot(repo / "notebooks")
    assert run_notebooks.main(["a_good", "--profile", "smoke", "--output-dir", str(out)]) == 0
    executed = nbformat.read(out / "a_good.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "n = 3" in injected[0].source
    assert executed.cells[-1].outputs[0].text == "63\n"
    assert executed.metadata.papermill.input_path == str(repo / "notebooks" / "a_good.ipynb")
    before = snapshot(out)
    assert run_notebooks.main(["a_good", "--device", "cuda", "--output-dir", str(out)]) == 1
    assert "no CUDA here" in capsys.readouterr().err
    assert snapshot(out) == before
    assert snapshot(repo / "notebooks") == sources  # runs elsewhere never touch the sources


def test_interrupted_write_leaves_the_target_and_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "chapter.ipynb"
    target.write_text("committed")

    def half_write(nb, file):
        file.write('{"cells": [')
        raise OSError("disk full")

    monkeypatch.setattr(run_notebooks.nbformat, "write", half_write)
    with pytest.raises(OSError, match="disk full"):
        run_notebooks.write_atomically(notebook(), target)
    assert target.read_text() == "committed" and [p.name for p in tmp_path.iterdir()] == ["chapter.ipynb"]


def test_device_names_match_sharedlib(monkeypatch):
    """The script accepts exactly the device names that sharedlib.runtime.resolve_device turns into a device."""
    import torch

    from sharedlib.runtime import DEVICES, resolve_device

    # the names, not this machine's hardware: pretend CUDA (two devices) and MPS are there
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)

    for name in (*DEVICES, "cuda:1", "gpu", "cuda:x", "CPU", "cpu ", "cuda:"):
        try:
            resolve_device(name)
            accepted = True
        except (ValueError, RuntimeError):  # RuntimeError: torch.device rejects the string
            accepted = False
        assert bool(run_notebooks.DEVICE.fullmatch(name)) == accepted, name


# --- make_student_notebooks.py ----------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["notebooks", "absolute", "notebooks/../notebooks", "link", ".", "root-link"])
def test_student_script_refuses_the_notebooks_and_the_root(repo, capsys, spelling):
    (repo / "link").symlink_to(repo / "notebooks")
    (repo / "root-link").symlink_to(repo)
    output_dir = str(repo / "notebooks") if spelling == "absolute" else spelling
    before = snapshot(repo)
    message = refused(students.main, ["--output-dir", output_dir], capsys)
    assert "--output-dir" in message
    assert snapshot(repo) == before


def test_student_script_refuses_a_file_and_a_directory_that_aliases_a_source(repo, tmp_path, capsys):
    before = snapshot(repo)
    assert "not a directory" in refused(students.main, ["--output-dir", "notebooks/a_good.ipynb"], capsys)
    aliases = tmp_path / "aliases"
    aliases.mkdir()
    (aliases / "b_bad.ipynb").symlink_to(repo / "notebooks" / "b_bad.ipynb")
    os.link(repo / "notebooks" / "a_good.ipynb", aliases / "a_good.ipynb")
    message = refused(students.main, ["--output-dir", str(aliases)], capsys)
    assert "same file as" in message and "--output-dir" in message
    assert snapshot(repo) == before


def test_student_script_writes_into_a_fresh_directory(repo, tmp_path):
    out = tmp_path / "student"
    assert students.main(["--output-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_good.ipynb", "b_bad.ipynb"]


def stripped(*cells: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """(cell type, source) of the student version; stubs as ("stub", label)."""
    result = []
    for cell in students.student_version(notebook(*cells), "t.ipynb").cells:
        if "exercise" in cell.metadata.get("tags", []):
            result.append(("stub", cell.source.split(":")[0].removeprefix("# Exercise ")))
            assert cell.metadata["tags"] == ["exercise", "raises-exception"] and not cell.outputs
        else:
            result.append((cell.cell_type, cell.source))
    return result


def test_colon_fenced_gated_solution_spanning_cells():
    cells = stripped(
        markdown(
            ":::{exercise} Q\n:label: ex-c\nAsk.\n:::\n\n:::{solution-start} ex-c\n:class: dropdown\n:::\n\nSECRET 1"
        ),
        code("SECRET = 2", "solution"),
        code("SECRET = 3"),  # untagged, still inside the solution
        markdown("SECRET 4\n\n:::{solution-end}\n:::\n\nAfter."),
        code("kept = True"),
    )
    assert cells == [
        ("markdown", ":::{exercise} Q\n:label: ex-c\nAsk.\n:::\n"),
        ("stub", "ex-c"),
        ("markdown", "After.\n"),
        ("code", "kept = True"),
    ]


def test_plain_solution_blocks_with_nested_fences():
    backticks = "````{solution} ex-b\n:class: dropdown\n\nSECRET\n```python\nSECRET = 1\n```\n````"
    colons = ":::{solution} ex-d\n:class: dropdown\n```{code-cell}\nSECRET = 2\n```\n:::"
    cells = stripped(markdown(f"Before.\n\n{backticks}\n\nBetween.\n\n{colons}\n\nAfter."))
    assert cells == [
        ("markdown", "Before.\n"),
        ("stub", "ex-b"),
        ("markdown", "Between.\n"),
        ("stub", "ex-d"),
        ("markdown", "After.\n"),
    ]


def test_solution_inside_another_directive_is_removed_and_its_stub_follows_the_block():
    cells = stripped(markdown("::::{note}\nRead this.\n:::{solution} ex-n\nSECRET\n:::\n::::\n\nAfter."))
    assert cells == [("markdown", "::::{note}\nRead this.\n::::\n"), ("stub", "ex-n"), ("markdown", "After.\n")]


def test_code_blocks_that_show_the_syntax_are_kept():
    source = "`````md\n```{solution} ex-x\nshown, not a solution\n```\n`````"
    assert stripped(markdown(source)) == [("markdown", source)]


@pytest.mark.parametrize(
    ("cells", "label"),
    [
        ([markdown("```{solution-start} ex-open\n```\n\nAnswer."), code("x = 1"), markdown("More.")], "ex-open"),
        (
            [
                markdown(":::{solution-start} ex-first\n:::\nAnswer."),
                markdown("```{exercise} Next\n:label: ex-next\n```"),  # would vanish silently
                markdown("```{solution-start} ex-next\n```\n\n```{solution-end}\n```"),
            ],
            "ex-first",
        ),
        ([markdown("```{solution} ex-plain\nAnswer, and the fence never closes.")], "ex-plain"),
        ([markdown("```{solution-start} ex-fence\n:class: dropdown\n")], "ex-fence"),
    ],
)
def test_unclosed_solution_fence_raises_naming_the_notebook_and_label(cells, label):
    with pytest.raises(ValueError, match=rf"^t\.ipynb: .*{label}"):
        students.student_version(notebook(*cells), "t.ipynb")


def test_stray_solution_end_raises():
    with pytest.raises(ValueError, match="solution-end"):
        students.student_version(notebook(markdown("```{solution-end}\n```")), "t.ipynb")


def test_unclosed_fence_in_one_notebook_writes_nothing(repo, tmp_path):
    nbformat.write(notebook(markdown("```{solution-start} ex-open\n```")), repo / "notebooks" / "c_open.ipynb")
    out = tmp_path / "student"
    with pytest.raises(ValueError, match=r"c_open\.ipynb.*ex-open"):
        students.main(["--output-dir", str(out)])
    assert not out.exists()


def test_committed_figures_are_palette_pngs_that_look_the_same():
    import base64
    import io

    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
    for k in range(6):
        ax.plot(np.linspace(0, 1, 50), np.random.default_rng(k).random(50), label=f"seed {k}")
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    png = buffer.getvalue()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("plot()", outputs=[nbformat.v4.new_output(
        "display_data", data={"image/png": base64.b64encode(png).decode(), "text/plain": "<Figure>"})])])
    run_notebooks.compress_figures(nb)
    small = base64.b64decode(nb.cells[0].outputs[0]["data"]["image/png"])
    assert len(small) < len(png) / 2
    before, after = (np.asarray(Image.open(io.BytesIO(b)).convert("RGBA"), dtype=float) for b in (png, small))
    assert before.shape == after.shape and np.abs(before - after).mean() < 2.0  # of 255 per channel


def test_notebook_writes_wait_for_another_process_holding_the_lock(tmp_path):
    """While another process writes a notebook (holds its lock), a second run waits instead of interleaving."""
    target = tmp_path / "chapter.ipynb"
    target.write_text("committed")
    hold = ("import sys, time; from sharedlib.runtime import file_lock\n"
            "with file_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(1.5)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(target)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    started = time.perf_counter()
    run_notebooks.write_atomically(notebook(), target)
    waited = time.perf_counter() - started
    assert holder.wait(timeout=30) == 0 and waited > 0.5
    assert target.read_text().startswith("{") and sorted(p.name for p in tmp_path.iterdir()) == ["chapter.ipynb"]
