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


def build_demo_for(model_path: str):
    """The Gradio demo of whichever architecture the saved folder (or Hub id) holds, built on it."""
    from ..architectures import architecture_of, resolve
    from ..hub import folder_config

    config, _ = folder_config(model_path)
    architecture = architecture_of(config.model_type)
    if architecture.demo is None:
        raise ValueError(f"{architecture.title} has no demo.")
    return resolve(architecture.demo)(str(model_path))
