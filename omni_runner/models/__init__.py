"""Models: the built-in tiny Qwen2.5-Omni, loading for training and inference, and export.

Modules (each documents its public API in its docstring):
- `tiny`: `build_tiny_model(out_dir)`, `ensure_tiny_model()` — the deterministic local model.
- `tokenizer`, `chat_template`: the tiny model's locally trained tokenizer and ChatML template
  (`apply_chat_template(..., return_assistant_tokens_mask=True)` gives the assistant-only loss mask).
- `load`: `load_for_training(recipe_data, recipe_dir, ...) -> LoadedModel`, `set_trainable_groups`,
  `ModelLoadError` — the same code loads the tiny model on a CPU and the 7B on a GPU.
- `export`: `save_final`, `load_for_inference`, `generate_text` — the run's `final/` folder and chat.
- `folders`: `atomic_folder(target)`, folders that appear complete or not at all.
- `hf_env`: offline switches and quiet transformers output.

Importing this package imports neither torch nor transformers; the modules import them inside
functions, so command modules stay cheap to import.
"""
