"""Learning, not just running: a short run on generated Navier–Stokes data (ν = 1e-3, the FNO
set-up) rolls out 10 steps on held-out trajectories with at most half the error of persistence.
(The full claim on three sources at 64² is ``dpot-lab pretrain configs/tiny_cpu.yaml``.)"""

from __future__ import annotations

from dpot_lab.train import Trainer


def test_short_run_halves_the_persistence_error(data_dir, tmp_path):
    cfg = {
        "steps": 600,
        "batch_size": 8,
        "model": {"preset": "nano", "embed_dim": 48, "depth": 2, "modes": 4, "mlp_ratio": 2},
        "data": {
            "sources": [{"generate": "ns2d", "n_samples": 28, "resolution": 32, "nu": 1e-3,
                         "n_frames": 20, "seed": 1, "progress": False}],
            "resolution": 32, "t_in": 10, "channels": 1, "n_test": 4,
            "cache_dir": str(data_dir),
        },
        "optim": {"lr": 2e-3},
        "noise": {"kind": "rms", "scale": 0.05},
        "eval": {"horizon": 10},
        "log": {"every": 50, "progress": False},
    }  # fmt: skip
    trainer = Trainer(cfg, run_dir=tmp_path)
    trainer.fit()
    result = trainer.last_eval["ns2d"]
    assert result["samples"] == 4
    assert result["l2re"] <= 0.5 * result["persistence"], result
