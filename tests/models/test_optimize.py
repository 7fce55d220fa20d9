import pytest
import torch

from nucleikit.models import build_model
from nucleikit.models.optimize import fold_batchnorm


@pytest.mark.parametrize("name,kwargs", [("micronet", {"width": 4}), ("udnet", {}), ("fcrn_a", {})])
def test_fold_batchnorm_keeps_outputs_and_removes_layers(name, kwargs):
    torch.manual_seed(0)
    model = build_model(name, **kwargs)
    # give the batch norms non-trivial statistics
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(2, 3, 48, 48) * 2 + 0.5)
    model.eval()
    folded = fold_batchnorm(model)
    n_before = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    n_after = sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert n_after < n_before
    x = torch.randn(1, 3, 51, 45)
    with torch.no_grad():
        assert torch.allclose(model(x), folded(x), atol=1e-5)
    assert model.training is False and any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_fold_batchnorm_leaves_per_step_batchnorms_alone():
    torch.manual_seed(0)
    model = build_model("r2unet", step_norm=True, widths=(4, 8, 16))
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(2, 3, 48, 48) * 2 + 0.5)
    model.eval()
    folded = fold_batchnorm(model)
    # a per-step BatchNorm cannot be folded into the one feed-forward kernel all steps share
    n = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()) == n
    x = torch.randn(1, 3, 51, 45)
    with torch.no_grad():
        assert torch.allclose(model(x), folded(x), atol=1e-5)
