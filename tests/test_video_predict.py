

@pytest.mark.parametrize("name", ["pool_clip_b32_fps05.yaml", "pool_clip_b32_fps05_long.yaml"])
def test_the_clip_configs_load_with_a_catalog_and_record_the_extractor(tmp_path, name):
    (tmp_path / "catalog.yaml").write_text(
        "mydata_train: {format: charades, ann_file: train.json, feat_file: feats.hdf5}\n"
        "mydata_test: {format: charades, ann_file: test.json, feat_file: feats.hdf5}\n")
    cfg = load_config(os.path.join(ROOT, "configs", name), ["DATASETS.CATALOG_FILE", str(tmp_path / "catalog.yaml")])
    assert cfg.MODEL.MMN.FEATPOOL.INPUT_SIZE == 512  # ViT-B/32's projection
    assert (cfg.INPUT.VIDEO.ENCODER, cfg.INPUT.VIDEO.FPS) == ("openai/clip-vit-base-patch32", 0.5)
    mmn = cfg.MODEL.MMN
    assert cfg.INPUT.NUM_PRE_CLIPS == mmn.NUM_CLIPS * mmn.FEATPOOL.KERNEL_SIZE  # stride = kernel, as commented
    assert cfg.DATASETS.NAME == "mydata"
