"""Point-cloud classification on ModelNet40 with DGCNN (the WS paper's point-cloud experiment):
:mod:`.dgcnn` (the model), :mod:`.modelnet` (the HDF5 release, augmentation, dataset check),
:mod:`.main` (the task on the engine)."""
