"""Packaging: environment.yml agrees with pyproject.toml; the public surface imports cheaply."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _names(requirements: list[str]) -> dict[str, str]:
    """requirement strings -> {normalised name: full spec}."""
    out = {}
    for req in requirements:
        name = re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0]
        out[name.lower().replace("_", "-")] = req.replace(" ", "")
    return out


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(project["dependencies"] + project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"])
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-e .[dev]" in pip, "environment.yml must install the package itself with its dev extra"
    listed = _names([p for p in pip if not p.startswith("-e")])
    assert listed == wanted, (
        f"only in environment.yml: {sorted(set(listed.items()) - set(wanted.items()))}; "
        f"only in pyproject: {sorted(set(wanted.items()) - set(listed.items()))}"
    )


def test_torch_is_a_range_not_a_pin():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_req = next(r for r in project["dependencies"] if r.startswith("torch"))
    assert ">=" in torch_req and "==" not in torch_req


def test_import_is_light():
    """`import dpot_lab` must not pull in Panel, HoloViews, the data stack or the hub client."""
    code = (
        "import sys, dpot_lab as dl; "
        "mods = ('panel', 'holoviews', 'bokeh', 'h5py', 'xarray', 'huggingface_hub'); "
        "heavy = [m for m in mods if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported eagerly: {out.stdout.strip()}"


def test_public_surface():
    import dpot_lab as dl

    names = ("DPOTConfig", "DPOT", "DPOT3D", "create_model", "load_official", "save_checkpoint",
             "load_checkpoint", "open_dataset", "generate", "rollout")  # fmt: skip
    for name in names:
        assert callable(getattr(dl, name)), name
    for sub in ("data", "solvers", "train", "metrics", "viz", "studies"):
        assert getattr(dl, sub).__name__.startswith("dpot_lab."), sub
    # lazily loaded names are listed and named
    for package in (dl, dl.data, dl.train, dl.viz, dl.studies):
        assert set(package.__all__) <= set(dir(package)), package.__name__
        with pytest.raises(AttributeError, match=rf"module '{package.__name__}' has no attribute"):
            package.no_such_name  # noqa: B018


def test_dir_lists_the_public_surface_only():
    """``dir(dl)`` and ``dir(dl.metrics)`` offer what ``__all__`` names, not the helpers they
    import; every ``dl.…`` name the README and DESIGN.md use resolves and is listed."""
    import dpot_lab as dl

    for package in (dl, dl.metrics, dl.data, dl.train, dl.viz, dl.studies):
        assert sorted(dir(package)) == sorted(package.__all__), package.__name__
    helpers = {"atomic", "exports", "lazy_names", "sizes", "configfile", "importlib"}
    assert not helpers & set(dir(dl))
    assert not {"np", "xr", "Sequence", "TypeVar", "XR", "SPATIAL_DIMS"} & set(dir(dl.metrics))
    design = ["dl.metrics.l2re", "dl.metrics.vrmse", "dl.metrics.nrmse", "dl.evaluate",
              "dl.models"]  # fmt: skip
    readme = re.findall(r"\bdl\.[A-Za-z_][\w.]*[A-Za-z_0-9]", (ROOT / "README.md").read_text())
    assert "dl.studies.data_efficiency" in readme  # the pattern finds the README's names
    for dotted in sorted({*design, *readme}):
        obj = dl
        for part in dotted.split(".")[1:]:
            assert part in dir(obj), f"{dotted}: {part!r} not in dir() of {obj.__name__}"
            obj = getattr(obj, part)


def test_a_lazy_name_stays_what_it_names_on_every_access():
    """A lazily loaded name stays what it names once its module is imported (the import binds
    the module's name on the package, which must not shadow a name of the package)."""
    code = (
        "import inspect, dpot_lab as dl\n"
        "from dpot_lab.data import generate\n"
        "for pkg in (dl.train, dl.data, dl.viz, dl.studies):\n"
        "    for name in pkg.__all__:\n"
        "        first, again = getattr(pkg, name), getattr(pkg, name)\n"
        "        assert first is again and not inspect.ismodule(again), (pkg.__name__, name)\n"
        "assert callable(dl.studies.data_efficiency) and dl.data.generate is generate\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_every_config_the_docs_name_exists():
    """The README, the CLI's help and the notebooks name only configs that ship."""
    named = set()
    for doc in [ROOT / "README.md", ROOT / "dpot_lab" / "cli.py", *ROOT.glob("notebooks/*.py")]:
        named |= set(re.findall(r"configs/[\w/.-]+?\.yaml", doc.read_text()))
    assert "configs/finetune_example.yaml" in named
    missing = sorted(n for n in named if not (ROOT / n).is_file())
    assert not missing, f"named but not shipped: {missing}"
