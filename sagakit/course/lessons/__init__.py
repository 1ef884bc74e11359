"""Workflow and activity code for the lessons, one module per lesson.

Workflows must live in importable modules, not notebook cells: Temporal's
workflow sandbox re-imports a workflow's module to run it in isolation, and a
class defined in ``__main__`` of a kernel cannot be re-imported.
"""
