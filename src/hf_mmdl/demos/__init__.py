"""Gradio demos, one per architecture; each Space folder under `spaces/` launches one of them."""
