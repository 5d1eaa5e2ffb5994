"""Data shared by every model: annotation adapters, the dataset catalog, HDF5 features, GloVe, the dataset
protocol and the loaders. Knows no model: a catalog entry becomes a model's dataset in the model registry
(``mmn.modeling.build_dataset``)."""
from .annotations import AnnotationError, load_annotations
from .catalog import DatasetEntry, dataset_entry, get_entry
from .features import FeatureError
from .loader import make_data_loader

__all__ = ["AnnotationError", "DatasetEntry", "FeatureError", "dataset_entry", "get_entry", "load_annotations",
           "make_data_loader"]
