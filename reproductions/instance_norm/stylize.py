"""Stylize images with a generator trained by ``reproductions.instance_norm.train_style``::

    python -m reproductions.instance_norm.stylize --checkpoint runs/instance_norm/style_johnson_in/checkpoint.pt \\
        --input photos/ --out stylized/ [--size 512] [--device cuda]

Writes ``<name>_stylized.png`` per input and ``grid.png`` (inputs above, outputs below); outputs of a generator
trained with the random-weight fallback loss network carry ``random-loss-network`` in their names.
"""

from reproductions.tasks.stylization.main import main_stylize

if __name__ == "__main__":
    main_stylize()
