"""The `lm-eval` suite: lm-evaluation-harness tasks (MMLU, HellaSwag, ARC, ... or a task YAML of your
own) on the evaluated model, through the harness's Python API (`lm_eval.simple_evaluate`).

`HarnessModel` is the harness's `LM` interface over our loaded model (a LoRA model, a merged folder, a
checkpoint): `loglikelihood` (multiple-choice tasks), `loglikelihood_rolling` (perplexity tasks) and
`generate_until` (generation tasks), one request at a time, greedy. Task data is read from local files
only (the hub is offline, as everywhere in omni-run): a task YAML with `dataset_path: json` (or
`parquet`, `csv`) and `dataset_kwargs: {data_files: ...}`, or a built-in task whose data set is
already in the Hugging Face datasets cache (docs/evaluation.md). `--include DIR` indexes only the task
YAML files there (fast); without it the harness's own task index is read.

Each task's metrics come back keyed as the harness names them (`acc,none`, `acc_norm,none`, ...);
`n` is the number of documents scored. Needs the `eval` extra (`pip install omni-runner[eval]`).
"""

from __future__ import annotations

from typing import Any

from omni_runner.eval.suites import SuiteError

_NOT_METRICS = ("alias", "sample_len")  # numbers in a task's results that are not scores


def _harness() -> Any:
    try:
        import lm_eval
    except ImportError:
        raise SuiteError("the lm-eval suite needs lm-evaluation-harness: pip install 'omni-runner[eval]' "
                         "(or pip install lm-eval)") from None
    return lm_eval


def harness_model(loaded: Any, max_new_tokens: int) -> Any:
    """An `lm_eval.api.model.LM` scoring with `loaded` (built here: the class derives from the harness's)."""
    import torch
    from lm_eval.api.model import LM
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    tokenizer = loaded.tokenizer
    model = loaded.model
    device = next(model.parameters()).device
    prefix = tokenizer.eos_token_id if tokenizer.bos_token_id is None else tokenizer.bos_token_id
    max_length = int(getattr(loaded.thinker.config.text_config, "max_position_embeddings", 2048))

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    @torch.no_grad()
    def continuation_logprob(context: list[int], continuation: list[int]) -> tuple[float, bool]:
        """log P(continuation | context) and whether greedy decoding would produce it."""
        ids = (context + continuation)[-(max_length + 1):]
        inputs = torch.tensor([ids[:-1]], device=device)
        logits = model(input_ids=inputs, attention_mask=torch.ones_like(inputs)).logits[0].float()
        scored = logits[-len(continuation):].log_softmax(-1)
        wanted = torch.tensor(continuation, device=device)
        logprob = float(scored.gather(1, wanted[:, None]).sum())
        return logprob, bool((scored.argmax(-1) == wanted).all())

    class HarnessModel(LM):
        def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
            results = []
            for request in requests:
                context, continuation = request.args
                # As the harness's HF model splits them: trailing spaces of the context go with the continuation.
                spaces = len(context) - len(context.rstrip())
                context, continuation = context[:len(context) - spaces], context[len(context) - spaces:] + continuation
                context_ids = encode(context) or [prefix]
                results.append(continuation_logprob(context_ids, encode(continuation)))
            return results

        def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
            results = []
            for request in requests:
                windows = get_rolling_token_windows(encode(request.args[0]), prefix, max_length, 1)
                results.append(sum(continuation_logprob(*make_disjoint_window(window))[0] for window in windows))
            return results

        def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
            from omni_runner.models.export import generate_ids

            results = []
            for request in requests:
                context, settings = request.args
                until = settings.get("until") or []
                until = [until] if isinstance(until, str) else list(until)
                ids = torch.tensor([encode(context)[-max_length:]])
                new = generate_ids(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                                   int(settings.get("max_gen_toks") or max_new_tokens), loaded.external,
                                   pad_token_id=tokenizer.pad_token_id)
                text = tokenizer.decode(new, skip_special_tokens=True)
                for stop in until:
                    text = text.split(stop)[0]
                results.append(text)
            return results

    return HarnessModel()


def task_metrics(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`simple_evaluate`'s results as our entries: each task's float metrics and its document count."""
    counts = {task: sample.get("effective", sample.get("original")) for task, sample in (results.get("n-samples") or {}).items()}
    entries = {}
    for task, metrics in (results.get("results") or {}).items():
        entry: dict[str, Any] = {key: float(value) for key, value in metrics.items()
                                 if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in _NOT_METRICS}
        entry["n"] = counts.get(task)
        entries[task] = entry
    return entries


def run(context: Any) -> dict[str, dict[str, Any]]:
    lm_eval = _harness()
    from lm_eval.tasks import TaskManager

    tasks = [name.strip() for name in (context.options.get("tasks") or "").split(",") if name.strip()]
    if not tasks:
        raise SuiteError("the lm-eval suite needs --tasks NAME[,NAME] (e.g. mmlu,hellaswag, or the `task:` names "
                         "of the YAML files in an --include folder)")
    include = list(context.options.get("include") or [])
    manager = TaskManager(include_path=include or None, include_defaults=not include)
    unknown = [task for task in tasks if task not in manager.all_tasks]
    if unknown:
        where = f"the task YAML files in {', '.join(include)}" if include else "lm-eval's task index"
        raise SuiteError(f"lm-eval has no task {', '.join(unknown)} in {where}")
    try:
        results = lm_eval.simple_evaluate(
            model=harness_model(context.loaded, context.max_new_tokens), tasks=tasks,
            num_fewshot=context.options.get("num_fewshot"), limit=context.max_samples, task_manager=manager,
            log_samples=False, bootstrap_iters=0)
    except (FileNotFoundError, ConnectionError, OSError) as exc:
        raise SuiteError(f"lm-eval could not read a task's data from local files ({exc}); see docs/evaluation.md "
                         "for pointing a task at downloaded data") from None
    return task_metrics(results or {})
