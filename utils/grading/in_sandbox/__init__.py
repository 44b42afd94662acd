"""Programs bubblewrap runs by path inside the sandbox, before and around a grading kernel.

They are started as ``python -I <file>`` (or with this folder as ``sys.path[0]``), so they use
the standard library only and import nothing from :mod:`utils`: the kernel has not started yet,
and the course environment's packages must not be trusted at that point.
"""
