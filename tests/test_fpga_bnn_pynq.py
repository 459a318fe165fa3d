"""Brevitas's own BNN-PYNQ reference models (brevitas_examples.bnn_pynq: the TFC / CNV nets FINN's end-to-end
examples build), exported to QONNX, on the FPGA XNOR engine: their ``2 x - 1`` input preprocessing is replayed by
the host before the input quantizer, and the outputs equal Brevitas's exactly."""
import numpy as np
import pytest
import torch
from _brevitas import export, trained_bn

import hwsim
import mapping
from hwsim.errors import UnsupportedOpError
from mapping.fpga import InputLayer, map_xnor

pytest.importorskip("brevitas_examples")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def _bnn_pynq(name: str, tmp_path):
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    model, _ = model_with_cfg(name, pretrained=False)
    model = trained_bn(model, 0)
    shape = (3, 3, 32, 32) if name.startswith("cnv") else (3, 1, 28, 28)
    x = np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)  # images in [0, 1], as the nets expect
    return model, x, export(model, x, tmp_path / f"{name}.onnx")


@pytest.mark.parametrize("name", ["tfc_1w1a", pytest.param("tfc_2w2a", marks=pytest.mark.slow),
                                  pytest.param("cnv_1w1a", marks=pytest.mark.slow),
                                  pytest.param("cnv_2w2a", marks=pytest.mark.slow)])
def test_bnn_pynq_models_bit_exact_with_their_preprocessing(tmp_path, name):
    model, x, path = _bnn_pynq(name, tmp_path)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    r = hwsim.simulate(path, "fpga/pynq-z1", x=x)
    np.testing.assert_array_equal(r.outputs, ref)
    assert len(np.unique(ref.argmax(1))) > 1 or ref.std() > 0  # not a constant output
    program = map_xnor(mapping.from_onnx(path, verify=False))
    first = next(layer for layer in program.layers if isinstance(layer, InputLayer))
    assert [op for op, _ in first.pre] == ["mul", "sub"]  # 2.0 * x - 1.0
    assert r.report.fps > 0 and r.report.luts > 0


def test_preprocessing_without_an_input_quantizer_is_refused(tmp_path):
    import torch.nn as nn
    from brevitas import nn as qnn
    from brevitas.quant import SignedBinaryWeightPerTensorConst

    class NoInputQuant(nn.Module):
        def __init__(self):
            super().__init__()  # (weight_bit_width=1 alone exports +-inf weights: refused as non-finite)
            self.fc = qnn.QuantLinear(16, 4, bias=False, weight_quant=SignedBinaryWeightPerTensorConst)

        def forward(self, x):
            return self.fc(2.0 * x.flatten(1) - 1.0)

    x = np.random.default_rng(0).integers(0, 2, (2, 1, 4, 4)).astype(np.float32)
    path = export(NoInputQuant().eval(), x, tmp_path / "noquant.onnx")
    with pytest.raises(UnsupportedOpError, match="reads the preprocessed network input without an input quantizer"):
        hwsim.simulate(path, "fpga/pynq-z1", x=x)
