"""2D-TAN's frame module (``FrameAvgPool``): clip features -> T clip features of the moment map."""
from torch import nn


class FrameAvgPool(nn.Module):
    """ReLU(Conv1d(D, H, 1)) then AvgPool1d(KERNEL_SIZE, STRIDE) over time (official ``frame_pool.py``)."""

    def __init__(self, input_size, hidden_size, kernel_size, stride):
        super().__init__()
        self.vis_conv = nn.Conv1d(input_size, hidden_size, 1, 1)
        self.avg_pool = nn.AvgPool1d(kernel_size, stride)

    def forward(self, visual_input):
        """visual_input: B x D x N (already transposed, as the official TAN.forward does) -> B x H x T."""
        return self.avg_pool(self.vis_conv(visual_input).relu())
