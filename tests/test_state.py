"""What the loop shares with its callbacks: the precision of the forward passes."""
import pytest
import torch

from itra.state import Precision


def test_precisions():
    cpu = torch.device("cpu")
    assert Precision.of("32", cpu) == Precision()
    bf16 = Precision.of("bf16", cpu)
    assert bf16.dtype == torch.bfloat16 and bf16.scaler is None  # bfloat16 has float32's range: no loss scaling
    with pytest.raises(ValueError, match="--precision fp16 needs a CUDA GPU"):
        Precision.of("fp16", cpu)
