"""View pipelines: two-view and multi-crop augmentation, background augmentation."""
