"""Weight Standardization (Qiao et al. 2019), point clouds: DGCNN (EdgeConv, k = 20, 1,024 points) with
BN, BN+WS, GN or GN+WS on ModelNet40 (the 2,048-point HDF5 release), as the official point-cloud code
(csrhddlam/dgcnn, TensorFlow 1.12) trains it; this is a PyTorch port on normcore (differences in
``README.md``, "Point clouds (ModelNet40)").

One config per README row in ``configs/pointcloud/``::

    python -m reproductions.weight_standardization.train_pointcloud \\
        --config reproductions/weight_standardization/configs/pointcloud/dgcnn_gn_ws.yaml \\
        --data /datasets/modelnet40_ply_hdf5_2048

Everything else (flags, checkpoints, logs, evaluation) is :mod:`reproductions.tasks.pointcloud.main`.
"""

from reproductions.tasks.pointcloud.main import main

if __name__ == "__main__":
    main(paper="weight_standardization", description=__doc__)
