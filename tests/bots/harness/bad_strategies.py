"""Strategies for the harness tests: ones that fail on purpose."""


def does_not_compile(hbt, recorder, step_ns=1_000_000):
    return hbt.no_such_method(step_ns)


def needs_a_param(hbt, recorder, threshold):
    return threshold
