"""2D-TAN's sentence encoder and fusion (official ``base_fusion.py``): a multi-layer LSTM over the GloVe
vectors, the state of the last real word, ``tex_linear``, a 1x1 conv over the map, Hadamard product and
L2 normalisation over channels."""
import torch
import torch.nn.functional as F
from torch import nn


class BaseFusion(nn.Module):
    def __init__(self, hidden_size, txt_input_size, txt_hidden_size, num_layers=3, bidirectional=False):
        super().__init__()
        self.textual_encoder = nn.LSTM(txt_input_size, txt_hidden_size // 2 if bidirectional else txt_hidden_size,
                                       num_layers=num_layers, bidirectional=bidirectional, batch_first=True)
        self.tex_linear = nn.Linear(txt_hidden_size, hidden_size)
        self.vis_conv = nn.Conv2d(hidden_size, hidden_size, 1, 1)

    def encode_text(self, textual_input, textual_mask):
        """(LSTM outputs B x L x C before the mask, state of the last real word B x C, txt_h B x H).

        The padded sequence is run as it is (no packing, as the official code): a unidirectional
        LSTM's state at a real word does not see the padding; a bidirectional one's backward half does.
        """
        lstm_out = self.textual_encoder(textual_input)[0]
        masked = lstm_out * textual_mask
        last = textual_mask.sum(dim=(1, 2)).long() - 1  # per query, the position of its last real word
        txt_last = masked[torch.arange(masked.shape[0], device=masked.device), last]
        return lstm_out, txt_last, self.tex_linear(txt_last)

    def forward(self, textual_input, textual_mask, map_h, map_mask, return_text=False):
        """-> fused map B x H x T x T (zero outside ``map_mask``); with ``return_text`` also the text states."""
        lstm_out, txt_last, txt_h = self.encode_text(textual_input, textual_mask)
        fused_h = F.normalize(txt_h[:, :, None, None] * self.vis_conv(map_h)) * map_mask
        return (fused_h, (lstm_out, txt_last, txt_h)) if return_text else fused_h
