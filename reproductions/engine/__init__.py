"""Shared pieces of every reproduction: atomic I/O, the environment manifest, the results schema, the
CPU-experiment toolkit, and the full-scale training engine.

Engine API
==========

Task-agnostic (detection, segmentation and stylization build on these; do not fork them):

``distributed``
    ``init_distributed(device="auto") -> DistEnv`` (torchrun env vars, or one process; NCCL/gloo),
    ``get_env()``, ``print0``, ``warn0``, ``barrier``, ``all_reduce_sum(t)``, ``all_gather_object``,
    ``broadcast_object``, ``unwrap_model`` (strips DDP / torch.compile), ``cleanup()``.
``config``
    ``load_config(path, defaults, overrides, free=())`` (YAML with ``_base_`` inheritance, unknown keys
    rejected with a suggestion, ``key.sub=value`` overrides), ``merge``, ``get``, ``set_value``,
    ``ConfigError``.
``cli``
    ``engine_parser(description)`` (the shared flags: --config --data --out --resume
    --trusted-checkpoint --batch-size --epochs --lr --workers --accum-steps --virtual-devices --sync-bn
    --amp --channels-last --compile --seed --log-every --device --download --eval-only --print-config
    --set), ``config_from_args(args, task_defaults)``, ``ENGINE_DEFAULTS`` (sections ``train``,
    ``optim``, ``schedule``), ``METADATA_DEFAULTS`` (``name``, ``paper``, ``paper_ref``, ``published``,
    ``notes``), ``default_out_dir``.
``recipe``
    ``start_session(cfg, out_dir) -> Session`` (process group, seeds, manifest.json, batch arithmetic:
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
    ``save_checkpoint`` (atomic), ``load_checkpoint(path, trusted=False)`` (``weights_only=True``
    unless trusted), ``resolve_resume(resume, out_dir)`` (``auto``), ``capture_rng_state`` /
    ``restore_rng_state``.
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

Classification (the task built on the above):

``classification``
    ``main(argv, paper=)`` (what every ``train_imagenet.py`` calls), ``CLASSIFICATION_DEFAULTS``,
    ``build_from_config(cfg)``, ``evaluate_topk``, ``topk_correct``.
``models``
    ``build_model(model_cfg, sync_bn=, virtual_devices=)`` over ``normcore.models``; ``norm_name``.
``datasets``
    ``build_classification_datasets``, ``check_image_folder`` (clear errors; flat val/ detection),
    ``sort_flat_val``, ``train_transform`` / ``eval_transform`` (GoogLeNet-style), ``DataError``.
``testing``
    ``make_image_folder(root, ...)``: a generated ImageNet-layout tree of tiny JPEGs for tests.

See ``reproductions/README.md`` for the command lines.
"""
