"""Data shared by every model: annotation adapters, the dataset catalog, HDF5 features, GloVe, loaders."""
from . import qvhighlights  # noqa: F401  registers the "qvhighlights" annotation format
from .annotations import AnnotationError, load_annotations
from .build import build_dataset, make_data_loader
from .catalog import DatasetEntry, get_entry
from .features import FeatureError

__all__ = ["AnnotationError", "DatasetEntry", "FeatureError", "build_dataset", "get_entry", "load_annotations",
           "make_data_loader"]
