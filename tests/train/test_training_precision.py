"""Training precision: the step runs under bf16 autocast when asked, evaluation in float32; under
FSDP the blocks' weights are gathered in bf16 while the islands and evaluation stay float32."""

from __future__ import annotations

import torch
from train_helpers import run_rank_script, tiny_config

from dpot_lab.train import Trainer


def test_evaluation_is_float32_whatever_the_training_precision(adv1, tmp_path):
    trainer = Trainer(tiny_config([adv1], precision="bf16"), run_dir=tmp_path)
    seen = []

    def hook(module, args, out):
        seen.append((torch.is_autocast_enabled("cpu"), out.dtype))

    trainer.model.register_forward_hook(hook)
    trainer.train_step()
    assert seen and all(amp for amp, _ in seen)  # the step: bf16 autocast
    seen.clear()
    scores = trainer.evaluate()
    assert seen and all(not amp and dtype == torch.float32 for amp, dtype in seen)
    assert set(scores) == {"adv1"}


_FSDP_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import torch
from torch.nn.modules.module import register_module_forward_hook
from train_helpers import tiny_config
from dpot_lab.models.dpot import DPOT, build_model
from dpot_lab.train import Trainer, distributed

cfg = tiny_config([{data!r}], precision="bf16",
                  **{{"model.depth": 2, "distributed.strategy": "fsdp", "eval.batch_size": 2}})
trainer = Trainer(cfg, run_dir={out!r})
model, seen = trainer.model, set()
model.blocks[1].mlp[0].register_forward_hook(  # inside the block: its weights gathered
    lambda m, args, out: seen.add(("block", m.weight.dtype)))
model.head.fc2.register_forward_hook(  # an island: the head's narrow layers, the time embedding
    lambda m, args, out: seen.update({{("head", m.weight.dtype, out.dtype),
                                      ("gamma", model.time_agg.gamma.dtype)}}))
for _ in range(2):
    assert trainer.train_step()["ok"]
f32, bf16 = torch.float32, torch.bfloat16
assert seen == {{("block", bf16), ("head", f32, f32), ("gamma", f32)}}, seen
assert {{distributed.local(p).dtype for p in model.parameters()}} == {{f32}}  # the sharded weights
assert {{distributed.local(p.grad).dtype for p in model.parameters()}} == {{f32}}  # reduced in f32

calls = []
hook = register_module_forward_hook(
    lambda m, args, out: calls.append((args[0], out)) if isinstance(m, DPOT) else None)
scores = trainer.evaluate()
hook.remove()
reference = build_model(model.config)
reference.load_state_dict({{k: distributed.full(v) for k, v in model.state_dict().items()}})
assert calls and set(scores) == {{"adv1"}}
with torch.no_grad():
    for x, y in calls:
        assert y.dtype == f32
        torch.testing.assert_close(y, reference.eval()(x), rtol=1e-5, atol=1e-6)
    with torch.autocast("cpu", dtype=bf16):
        low = model(calls[0][0])  # the training path (collective): bf16 blocks
    assert not torch.allclose(low.float(), calls[0][1], rtol=1e-5, atol=1e-6)  # told apart above
"""


def test_fsdp_gathers_the_blocks_in_bf16_and_evaluates_in_float32(adv1, tmp_path):
    """FSDP over 2 ranks with precision bf16: inside the step the blocks compute with bf16
    weights, the islands with float32 ones, sharded weights and gradients stay float32; every
    evaluation output equals a plain float32 model's on the same weights."""
    run_rank_script(_FSDP_SCRIPT, adv1, tmp_path)
