"""Group Normalization (Wu & He 2018): full-scale scripts (train_imagenet.py, configs/) and the
CPU-scale experiment."""
