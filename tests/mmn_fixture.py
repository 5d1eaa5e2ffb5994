"""An MMN parity fixture folder: tests/fixtures/parity (see its README) or any folder of that form.

- ``config.yaml``: the config with the official MMN key names (our loader reads it as it is), naming its
  splits (DATASETS.TRAIN[0], DATASETS.TEST[0]) in the official layout under ``dataset/``
  (Charades_STA/charades_{split}.json + vgg_rgb_features.hdf5, ActivityNet/{split}.json +
  sub_activitynet_v1-3.c3d.hdf5, TACoS/{split}.json + tall_c3d_features.hdf5: the built-in catalog with
  DATASETS.ROOT the fixture's ``dataset``), and the recall thresholds of that dataset (the official
  ``evaluation.py``'s, our catalog entry's);
- ``text_encoder/``: a tiny DistilBERT's config and vocabulary, its weights those of ``checkpoint_init.pth``;
- ``checkpoint_init.pth`` (starting weights), ``expected.pt`` (the official outputs).

``replay`` runs our implementation through the recorded steps and returns the record in the form of
``expected.pt``; tests/mmn_parity_report.py compares the two.
"""
import copy
import os
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DIR = os.path.join(HERE, "fixtures", "parity")
ATOL = 1e-5

# Documented exception (tests/test_parity.py): the proposal-conv biases feed a training-mode BatchNorm, so
# their gradient is analytically zero and their Adam updates follow float rounding noise; they (and the
# running means that absorb them) are bounded by 2 x the sum of the learning rates instead of compared.
NOISE_BIAS_KEYS = ("proposal_conv.convs.{}.bias", "proposal_conv.bn.{}.running_mean")


def is_noise_key(key, num_layers):
    return any(key == pattern.format(n) for pattern in NOISE_BIAS_KEYS for n in range(num_layers))


class MmnFixture:
    def __init__(self, folder=DEFAULT_DIR):
        self.folder = os.path.abspath(folder)
        self.config_file = os.path.join(self.folder, "config.yaml")
        if not os.path.isfile(self.config_file):
            raise FileNotFoundError(f"{self.config_file}: an MMN parity fixture holds its config.yaml")
        self.checkpoint = os.path.join(self.folder, "checkpoint_init.pth")
        self.expected_path = os.path.join(self.folder, "expected.pt")
        self.data_root = os.path.join(self.folder, "dataset")
        self._text_encoder = None

    def text_encoder_dir(self):
        """A from_pretrained directory of the fixture's text encoder, rebuilt once (tests/conftest.py)."""
        from conftest import build_parity_text_encoder

        if self._text_encoder is None:
            self._text_encoder = build_parity_text_encoder(tempfile.mkdtemp(prefix="mmn_fixture_"), self.checkpoint,
                                                           fixture_dir=self.folder)
        return self._text_encoder

    def cfg(self, *opts):
        from mmn.config import load_config

        return load_config(self.config_file, ["MODEL.MMN.TEXT_ENCODER.PRETRAINED", self.text_encoder_dir(),
                                              "MODEL.DEVICE", "cpu", "DATASETS.ROOT", self.data_root,
                                              "DATALOADER.NUM_WORKERS", 0, *opts])

    def load_expected(self):
        return torch.load(self.expected_path, map_location="cpu", weights_only=True)

    def datasets(self, cfg):
        from mmn.modeling import build_dataset

        return {"train": build_dataset(cfg, cfg.DATASETS.TRAIN[0]), "test": build_dataset(cfg, cfg.DATASETS.TEST[0])}

    def build_model(self, cfg):
        from mmn.modeling import build_model
        from mmn.utils.checkpoint import load_model_weights

        model = build_model(cfg)
        load_model_weights(model, self.checkpoint)
        return model


def iou_thresholds(cfg):
    from mmn.data.catalog import get_entry

    return get_entry(cfg, cfg.DATASETS.TEST[0]).iou_thresholds


def evaluation_record(cfg, dataset, contrastive, iou):
    """Top-5 moments per query and the recall table (with Best_R1 / Best_R5) of per-query score maps."""
    from mmn.modeling.mmn.ranking import evaluate_predictions

    thresholds = iou_thresholds(cfg)
    durations = torch.from_numpy(dataset.durations)[dataset.query_video_index()]
    metrics, top, _ = evaluate_predictions(contrastive, iou, durations, dataset.moments, thresholds,
                                           cfg.TEST.NMS_THRESH, cfg.TEST.CONTRASTIVE_SCORE_POW)
    recall = {k: float(v) for k, v in metrics.items() if k.startswith("R@")}
    for n in (1, 5):
        recall[f"Best_R{n}"] = sum(metrics[f"R@{n},IoU@{t:.1f}"] for t in thresholds) / len(thresholds)
    return [m[~torch.isnan(m[:, 0])] for m in top], recall


def replay(fx, cfg, steps, official_scores=None):
    """Our run of the fixture: per-video data, the starting model's evaluation of the whole test split as one
    batch, then the recorded training steps (``steps``: epoch and video indices of each) with our optimiser,
    schedule, frozen-BERT epochs and the engine's run_step; the weights after each epoch. ``official_scores``:
    (contrastive list, iou list) also evaluated by our evaluation alone. Returns the record in the form of
    expected.pt (plus ``eval_of_official_scores`` and per-step ``bias_grad``)."""
    from mmn.engine import run_step
    from mmn.modeling.mmn.data import MMNCollator

    datasets = fx.datasets(cfg)
    collate = MMNCollator(datasets["train"].pad_token_id)
    model = fx.build_model(cfg).eval()
    mask2d = model.mask2d.bool()
    record = {}
    for split, ds in datasets.items():
        rows = []
        for idx in range(len(ds)):
            item = ds[idx]
            targets = model.iou_targets(collate([item]))
            iou2d = torch.zeros(len(targets), *mask2d.shape)
            iou2d[:, mask2d] = targets
            start, end = ds.sentence_range(idx)
            rows.append({"vid": ds.vids[idx], "duration": float(item["duration"]), "sentences": ds.sentences[start:end],
                         "feats": item["feats"], "query": item["query"], "wordlen": item["wordlen"],
                         "moment": item["moment"], "iou2d": iou2d})
        record[f"{split}_data"] = rows

    test = datasets["test"]
    batch = collate([test[i] for i in range(len(test))])
    with torch.no_grad():
        featpool = model.featpool(batch.feats)
        map2d = model.feat2d(featpool)
        map2d_contrastive, map2d_iou = model.proposal_conv(map2d)
        sent_feat, sent_feat_iou = model.text_encoder(batch.queries, batch.wordlens)
        out = model(batch)
    top, recall = evaluation_record(cfg, test, out["contrastive"], out["iou"])
    record["eval"] = {"featpool": featpool, "map2d": map2d, "map2d_contrastive": map2d_contrastive,
                      "map2d_iou": map2d_iou, "sent_feat": batch.split_by_video(sent_feat),
                      "sent_feat_iou": batch.split_by_video(sent_feat_iou),
                      "contrastive_scores": batch.split_by_video(out["contrastive"]),
                      "iou_scores": batch.split_by_video(out["iou"]), "top5_moments": top, "recall": recall,
                      "mask2d": mask2d}
    if official_scores is not None:
        record["eval_of_official_scores"] = evaluation_record(cfg, test, torch.cat(official_scores[0]),
                                                              torch.cat(official_scores[1]))

    model = fx.build_model(cfg).train()
    optimizer, scheduler = model.build_optimizer(cfg)
    num_layers = cfg.MODEL.MMN.PREDICTOR.NUM_STACK_LAYERS
    out_steps, states = [], []
    epoch = steps[0]["epoch"]
    for k, step in enumerate(steps):
        if step["epoch"] != epoch:
            model.end_epoch(scheduler, {})
            epoch = step["epoch"]
        model.set_epoch(epoch)
        b = collate([datasets["train"][i] for i in step["video_indices"]])
        probe = copy.deepcopy(model)  # the gradients before clipping, from a copy (run_step reports losses)
        probe(b, epoch=epoch)["loss"].backward()
        bias_grad = max(p.grad.abs().max().item() for n, p in probe.named_parameters()
                        if is_noise_key(n, num_layers) and p.grad is not None)
        grad_norm = torch.nn.utils.clip_grad_norm_([p for p in probe.parameters() if p.grad is not None],
                                                   float("inf")).item()
        lrs = [g["lr"] for g in optimizer.param_groups]
        losses = run_step(model, b, optimizer, epoch)
        out_steps.append({"epoch": epoch, "video_indices": list(step["video_indices"]), "grad_norm": grad_norm,
                          "lr": lrs, "bias_grad": bias_grad, **{key: losses[key] for key in
                                                                ("loss", "loss_iou", "loss_vid", "loss_sent")}})
        if k + 1 == len(steps) or steps[k + 1]["epoch"] != epoch:
            states.append({n: v.detach().clone() for n, v in model.state_dict().items()})
    record["train_steps"] = out_steps
    record["state_after_epoch"] = states
    return record
