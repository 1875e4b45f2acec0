"""BitFit: exactly the backbone's biases are trained."""
from pathlib import Path

from adapterkit import build_model, count_parameters, load_config

CONFIGS = Path(__file__).resolve().parents[2] / 'configs'


def test_bitfit_on_swin_t_trains_exactly_its_51456_biases():
    model = build_model(load_config(str(CONFIGS / 'bitfit/bitfit_swin-t_pascal-448.py')))
    counts = count_parameters(model)
    assert counts['backbone_unfrozen'] == 51_456  # every bias but the dropped final norm's
    assert counts['backbone_adapter'] == 0
    assert counts['trainable'] == 51_456 + counts['decoders']
    trainable = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.backbone.named_parameters() if n.endswith('.bias')}
    assert all(p.requires_grad for p in model.heads.parameters())
