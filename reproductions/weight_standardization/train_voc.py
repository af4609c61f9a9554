"""Weight Standardization / Batch-Channel Normalization, PASCAL VOC 2012: DeepLabv3 with ResNet-101 and
BN, GN, GN+WS or BCN+WS, as the official code (joe-siyuan-qiao/Batch-Channel-Normalization:DeepLabV3)
trains it on the 10,582-image train_aug set.

One config per README row in ``configs/voc/`` (see ``README.md``, "COCO and VOC (full scale)")::

    python -m reproductions.weight_standardization.train_voc \\
        --config reproductions/weight_standardization/configs/voc/r101_gn_ws.yaml \\
        --data /datasets/VOCdevkit --set model.pretrained=/weights/R-101-GN-WS.pth.tar

Everything else (flags, checkpoints, logs, evaluation) is :mod:`reproductions.tasks.segmentation.main`.
"""

from reproductions.tasks.segmentation.main import main

if __name__ == "__main__":
    main(paper="weight_standardization", description=__doc__)
