import pytest
import torch

from nucleikit.errors import ConfigError
from nucleikit.losses import get_loss, mse, weighted_mse


def test_weighted_mse_hand_computed():
    # target mean ybar = 0.25; weights = y + lam*ybar.
    y = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    o = torch.tensor([[[[0.5, 0.5], [0.0, 1.0]]]])
    lam = 2.0
    w = y + lam * 0.25  # [[1.5, 0.5], [0.5, 0.5]]
    expected = 0.5 * float((w * (o - y) ** 2).mean())  # 0.5 * (1.5*0.25 + 0.5*0.25 + 0 + 0.5*1)/4
    assert expected == pytest.approx(0.5 * (0.375 + 0.125 + 0.5) / 4)
    assert float(weighted_mse(o, y, lam=lam)) == pytest.approx(expected)


def test_weighted_mse_lambda_zero_ignores_background():
    y = torch.tensor([[[[1.0, 0.0]]]])
    o = torch.tensor([[[[1.0, 0.9]]]])
    assert float(weighted_mse(o, y, lam=0.0)) == 0.0
    assert float(weighted_mse(o, y, lam=5.0)) > 0.0


def test_mse_and_registry():
    y = torch.zeros(1, 1, 2, 2)
    o = torch.ones(1, 1, 2, 2)
    assert float(mse(o, y)) == 1.0
    assert float(get_loss("weighted_mse", lam=0.0)(o, y)) == 0.0  # y = 0 everywhere: all weights 0
    with pytest.raises(ConfigError):
        get_loss("nope")
    with pytest.raises(ValueError):
        mse(o, torch.zeros(1, 1, 2, 3))


def test_soft_dice_and_bce_hand_computed():
    from nucleikit.losses import bce, dice_bce, soft_dice_loss

    y = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    o = torch.tensor([[[[0.5, 0.5], [0.0, 0.0]]]])
    # 1 - (2*0.5 + 1) / (1 + 1 + 1) = 1/3
    assert float(soft_dice_loss(o, y)) == pytest.approx(1 / 3)
    assert float(soft_dice_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))) == 0.0
    expected_bce = (-torch.log(torch.tensor(0.5)) * 2 + 2 * -torch.log(torch.tensor(1 - 1e-6))) / 4
    assert float(bce(o, y)) == pytest.approx(float(expected_bce), rel=1e-4)
    assert float(dice_bce(o, y)) == pytest.approx(float(soft_dice_loss(o, y) + bce(o, y)))


def test_instance_loss_is_the_sum_of_its_three_terms():
    import torch

    from nucleikit.losses import LOSSES, dice_bce, instance_loss

    g = torch.Generator().manual_seed(0)
    out = torch.rand((2, 3, 8, 8), generator=g) * 0.98 + 0.01
    tgt = (torch.rand((2, 3, 8, 8), generator=g) > 0.5).float()
    tgt[:, 2] = torch.rand((2, 8, 8), generator=g)
    expected = (dice_bce(out[:, 0:1], tgt[:, 0:1]) + dice_bce(out[:, 1:2], tgt[:, 1:2])
                + 5.0 * ((out[:, 2] - tgt[:, 2]) ** 2).mean())
    assert float(instance_loss(out, tgt)) == pytest.approx(float(expected), rel=1e-6)
    assert LOSSES["instance"] is instance_loss
    # a perfect distance map removes the third term only
    out2 = out.clone()
    out2[:, 2] = tgt[:, 2]
    assert float(instance_loss(out2, tgt)) == pytest.approx(float(expected - 5.0 * ((out[:, 2] - tgt[:, 2]) ** 2).mean()),
                                                             rel=1e-6)
    with pytest.raises(ValueError):
        instance_loss(out[:, :2], tgt[:, :2])
