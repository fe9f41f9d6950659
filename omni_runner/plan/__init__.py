"""The planner: recipe -> plan (stages, module groups, data mixture, memory estimate). No torch."""

from omni_runner.plan.compile import Plan, StagePlan, compile_plan

__all__ = ["Plan", "StagePlan", "compile_plan"]
