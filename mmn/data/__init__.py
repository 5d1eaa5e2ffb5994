"""Data shared by every model: annotation adapters, the dataset catalog, feature readers (HDF5, npz folders),
GloVe, the dataset protocol and the loaders. Knows no model: a catalog entry becomes a model's dataset in the
model registry (``mmn.modeling.build_dataset``)."""
from . import qvhighlights  # noqa: F401  registers the "qvhighlights" annotation format
from .annotations import AnnotationError, load_annotations
from .catalog import DatasetEntry, dataset_entry, get_entry
from .features import FeatureError
from .loader import make_data_loader

__all__ = ["AnnotationError", "DatasetEntry", "FeatureError", "dataset_entry", "get_entry", "load_annotations",
           "make_data_loader"]
