"""The executor: one per client machine (an agent). It takes the jobs sent to its
agent, runs real `borg`, and reports progress, log lines and the outcome as events.

Entry points: `services.executor.app.run(settings, stop)` and `python -m services.executor`.
"""
