"""A tiny MMN checkpoint trained on CLIP features of generated videos, for the tests of video prediction
and of the page: a random CLIP vision tower with ViT-B/32's 512-d projection (so the shipped
configs/pool_clip_b32_fps05.yaml is used with its FEATPOOL.INPUT_SIZE), a random 1-layer BERT with a
tokenizer of a small vocabulary, and the model shrunk by overrides. Nothing is downloaded.
"""
import json
import os

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs", "pool_clip_b32_fps05.yaml")
FPS = 2.0  # a rate for seconds-long test videos (the config's 0.5 is for real ones)
WORDS = "a person opens the door sits down on chair drinks from cup reads book walks to window".split()
SENTENCES = ["a person opens the door", "the person sits down on a chair", "a person drinks from a cup",
             "the person reads a book", "a person walks to the window"]


def save_tiny_bert(target_dir):
    """A from_pretrained directory of a random 1-layer BERT and a WordPiece tokenizer of WORDS."""
    from transformers import BertConfig, BertModel, BertTokenizer

    os.makedirs(target_dir, exist_ok=True)
    vocab = os.path.join(target_dir, "vocab.txt")
    with open(vocab, "w") as f:
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS))]) + "\n")
    BertTokenizer(vocab).save_pretrained(target_dir)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(set(WORDS)) + 5, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(target_dir)
    return target_dir


def tiny_model_opts(clip_dir, bert_dir, output_dir, catalog_file):
    """Overrides of configs/pool_clip_b32_fps05.yaml: the test's encoders, a small model, one CPU epoch."""
    return ["DATASETS.CATALOG_FILE", str(catalog_file), "INPUT.VIDEO.ENCODER", clip_dir, "INPUT.VIDEO.FPS", FPS,
            "MODEL.MMN.TEXT_ENCODER.PRETRAINED", bert_dir, "MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(output_dir),
            "MODEL.MMN.FEATPOOL.HIDDEN_SIZE", 32, "MODEL.MMN.JOINT_SPACE_SIZE", 32,
            "MODEL.MMN.PREDICTOR.HIDDEN_SIZE", 32, "MODEL.MMN.PREDICTOR.NUM_STACK_LAYERS", 1,
            "SOLVER.BATCH_SIZE", 2, "SOLVER.MAX_EPOCH", 1, "SOLVER.MILESTONES", "(5,)", "TEST.BATCH_SIZE", 2,
            "DATALOADER.NUM_WORKERS", 0]


def train_tiny_video_checkpoint(root, num_videos=3):
    """Generate ``num_videos`` videos, extract their features with a tiny random CLIP (mmn.video), train
    one epoch of a small MMN on them; returns {"ckpt", "clip", "bert", "videos"} (paths)."""
    from mmn.config import load_config
    from mmn import engine
    from mmn.video.encoder import load_image_encoder
    from mmn.video.extract import extract_videos
    from mmn.video.synthetic import constant_rate_times, save_random_clip, write_video

    root = str(root)
    videos = []
    for k in range(num_videos):
        path = os.path.join(root, f"train{k}.mp4")
        write_video(path, constant_rate_times(5.0 + k, 10), rate=10)
        videos.append((f"train{k}", path))
    clip = save_random_clip(os.path.join(root, "clip"), "tiny", projection_dim=512)
    bert = save_tiny_bert(os.path.join(root, "bert"))
    summary = extract_videos(videos, os.path.join(root, "feats.hdf5"), load_image_encoder(clip, "cpu", batch_size=8),
                             FPS, progress=False)
    assert not summary.failed, summary.failed
    ann = {vid: {"duration": round(d, 3), "timestamps": [[0.0, d / 2], [d / 3, d]],
                 "sentences": [SENTENCES[k % 5], SENTENCES[(k + 2) % 5]]}
           for k, (vid, d) in enumerate(sorted(summary.durations.items()))}
    for split in ("train", "test"):
        with open(os.path.join(root, f"{split}.json"), "w") as f:
            json.dump(ann, f)
    catalog = os.path.join(root, "catalog.yaml")
    with open(catalog, "w") as f:
        f.write("tiny_train: {format: charades, ann_file: train.json, feat_file: feats.hdf5}\n"
                "tiny_test: {format: charades, ann_file: test.json, feat_file: feats.hdf5}\n")
    out = os.path.join(root, "run")
    opts = tiny_model_opts(clip, bert, out, catalog) + ["DATASETS.TRAIN", "('tiny_train',)", "DATASETS.TEST",
                                                        "('tiny_test',)"]
    engine.train(load_config(CONFIG, [str(v) for v in opts]), torch.device("cpu"))
    return {"ckpt": os.path.join(out, "model_1e.pth"), "clip": clip, "bert": bert, "videos": [p for _, p in videos]}
