"""Input pipelines: sources (TFDS, PaddleClas list files, SSLD mixtures, IDX) → grain transforms → global batches.

  sources.py      open_source(config.data, split): picks and opens a source, attaches PipelineOptions
  tfds_source.py  TFDS ArrayRecord via tfds (no TensorFlow)     listfile.py  `path label` list files
  ssld.py         labeled + unlabeled mixture (label_mask)       idx.py       MNIST-format files
  decode.py       bytes → uint8 HWC, BadImage errors             badimages.py skip_bad_images substitution
  transforms.py   per-record resize/crops (variable-size images) augment.py   batch-level flips/crops
  mixing.py       mixup / cutmix soft labels                     options.py   PipelineOptions from config.data
  pipeline.py     train_pipeline / eval_batches                  resumable.py step-count iterator state
  arrayrecord.py  write TFDS-format ArrayRecord datasets (kdjax.tools.prepare_data)
  decoded.py      batched threaded decoding, decode-once         labels.py    data.label_names_file, every route
  identity.py     what was read: name, route, fingerprints       stats.py     training-image mean/std, statistics
  preprocess.py   the eval preprocessing an export records and kdjax.infer applies
  replay.py       replayable views: draws from (seed, view, index)  replay_pipeline.py  train_pipeline's replay mode
  replay_cache.py K stored views + teacher logits per record (cache_teacher --views=K)

Batch keys: "image" uint8 [N, H, W, C]; "label" int32 [N]; "label_mask" float32 [N] with SSLD (0 = unlabeled);
"soft_label" float32 [N, num_classes] with mixup/cutmix; eval batches add "mask" float32 [N] (0 = padding).
"""
