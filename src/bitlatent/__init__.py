"""bitlatent: text-conditioned image generation with a binary latent decoder."""

import os

# Offline and silent by default: no telemetry, no hub downloads.
for _name, _value in {
    "KEDRO_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "ORT_DISABLE_TELEMETRY": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}.items():
    os.environ.setdefault(_name, _value)

__version__ = "0.1.0"
