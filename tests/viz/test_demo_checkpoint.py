"""The shipped pre-trained model earns its place: 10-step rollouts beat persistence 2x on each of
the viewer's demo sets (fresh seeds of four of its pre-training families); its corpus is every
built-in 2D family but the held-out ones."""

import pytest
import torch
import yaml

import dpot_lab as dl
from dpot_lab.data.generation import GENERATORS, generate_cached
from dpot_lab.train.config import TrainConfig
from dpot_lab.viz import DEMO_CHECKPOINT, DEMO_DATA

STEPS = 10


@pytest.fixture(scope="module")
def demo_model():
    if not DEMO_CHECKPOINT.exists():
        pytest.fail(f"{DEMO_CHECKPOINT} is missing: run `make pretrained-checkpoint`")
    return dl.load_checkpoint(DEMO_CHECKPOINT)


def test_demo_checkpoint_is_small_and_safe(demo_model):
    assert DEMO_CHECKPOINT.stat().st_size < 5e6
    assert torch.load(DEMO_CHECKPOINT, weights_only=True)["format"] == "dpot-lab"
    assert demo_model.config.img_size == (64, 64)


@pytest.mark.parametrize(
    "entry", yaml.safe_load(DEMO_DATA.read_text())["sources"], ids=lambda e: e["spec"]["generate"]
)
def test_demo_model_beats_persistence_twice(demo_model, entry):
    torch.set_num_threads(1)
    ds = dl.open_dataset(generate_cached(entry["spec"]))
    t_in = demo_model.config.in_timesteps
    truth = ds.isel(time=slice(t_in, t_in + STEPS))
    pred = dl.rollout(demo_model, ds, t_in=t_in, steps=STEPS, progress=False)
    still = dl.metrics.persistence(ds, t_in=t_in, steps=STEPS)
    model_err = float(dl.metrics.l2re(pred, truth).to_array().mean())
    still_err = float(dl.metrics.l2re(still, truth).to_array().mean())
    print(f"{entry['name']}: demo model L2RE {model_err:.4f}, persistence {still_err:.4f}")
    assert model_err <= 0.5 * still_err


def test_pretraining_corpus_is_every_2d_family_but_the_held_out_ones():
    info = yaml.safe_load(DEMO_DATA.read_text())
    config = TrainConfig.from_yaml(DEMO_DATA.parent / info["config"])
    seen = {GENERATORS[spec["generate"]].name for spec in config.data.sources}
    held_out = {GENERATORS[spec["generate"]].name for spec in info["held_out"].values()}
    two_d = {g.name for g in GENERATORS.values() if g.name != "ns3d"}
    assert {"burgers2d", "wave", "gray_scott"} <= held_out and not seen & held_out
    assert seen | held_out == two_d
