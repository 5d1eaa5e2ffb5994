"""Where things are, for every test wherever its file sits: the repository, its configs and dataset folders,
the tests' fixtures and helper scripts."""
import os

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_ROOT = os.path.dirname(TESTS_DIR)
CONFIGS_DIR = os.path.join(REPO_ROOT, "configs")
DATASET_DIR = os.path.join(REPO_ROOT, "dataset")
FIXTURES_DIR = os.path.join(TESTS_DIR, "fixtures")
PARITY_DIR = os.path.join(FIXTURES_DIR, "parity")
HELPERS_DIR = os.path.join(TESTS_DIR, "helpers")
SHARED_DIR = os.path.join(os.path.dirname(REPO_ROOT), "shared")  # ../shared beside the clone, when there is one
