"""CNM configs: the release configs load and build, and CNM is scored at its datasets' thresholds."""
import os

import pytest
import torch

from mmn.config import get_default_config, load_config
from mmn.data import get_entry
from mmn.evaluation import metric_spec, recall_table
from mmn.modeling.registry import build_model

from helpers.paths import CONFIGS_DIR


# ---------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name", ["cnm_charades.yaml", "cnm_activitynet.yaml"])
def test_configs_load_and_build(name):
    cfg = get_default_config()
    cfg.merge_from_file(os.path.join(CONFIGS_DIR, name))
    assert cfg.MODEL.ARCHITECTURE == "CNM"
    model = build_model(cfg)
    assert model.fc_rec.out_features == cfg.MODEL.CNM.VOCAB_SIZE + 1
    assert model.frame_fc.in_features == cfg.MODEL.CNM.FRAME_DIM
    assert len(model.trans.decoder1.decoder_layers) == 3 and model.trans.decoder1.decoder_layers[0].self_attn.num_heads == 4


def test_cnm_is_scored_at_its_thresholds():
    def evaluate(moments, durations, gt, dataset):
        cfg = load_config(os.path.join(CONFIGS_DIR, f"cnm_{dataset}.yaml"))
        thresholds, recalls, strict = metric_spec(cfg, get_entry(cfg, cfg.DATASETS.TEST[0]), num_moments=1)
        assert not strict
        seconds = moments.double() * durations.double()[:, None, None]  # normalised -> seconds, as inference
        return recall_table(seconds, gt.double(), thresholds, recalls=recalls)

    moments = torch.tensor([[[0.0, 0.5]], [[0.5, 1.0]], [[0.1, 0.2]]])
    metrics = evaluate(moments, torch.tensor([10.0, 20.0, 10.0]), torch.tensor([[0.0, 5.0], [0.0, 10.0], [1.0, 3.0]]),
                       "charades")
    assert set(metrics) == {"R@1,IoU@0.3", "R@1,IoU@0.5", "R@1,IoU@0.7", "mIoU"}
    assert metrics["R@1,IoU@0.5"] == pytest.approx(2 / 3)
    assert metrics["mIoU"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert set(evaluate(moments, torch.ones(3), torch.ones(3, 2), "activitynet")) == \
        {"R@1,IoU@0.1", "R@1,IoU@0.3", "R@1,IoU@0.5", "mIoU"}
