"""From video files to clip features: PyAV decoding at a fixed rate (``decode``), a CLIP image encoder
(``encoder``) and the HDF5 writer / ``mmn-extract`` CLI (``extract``)."""
from .decode import SampledVideo, VideoDecodeError, num_samples
from .encoder import DEFAULT_ENCODER, ImageEncoder, ImageEncoderLoadError, load_image_encoder
from .extract import ExtractionInputError, ExtractionSummary, collect_videos, extract_videos

__all__ = ["SampledVideo", "VideoDecodeError", "num_samples", "DEFAULT_ENCODER", "ImageEncoder",
           "ImageEncoderLoadError", "load_image_encoder", "ExtractionInputError", "ExtractionSummary",
           "collect_videos", "extract_videos"]
