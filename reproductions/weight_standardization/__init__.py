"""Weight Standardization / Batch-Channel Normalization (Qiao et al. 2019): full-scale scripts
(train_imagenet.py, configs/) and the CPU-scale experiment."""
