"""The extractor recorded in an mmn-extract feature file, checked against the config's INPUT.VIDEO.

A checkpoint predicts on video files with the extractor its config names (INPUT.VIDEO.ENCODER at
INPUT.VIDEO.FPS). Training on mmn-extract features under other values would record a wrong extractor
and predictions on videos would silently see other rows than training did, so the dataset dispatch
(``mmn.modeling.build_dataset``) checks the feature file's attributes (``encoder``, ``fps``, written by ``mmn.video.extract.FeatureFile``):
another FPS is an error; an empty or different ENCODER a warning (a local copy of the same model is a
different name for the same extractor). Files without these attributes (features made elsewhere) are
not checked.
"""
import logging
import math
import os

from ..utils.errors import ConfigError

logger = logging.getLogger("mmn")


def recorded_extractor(feat_file):
    """``(encoder, fps)`` written by mmn-extract into ``feat_file``; None for other files (or no file)."""
    import h5py

    if not os.path.isfile(feat_file):
        return None
    try:
        with h5py.File(feat_file, "r") as f:
            if "encoder" not in f.attrs or "fps" not in f.attrs:
                return None
            encoder = f.attrs["encoder"]
            return (encoder.decode() if isinstance(encoder, bytes) else str(encoder)), float(f.attrs["fps"])
    except OSError:
        return None  # not an HDF5 file: the feature reader reports it with its own message


def check_video_extractor(cfg, feat_file):
    """Raise ConfigError when ``feat_file`` was extracted at another rate than INPUT.VIDEO.FPS; warn when
    INPUT.VIDEO.ENCODER is empty or names another encoder than the one recorded in the file."""
    recorded = recorded_extractor(feat_file)
    if recorded is None:
        return
    encoder, fps = recorded
    video = cfg.INPUT.VIDEO
    if not math.isclose(fps, video.FPS, rel_tol=1e-9):
        raise ConfigError(
            f"{feat_file}: features extracted by mmn-extract at fps {fps:g}, but INPUT.VIDEO.FPS is {video.FPS:g}: "
            f"set INPUT.VIDEO.FPS {fps:g} (and the model's clip counts to match, see "
            "configs/pool_clip_b32_fps05.yaml), so that predictions on video files see the rows training saw")
    if not video.ENCODER:
        logger.warning("%s: features extracted by mmn-extract with %s, but INPUT.VIDEO.ENCODER is empty: this run's "
                       "checkpoints cannot predict on video files; set INPUT.VIDEO.ENCODER %s", feat_file, encoder,
                       encoder)
    elif video.ENCODER != encoder:
        logger.warning("%s: features extracted with encoder %s, but INPUT.VIDEO.ENCODER is %s: predictions on video "
                       "files will use the latter (fine if it is a copy of the same model)", feat_file, encoder,
                       video.ENCODER)
