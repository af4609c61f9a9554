"""Optional adapters that let other frameworks build normcore layers through their own hooks.

* :mod:`normcore.integrations.mmcv`: registers the normcore norms and WS convs into mmengine's ``MODELS``
  registry, so mmcv/mmdetection/mmsegmentation configs can say ``norm_cfg=dict(type="NCGN", num_groups=32)``
  and ``conv_cfg=dict(type="NCWS")``. Needs ``mmengine`` and ``mmcv-lite`` (pure Python); imported only
  when used.
* detectron2 needs no adapter: its ``get_norm(norm, out_channels)`` accepts a callable
  ``channels -> Module``, which :func:`normcore.norm_layer` returns (``NORM: normcore.norm_layer("gn")``
  set in code, as detectron2 configs cannot hold callables in YAML). detectron2 does not install against
  current PyTorch, so that path is documented, not tested here.
"""
