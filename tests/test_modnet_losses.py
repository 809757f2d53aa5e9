"""MODNet losses: hand-checkable values, per-sample masking of coarse samples, SOC."""

from __future__ import annotations

import pytest
import torch

from modnet.losses import gaussian_blur, gaussian_kernel, modnet_losses, semantic_target, soc_losses

H, W = 32, 48


def _full(value: float, b: int = 1, c: int = 1) -> torch.Tensor:
    return torch.full((b, c, H, W), float(value))


def _random_alpha(b: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, H, W, generator=g)


def test_gaussian_kernel_and_blur():
    k = gaussian_kernel(3, 0.8)
    assert k.shape == (3, 3)
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(k[1, 1]) > float(k[0, 1]) > float(k[0, 0])
    const = torch.full((1, 1, 5, 7), 0.3)
    assert torch.allclose(gaussian_blur(const), const)  # reflect padding keeps constants
    impulse = torch.zeros(1, 1, 5, 5)
    impulse[0, 0, 2, 2] = 1
    assert torch.allclose(gaussian_blur(impulse)[0, 0, 1:4, 1:4], k)


def test_perfect_prediction_is_zero():
    alpha = _random_alpha()
    # MODNet's boundary term takes the trimap as the matte in the known region: known
    # pixels must be exactly 0 / 1 for a perfect prediction to cost nothing.
    alpha = torch.where(alpha < 0.2, 0.0, torch.where(alpha > 0.8, 1.0, alpha))
    trimap = torch.where(alpha == 0, 0.0, torch.where(alpha == 1, 1.0, 0.5))
    image = torch.rand(2, 3, H, W) * 2 - 1
    sem = semantic_target(alpha, (H // 16, W // 16))
    out = modnet_losses(sem, alpha, alpha, image, alpha, trimap)
    for k in ("semantic", "detail", "matte", "total"):
        assert float(out[k]) == pytest.approx(0.0, abs=1e-7), k


def test_hand_computed_values_unknown_region():
    alpha = _full(0.0)
    trimap = _full(0.5)  # everything unknown
    image = _full(1.0, c=3)
    out = modnet_losses(_full(0.0)[..., :2, :3], _full(0.5), _full(0.25), image, alpha, trimap)
    assert float(out["semantic"]) == pytest.approx(0.0, abs=1e-7)
    assert float(out["detail"]) == pytest.approx(10 * 0.5)
    # L1: 0.25 + 4 * 0.25; compositional (image = 1): the same again
    assert float(out["matte"]) == pytest.approx(1.25 + 1.25)
    total = out["semantic"] + out["detail"] + out["matte"]
    assert float(out["total"]) == pytest.approx(float(total))


def test_hand_computed_values_known_region_and_weights():
    alpha = _full(1.0)
    trimap = _full(1.0)  # all known foreground: no detail loss, no boundary term
    image = _full(-1.0, c=3)
    sem = _full(0.0)[..., :2, :3] + 0.5
    out = modnet_losses(sem, _full(0.0), _full(0.5), image, alpha, trimap, weights=(2, 3, 4))
    assert float(out["semantic"]) == pytest.approx(2 * 0.25)  # blur(down(1)) = 1
    assert float(out["detail"]) == pytest.approx(0.0)
    assert float(out["matte"]) == pytest.approx(4 * (0.5 + 0.5))  # L1 + |(-1)(0.5) - (-1)(1)|


def test_coarse_samples_train_the_semantic_branch_only():
    alpha = _random_alpha(2, seed=1)
    trimap = _full(0.5, b=2)
    image = torch.rand(2, 3, H, W) * 2 - 1
    sem = torch.rand(2, 1, H // 16, W // 16, requires_grad=True)
    det = torch.rand(2, 1, H, W, requires_grad=True)
    mat = torch.rand(2, 1, H, W, requires_grad=True)
    coarse = torch.tensor([True, False])
    out = modnet_losses(sem, det, mat, image, alpha, trimap, coarse_mask=coarse)
    out = {k: v if k == "total" else v.detach() for k, v in out.items()}
    with torch.no_grad():
        fine_only = modnet_losses(sem[1:], det[1:], mat[1:], image[1:], alpha[1:], trimap[1:])
        unmasked = modnet_losses(sem, det, mat, image, alpha, trimap)
    assert float(out["detail"]) == pytest.approx(float(fine_only["detail"]))
    assert float(out["matte"]) == pytest.approx(float(fine_only["matte"]))
    assert float(out["semantic"]) == pytest.approx(float(unmasked["semantic"]))
    assert float(out["detail"]) != pytest.approx(float(unmasked["detail"]))
    out["total"].backward()
    assert float(det.grad[0].abs().sum()) == 0 and float(mat.grad[0].abs().sum()) == 0
    assert float(det.grad[1].abs().sum()) > 0 and float(sem.grad[0].abs().sum()) > 0


def test_all_coarse_batch_is_finite():
    alpha = _random_alpha(2)
    out = modnet_losses(
        torch.rand(2, 1, 2, 3), torch.rand(2, 1, H, W), torch.rand(2, 1, H, W),
        torch.rand(2, 3, H, W), alpha, _full(0.5, b=2), coarse_mask=torch.tensor([True, True]),
    )  # fmt: skip
    assert float(out["detail"]) == 0 and float(out["matte"]) == 0
    assert torch.isfinite(out["total"]) and float(out["semantic"]) > 0


def test_soc_zero_when_consistent_and_positive_otherwise():
    matte = torch.zeros(1, 1, 64, 64)
    matte[..., 16:48, 20:44] = 1.0
    matte = gaussian_blur(matte, 5, 2.0)
    semantic = semantic_target(matte, (4, 4))
    out = soc_losses(semantic, matte.clone(), matte.clone(), matte.clone())
    # values under 0.01 are zeroed in the pseudo targets: only those can differ
    assert float(out["total"]) == pytest.approx(0.0, abs=1e-4)
    det = (matte.clone() * 0.5).requires_grad_()
    out = soc_losses(semantic, det, matte, matte)
    assert out["soc_detail"].item() > 0
    out["total"].backward()
    assert float(det.grad.abs().sum()) > 0
