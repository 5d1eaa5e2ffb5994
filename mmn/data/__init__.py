"""Data: annotation adapters, HDF5 features, tokenisation, the dataset, batching and loaders."""
from .annotations import AnnotationError, load_annotations
from .build import build_dataset, make_data_loader
from .collate import BatchCollator
from .dataset import TLGDataset
from .features import FeatureError

__all__ = ["AnnotationError", "FeatureError", "BatchCollator", "TLGDataset", "build_dataset",
           "load_annotations", "make_data_loader"]
