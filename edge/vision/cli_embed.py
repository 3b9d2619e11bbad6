"""Placeholder: owned by the vision work; replaced by its implementation."""


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise SystemExit("not implemented yet")
