"""Denoising noise: its size per sample and channel, the padded channels, and keyed draws."""

from __future__ import annotations

import pytest
import torch

from dpot_lab.train.noise import add_noise, keyed_normal, sample_key


@pytest.fixture
def window():
    torch.manual_seed(0)
    x = torch.randn(3, 48, 48, 10, 2)
    return x * torch.tensor([1.0, 5.0]) + torch.tensor([0.0, 2.0])  # channels of different size


def test_rms_noise_is_a_fraction_of_each_channels_rms(window):
    noisy = add_noise(window, "rms", 0.1)
    ratio = (noisy - window).square().mean((1, 2, 3)).sqrt() / window.square().mean(
        (1, 2, 3)
    ).sqrt()
    torch.testing.assert_close(ratio, torch.full((3, 2), 0.1), rtol=0.02, atol=0)


def test_norm_noise_is_the_papers_parameterisation(window):
    noisy = add_noise(window, "norm", 5e-4)
    std = (noisy - window).square().mean((1, 2, 3)).sqrt()
    expected = 5e-4 * window.square().sum((1, 2, 3)).sqrt()  # s·‖x‖₂ per element
    torch.testing.assert_close(std, expected, rtol=0.02, atol=0)


def test_padded_channels_stay_exact(window):
    mask = torch.tensor([True, False])
    noisy = add_noise(window, "rms", 0.2, channel_mask=mask)
    assert torch.equal(noisy[..., 1], window[..., 1])
    assert not torch.equal(noisy[..., 0], window[..., 0])


def test_keyed_noise_depends_on_the_key_and_row_not_the_batch(window):
    shape, key = tuple(window.shape[1:]), sample_key(0, 5, 0)
    together = add_noise(
        window, "rms", 0.1, normal=keyed_normal(key, 8, torch.arange(3), shape, "cpu")
    )
    alone = add_noise(
        window[1:2], "rms", 0.1, normal=keyed_normal(key, 8, torch.tensor([1]), shape, "cpu")
    )
    assert torch.equal(together[1:2], alone)
    other = keyed_normal(sample_key(0, 6, 0), 8, torch.arange(3), shape, "cpu")
    assert not torch.equal(add_noise(window, "rms", 0.1, normal=other), together)
    assert torch.equal(add_noise(window, "rms", 0.0), window)
    with pytest.raises(ValueError, match=r"normal draws \(1, 48, 48, 10, 2\) do not fit x"):
        add_noise(window, "rms", 0.1, normal=other[:1])
