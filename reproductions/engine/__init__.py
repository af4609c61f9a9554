"""The task-agnostic full-scale training engine: process group, config and command line, mixed
precision, samplers, schedules, optimizers, logs, atomic checkpoints with exact resume, the trainer, and
the one entry point every task calls. The tasks themselves live in :mod:`reproductions.tasks`.

Engine API
==========

``entry``
    ``run_task(task, argv, paper=, description=)``: parse -> config -> session -> build -> train ->
    evaluate -> ``summary.json`` -> end the session once (a process group the caller created survives).
    A user error (:class:`reproductions.errors.UserError`: config, data, checkpoint, run folder) ends the
    command as one ``error:`` paragraph with exit status 2; ``--debug`` shows the traceback.
    ``Task(name, defaults, build, description=, add_arguments=, flag_keys=, prepare=, eval_only=)``,
    ``TaskParts(model, train_set, loss_fn, evaluate=, collate_fn=, images_in_batch=, summarize=,
    extra_metrics=, report=)``, ``RunContext`` (``cfg``, ``args``, ``paper``, ``run``, ``trainer``,
    ``prepared``), ``published_text(cfg)``, ``fmt(value)``.
``distributed``
    ``init_distributed(device="auto") -> DistEnv`` (torchrun env vars, or one process; NCCL/gloo),
    ``get_env()``, ``print0``, ``warn0``, ``barrier``, ``all_reduce_sum(t)``, ``all_gather_object``,
    ``broadcast_object``, ``unwrap_model`` (strips DDP / torch.compile), ``cleanup()``.
``config``
    ``load_config(path, defaults, overrides, free=())`` (YAML with ``_base_`` inheritance, unknown keys
    rejected with a suggestion, ``key.sub=value`` overrides, every value checked against its type and
    range, errors naming the file or flag that set it; an empty file is an error), ``merge``, ``get``,
    ``set_value``, ``config_errors(what)`` (errors while building from the config are config errors),
    ``ConfigError``.
``schema``
    ``Spec`` and its constructors (``integer``, ``number``, ``boolean``, ``string``, ``choice``,
    ``numbers``, ``strings``), ``infer_spec(default)``, ``validate(cfg, defaults, schema, origins)``.
``cli``
    ``engine_parser(description)`` (the shared flags: --config --data --out --resume
    --trusted-checkpoint --batch-size --epochs --lr --workers --accum-steps --virtual-devices --sync-bn
    --amp --channels-last --compile --seed --log-every --device --download --move-old-run --eval-only
    --print-config --set --debug), ``config_from_args(args, task_defaults, schema=)``, ``ENGINE_DEFAULTS``
    (sections ``train``, ``optim``, ``schedule``) and ``ENGINE_SCHEMA`` (their types and ranges),
    ``METADATA_DEFAULTS`` (``name``, ``paper``, ``paper_ref``, ``published``, ``notes``), ``default_out_dir``.
``session``
    ``start_session(cfg, out_dir, resume=, move_old_run=, eval_only=) -> Session`` (process group, seeds,
    run folder claimed (:mod:`~reproductions.engine.run_folder`), manifest.json, batch arithmetic:
    ``per_device_batch``, ``process_batch``, ``total_batch``), ``train_loader(dataset, run,
    collate_fn=)``, ``eval_loader(dataset, run)``, ``optimizer_from_config(cfg, model, total_batch)``
    (linear LR scaling), ``scheduler_from_config(cfg, optimizer, steps_per_epoch)``,
    ``describe_run(run, cfg, model)`` (prints the batch / BN-statistics lines),
    ``trainer_from_config(cfg, run, model=, optimizer=, scheduler=, precision=, train_loader=,
    loss_fn=, evaluate=)``, ``median_of_last(history, key, n)``, ``write_summary(run, cfg, history,
    metrics)``, ``end_session(run)`` (leaves the process group if the session created it).
``trainer``
    ``prepare_model(model, env, channels_last=, compile=, find_unused_parameters=)`` (device, DDP,
    compile), ``Trainer(model=, optimizer=, scheduler=, precision=, env=, train_loader=, loss_fn=,
    epochs=, out_dir=, config=, evaluate=, accum_steps=, log_every=, clip_grad_norm=, to_device=, ...)``
    with ``.resume(path, trusted=)``, ``.fit() -> history`` and ``.evaluate(model)`` (eval mode,
    no grad, autocast, RNG-neutral); ``loss_fn(model, batch) -> (loss, metrics)``;
    ``batch_report(model, ...)`` (per-device / total / BN-statistics batch lines); ``move_to_device``;
    ``seed_all``.
``precision``
    ``Precision(amp, device)`` (``.autocast()``, ``.scaler``), ``AMP_CHOICES``.
``checkpoint``
    ``save_checkpoint(path, state, keep_previous=)`` (atomic, with a SHA-256 ``state_digest``; the replaced
    file stays as ``checkpoint_previous.pt``), ``load_checkpoint(path, trusted=False)``
    (``weights_only=True`` unless trusted; digest verified; ``CheckpointError`` says "corrupt" and names
    the last good checkpoint), ``resolve_resume(resume, out_dir)`` (``auto``), ``capture_rng_state`` /
    ``restore_rng_state``.
``run_folder``
    ``claim_run_folder(out_dir, resume=, resume_auto=, move_old_run=)`` (a folder holding another run is
    refused, or moved to ``<out>.old-N``; stale temporaries removed), ``run_results``, ``RunFolderError``.
``atomic``
    ``atomic_write``, ``write_bytes``, ``write_text``, ``write_json`` (temporary file, fsync, rename; a
    full disk is a ``StorageError`` naming the file), ``remove_stale_temporaries``.
``schedules``
    ``build_scheduler(optimizer, kind=step|cosine|poly|constant, steps_per_epoch=, milestones=,
    milestones_unit=epoch|step, warmup=, ...)``, ``LRSchedule``, ``scaled_lr``.
``optim``
    ``param_groups(model, weight_decay, norm_weight_decay=, bias_weight_decay=)``, ``build_optimizer``.
``sampling``
    ``GlobalBatchSampler`` (each step's global batch from one permutation; rank r takes slice r),
    ``SeededDataset`` (per-sample augmentation seeds), ``ShardSampler`` (evaluation).
``logs``
    ``RunLog`` (metrics.jsonl, log.txt), ``progress`` (tqdm on rank 0), ``format_metrics``.

The tasks (:mod:`reproductions.tasks`), each a :class:`~reproductions.engine.entry.Task`:

``tasks.classification``
    ``main.main(argv, paper=)`` (what every ``train_imagenet.py`` calls; ``CLASSIFICATION``), and
    ``data``: ``build_classification_datasets``, ``check_image_folder``, ``sort_flat_val``,
    ``train_transform`` / ``eval_transform``, ``DataError``.
``tasks.detection``, ``tasks.segmentation``, ``tasks.stylization``
    ``DETECTION`` (Mask R-CNN on COCO), ``SEGMENTATION`` (DeepLabv3 on VOC), ``STYLIZATION``
    (feed-forward style transfer; ``main_stylize`` applies a trained generator).
``tasks.models``, ``tasks.pretrained``, ``tasks.imagenet_stats``
    ``build_model`` over ``normcore.models`` and ``norm_name``; ImageNet backbone weights;
    ``IMAGENET_MEAN`` / ``IMAGENET_STD`` (the one definition every task uses).

Test data in the real formats: ``tests/fixtures`` (``make_image_folder``, ``make_coco_dataset``,
``make_voc_dataset``). Command lines: ``reproductions/README.md``.
"""
