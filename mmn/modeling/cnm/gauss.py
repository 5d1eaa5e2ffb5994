"""Gaussian proposal masks and the moments they stand for."""
import torch


def gaussian_mask(center, width, num_positions, alpha, min_width=0.1):
    """Positive mask m_p (eq. 4 as coded): B x P weights exp(-alpha (t_i - c)^2 / max(w, min_width)^2).

    t_i = linspace(0, 1, P) = i / (P - 1) (the paper writes i / N with i = 1..N); the width is
    clamped below at ``min_width`` (0.1 in the release) so a collapsed proposal keeps a usable mask.
    """
    pos = torch.linspace(0, 1, num_positions, device=center.device, dtype=center.dtype)
    pos = pos.view(1, -1).expand(center.size(0), -1)
    c = center.unsqueeze(-1)
    w = width.unsqueeze(-1).clamp(min_width)
    return torch.exp(-alpha * (pos - c).pow(2) / w.pow(2))


def easy_negative_mask(positive):
    """m_e = 1 - m_p (eq. 5)."""
    return 1 - positive


def moments_from_gaussian(center, width):
    """Normalised (s, e) = (max(c - w/2, 0), min(c + w/2, 1)) (eq. 15): B x 2."""
    return torch.stack([torch.clamp(center - width / 2, min=0), torch.clamp(center + width / 2, max=1)], dim=-1)
