"""SOLVER.NUM_SHARDS, MODEL.MMN.LOSS.GLOBAL_NEGATIVES and MODEL.SYNC_BN on 2 CPU processes (gloo): the
paper's multi-GPU experiment on any number of processes, a GPU-count-free alternative, exact resume
under torchrun, and an evaluation independent of the batch size and of the number of processes."""
import json
import os

import pytest
import torch

from helpers.launcher import run_script

from helpers.paths import HELPERS_DIR, PARITY_DIR as PARITY

HELPER = os.path.join(HELPERS_DIR, "shard_run.py")
TOL = 1e-5


def run(text_encoder, out, *opts, processes=1, resume=False):
    """The helper in one process or under torchrun; returns its steps.pt."""
    run_script([HELPER, text_encoder, str(out), *(["--resume"] if resume else []), *opts], processes=processes)
    return torch.load(os.path.join(out, "steps.pt"), weights_only=False)


def rounding_driven(key):
    """The proposal convs' biases feed a training-mode BatchNorm: their gradient is analytically zero, so
    Adam steps them by the sign of float rounding noise (see tests/test_parity.py), and the BatchNorm
    running means follow them. Two computations that differ only in summation order differ there."""
    return key.startswith("proposal_conv.convs.") and key.endswith(".bias") or (
        key.startswith("proposal_conv.bn.") and key.endswith(".running_mean"))


def max_step_diff(a, b):
    """Largest difference of losses and gradients over the updates of two runs, and of the final weights
    (but for the rounding-driven ones)."""
    assert len(a["steps"]) == len(b["steps"]) > 0
    worst = 0.0
    for x, y in zip(a["steps"], b["steps"]):
        assert x["losses"].keys() == y["losses"].keys() and x["grads"].keys() == y["grads"].keys()
        worst = max([worst] + [abs(x["losses"][k] - y["losses"][k]) for k in x["losses"]]
                    + [(x["grads"][k] - y["grads"][k]).abs().max().item() for k in x["grads"]])
    weights = max((a["weights"][k].double() - b["weights"][k].double()).abs().max().item() for k in a["weights"]
                  if not rounding_driven(k))
    return worst, weights


@pytest.fixture(scope="module")
def runs(parity_text_encoder_dir, tmp_path_factory):
    """One epoch (2 updates of a 4-video batch) per setting; the parity text encoder has no dropout."""
    base = tmp_path_factory.mktemp("shards")
    te = parity_text_encoder_dir
    return {
        "ddp2": run(te, base / "ddp2", processes=2),
        "shards2": run(te, base / "shards2", "SOLVER.NUM_SHARDS", "2"),
        "global_ddp2": run(te, base / "global_ddp2", "MODEL.MMN.LOSS.GLOBAL_NEGATIVES", "True", "MODEL.SYNC_BN",
                           "True", processes=2),
        "one": run(te, base / "one", "SOLVER.NUM_SHARDS", "1"),
        "global_shards2": run(te, base / "global_shards2", "MODEL.MMN.LOSS.GLOBAL_NEGATIVES", "True",
                              "SOLVER.NUM_SHARDS", "2"),
        "global_only_ddp2": run(te, base / "global_only_ddp2", "MODEL.MMN.LOSS.GLOBAL_NEGATIVES", "True",
                                processes=2),
    }


@pytest.mark.slow
def test_one_process_with_two_shards_is_ddp_over_two_processes(runs):
    steps, weights = max_step_diff(runs["ddp2"], runs["shards2"])
    assert steps <= TOL and weights <= TOL, (steps, weights)


@pytest.mark.slow
def test_global_negatives_and_sync_bn_make_training_independent_of_the_processes(runs):
    steps, weights = max_step_diff(runs["global_ddp2"], runs["one"])
    assert steps <= TOL and weights <= TOL, (steps, weights)


@pytest.mark.slow
def test_global_negatives_with_per_shard_batchnorm_in_one_process_is_ddp_over_two(runs):
    # negatives from the whole batch, BatchNorm statistics per shard: the paper's BatchNorm, global negatives
    steps, weights = max_step_diff(runs["global_only_ddp2"], runs["global_shards2"])
    assert steps <= TOL and weights <= TOL, (steps, weights)
    first = runs["global_shards2"]["steps"][0]["losses"], runs["shards2"]["steps"][0]["losses"]
    assert abs(first[0]["loss_vid"] - first[1]["loss_vid"]) > 1e-3  # the negatives changed


@pytest.mark.slow
def test_the_two_settings_really_differ(runs):
    # per-shard negatives and BatchNorm statistics vs the whole batch's: other losses from the first update
    first = runs["shards2"]["steps"][0]["losses"], runs["one"]["steps"][0]["losses"]
    assert abs(first[0]["loss_vid"] - first[1]["loss_vid"]) > 1e-3
    assert abs(first[0]["loss_iou"] - first[1]["loss_iou"]) > 1e-4
    _, weights = max_step_diff(runs["shards2"], runs["one"])
    assert weights > 1e-3


@pytest.mark.slow
def test_resume_under_torchrun_is_exact_with_dropout(dropout_text_encoder, tmp_path):
    straight = run(dropout_text_encoder, tmp_path / "straight", "SOLVER.MAX_EPOCH", "2", processes=2)
    run(dropout_text_encoder, tmp_path / "resumed", "SOLVER.MAX_EPOCH", "1", processes=2)
    resumed = run(dropout_text_encoder, tmp_path / "resumed", "SOLVER.MAX_EPOCH", "2", processes=2, resume=True)
    for key, value in straight["weights"].items():
        assert torch.equal(value, resumed["weights"][key]), key

    def records(run_dir):
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "time_s"} for line in lines]

    assert records(tmp_path / "straight") == records(tmp_path / "resumed")


def test_shard_count_must_fit_the_processes_and_the_batch(parity_cfg):
    from mmn.config import load_config
    from mmn.config.loading import ConfigError
    from mmn.data.loader import num_shards

    assert num_shards(parity_cfg) == 1
    cfg = load_config(os.path.join(PARITY, "config.yaml"), ["SOLVER.BATCH_SIZE", "4", "SOLVER.NUM_SHARDS", "3"])
    with pytest.raises(ConfigError, match="SOLVER.BATCH_SIZE 4 is not divisible by the 3 shards"):
        num_shards(cfg)


def test_sharded_collate_gives_each_shard_what_a_process_would_get():
    from mmn.data.loader import ShardedCollate
    from mmn.data.samplers import EpochShuffleSampler

    order = list(EpochShuffleSampler(10, shuffle=True, seed=1, world_size=1, pad_to=4))
    per_process = [list(EpochShuffleSampler(10, shuffle=True, seed=1, rank=r, world_size=4)) for r in range(4)]
    batches = [order[i:i + 8] for i in range(0, len(order), 8)]  # global batch 8 = 4 shards of 2
    shards = [ShardedCollate(list, 4)(batch) for batch in batches]
    for r in range(4):
        assert [x for batch in shards for x in batch[r]] == per_process[r]


@pytest.mark.slow
def test_evaluation_is_independent_of_the_batch_size_and_the_processes(parity_cfg, tmp_path):
    from mmn.data import make_data_loader
    from mmn.modeling import build_dataset
    from mmn.engine.inference import evaluate
    from mmn.modeling import build_model
    from mmn.utils.checkpoint import load_model_weights

    model = build_model(parity_cfg)
    load_model_weights(model, os.path.join(PARITY, "checkpoint_init.pth"))
    dataset = build_dataset(parity_cfg, "charades_test")
    results = []
    for batch_size in ("1", "4", "64"):
        cfg = parity_cfg.clone()
        cfg.defrost()
        cfg.TEST.BATCH_SIZE = int(batch_size)
        results.append(evaluate(cfg, model, make_data_loader(cfg, dataset, is_train=False), torch.device("cpu")))
    # the same table and moments; the scores up to float rounding (the text encoder pads to each batch's longest)
    for metrics, moments, scores in results[1:]:
        assert metrics == results[0][0]
        assert torch.equal(moments.nan_to_num(-1), results[0][1].nan_to_num(-1))
        assert torch.allclose(scores, results[0][2], atol=1e-5)
    # two processes (test_net.py under torchrun) give the same table and the same top-5
    out = tmp_path / "res.json"
    run_script(["test_net.py", "--config-file", os.path.join(PARITY, "config.yaml"), "--ckpt", os.path.join(PARITY, "checkpoint_init.pth"),
           "--out", str(out), "MODEL.DEVICE", "cpu", "MODEL.MMN.TEXT_ENCODER.PRETRAINED",
           parity_cfg.MODEL.MMN.TEXT_ENCODER.PRETRAINED, "DATASETS.ROOT", os.path.join(PARITY, "dataset"),
           "OUTPUT_DIR", str(tmp_path), "TEST.BATCH_SIZE", "2"], processes=2, timeout=300)
    result = json.loads(out.read_text())
    assert result["metrics"] == results[0][0]
    for q, query in enumerate(result["queries"]):
        kept = torch.isfinite(results[0][2][q])
        top = torch.tensor(query["top5"], dtype=torch.float64)
        assert top[:, :2].tolist() == [[round(x, 4) for x in row] for row in results[0][1][q][kept].tolist()]
        assert torch.allclose(top[:, 2], results[0][2][q][kept].double(), atol=1e-4)


@pytest.mark.slow
def test_cnm_under_torchrun_keeps_both_parameter_groups_in_sync(tmp_path):
    from mmn.demo import write_synthetic_charades

    write_synthetic_charades(str(tmp_path / "data"), num_train_videos=16, num_test_videos=4, feat_dim=128, seed=0)
    run_script([os.path.join(HELPERS_DIR, "cnm_ddp.py"), str(tmp_path / "data"), str(tmp_path / "out")],
               processes=2)
    result = torch.load(tmp_path / "out" / "cnm_ddp.pt", weights_only=False)
    assert result["world"] == 2
    rank0, rank1 = result["ranks"]
    assert torch.equal(rank0, rank1)  # generator (fc_mask_gen) and reconstructor alike
    # and they are the weights rank 0 saved, trained (not the initial ones)
    from mmn.config import load_config
    from mmn.demo.__main__ import DEMO_MODELS
    from mmn.modeling import build_model
    from mmn.utils.checkpoint import load_model_weights

    model = build_model(load_config(DEMO_MODELS["cnm"][0]))
    initial = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    load_model_weights(model, str(tmp_path / "out" / "model_1e.pth"))
    saved = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert torch.equal(saved, rank0) and not torch.equal(initial, rank0)
