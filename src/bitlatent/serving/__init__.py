"""Serving: a KServe custom predictor (``kserve.Model``) over the ONNX bundle, Open Inference
Protocol v2. ``bitlatent serve`` / ``python -m bitlatent.serving`` run it; ``serve()`` and
``start_server_thread()`` (in ``bitlatent.serving.app``) from Python. No torch.

Importing this package is cheap: kserve loads with ``bitlatent.serving.app`` / ``.predictor``.
"""

__all__ = ["serve", "start_server_thread", "ServingLimits", "BitlatentModel"]


def __getattr__(name: str):
    if name in ("serve", "start_server_thread"):
        from . import app

        return getattr(app, name)
    if name in ("ServingLimits", "BitlatentModel"):
        from . import predictor

        return getattr(predictor, name)
    raise AttributeError(name)
