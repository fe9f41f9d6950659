"""How the supervisor names the end of a trainer: the cause, and what the user should do next."""

from __future__ import annotations

import signal

import pytest

from omni_runner.run.exit_codes import TrainerExit
from omni_runner.run.supervisor import RESTARTABLE_CAUSES, classify_exit, lower_micro_batch, read_log_tail

PLAN = {"stages": [{"micro_batch": 4, "seq_len": 2048, "gradient_checkpointing": False}]}


# The cause each code the trainer can return must get; a code added to TrainerExit fails here until
# the supervisor names it.
CAUSE_OF = {
    TrainerExit.OK: "ok",
    TrainerExit.ERROR: "error",
    TrainerExit.NAN: "nan",
    TrainerExit.OOM: "oom",
    TrainerExit.INTERRUPTED: "interrupted",
}


@pytest.mark.parametrize("code", list(TrainerExit), ids=lambda code: code.name)
def test_every_code_the_trainer_can_return_is_classified_as_its_own_cause(code):
    final_state = "finished" if code == TrainerExit.OK else "failed"
    assert classify_exit(int(code), final_state, "", PLAN).cause == CAUSE_OF[code]


def test_clean_exit_after_finishing_is_ok():
    report = classify_exit(0, "finished", "", PLAN)
    assert report.cause == "ok"


def test_clean_exit_after_a_stop_says_how_to_continue():
    report = classify_exit(0, "stopped", "", PLAN)
    assert report.cause == "stopped"
    assert "omni-run resume" in report.suggestion


def test_exit_code_130_is_a_stop_at_once_that_is_never_restarted():
    report = classify_exit(130, "failed", "", PLAN)
    assert report.cause == "interrupted" and report.cause not in RESTARTABLE_CAUSES
    assert "omni-run resume" in report.suggestion


def test_exit_code_3_is_a_nan_abort_with_advice_on_the_learning_rate():
    report = classify_exit(3, "failed", "", PLAN)
    assert report.cause == "nan"
    assert "training.lr" in report.suggestion


def test_exit_code_4_is_out_of_memory_and_names_what_to_lower_from_the_plan():
    report = classify_exit(4, "failed", "", PLAN)
    assert report.cause == "oom"
    assert "micro_batch below 4" in report.suggestion
    assert "seq_len below 2048" in report.suggestion
    assert "gradient_checkpointing" in report.suggestion


def test_cuda_oom_text_in_the_log_counts_as_out_of_memory_whatever_the_code():
    log = "Traceback...\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
    assert classify_exit(1, "running", log, PLAN).cause == "oom"


def test_sigkill_is_explained_as_kill_or_host_oom_killer():
    report = classify_exit(-signal.SIGKILL, "running", "", PLAN)
    assert report.cause == "killed"
    assert report.signal == "SIGKILL"
    assert "OOM killer" in report.explanation


def test_other_errors_quote_the_last_error_line_of_the_log():
    log = "step 3\nTraceback (most recent call last):\n  File x\nValueError: bad shape (2, 3)\n"
    report = classify_exit(1, "running", log, PLAN)
    assert report.cause == "error"
    assert "ValueError: bad shape (2, 3)" in report.explanation


def test_a_clean_exit_is_ok_even_when_an_earlier_attempt_ran_out_of_memory_in_the_same_log():
    log = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n...\nstep 2/2\n"
    assert classify_exit(0, "finished", log, PLAN).cause == "ok"


def test_the_log_tail_starts_where_this_attempt_began(tmp_path):
    log = tmp_path / "trainer.log"
    log.write_text("CUDA out of memory\nsecond attempt\n")
    assert read_log_tail(log, since=len("CUDA out of memory\n")) == "second attempt\n"


def test_auto_micro_batch_halves_the_failing_stages_micro_batch_and_doubles_its_accumulation():
    report, lowered = lower_micro_batch(classify_exit(4, "failed", "", PLAN), {"micro_batch": 4, "grad_accum": 3})
    assert lowered == (2, 6) and report.explanation == "The GPU ran out of memory."


def test_at_micro_batch_1_auto_micro_batch_stops_with_the_explanation():
    report, lowered = lower_micro_batch(classify_exit(4, "failed", "", PLAN), {"micro_batch": 1, "grad_accum": 8})
    assert lowered is None
    assert report.explanation == ("The GPU ran out of memory. training.auto_micro_batch cannot go lower: "
                                  "the micro-batch is already 1.")
    assert "seq_len below 2048" in report.suggestion
