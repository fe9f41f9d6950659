"""Data: real dataset formats in, packed and masked training batches out.

Pipeline and public API (torch is imported only inside the functions that build tensors):

    from omni_runner.data.sources import build_sources          # recipe datasets -> scanned DataSources
    from omni_runner.data.stream import SampleStream, MicroBatches, mixer_for
    from omni_runner.data.packing import collate_packed, collate_padded, block_diagonal_causal_mask
    from omni_runner.data.render import render_sample, render_prompt, template_for, split_reasoning
    from omni_runner.data.toolcalls import tool_calls_match, parse_tool_calls
    from omni_runner.data.check import check_data, preview_samples  # the processor comes from models.load
    from omni_runner.data.multimodal import encode_media, processor_features, rope_positions

    sources = build_sources(recipe.data, recipe_dir)            # DataError when a bad fraction passes its limit
    stream = SampleStream(sources, mixer_for(recipe.data, sources), tokenizer, seq_len,
                          processor=processor, thinker=thinker,  # media: the processor, and the positions
                          num_workers=2)                          # workers prepare samples ahead of the step
    batches = MicroBatches(stream, micro_batch, seq_len, packing=True)
    rows = next(batches)                                        # list of rows, each a list of Samples
    batch = collate_packed(rows, pad_id, mrope=True, dtype=model_dtype, sliding_window=loaded.sliding_window)
    # model inputs: input_ids, position_ids (3,B,L), attention_mask (B,1,L,L) additive in `dtype`
    # (a dict of two such masks by layer type when the model has sliding-window layers);
    # for the loss: labels (-100 = none), token_capability (index into batch["capabilities"], -1 pad);
    # media samples add pixel_values/image_grid_thw, pixel_values_videos/video_grid_thw,
    # input_features/feature_attention_mask, concatenated in the batch's reading order;
    # collate_padded(samples, pad_id) gives the unpacked baseline (2D attention_mask).
    state = batches.state_dict()                                # JSON-able; goes into checkpoints
    batches.load_state_dict(state)                              # resume: exactly the same next batches
    stream.report()                                             # fields of the `data` event

Modules: `conversation` (the common form, RecordError/DataError/BadRecord), `adapters` (one per
format), `readers` (JSON/JSONL/Parquet/save_to_disk tables with exact locations), `sources` (scan,
max_bad_fraction), `render` (chat template, assistant-only labels, capability templates), `mixer`
(pure, seeded, resumable), `media` (decoding images, audio, video), `multimodal` (media through the
model's processor, placeholder expansion, 3-D rotary positions), `packing` (first-fit, masks, collate),
`stream` (samples prepared inline or in DataLoader workers, and micro-batches), `check` (`omni-run data check|preview`), `toolcalls` (exact-match scoring),
`bundled/` (the built-in data sets, `builtin:<folder>/<file>`; regenerate with
`python -m omni_runner.data.bundled.generate`; `builtin:tiny-media/...` is generated into the cache on
first use by `bundled/media.py`). docs/data.md explains the formats and decisions.
"""
