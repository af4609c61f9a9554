"""Video recognition on Something-Something V1/V2 with the Temporal Shift Module (the WS paper's video
experiment): :mod:`.tsm` (the model), :mod:`.something` (data, sampling, dataset check), :mod:`.main`
(the task on the engine)."""
