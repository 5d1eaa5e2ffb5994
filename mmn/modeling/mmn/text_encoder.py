"""Sentence encoder: a pretrained BERT-family model, mean over tokens, LayerNorm, two projections."""
import torch
from torch import nn

from .tokenization import from_pretrained


def load_pretrained_encoder(name_or_path):
    """``AutoModel.from_pretrained``: DistilBERT for the official setup, any BERT-family encoder works."""
    from transformers import AutoModel

    return from_pretrained(AutoModel, name_or_path, "text encoder")


class SentenceEncoder(nn.Module):
    """Official ``DistilBert`` text encoder (attribute names kept for checkpoint compatibility),
    run on all sentences of the batch at once instead of one video at a time."""

    def __init__(self, bert, joint_space_size):
        super().__init__()
        self.bert = bert
        hidden = getattr(bert.config, "dim", None) or bert.config.hidden_size
        self.fc_out1 = nn.Linear(hidden, joint_space_size)  # iou branch
        self.fc_out2 = nn.Linear(hidden, joint_space_size)  # contrastive branch
        self.layernorm = nn.LayerNorm(hidden)

    def forward(self, queries, wordlens):
        """queries: S x L token ids, wordlens: S -> (contrastive features, iou features), S x JOINT each."""
        positions = torch.arange(queries.shape[1], device=queries.device)
        attention_mask = (positions[None, :] < wordlens[:, None]).float()
        encoding = self.bert(queries, attention_mask=attention_mask)[0]  # S x L x hidden
        # average over the first wordlen tokens ([CLS] and [SEP] included), as the official code
        avg_weights = attention_mask / wordlens[:, None]
        sentence = self.layernorm((encoding * avg_weights[..., None]).sum(dim=1))
        return self.fc_out2(sentence), self.fc_out1(sentence)


def build_text_encoder(cfg):
    bert = load_pretrained_encoder(cfg.MODEL.MMN.TEXT_ENCODER.PRETRAINED)
    return SentenceEncoder(bert, cfg.MODEL.MMN.JOINT_SPACE_SIZE)
