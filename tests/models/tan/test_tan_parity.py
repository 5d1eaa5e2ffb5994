"""2D-TAN: parity with the official microsoft/2D-TAN code on the fixture (tests/fixtures/tan_parity/README.md).

Data, collated batches and rankings exactly; tensors within 1e-5 (fp32, CPU); the training updates
(loss, gradient norm, learning rate, scheduler state, weights) within 1e-5.
"""
import copy

import pytest
import torch

from mmn.engine import run_step
from mmn.evaluation import recall_table
from mmn.modeling.tan import TAN
from mmn.modeling.tan.ranking import rank_candidates, top_moments

from tan_fixture import DATA_DIR, DEFAULT, TOL, build_model, entry, load_expected, official_charades, official_to_cfg

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def expected():
    return load_expected()


@pytest.fixture(scope="module")
def cfg(expected):
    return official_to_cfg(expected["config"])


@pytest.fixture(scope="module")
def datasets(cfg):
    return {split: TAN.build_dataset(cfg, entry(split), is_train=split == "train") for split in DEFAULT.splits}


def collate(dataset, indices):
    return dataset.collator()([dataset[k] for k in indices])


def max_diff(a, b):
    return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0


def assert_close(name, a, b, tol=TOL):
    assert a.shape == b.shape, f"{name}: shape {tuple(a.shape)} vs official {tuple(b.shape)}"
    diff = max_diff(a, b)
    assert diff <= tol, f"{name}: max abs diff {diff:.3g} > {tol}"


def assert_batch_equal(batch, official):
    assert torch.equal(batch.vis_input, official["vis_input"])
    assert torch.equal(batch.word_vectors, official["word_vectors"])
    assert torch.equal(batch.txt_mask, official["txt_mask"])
    assert torch.equal(batch.map_gt, official["map_gt"])
    assert batch.durations.tolist() == list(official["duration"])


# ---------------------------------------------------------------------------- annotations and data
@pytest.mark.parametrize("split", ["train", "test"])
def test_json_annotations_agree_with_official_txt(split, datasets, expected):
    """One annotation format serves both models: the JSON form gives the official queries, in order,
    with the official sentences (after the tokenizer's Charades rule) and times."""
    ds = datasets[split]
    official = official_charades(DATA_DIR, split)
    assert len(ds) == len(official) == len(expected["data"][split])
    for k, (vid, times, sentence, duration) in enumerate(official):
        assert ds.vids[k] == vid and ds.moments[k].tolist() == times and float(ds.durations[k]) == duration
        assert ds.tokens[k] == sentence.split() == expected["data"][split][k]["tokens"]


@pytest.mark.parametrize("split", ["train", "test"])
def test_items_exact(split, datasets, expected):
    """Per query: resampled features, word vectors (unknown words zero), IoU targets, all bit for bit."""
    ds = datasets[split]
    for k, official in enumerate(expected["data"][split]):
        item = ds[k]
        assert ds.vids[k] == official["video"] and ds.moments[k].tolist() == official["times"]
        assert item["duration"] == official["duration"]
        assert torch.equal(item["visual_input"], official["visual_input"]), f"query {k}: visual_input"
        assert torch.equal(item["word_vectors"], official["word_vectors"]), f"query {k}: word_vectors"
        assert torch.equal(item["map_gt"], official["map_gt"]), f"query {k}: map_gt"
        unknown = official["word_idxs"] == expected["vocab"]["unk_index"]
        assert (item["word_vectors"][unknown] == 0).all()


def test_unknown_words_are_exercised(datasets, expected):
    tokens = {t.lower() for ds in datasets.values() for ts in ds.tokens for t in ts}
    assert set(expected["vocab"]["oov"]) <= tokens


def test_collated_batches_exact(datasets, expected):
    assert_batch_equal(collate(datasets["test"], range(len(datasets["test"]))), expected["eval"]["batch"])
    for step in expected["steps"]:
        assert_batch_equal(collate(datasets["train"], step["anno_idxs"]), step["batch"])


# ---------------------------------------------------------------------------- eval forward
@pytest.fixture(scope="module")
def eval_outputs(cfg, datasets):
    model = build_model(cfg).eval()
    batch = collate(datasets["test"], range(len(datasets["test"])))
    with torch.no_grad():
        return model, batch, model.forward_outputs(batch), model(batch)


INTERMEDIATES = ["vis_h", "map_h", "map_mask", "txt_lstm", "txt_last", "txt_h", "fused_h", "map_conv_h", "prediction"]


@pytest.mark.parametrize("name", INTERMEDIATES)
def test_eval_intermediates(name, eval_outputs, expected):
    _, _, out, _ = eval_outputs
    assert_close(name, out[name], expected["eval"][name])


def test_pred_unmasked(eval_outputs, expected):
    """Before the mask the masked cells hold logits up to 32: compared at 1e-5 relative to max(1, |x|)."""
    _, _, out, _ = eval_outputs
    ref = expected["eval"]["pred_unmasked"]
    rel = ((out["pred_unmasked"] - ref).abs() / ref.abs().clamp(min=1)).max().item()
    assert rel <= TOL, f"pred_unmasked: relative diff {rel:.3g}"


def test_map_conv_layers(eval_outputs, expected):
    model, _, out, _ = eval_outputs
    official = expected["eval"]["map_conv_layers"]
    assert len(out["map_conv_layers"]) == len(official)
    for k, (conv_out, weight, ref) in enumerate(zip(out["map_conv_layers"], model.map_layer.masked_weights(), official)):
        assert_close(f"layer {k} conv_out", conv_out, ref["conv_out"])
        assert torch.equal(weight.expand_as(ref["masked_weight"][:, 0])[:, None], ref["masked_weight"])
        assert torch.equal((weight > 0).expand_as(ref["padded_mask"][:, 0])[:, None], ref["padded_mask"])


def test_loss_and_joint_prob(eval_outputs, expected):
    _, _, _, out = eval_outputs
    assert abs(out["loss"].item() - expected["eval"]["loss"]) <= TOL
    assert_close("joint_prob", out["joint_prob"], expected["eval"]["joint_prob"][:, 0])
    masked = expected["eval"]["map_mask"][:, 0] == 0
    assert (out["joint_prob"][masked] == 0).all()


# ---------------------------------------------------------------------------- rankings and recall
def assert_summary(summary, joint_prob, dataset, cfg, loss=None):
    durations = dataset.query_durations()
    times, _, _ = rank_candidates(joint_prob, durations)
    for q, (official, n_scored) in enumerate(zip(summary["sorted_times"], summary["n_scored"])):
        official = torch.tensor(official, dtype=torch.float64)
        assert torch.equal(times[q, :n_scored].double(), official[:n_scored]), f"query {q}: ranked candidates"
        # the zero-score tail: numpy's tie order is build-dependent, so as a set
        assert sorted(times[q, n_scored:].double().tolist()) == sorted(official[n_scored:].tolist())
    moments, _ = top_moments(joint_prob, durations, cfg.TEST.NMS_THRESH, k=max(summary["recalls"]))
    for q, official in enumerate(summary["top_moments"]):
        assert torch.equal(moments[q, :len(official)], torch.tensor(official, dtype=torch.float64)), f"query {q}: NMS"
    table = recall_table(moments, dataset.query_moments(), summary["tious"], summary["recalls"], strict=True)
    q = len(summary["top_moments"])
    for i, tiou in enumerate(summary["tious"]):
        for j, r in enumerate(summary["recalls"]):
            ours, official = table[f"R@{r},IoU@{tiou:.1f}"], summary["table"][i, j].item()
            # the same hits; the shared table averages them in float32, the official numpy in float64
            assert round(ours * q) == round(official * q) and ours == float(torch.tensor(official).float())
    assert table["mIoU"] == pytest.approx(summary["miou"], abs=1e-12)
    if loss is not None:
        assert abs(loss - summary["loss"]) <= TOL


def test_rankings_nms_recall_exact(eval_outputs, datasets, expected, cfg):
    _, _, _, out = eval_outputs
    assert_summary(expected["eval"]["summary"], out["joint_prob"], datasets["test"], cfg, out["loss"].item())


def test_rank_moments_contract(eval_outputs, expected):
    model, batch, _, out = eval_outputs
    ranked = model.rank_moments(out, batch, 5)
    official = expected["eval"]["summary"]["top_moments"]
    assert ranked.moments.shape == (len(official), 5, 2) and ranked.scores.shape == (len(official), 5)
    for q in range(len(official)):
        assert torch.equal(ranked.moments[q], torch.tensor(official[q], dtype=torch.float64))
    assert (ranked.scores[:, :-1] >= ranked.scores[:, 1:]).all()
    assert torch.equal(ranked.score_maps, out["joint_prob"])


# ---------------------------------------------------------------------------- training updates
STEPS = range(len(load_expected()["steps"]))


@pytest.fixture(scope="module")
def training(cfg, datasets, expected):
    """The official loop's updates (the recorded batches) replayed with the model's own optimiser and the engine's
    run_step."""
    model = build_model(cfg).train()
    optimizer, scheduler = model.build_optimizer(cfg)
    records, grads = [], None
    for k, indices in enumerate(step["anno_idxs"] for step in expected["steps"]):
        batch = collate(datasets["train"], indices)
        lr = [g["lr"] for g in optimizer.param_groups]
        # the update's gradients before clipping and their norm, from a copy (the engine's run_step,
        # forward -> loss -> backward -> clip -> step, reports the losses only)
        probe = copy.deepcopy(model)
        probe(batch)["loss"].backward()
        probe_grads = {n: p.grad.clone() for n, p in probe.named_parameters()}
        grad_norm = torch.nn.utils.clip_grad_norm_(probe.parameters(), float("inf")).item()
        grads = probe_grads if k == 0 else grads
        result = run_step(model, batch, optimizer, epoch=1)
        model.end_epoch(scheduler, {"loss": result["loss"]})  # NO_VAL: no validation loss, no step
        records.append(dict(result, grad_norm=grad_norm, lr=lr, lr_next=[g["lr"] for g in optimizer.param_groups],
                            scheduler={k2: v for k2, v in scheduler.state_dict().items()},
                            state={n: v.clone() for n, v in model.state_dict().items()}))
        if expected["steps"][k]["evals"]:
            records[-1]["model_after"] = copy.deepcopy(model).eval()
    return records, grads


def test_first_gradients(training, expected):
    _, grads = training
    assert sorted(grads) == sorted(expected["grads_step1"])
    for name, ref in expected["grads_step1"].items():
        assert_close(f"grad {name}", grads[name], ref)


@pytest.mark.parametrize("step", STEPS)
def test_training_updates(step, training, expected):
    records, _ = training
    ours, official = records[step], expected["steps"][step]
    assert abs(ours["loss"] - official["loss"]) <= TOL
    assert abs(ours["grad_norm"] - official["grad_norm"]) <= TOL
    assert ours["lr"] == official["lr"] and ours["lr_next"] == official["lr_next"]
    for key, value in official["scheduler"].items():
        assert ours["scheduler"][key] == value, f"scheduler {key}"
    assert sorted(ours["state"]) == sorted(official["state"])
    for name, ref in official["state"].items():
        assert_close(f"step {step + 1} {name}", ours["state"][name], ref)


def test_evaluations_at_the_test_interval(training, datasets, expected, cfg):
    """train.py's evaluations at its test interval (int(N / B x TEST.INTERVAL) updates: after update 2 here):
    the train split (EVAL_TRAIN) then the test split (NO_VAL), with the model trained here."""
    records, _ = training
    interval = DEFAULT.test_interval(len(datasets["train"]))
    due = [s["t"] for s in expected["steps"] if s["t"] % interval == 0]
    assert [s["t"] for s in expected["steps"] if s["evals"]] == due == [2]
    k = due[0] - 1
    model = records[k]["model_after"]
    evals = expected["steps"][k]["evals"]
    assert [e["split"] for e in evals] == ["train", "test"]
    for summary in evals:
        ds = datasets[summary["split"]]
        with torch.no_grad():
            out = model(collate(ds, range(len(ds))))
        assert_summary(summary, out["joint_prob"], ds, cfg, out["loss"].item())


def test_sharded_update_equals_the_whole_batch(cfg, datasets):
    """SOLVER.NUM_SHARDS: two equal shards give the whole batch's update (2D-TAN's loss is a mean over
    the cells of the batch, and equal shards hold equally many)."""
    whole, sharded = build_model(cfg).train(), build_model(cfg).train()
    indices = load_expected()["steps"][0]["anno_idxs"]
    assert len(indices) % 2 == 0
    batch = collate(datasets["train"], indices)
    half = len(indices) // 2
    shards = [collate(datasets["train"], indices[:half]), collate(datasets["train"], indices[half:])]
    for model, b in ((whole, batch), (sharded, shards)):
        optimizer, _ = model.build_optimizer(cfg)
        run_step(model, b, optimizer, 1)
    # TOL, not tighter: Adam moves a weight whose gradient is ~0 by about lr x g / eps, so float rounding of
    # the sharded sum reaches the weights amplified (1.3e-6 seen on one CPU; the fixture README)
    for (name, a), b in zip(whole.state_dict().items(), sharded.state_dict().values()):
        assert_close(f"sharded {name}", a, b)
