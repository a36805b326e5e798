"""The locked toolchain and the ways to run the book: requirements.lock, Binder, launch URLs, oldest versions.

Offline: nothing here reaches a registry. Each check is a function that returns what is wrong, and each test
also feeds it a wrong input and sees it complain.
"""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
BINDER = ROOT / "binder"


# ---------------------------------------------------------------------------------------------- parsing helpers


def requirement_lines(text: str) -> list[str]:
    """The requirement lines of a pip requirements file: comments, blanks and options (-c, --index-url) dropped."""
    lines = (line.split(" #", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith(("#", "-"))]


def pins(text: str) -> dict[str, str]:
    """{canonical name: version} of the ``name==version`` lines of a requirements file."""
    found = {}
    for line in requirement_lines(text):
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"not an exact pin: {line!r}"
        found[canonicalize_name(requirement.name)] = spec.version
    return found


def lock_entries(text: str) -> dict[str, dict]:
    """{canonical name: {"version", "hashes", "via"}} of a pip-compile lock (pins with ``--hash`` and ``# via``)."""
    entries: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            name, version = line.rstrip(" \\").split("==")
            current = entries[canonicalize_name(name)] = {"version": version, "hashes": [], "via": []}
        elif current is not None and line.strip().startswith("--hash="):
            current["hashes"].append(line.strip().rstrip(" \\").removeprefix("--hash="))
        elif current is not None and line.strip().startswith("#"):
            current["via"].append(line.strip().lstrip("#").strip().removeprefix("via").strip())
    return entries


def direct(entry: dict) -> bool:
    """Whether pip-compile recorded the package as asked for by requirements.txt itself."""
    return "-r requirements.txt" in entry["via"]


# ---------------------------------------------------------------------------------------------- the checks


def lock_problems(requirements_txt: str, lock_text: str) -> list[str]:
    """What is wrong with the lock against requirements.txt: a pin missing, of another version, or left over."""
    asked = [Requirement(line) for line in requirement_lines(requirements_txt)]
    wanted = {canonicalize_name(requirement.name): requirement for requirement in asked}
    entries = lock_entries(lock_text)
    problems = []
    for name, requirement in wanted.items():
        if name not in entries:
            problems.append(f"{name}: in requirements.txt, not in the lock (run make lock)")
        elif Version(entries[name]["version"]) not in SpecifierSet(str(requirement.specifier)):
            locked = entries[name]["version"]
            problems.append(f"{name}: requirements.txt asks {requirement.specifier}, the lock has {locked}")
        elif not direct(entries[name]):
            problems.append(f"{name}: the lock does not record it as a direct requirement (run make lock)")
    for name, entry in entries.items():
        if direct(entry) and name not in wanted:
            problems.append(f"{name}: the lock still has it from requirements.txt, which no longer asks for it")
        if not entry["hashes"]:
            problems.append(f"{name}: no hash in the lock")
    if "torch" in entries and not entries["torch"]["version"].endswith("+cpu"):
        problems.append(f"torch {entries['torch']['version']} is not PyTorch's CPU build")
    return problems


def binder_problems(binder_text: str, lock_text: str) -> list[str]:
    """What is wrong with binder/requirements.txt: a pin that differs from the lock, no -c to the lock, no CPU index."""
    locked = {name: entry["version"] for name, entry in lock_entries(lock_text).items()}
    problems = [
        f"{name}=={version}: the lock has {locked.get(name, 'nothing')}"
        for name, version in pins(binder_text).items()
        if locked.get(name) != version
    ]
    options = [line.split(" #", 1)[0].split() for line in binder_text.splitlines() if line.startswith("-")]
    if ["-c", "../requirements.lock"] not in options:
        problems.append("no `-c ../requirements.lock`: the packages the notebooks pull in would float")
    if ["--extra-index-url", "https://download.pytorch.org/whl/cpu"] not in options:
        problems.append("no PyTorch CPU index: torch would be PyPI's CUDA build")
    return problems


def launch_urls(config: dict, notebook: str) -> dict[str, str]:
    """The Binder and Colab launch URLs of a notebook page, built as sphinx-book-theme builds them (launch.py)."""
    repository, buttons = config["repository"], config["launch_buttons"]
    org, _, repo = urlsplit(repository["url"]).path.strip("/").partition("/")
    branch = repository.get("branch", "main")
    book = repository.get("path_to_book", "").strip("/")
    path = f"{book}/{notebook}" if book else notebook
    interface = {"classic": "tree", "jupyterlab": "lab/tree"}[buttons.get("notebook_interface", "classic")]
    return {
        "binder": f"{buttons['binderhub_url'].strip('/')}/v2/gh/{org}/{repo}/{branch}?urlpath={interface}/{path}",
        "colab": f"{buttons['colab_url'].strip('/')}/github/{org}/{repo}/blob/{branch}/{path}",
    }


def url_problems(urls: dict[str, str], config: dict, notebook: str) -> list[str]:
    """What is malformed in the launch URLs: scheme, host, repository, branch, or a notebook not in the checkout."""
    org_repo = urlsplit(config["repository"]["url"]).path.strip("/")
    branch = config["repository"].get("branch", "main")
    problems = []
    for name, url in urls.items():
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.netloc or re.search(r"\s", url) or "//" in parts.path:
            problems.append(f"{name}: not a well-formed https URL: {url}")
    binder, colab = urlsplit(urls["binder"]), urlsplit(urls["colab"])
    if binder.path != f"/v2/gh/{org_repo}/{branch}":
        problems.append(f"binder: path {binder.path!r} is not /v2/gh/{org_repo}/{branch}")
    urlpath = parse_qs(binder.query).get("urlpath", [""])[0]
    if not re.fullmatch(r"(lab/)?tree/.+\.ipynb", urlpath) or not (ROOT / urlpath.split("tree/", 1)[1]).is_file():
        problems.append(f"binder: urlpath {urlpath!r} does not open a notebook of this repository")
    if colab.netloc != "colab.research.google.com" or colab.path != f"/github/{org_repo}/blob/{branch}/{notebook}":
        problems.append(f"colab: {urls['colab']} does not open {notebook} on {branch}")
    if not (ROOT / notebook).is_file():
        problems.append(f"{notebook} is not in the checkout")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", org_repo):
        problems.append(f"repository url {config['repository']['url']!r} is not https://github.com/ORG/REPO")
    return problems


def make_dry_run(target: str, makefile: Path = ROOT / "Makefile") -> str:
    """The commands ``make TARGET`` would run, printed and not run (every target taken as out of date)."""
    result = subprocess.run(
        ["make", "--dry-run", "--always-make", "-f", str(makefile), target],
        cwd=makefile.parent, capture_output=True, text=True, env={**os.environ, "PYTHON": "python3"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def install_problems(commands: str) -> list[str]:
    """What is wrong with the install commands: not from the lock with hashes, or sharedlib's deps not left alone."""
    problems = []
    if not re.search(r"pip install .*--require-hashes -r requirements\.lock", commands):
        problems.append("the environment is not installed from requirements.lock with hashes")
    if re.search(r"-r requirements\.txt", commands):
        problems.append("requirements.txt is installed directly: it floats beneath its direct pins")
    if not re.search(r"pip install .*--no-deps -e \.", commands):
        problems.append("sharedlib is not installed with --no-deps -e .")
    return problems


def oldest_problems(pyproject_text: str, constraints_text: str) -> list[str]:
    """What is wrong with constraints/oldest.txt: a dependency of pyproject.toml not pinned at its lower bound."""
    bounds = {}
    for line in tomllib.loads(pyproject_text)["project"]["dependencies"]:
        requirement = Requirement(line)
        lower = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        bounds[canonicalize_name(requirement.name)] = lower[0] if lower else None
    pinned = pins(constraints_text)
    problems = [f"{name}: pyproject.toml has no lower bound" for name, bound in bounds.items() if bound is None]
    problems += [
        f"{name}: lower bound {bound}, constraints/oldest.txt pins {pinned.get(name, 'nothing')}"
        for name, bound in bounds.items()
        if bound is not None and (name not in pinned or Version(pinned[name]) != Version(bound))
    ]
    problems += [f"{name}: pinned, but not a dependency of sharedlib" for name in pinned.keys() - bounds.keys()]
    return problems


def foreign_imports(path: Path, allowed: set[str], seen: set[Path] | None = None) -> set[str]:
    """Modules ``path`` imports (nested imports and local helper modules included) that are not in ``allowed``."""
    seen = seen if seen is not None else set()
    seen.add(path)
    local = {p.stem: p for folder in ("tests", "scripts", "book/_ext") for p in (ROOT / folder).glob("*.py")}
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    foreign = set()
    for name in names - allowed:
        if name in local and local[name] not in seen:
            foreign |= foreign_imports(local[name], allowed, seen)
        elif name not in local:
            foreign.add(name)
    return foreign


def oldest_allowed() -> set[str]:
    """What the oldest-versions venv has: the standard library, sharedlib and its dependencies, pytest, hypothesis."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return set(sys.stdlib_module_names) | {"sharedlib", "pytest", "hypothesis"} | {
        Requirement(line).name for line in dependencies
    }


# ---------------------------------------------------------------------------------------------- the lock


def test_the_lock_pins_every_direct_requirement_at_its_version_with_hashes():
    requirements_txt = (ROOT / "requirements.txt").read_text()
    assert lock_problems(requirements_txt, LOCK.read_text()) == []
    entries = lock_entries(LOCK.read_text())
    assert len(entries) > 2 * len(requirement_lines(requirements_txt)), "the lock must hold the transitive packages too"
    assert {"sphinx", "docutils", "myst-parser", "sphinx-book-theme"} <= entries.keys()  # the floating stack beneath


def test_the_lock_check_catches_a_stale_or_wrong_lock():
    requirements_txt, lock_text = (ROOT / "requirements.txt").read_text(), LOCK.read_text()
    bumped = re.sub(r"^numpy==\S+", "numpy==0.0.1", requirements_txt, flags=re.M)  # requirements.txt moved on
    assert any(p.startswith("numpy:") for p in lock_problems(bumped, lock_text))
    added = requirements_txt + "\nrequests==2.0.0\n"
    assert any(p.startswith("requests:") for p in lock_problems(added, lock_text))
    removed = "\n".join(line for line in requirements_txt.splitlines() if not line.startswith("tqdm=="))
    assert any(p.startswith("tqdm:") for p in lock_problems(removed, lock_text))
    cuda = re.sub(r"^torch==\S+", "torch==2.13.0", lock_text, flags=re.M)
    assert any("CPU build" in p for p in lock_problems(requirements_txt, cuda))
    unhashed = re.sub(r"^(tqdm==\S+) \\\n(\s+--hash=\S+( \\)?\n)+", r"\1\n", lock_text, flags=re.M)
    assert "tqdm: no hash in the lock" in lock_problems(requirements_txt, unhashed)


def test_make_book_and_make_test_install_from_the_lock(tmp_path):
    for target in ("book", "test"):
        assert install_problems(make_dry_run(target)) == [], target
    lock = make_dry_run("lock")
    assert re.search(r"pip-compile .*--generate-hashes", lock.replace("\\\n", " "))
    assert "--output-file requirements.lock requirements.txt" in lock
    floating = (ROOT / "Makefile").read_text().replace("--require-hashes -r $(LOCK)", "-r requirements.txt")
    (tmp_path / "Makefile").write_text(floating)
    for name in ("requirements.lock", "requirements.txt", "pyproject.toml"):
        (tmp_path / name).touch()
    assert len(install_problems(make_dry_run("install", tmp_path / "Makefile"))) == 2


# ---------------------------------------------------------------------------------------------- Binder and launch URLs


def test_binder_installs_the_locked_versions_and_cpu_torch():
    assert binder_problems((BINDER / "requirements.txt").read_text(), LOCK.read_text()) == []
    assert {"torch", "numpy", "matplotlib", "transformers"} <= pins((BINDER / "requirements.txt").read_text()).keys()
    post_build = BINDER / "postBuild"
    assert os.access(post_build, os.X_OK) and "pip install --no-deps -e ." in post_build.read_text()
    python = (BINDER / "runtime.txt").read_text().strip()
    assert python == "python-3.11" and "with Python 3.11" in LOCK.read_text()  # the lock's torch is a cp311 wheel


def test_the_binder_check_catches_a_drifted_pin():
    binder, lock = (BINDER / "requirements.txt").read_text(), LOCK.read_text()
    assert any(p.startswith("numpy==") for p in binder_problems(binder.replace("numpy==", "numpy==1"), lock))
    assert any("-c ../requirements.lock" in p for p in binder_problems(binder.replace("-c ../", "# "), lock))
    assert any("CPU index" in p for p in binder_problems(binder.replace("--extra-index-url", "#"), lock))


def test_launch_urls_are_well_formed_for_every_notebook():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        notebook = path.relative_to(ROOT).as_posix()
        assert url_problems(launch_urls(config, notebook), config, notebook) == [], notebook
    urls = launch_urls(config, "notebooks/04_counting_parameters.ipynb")
    assert urls["binder"] == (
        "https://mybinder.org/v2/gh/sharing-layers/sharing-layers/main?urlpath=tree/notebooks/04_counting_parameters.ipynb"
    )


def test_the_url_check_catches_a_malformed_launch_url():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    notebook = "notebooks/04_counting_parameters.ipynb"
    missing = "notebooks/99_missing.ipynb"
    assert url_problems(launch_urls(config, missing), config, missing)
    no_repo = {**config, "repository": {**config["repository"], "url": "https://github.com/sharing-layers"}}
    assert url_problems(launch_urls(no_repo, notebook), no_repo, notebook)
    spaced = {**config, "repository": {**config["repository"], "branch": "my branch"}}
    assert url_problems(launch_urls(spaced, notebook), spaced, notebook)
    urls = launch_urls(config, notebook)
    assert url_problems({**urls, "binder": urls["binder"].replace("/v2/gh/", "/v2/")}, config, notebook)
    assert url_problems({**urls, "colab": urls["colab"].replace("https://", "http://")}, config, notebook)


def test_every_notebook_page_has_the_binder_button(html):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        page = (html / "notebooks" / f"{path.stem}.html").read_text()
        assert launch_urls(config, f"notebooks/{path.name}")["binder"] in page, path.stem


# ---------------------------------------------------------------------------------------------- oldest versions


def test_oldest_constraints_pin_each_dependency_at_its_lower_bound():
    pyproject, constraints = (ROOT / "pyproject.toml").read_text(), (ROOT / "constraints" / "oldest.txt").read_text()
    assert oldest_problems(pyproject, constraints) == []
    assert any(p.startswith("numpy:") for p in oldest_problems(pyproject.replace('"numpy>=', '"numpy>=9'), constraints))
    assert any(p.startswith("tqdm:") for p in oldest_problems(pyproject, constraints.replace("tqdm==", "# ")))
    unbounded = pyproject.replace('"scipy>=1.10"', '"scipy"')
    assert any("no lower bound" in p for p in oldest_problems(unbounded, constraints))


def test_oldest_versions_tests_need_nothing_beyond_sharedlib():
    command = make_dry_run("test-oldest")
    tests = re.findall(r"tests/test_\w+\.py", command.split("-m pytest", 1)[1])
    assert len(tests) >= 10
    allowed = oldest_allowed()
    for test in tests:
        assert foreign_imports(ROOT / test, allowed) == set(), test
    assert "-c constraints/oldest.txt -e ." in command
    assert foreign_imports(ROOT / "tests" / "test_book.py", allowed) == {"yaml"}  # the check can fail


def test_scheduled_workflows_check_links_and_oldest_versions():
    for name, command in (("linkcheck.yml", "make linkcheck"), ("oldest.yml", "make test-oldest")):
        workflow = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
        assert workflow[True]["schedule"] and "workflow_dispatch" in workflow[True], name  # YAML 1.1: `on` is True
        assert command in [step.get("run") for job in workflow["jobs"].values() for step in job["steps"]], name
    assert "--builder linkcheck" in make_dry_run("linkcheck")
