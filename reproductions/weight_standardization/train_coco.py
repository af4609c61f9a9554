"""Weight Standardization (Qiao et al. 2019), COCO: Mask R-CNN and Faster R-CNN with GN+WS in the
backbone, the FPN, the 4conv1fc box head and the mask head, as the official maskrcnn-benchmark fork
(joe-siyuan-qiao/maskrcnn-benchmark) trains them.

One config per README row in ``configs/coco/`` (see ``README.md``, "COCO and VOC (full scale)")::

    python -m reproductions.weight_standardization.train_coco \\
        --config reproductions/weight_standardization/configs/coco/mask_r50_gn_ws_2x.yaml \\
        --data /datasets/coco --set model.pretrained=/weights/R-50-GN-WS.pth.tar

Everything else (flags, checkpoints, logs, evaluation) is :mod:`reproductions.tasks.detection.main`.
"""

from reproductions.tasks.detection.main import main

if __name__ == "__main__":
    main(paper="weight_standardization", description=__doc__)
