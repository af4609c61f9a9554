"""Instance Normalization (Ulyanov, Vedaldi & Lempitsky 2016), §3: train a feed-forward stylization
generator (the texture network or Johnson et al.'s) with IN or BN against a VGG-19 loss network.

One config per generator and norm in ``configs/style/`` (see ``README.md``, "Style transfer (full scale)")::

    python -m reproductions.instance_norm.train_style \\
        --config reproductions/instance_norm/configs/style/pyramid_in.yaml --data /datasets/coco/train2014 \\
        --style style.jpg --vgg-weights vgg19.pth

Then ``python -m reproductions.instance_norm.stylize --checkpoint RUN/checkpoint.pt --input photos/ --out out/``.
Everything else (flags, checkpoints, logs) is :mod:`reproductions.tasks.stylization.main`.
"""

from reproductions.tasks.stylization.main import main_train

if __name__ == "__main__":
    main_train(paper="instance_norm", description=__doc__)
