"""Group Normalization (Wu & He 2018), §4.2, Tables 5-7: Mask R-CNN on COCO with GN in the backbone,
the FPN, the 4conv1fc box head and the mask head, against the frozen-BN (BN*) baseline.

One config per table row in ``configs/coco/`` (see ``README.md``, "COCO (full scale)")::

    python -m reproductions.group_norm.train_coco \\
        --config reproductions/group_norm/configs/coco/table6_r50_gn_2x.yaml \\
        --data /datasets/coco --set model.pretrained=/weights/R-50-GN.pth
    torchrun --nproc_per_node=8 -m reproductions.group_norm.train_coco --config ... --data ...

Everything else (flags, checkpoints, logs, evaluation) is :mod:`reproductions.tasks.detection.main`.
"""

from reproductions.tasks.detection.main import main

if __name__ == "__main__":
    main(paper="group_norm", description=__doc__)
