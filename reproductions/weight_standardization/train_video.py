"""Weight Standardization (Qiao et al. 2019), video recognition: TSM ResNet-50 (8 frames, 1/8 of the
channels shifted each way, residual shift) with BN, BN+WS, GN or GN+WS on Something-Something, as the
official TSM recipe (mit-han-lab/temporal-shift-module) trains it from ImageNet weights.

One config per row in ``configs/video/`` (see ``README.md``, "Video (Something-Something)")::

    torchrun --nproc_per_node=8 -m reproductions.weight_standardization.train_video \\
        --config reproductions/weight_standardization/configs/video/tsm_r50_gn_ws.yaml \\
        --data /datasets/something-something-v1 --set model.pretrained=/weights/R-50-GN-WS.pth.tar

Everything else (flags, checkpoints, logs, evaluation) is :mod:`reproductions.tasks.video.main`.
"""

from reproductions.tasks.video.main import main

if __name__ == "__main__":
    main(paper="weight_standardization", description=__doc__)
