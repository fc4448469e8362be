"""Config validation: every mistake names the file, the key path and the expected type, before
any data is read; YAML round trips; the shipped configs validate."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from dpot_lab.models.dpot import DPOTConfig
from dpot_lab.train import TrainConfig, Trainer
from dpot_lab.train.config import ConfigError, EvalConfig

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


def _write(tmp_path, d: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


@pytest.mark.parametrize(
    "doc, key, expected",
    [
        ({"optim": {"lrr": 1e-3}}, "optim.lrr", "known keys"),
        ({"optim": {"lr": "fast"}}, "optim.lr", "expected float"),
        ({"steps": 1.5}, "steps", "expected int"),
        ({"steps": True}, "steps", "expected int"),
        ({"model": {"preset": "nano", "dept": 2}}, "model.dept", "known keys"),
        ({"model": {"depth": "two"}}, "model.depth", "expected int"),
        ({"noise": {"kind": "gauss"}}, "noise.kind", "one of 'rms' or 'norm', got 'gauss'"),
        ({"data": {"sources": [3]}}, "data.sources[0]", "expected str or a mapping"),
        ({"optim": {"betas": [0.9, "x"]}}, "optim.betas[1]", "expected float"),
        ({"eval": 5}, "eval", "expected a mapping"),
        ({"data": {"weights": [0.5]}}, "data.weights[0]", "expected int, got float 0.5"),
        ({"optim": {"lr": float("inf")}}, "optim.lr", "expected a finite number, got inf"),
        ({"name": False}, "name", "quote it"),  # YAML's `name: no`
        # out of range, per section
        ({"seed": -1}, "seed", "an int >= 0"),
        ({"name": " "}, "name", "a non-empty run name"),
        ({"device": "tpu"}, "device", "a torch device"),
        ({"data": {"test_fraction": 1.0}}, "data.test_fraction", "expected a float < 1, got 1.0"),
        ({"data": {"sources": ["a", "b"], "weights": [-1, 1]}}, "data.weights[0]",
         "an int >= 0, got -1"),
        ({"data": {"sources": ["a"], "weights": [0]}}, "data.weights", "some repeats > 0, got [0]"),
        ({"data": {"n_test": -1}}, "data.n_test", "expected an int >= 0, got -1"),
        ({"data": {"resolution": [64, 0]}}, "data.resolution[1]", "expected an int >= 1, got 0"),
        ({"data": {"num_workers": -1}}, "data.num_workers", "an int >= 0"),
        ({"data": {"sources": [""]}}, "data.sources[0]", "a path"),
        ({"data": {"test_sources": [{"n": 1}]}}, "data.test_sources[0]", "'generate' key"),
        ({"data": {"sources": [{"generate": "nsxd"}]}}, "data.sources[0].generate", "one of"),
        ({"data": {"sources": [{"generate": "ns2d"}]}}, "data.sources[0].n_samples",
         "expected a value, got no 'n_samples' key"),
        (  # a union inside a union's member: the innermost problem speaks
            {"data": {"sources": [{"generate": "ns2d", "n_samples": 2, "resolution": 0}]}},
            "data.sources[0].resolution",
            "expected an int >= 1, got 0",
        ),
        ({"model": {"img_size": "x"}}, "model.img_size", "expected int or a list of int, got str"),
        (
            {"data": {"sources": [{"generate": "ns2d", "n_samples": 2, "nuu": 1}]}},
            "data.sources[0]",
            "unknown ['nuu']",
        ),
        ({"optim": {"betas": [1.0, 0.9]}}, "optim.betas[0]", "expected a float < 1, got 1.0"),
        ({"optim": {"betas": [0.9]}}, "optim.betas", "expected 2 floats, got [0.9]"),
        ({"optim": {"weight_decay": -1e-6}}, "optim.weight_decay", "a float >= 0"),
        ({"optim": {"div_factor": 0}}, "optim.div_factor", "a float > 0"),
        ({"optim": {"clip_grad": 0}}, "optim.clip_grad", "a float > 0"),
        ({"optim": {"part_lrs": {"head": -1e-4}}}, "optim.part_lrs.head", "a float > 0"),
        ({"optim": {"freeze": ["embed", "blocks", "head"]}}, "optim.freeze", "left to train"),
        ({"eval": {"horizon": 0}}, "eval.horizon", "an int >= 1"),
        ({"eval": {"batch_size": 0}}, "eval.batch_size", "an int >= 1"),
        ({"checkpoint": {"every": -1}}, "checkpoint.every", "an int >= 0"),
        ({"safety": {"snapshot_every": 0}}, "safety.snapshot_every", "an int >= 1"),
        ({"model": {"depth": 0}}, "model.depth", "an int >= 1"),
        ({"model": {"patch_size": 0}}, "model.patch_size", "an int >= 1"),
        ({"model": {"mlp_ratio": 0}}, "model.mlp_ratio", "a float > 0"),
        ({"model": {"act": "swishy"}}, "model.act", "one of"),
        ({"model": {"n_blocks": 3}}, "model.n_blocks", "a divisor of embed_dim=64"),
        ({"model": {"patch_size": 7}}, "model", "not divisible by patch_size 7"),
    ],
)
def test_bad_key_or_type_names_file_key_and_type(tmp_path, doc, key, expected):
    path = _write(tmp_path, doc)
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_yaml(path)
    msg = str(err.value)
    assert str(path) in msg and key in msg and expected in msg


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"optim": {"lr": "x"}}, "optim.lr"),
        ({"data": {"test_fraction": 1.0}}, "data.test_fraction"),
        ({"data": {"sources": [{"generate": "ns2d", "n_samples": 2, "nuu": 1}]}}, "sources[0]"),
        ({"data": {"test_sources": [{"generate": "ns2d", "n_samples": 0}]}}, "n_samples"),
    ],
)
def test_error_comes_before_any_data_is_read(tmp_path, changes, key):
    missing = tmp_path / "does_not_exist.h5"
    data = {"sources": [str(missing)], "cache_dir": str(tmp_path / "cache")}
    doc = {**changes, "data": {**data, **changes.get("data", {})}}
    with pytest.raises(ConfigError, match=re.escape(key)):
        Trainer(doc, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "the file is empty"),
        ("# all commented out\n", "the file is empty"),
        ("- steps: 3\n", "<top level>: expected a mapping, got list"),
        ("optim:\n  lr: 1e-3\n  lr: 2e-3\n", "line 3, column 3: duplicate key 'lr'"),
        ("optim: {lr: [\n", "not valid YAML: line 2, column 1: expected the node content"),
        ("name: no\n", "name: expected str, got bool False (YAML reads yes/no"),
        ("steps: yes\n", "steps: expected int, got bool True"),
        (b"\x80\x03PK binary", "not a YAML file"),
    ],
)
def test_yaml_mistakes_are_one_line_errors(tmp_path, text, expected):
    path = tmp_path / "run.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_yaml(path)
    assert str(err.value).startswith(f"{path}: ") and expected in str(err.value)
    assert "\n" not in str(err.value)


def test_unusual_but_valid_configs(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 1e3\neval:\n  # every: 100\nmodel: {preset: null, depth: 2}\n"
                    "data: {sources: ['runs/*.h5'], resolution: [16, 16, 16]}\n")  # fmt: skip
    with pytest.raises(ConfigError, match="model.preset.*null needs init_from"):
        TrainConfig.from_yaml(path)
    cfg = TrainConfig.from_yaml(path, init_from="ckpt.pt", **{"checkpoint.every": 0})
    assert cfg.steps == 1000 and cfg.eval == EvalConfig() and cfg.model.overrides == {"depth": 2}
    assert cfg.init_from == "ckpt.pt" and cfg.data.resolution == [16, 16, 16]
    with pytest.raises(ConfigError, match=f"{re.escape(str(path))}: model: preset is null"):
        cfg.model_config()  # later errors name the file too


def test_value_checks_name_the_key():
    with pytest.raises(ConfigError, match="batch_size.*multiple of optim.accumulate=3"):
        TrainConfig.from_dict({"batch_size": 4, "optim": {"accumulate": 3}})
    with pytest.raises(ConfigError, match="model.in_channels.*data.channels=4"):
        TrainConfig.from_dict({"model": {"in_channels": 3}, "data": {"channels": 4}})
    with pytest.raises(ConfigError, match=r"model.in_channels.*data.channels=null \(from the data"):
        TrainConfig.from_dict({"model": {"in_channels": 3}})
    with pytest.raises(ConfigError, match="model.preset"):
        TrainConfig.from_dict({"model": {"preset": None}})
    with pytest.raises(ConfigError, match="optim.part_lrs"):
        TrainConfig.from_dict({"optim": {"part_lrs": {"decoder": 1e-4}}})
    with pytest.raises(ConfigError, match=r"data.n_test.*one count per source \(2\), got 1"):
        TrainConfig.from_dict({"data": {"sources": ["a.h5", "b.h5"], "n_test": [3]}})
    with pytest.raises(ConfigError, match="data.placement.*'gpu'"):
        TrainConfig.from_dict({"data": {"placement": "gpu"}})
    with pytest.raises(ConfigError, match="data.resident_gb: expected a float > 0, got 0"):
        TrainConfig.from_dict({"data": {"resident_gb": 0.0}})


def test_yaml_exponent_floats_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-3\n  weight_decay: 1E-6\nnoise: {kind: norm, scale: 5e-4}\n")
    cfg = TrainConfig.from_yaml(path)
    assert cfg.optim.lr == 1e-3 and cfg.optim.weight_decay == 1e-6 and cfg.noise.scale == 5e-4
    cfg = cfg.replace(**{"model.depth": 1, "steps": 7})
    again = TrainConfig.from_yaml(cfg.to_yaml(tmp_path / "again.yaml"))
    assert again == cfg and again.model.overrides == {"depth": 1} and again.steps == 7
    sizes = again.model_config(partial=True)  # the grid and channels follow the data
    assert sizes.depth == 1 and sizes.in_timesteps == 10


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_validate(path):
    cfg = TrainConfig.from_yaml(path)
    if cfg.model.preset is not None:
        model_cfg = cfg.model_config()
        assert model_cfg.in_channels == cfg.data.channels


# ---------------------------------------------------------------------- base: inheritance
def _files(tmp_path, **docs: str) -> dict[str, Path]:
    paths = {}
    for name, text in docs.items():
        path = tmp_path / f"{name.replace('__', '/')}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        paths[name] = path
    return paths


def test_base_values_overrides_and_nested_merge(tmp_path):
    files = _files(
        tmp_path,
        shared__root="steps: 50\noptim: {lr: 1e-3, betas: [0.8, 0.8], freeze: [head]}\n"
        "data: {sources: [a.h5, b.h5], channels: 2}\n",
        shared__mid="base: root.yaml\nsteps: 60\noptim: {lr: 2e-3}\n",  # relative to mid.yaml
        run="base: shared/mid.yaml\nname: child\noptim: {betas: [0.7, 0.7]}\n"
        "data: {sources: [c.h5]}\n",
    )
    cfg = TrainConfig.from_yaml(files["run"])
    assert cfg.name == "child" and cfg.steps == 60  # the nearer file wins
    assert cfg.optim.lr == 2e-3 and cfg.optim.betas == [0.7, 0.7]  # mappings merge key by key
    assert cfg.optim.freeze == ["head"] and cfg.data.channels == 2
    assert cfg.data.sources == ["c.h5"]  # a list replaces the base's
    assert TrainConfig.from_yaml(files["run"], **{"optim.lr": 5e-4}).optim.lr == 5e-4  # --set
    written = yaml.safe_load(cfg.to_yaml(tmp_path / "out" / "config.yaml").read_text())
    assert "base" not in written and TrainConfig.from_dict(written) == cfg


def test_set_goes_through_lists_or_is_refused(tmp_path):
    run = tmp_path / "run.yaml"
    run.write_text("data: {sources: [a.h5, {generate: ns2d, n_samples: 4}]}\noptim: {lr: 1e-3}\n")
    cfg = TrainConfig.from_yaml(run, **{"data.sources.0": "b.h5", "data.sources.1.n_samples": 8})
    assert cfg.data.sources == ["b.h5", {"generate": "ns2d", "n_samples": 8}]
    assert cfg.replace(**{"data.sources.1": "c.h5"}).data.sources == ["b.h5", "c.h5"]
    refused = {
        "data.sources.2": r"run\.yaml: cannot set data\.sources\.2: data\.sources is a list of 2 "
        r"entries, so '2' is no index of it \(indices: 0\.\.1\)",
        "data.sources.-1": r"'-1' is no index of it",
        "data.sources.first": r"'first' is no index of it",
        "optim.lr.x": r"run\.yaml: cannot set optim\.lr\.x: optim\.lr is float 0\.001, not a "
        r"mapping or a list",
        "data.sources.0.x": r"data\.sources\.0 is str 'a\.h5'",
        "optim.betas.0": r"cannot set optim\.betas\.0: optim\.betas is not given there, so there "
        r"is no list to index; set the whole list",
    }
    for key, message in refused.items():
        with pytest.raises(ConfigError, match=message):
            TrainConfig.from_yaml(run, **{key: 1})


def test_base_cycles_and_missing_files_name_the_file(tmp_path):
    files = _files(
        tmp_path, a="base: b.yaml\nsteps: 2\n", b="base: a.yaml\n", lone="base: gone.yaml\n"
    )
    with pytest.raises(ConfigError, match=r"b\.yaml: base: the bases form a cycle: .*a\.yaml -> "
                       r".*b\.yaml -> .*a\.yaml"):  # fmt: skip
        TrainConfig.from_yaml(files["a"])
    with pytest.raises(
        ConfigError, match=r"lone\.yaml: base: base file .*gone\.yaml does not exist"
    ):
        TrainConfig.from_yaml(files["lone"])
    bad = _files(tmp_path, bad="base: [x.yaml]\n")["bad"]
    with pytest.raises(ConfigError, match=r"bad\.yaml: base: expected the path of a YAML file"):
        TrainConfig.from_yaml(bad)


BASES = sorted((Path(__file__).parents[2] / "configs" / "base").glob("*.yaml"))


@pytest.mark.parametrize("path", BASES, ids=[p.name for p in BASES])
def test_base_files_are_not_runs_by_themselves(path):
    with pytest.raises(ConfigError, match="model.preset.*null needs init_from"):
        TrainConfig.from_yaml(path)


PRESET_FILES = {k: Path(__file__).parents[2] / "configs" / f"pretrain_{k}.yaml"
                for k in ("Ti", "S", "M", "L", "H")}  # fmt: skip


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_paper_presets_differ_only_where_the_paper_does():
    flat = {k: _flat(TrainConfig.from_yaml(p).to_dict()) for k, p in PRESET_FILES.items()}
    large = {"noise.scale": 5e-5, "safety.snapshot_every": 500, "distributed.strategy": "fsdp",
             "distributed.activation_checkpointing": True}  # fmt: skip
    expected = {
        "Ti": {}, "M": {},
        "L": {**large, "steps": 662000, "batch_size": 200},
        "H": large,
    }  # fmt: skip
    for size, changes in expected.items():
        diff = {k: v for k, v in flat[size].items() if flat["S"][k] != v}
        assert diff == {"name": f"pretrain_{size}", "model.preset": size, **changes}, size
    s = flat["S"]
    assert s["steps"] == 827500 and s["batch_size"] == 160 and s["noise.scale"] == 5e-4
    assert len(s["data.sources"]) == len(s["data.n_test"]) == len(s["data.weights"]) == 12


# The preset files before they shared a base (commit 30fe29f); compared where git has it.
BEFORE_BASES = "30fe29f"


@pytest.mark.parametrize("size", list(PRESET_FILES))
def test_paper_presets_resolve_as_before_they_shared_a_base(size, tmp_path):
    root = Path(__file__).parents[2]
    old = subprocess.run(
        ["git", "show", f"{BEFORE_BASES}:configs/pretrain_{size}.yaml"],
        cwd=root, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if old.returncode:
        pytest.skip(f"git history with {BEFORE_BASES} not available")
    (tmp_path / "old.yaml").write_text(old.stdout)
    before = TrainConfig.from_yaml(tmp_path / "old.yaml").to_dict()
    before["data"]["placement"] = "auto"  # changed since: windows gathered on the GPU
    assert TrainConfig.from_yaml(PRESET_FILES[size]).to_dict() == before


@pytest.mark.parametrize("path", [*PRESET_FILES.values(), "notebook_pretrain_gpu.yaml"])
def test_gpu_configs_gather_windows_on_the_device(path):
    cfg = TrainConfig.from_yaml(Path(__file__).parents[2] / "configs" / path)
    assert cfg.data.placement == "auto" and cfg.data.resident_gb is None  # a quarter of the card


def test_json_schema_names_the_bounds():
    """The JSON schema comes from the declarations that validate: bounds, defaults, choices and
    the refusal of unknown keys, for the run's sections and for DPOTConfig's fields in model:."""
    schema = TrainConfig.json_schema()
    defs = schema["$defs"]
    assert schema["properties"]["steps"]["minimum"] == 1
    assert schema["properties"]["steps"]["default"] == 1000
    lr = defs["OptimConfig"]["properties"]["lr"]
    assert lr["exclusiveMinimum"] == 0 and lr["default"] == 1e-3
    fraction = defs["DataConfig"]["properties"]["test_fraction"]
    assert (fraction["minimum"], fraction["exclusiveMaximum"]) == (0, 1)
    assert defs["NoiseConfig"]["properties"]["kind"]["enum"] == ["rms", "norm"]
    assert defs["model"]["properties"]["depth"]["minimum"] == 1  # DPOTConfig's own bound
    assert defs["model"]["properties"]["embed_dim"]["minimum"] == 8
    for section in ("OptimConfig", "DataConfig", "LoRAConfig", "model"):
        assert defs[section]["additionalProperties"] is False, section


def test_a_config_changed_in_python_is_checked_again():
    cfg = TrainConfig()
    cfg.optim.lr = -1.0
    with pytest.raises(ConfigError, match=r"^config: optim\.lr: expected a float > 0, got -1\.0$"):
        TrainConfig.coerce(cfg)
    with pytest.raises(ConfigError, match=r"^steps: expected int, got bool True$"):
        TrainConfig(steps=True)


def test_model_fields_take_whole_numbers_but_no_bools():
    np = pytest.importorskip("numpy")
    cfg = DPOTConfig(img_size=[32, 32], depth=np.int64(2), modes=4.0, mlp_ratio=2)
    assert (cfg.img_size, cfg.depth, cfg.modes, cfg.mlp_ratio) == ((32, 32), 2, 4, 2.0)
    assert type(cfg.depth) is int and type(cfg.mlp_ratio) is float
    with pytest.raises(ValueError, match=r"^depth: expected int, got bool True$"):
        DPOTConfig(depth=True)
    with pytest.raises(ValueError, match=r"^modes: expected int, got float 4\.5$"):
        DPOTConfig(modes=4.5)
