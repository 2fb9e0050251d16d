import pytest
import torch

from im2hands.utils.device import resolve_device
from im2hands.utils.errors import ConfigError, Im2HandsError


def test_names_and_auto():
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available()
                                      else torch.device("cpu"))  # fmt: skip


@pytest.mark.parametrize("bad", ["tpu", "metal", "", "cuda:x"])
def test_unknown_names_name_the_source(bad):
    with pytest.raises(Im2HandsError, match=rf"--device '{bad}': expected cpu, cuda, cuda:N or auto"):
        resolve_device(bad)
    with pytest.raises(ConfigError, match=rf"train\.device '{bad}'"):
        resolve_device(bad, source="train.device", error=ConfigError)


def test_cuda_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    for name in ("cuda", "cuda:1"):
        with pytest.raises(Im2HandsError, match=rf"synth\.device '{name}': CUDA is not available here"):
            resolve_device(name, source="synth.device")


def test_cuda_index_and_count(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert resolve_device("cuda") == torch.device("cuda", 1)  # the current device
    assert resolve_device("cuda", cuda_index=0) == torch.device("cuda", 0)  # a torchrun local rank
    assert resolve_device("CUDA:0", cuda_index=1) == torch.device("cuda", 0)  # an explicit index wins
    with pytest.raises(Im2HandsError, match="only 2 CUDA device"):
        resolve_device("cuda:2")
