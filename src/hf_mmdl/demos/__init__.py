"""Gradio demos, one per architecture; each Space folder under `spaces/` launches one of them."""

from contextlib import contextmanager


@contextmanager
def shown_to_user():
    """ValueErrors of a model, processor or pipeline (bad sizes, settings, masks) reach the app as their message
    (`gr.Error`) instead of Gradio's generic error."""
    import gradio as gr

    try:
        yield
    except ValueError as error:
        raise gr.Error(str(error)) from error
