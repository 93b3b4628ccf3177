"""Analysis of stored results: paired statistics, floors, cost of ownership and verdicts; and the memory
and time plan's arithmetic (memory_plan.py: numbers from a model's config in, estimates out).

Pure functions of rows and predictions, below both the runtime (the worker prices a row with
`ownership.run_costs`, a study's merge uses `stats`) and the renderers (report/, gate.py): nothing here
imports harness.report, so imports go one way, runtime -> analysis <- report.
"""
